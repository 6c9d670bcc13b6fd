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
func BenchmarkApplyOneEndpointChange(b *testing.B) { benchApply(b, benchServices) }

// BenchmarkApplyOneEndpointChange100k: the same with 100,000 Services; it
// costs what it costs with 10,000.
func BenchmarkApplyOneEndpointChange100k(b *testing.B) { benchApply(b, 10*benchServices) }

func benchApply(b *testing.B, services int) {
	_, fd := labNS(b)
	w := newWriter(b, fd, dataplane.ModeNftables)
	d := bigTable(services)
	if err := w.Sync(d); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		n := i % services
		eip := bigEIP(n)
		a := netip.AddrFrom4([4]byte{172, 16, byte(n >> 8), byte(n)})
		other := netip.AddrFrom4([4]byte{172, 18 + byte(i/services%2), byte(n >> 8), byte(n)})
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
		if w.Transactions() != 1 {
			b.Fatalf("Sync took %d transactions, want 1", w.Transactions())
		}
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
	if len(w.m.count) != benchServices || len(w.m.dnat) != benchServices || len(w.m.spread) != 1 {
		b.Fatalf("Load found %d count, %d dnat forwards, %d spread chains", len(w.m.count), len(w.m.dnat), len(w.m.spread))
	}
	for k, slots := range w.m.dnat {
		if len(slots) != 2 || w.m.count[k] != 2 {
			b.Fatalf("Load found %v with count %d", slots, w.m.count[k])
		}
	}
}
