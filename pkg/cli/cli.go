// Package cli is kubectl-eiplb: what eiplb is doing, read from the API
// server only (pools, peers, Services, their conditions and Events), for
// people (tables, sentences) or scripts (-o json|yaml).
package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/eiplb/eiplb/pkg/announce"
	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	announcectrl "github.com/eiplb/eiplb/pkg/controller/announce"
	"github.com/eiplb/eiplb/pkg/dataplane"
	"github.com/eiplb/eiplb/pkg/ipam"
)

// Pool is one EIPPool's usage.
type Pool struct {
	Name      string `json:"name"`
	Capacity  int64  `json:"capacity"`
	Allocated int64  `json:"allocated"`
	Free      int64  `json:"free"`
	Orphaned  int64  `json:"orphaned,omitempty"`
	// UsedPercent is Allocated/Capacity of the fuller family.
	UsedPercent float64 `json:"usedPercent"`
	Ready       bool    `json:"ready"`
	Reason      string  `json:"reason,omitempty"`
	Message     string  `json:"message,omitempty"`
}

// Session is one manager replica's session with a peer.
type Session struct {
	Manager      string `json:"manager"`
	State        string `json:"state"`
	BFD          string `json:"bfd,omitempty"`
	PrefixesSent int64  `json:"prefixesSent"`
	LastError    string `json:"lastError,omitempty"`
}

// Peer is one BGPPeer with its sessions.
type Peer struct {
	Name     string    `json:"name"`
	Address  string    `json:"address"`
	PeerASN  int64     `json:"peerASN"`
	LocalASN int64     `json:"localASN"`
	Sessions []Session `json:"sessions"`
}

// Service is one Service eiplb serves.
type Service struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	Addresses []string `json:"addresses"`
	// Allocated is the eiplb.io/IPAllocated condition.
	Allocated string `json:"allocated"`
	Reason    string `json:"reason,omitempty"`
	// NodesWithEndpoints counts ready endpoints per node.
	NodesWithEndpoints map[string]int `json:"nodesWithEndpoints,omitempty"`
	// NextHops are the nodes the managers announce the Service through,
	// computed from the same objects with the announcer's own code, each
	// node counted once its agent has programmed the Service (which only
	// the managers know); Announce is the announcer's reason
	// (Announced, NoAdvertisement, NoEligibleNode, NoLocalEndpoints).
	NextHops []string `json:"nextHops"`
	Announce string   `json:"announce,omitempty"`
	// Programmed tells, for each node the objects allow as a next hop,
	// whether its agent has programmed the Service, as the managers report
	// it in EIPNode status: "yes"; "no" (not yet: not a next hop); "agent
	// <phase>" (no manager sees the agent up: not a next hop); "unknown" (no
	// manager reported the node, or its list of unprogrammed Services is
	// truncated). Empty when no manager reports EIPNodes.
	Programmed map[string]string `json:"programmed,omitempty"`
	// LastAnnounce is the newest Announced/Withdrawn Event of a manager.
	// Managers write them when announcing starts or stops, not on every
	// next-hop change (that would be a storm of writes when a node goes
	// down): the router has the current next hops.
	LastAnnounce string `json:"lastAnnounce,omitempty"`
}

// Status is everything `kubectl eiplb status` shows.
type Status struct {
	Pools    []Pool    `json:"pools"`
	Peers    []Peer    `json:"peers"`
	Nodes    []Node    `json:"nodes"`
	Services []Service `json:"services"`
}

// Node is one node's agent as each manager replica sees it (EIPNode).
type Node struct {
	Name   string      `json:"name"`
	Agents []NodeAgent `json:"agents"`
}

// NodeAgent is one manager replica's view of a node's agent.
type NodeAgent struct {
	Manager      string `json:"manager"`
	Phase        string `json:"phase"`
	Since        string `json:"since,omitempty"`
	Programmed   int32  `json:"programmed"`
	Unprogrammed int32  `json:"unprogrammed"`
	// UnprogrammedServices names the first 50 of them.
	UnprogrammedServices []string `json:"unprogrammedServices,omitempty"`
	UpdatedAt            string   `json:"updatedAt,omitempty"`
}

// Nodes reads every Node with its EIPNode reports; a Node no manager has
// reported has no agents.
func Nodes(ctx context.Context, c client.Reader) ([]Node, error) {
	var nodes corev1.NodeList
	if err := c.List(ctx, &nodes); err != nil {
		return nil, err
	}
	reports, err := eipNodes(ctx, c)
	if err != nil {
		return nil, err
	}
	out := []Node{}
	for _, n := range nodes.Items {
		nd := Node{Name: n.Name, Agents: []NodeAgent{}}
		for _, a := range reports[n.Name] {
			nd.Agents = append(nd.Agents, NodeAgent{Manager: a.Manager, Phase: a.Phase, Since: timeText(a.Since),
				Programmed: a.Programmed, Unprogrammed: a.Unprogrammed, UnprogrammedServices: a.UnprogrammedServices, UpdatedAt: timeText(a.UpdatedAt)})
		}
		slices.SortFunc(nd.Agents, func(a, b NodeAgent) int { return strings.Compare(a.Manager, b.Manager) })
		out = append(out, nd)
	}
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// age renders an RFC 3339 time as kubectl does ages ("5m", "3h"); "-"
// when unknown.
func age(rfc3339 string) string {
	t, err := time.Parse(time.RFC3339, rfc3339)
	if err != nil {
		return "-"
	}
	return duration.HumanDuration(time.Since(t))
}

func timeText(t *metav1.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// eipNodes maps node name → the managers' reports of its agent; nil when
// there is none (managers of an older version, or run without the agent
// link): the next hops are then computed without the agents' say.
func eipNodes(ctx context.Context, c client.Reader) (map[string][]v1alpha1.EIPNodeAgent, error) {
	var list v1alpha1.EIPNodeList
	if err := c.List(ctx, &list); err != nil {
		if apimeta.IsNoMatchError(err) {
			return nil, nil
		}
		return nil, err
	}
	out := make(map[string][]v1alpha1.EIPNodeAgent, len(list.Items))
	for _, n := range list.Items {
		if len(n.Status.Agents) > 0 {
			out[n.Name] = n.Status.Agents
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// programmedBy says whether node has programmed the Service key according
// to the managers' reports, and whether that makes it a next hop: the
// announcer of a replica uses the node once its agent is Up (or AgentDown
// within the grace period) and has programmed the Service; the router gets
// the union of the replicas' paths.
func programmedBy(reports []v1alpha1.EIPNodeAgent, key string) (state string, eligible bool) {
	if len(reports) == 0 {
		return "unknown", false
	}
	state = "agent " + reports[0].Phase
	for _, a := range reports {
		if a.Phase != v1alpha1.AgentPhaseUp && a.Phase != v1alpha1.AgentPhaseAgentDown {
			continue
		}
		switch {
		case slices.Contains(a.UnprogrammedServices, key):
			if state != "unknown" {
				state = "no"
			}
		case int(a.Unprogrammed) > len(a.UnprogrammedServices):
			// Not listed, but the list is truncated.
			state = "unknown"
		default:
			return "yes", true
		}
	}
	return state, state == "unknown"
}

// Options of a command.
type Options struct {
	Output string // "", "json" or "yaml"
	Class  string // loadBalancerClass served
	// NoClass: Services without a class are served too.
	NoClass bool
	// Namespace, when set, limits status to that namespace's Services.
	Namespace string
}

// ServiceRef names the Service explain looks at.
type ServiceRef struct{ Namespace, Name string }

// ParseServiceRef reads explain's arguments as kubectl would: "svc NAME",
// "svc NAMESPACE/NAME" or "svc/NAME" ("service" and "services" too), with
// the namespace from -n (ns, when nsSet). It needs no API server, so bad
// arguments are reported before any kubeconfig is read. An empty Namespace
// in the result means: the kubeconfig context's namespace.
func ParseServiceRef(args []string, ns string, nsSet bool) (ServiceRef, error) {
	const usage = "want explain svc NAME [-n NAMESPACE], svc NAMESPACE/NAME or svc/NAME"
	var arg string
	switch {
	case len(args) == 2 && isServiceWord(args[0]):
		arg = args[1]
	case len(args) == 1 && strings.Contains(args[0], "/") && isServiceWord(args[0][:strings.Index(args[0], "/")]):
		arg = args[0][strings.Index(args[0], "/")+1:]
		if strings.Contains(arg, "/") {
			return ServiceRef{}, fmt.Errorf("%q: %s", args[0], usage)
		}
	default:
		return ServiceRef{}, fmt.Errorf("explain got %q: %s", strings.Join(args, " "), usage)
	}
	ref := ServiceRef{Name: arg}
	if n, name, ok := strings.Cut(arg, "/"); ok {
		ref = ServiceRef{Namespace: n, Name: name}
		if nsSet && ns != n {
			return ServiceRef{}, fmt.Errorf("explain: %q names namespace %q but -n says %q", arg, n, ns)
		}
	} else if nsSet {
		ref.Namespace = ns
	}
	if errs := validation.IsDNS1035Label(ref.Name); len(errs) > 0 {
		return ServiceRef{}, fmt.Errorf("explain: Service name %q is invalid: %s", ref.Name, errs[0])
	}
	if ref.Namespace != "" || strings.Contains(arg, "/") { // empty: from the kubeconfig
		if errs := validation.IsDNS1123Label(ref.Namespace); len(errs) > 0 {
			return ServiceRef{}, fmt.Errorf("explain: namespace %q is invalid: %s", ref.Namespace, errs[0])
		}
	}
	return ref, nil
}

func isServiceWord(s string) bool { return s == "svc" || s == "service" || s == "services" }

// Pools reads the pools' usage.
func Pools(ctx context.Context, c client.Reader) ([]Pool, error) {
	var list v1alpha1.EIPPoolList
	if err := c.List(ctx, &list); err != nil {
		return nil, err
	}
	out := []Pool{}
	for _, p := range list.Items {
		st := p.Status
		pl := Pool{Name: p.Name, Capacity: st.Capacity, Allocated: st.Allocated, Free: st.Free, Orphaned: st.Orphaned}
		for _, f := range []*v1alpha1.FamilyUsage{st.IPv4, st.IPv6} {
			if f != nil && f.Capacity > 0 {
				pl.UsedPercent = max(pl.UsedPercent, 100*float64(f.Allocated)/float64(f.Capacity))
			}
		}
		if c := apimeta.FindStatusCondition(st.Conditions, "Ready"); c != nil {
			pl.Ready, pl.Reason, pl.Message = c.Status == metav1.ConditionTrue, c.Reason, c.Message
		}
		out = append(out, pl)
	}
	slices.SortFunc(out, func(a, b Pool) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Peers reads the peers and their sessions.
func Peers(ctx context.Context, c client.Reader) ([]Peer, error) {
	var list v1alpha1.BGPPeerList
	if err := c.List(ctx, &list); err != nil {
		return nil, err
	}
	out := []Peer{}
	for _, p := range list.Items {
		pr := Peer{Name: p.Name, Address: p.Spec.PeerAddress, PeerASN: p.Spec.PeerASN, LocalASN: p.Spec.LocalASN, Sessions: []Session{}}
		for _, s := range p.Status.Sessions {
			pr.Sessions = append(pr.Sessions, Session{Manager: s.Manager, State: s.State, BFD: s.BFDState, PrefixesSent: s.PrefixesSent, LastError: s.LastError})
		}
		slices.SortFunc(pr.Sessions, func(a, b Session) int { return strings.Compare(a.Manager, b.Manager) })
		out = append(out, pr)
	}
	slices.SortFunc(out, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Services reads the Services eiplb serves, with their endpoints per node
// and the newest announce Event.
func Services(ctx context.Context, c client.Reader, o Options) ([]Service, error) {
	var list corev1.ServiceList
	if err := c.List(ctx, &list, client.InNamespace(o.Namespace)); err != nil {
		return nil, err
	}
	var events eventsv1.EventList
	if err := c.List(ctx, &events, client.InNamespace(o.Namespace)); err != nil {
		return nil, err
	}
	reports, err := eipNodes(ctx, c)
	if err != nil {
		return nil, err
	}
	out := []Service{}
	for i := range list.Items {
		s := &list.Items[i]
		if !v1alpha1.Serves(s, classOr(o.Class), o.NoClass) {
			continue
		}
		sv, err := service(ctx, c, s, events.Items, reports)
		if err != nil {
			return nil, err
		}
		out = append(out, sv)
	}
	slices.SortFunc(out, func(a, b Service) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	return out, nil
}

func classOr(c string) string {
	if c == "" {
		return v1alpha1.LoadBalancerClass
	}
	return c
}

func service(ctx context.Context, c client.Reader, s *corev1.Service, events []eventsv1.Event, reports map[string][]v1alpha1.EIPNodeAgent) (Service, error) {
	sv := Service{Namespace: s.Namespace, Name: s.Name, Addresses: []string{}, Allocated: "Unknown"}
	for _, in := range s.Status.LoadBalancer.Ingress {
		sv.Addresses = append(sv.Addresses, in.IP)
	}
	if cond := apimeta.FindStatusCondition(s.Status.Conditions, v1alpha1.ConditionIPAllocated); cond != nil {
		sv.Allocated, sv.Reason = string(cond.Status), cond.Reason
		if cond.Status != metav1.ConditionTrue {
			sv.Reason = cond.Reason + ": " + cond.Message
		}
	}
	var slices_ discoveryv1.EndpointSliceList
	if err := c.List(ctx, &slices_, client.InNamespace(s.Namespace), client.MatchingLabels{discoveryv1.LabelServiceName: s.Name}); err != nil {
		return sv, err
	}
	// A dual-stack pod is an endpoint in one slice per family: count it
	// once, as the announcer does.
	seen := map[string]bool{}
	for _, es := range slices_.Items {
		for _, e := range es.Endpoints {
			if e.NodeName == nil || !dataplane.Ready(e.Conditions) || len(e.Addresses) == 0 {
				continue
			}
			id := "addr/" + e.Addresses[0]
			if r := e.TargetRef; r != nil && r.UID != "" {
				id = "uid/" + string(r.UID)
			} else if r != nil && r.Name != "" {
				id = "ref/" + r.Kind + "/" + r.Namespace + "/" + r.Name
			}
			if seen[id] {
				continue
			}
			seen[id] = true
			if sv.NodesWithEndpoints == nil {
				sv.NodesWithEndpoints = map[string]int{}
			}
			sv.NodesWithEndpoints[*e.NodeName]++
		}
	}
	sv.NextHops = []string{}
	if len(sv.Addresses) > 0 {
		// The nodes the objects allow, then among them those the
		// managers report programmed: the announcer's own code, twice.
		recs, err := announcectrl.RecordsOf(ctx, c, s)
		if err != nil {
			return sv, err
		}
		res, err := announcectrl.Desired(ctx, c, s, recs, nil)
		if err != nil {
			return sv, err
		}
		if reports != nil && len(res.NextHops) > 0 {
			sv.Programmed = map[string]string{}
			for _, n := range res.NextHops {
				sv.Programmed[n], _ = programmedBy(reports[n], s.Namespace+"/"+s.Name)
			}
			if res, err = announcectrl.Desired(ctx, c, s, recs, func(node string, svc announce.Service) bool {
				_, ok := programmedBy(reports[node], svc.Key)
				return ok
			}); err != nil {
				return sv, err
			}
		}
		sv.NextHops, sv.Announce = append(sv.NextHops, res.NextHops...), res.Reason
	}
	var newest *eventsv1.Event
	for i := range events {
		e := &events[i]
		if e.Regarding.Kind != "Service" || e.Regarding.Namespace != s.Namespace || e.Regarding.Name != s.Name ||
			(e.Reason != "Announced" && e.Reason != "Withdrawn") {
			continue
		}
		if newest == nil || eventTime(e).After(eventTime(newest).Time) {
			newest = e
		}
	}
	if newest != nil {
		sv.LastAnnounce = newest.Note
	}
	return sv, nil
}

func eventTime(e *eventsv1.Event) metav1.Time {
	if e.Series != nil {
		return metav1.Time{Time: e.Series.LastObservedTime.Time}
	}
	if !e.EventTime.IsZero() {
		return metav1.Time{Time: e.EventTime.Time}
	}
	return e.CreationTimestamp
}

// Explanation says why a Service has or lacks an address and routes.
type Explanation struct {
	Service  Service  `json:"service"`
	Verdict  string   `json:"verdict"`
	Findings []string `json:"findings"`
	Events   []string `json:"events"`
}

// Explain looks at one Service and everything its address and routes
// depend on.
func Explain(ctx context.Context, c client.Reader, ns, name string, o Options) (Explanation, error) {
	var s corev1.Service
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &s); err != nil {
		return Explanation{}, err
	}
	var events eventsv1.EventList
	if err := c.List(ctx, &events); err != nil {
		return Explanation{}, err
	}
	reports, err := eipNodes(ctx, c)
	if err != nil {
		return Explanation{}, err
	}
	sv, err := service(ctx, c, &s, events.Items, reports)
	if err != nil {
		return Explanation{}, err
	}
	ex := Explanation{Service: sv, Findings: []string{}, Events: []string{}}
	for _, e := range events.Items {
		if e.Regarding.Kind == "Service" && e.Regarding.Namespace == ns && e.Regarding.Name == name {
			ex.Events = append(ex.Events, fmt.Sprintf("%s %s: %s", e.Type, e.Reason, e.Note))
		}
	}
	sort.Strings(ex.Events)
	find := func(f string, args ...any) { ex.Findings = append(ex.Findings, fmt.Sprintf(f, args...)) }

	switch {
	case s.Spec.Type != corev1.ServiceTypeLoadBalancer:
		ex.Verdict = fmt.Sprintf("not served: type %s, eiplb serves only LoadBalancer Services", s.Spec.Type)
		return ex, nil
	case !v1alpha1.Serves(&s, classOr(o.Class), o.NoClass):
		cls := "no loadBalancerClass"
		if s.Spec.LoadBalancerClass != nil {
			cls = "loadBalancerClass " + *s.Spec.LoadBalancerClass
		}
		ex.Verdict = fmt.Sprintf("not served: %s, eiplb serves %s", cls, classOr(o.Class))
		return ex, nil
	case len(sv.Addresses) == 0:
		ex.Verdict = "no address: " + orText(sv.Reason, "the manager has not handled it yet (is a manager replica running and leading?)")
		return ex, nil
	}
	find("addresses %s (%s)", strings.Join(sv.Addresses, ", "), sv.Reason)
	for _, a := range sv.Addresses {
		addr, err := netip.ParseAddr(a)
		if err != nil {
			continue
		}
		var alloc v1alpha1.EIPAllocation
		if err := c.Get(ctx, client.ObjectKey{Name: ipam.AllocationName(addr)}, &alloc); err == nil {
			find("%s is recorded in EIPAllocation %s from pool %s", a, alloc.Name, alloc.Spec.Pool)
		} else {
			find("%s has no EIPAllocation record (%v)", a, err)
		}
	}
	var nodes corev1.NodeList
	if err := c.List(ctx, &nodes); err != nil {
		return ex, err
	}
	var ready []string
	for _, n := range nodes.Items {
		ok := false
		for _, cd := range n.Status.Conditions {
			ok = ok || (cd.Type == corev1.NodeReady && cd.Status == corev1.ConditionTrue)
		}
		if ok && !n.Spec.Unschedulable {
			ready = append(ready, n.Name)
		}
	}
	slices.Sort(ready)
	find("%d of %d nodes are Ready and schedulable (possible next hops): %s", len(ready), len(nodes.Items), strings.Join(ready, ", "))
	local := s.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
	if local {
		var with []string
		for n, k := range sv.NodesWithEndpoints {
			with = append(with, fmt.Sprintf("%s (%d)", n, k))
		}
		slices.Sort(with)
		find("externalTrafficPolicy Local: only nodes with ready endpoints are next hops: %s", orText(strings.Join(with, ", "), "none"))
	}
	peers, err := Peers(ctx, c)
	if err != nil {
		return ex, err
	}
	established := 0
	for _, p := range peers {
		for _, ss := range p.Sessions {
			if ss.State == "Established" {
				established++
			} else {
				find("peer %s (%s): session from %s is %s %s", p.Name, p.Address, ss.Manager, ss.State, ss.LastError)
			}
		}
	}
	find("%d BGP sessions established over %d peers", established, len(peers))
	var unprogrammed []string
	for _, n := range slices.Sorted(maps.Keys(sv.Programmed)) {
		if st := sv.Programmed[n]; st != "yes" {
			unprogrammed = append(unprogrammed, n+" ("+st+")")
		}
	}
	if len(unprogrammed) > 0 {
		find("not next hops until their agent has programmed the Service: %s (kubectl eiplb nodes)", strings.Join(unprogrammed, ", "))
	}
	if len(sv.NextHops) > 0 {
		find("next hops: %s (each once its agent has programmed the Service)", strings.Join(sv.NextHops, ", "))
	}
	switch {
	case sv.Announce == announce.ReasonNoAdvertisement:
		ex.Verdict = "has an address but is not announced: no BGPAdvertisement selects its pool"
	case established == 0:
		ex.Verdict = "has an address but is not announced: no BGP session is established (kubectl eiplb peers)"
	case local && len(sv.NodesWithEndpoints) == 0:
		ex.Verdict = "has an address but is not announced: Local policy and no ready endpoint on any node"
	case len(ready) == 0:
		ex.Verdict = "has an address but is not announced: no node is Ready and schedulable"
	case len(sv.Programmed) > 0 && len(sv.NextHops) == 0:
		ex.Verdict = "has an address but is not announced: no node's agent is up and has programmed it: " + strings.Join(unprogrammed, ", ")
	case sv.Announce == announce.ReasonNoEligibleNode:
		ex.Verdict = "has an address but is not announced: no node may be a next hop (Ready, schedulable, not excluded, with an address of the family, selected by the advertisement)"
	case sv.Announce == announce.ReasonNoLocalEndpoints:
		ex.Verdict = "has an address but is not announced: Local policy and no ready endpoint on any node"
	case strings.HasPrefix(sv.LastAnnounce, "Withdrawn"):
		ex.Verdict = "withdrawn: " + sv.LastAnnounce
	case sv.LastAnnounce != "":
		ex.Verdict = "announced via " + strings.Join(sv.NextHops, ", ") + " (last announce Event: " + sv.LastAnnounce + ")"
	default:
		ex.Verdict = "has an address and next hops " + strings.Join(sv.NextHops, ", ") + ", but no announce Event yet: no node's agent has programmed it, or no manager runs (kubectl -n eiplb-system get pods)"
	}
	return ex, nil
}

func orText(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Write renders v for people (human) or as JSON/YAML.
func Write(w io.Writer, output string, v any, human func(io.Writer)) error {
	switch output {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	case "":
		human(w)
		return nil
	}
	return fmt.Errorf("unknown output format %q (want json or yaml)", output)
}

// PoolsTable writes pools for people.
func PoolsTable(w io.Writer, pools []Pool) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tCAPACITY\tALLOCATED\tFREE\tUSED\tREADY\tREASON")
	for _, p := range pools {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.0f%%\t%v\t%s\n", p.Name, p.Capacity, p.Allocated, p.Free, p.UsedPercent, p.Ready, p.Reason)
	}
	tw.Flush()
}

// PeersTable writes peers and sessions for people.
func PeersTable(w io.Writer, peers []Peer) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tADDRESS\tASN\tMANAGER\tSTATE\tBFD\tSENT\tLAST ERROR")
	for _, p := range peers {
		if len(p.Sessions) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%d\t-\tno session reported\t\t\t\n", p.Name, p.Address, p.PeerASN)
		}
		for _, s := range p.Sessions {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%d\t%s\n", p.Name, p.Address, p.PeerASN, s.Manager, s.State, s.BFD, s.PrefixesSent, s.LastError)
		}
	}
	tw.Flush()
}

// ServicesTable writes Services for people.
func ServicesTable(w io.Writer, svcs []Service) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tADDRESSES\tALLOCATED\tNEXT HOPS\tPROGRAMMED\tNODES WITH ENDPOINTS\tLAST ANNOUNCE EVENT")
	for _, s := range svcs {
		var nodes []string
		for n, k := range s.NodesWithEndpoints {
			nodes = append(nodes, fmt.Sprintf("%s:%d", n, k))
		}
		slices.Sort(nodes)
		alloc := s.Allocated
		if s.Allocated != "True" && s.Reason != "" {
			alloc += " (" + s.Reason + ")"
		}
		hops := strings.Join(s.NextHops, ",")
		if hops == "" {
			hops = orText(s.Announce, "-")
		}
		fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Namespace, s.Name, orText(strings.Join(s.Addresses, ","), "-"), alloc, hops,
			programmedText(s.Programmed), orText(strings.Join(nodes, " "), "-"), s.LastAnnounce)
	}
	tw.Flush()
}

// programmedText is "3/3", or "2/3 (node3: no)" naming the nodes that have
// not programmed the Service; "-" when no manager reports.
func programmedText(p map[string]string) string {
	if len(p) == 0 {
		return "-"
	}
	yes := 0
	var not []string
	for _, n := range slices.Sorted(maps.Keys(p)) {
		if p[n] == "yes" {
			yes++
		} else {
			not = append(not, n+": "+p[n])
		}
	}
	if len(not) == 0 {
		return fmt.Sprintf("%d/%d", yes, len(p))
	}
	return fmt.Sprintf("%d/%d (%s)", yes, len(p), strings.Join(not, ", "))
}

// NodesTable writes each node's agent as each manager replica sees it.
func NodesTable(w io.Writer, nodes []Node) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tMANAGER\tAGENT\tFOR\tPROGRAMMED\tUNPROGRAMMED\tUPDATED")
	for _, n := range nodes {
		if len(n.Agents) == 0 {
			fmt.Fprintf(tw, "%s\t-\tno manager reported it\t\t\t\t\n", n.Name)
		}
		for _, a := range n.Agents {
			unp := strconv.Itoa(int(a.Unprogrammed))
			if len(a.UnprogrammedServices) > 0 {
				unp += " (" + strings.Join(a.UnprogrammedServices[:min(3, len(a.UnprogrammedServices))], ", ")
				if int(a.Unprogrammed) > 3 {
					unp += ", …"
				}
				unp += ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", n.Name, a.Manager, a.Phase, age(a.Since), a.Programmed, unp, age(a.UpdatedAt))
		}
	}
	tw.Flush()
}

// ExplanationText writes an explanation for people.
func ExplanationText(w io.Writer, ex Explanation) {
	fmt.Fprintf(w, "Service %s/%s: %s\n", ex.Service.Namespace, ex.Service.Name, ex.Verdict)
	for _, f := range ex.Findings {
		fmt.Fprintf(w, "  - %s\n", f)
	}
	if len(ex.Events) > 0 {
		fmt.Fprintln(w, "Events:")
		for _, e := range ex.Events {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
}

// Run runs a command (its words after the flags) and writes its output.
func Run(ctx context.Context, c client.Reader, w io.Writer, cmd []string, o Options) error {
	switch {
	case len(cmd) == 1 && cmd[0] == "pools":
		pools, err := Pools(ctx, c)
		if err != nil {
			return err
		}
		return Write(w, o.Output, pools, func(w io.Writer) { PoolsTable(w, pools) })
	case len(cmd) == 1 && cmd[0] == "peers":
		peers, err := Peers(ctx, c)
		if err != nil {
			return err
		}
		return Write(w, o.Output, peers, func(w io.Writer) { PeersTable(w, peers) })
	case len(cmd) == 1 && cmd[0] == "nodes":
		nodes, err := Nodes(ctx, c)
		if err != nil {
			return err
		}
		return Write(w, o.Output, nodes, func(w io.Writer) { NodesTable(w, nodes) })
	case len(cmd) == 1 && cmd[0] == "status":
		var st Status
		var err error
		if st.Pools, err = Pools(ctx, c); err != nil {
			return err
		}
		if st.Peers, err = Peers(ctx, c); err != nil {
			return err
		}
		if st.Nodes, err = Nodes(ctx, c); err != nil {
			return err
		}
		if st.Services, err = Services(ctx, c, o); err != nil {
			return err
		}
		return Write(w, o.Output, st, func(w io.Writer) {
			PoolsTable(w, st.Pools)
			fmt.Fprintln(w)
			PeersTable(w, st.Peers)
			fmt.Fprintln(w)
			NodesTable(w, st.Nodes)
			fmt.Fprintln(w)
			ServicesTable(w, st.Services)
		})
	case len(cmd) == 3 && cmd[0] == "explain" && (cmd[1] == "svc" || cmd[1] == "service"):
		ns, name, ok := strings.Cut(cmd[2], "/")
		if !ok || ns == "" || name == "" {
			return fmt.Errorf("explain svc wants NAMESPACE/NAME, got %q", cmd[2])
		}
		ex, err := Explain(ctx, c, ns, name, o)
		if err != nil {
			return err
		}
		return Write(w, o.Output, ex, func(w io.Writer) { ExplanationText(w, ex) })
	}
	return fmt.Errorf("unknown command %q; want status, pools, peers, nodes or explain svc NAMESPACE/NAME", strings.Join(cmd, " "))
}
