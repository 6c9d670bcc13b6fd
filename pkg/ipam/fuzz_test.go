package ipam

import (
	"fmt"
	"math/big"
	"net/netip"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{
		"10.0.0.0/24", "10.0.0.5/24", "0.0.0.0/0", "192.0.2.1/32", "172.16.0.0/12",
		"2001:db8::/120", "2001:db8::1234/64", "::/0", "2001:db8::1/128",
		"10.0.0.1-10.0.0.9", " 10.0.0.1 - 10.0.0.9 ", "10.0.0.9-10.0.0.1",
		"2001:db8::1-2001:db8::ff", "10.0.0.1-2001:db8::1",
		"192.0.2.1", "2001:db8::1", "fe80::1%eth0", "::ffff:1.2.3.4",
		"::ffff:1.2.3.0/120", "::/80", "::fffe:0:0/95", "::/96", "10.0.0.0/33", "", "-", "/", "1.2.3.4-", "a-b-c",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRange(s)
		if err != nil {
			if r != (Range{}) {
				t.Fatalf("ParseRange(%q) = %v with error %v", s, r, err)
			}
			return
		}
		if !r.First.IsValid() || !r.Last.IsValid() {
			t.Fatalf("ParseRange(%q) = %v: invalid bound", s, r)
		}
		if r.First.Is4() != r.Last.Is4() || r.First.BitLen() != r.Last.BitLen() {
			t.Fatalf("ParseRange(%q) = %v: mixed families", s, r)
		}
		if r.Last.Less(r.First) {
			t.Fatalf("ParseRange(%q) = %v: Last before First", s, r)
		}
		if r.First.Zone() != "" || r.Last.Zone() != "" || r.First.Is4In6() {
			t.Fatalf("ParseRange(%q) = %v: zone or IPv4-mapped first address", s, r)
		}
		if r.Overlaps(Range{First: netip.MustParseAddr("::ffff:0.0.0.0"), Last: netip.MustParseAddr("::ffff:255.255.255.255")}) {
			t.Fatalf("ParseRange(%q) = %v covers IPv4-mapped addresses", s, r)
		}
		if !r.Contains(r.First) || !r.Contains(r.Last) {
			t.Fatalf("ParseRange(%q) = %v does not contain its bounds", s, r)
		}
		if r.Size().Sign() <= 0 {
			t.Fatalf("ParseRange(%q) = %v: size %s", s, r, r.Size())
		}
		if !r.Overlaps(r) {
			t.Fatalf("ParseRange(%q) = %v does not overlap itself", s, r)
		}
		str := r.String()
		back, err := ParseRange(str)
		if err != nil {
			t.Fatalf("ParseRange(%q) = %v, but ParseRange(String() = %q) fails: %v", s, r, str, err)
		}
		if back != r {
			t.Fatalf("ParseRange(%q) = %v, but ParseRange(String() = %q) = %v", s, r, str, back)
		}
	})
}

func FuzzParseIPs(f *testing.F) {
	for _, s := range []string{
		"192.0.2.1", "2001:db8::1", "192.0.2.1,2001:db8::1", " 192.0.2.1 , 2001:db8::1 ",
		"192.0.2.1,192.0.2.2", "127.0.0.1", "::1", "0.0.0.0", "224.0.0.1", "ff02::1",
		"fe80::1%eth0", "::ffff:1.2.3.4", "", ",", ",,192.0.2.1,", "garbage",
		"169.254.1.1", "fe80::1", "0.1.2.3", "255.255.255.255", "2001:db8::", "2001:db8::1:0:0:0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ips, err := ParseIPs(s)
		if err != nil {
			if ips != nil {
				t.Fatalf("ParseIPs(%q) = %v with error %v", s, ips, err)
			}
			return
		}
		if len(ips) == 0 || len(ips) > 2 {
			t.Fatalf("ParseIPs(%q) = %v: want one or two addresses", s, ips)
		}
		seen := map[Family]bool{}
		for _, a := range ips {
			fam := FamilyOf(a)
			if seen[fam] {
				t.Fatalf("ParseIPs(%q) = %v: two %s addresses", s, ips, fam)
			}
			seen[fam] = true
			if a.Zone() != "" || a.Is4In6() || a.IsLoopback() || a.IsMulticast() || a.IsUnspecified() || a.IsLinkLocalUnicast() || Unusable(a) != "" {
				t.Fatalf("ParseIPs(%q) accepted %s", s, a)
			}
			back, err := ParseIPs(a.String())
			if err != nil || len(back) != 1 || back[0] != a {
				t.Fatalf("ParseIPs(%q) gave %s, which re-parses to %v, %v", s, a, back, err)
			}
		}
	})
}

func FuzzAllocationName(f *testing.F) {
	for _, b := range [][]byte{
		{192, 0, 2, 1},
		{0, 0, 0, 0},
		{255, 255, 255, 255},
		{0x20, 0x01, 0x0d, 0xb8, 15: 1},
		{0xfd, 15: 0},
		make([]byte, 16),
		{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		{15: 1},
		{10: 0xff, 11: 0xff, 12: 192, 13: 0, 14: 2, 15: 1},
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) != 4 && len(b) != 16 {
			return
		}
		a, ok := netip.AddrFromSlice(b)
		if !ok {
			t.Fatalf("AddrFromSlice(%v) failed", b)
		}
		name := AllocationName(a)
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			t.Fatalf("AllocationName(%s) = %q is not a DNS-1123 subdomain: %v", a, name, errs)
		}
		back, err := ParseAllocationName(name)
		if err != nil {
			t.Fatalf("ParseAllocationName(AllocationName(%s) = %q): %v", a, name, err)
		}
		if back != a {
			t.Fatalf("ParseAllocationName(AllocationName(%s) = %q) = %s", a, name, back)
		}
	})
}

// FuzzPoolFill fills a small pool: every address handed out is Usable and
// distinct, and exactly Capacity addresses are handed out before the pool
// is exhausted (Capacity must be exact: the allocator's walk relies on it).
func FuzzPoolFill(f *testing.F) {
	for _, s := range []string{
		"0.0.0.0/24", "127.0.0.0/30", "126.255.255.250-128.0.0.5", "169.253.255.250-169.255.0.5",
		"223.255.255.250-224.0.0.5", "255.255.255.0/24", "10.0.0.250-10.0.1.5", "2001:db8::/120",
		"2001:db8:0:0:ffff:ffff:ffff:fff0-2001:db8:0:1::10", "::/120", "fe7f:ffff:ffff:ffff:ffff:ffff:ffff:fff0-fe80::10",
		"feff:ffff:ffff:ffff:ffff:ffff:ffff:fff0-ff00::10", "2001:db8::", "192.0.2.7",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, avoid bool) {
		p, err := NewPool("p", []string{s})
		if err != nil || p.Ranges[0].Size().Cmp(big.NewInt(1024)) > 0 {
			return
		}
		p.AvoidBuggyIPs = avoid
		fam := p.Ranges[0].Family()
		want := p.Capacity(fam)
		a := NewAllocator()
		seen := map[netip.Addr]bool{}
		for i := uint64(0); ; i++ {
			req := Request{UID: fmt.Sprint(i), Namespace: "ns", Name: fmt.Sprint(i), Families: []Family{fam}, RequireAll: true, Pool: "p"}
			res := a.Allocate(req, []*Pool{p}, nil)
			if len(res.Failures) > 0 {
				if i != want {
					t.Fatalf("pool %q (avoid %v): %d addresses handed out, Capacity %d; then %v", s, avoid, i, want, res.Failures[0])
				}
				return
			}
			if i >= want {
				t.Fatalf("pool %q (avoid %v): more than Capacity %d addresses handed out", s, avoid, want)
			}
			addr := res.Assignments[0].Addr
			if seen[addr] || !p.Usable(addr) || Unusable(addr) != "" {
				t.Fatalf("pool %q (avoid %v) handed out %s (seen %v, usable %v, %q)", s, avoid, addr, seen[addr], p.Usable(addr), Unusable(addr))
			}
			seen[addr] = true
			a.Set(Allocation{Addr: addr, Pool: "p", Holders: []Holder{{UID: req.UID, Namespace: "ns", Name: req.Name}}})
			a.Unreserve(addr)
		}
	})
}
