package dataplane

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func svc(name string, local bool, ips []string, ports ...corev1.ServicePort) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Generation: 3},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: ports},
	}
	if local {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
	for _, ip := range ips {
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	return s
}

func port(name string, proto corev1.Protocol, p int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Protocol: proto, Port: p}
}

type ep struct {
	addr, node     string
	ready, termina *bool
}

func slice(svcName string, family discoveryv1.AddressType, ports []discoveryv1.EndpointPort, eps ...ep) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: svcName + "-" + string(family), Labels: map[string]string{discoveryv1.LabelServiceName: svcName}},
		AddressType: family, Ports: ports,
	}
	for _, e := range eps {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses: []string{e.addr}, NodeName: ptr.To(e.node),
			Conditions: discoveryv1.EndpointConditions{Ready: e.ready, Terminating: e.termina},
		})
	}
	return s
}

func eport(name string, proto corev1.Protocol, p int32) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: ptr.To(name), Protocol: ptr.To(proto), Port: ptr.To(p)}
}

// scenario builds the golden scenario: Services of both policies, both
// families, a shared EIP, endpoints not ready or terminating, a port with
// another target per family, one without endpoints; source ranges of both
// families (one inside another), and a Service whose only range is invalid
// (restricted to no one).
func scenario(mode Mode) *Table {
	t := NewTable(mode)
	web := svc("web", false, []string{"192.0.2.10", "2001:db8::10"}, port("http", corev1.ProtocolTCP, 80), port("dns", corev1.ProtocolUDP, 53))
	web.Spec.LoadBalancerSourceRanges = []string{"203.0.113.0/24", " 2001:db8:ff::/48", "203.0.113.128/25", "198.51.100.7/32"}
	webSlices := []*discoveryv1.EndpointSlice{
		slice("web", discoveryv1.AddressTypeIPv4,
			[]discoveryv1.EndpointPort{eport("http", corev1.ProtocolTCP, 8080), eport("dns", corev1.ProtocolUDP, 5353)},
			ep{addr: "10.1.0.5", node: "n1"}, ep{addr: "10.2.0.7", node: "n2", ready: ptr.To(true)},
			ep{addr: "10.2.0.8", node: "n2", ready: ptr.To(false)},
			ep{addr: "10.1.0.9", node: "n1", termina: ptr.To(true)}),
		slice("web", discoveryv1.AddressTypeIPv6,
			[]discoveryv1.EndpointPort{eport("http", corev1.ProtocolTCP, 8081)},
			ep{addr: "fd00:1::5", node: "n1"}, ep{addr: "fd00:2::7", node: "n2"}),
	}
	t.Set(compute(web, webSlices, "n1", mode))
	api := svc("api", true, []string{"192.0.2.11"}, port("", "", 443))
	api.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	t.Set(compute(api, []*discoveryv1.EndpointSlice{slice("api", discoveryv1.AddressTypeIPv4,
		[]discoveryv1.EndpointPort{eport("", corev1.ProtocolTCP, 8443)},
		ep{addr: "10.1.0.5", node: "n1"}, ep{addr: "10.1.0.6", node: "n1"}, ep{addr: "10.2.0.7", node: "n2"})}, "n1", mode))
	// Shares 192.0.2.11 with api on another port, and has no endpoints yet.
	shared := svc("shared", false, []string{"192.0.2.11"}, port("", corev1.ProtocolTCP, 8000))
	shared.Spec.LoadBalancerSourceRanges = []string{"not-a-cidr"}
	t.Set(compute(shared, nil, "n1", mode))
	return t
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if string(want) != got {
		t.Errorf("rendered table differs from %s:\n--- got\n%s--- want\n%s", path, got, want)
	}
}

func TestGoldenNftables(t *testing.T) { golden(t, "nftables.golden", scenario(ModeNftables).String()) }

func TestGoldenKubeProxy(t *testing.T) {
	golden(t, "kube-proxy.golden", scenario(ModeKubeProxy).String())
}

func TestComputeLocalUsesOnlyLocalEndpoints(t *testing.T) {
	s := svc("api", true, []string{"192.0.2.11"}, port("", "", 443))
	sl := slice("api", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{eport("", corev1.ProtocolTCP, 8443)},
		ep{addr: "10.1.0.5", node: "n1"}, ep{addr: "10.2.0.7", node: "n2"})
	got := compute(s, []*discoveryv1.EndpointSlice{sl}, "n2", ModeNftables)
	if len(got.Forwards) != 2 || len(got.Forwards[0].Endpoints) != 1 || got.Forwards[0].Internal ||
		got.Forwards[0].Endpoints[0] != (Endpoint{Addr: netip.MustParseAddr("10.2.0.7"), Port: 8443, Local: true}) {
		t.Fatalf("got %+v", got.Forwards)
	}
	// In-cluster clients of a Local Service reach every endpoint.
	in := got.Forwards[1]
	ext := in.Key
	ext.Internal = false
	if !in.Internal || ext != got.Forwards[0].Key || !slices.Equal(in.Endpoints, []Endpoint{
		{Addr: netip.MustParseAddr("10.1.0.5"), Port: 8443}, {Addr: netip.MustParseAddr("10.2.0.7"), Port: 8443, Local: true}}) {
		t.Fatalf("internal forward %+v", in)
	}
	// On a node without a local endpoint: none for outside clients, every
	// endpoint for in-cluster ones.
	got = compute(s, []*discoveryv1.EndpointSlice{sl}, "n3", ModeNftables)
	if len(got.Forwards) != 2 || len(got.Forwards[0].Endpoints) != 0 || len(got.Forwards[1].Endpoints) != 2 {
		t.Fatalf("node without endpoints: %+v", got.Forwards)
	}
	// Cluster Services have no internal forwards (one forward serves all).
	s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	if got = compute(s, []*discoveryv1.EndpointSlice{sl}, "n3", ModeNftables); len(got.Forwards) != 1 {
		t.Fatalf("Cluster: %+v", got.Forwards)
	}
}

func TestComputeSkipsGarbage(t *testing.T) {
	s := svc("x", false, []string{"not-an-ip", "192.0.2.1"}, port("", "ICMP", 1), port("p", corev1.ProtocolTCP, 80))
	sl := slice("x", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{eport("p", corev1.ProtocolTCP, 0), eport("p", corev1.ProtocolUDP, 80)},
		ep{addr: "10.0.0.1", node: "n1"})
	got := compute(s, []*discoveryv1.EndpointSlice{sl}, "n1", ModeNftables)
	if len(got.EIPs) != 1 || len(got.Forwards) != 1 || len(got.Forwards[0].Endpoints) != 0 {
		t.Fatalf("got %+v", got)
	}
}

// TestTableRefcounts: shared parts stay while one user is left, and a
// change touches only what it changes.
func TestTableRefcounts(t *testing.T) {
	tab := scenario(ModeNftables)
	before := tab.String()
	two := Spread{N: 2}
	// 10.1.0.5 is a local endpoint of web's two forwards and of api's
	// external and internal ones; api's spreads are sticky.
	if tab.Spreads[two] != 2 || tab.Spreads[Spread{N: 2, Sticky: true}] != 1 || tab.Hairpin[netip.MustParseAddr("10.1.0.5")] != 4 {
		t.Fatalf("refcounts: spread4/2 %d hairpin %d", tab.Spreads[two], tab.Hairpin[netip.MustParseAddr("10.1.0.5")])
	}
	tc := tab.Delete("ns/api")
	if tab.EIPs[netip.MustParseAddr("192.0.2.11")] != 1 {
		t.Fatalf("shared EIP lost with one user left")
	}
	if _, ok := tab.Forwards[Key{EIP: netip.MustParseAddr("192.0.2.11"), Proto: TCP, Port: 443}]; ok {
		t.Fatal("forward of a deleted Service kept")
	}
	if len(tc.Forwards) != 2 || tc.Empty() {
		t.Fatalf("touched %+v", tc)
	}
	// Setting it back restores the same table.
	api := svc("api", true, []string{"192.0.2.11"}, port("", "", 443))
	api.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	tab.Set(compute(api, []*discoveryv1.EndpointSlice{slice("api", discoveryv1.AddressTypeIPv4,
		[]discoveryv1.EndpointPort{eport("", corev1.ProtocolTCP, 8443)},
		ep{addr: "10.1.0.5", node: "n1"}, ep{addr: "10.1.0.6", node: "n1"}, ep{addr: "10.2.0.7", node: "n2"})}, "n1", ModeNftables))
	if got := tab.String(); got != before {
		t.Fatalf("delete + set changed the table:\n%s\nwant\n%s", got, before)
	}
	for _, k := range tab.Services() {
		tab.Delete(k)
	}
	if len(tab.EIPs)+len(tab.Masq)+len(tab.Hairpin)+len(tab.Forwards)+len(tab.Firewall)+len(tab.Spreads) != 0 {
		t.Fatalf("empty table still holds %s", tab)
	}
}

// TestForwardKeyKeptByFirstOwner: two Services claiming one EIP:port can't
// take each other's traffic.
func TestForwardKeyKeptByFirstOwner(t *testing.T) {
	tab := NewTable(ModeNftables)
	sl := func(name, addr string) []*discoveryv1.EndpointSlice {
		return []*discoveryv1.EndpointSlice{slice(name, discoveryv1.AddressTypeIPv4,
			[]discoveryv1.EndpointPort{eport("", corev1.ProtocolTCP, 80)}, ep{addr: addr, node: "n1"})}
	}
	tab.Set(compute(svc("a", false, []string{"192.0.2.1"}, port("", "", 80)), sl("a", "10.0.0.1"), "n1", ModeNftables))
	tab.Set(compute(svc("b", false, []string{"192.0.2.1"}, port("", "", 80)), sl("b", "10.0.0.2"), "n1", ModeNftables))
	fw := tab.Forwards[Key{EIP: netip.MustParseAddr("192.0.2.1"), Proto: TCP, Port: 80}]
	if len(fw.Endpoints) != 1 || fw.Endpoints[0].Addr != netip.MustParseAddr("10.0.0.1") {
		t.Fatalf("forward taken over: %+v", fw)
	}
}

// compute is Compute with the addresses the test Service's status shows (in
// a cluster they come from its EIPAllocation records).
func compute(s *corev1.Service, eps []*discoveryv1.EndpointSlice, node string, mode Mode) Service {
	var eips []netip.Addr
	for _, ing := range s.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(ing.IP); err == nil {
			eips = append(eips, a)
		}
	}
	return Compute(s, eips, eps, node, mode)
}
