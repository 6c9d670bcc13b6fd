package ipam

import (
	"net/netip"
	"strconv"
	"testing"
)

// benchPrefill records every other address of the pool's first range, so
// the pool is half full with the free addresses spread through it.
func benchPrefill(b *testing.B, a *Allocator, p *Pool) int {
	b.Helper()
	n := 0
	r := p.Ranges[0]
	for addr, i := r.First, 0; ; addr, i = addr.Next(), i+1 {
		if i%2 == 0 {
			a.Set(Allocation{Addr: addr, Pool: p.Name, Holders: []Holder{{UID: "pre-" + strconv.Itoa(i), Namespace: "bench", Name: "pre"}}})
			n++
		}
		if addr == r.Last {
			return n
		}
	}
}

func BenchmarkAllocateRelease(b *testing.B) {
	for _, bc := range []struct {
		name, cidr string
		fam        Family
	}{
		{"v4-slash16", "10.0.0.0/16", IPv4},
		{"v6-slash112", "fd00::/112", IPv6},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := newPool(b, "bench", bc.cidr)
			pools := []*Pool{p}
			a := NewAllocator()
			if n := benchPrefill(b, a, p); n != 32768 {
				b.Fatalf("prefilled %d", n)
			}
			req := Request{Namespace: "bench", Name: "svc", Families: []Family{bc.fam}, RequireAll: true}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				req.UID = strconv.Itoa(i)
				i++
				res := a.Allocate(req, pools, nil)
				if len(res.Assignments) != 1 || res.Assignments[0].State != New {
					b.Fatalf("iteration %d: %s", i, fmtResult(res))
				}
				asg := res.Assignments[0]
				a.Set(Allocation{Addr: asg.Addr, Pool: asg.Pool, Holders: []Holder{{UID: req.UID, Namespace: req.Namespace, Name: req.Name}}})
				a.Unreserve(asg.Addr)
				a.Delete(asg.Addr)
			}
			if u := a.Usage("bench", p); u.Allocated[bc.fam] != 32768 {
				b.Fatalf("pool drifted from half full: %+v", u)
			}
		})
	}
}

// BenchmarkAllocateFill fills an empty /16 completely in each iteration; the
// ns/alloc metric is the cost of one allocation.
func BenchmarkAllocateFill(b *testing.B) {
	p := newPool(b, "bench", "10.0.0.0/16")
	pools := []*Pool{p}
	const n = 1 << 16
	uids := make([]string, n)
	for i := range uids {
		uids[i] = strconv.Itoa(i)
	}
	b.ReportAllocs()
	for b.Loop() {
		a := NewAllocator()
		req := Request{Namespace: "bench", Name: "svc", Families: []Family{IPv4}, RequireAll: true}
		for i := range n {
			req.UID = uids[i]
			res := a.Allocate(req, pools, nil)
			if len(res.Assignments) != 1 {
				b.Fatalf("allocation %d: %s", i, fmtResult(res))
			}
			asg := res.Assignments[0]
			a.Set(Allocation{Addr: asg.Addr, Pool: asg.Pool, Holders: []Holder{{UID: req.UID, Namespace: req.Namespace, Name: req.Name}}})
			a.Unreserve(asg.Addr)
		}
		if res := a.Allocate(Request{UID: "full", Families: []Family{IPv4}}, pools, nil); len(res.Failures) != 1 || res.Failures[0].Reason != ReasonPoolExhausted {
			b.Fatalf("pool not full: %s", fmtResult(res))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/alloc")
}

// BenchmarkAllocateHeld re-reconciles a Service that already holds its
// address, with 10,000 allocations recorded.
func BenchmarkAllocateHeld(b *testing.B) {
	p := newPool(b, "bench", "10.0.0.0/16")
	pools := []*Pool{p}
	a := NewAllocator()
	base := netip.MustParseAddr("10.0.0.0")
	addr := base
	for i := range 10000 {
		a.Set(Allocation{Addr: addr, Pool: "bench", Holders: []Holder{{UID: strconv.Itoa(i), Namespace: "bench", Name: "svc-" + strconv.Itoa(i)}}})
		addr = addr.Next()
	}
	req := Request{UID: "5000", Namespace: "bench", Name: "svc-5000", Families: []Family{IPv4}, RequireAll: true}
	b.ReportAllocs()
	for b.Loop() {
		res := a.Allocate(req, pools, nil)
		if len(res.Assignments) != 1 || res.Assignments[0].State != Held || len(res.Release) != 0 {
			b.Fatalf("%s", fmtResult(res))
		}
	}
}
