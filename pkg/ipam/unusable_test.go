package ipam

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestUnusable(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want string // substring of the reason; "" means usable
	}{
		{"0.0.0.0", "unspecified"},
		{"0.0.0.1", "0.0.0.0/8"},
		{"0.255.255.255", "0.0.0.0/8"},
		{"1.0.0.0", ""},
		{"126.255.255.255", ""},
		{"127.0.0.0", "loopback"},
		{"127.255.255.255", "loopback"},
		{"128.0.0.0", ""},
		{"169.253.255.255", ""},
		{"169.254.0.1", "link-local"},
		{"169.255.0.0", ""},
		{"223.255.255.255", ""},
		{"224.0.0.1", "multicast"},
		{"239.255.255.255", "multicast"},
		{"240.0.0.0", ""},
		{"255.255.255.254", ""},
		{"255.255.255.255", "limited broadcast"},
		{"192.0.2.0", ""}, // .0 is avoidBuggyIPs' business, not always unusable
		{"::", "unspecified"},
		{"::1", "loopback"},
		{"::2", ""},
		{"fe80::1", "link-local"},
		{"febf:ffff::1", "link-local"},
		{"fec0::1", ""},
		{"ff02::1", "multicast"},
		{"ff00::", "multicast"},
		{"2001:db8:aaaa::", "Subnet-Router anycast address of 2001:db8:aaaa::/64"},
		{"2001:db8:0:1::", "Subnet-Router anycast"},
		{"2001:db8::1", ""},
		{"2001:db8:0:0:1::", ""},
		{"2001:db8::ffff:ffff:ffff:ffff", ""},
	} {
		got := Unusable(mustAddr(t, tc.addr))
		if (got == "") != (tc.want == "") || !strings.Contains(got, tc.want) {
			t.Errorf("Unusable(%s) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}

func TestWithoutSpecial(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"0.0.0.0/1", []string{"1.0.0.0-126.255.255.255"}},
		{"0.0.0.0/0", []string{"1.0.0.0-126.255.255.255", "128.0.0.0-169.253.255.255", "169.255.0.0-223.255.255.255", "240.0.0.0-255.255.255.254"}},
		{"127.0.0.0/8", nil},
		{"126.255.255.254-128.0.0.1", []string{"126.255.255.254-126.255.255.255", "128.0.0.0-128.0.0.1"}},
		{"192.0.2.0/24", []string{"192.0.2.0-192.0.2.255"}},
		{"255.255.255.255", nil},
		{"::-::ff", []string{"::2-::ff"}},
		{"fe00::/7", []string{"fe00::-fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fec0::-feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}},
		{"2001:db8::/64", []string{"2001:db8::-2001:db8::ffff:ffff:ffff:ffff"}},
	} {
		var got []string
		for _, r := range withoutSpecial(mustRange(t, tc.in)) {
			got = append(got, r.String())
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("withoutSpecial(%s) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// A pool that holds special addresses skips them, and its capacity counts
// only what it hands out (regression: "0.0.0.0/1" handed out 0.0.0.0, then
// 0.0.0.1, and 127.0.0.0/8 further on).
func TestAllocateSkipsUnusable(t *testing.T) {
	fill := func(t *testing.T, p *Pool, fam Family, n int) []string {
		t.Helper()
		a := NewAllocator()
		var got []string
		for i := range n {
			req := svc(fmt.Sprint("u", i), fam)
			req.Pool = p.Name // named, so that a pool without usable address says so
			res := a.Allocate(req, []*Pool{p}, nil)
			if len(res.Failures) > 0 {
				return append(got, res.Failures[0].Reason)
			}
			commit(t, a, req, res)
			got = append(got, oneAssignment(t, res).Addr.String())
		}
		return got
	}
	for _, tc := range []struct {
		name     string
		addrs    []string
		fam      Family
		capacity uint64
		want     []string
	}{
		{"0.0.0.0/1", []string{"0.0.0.0/1"}, IPv4, 1<<31 - 2<<24, []string{"1.0.0.0", "1.0.0.1"}},
		{"across loopback", []string{"126.255.255.254-128.0.0.1"}, IPv4, 4,
			[]string{"126.255.255.254", "126.255.255.255", "128.0.0.0", "128.0.0.1", ReasonPoolExhausted}},
		{"across multicast and broadcast", []string{"223.255.255.255-224.0.0.255", "255.255.255.254/31"}, IPv4, 2,
			[]string{"223.255.255.255", "255.255.255.254", ReasonPoolExhausted}},
		{"link-local only", []string{"169.254.0.0/16"}, IPv4, 0, []string{ReasonNoMatchingPool}},
		{"IPv6 skips the Subnet-Router anycast address", []string{"2001:db8:aaaa::/120"}, IPv6, 255, []string{"2001:db8:aaaa::1", "2001:db8:aaaa::2"}},
		{"IPv6 across a /64", []string{"2001:db8:0:0:ffff:ffff:ffff:fffe-2001:db8:0:1::1"}, IPv6, 3,
			[]string{"2001:db8::ffff:ffff:ffff:fffe", "2001:db8::ffff:ffff:ffff:ffff", "2001:db8:0:1::1", ReasonPoolExhausted}},
		{"IPv6 anycast only", []string{"2001:db8::", "2001:db8:1::"}, IPv6, 0, []string{ReasonNoMatchingPool}},
		{"IPv6 link-local and multicast", []string{"fe80::/64", "ff02::/120"}, IPv6, 0, []string{ReasonNoMatchingPool}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewPool("p", tc.addrs)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Capacity(tc.fam); got != tc.capacity {
				t.Errorf("Capacity(%s) = %d, want %d", tc.fam, got, tc.capacity)
			}
			got := fill(t, p, tc.fam, len(tc.want))
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("handed out %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPoolSkipped(t *testing.T) {
	p := newPool(t, "p", "0.0.0.0/1", "192.0.2.0/24", "2001:db8::/120", "ff02::1")
	if got, want := fmt.Sprint(p.Skipped(IPv4)), "[0.0.0.0/8 (in 0.0.0.0/8 (unspecified, \"this network\")) 127.0.0.0/8 (loopback)]"; got != want {
		t.Errorf("Skipped(IPv4) = %s, want %s", got, want)
	}
	p.AvoidBuggyIPs = true
	if got := p.Skipped(IPv4); len(got) != 3 || !strings.Contains(got[2], "avoidBuggyIPs") {
		t.Errorf("Skipped(IPv4) avoiding = %q", got)
	}
	if got, want := fmt.Sprint(p.Skipped(IPv6)), "[ff00::/8 (multicast) IPv6 Subnet-Router anycast addresses (interface ID 0)]"; got != want {
		t.Errorf("Skipped(IPv6) = %s, want %s", got, want)
	}
	if got := newPool(t, "ok", "192.0.2.1-192.0.2.9").Skipped(IPv4); len(got) != 0 {
		t.Errorf("Skipped of a clean pool = %q", got)
	}
}

// A pool with a problem (overlap, invalid) or disabled serves no automatic
// allocation and no requested address.
func TestAllocateSkipsProblemPools(t *testing.T) {
	ov := newPool(t, "ov", "10.0.0.0/24")
	ov.Priority = -10
	ov.Problem = &PoolProblem{Reason: "Overlap", Message: "overlaps pool gen"}
	gen := newPool(t, "gen", "10.0.0.128/25")
	wantAssignment(t, oneAssignment(t, NewAllocator().Allocate(svc("u1", IPv4), []*Pool{ov, gen}, nil)), "10.0.0.128", "gen", New)
	req := svc("u1", IPv4)
	req.IPs = addrs(t, "10.0.0.5")
	wantFailure(t, NewAllocator().Allocate(req, []*Pool{ov, gen}, nil), IPv4, ReasonRequestedIPNotInPool)
	wantFailure(t, NewAllocator().Allocate(svc("u1", IPv4), []*Pool{ov}, nil), IPv4, ReasonNoMatchingPool)
}

// The 257th Service on one sharing key gets a SharingConflict that states
// the limit, instead of a write the API server refuses (regression: no
// condition, and the manager looped on "spec.services: Too many: 257").
func TestAllocateSharingLimit(t *testing.T) {
	a := NewAllocator()
	pools := []*Pool{newPool(t, "a", "10.0.0.0/24")}
	keyed := func(i int) Request {
		r := svc(fmt.Sprintf("u%03d", i), IPv4)
		r.SharingKey = "ns/web"
		return r
	}
	for i := range MaxHolders {
		if i == 0 {
			wantAssignment(t, oneAssignment(t, allocate(t, a, keyed(i), pools, nil)), "10.0.0.0", "a", New)
			continue
		}
		wantAssignment(t, oneAssignment(t, allocate(t, a, keyed(i), pools, nil)), "10.0.0.0", "a", Join)
	}
	res := a.Allocate(keyed(MaxHolders), pools, func(Allocation) error { t.Fatal("join check called beyond the limit"); return nil })
	f := wantFailure(t, res, IPv4, ReasonSharingConflict)
	for _, want := range []string{"10.0.0.0", "256 Services", `sharing key "web"`, "(256)"} {
		if !strings.Contains(f.Message, want) {
			t.Errorf("message %q does not contain %q", f.Message, want)
		}
	}
	if n := a.reservedCount(); n != 0 {
		t.Errorf("%d reservations left", n)
	}
	// A holder leaving makes room again.
	commit(t, a, keyed(7), Result{Release: addrs(t, "10.0.0.0")})
	wantAssignment(t, oneAssignment(t, a.Allocate(keyed(MaxHolders), pools, nil)), "10.0.0.0", "a", Join)
}

// Messages name at most a few holders: a shared address has up to 256.
func TestMessagesBounded(t *testing.T) {
	a := NewAllocator()
	al := Allocation{Addr: mustAddr(t, "10.0.0.1"), Pool: "a", SharingKey: "ns/k"}
	for i := range MaxHolders {
		al.Holders = append(al.Holders, Holder{UID: fmt.Sprint(i), Namespace: "some-long-namespace-name", Name: fmt.Sprintf("some-long-service-name-%03d", i)})
	}
	a.Set(al)
	req := svc("other", IPv4)
	req.IPs = addrs(t, "10.0.0.1")
	f := wantFailure(t, a.Allocate(req, []*Pool{newPool(t, "a", "10.0.0.0/24")}, nil), IPv4, ReasonRequestedIPInUse)
	if len(f.Message) > 200 || !strings.Contains(f.Message, "and 253 more") {
		t.Errorf("message of %d bytes: %q", len(f.Message), f.Message)
	}
}

func TestQuote(t *testing.T) {
	long := strings.Repeat("x", 64<<10)
	for _, tc := range []struct{ in, want string }{
		{"", `""`},
		{"abc", `"abc"`},
		{strings.Repeat("a", 64), `"` + strings.Repeat("a", 64) + `"`},
		{long, `"` + strings.Repeat("x", 64) + `"… (65536 bytes)`},
		{strings.Repeat("é", 40), `"` + strings.Repeat("é", 32) + `"… (80 bytes)`},
	} {
		if got := Quote(tc.in); got != tc.want {
			t.Errorf("Quote(%d bytes) = %q, want %q", len(tc.in), got, tc.want)
		}
	}
	for n := range 10 {
		if s := Truncate("aéb€c", n); !utf8.ValidString(s) || len(s) > n {
			t.Errorf("Truncate(%d) = %q", n, s)
		}
	}
	// Every parser error quotes through Quote.
	for name, err := range map[string]error{
		"ParseIPs":        second(ParseIPs(long)),
		"ParseIPs list":   second(ParseIPs("192.0.2.1,192.0.2.2," + long)),
		"ParseSharingKey": second(ParseSharingKey("ns", long)),
		"ParsePoolName":   second(ParsePoolName(long)),
		"ParseRange":      second(ParseRange(long)),
		"ParseRange CIDR": second(ParseRange(long + "/8")),
	} {
		if err == nil || len(err.Error()) > 1024 {
			t.Errorf("%s: error of %d bytes: %v", name, len(fmt.Sprint(err)), err)
		}
	}
}

func second[T any](_ T, err error) error { return err }
