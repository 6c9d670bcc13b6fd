package dataplane

import (
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"
)

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// TestSourceRanges: which clients a Service's loadBalancerSourceRanges
// admit on an EIP of each family, as kube-proxy reads the field (trimmed,
// sloppy, masked), except where eiplb fails closed on purpose.
func TestSourceRanges(t *testing.T) {
	v4, v6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	cases := []struct {
		name             string
		ranges           []string
		restrict4, rest6 bool
		want4, want6     []netip.Prefix
		invalid          []string
	}{
		{name: "none"},
		{name: "blank entries only", ranges: []string{"", "  "}},
		{name: "several of each family", ranges: []string{"203.0.113.0/24", "2001:db8:ff::/48", "198.51.100.0/24", "fd00::/8"},
			restrict4: true, rest6: true,
			want4: prefixes("198.51.100.0/24", "203.0.113.0/24"), want6: prefixes("2001:db8:ff::/48", "fd00::/8")},
		{name: "padded, host bits, leading zeros (kube-proxy's sloppy parse)", ranges: []string{" 10.1.2.3/16 ", "010.020.0.0/16"},
			restrict4: true, rest6: true, want4: prefixes("10.1.0.0/16", "10.20.0.0/16")},
		{name: "nested ranges: the outer one", ranges: []string{"10.1.0.0/16", "10.0.0.0/8", "10.2.3.4/32", "11.0.0.0/8"},
			restrict4: true, rest6: true, want4: prefixes("10.0.0.0/8", "11.0.0.0/8")},
		{name: "zero prefix admits every client of its family only", ranges: []string{"0.0.0.0/0", "2001:db8::/32"},
			rest6: true, want6: prefixes("2001:db8::/32")},
		{name: "::/0", ranges: []string{"::/0", "192.0.2.0/24"}, restrict4: true, want4: prefixes("192.0.2.0/24")},
		{name: "only invalid: refuses everyone (kube-proxy: open)", ranges: []string{"office", "10.0.0.0/33"},
			restrict4: true, rest6: true, invalid: []string{"office", "10.0.0.0/33"}},
		{name: "invalid beside valid: the valid ones", ranges: []string{"10.0.0.0/8", "10.0.0.0/8/8"},
			restrict4: true, rest6: true, want4: prefixes("10.0.0.0/8"), invalid: []string{"10.0.0.0/8/8"}},
		{name: "IPv4 ranges only: IPv6 refused (kube-proxy: open)", ranges: []string{"203.0.113.0/24"},
			restrict4: true, rest6: true, want4: prefixes("203.0.113.0/24")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := SourceRanges(&corev1.Service{Spec: corev1.ServiceSpec{LoadBalancerSourceRanges: tc.ranges}})
			r4, s4 := r.For(v4)
			r6, s6 := r.For(v6)
			if r4 != tc.restrict4 || r6 != tc.rest6 || !slices.Equal(s4, tc.want4) || !slices.Equal(s6, tc.want6) {
				t.Errorf("v4 %v %v, v6 %v %v; want v4 %v %v, v6 %v %v", r4, s4, r6, s6, tc.restrict4, tc.want4, tc.rest6, tc.want6)
			}
			if !slices.Equal(r.Invalid, tc.invalid) {
				t.Errorf("invalid %q, want %q", r.Invalid, tc.invalid)
			}
		})
	}
}

// TestComputeRestrictsEveryForward: every port and EIP of a Service with
// source ranges is restricted, with or without endpoints.
func TestComputeRestrictsEveryForward(t *testing.T) {
	s := svc("x", false, []string{"192.0.2.1", "2001:db8::1"}, port("a", corev1.ProtocolTCP, 80), port("b", corev1.ProtocolUDP, 53))
	s.Spec.LoadBalancerSourceRanges = []string{"203.0.113.0/24"}
	got := compute(s, nil, "n1", ModeNftables)
	if len(got.Forwards) != 4 {
		t.Fatalf("forwards %+v", got.Forwards)
	}
	for _, fw := range got.Forwards {
		want := prefixes("203.0.113.0/24")
		if fw.EIP.Is6() {
			want = nil
		}
		if !fw.Restricted || !slices.Equal(fw.Sources, want) {
			t.Errorf("%s: restricted %v to %v, want %v", fw.Key, fw.Restricted, fw.Sources, want)
		}
	}
	tab := NewTable(ModeNftables)
	tab.Set(got)
	if len(tab.Firewall) != 4 || len(tab.Forwards) != 0 {
		t.Fatalf("firewall %v forwards %v", tab.Firewall, tab.Forwards)
	}
	s.Spec.LoadBalancerSourceRanges = nil
	tc := tab.Set(compute(s, nil, "n1", ModeNftables))
	if len(tab.Firewall) != 0 || len(tc.Firewall) != 4 {
		t.Fatalf("ranges removed: firewall %v, touched %v", tab.Firewall, tc.Firewall)
	}
}

// TestComputeTerminatingFallback: a forward with no ready endpoint (in
// its scope: this node under Local) uses the endpoints that are terminating
// but still serving, as kube-proxy does; never those that stopped serving,
// and never while a ready one exists.
func TestComputeTerminatingFallback(t *testing.T) {
	term := func(addr, node string, serving *bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{addr}, NodeName: ptr.To(node),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: serving, Terminating: ptr.To(true)}}
	}
	readyEp := func(addr, node string) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{addr}, NodeName: ptr.To(node),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)}}
	}
	cases := []struct {
		name  string
		local bool
		eps   []discoveryv1.Endpoint
		want  []string
	}{
		{name: "cluster: ready wins over terminating", eps: []discoveryv1.Endpoint{readyEp("10.0.0.1", "n2"), term("10.0.0.2", "n1", ptr.To(true))},
			want: []string{"10.0.0.1"}},
		{name: "cluster: no ready, serving terminating ones", eps: []discoveryv1.Endpoint{term("10.0.0.2", "n1", ptr.To(true)), term("10.0.0.3", "n2", nil), term("10.0.0.4", "n2", ptr.To(false))},
			want: []string{"10.0.0.2", "10.0.0.3"}},
		{name: "local: a ready endpoint elsewhere doesn't stop this node's fallback", local: true,
			eps:  []discoveryv1.Endpoint{readyEp("10.0.0.1", "n2"), term("10.0.0.2", "n1", ptr.To(true))},
			want: []string{"10.0.0.2"}},
		{name: "local: a local ready endpoint wins", local: true,
			eps:  []discoveryv1.Endpoint{readyEp("10.0.0.1", "n1"), term("10.0.0.2", "n1", ptr.To(true))},
			want: []string{"10.0.0.1"}},
		{name: "local: terminating elsewhere only: nothing", local: true, eps: []discoveryv1.Endpoint{term("10.0.0.2", "n2", ptr.To(true))}},
		{name: "not serving: nothing", eps: []discoveryv1.Endpoint{term("10.0.0.2", "n1", ptr.To(false))}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := svc("x", tc.local, []string{"192.0.2.1"}, port("", corev1.ProtocolTCP, 80))
			sl := slice("x", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{eport("", corev1.ProtocolTCP, 8080)})
			sl.Endpoints = tc.eps
			got := compute(s, []*discoveryv1.EndpointSlice{sl}, "n1", ModeNftables)
			var addrs []string
			for _, e := range got.Forwards[0].Endpoints {
				addrs = append(addrs, e.Addr.String())
			}
			if !slices.Equal(addrs, tc.want) {
				t.Errorf("endpoints %v, want %v", addrs, tc.want)
			}
		})
	}
}

func TestSourceRangeProblems(t *testing.T) {
	v4, v6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	quote := func(s string) string { return "'" + s + "'" }
	cases := []struct {
		ranges []string
		eips   []netip.Addr
		want   string
	}{
		{ranges: nil, eips: []netip.Addr{v4, v6}},
		{ranges: []string{"10.0.0.0/8"}, eips: []netip.Addr{v4}},
		{ranges: []string{"10.0.0.0/8", "::/0"}, eips: []netip.Addr{v4, v6}},
		{ranges: []string{"10.0.0.0/8"}, eips: []netip.Addr{v4, v6},
			want: "no valid IPv6 range: the IPv6 address admits no client (add ::/0 to admit every one)"},
		{ranges: []string{"office", "10.0.0.0/8"}, eips: []netip.Addr{v4},
			want: "loadBalancerSourceRanges entries that are not CIDRs are skipped: 'office'"},
		{ranges: []string{"a", "b", "c", "d", "e", "f", "g"}, eips: []netip.Addr{v4},
			want: "loadBalancerSourceRanges entries that are not CIDRs are skipped: 'a', 'b', 'c', 'd', 'e' and 2 more; " +
				"no valid IPv4 range: the IPv4 address admits no client (add 0.0.0.0/0 to admit every one)"},
	}
	for _, tc := range cases {
		r := SourceRanges(&corev1.Service{Spec: corev1.ServiceSpec{LoadBalancerSourceRanges: tc.ranges}})
		if got := r.Problems(tc.eips, quote); got != tc.want {
			t.Errorf("%q on %v: %q, want %q", tc.ranges, tc.eips, got, tc.want)
		}
	}
}
