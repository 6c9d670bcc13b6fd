package dataplane

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// services10k builds n Services of one port with two endpoints each (one
// on this node), and their slices.
func servicesN(n int) ([]*corev1.Service, [][]*discoveryv1.EndpointSlice) {
	svcs := make([]*corev1.Service, n)
	eps := make([][]*discoveryv1.EndpointSlice, n)
	for i := range n {
		name := fmt.Sprintf("s%05d", i)
		svcs[i] = svc(name, false, []string{fmt.Sprintf("10.200.%d.%d", i/256, i%256)}, port("", corev1.ProtocolTCP, 80))
		eps[i] = []*discoveryv1.EndpointSlice{slice(name, discoveryv1.AddressTypeIPv4,
			[]discoveryv1.EndpointPort{eport("", corev1.ProtocolTCP, 8080)},
			ep{addr: fmt.Sprintf("10.1.%d.%d", i/256, i%256), node: "n1"},
			ep{addr: fmt.Sprintf("10.2.%d.%d", i/256, i%256), node: "n2"})}
	}
	return svcs, eps
}

// BenchmarkInitialCompute10k: the pure part of an agent's initial sync of
// 10,000 Services (compute every Service and build the table).
func BenchmarkInitialCompute10k(b *testing.B) {
	svcs, eps := servicesN(10000)
	b.ReportAllocs()
	for b.Loop() {
		t := NewTable(ModeNftables)
		for i := range svcs {
			t.Set(compute(svcs[i], eps[i], "n1", ModeNftables))
		}
	}
}

// BenchmarkEndpointChange10k: the pure part of one endpoint change with
// 10,000 Services in the table.
func BenchmarkEndpointChange10k(b *testing.B) {
	svcs, eps := servicesN(10000)
	t := NewTable(ModeNftables)
	for i := range svcs {
		t.Set(compute(svcs[i], eps[i], "n1", ModeNftables))
	}
	alt := []*discoveryv1.EndpointSlice{slice("s00042", discoveryv1.AddressTypeIPv4,
		[]discoveryv1.EndpointPort{eport("", corev1.ProtocolTCP, 8080)}, ep{addr: "10.3.0.1", node: "n3"})}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		e := eps[42]
		if i%2 == 0 {
			e = alt
		}
		i++
		if tc := t.Set(compute(svcs[42], e, "n1", ModeNftables)); tc.Empty() {
			b.Fatal("nothing touched")
		}
	}
}
