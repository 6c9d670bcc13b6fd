//go:build privileged

package scenarios_test

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/eiplb/eiplb/pkg/testenv"
	"github.com/eiplb/eiplb/test/e2e/cluster"
	"github.com/eiplb/eiplb/test/netlab"
)

// The differential test runs the same clients against the same Services
// twice: once with eiplb's data plane (managers at --ip-mode=Proxy, agents
// DNAT) and once with kube-proxy doing the DNAT (managers at
// --ip-mode=VIP, agents at --dataplane=kube-proxy), and compares what each
// client saw. `make e2e-diff` prints the table; `make e2e` runs it.

// diffCase is a Service of the differential test.
type diffCase struct {
	name     string
	local    bool
	ranges   []string
	affinity bool
	pods     [][2]int // {node, pod}
	via      []int    // the router's next hops for it
}

var diffCases = []diffCase{
	{name: "cluster", pods: [][2]int{{1, 0}, {2, 0}}, via: []int{1, 2, 3}},
	{name: "local", local: true, pods: [][2]int{{1, 0}}, via: []int{1}},
	{name: "ranges-client", ranges: []string{cluster.ClientIP + "/32"}, pods: [][2]int{{1, 0}, {2, 0}}, via: []int{1, 2, 3}},
	{name: "ranges-pods", ranges: []string{"10.244.0.0/16"}, pods: [][2]int{{1, 0}, {2, 0}}, via: []int{1, 2, 3}},
	{name: "affinity", affinity: true, pods: [][2]int{{1, 0}, {2, 0}, {3, 0}}, via: []int{1, 2, 3}},
}

// diffClients are the places requests come from: beyond the router, a pod
// and the host of a node with an endpoint of every case (node1), a pod and
// the host of a node without one for most cases (node3).
var diffClients = []string{"outside", "pod@node1", "host@node1", "pod@node3", "host@node3"}

func diffClient(l *cluster.Lab, name string) *netlab.NS {
	switch name {
	case "outside":
		return l.Client
	case "pod@node1":
		return l.Pods[0][1]
	case "host@node1":
		return l.Nodes[0]
	case "pod@node3":
		return l.Pods[2][1]
	case "host@node3":
		return l.Nodes[2]
	}
	panic(name)
}

// ownAddr is the address a client's requests leave with.
func ownAddr(name string) string {
	switch name {
	case "outside":
		return cluster.ClientIP
	case "pod@node1":
		return cluster.PodIP(1, 1)
	case "host@node1":
		return cluster.NodeIP(1)
	case "pod@node3":
		return cluster.PodIP(3, 1)
	case "host@node3":
		return cluster.NodeIP(3)
	}
	panic(name)
}

// outcome is what one client saw of one Service.
type outcome struct {
	Allowed bool
	// Answers counts the answers per pod.
	Answers map[string]int
	// Sources are the client addresses the pods saw: "own" (the client's
	// address), "nodeN" (masqueraded by node N) or the address.
	Sources []string
}

// diffRequests is how many requests an admitted client sends to a case.
const diffRequests = 60

// sticky: one pod answered every request.
func (o outcome) sticky() bool { return len(o.Answers) == 1 }

// spreadOK: every pod of the case got at least a third of its fair share
// (with 60 requests over at most 3 pods, a fair spread falls below it with
// a probability under 1e-4), and no other pod answered.
func (o outcome) spreadOK(pods []string) bool {
	floor := diffRequests / (3 * len(pods))
	for _, p := range pods {
		if o.Answers[p] < floor {
			return false
		}
	}
	for p := range o.Answers {
		if !slices.Contains(pods, p) {
			return false
		}
	}
	return true
}

func (o outcome) String() string {
	if !o.Allowed {
		return "refused"
	}
	pods := slices.Sorted(maps.Keys(o.Answers))
	var b strings.Builder
	for i, p := range pods {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s:%d", p, o.Answers[p])
	}
	return fmt.Sprintf("%s; src %s", b.String(), strings.Join(o.Sources, ","))
}

// diffGet requests http://ip:80/ from ns over a new connection within
// timeout, and returns the answer ("pod client-ip").
func diffGet(ns *netlab.NS, ip string, timeout time.Duration) (string, error) {
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return ns.Dial(ctx, network, addr)
		},
	}}
	resp, err := c.Get("http://" + net.JoinHostPort(ip, "80") + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// observe sends a client's requests to ip. A client none of three tries
// reaches within half a second is refused (the lab answers in
// milliseconds; a dropped SYN gets no answer at all); an admitted one sends
// diffRequests, each of which must be answered.
func observe(t *testing.T, l *cluster.Lab, client, ip string) outcome {
	t.Helper()
	ns := diffClient(l, client)
	o := outcome{Answers: map[string]int{}}
	for range 3 {
		if _, err := diffGet(ns, ip, 500*time.Millisecond); err == nil {
			o.Allowed = true
			break
		}
	}
	if !o.Allowed {
		return o
	}
	srcs := map[string]bool{}
	for range diffRequests {
		out, err := diffGet(ns, ip, 2*time.Second)
		if err != nil {
			t.Errorf("%s to %s: admitted, then %v", client, ip, err)
			continue
		}
		f := strings.Fields(out)
		if len(f) != 2 {
			t.Fatalf("answer %q", out)
		}
		o.Answers[f[0]]++
		srcs[classify(client, f[1])] = true
	}
	o.Sources = slices.Sorted(maps.Keys(srcs))
	return o
}

// classify names the source address a pod saw: "own" (the client's own
// address, or for a host any of its node's), "nodeN" (node N's address on
// the bridge or toward its pods: masqueraded by node N), or the address.
func classify(client, src string) string {
	node := ""
	switch {
	case strings.HasPrefix(src, "192.168.100.1") && len(src) == len("192.168.100.11"):
		node = "node" + src[len(src)-1:]
	case strings.HasPrefix(src, "10.244.") && strings.HasSuffix(src, ".1"):
		node = "node" + strings.TrimSuffix(strings.TrimPrefix(src, "10.244."), ".1")
	}
	switch {
	case src == ownAddr(client):
		return "own"
	case node != "" && strings.HasPrefix(client, "host@") && strings.HasSuffix(client, "@"+node):
		return "own"
	case node != "":
		return node
	}
	return src
}

// programmed waits until the router routes the case's EIP as it says and
// every node's data plane in charge holds it.
func programmed(t *testing.T, l *cluster.Lab, kubeProxy bool, c diffCase, ip string) {
	t.Helper()
	l.Rtr.WaitRoute(t, ip, 15*time.Second, via(c.via...))
	l.WaitProgrammed(t, ip, kubeProxy)
}

// runDiff brings up a lab in one mode and returns every outcome, by case
// and client.
func runDiff(t *testing.T, kubeProxy bool) map[string]map[string]outcome {
	opts := cluster.LabOptions{KubeProxy: "nftables"}
	if kubeProxy {
		opts.ManagerArgs = []string{"--ip-mode=VIP"}
		opts.AgentArgs = []string{"--dataplane=kube-proxy"}
	}
	l := cluster.NewLab(t, api, opts)
	l.Up()
	ns := api.Namespace(t)
	ips := map[string]string{}
	for _, c := range diffCases {
		s := testenv.LoadBalancer(ns, c.name)
		s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
		if c.local {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}
		s.Spec.LoadBalancerSourceRanges = c.ranges
		if c.affinity {
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](10800)}}
		}
		api.Create(t, s)
		l.EndpointPods(t, s, c.pods...)
		ips[c.name] = api.IPs(t, s, 1)[0]
	}
	out := map[string]map[string]outcome{}
	for _, c := range diffCases {
		programmed(t, l, kubeProxy, c, ips[c.name])
		out[c.name] = map[string]outcome{}
		for _, cl := range diffClients {
			out[c.name][cl] = observe(t, l, cl, ips[c.name])
		}
	}
	return out
}

// deliberate says in which aspects eiplb and kube-proxy may differ for a
// client of a case, and why (docs/agent.md says the same to users). An
// aspect named here may also come out the same in a run (it depends on
// which node and endpoint a request met).
func deliberate(c diffCase, client string) map[string]string {
	out := map[string]string{}
	// The client meets an endpoint on the node that DNATs its connection:
	// from outside (any node may be the one), or from a node hosting one.
	onNode := client == "outside"
	for _, p := range c.pods {
		if client == fmt.Sprintf("pod@node%d", p[0]) {
			onNode = true
		}
	}
	if !c.local && onNode {
		out["sources"] = "for a Cluster Service kube-proxy masquerades every connection; eiplb only those it sends to another node, so an endpoint on the node the connection arrived at sees the client's address"
	}
	if c.affinity && client == "outside" {
		out["stickiness"] = "kube-proxy keeps affinity per node, and the router spreads one client's connections over the nodes; eiplb hashes the client address the same way on every node, so the client keeps its pod whichever node the router picks"
	}
	return out
}

func TestDifferential(t *testing.T) {
	var eiplb, kp map[string]map[string]outcome
	if !t.Run("eiplb data plane", func(t *testing.T) { eiplb = runDiff(t, false) }) {
		t.FailNow()
	}
	if !t.Run("kube-proxy VIP", func(t *testing.T) { kp = runDiff(t, true) }) {
		t.FailNow()
	}
	var table strings.Builder
	fmt.Fprintf(&table, "\n%-14s %-11s %-7s %-40s %-40s %s\n", "case", "client", "same", "eiplb", "kube-proxy (VIP)", "deliberate difference")
	for _, c := range diffCases {
		var pods []string
		for _, p := range c.pods {
			pods = append(pods, cluster.PodName(p[0], p[1]))
		}
		for _, cl := range diffClients {
			e, k := eiplb[c.name][cl], kp[c.name][cl]
			why := deliberate(c, cl)
			var diffs []string
			if e.Allowed != k.Allowed {
				diffs = append(diffs, "admission")
			}
			if !slices.Equal(e.Sources, k.Sources) {
				diffs = append(diffs, "sources")
			}
			if c.affinity && e.Allowed && k.Allowed && e.sticky() != k.sticky() {
				diffs = append(diffs, "stickiness")
			}
			same := "yes"
			if len(diffs) > 0 {
				same = "no"
			}
			var notes []string
			for _, aspect := range diffs {
				if why[aspect] == "" {
					t.Errorf("%s from %s: eiplb and kube-proxy differ in %s: eiplb %v, kube-proxy %v", c.name, cl, aspect, e, k)
					continue
				}
				notes = append(notes, aspect+" (deliberate, docs/agent.md)")
			}
			note := strings.Join(notes, "; ")
			if c.affinity {
				if e.Allowed && !e.sticky() {
					t.Errorf("%s from %s: eiplb not sticky: %v", c.name, cl, e)
				}
			} else {
				for mode, o := range map[string]outcome{"eiplb": e, "kube-proxy": k} {
					if o.Allowed && !o.spreadOK(scope(c, cl, pods)) {
						t.Errorf("%s from %s: %s's spread %v is not over %v", c.name, cl, mode, o, scope(c, cl, pods))
					}
				}
			}
			fmt.Fprintf(&table, "%-14s %-11s %-7s %-40s %-40s %s\n", c.name, cl, same, e, k, note)
		}
	}
	t.Log(table.String())
	said := map[string]bool{}
	for _, c := range diffCases {
		for _, cl := range diffClients {
			for aspect, why := range deliberate(c, cl) {
				if !said[aspect] {
					said[aspect] = true
					t.Logf("deliberate difference in %s: %s", aspect, why)
				}
			}
		}
	}
}

// scope is the pods a client's requests to a case may reach: all of them,
// except for a Local Service from outside or from a node with a local
// endpoint (that node's).
func scope(c diffCase, client string, pods []string) []string {
	if !c.local || client == "pod@node3" || client == "host@node3" {
		return pods
	}
	var out []string
	node := "1"
	for _, p := range pods {
		if strings.HasPrefix(p, "pod"+node) {
			out = append(out, p)
		}
	}
	return out
}
