//go:build privileged

package nft

import (
	"net/netip"
	"testing"

	"github.com/eiplb/eiplb/pkg/dataplane"
)

const benchServices = 10000

// BenchmarkApplyOneEndpointChange: one Apply replacing one endpoint of one
// Service in a synced table of 10,000 Services.
func BenchmarkApplyOneEndpointChange(b *testing.B) {
	_, fd := labNS(b)
	w := newWriter(b, fd, dataplane.ModeNftables)
	d := bigTable(benchServices)
	if err := w.Sync(d); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		n := i % benchServices
		eip := netip.AddrFrom4([4]byte{10, byte(100 + n>>16), byte(n >> 8), byte(n)})
		a := netip.AddrFrom4([4]byte{172, 16, byte(n >> 8), byte(n)})
		other := netip.AddrFrom4([4]byte{172, 18 + byte(i/benchServices%2), byte(n >> 8), byte(n)})
		k := dataplane.Key{EIP: eip, Proto: dataplane.TCP, Port: 80}
		tc := d.Set(dataplane.Service{
			Key: "big/" + eip.String(), EIPs: []netip.Addr{eip},
			Forwards: []dataplane.Forward{{Key: k, Endpoints: []dataplane.Endpoint{
				{Addr: a, Port: 8080, Local: true}, {Addr: other, Port: 8080},
			}}},
		})
		if err := w.Apply(d, tc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInitialSync: Sync of 10,000 Services into an empty namespace.
func BenchmarkInitialSync(b *testing.B) {
	_, fd := labNS(b)
	d := bigTable(benchServices)
	for b.Loop() {
		b.StopTimer()
		if err := Cleanup(Options{NetNS: fd}); err != nil {
			b.Fatal(err)
		}
		w, err := New(Options{Mode: dataplane.ModeNftables, NetNS: fd})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := w.Sync(d); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		w.Close()
		b.StartTimer()
	}
}

// BenchmarkLoad: Load of a table of 10,000 Services.
func BenchmarkLoad(b *testing.B) {
	_, fd := labNS(b)
	w := newWriter(b, fd, dataplane.ModeNftables)
	d := bigTable(benchServices)
	if err := w.Sync(d); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := w.Load(); err != nil {
			b.Fatal(err)
		}
	}
	if len(w.m.fw) != benchServices || len(w.m.ep) != 2*benchServices || len(w.m.fwd) != benchServices {
		b.Fatalf("Load found %d fw, %d ep chains, %d fwd elements", len(w.m.fw), len(w.m.ep), len(w.m.fwd))
	}
	for k, h := range w.m.fw {
		if h == "" {
			b.Fatalf("no hash loaded for %v", k)
		}
	}
}
