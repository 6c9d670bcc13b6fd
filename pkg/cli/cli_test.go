package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/ipam"
	"github.com/eiplb/eiplb/pkg/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, func(e *testenv.Env) { env = e }) }

// world writes what the managers would have written: a pool with status, a
// peer with sessions, an announced Service and one that got no address.
func world(t *testing.T) {
	ctx := t.Context()
	c := env.Client
	pool := &v1alpha1.EIPPool{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: v1alpha1.EIPPoolSpec{Addresses: []string{"192.0.2.0/30"}}}
	testenv.Must(t, c.Create(ctx, pool))
	pool.Status = v1alpha1.EIPPoolStatus{Capacity: 4, Allocated: 3, Free: 1, IPv4: &v1alpha1.FamilyUsage{Capacity: 4, Allocated: 3, Free: 1},
		Conditions: []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Ready", LastTransitionTime: metav1.Now()}}}
	testenv.Must(t, c.Status().Update(ctx, pool))

	peer := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "tor1"}, Spec: v1alpha1.BGPPeerSpec{PeerAddress: "192.168.100.1", PeerASN: 65000, LocalASN: 65001}}
	testenv.Must(t, c.Create(ctx, peer))
	peer.Status.Sessions = []v1alpha1.BGPSession{
		{Manager: "node1", State: "Established", BFDState: "Up", PrefixesSent: 3},
		{Manager: "node2", State: "Active", LastError: "connection refused"},
	}
	testenv.Must(t, c.Status().Update(ctx, peer))

	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1"}}
	testenv.Must(t, c.Create(ctx, node))
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.100.11"}}
	testenv.Must(t, c.Status().Update(ctx, node))
	testenv.Must(t, c.Create(ctx, &v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "all"}}))

	up := testenv.LoadBalancer("default", "up")
	testenv.Must(t, c.Create(ctx, up))
	up.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.1"}}
	up.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionIPAllocated, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonAllocated, LastTransitionTime: metav1.Now()}}
	testenv.Must(t, c.Status().Update(ctx, up))
	testenv.Must(t, c.Create(ctx, &v1alpha1.EIPAllocation{ObjectMeta: metav1.ObjectMeta{Name: "192.0.2.1"}, Spec: v1alpha1.EIPAllocationSpec{Address: "192.0.2.1", Pool: "web",
		Services: []v1alpha1.ServiceReference{{Namespace: "default", Name: "up", UID: string(up.UID)}}}}))
	testenv.Must(t, c.Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: "up-1", Labels: map[string]string{discoveryv1.LabelServiceName: "up"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.244.1.2"}, NodeName: ptr.To("node1"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
			{Addresses: []string{"10.244.1.3"}, NodeName: ptr.To("node1"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}}},
	}))
	testenv.Must(t, c.Create(ctx, &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "up.announced"},
		EventTime:  metav1.MicroTime{Time: time.Now()}, ReportingController: "eiplb.io/manager", ReportingInstance: "node1",
		Action: "Announce", Reason: "Announced", Type: corev1.EventTypeNormal, Note: "Announced by node1 via 1 next hops: 192.168.100.11",
		Regarding: corev1.ObjectReference{Kind: "Service", Namespace: "default", Name: "up", UID: up.UID},
	}))

	pending := testenv.LoadBalancer("default", "pending")
	testenv.Must(t, c.Create(ctx, pending))
	pending.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionIPAllocated, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonPoolExhausted,
		Message: "IPv4 not assigned: no free IPv4 address in pool web", LastTransitionTime: metav1.Now()}}
	testenv.Must(t, c.Status().Update(ctx, pending))

	other := testenv.LoadBalancer("default", "other")
	other.Spec.LoadBalancerClass = ptr.To("example.com/other")
	testenv.Must(t, c.Create(ctx, other))
}

func run(t *testing.T, o Options, cmd ...string) string {
	t.Helper()
	var b bytes.Buffer
	if err := Run(t.Context(), env.Client, &b, cmd, o); err != nil {
		t.Fatalf("%v: %v", cmd, err)
	}
	return b.String()
}

func TestCommands(t *testing.T) {
	world(t)

	t.Run("status for people", func(t *testing.T) {
		out := run(t, Options{}, "status")
		for _, want := range []string{
			"web ", "75%", // pool usage
			"tor1", "Established", "Active", "connection refused", // sessions per manager
			"default/up", "192.0.2.1", "node1:1", "Announced by node1", // the ready endpoint only
			"default/pending", "PoolExhausted",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("status lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "default/other") {
			t.Errorf("status shows a Service of another class:\n%s", out)
		}
	})

	t.Run("json and yaml", func(t *testing.T) {
		var st Status
		testenv.Must(t, json.Unmarshal([]byte(run(t, Options{Output: "json"}, "status")), &st))
		if len(st.Pools) != 1 || st.Pools[0].UsedPercent != 75 || len(st.Peers) != 1 || len(st.Peers[0].Sessions) != 2 || len(st.Services) != 2 {
			t.Fatalf("json status: %+v", st)
		}
		for _, sv := range st.Services {
			want := map[string]string{"up": "node1", "pending": ""}[sv.Name]
			if strings.Join(sv.NextHops, ",") != want {
				t.Errorf("%s: next hops %v, want %q (%s)", sv.Name, sv.NextHops, want, sv.Announce)
			}
		}
		var peers []Peer
		testenv.Must(t, yaml.Unmarshal([]byte(run(t, Options{Output: "yaml"}, "peers")), &peers))
		if len(peers) != 1 || peers[0].Sessions[0].BFD != "Up" || peers[0].Sessions[0].PrefixesSent != 3 {
			t.Fatalf("yaml peers: %+v", peers)
		}
		var b bytes.Buffer
		if err := Run(t.Context(), env.Client, &b, []string{"pools"}, Options{Output: "xml"}); err == nil {
			t.Fatal("-o xml accepted")
		}
	})

	t.Run("explain", func(t *testing.T) {
		for _, tc := range []struct{ svc, want string }{
			{"up", "announced via node1 (last announce Event: Announced by node1"},
			{"pending", "no address: PoolExhausted: IPv4 not assigned: no free IPv4 address in pool web"},
			{"other", "not served: loadBalancerClass example.com/other, eiplb serves eiplb.io/bgp"},
		} {
			out := run(t, Options{}, "explain", "svc", "default/"+tc.svc)
			if !strings.Contains(out, tc.want) {
				t.Errorf("explain %s: want %q in:\n%s", tc.svc, tc.want, out)
			}
		}
		out := run(t, Options{}, "explain", "svc", "default/up")
		for _, want := range []string{"recorded in EIPAllocation 192.0.2.1 from pool web", "1 of 1 nodes are Ready", "session from node2 is Active"} {
			if !strings.Contains(out, want) {
				t.Errorf("explain up lacks %q:\n%s", want, out)
			}
		}
		var ex Explanation
		testenv.Must(t, json.Unmarshal([]byte(run(t, Options{Output: "json"}, "explain", "svc", "default/pending")), &ex))
		if !strings.HasPrefix(ex.Verdict, "no address") {
			t.Errorf("json verdict %q", ex.Verdict)
		}
	})

	t.Run("explain without an advertisement", func(t *testing.T) {
		adv := &v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "all"}}
		testenv.Must(t, env.Client.Delete(t.Context(), adv))
		out := run(t, Options{}, "explain", "svc", "default/up")
		if !strings.Contains(out, "not announced: no BGPAdvertisement selects its pool") {
			t.Errorf("explain without an advertisement:\n%s", out)
		}
		testenv.Must(t, env.Client.Create(t.Context(), &v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "all"}}))
	})

	t.Run("programmed, from the managers' EIPNode reports", func(t *testing.T) {
		ctx, c := t.Context(), env.Client
		node2 := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node2"}}
		testenv.Must(t, c.Create(ctx, node2))
		t.Cleanup(func() { _ = c.Delete(ctx, node2) })
		node2.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
		node2.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.100.12"}}
		testenv.Must(t, c.Status().Update(ctx, node2))
		report := func(node string, agents ...v1alpha1.EIPNodeAgent) {
			t.Helper()
			n := &v1alpha1.EIPNode{}
			if err := c.Get(ctx, client.ObjectKey{Name: node}, n); err != nil {
				n = &v1alpha1.EIPNode{ObjectMeta: metav1.ObjectMeta{Name: node}}
				testenv.Must(t, c.Create(ctx, n))
				t.Cleanup(func() { _ = c.Delete(ctx, n) })
			}
			n.Status.Agents = agents
			testenv.Must(t, c.Status().Update(ctx, n))
		}
		up := func(m string, programmed, unprogrammed int32, list ...string) v1alpha1.EIPNodeAgent {
			return v1alpha1.EIPNodeAgent{Manager: m, Phase: v1alpha1.AgentPhaseUp, Programmed: programmed, Unprogrammed: unprogrammed, UnprogrammedServices: list}
		}
		svcUp := func() Service {
			t.Helper()
			var st Status
			testenv.Must(t, json.Unmarshal([]byte(run(t, Options{Output: "json"}, "status")), &st))
			for _, sv := range st.Services {
				if sv.Name == "up" {
					return sv
				}
			}
			t.Fatal("no Service up in status")
			return Service{}
		}

		report("node1", up("m1", 1, 0), up("m2", 1, 0))
		report("node2", up("m1", 0, 1, "default/up"), up("m2", 1, 0))
		sv := svcUp()
		if strings.Join(sv.NextHops, ",") != "node1,node2" || sv.Programmed["node1"] != "yes" || sv.Programmed["node2"] != "yes" {
			t.Errorf("programmed by one of two managers: next hops %v, programmed %v; want both nodes (the router gets the union)", sv.NextHops, sv.Programmed)
		}

		report("node2", up("m1", 0, 1, "default/up"), v1alpha1.EIPNodeAgent{Manager: "m2", Phase: v1alpha1.AgentPhaseUnreachable})
		sv = svcUp()
		if strings.Join(sv.NextHops, ",") != "node1" || sv.Programmed["node2"] != "no" {
			t.Errorf("node2 has not programmed: next hops %v, programmed %v", sv.NextHops, sv.Programmed)
		}
		out := run(t, Options{}, "status")
		for _, want := range []string{"1/2 (node2: no)", "node2  m2       Unreachable", "1 (default/up)"} {
			if !strings.Contains(out, want) {
				t.Errorf("status lacks %q:\n%s", want, out)
			}
		}
		out = run(t, Options{}, "explain", "svc", "default/up")
		if !strings.Contains(out, "not next hops until their agent has programmed the Service: node2 (no)") {
			t.Errorf("explain does not name the unprogrammed node:\n%s", out)
		}

		// A truncated list that does not name the Service: unknown.
		many := make([]string, v1alpha1.MaxUnprogrammedListed)
		for i := range many {
			many[i] = fmt.Sprintf("aaa/s%02d", i)
		}
		report("node2", up("m1", 0, 60, many...))
		if sv := svcUp(); sv.Programmed["node2"] != "unknown" || !slices.Contains(sv.NextHops, "node2") {
			t.Errorf("truncated report: programmed %v, next hops %v; want unknown, counted as a next hop", sv.Programmed, sv.NextHops)
		}

		report("node1", v1alpha1.EIPNodeAgent{Manager: "m1", Phase: v1alpha1.AgentPhaseUnreachable})
		report("node2", up("m1", 0, 1, "default/up"))
		out = run(t, Options{}, "explain", "svc", "default/up")
		if !strings.Contains(out, "not announced: no node's agent is up and has programmed it: node1 (agent Unreachable), node2 (no)") {
			t.Errorf("explain with no programmed node:\n%s", out)
		}
		var nodes []Node
		testenv.Must(t, yaml.Unmarshal([]byte(run(t, Options{Output: "yaml"}, "nodes")), &nodes))
		if len(nodes) != 2 || nodes[1].Name != "node2" || len(nodes[1].Agents) != 1 || nodes[1].Agents[0].UnprogrammedServices[0] != "default/up" {
			t.Errorf("yaml nodes: %+v", nodes)
		}
	})

	t.Run("dual-stack: IPv6 record found, a pod counted once", func(t *testing.T) {
		ctx, c := t.Context(), env.Client
		testenv.Must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ds"}}))
		svc := testenv.LoadBalancer("ds", "web")
		testenv.Must(t, c.Create(ctx, svc))
		// The test API server is IPv4-only; the status is what counts.
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.2"}, {IP: "2001:db8::2"}}
		svc.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionIPAllocated, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonAllocated, LastTransitionTime: metav1.Now()}}
		testenv.Must(t, c.Status().Update(ctx, svc))
		holder := []v1alpha1.ServiceReference{{Namespace: "ds", Name: "web", UID: string(svc.UID)}}
		for _, a := range []string{"192.0.2.2", "2001:db8::2"} {
			addr := netip.MustParseAddr(a)
			testenv.Must(t, c.Create(ctx, &v1alpha1.EIPAllocation{ObjectMeta: metav1.ObjectMeta{Name: ipam.AllocationName(addr)},
				Spec: v1alpha1.EIPAllocationSpec{Address: a, Pool: "web", Services: holder}}))
		}
		pod := &corev1.ObjectReference{Kind: "Pod", Namespace: "ds", Name: "web-1", UID: "6a1f0c1e-0000-4000-8000-000000000001"}
		for fam, addr := range map[discoveryv1.AddressType]string{discoveryv1.AddressTypeIPv4: "10.244.1.9", discoveryv1.AddressTypeIPv6: "fd00:10:244:1::9"} {
			testenv.Must(t, c.Create(ctx, &discoveryv1.EndpointSlice{
				ObjectMeta:  metav1.ObjectMeta{Namespace: "ds", Name: "web-" + strings.ToLower(string(fam)), Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
				AddressType: fam,
				Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{addr}, NodeName: ptr.To("node1"), TargetRef: pod, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
			}))
		}

		out := run(t, Options{}, "explain", "svc", "ds/web")
		for _, want := range []string{"192.0.2.2 is recorded in EIPAllocation 192.0.2.2 from pool web",
			"2001:db8::2 is recorded in EIPAllocation 2001-0db8-0000-0000-0000-0000-0000-0002 from pool web"} {
			if !strings.Contains(out, want) {
				t.Errorf("explain lacks %q:\n%s", want, out)
			}
		}
		var st Status
		testenv.Must(t, json.Unmarshal([]byte(run(t, Options{Output: "json"}, "status")), &st))
		i := slices.IndexFunc(st.Services, func(s Service) bool { return s.Namespace == "ds" })
		if i < 0 || st.Services[i].NodesWithEndpoints["node1"] != 1 {
			t.Errorf("a dual-stack pod (one endpoint in each family's slice) must count once: %+v", st.Services)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		for _, cmd := range [][]string{{"explain", "svc", "nonamespace"}, {"frobnicate"}, {"explain", "svc", "default/missing"}} {
			var b bytes.Buffer
			if err := Run(t.Context(), env.Client, &b, cmd, Options{}); err == nil {
				t.Errorf("%v: no error", cmd)
			}
		}
	})
}

// FuzzParseServiceRef: explain's arguments never panic, and what is
// accepted names a valid Service in a valid (or the context's) namespace.
func FuzzParseServiceRef(f *testing.F) {
	f.Add("svc", "web", "", false)
	f.Add("svc", "team/web", "team", true)
	f.Add("svc/web", "", "x", true)
	f.Add("service", "a/b/c", "", false)
	f.Fuzz(func(t *testing.T, a, b, ns string, nsSet bool) {
		args := []string{a}
		if b != "" {
			args = append(args, b)
		}
		ref, err := ParseServiceRef(args, ns, nsSet)
		if err != nil {
			return
		}
		if ref.Name == "" || strings.Contains(ref.Name, "/") || strings.Contains(ref.Namespace, "/") {
			t.Fatalf("%q -n %q (%v): %+v", args, ns, nsSet, ref)
		}
		if nsSet && ref.Namespace != ns {
			t.Fatalf("%q -n %q: namespace %q", args, ns, ref.Namespace)
		}
	})
}
