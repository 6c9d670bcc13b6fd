package announce

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/eiplb/eiplb/pkg/bgp/route"
)

const svcKey = "default/web"

// node is a Ready, schedulable node with the given addresses.
func node(name string, addrs ...string) Node {
	n := Node{Name: name, Ready: true}
	for _, a := range addrs {
		n.Addresses = append(n.Addresses, netip.MustParseAddr(a))
	}
	return n
}

func withLabels(n Node, kv ...string) Node {
	n.Labels = map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		n.Labels[kv[i]] = kv[i+1]
	}
	return n
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, 0, len(ss))
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func clusterSvc(as ...string) Service {
	return Service{Key: svcKey, Addrs: addrs(as...), PoolLabels: map[string]string{"pool": "public"}}
}

func localSvc(eps map[string]int, as ...string) Service {
	s := clusterSvc(as...)
	s.Local = true
	s.Endpoints = eps
	return s
}

// Communities used to tell advertisements apart.
const (
	commA = 65000<<16 | 1
	commB = 65000<<16 | 2
	commC = 65000<<16 | 3
)

var defaultAttrs = route.Attributes{
	Communities:      []uint32{commA},
	LargeCommunities: []route.LargeCommunity{{Global: 65000, Local1: 1, Local2: 2}},
	LocalPref:        150,
}

func defaultAdv() Advertisement {
	return Advertisement{Name: "default", Attrs: defaultAttrs}
}

func path(prefix, nh string, attrs route.Attributes) route.Path {
	return route.Path{Prefix: netip.MustParsePrefix(prefix), NextHop: netip.MustParseAddr(nh), Attrs: attrs}
}

func withBW(a route.Attributes, bw float32) route.Attributes {
	a.LinkBandwidth = bw
	return a
}

func attrsEqual(a, b route.Attributes) bool {
	return a.LocalPref == b.LocalPref && a.LinkBandwidth == b.LinkBandwidth &&
		slices.Equal(a.Communities, b.Communities) && slices.Equal(a.LargeCommunities, b.LargeCommunities)
}

func pathEqual(a, b route.Path) bool {
	return a.Prefix == b.Prefix && a.NextHop == b.NextHop && attrsEqual(a.Attrs, b.Attrs)
}

func fmtPaths(ps []route.Path) string {
	var sb strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&sb, "\n\t%s via %s %+v", p.Prefix, p.NextHop, p.Attrs)
	}
	if len(ps) == 0 {
		sb.WriteString(" (none)")
	}
	return sb.String()
}

// checkResult compares every field of a Result; nil and empty slices are
// the same.
func checkResult(t *testing.T, got, want Result) {
	t.Helper()
	if got.Reason != want.Reason {
		t.Errorf("Reason = %q, want %q", got.Reason, want.Reason)
	}
	if !slices.Equal(got.NextHops, want.NextHops) {
		t.Errorf("NextHops = %q, want %q", got.NextHops, want.NextHops)
	}
	if !slices.EqualFunc(got.Paths, want.Paths, pathEqual) {
		t.Errorf("Paths:%s\nwant:%s", fmtPaths(got.Paths), fmtPaths(want.Paths))
	}
}

func TestDesired(t *testing.T) {
	allowAllBut := func(refused string) Eligible {
		return func(n string, s Service) bool {
			// Refusing every node when the key is wrong makes a test fail
			// if Desired passes something other than the Service.
			return s.Key == svcKey && len(s.Addrs) > 0 && n != refused
		}
	}
	onlyBGPNodes := defaultAdv()
	onlyBGPNodes.NodeSelector = labels.SelectorFromSet(labels.Set{"bgp": "yes"})
	agg := defaultAdv()
	agg.AggregationV4, agg.AggregationV6 = 24, 64
	otherPool := defaultAdv()
	otherPool.PoolSelector = labels.SelectorFromSet(labels.Set{"pool": "private"})

	for _, tc := range []struct {
		name     string
		svc      Service
		nodes    []Node
		advs     []Advertisement
		eligible Eligible
		want     Result
	}{
		{
			name: "cluster: one path per node, first address of the family",
			svc:  clusterSvc("192.0.2.10"),
			nodes: []Node{
				node("a", "10.0.0.1", "10.0.1.1"),
				node("b", "fd00::2", "10.0.0.2", "10.0.1.2"),
				node("c", "10.0.0.3"),
			},
			advs: []Advertisement{defaultAdv()},
			want: Result{
				Paths: []route.Path{
					path("192.0.2.10/32", "10.0.0.1", defaultAttrs),
					path("192.0.2.10/32", "10.0.0.2", defaultAttrs),
					path("192.0.2.10/32", "10.0.0.3", defaultAttrs),
				},
				NextHops: []string{"a", "b", "c"},
				Reason:   ReasonAnnounced,
			},
		},
		{
			name: "cluster: Eligible nil means every node",
			svc:  clusterSvc("2001:db8::10"),
			nodes: []Node{
				node("a", "10.0.0.1", "fd00::1", "fd00::11"),
				node("b", "fd00::2"),
			},
			advs: []Advertisement{defaultAdv()},
			want: Result{
				Paths: []route.Path{
					path("2001:db8::10/128", "fd00::1", defaultAttrs),
					path("2001:db8::10/128", "fd00::2", defaultAttrs),
				},
				NextHops: []string{"a", "b"},
				Reason:   ReasonAnnounced,
			},
		},
		{
			name:  "not ready node is not a next hop",
			svc:   clusterSvc("192.0.2.10"),
			nodes: []Node{node("good", "10.0.0.1"), func() Node { n := node("bad", "10.0.0.2"); n.Ready = false; return n }()},
			advs:  []Advertisement{defaultAdv()},
			want: Result{
				Paths:    []route.Path{path("192.0.2.10/32", "10.0.0.1", defaultAttrs)},
				NextHops: []string{"good"},
				Reason:   ReasonAnnounced,
			},
		},
		{
			name:  "cordoned node is not a next hop",
			svc:   clusterSvc("192.0.2.10"),
			nodes: []Node{func() Node { n := node("bad", "10.0.0.2"); n.Unschedulable = true; return n }(), node("good", "10.0.0.1")},
			advs:  []Advertisement{defaultAdv()},
			want: Result{
				Paths:    []route.Path{path("192.0.2.10/32", "10.0.0.1", defaultAttrs)},
				NextHops: []string{"good"},
				Reason:   ReasonAnnounced,
			},
		},
		{
			name: "excluded node is not a next hop, whatever the label value",
			svc:  clusterSvc("192.0.2.10"),
			nodes: []Node{
				withLabels(node("bad1", "10.0.0.2"), ExcludeLabel, ""),
				withLabels(node("bad2", "10.0.0.3"), ExcludeLabel, "true"),
				withLabels(node("good", "10.0.0.1"), "other", "x"),
			},
			advs: []Advertisement{defaultAdv()},
			want: Result{
				Paths:    []route.Path{path("192.0.2.10/32", "10.0.0.1", defaultAttrs)},
				NextHops: []string{"good"},
				Reason:   ReasonAnnounced,
			},
		},
		{
			name: "node outside the advertisement's NodeSelector is not a next hop",
			svc:  clusterSvc("192.0.2.10"),
			nodes: []Node{
				withLabels(node("good", "10.0.0.1"), "bgp", "yes"),
				withLabels(node("wrong-value", "10.0.0.2"), "bgp", "no"),
				node("no-labels", "10.0.0.3"),
			},
			advs: []Advertisement{onlyBGPNodes},
			want: Result{
				Paths:    []route.Path{path("192.0.2.10/32", "10.0.0.1", defaultAttrs)},
				NextHops: []string{"good"},
				Reason:   ReasonAnnounced,
			},
		},
		{
			name:     "node refused by Eligible is not a next hop",
			svc:      clusterSvc("192.0.2.10"),
			nodes:    []Node{node("good", "10.0.0.1"), node("refused", "10.0.0.2")},
			advs:     []Advertisement{defaultAdv()},
			eligible: allowAllBut("refused"),
			want: Result{
				Paths:    []route.Path{path("192.0.2.10/32", "10.0.0.1", defaultAttrs)},
				NextHops: []string{"good"},
				Reason:   ReasonAnnounced,
			},
		},
		{
			name: "every node out: NoEligibleNode",
			svc:  clusterSvc("192.0.2.10"),
			nodes: []Node{
				func() Node { n := node("notready", "10.0.0.1"); n.Ready = false; return n }(),
				func() Node { n := node("cordoned", "10.0.0.2"); n.Unschedulable = true; return n }(),
				withLabels(node("excluded", "10.0.0.3"), ExcludeLabel, "", "bgp", "yes"),
				node("unselected", "10.0.0.4"),
				withLabels(node("refused", "10.0.0.5"), "bgp", "yes"),
			},
			advs:     []Advertisement{onlyBGPNodes},
			eligible: allowAllBut("refused"),
			want:     Result{Reason: ReasonNoEligibleNode},
		},
		{
			name: "no nodes: NoEligibleNode",
			svc:  clusterSvc("192.0.2.10"),
			advs: []Advertisement{defaultAdv()},
			want: Result{Reason: ReasonNoEligibleNode},
		},
		{
			name: "eligible nodes without an address of the family: NoEligibleNode",
			svc:  clusterSvc("192.0.2.10"),
			nodes: []Node{
				node("v6only", "fd00::1"),
				node("none"),
			},
			advs: []Advertisement{defaultAdv()},
			want: Result{Reason: ReasonNoEligibleNode},
		},
		{
			name: "local: only nodes with endpoints, bandwidth per endpoint",
			svc:  localSvc(map[string]int{"a": 3, "b": 0, "c": 1}, "192.0.2.10"),
			nodes: []Node{
				node("a", "10.0.0.1"),
				node("b", "10.0.0.2"),
				node("c", "10.0.0.3"),
				node("d", "10.0.0.4"), // not in Endpoints at all
			},
			advs: []Advertisement{defaultAdv()},
			want: Result{
				Paths: []route.Path{
					path("192.0.2.10/32", "10.0.0.1", withBW(defaultAttrs, 3*BandwidthPerEndpoint)),
					path("192.0.2.10/32", "10.0.0.3", withBW(defaultAttrs, 1*BandwidthPerEndpoint)),
				},
				NextHops: []string{"a", "c"},
				Reason:   ReasonAnnounced,
			},
		},
		{
			name: "local: bandwidth replaces the advertisement's, one per address",
			svc:  localSvc(map[string]int{"a": 2}, "192.0.2.10", "2001:db8::10"),
			nodes: []Node{
				node("a", "10.0.0.1", "fd00::1"),
			},
			advs: []Advertisement{{Name: "x", Attrs: withBW(defaultAttrs, 42)}},
			want: Result{
				Paths: []route.Path{
					path("192.0.2.10/32", "10.0.0.1", withBW(defaultAttrs, 2*BandwidthPerEndpoint)),
					path("2001:db8::10/128", "fd00::1", withBW(defaultAttrs, 2*BandwidthPerEndpoint)),
				},
				NextHops: []string{"a"},
				Reason:   ReasonAnnounced,
			},
		},
		{
			name: "local: endpoints on nodes that are out do not count",
			svc:  localSvc(map[string]int{"notready": 1, "excluded": 1, "refused": 1, "good": 4}, "192.0.2.10"),
			nodes: []Node{
				func() Node { n := node("notready", "10.0.0.1"); n.Ready = false; return n }(),
				withLabels(node("excluded", "10.0.0.2"), ExcludeLabel, ""),
				node("refused", "10.0.0.3"),
				node("good", "10.0.0.4"),
			},
			advs:     []Advertisement{defaultAdv()},
			eligible: allowAllBut("refused"),
			want: Result{
				Paths:    []route.Path{path("192.0.2.10/32", "10.0.0.4", withBW(defaultAttrs, 4*BandwidthPerEndpoint))},
				NextHops: []string{"good"},
				Reason:   ReasonAnnounced,
			},
		},
		{
			name: "local: eligible nodes without endpoints: NoLocalEndpoints",
			svc:  localSvc(map[string]int{"a": 0, "excluded": 2}, "192.0.2.10"),
			nodes: []Node{
				node("a", "10.0.0.1"),
				node("b", "10.0.0.2"),
				withLabels(node("excluded", "10.0.0.3"), ExcludeLabel, ""),
			},
			advs: []Advertisement{defaultAdv()},
			want: Result{Reason: ReasonNoLocalEndpoints},
		},
		{
			name:  "local: nil Endpoints: NoLocalEndpoints",
			svc:   localSvc(nil, "192.0.2.10"),
			nodes: []Node{node("a", "10.0.0.1")},
			advs:  []Advertisement{defaultAdv()},
			want:  Result{Reason: ReasonNoLocalEndpoints},
		},
		{
			name: "local: no eligible node: NoEligibleNode, not NoLocalEndpoints",
			svc:  localSvc(map[string]int{"a": 1}, "192.0.2.10"),
			nodes: []Node{
				func() Node { n := node("a", "10.0.0.1"); n.Ready = false; return n }(),
			},
			advs: []Advertisement{defaultAdv()},
			want: Result{Reason: ReasonNoEligibleNode},
		},
		{
			name:  "no advertisement at all: NoAdvertisement",
			svc:   clusterSvc("192.0.2.10"),
			nodes: []Node{node("a", "10.0.0.1")},
			want:  Result{Reason: ReasonNoAdvertisement},
		},
		{
			name:  "no advertisement selects the pool: NoAdvertisement",
			svc:   clusterSvc("192.0.2.10"),
			nodes: []Node{node("a", "10.0.0.1")},
			advs:  []Advertisement{otherPool},
			want:  Result{Reason: ReasonNoAdvertisement},
		},
		{
			name:  "pool without labels is not selected by a pool selector",
			svc:   Service{Key: svcKey, Addrs: addrs("192.0.2.10")},
			nodes: []Node{node("a", "10.0.0.1")},
			advs:  []Advertisement{otherPool},
			want:  Result{Reason: ReasonNoAdvertisement},
		},
		{
			name: "aggregation: v4 /24, v6 /64",
			svc:  clusterSvc("192.0.2.77", "2001:db8:1:2::5"),
			nodes: []Node{
				node("a", "10.0.0.1", "fd00::1"),
			},
			advs: []Advertisement{agg},
			want: Result{
				Paths: []route.Path{
					path("192.0.2.0/24", "10.0.0.1", defaultAttrs),
					path("2001:db8:1:2::/64", "fd00::1", defaultAttrs),
				},
				NextHops: []string{"a"},
				Reason:   ReasonAnnounced,
			},
		},
		{
			name: "aggregation 0: host routes",
			svc:  clusterSvc("192.0.2.77", "2001:db8:1:2::5"),
			nodes: []Node{
				node("a", "10.0.0.1", "fd00::1"),
			},
			advs: []Advertisement{defaultAdv()},
			want: Result{
				Paths: []route.Path{
					path("192.0.2.77/32", "10.0.0.1", defaultAttrs),
					path("2001:db8:1:2::5/128", "fd00::1", defaultAttrs),
				},
				NextHops: []string{"a"},
				Reason:   ReasonAnnounced,
			},
		},
		{
			name: "dual stack: each family through nodes that have it",
			svc:  clusterSvc("192.0.2.10", "2001:db8::10"),
			nodes: []Node{
				node("v4only", "10.0.0.1"),
				node("both", "10.0.0.2", "fd00::2"),
				node("v6only", "fd00::3"),
				node("none"),
			},
			advs: []Advertisement{defaultAdv()},
			want: Result{
				Paths: []route.Path{
					path("192.0.2.10/32", "10.0.0.1", defaultAttrs),
					path("192.0.2.10/32", "10.0.0.2", defaultAttrs),
					path("2001:db8::10/128", "fd00::2", defaultAttrs),
					path("2001:db8::10/128", "fd00::3", defaultAttrs),
				},
				NextHops: []string{"both", "v4only", "v6only"},
				Reason:   ReasonAnnounced,
			},
		},
		{
			name: "dual stack with only v4 nodes: only v4 paths",
			svc:  clusterSvc("2001:db8::10", "192.0.2.10"),
			nodes: []Node{
				node("a", "10.0.0.1"),
				node("b", "10.0.0.2", "10.0.0.22"),
			},
			advs: []Advertisement{defaultAdv()},
			want: Result{
				Paths: []route.Path{
					path("192.0.2.10/32", "10.0.0.1", defaultAttrs),
					path("192.0.2.10/32", "10.0.0.2", defaultAttrs),
				},
				NextHops: []string{"a", "b"},
				Reason:   ReasonAnnounced,
			},
		},
		{
			name:  "no addresses: NoAddress",
			svc:   clusterSvc(),
			nodes: []Node{node("a", "10.0.0.1")},
			advs:  []Advertisement{defaultAdv()},
			want:  Result{Reason: ReasonNoAddress},
		},
		{
			name:  "no addresses wins over no advertisement",
			svc:   clusterSvc(),
			nodes: []Node{node("a", "10.0.0.1")},
			want:  Result{Reason: ReasonNoAddress},
		},
		{
			name: "sorted: paths by prefix (numerically, v4 first) then next hop; names lexically",
			svc:  clusterSvc("2001:db8::10", "192.0.2.100", "192.0.2.9"),
			nodes: []Node{
				node("node-2", "10.0.0.10", "fd00::10"),
				node("node-10", "10.0.0.9", "fd00::9"),
				node("node-1", "10.0.0.100", "fd00::a"),
			},
			advs: []Advertisement{defaultAdv()},
			want: Result{
				Paths: []route.Path{
					path("192.0.2.9/32", "10.0.0.9", defaultAttrs),
					path("192.0.2.9/32", "10.0.0.10", defaultAttrs),
					path("192.0.2.9/32", "10.0.0.100", defaultAttrs),
					path("192.0.2.100/32", "10.0.0.9", defaultAttrs),
					path("192.0.2.100/32", "10.0.0.10", defaultAttrs),
					path("192.0.2.100/32", "10.0.0.100", defaultAttrs),
					path("2001:db8::10/128", "fd00::9", defaultAttrs),
					path("2001:db8::10/128", "fd00::a", defaultAttrs),
					path("2001:db8::10/128", "fd00::10", defaultAttrs),
				},
				NextHops: []string{"node-1", "node-10", "node-2"},
				Reason:   ReasonAnnounced,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := cloneAdvs(tc.advs)
			got := Desired(tc.svc, tc.nodes, tc.advs, tc.eligible)
			checkResult(t, got, tc.want)
			// Desired must not change the advertisements it was given
			// (e.g. by writing a Local link bandwidth into them).
			for i := range before {
				if !attrsEqual(before[i].Attrs, tc.advs[i].Attrs) {
					t.Errorf("advs[%d].Attrs changed: %+v -> %+v", i, before[i].Attrs, tc.advs[i].Attrs)
				}
			}
		})
	}
}

func cloneAdvs(advs []Advertisement) []Advertisement {
	out := slices.Clone(advs)
	for i := range out {
		out[i].Attrs.Communities = slices.Clone(out[i].Attrs.Communities)
		out[i].Attrs.LargeCommunities = slices.Clone(out[i].Attrs.LargeCommunities)
	}
	return out
}

// permutations returns every ordering of s (small s only).
func permutations[T any](s []T) [][]T {
	if len(s) <= 1 {
		return [][]T{slices.Clone(s)}
	}
	var out [][]T
	for i := range s {
		rest := append(slices.Clone(s[:i]), s[i+1:]...)
		for _, p := range permutations(rest) {
			out = append(out, append([]T{s[i]}, p...))
		}
	}
	return out
}

func TestDesiredLowestNamedAdvertisementWins(t *testing.T) {
	public := labels.SelectorFromSet(labels.Set{"pool": "public"})
	private := labels.SelectorFromSet(labels.Set{"pool": "private"})
	advs := []Advertisement{
		{ // Lowest name, but does not select the pool.
			Name:         "a-private",
			PoolSelector: private,
			Attrs:        route.Attributes{Communities: []uint32{commC}, LocalPref: 300},
		},
		{ // Lowest name that selects the pool: wins.
			Name:         "b-public",
			PoolSelector: public,
			NodeSelector: labels.SelectorFromSet(labels.Set{"zone": "a"}),
			Attrs:        route.Attributes{Communities: []uint32{commA, commB}, LocalPref: 200},
		},
		{ // Selects every pool, higher name.
			Name:  "c-all",
			Attrs: route.Attributes{Communities: []uint32{commC}, LocalPref: 100},
		},
		{
			Name:          "d-public",
			PoolSelector:  public,
			Attrs:         route.Attributes{Communities: []uint32{commB}, LocalPref: 50},
			AggregationV4: 24,
		},
	}
	nodes := []Node{
		withLabels(node("za", "10.0.0.1"), "zone", "a"),
		withLabels(node("zb", "10.0.0.2"), "zone", "b"),
	}
	wantAttrs := route.Attributes{Communities: []uint32{commA, commB}, LocalPref: 200}
	want := Result{
		// b-public's NodeSelector and (absent) aggregation apply too.
		Paths:    []route.Path{path("192.0.2.10/32", "10.0.0.1", wantAttrs)},
		NextHops: []string{"za"},
		Reason:   ReasonAnnounced,
	}
	orders := permutations(advs)
	if len(orders) != 24 {
		t.Fatalf("permutations: %d orders, want 24", len(orders))
	}
	for _, order := range orders {
		var names []string
		for _, a := range order {
			names = append(names, a.Name)
		}
		t.Run(strings.Join(names, ","), func(t *testing.T) {
			checkResult(t, Desired(clusterSvc("192.0.2.10"), nodes, order, nil), want)
		})
	}

	t.Run("private pool", func(t *testing.T) {
		svc := clusterSvc("192.0.2.10")
		svc.PoolLabels = map[string]string{"pool": "private"}
		want := Result{
			Paths: []route.Path{
				path("192.0.2.10/32", "10.0.0.1", advs[0].Attrs),
				path("192.0.2.10/32", "10.0.0.2", advs[0].Attrs),
			},
			NextHops: []string{"za", "zb"},
			Reason:   ReasonAnnounced,
		}
		checkResult(t, Desired(svc, nodes, reversed(advs), nil), want)
	})
	t.Run("other pool falls back to the catch-all", func(t *testing.T) {
		svc := clusterSvc("192.0.2.10")
		svc.PoolLabels = map[string]string{"pool": "lab"}
		want := Result{
			Paths: []route.Path{
				path("192.0.2.10/32", "10.0.0.1", advs[2].Attrs),
				path("192.0.2.10/32", "10.0.0.2", advs[2].Attrs),
			},
			NextHops: []string{"za", "zb"},
			Reason:   ReasonAnnounced,
		}
		checkResult(t, Desired(svc, nodes, advs, nil), want)
	})
}

// TestDesiredDeterministic checks that neither the order of nodes nor that
// of the Service's addresses changes the result.
func TestDesiredDeterministic(t *testing.T) {
	nodes := []Node{
		node("n3", "10.0.0.3", "fd00::3"),
		node("n1", "10.0.0.1"),
		node("n2", "fd00::2", "10.0.0.2"),
		node("n4", "fd00::4"),
	}
	svcAddrs := addrs("2001:db8::20", "192.0.2.20", "192.0.2.3", "2001:db8::3")
	eps := map[string]int{"n1": 1, "n2": 2, "n3": 3, "n4": 4}
	for _, local := range []bool{false, true} {
		t.Run(fmt.Sprintf("local=%v", local), func(t *testing.T) {
			bw := func(n int) route.Attributes {
				if !local {
					return defaultAttrs
				}
				return withBW(defaultAttrs, float32(n)*BandwidthPerEndpoint)
			}
			want := Result{
				Paths: []route.Path{
					path("192.0.2.3/32", "10.0.0.1", bw(1)),
					path("192.0.2.3/32", "10.0.0.2", bw(2)),
					path("192.0.2.3/32", "10.0.0.3", bw(3)),
					path("192.0.2.20/32", "10.0.0.1", bw(1)),
					path("192.0.2.20/32", "10.0.0.2", bw(2)),
					path("192.0.2.20/32", "10.0.0.3", bw(3)),
					path("2001:db8::3/128", "fd00::2", bw(2)),
					path("2001:db8::3/128", "fd00::3", bw(3)),
					path("2001:db8::3/128", "fd00::4", bw(4)),
					path("2001:db8::20/128", "fd00::2", bw(2)),
					path("2001:db8::20/128", "fd00::3", bw(3)),
					path("2001:db8::20/128", "fd00::4", bw(4)),
				},
				NextHops: []string{"n1", "n2", "n3", "n4"},
				Reason:   ReasonAnnounced,
			}
			addrOrders := [][]netip.Addr{svcAddrs, reversed(svcAddrs), rotate(svcAddrs, 1)}
			for i, nodeOrder := range permutations(nodes) {
				for j, ao := range addrOrders {
					svc := clusterSvc()
					svc.Addrs = ao
					svc.Local = local
					svc.Endpoints = eps
					got := Desired(svc, nodeOrder, []Advertisement{defaultAdv()}, nil)
					t.Run(fmt.Sprintf("nodes%d/addrs%d", i, j), func(t *testing.T) { checkResult(t, got, want) })
				}
			}
		})
	}
}

func rotate[T any](s []T, k int) []T {
	return append(slices.Clone(s[k:]), s[:k]...)
}

func BenchmarkDesired(b *testing.B) {
	nodes := make([]Node, 100)
	for i := range nodes {
		nodes[i] = Node{
			Name:   fmt.Sprintf("node-%03d", 99-i), // reversed: the sort has work to do
			Labels: map[string]string{"kubernetes.io/os": "linux"},
			Ready:  true,
			Addresses: []netip.Addr{
				netip.AddrFrom4([4]byte{10, 0, byte(i / 256), byte(i % 256)}),
				netip.MustParseAddr(fmt.Sprintf("fd00::%x", i+1)),
			},
		}
	}
	svc := clusterSvc("192.0.2.10")
	advs := []Advertisement{
		{Name: "z", PoolSelector: labels.SelectorFromSet(labels.Set{"pool": "private"})},
		{
			Name:         "default",
			PoolSelector: labels.SelectorFromSet(labels.Set{"pool": "public"}),
			NodeSelector: labels.SelectorFromSet(labels.Set{"kubernetes.io/os": "linux"}),
			Attrs:        defaultAttrs,
		},
	}
	eligible := func(string, Service) bool { return true }
	if got := Desired(svc, nodes, advs, eligible); len(got.Paths) != 100 || len(got.NextHops) != 100 {
		b.Fatalf("Desired: %d paths, %d next hops, want 100 each", len(got.Paths), len(got.NextHops))
	}
	b.ReportAllocs()
	for b.Loop() {
		Desired(svc, nodes, advs, eligible)
	}
}

func reversed[T any](s []T) []T {
	out := slices.Clone(s)
	slices.Reverse(out)
	return out
}

// TestDesiredAggregatesToOnePath: two addresses in one aggregate make one
// path per node, not two.
func TestDesiredAggregatesToOnePath(t *testing.T) {
	svc := Service{Key: "ns/a", Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")}}
	nodes := []Node{{Name: "n1", Ready: true, Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}}
	res := Desired(svc, nodes, []Advertisement{{Name: "a", AggregationV4: 24}}, nil)
	want := []route.Path{{Prefix: netip.MustParsePrefix("192.0.2.0/24"), NextHop: netip.MustParseAddr("10.0.0.1")}}
	if !reflect.DeepEqual(res.Paths, want) || res.Reason != ReasonAnnounced {
		t.Fatalf("got %+v, want one path %+v", res, want)
	}
}

// TestDesiredLocalWrongFamilyIsNoEligibleNode: a node without an address of
// the Service's family is not eligible, whatever its endpoints.
func TestDesiredLocalWrongFamilyIsNoEligibleNode(t *testing.T) {
	svc := Service{Key: "ns/a", Local: true, Addrs: []netip.Addr{netip.MustParseAddr("2001:db8::1")}, Endpoints: map[string]int{"n1": 2}}
	nodes := []Node{{Name: "n1", Ready: true, Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}}
	if res := Desired(svc, nodes, []Advertisement{{Name: "a"}}, nil); res.Reason != ReasonNoEligibleNode || len(res.Paths) != 0 {
		t.Fatalf("got %+v, want NoEligibleNode", res)
	}
}

// TestDesiredCarriesPeerRestriction: the peers resolved from the
// advertisement's selector go on every path (nil: every peer).
func TestDesiredCarriesPeerRestriction(t *testing.T) {
	svc := Service{Key: "ns/a", Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}
	nodes := []Node{{Name: "n1", Ready: true, Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}}
	peers := []netip.Addr{netip.MustParseAddr("192.168.0.1")}
	res := Desired(svc, nodes, []Advertisement{{Name: "a", Peers: peers}}, nil)
	if len(res.Paths) != 1 || !reflect.DeepEqual(res.Paths[0].Peers, peers) {
		t.Fatalf("got %+v, want one path restricted to %v", res.Paths, peers)
	}
	if res := Desired(svc, nodes, []Advertisement{{Name: "a"}}, nil); len(res.Paths) != 1 || res.Paths[0].Peers != nil {
		t.Fatalf("got %+v, want one unrestricted path", res.Paths)
	}
}
