package ipam

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
)

// ---- helpers ----

// svc is a request for the given families with RequireAll (SingleStack or
// RequireDualStack).
func svc(uid string, fams ...Family) Request {
	return Request{UID: uid, Namespace: "ns", Name: "svc-" + uid, Families: fams, RequireAll: true}
}

func holderOf(r Request) Holder { return Holder{UID: r.UID, Namespace: r.Namespace, Name: r.Name} }

// commit applies a Result the way the controller does: create the record of
// each New assignment and unreserve it, add the Service to the holders of a
// Join, and drop the Service from the holders of each released address.
func commit(t testing.TB, a *Allocator, req Request, res Result) {
	t.Helper()
	for _, asg := range res.Assignments {
		switch asg.State {
		case New:
			a.Set(Allocation{Addr: asg.Addr, Pool: asg.Pool, SharingKey: asg.SharingKey, Holders: []Holder{holderOf(req)}})
			a.Unreserve(asg.Addr)
		case Join:
			al, ok := a.Get(asg.Addr)
			if !ok {
				t.Fatalf("commit: joined address %s has no record", asg.Addr)
			}
			al.Holders = append(al.Holders, holderOf(req))
			a.Set(al)
		case Held:
		default:
			t.Fatalf("commit: unknown state %d", asg.State)
		}
	}
	for _, addr := range res.Release {
		al, ok := a.Get(addr)
		if !ok {
			t.Fatalf("commit: released address %s has no record", addr)
		}
		al.Holders = slices.DeleteFunc(al.Holders, func(h Holder) bool { return h.UID == req.UID })
		if len(al.Holders) == 0 {
			a.Delete(addr)
		} else {
			a.Set(al)
		}
	}
}

// allocate runs Allocate and commits its result.
func allocate(t testing.TB, a *Allocator, req Request, pools []*Pool, join JoinCheck) Result {
	t.Helper()
	res := a.Allocate(req, pools, join)
	commit(t, a, req, res)
	return res
}

// oneAssignment requires a result of exactly one assignment and no failure.
func oneAssignment(t testing.TB, res Result) Assignment {
	t.Helper()
	if len(res.Assignments) != 1 || len(res.Failures) != 0 {
		t.Fatalf("want one assignment and no failure, got %s", fmtResult(res))
	}
	return res.Assignments[0]
}

// wantFailure requires a result with no assignment and one failure of the
// given family and reason; it returns the failure.
func wantFailure(t testing.TB, res Result, fam Family, reason string) Failure {
	t.Helper()
	if len(res.Assignments) != 0 || len(res.Failures) != 1 {
		t.Fatalf("want one %s failure and no assignment, got %s", reason, fmtResult(res))
	}
	f := res.Failures[0]
	if f.Reason != reason || f.Family != fam {
		t.Fatalf("want failure %s/%s, got %s/%s (%s)", fam, reason, f.Family, f.Reason, f.Message)
	}
	if f.Message == "" {
		t.Errorf("failure %s has an empty message", reason)
	}
	return f
}

// wantFailureKeeping requires one failure of the given family and reason,
// with the address the Service already holds kept as its only (Held)
// assignment.
func wantFailureKeeping(t testing.TB, res Result, fam Family, reason, addr, pool string) {
	t.Helper()
	if len(res.Assignments) != 1 || len(res.Failures) != 1 {
		t.Fatalf("want one %s failure and the held address kept, got %s", reason, fmtResult(res))
	}
	if f := res.Failures[0]; f.Reason != reason || f.Family != fam {
		t.Fatalf("want failure %s/%s, got %s/%s (%s)", fam, reason, f.Family, f.Reason, f.Message)
	}
	wantAssignment(t, res.Assignments[0], addr, pool, Held)
}

func wantAssignment(t testing.TB, got Assignment, addr, pool string, state State) {
	t.Helper()
	if got.Addr.String() != addr || got.Pool != pool || got.State != state {
		t.Fatalf("assignment = %s, want %s from %s (%s)", fmtAsg(got), addr, pool, stateName(state))
	}
}

func stateName(s State) string {
	switch s {
	case Held:
		return "Held"
	case Join:
		return "Join"
	case New:
		return "New"
	}
	return fmt.Sprintf("State(%d)", s)
}

func fmtAsg(a Assignment) string {
	return fmt.Sprintf("%s from %s key %q (%s)", a.Addr, a.Pool, a.SharingKey, stateName(a.State))
}

func fmtResult(res Result) string {
	var b strings.Builder
	b.WriteString("{assignments [")
	for i, a := range res.Assignments {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(fmtAsg(a))
	}
	fmt.Fprintf(&b, "] release %v failures [", res.Release)
	for i, f := range res.Failures {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s %s: %s", f.Family, f.Reason, f.Message)
	}
	b.WriteString("]}")
	return b.String()
}

func addrs(t testing.TB, ss ...string) []netip.Addr {
	t.Helper()
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, mustAddr(t, s))
	}
	return out
}

func wantRelease(t testing.TB, res Result, want ...string) {
	t.Helper()
	if !slices.Equal(res.Release, addrs(t, want...)) {
		t.Fatalf("Release = %v, want %v (result %s)", res.Release, want, fmtResult(res))
	}
}

func (a *Allocator) reservedBy(addr netip.Addr) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	uid, ok := a.reserved[addr]
	return uid, ok
}

func (a *Allocator) reservedCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.reserved)
}

// ---- basic allocation ----

func TestAllocateNew(t *testing.T) {
	a := NewAllocator()
	pools := []*Pool{newPool(t, "a", "10.0.0.0/30")}
	req := svc("u1", IPv4)
	res := a.Allocate(req, pools, nil)
	asg := oneAssignment(t, res)
	wantAssignment(t, asg, "10.0.0.0", "a", New)
	if asg.SharingKey != "" {
		t.Errorf("SharingKey = %q, want none", asg.SharingKey)
	}
	wantRelease(t, res)
	if uid, ok := a.reservedBy(asg.Addr); !ok || uid != "u1" {
		t.Errorf("reservation of %s = %q, %v; want u1", asg.Addr, uid, ok)
	}
	// Allocate records nothing by itself.
	if _, ok := a.Get(asg.Addr); ok {
		t.Errorf("Allocate created a record for %s", asg.Addr)
	}
	if got := a.HeldBy("u1"); len(got) != 0 {
		t.Errorf("HeldBy(u1) = %v before Set", got)
	}

	commit(t, a, req, res)
	if a.reservedCount() != 0 {
		t.Errorf("reservation left after Unreserve")
	}
	held := a.HeldBy("u1")
	if len(held) != 1 || held[0].Addr != asg.Addr || held[0].Pool != "a" || !slices.Equal(held[0].Holders, []Holder{holderOf(req)}) {
		t.Errorf("HeldBy(u1) = %+v", held)
	}
	// The next Service gets the next address.
	wantAssignment(t, oneAssignment(t, allocate(t, a, svc("u2", IPv4), pools, nil)), "10.0.0.1", "a", New)
}

func TestAllocateNoFamilies(t *testing.T) {
	a := NewAllocator()
	res := a.Allocate(svc("u1"), []*Pool{newPool(t, "a", "10.0.0.0/30")}, nil)
	if len(res.Assignments)+len(res.Failures)+len(res.Release) != 0 {
		t.Errorf("empty request: %s", fmtResult(res))
	}
}

func TestAllocatePoolOrder(t *testing.T) {
	type setup func(t *testing.T, a *Allocator)
	mk := func(t *testing.T, name, cidr string, prio int32, opts ...func(*Pool)) *Pool {
		p := newPool(t, name, cidr)
		p.Priority = prio
		for _, o := range opts {
			o(p)
		}
		return p
	}
	svcSel := func(s string) func(*Pool) {
		return func(p *Pool) { p.ServiceSelector = mustSelector(t, s) }
	}
	nsSel := func(s string) func(*Pool) {
		return func(p *Pool) { p.NamespaceSelector = mustSelector(t, s) }
	}
	manual := func(p *Pool) { p.AutoAssign = false }
	disabled := func(p *Pool) { p.Disabled = true }
	for _, tc := range []struct {
		name     string
		pools    func(t *testing.T) []*Pool
		setup    setup
		fam      Family
		wantPool string
		wantAddr string
	}{
		{
			name: "lower priority first",
			pools: func(t *testing.T) []*Pool {
				return []*Pool{mk(t, "a", "10.0.1.0/24", 10), mk(t, "b", "10.0.2.0/24", 1), mk(t, "c", "10.0.3.0/24", 5)}
			},
			wantPool: "b", wantAddr: "10.0.2.0",
		},
		{
			name: "negative priority",
			pools: func(t *testing.T) []*Pool {
				return []*Pool{mk(t, "a", "10.0.1.0/24", 0), mk(t, "z", "10.0.2.0/24", -1)}
			},
			wantPool: "z", wantAddr: "10.0.2.0",
		},
		{
			name: "name breaks ties",
			pools: func(t *testing.T) []*Pool {
				return []*Pool{mk(t, "c", "10.0.3.0/24", 0), mk(t, "a", "10.0.1.0/24", 0), mk(t, "b", "10.0.2.0/24", 0)}
			},
			wantPool: "a", wantAddr: "10.0.1.0",
		},
		{
			name: "matching service selector before general",
			pools: func(t *testing.T) []*Pool {
				return []*Pool{mk(t, "gen", "10.0.1.0/24", -100), mk(t, "sel", "10.0.2.0/24", 100, svcSel("app=web"))}
			},
			wantPool: "sel", wantAddr: "10.0.2.0",
		},
		{
			name: "matching namespace selector before general",
			pools: func(t *testing.T) []*Pool {
				return []*Pool{mk(t, "gen", "10.0.1.0/24", 0), mk(t, "nsel", "10.0.2.0/24", 9, nsSel("env=prod"))}
			},
			wantPool: "nsel", wantAddr: "10.0.2.0",
		},
		{
			name: "non-matching selector skipped",
			pools: func(t *testing.T) []*Pool {
				return []*Pool{mk(t, "gen", "10.0.1.0/24", 50), mk(t, "sel", "10.0.2.0/24", 0, svcSel("app=db"))}
			},
			wantPool: "gen", wantAddr: "10.0.1.0",
		},
		{
			name: "priority among selector pools",
			pools: func(t *testing.T) []*Pool {
				return []*Pool{
					mk(t, "gen", "10.0.1.0/24", -10),
					mk(t, "s-a", "10.0.2.0/24", 2, svcSel("app=web")),
					mk(t, "s-b", "10.0.3.0/24", 1, nsSel("env=prod")),
					mk(t, "s-c", "10.0.4.0/24", 1, svcSel("app=web")),
				}
			},
			wantPool: "s-b", wantAddr: "10.0.3.0",
		},
		{
			name: "full selector pool falls through to the next, then general",
			pools: func(t *testing.T) []*Pool {
				return []*Pool{
					mk(t, "gen", "10.0.1.0/24", 0),
					mk(t, "sel-full", "10.0.9.9/32", 0, svcSel("app=web")),
				}
			},
			setup: func(t *testing.T, a *Allocator) {
				a.Set(Allocation{Addr: mustAddr(t, "10.0.9.9"), Pool: "sel-full", Holders: []Holder{{UID: "x"}}})
			},
			wantPool: "gen", wantAddr: "10.0.1.0",
		},
		{
			name: "full first pool falls through by priority",
			pools: func(t *testing.T) []*Pool {
				return []*Pool{mk(t, "b", "10.0.2.0/24", 1), mk(t, "a", "10.0.9.9/32", 0), mk(t, "c", "10.0.3.0/24", 2)}
			},
			setup: func(t *testing.T, a *Allocator) {
				a.Set(Allocation{Addr: mustAddr(t, "10.0.9.9"), Pool: "a", Holders: []Holder{{UID: "x"}}})
			},
			wantPool: "b", wantAddr: "10.0.2.0",
		},
		{
			name: "auto-assign false skipped",
			pools: func(t *testing.T) []*Pool {
				return []*Pool{mk(t, "a-manual", "10.0.1.0/24", -5, manual), mk(t, "b", "10.0.2.0/24", 0)}
			},
			wantPool: "b", wantAddr: "10.0.2.0",
		},
		{
			name: "auto-assign false selector pool skipped",
			pools: func(t *testing.T) []*Pool {
				return []*Pool{mk(t, "sel", "10.0.1.0/24", 0, manual, svcSel("app=web")), mk(t, "b", "10.0.2.0/24", 0)}
			},
			wantPool: "b", wantAddr: "10.0.2.0",
		},
		{
			name: "disabled skipped",
			pools: func(t *testing.T) []*Pool {
				return []*Pool{mk(t, "a", "10.0.1.0/24", -5, disabled), mk(t, "b", "10.0.2.0/24", 0)}
			},
			wantPool: "b", wantAddr: "10.0.2.0",
		},
		{
			name: "pool without the family skipped",
			pools: func(t *testing.T) []*Pool {
				return []*Pool{mk(t, "a6", "2001:db8::/120", -5), mk(t, "b", "10.0.2.0/24", 0)}
			},
			wantPool: "b", wantAddr: "10.0.2.0",
		},
		{
			name: "ipv6 by priority",
			pools: func(t *testing.T) []*Pool {
				return []*Pool{mk(t, "a6", "2001:db8::/120", 5), mk(t, "b6", "2001:db8:1::/120", 0), mk(t, "v4", "10.0.0.0/24", -9)}
			},
			fam:      IPv6,
			wantPool: "b6", wantAddr: "2001:db8:1::1",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			fam := tc.fam
			if fam == "" {
				fam = IPv4
			}
			for run := range 50 {
				pools := tc.pools(t)
				rng.Shuffle(len(pools), func(i, j int) { pools[i], pools[j] = pools[j], pools[i] })
				var order []string
				for _, p := range pools {
					order = append(order, p.Name)
				}
				a := NewAllocator()
				if tc.setup != nil {
					tc.setup(t, a)
				}
				req := svc("u1", fam)
				req.Labels = map[string]string{"app": "web"}
				req.NamespaceLabels = map[string]string{"env": "prod"}
				res := a.Allocate(req, pools, nil)
				asg := oneAssignment(t, res)
				if asg.Pool != tc.wantPool || asg.Addr.String() != tc.wantAddr {
					t.Fatalf("run %d with pools in order %q: got %s, want %s from %s", run, order, fmtAsg(asg), tc.wantAddr, tc.wantPool)
				}
				// The caller's slice is not reordered.
				for i, p := range pools {
					if p.Name != order[i] {
						t.Fatalf("Allocate reordered the pools slice: %q became %v", order, pools)
					}
				}
			}
		})
	}
}

func TestAllocateAutoAssignFalse(t *testing.T) {
	manual := newPool(t, "manual", "10.0.9.0/24")
	manual.AutoAssign = false

	t.Run("not used automatically", func(t *testing.T) {
		f := wantFailure(t, NewAllocator().Allocate(svc("u1", IPv4), []*Pool{manual}, nil), IPv4, ReasonNoMatchingPool)
		if !strings.Contains(f.Message, "automatically") {
			t.Errorf("message %q", f.Message)
		}
	})
	t.Run("requested IP", func(t *testing.T) {
		req := svc("u1", IPv4)
		req.IPs = addrs(t, "10.0.9.7")
		wantAssignment(t, oneAssignment(t, NewAllocator().Allocate(req, []*Pool{manual}, nil)), "10.0.9.7", "manual", New)
	})
	t.Run("named pool", func(t *testing.T) {
		req := svc("u1", IPv4)
		req.Pool = "manual"
		wantAssignment(t, oneAssignment(t, NewAllocator().Allocate(req, []*Pool{manual}, nil)), "10.0.9.0", "manual", New)
	})
	t.Run("general pool used instead", func(t *testing.T) {
		gen := newPool(t, "gen", "10.0.1.0/24")
		gen.Priority = 100
		wantAssignment(t, oneAssignment(t, NewAllocator().Allocate(svc("u1", IPv4), []*Pool{manual, gen}, nil)), "10.0.1.0", "gen", New)
	})
	t.Run("requested IP in manual pool beside a general one", func(t *testing.T) {
		gen := newPool(t, "gen", "10.0.1.0/24")
		req := svc("u1", IPv4)
		req.IPs = addrs(t, "10.0.9.200")
		wantAssignment(t, oneAssignment(t, NewAllocator().Allocate(req, []*Pool{gen, manual}, nil)), "10.0.9.200", "manual", New)
	})
}

func TestAllocateDisabled(t *testing.T) {
	dis := newPool(t, "dis", "10.0.0.0/24")
	dis.Disabled = true
	dis.Priority = -10
	gen := newPool(t, "gen", "10.0.1.0/24")

	wantAssignment(t, oneAssignment(t, NewAllocator().Allocate(svc("u1", IPv4), []*Pool{dis, gen}, nil)), "10.0.1.0", "gen", New)
	wantFailure(t, NewAllocator().Allocate(svc("u1", IPv4), []*Pool{dis}, nil), IPv4, ReasonNoMatchingPool)

	req := svc("u1", IPv4)
	req.IPs = addrs(t, "10.0.0.5")
	f := wantFailure(t, NewAllocator().Allocate(req, []*Pool{dis, gen}, nil), IPv4, ReasonRequestedIPNotInPool)
	if !strings.Contains(f.Message, "10.0.0.5") || !strings.Contains(f.Message, "pool gen") {
		t.Errorf("message %q", f.Message)
	}
	wantFailure(t, NewAllocator().Allocate(req, []*Pool{dis}, nil), IPv4, ReasonNoMatchingPool)
}

func TestAllocateNamedPool(t *testing.T) {
	mkPools := func(t *testing.T) []*Pool {
		a := newPool(t, "a", "10.0.0.0/24")
		b := newPool(t, "b", "10.0.1.0/24")
		b.AutoAssign = false
		b.Priority = 50
		off := newPool(t, "off", "10.0.2.0/24")
		off.Disabled = true
		sel := newPool(t, "sel", "10.0.3.0/24")
		sel.ServiceSelector = mustSelector(t, "app=web")
		nsel := newPool(t, "nsel", "10.0.4.0/24")
		nsel.NamespaceSelector = mustSelector(t, "env=prod")
		v6 := newPool(t, "v6only", "2001:db8::/120")
		ov := newPool(t, "ov", "10.0.0.0/25")
		ov.Problem = &PoolProblem{Reason: "Overlap", Message: "addresses 10.0.0.0/25 overlap pool a"}
		lo := newPool(t, "lo", "127.0.0.0/8", "2001:db8:5::")
		return []*Pool{a, b, off, sel, nsel, v6, ov, lo}
	}
	for _, tc := range []struct {
		name     string
		pool     string
		fam      Family
		labels   map[string]string
		ips      []string
		wantAddr string // "" means failure
		reason   string
		msg      string
	}{
		{name: "named pool beats priority and auto-assign", pool: "b", fam: IPv4, wantAddr: "10.0.1.0"},
		{name: "named pool v6", pool: "v6only", fam: IPv6, wantAddr: "2001:db8::1"},
		{name: "selector matches", pool: "sel", fam: IPv4, labels: map[string]string{"app": "web"}, wantAddr: "10.0.3.0"},
		{name: "missing", pool: "missing", fam: IPv4, reason: ReasonNoMatchingPool, msg: "does not exist"},
		{name: "disabled", pool: "off", fam: IPv4, reason: ReasonPoolNotReady, msg: "pool off is disabled"},
		// A pool flagged Overlap (or Invalid) exists: the Service is told
		// what is wrong with it, not that it does not exist.
		{name: "flagged", pool: "ov", fam: IPv4, reason: ReasonPoolNotReady, msg: "pool ov is not used for new addresses (Overlap): addresses 10.0.0.0/25 overlap pool a"},
		{name: "flagged, requested IP", pool: "ov", fam: IPv4, ips: []string{"10.0.0.9"}, reason: ReasonPoolNotReady, msg: "Overlap"},
		{name: "no usable address", pool: "lo", fam: IPv4, reason: ReasonNoMatchingPool, msg: "pool lo has no usable IPv4 addresses (it holds only 127.0.0.0/8 (loopback))"},
		{name: "no usable address v6", pool: "lo", fam: IPv6, reason: ReasonNoMatchingPool, msg: "pool lo has no usable IPv6 addresses (it holds only IPv6 Subnet-Router anycast addresses (interface ID 0))"},
		{name: "service selector mismatch", pool: "sel", fam: IPv4, labels: map[string]string{"app": "db"}, reason: ReasonNoMatchingPool, msg: "selectors"},
		{name: "namespace selector mismatch", pool: "nsel", fam: IPv4, reason: ReasonNoMatchingPool, msg: "selectors"},
		{name: "no such family", pool: "v6only", fam: IPv4, reason: ReasonNoMatchingPool, msg: "no IPv4"},
		{name: "no such family v6", pool: "a", fam: IPv6, reason: ReasonNoMatchingPool, msg: "no IPv6"},
		{name: "requested IP in the named pool", pool: "b", fam: IPv4, ips: []string{"10.0.1.9"}, wantAddr: "10.0.1.9"},
		{name: "requested IP in another pool", pool: "a", fam: IPv4, ips: []string{"10.0.1.9"}, reason: ReasonRequestedIPNotInPool, msg: "pool a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := svc("u1", tc.fam)
			req.Pool = tc.pool
			req.Labels = tc.labels
			req.NamespaceLabels = map[string]string{"env": "dev"}
			req.IPs = addrs(t, tc.ips...)
			res := NewAllocator().Allocate(req, mkPools(t), nil)
			if tc.wantAddr != "" {
				wantAssignment(t, oneAssignment(t, res), tc.wantAddr, tc.pool, New)
				return
			}
			f := wantFailure(t, res, tc.fam, tc.reason)
			if !strings.Contains(f.Message, tc.msg) {
				t.Errorf("message %q, want it to contain %q", f.Message, tc.msg)
			}
		})
	}
}

// ---- buggy addresses, exhaustion, reservations ----

func TestAllocateAvoidBuggyIPs(t *testing.T) {
	t.Run("fill a /24", func(t *testing.T) {
		p := newPool(t, "a", "10.0.0.0/24")
		p.AvoidBuggyIPs = true
		a := NewAllocator()
		seen := map[netip.Addr]bool{}
		for i := range 254 {
			asg := oneAssignment(t, allocate(t, a, svc(fmt.Sprint("u", i), IPv4), []*Pool{p}, nil))
			if IsBuggy(asg.Addr) || seen[asg.Addr] || !p.Contains(asg.Addr) {
				t.Fatalf("allocation %d: got %s (buggy %v, duplicate %v)", i, asg.Addr, IsBuggy(asg.Addr), seen[asg.Addr])
			}
			if i == 0 && asg.Addr.String() != "10.0.0.1" {
				t.Fatalf("first address %s, want 10.0.0.1", asg.Addr)
			}
			seen[asg.Addr] = true
		}
		wantFailure(t, a.Allocate(svc("last", IPv4), []*Pool{p}, nil), IPv4, ReasonPoolExhausted)
	})
	t.Run("across an octet boundary", func(t *testing.T) {
		p := newPool(t, "a", "10.0.0.254-10.0.1.1")
		p.AvoidBuggyIPs = true
		a := NewAllocator()
		var got []string
		for i := range 2 {
			got = append(got, oneAssignment(t, allocate(t, a, svc(fmt.Sprint("u", i), IPv4), []*Pool{p}, nil)).Addr.String())
		}
		if want := []string{"10.0.0.254", "10.0.1.1"}; !slices.Equal(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
		wantFailure(t, a.Allocate(svc("u2", IPv4), []*Pool{p}, nil), IPv4, ReasonPoolExhausted)
	})
	t.Run("only buggy addresses", func(t *testing.T) {
		p := newPool(t, "a", "10.0.0.255-10.0.1.0")
		p.AvoidBuggyIPs = true
		wantFailure(t, NewAllocator().Allocate(svc("u", IPv4), []*Pool{p}, nil), IPv4, ReasonPoolExhausted)
		p.AvoidBuggyIPs = false
		wantAssignment(t, oneAssignment(t, NewAllocator().Allocate(svc("u", IPv4), []*Pool{p}, nil)), "10.0.0.255", "a", New)
	})
	t.Run("requested buggy address", func(t *testing.T) {
		p := newPool(t, "a", "10.0.0.0/24")
		p.AvoidBuggyIPs = true
		for _, ip := range []string{"10.0.0.0", "10.0.0.255"} {
			req := svc("u", IPv4)
			req.IPs = addrs(t, ip)
			wantFailure(t, NewAllocator().Allocate(req, []*Pool{p}, nil), IPv4, ReasonRequestedIPNotInPool)
		}
	})
	t.Run("off by default", func(t *testing.T) {
		p := newPool(t, "a", "10.0.0.0/24")
		wantAssignment(t, oneAssignment(t, NewAllocator().Allocate(svc("u", IPv4), []*Pool{p}, nil)), "10.0.0.0", "a", New)
	})
	t.Run("ipv6 unaffected", func(t *testing.T) {
		p := newPool(t, "a", "2001:db8::/120")
		p.AvoidBuggyIPs = true
		wantAssignment(t, oneAssignment(t, NewAllocator().Allocate(svc("u", IPv6), []*Pool{p}, nil)), "2001:db8::1", "a", New)
	})
}

func TestAllocateExhaustion(t *testing.T) {
	a := NewAllocator()
	pa := newPool(t, "a", "10.0.0.0/30")
	pools := []*Pool{pa}
	var got []string
	for i := range 4 {
		got = append(got, oneAssignment(t, allocate(t, a, svc(fmt.Sprint("u", i), IPv4), pools, nil)).Addr.String())
	}
	if want := []string{"10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3"}; !slices.Equal(got, want) {
		t.Fatalf("allocated %q, want %q", got, want)
	}
	f := wantFailure(t, a.Allocate(svc("u4", IPv4), pools, nil), IPv4, ReasonPoolExhausted)
	if !strings.Contains(f.Message, "pool a") {
		t.Errorf("message %q", f.Message)
	}
	if a.reservedCount() != 0 {
		t.Errorf("a failed Allocate left a reservation")
	}

	// A second pool takes the overflow; then both are exhausted.
	pb := newPool(t, "b", "10.0.1.0/31")
	pb.Priority = 1
	pools = []*Pool{pb, pa}
	for i, want := range []string{"10.0.1.0", "10.0.1.1"} {
		wantAssignment(t, oneAssignment(t, allocate(t, a, svc(fmt.Sprint("v", i), IPv4), pools, nil)), want, "b", New)
	}
	f = wantFailure(t, a.Allocate(svc("v9", IPv4), pools, nil), IPv4, ReasonPoolExhausted)
	if !strings.Contains(f.Message, "pools a, b") {
		t.Errorf("message %q", f.Message)
	}
	if u := a.Usage("a", pa); u.Allocated[IPv4] != 4 {
		t.Errorf("Usage(a) = %+v", u)
	}
}

func TestAllocateExhaustionLargeIPv6(t *testing.T) {
	// A /64 (capacity saturated) whose first 100 addresses are recorded,
	// with no cursor yet: the allocator must find the first free address.
	p := newPool(t, "a", "2001:db8::/64")
	a := NewAllocator()
	for i := range 100 {
		addr := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)})
		a.Set(Allocation{Addr: addr, Pool: "a", Holders: []Holder{{UID: fmt.Sprint("u", i)}}})
	}
	wantAssignment(t, oneAssignment(t, a.Allocate(svc("x", IPv6), []*Pool{p}, nil)), "2001:db8::64", "a", New)
	wantAssignment(t, oneAssignment(t, a.Allocate(svc("y", IPv6), []*Pool{p}, nil)), "2001:db8::65", "a", New)
}

func TestAllocateReservations(t *testing.T) {
	t.Run("distinct UIDs without Set get distinct addresses", func(t *testing.T) {
		a := NewAllocator()
		pools := []*Pool{newPool(t, "a", "10.0.0.0/30")}
		seen := map[netip.Addr]string{}
		for i := range 4 {
			uid := fmt.Sprint("u", i)
			asg := oneAssignment(t, a.Allocate(svc(uid, IPv4), pools, nil))
			if other, dup := seen[asg.Addr]; dup {
				t.Fatalf("%s handed to %s and %s", asg.Addr, other, uid)
			}
			seen[asg.Addr] = uid
		}
		// Reservations count as taken.
		wantFailure(t, a.Allocate(svc("u9", IPv4), pools, nil), IPv4, ReasonPoolExhausted)
	})
	t.Run("Unreserve after a failed create frees the address", func(t *testing.T) {
		a := NewAllocator()
		pools := []*Pool{newPool(t, "a", "10.0.0.7")}
		x := oneAssignment(t, a.Allocate(svc("u1", IPv4), pools, nil)).Addr
		wantFailure(t, a.Allocate(svc("u2", IPv4), pools, nil), IPv4, ReasonPoolExhausted)
		a.Unreserve(x)
		wantAssignment(t, oneAssignment(t, a.Allocate(svc("u2", IPv4), pools, nil)), "10.0.0.7", "a", New)
	})
	t.Run("Set without Unreserve still blocks", func(t *testing.T) {
		a := NewAllocator()
		pools := []*Pool{newPool(t, "a", "10.0.0.7")}
		req := svc("u1", IPv4)
		x := oneAssignment(t, a.Allocate(req, pools, nil)).Addr
		a.Set(Allocation{Addr: x, Pool: "a", Holders: []Holder{holderOf(req)}})
		wantFailure(t, a.Allocate(svc("u2", IPv4), pools, nil), IPv4, ReasonPoolExhausted)
		// The holder itself sees it as held.
		wantAssignment(t, oneAssignment(t, a.Allocate(req, pools, nil)), "10.0.0.7", "a", Held)
	})
}

// ---- requested addresses ----

func TestAllocateRequestedIP(t *testing.T) {
	mkPools := func(t *testing.T) []*Pool {
		pa := newPool(t, "a", "10.0.0.0/24", "2001:db8::/120")
		pb := newPool(t, "b", "10.0.1.0/24")
		pb.AutoAssign = false
		return []*Pool{pa, pb}
	}
	withIP := func(uid string, ips ...string) Request {
		r := svc(uid, IPv4)
		r.IPs = addrs(t, ips...)
		return r
	}
	t.Run("ok", func(t *testing.T) {
		a := NewAllocator()
		res := a.Allocate(withIP("u1", "10.0.0.7"), mkPools(t), nil)
		wantAssignment(t, oneAssignment(t, res), "10.0.0.7", "a", New)
		if uid, ok := a.reservedBy(mustAddr(t, "10.0.0.7")); !ok || uid != "u1" {
			t.Errorf("requested address not reserved for u1")
		}
	})
	t.Run("ok in a non-auto pool", func(t *testing.T) {
		wantAssignment(t, oneAssignment(t, NewAllocator().Allocate(withIP("u1", "10.0.1.1"), mkPools(t), nil)), "10.0.1.1", "b", New)
	})
	t.Run("other family ignored", func(t *testing.T) {
		res := NewAllocator().Allocate(withIP("u1", "2001:db8::5"), mkPools(t), nil)
		wantAssignment(t, oneAssignment(t, res), "10.0.0.0", "a", New)
	})
	t.Run("not in any pool", func(t *testing.T) {
		f := wantFailure(t, NewAllocator().Allocate(withIP("u1", "192.0.2.1"), mkPools(t), nil), IPv4, ReasonRequestedIPNotInPool)
		if !strings.Contains(f.Message, "192.0.2.1") {
			t.Errorf("message %q", f.Message)
		}
	})
	t.Run("held by another", func(t *testing.T) {
		a := NewAllocator()
		a.Set(Allocation{Addr: mustAddr(t, "10.0.0.8"), Pool: "a", Holders: []Holder{{UID: "o", Namespace: "other", Name: "web"}}})
		f := wantFailure(t, a.Allocate(withIP("u1", "10.0.0.8"), mkPools(t), nil), IPv4, ReasonRequestedIPInUse)
		if !strings.Contains(f.Message, "other/web") {
			t.Errorf("message %q", f.Message)
		}
	})
	t.Run("held by a record without holders", func(t *testing.T) {
		a := NewAllocator()
		a.Set(Allocation{Addr: mustAddr(t, "10.0.0.8"), Pool: "a"})
		f := wantFailure(t, a.Allocate(withIP("u1", "10.0.0.8"), mkPools(t), nil), IPv4, ReasonRequestedIPInUse)
		if !strings.Contains(f.Message, "another Service") {
			t.Errorf("message %q", f.Message)
		}
	})
	t.Run("reserved by another in flight", func(t *testing.T) {
		a := NewAllocator()
		pools := mkPools(t)
		oneAssignment(t, a.Allocate(withIP("u2", "10.0.0.9"), pools, nil))
		f := wantFailure(t, a.Allocate(withIP("u1", "10.0.0.9"), pools, nil), IPv4, ReasonRequestedIPInUse)
		if !strings.Contains(f.Message, "being allocated") {
			t.Errorf("message %q", f.Message)
		}
		// Once u2's create fails and it unreserves, u1 may have it.
		a.Unreserve(mustAddr(t, "10.0.0.9"))
		wantAssignment(t, oneAssignment(t, a.Allocate(withIP("u1", "10.0.0.9"), pools, nil)), "10.0.0.9", "a", New)
	})
	t.Run("reserved by the same Service (retry)", func(t *testing.T) {
		a := NewAllocator()
		pools := mkPools(t)
		wantAssignment(t, oneAssignment(t, a.Allocate(withIP("u1", "10.0.0.9"), pools, nil)), "10.0.0.9", "a", New)
		wantAssignment(t, oneAssignment(t, a.Allocate(withIP("u1", "10.0.0.9"), pools, nil)), "10.0.0.9", "a", New)
	})
	t.Run("automatic allocation skips a requested reservation", func(t *testing.T) {
		a := NewAllocator()
		pools := mkPools(t)
		oneAssignment(t, a.Allocate(withIP("u1", "10.0.0.0"), pools, nil))
		wantAssignment(t, oneAssignment(t, a.Allocate(svc("u2", IPv4), pools, nil)), "10.0.0.1", "a", New)
	})
	t.Run("requested v6", func(t *testing.T) {
		req := svc("u1", IPv6)
		req.IPs = addrs(t, "10.0.0.7", "2001:db8::42")
		wantAssignment(t, oneAssignment(t, NewAllocator().Allocate(req, mkPools(t), nil)), "2001:db8::42", "a", New)
	})
}

// ---- sharing ----

func TestAllocateSharing(t *testing.T) {
	pa := newPool(t, "a", "10.0.0.0/24", "2001:db8::/120")
	pb := newPool(t, "b", "10.0.1.0/24")
	pools := []*Pool{pa, pb}
	keyed := func(uid, key string, fams ...Family) Request {
		r := svc(uid, fams...)
		r.SharingKey = key
		return r
	}
	setup := func(t *testing.T) (*Allocator, netip.Addr) {
		a := NewAllocator()
		asg := oneAssignment(t, allocate(t, a, keyed("first", "ns/k", IPv4), pools, nil))
		wantAssignment(t, asg, "10.0.0.0", "a", New)
		if asg.SharingKey != "ns/k" {
			t.Fatalf("SharingKey = %q", asg.SharingKey)
		}
		return a, asg.Addr
	}

	t.Run("same key joins", func(t *testing.T) {
		a, x := setup(t)
		var seen []Allocation
		check := func(al Allocation) error { seen = append(seen, al); return nil }
		req := keyed("second", "ns/k", IPv4)
		res := a.Allocate(req, pools, check)
		asg := oneAssignment(t, res)
		wantAssignment(t, asg, x.String(), "a", Join)
		if asg.SharingKey != "ns/k" {
			t.Errorf("SharingKey = %q", asg.SharingKey)
		}
		if len(seen) != 1 || seen[0].Addr != x || len(seen[0].Holders) != 1 || seen[0].Holders[0].UID != "first" {
			t.Fatalf("JoinCheck saw %+v", seen)
		}
		if a.reservedCount() != 0 {
			t.Errorf("a Join reserved an address")
		}
		// JoinCheck gets a copy: mutating it does not change the record.
		seen[0].Holders[0].UID = "mutated"
		if al, _ := a.Get(x); al.Holders[0].UID != "first" {
			t.Errorf("JoinCheck could mutate the record: %+v", al)
		}
		commit(t, a, req, res)
		al, _ := a.Get(x)
		if len(al.Holders) != 2 {
			t.Fatalf("holders %+v", al.Holders)
		}
		// Both are now Held.
		wantAssignment(t, oneAssignment(t, a.Allocate(req, pools, check)), x.String(), "a", Held)
		wantAssignment(t, oneAssignment(t, a.Allocate(keyed("first", "ns/k", IPv4), pools, check)), x.String(), "a", Held)
		// A third one joins too.
		wantAssignment(t, oneAssignment(t, a.Allocate(keyed("third", "ns/k", IPv4), pools, nil)), x.String(), "a", Join)
	})
	t.Run("nil JoinCheck allows", func(t *testing.T) {
		a, x := setup(t)
		wantAssignment(t, oneAssignment(t, a.Allocate(keyed("second", "ns/k", IPv4), pools, nil)), x.String(), "a", Join)
	})
	t.Run("JoinCheck refusal is a SharingConflict", func(t *testing.T) {
		a, _ := setup(t)
		refuse := func(Allocation) error { return errors.New("port 80/TCP is taken") }
		res := a.Allocate(keyed("second", "ns/k", IPv4), pools, refuse)
		f := wantFailure(t, res, IPv4, ReasonSharingConflict)
		if !strings.Contains(f.Message, "port 80/TCP is taken") || !strings.Contains(f.Message, "ns/svc-first") {
			t.Errorf("message %q", f.Message)
		}
		if a.reservedCount() != 0 {
			t.Errorf("refused join reserved an address")
		}
	})
	t.Run("different key gets another address", func(t *testing.T) {
		a, x := setup(t)
		asg := oneAssignment(t, a.Allocate(keyed("second", "ns/other", IPv4), pools, nil))
		if asg.State != New || asg.Addr == x || asg.SharingKey != "ns/other" {
			t.Fatalf("got %s", fmtAsg(asg))
		}
	})
	t.Run("same key name in another namespace", func(t *testing.T) {
		a, x := setup(t)
		asg := oneAssignment(t, a.Allocate(keyed("second", "other/k", IPv4), pools, nil))
		if asg.State != New || asg.Addr == x {
			t.Fatalf("got %s", fmtAsg(asg))
		}
	})
	t.Run("no key on a shared address", func(t *testing.T) {
		a, x := setup(t)
		req := svc("second", IPv4)
		req.IPs = []netip.Addr{x}
		wantFailure(t, a.Allocate(req, pools, nil), IPv4, ReasonRequestedIPInUse)
	})
	t.Run("different key on a requested shared address", func(t *testing.T) {
		a, x := setup(t)
		req := keyed("second", "ns/other", IPv4)
		req.IPs = []netip.Addr{x}
		wantFailure(t, a.Allocate(req, pools, func(Allocation) error { t.Error("JoinCheck called"); return nil }), IPv4, ReasonRequestedIPInUse)
	})
	t.Run("same key on a requested shared address", func(t *testing.T) {
		a, x := setup(t)
		req := keyed("second", "ns/k", IPv4)
		req.IPs = []netip.Addr{x}
		wantAssignment(t, oneAssignment(t, a.Allocate(req, pools, nil)), x.String(), "a", Join)
		refuse := func(Allocation) error { return errors.New("no") }
		wantFailure(t, a.Allocate(req, pools, refuse), IPv4, ReasonSharingConflict)
	})
	t.Run("key in use in another pool than the named one", func(t *testing.T) {
		a, _ := setup(t)
		req := keyed("second", "ns/k", IPv4)
		req.Pool = "b"
		f := wantFailure(t, a.Allocate(req, pools, nil), IPv4, ReasonSharingConflict)
		if !strings.Contains(f.Message, `"k"`) || !strings.Contains(f.Message, "not pool b") {
			t.Errorf("message %q", f.Message)
		}
		req.Pool = "a"
		wantAssignment(t, oneAssignment(t, a.Allocate(req, pools, nil)), "10.0.0.0", "a", Join)
	})
	t.Run("key used by the other family only", func(t *testing.T) {
		a, _ := setup(t)
		wantAssignment(t, oneAssignment(t, a.Allocate(keyed("second", "ns/k", IPv6), pools, nil)), "2001:db8::1", "a", New)
	})
	t.Run("dual-stack join", func(t *testing.T) {
		a := NewAllocator()
		res := allocate(t, a, keyed("first", "ns/k", IPv4, IPv6), pools, nil)
		if len(res.Assignments) != 2 {
			t.Fatalf("got %s", fmtResult(res))
		}
		res2 := a.Allocate(keyed("second", "ns/k", IPv4, IPv6), pools, nil)
		if len(res2.Assignments) != 2 || res2.Assignments[0].State != Join || res2.Assignments[1].State != Join ||
			res2.Assignments[0].Addr != res.Assignments[0].Addr || res2.Assignments[1].Addr != res.Assignments[1].Addr {
			t.Fatalf("got %s, want joins of %s", fmtResult(res2), fmtResult(res))
		}
	})
	t.Run("last holder leaves", func(t *testing.T) {
		a, x := setup(t)
		second := keyed("second", "ns/k", IPv4)
		allocate(t, a, second, pools, nil)
		// first drops its key: it moves, the address stays with second.
		res := allocate(t, a, svc("first", IPv4), pools, nil)
		if asg := oneAssignment(t, res); asg.Addr == x || asg.State != New {
			t.Fatalf("got %s", fmtResult(res))
		}
		wantRelease(t, res, x.String())
		al, ok := a.Get(x)
		if !ok || len(al.Holders) != 1 || al.Holders[0].UID != "second" {
			t.Fatalf("record of %s: %+v", x, al)
		}
		// second leaves too: the key is free and a new Service with it gets
		// a new address.
		commit(t, a, second, Result{Release: []netip.Addr{x}})
		if _, ok := a.Get(x); ok {
			t.Fatalf("record of %s survives its last holder", x)
		}
		asg := oneAssignment(t, a.Allocate(keyed("third", "ns/k", IPv4), pools, nil))
		if asg.State != New {
			t.Fatalf("got %s", fmtAsg(asg))
		}
	})
}

// ---- held addresses and moves ----

func TestAllocateHeldKept(t *testing.T) {
	mk := func(t *testing.T) (*Allocator, Request, netip.Addr) {
		a := NewAllocator()
		req := svc("u1", IPv4)
		asg := oneAssignment(t, allocate(t, a, req, []*Pool{newPool(t, "a", "10.0.0.0/24")}, nil))
		return a, req, asg.Addr
	}
	for _, tc := range []struct {
		name  string
		pools func(t *testing.T) []*Pool
		req   func(r Request) Request
	}{
		{name: "unchanged", pools: func(t *testing.T) []*Pool { return []*Pool{newPool(t, "a", "10.0.0.0/24")} }},
		{name: "pool gone", pools: func(t *testing.T) []*Pool { return []*Pool{newPool(t, "other", "10.0.5.0/24")} }},
		{name: "no pools at all", pools: func(t *testing.T) []*Pool { return nil }},
		{name: "pool shrunk", pools: func(t *testing.T) []*Pool { return []*Pool{newPool(t, "a", "10.0.0.100-10.0.0.200")} }},
		{name: "pool disabled", pools: func(t *testing.T) []*Pool {
			p := newPool(t, "a", "10.0.0.0/24")
			p.Disabled = true
			return []*Pool{p}
		}},
		{name: "pool no longer auto-assign", pools: func(t *testing.T) []*Pool {
			p := newPool(t, "a", "10.0.0.0/24")
			p.AutoAssign = false
			return []*Pool{p}
		}},
		{name: "pool selector no longer matches", pools: func(t *testing.T) []*Pool {
			p := newPool(t, "a", "10.0.0.0/24")
			p.ServiceSelector = mustSelector(t, "app=nothing")
			return []*Pool{p}
		}},
		{name: "better pool appeared", pools: func(t *testing.T) []*Pool {
			p := newPool(t, "a", "10.0.0.0/24")
			better := newPool(t, "better", "10.0.7.0/24")
			better.Priority = -100
			better.ServiceSelector = mustSelector(t, "app=web")
			return []*Pool{p, better}
		}, req: func(r Request) Request { r.Labels = map[string]string{"app": "web"}; return r }},
		{name: "same pool named", pools: func(t *testing.T) []*Pool { return []*Pool{newPool(t, "a", "10.0.0.0/24")} },
			req: func(r Request) Request { r.Pool = "a"; return r }},
		{name: "same IP requested", pools: func(t *testing.T) []*Pool { return []*Pool{newPool(t, "a", "10.0.0.0/24")} },
			req: func(r Request) Request { r.IPs = addrs(t, "10.0.0.0"); return r }},
		{name: "same IP requested, pool gone", pools: func(t *testing.T) []*Pool { return nil },
			req: func(r Request) Request { r.IPs = addrs(t, "10.0.0.0"); return r }},
		{name: "RequireAll false", pools: func(t *testing.T) []*Pool { return []*Pool{newPool(t, "a", "10.0.0.0/24")} },
			req: func(r Request) Request { r.Families = []Family{IPv4}; r.RequireAll = false; return r }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, req, x := mk(t)
			if tc.req != nil {
				req = tc.req(req)
			}
			for range 3 {
				res := a.Allocate(req, tc.pools(t), nil)
				wantAssignment(t, oneAssignment(t, res), x.String(), "a", Held)
				wantRelease(t, res)
				if a.reservedCount() != 0 {
					t.Fatalf("Held reserved an address")
				}
				commit(t, a, req, res)
			}
			if held := a.HeldBy("u1"); len(held) != 1 || held[0].Addr != x {
				t.Fatalf("HeldBy = %+v", held)
			}
		})
	}
}

func TestAllocateMoves(t *testing.T) {
	pools := func(t *testing.T) []*Pool {
		return []*Pool{newPool(t, "a", "10.0.0.0/24"), newPool(t, "b", "10.0.1.0/24")}
	}
	start := func(t *testing.T) (*Allocator, Request) {
		a := NewAllocator()
		req := svc("u1", IPv4)
		wantAssignment(t, oneAssignment(t, allocate(t, a, req, pools(t), nil)), "10.0.0.0", "a", New)
		return a, req
	}
	t.Run("requested IP changes", func(t *testing.T) {
		a, req := start(t)
		req.IPs = addrs(t, "10.0.0.50")
		res := allocate(t, a, req, pools(t), nil)
		wantAssignment(t, oneAssignment(t, res), "10.0.0.50", "a", New)
		wantRelease(t, res, "10.0.0.0")
		if held := a.HeldBy("u1"); len(held) != 1 || held[0].Addr.String() != "10.0.0.50" {
			t.Fatalf("HeldBy = %+v", held)
		}
		// Again, to another pool's address.
		req.IPs = addrs(t, "10.0.1.9")
		res = allocate(t, a, req, pools(t), nil)
		wantAssignment(t, oneAssignment(t, res), "10.0.1.9", "b", New)
		wantRelease(t, res, "10.0.0.50")
	})
	t.Run("requested IP removed keeps the address", func(t *testing.T) {
		a, req := start(t)
		req.IPs = addrs(t, "10.0.0.50")
		allocate(t, a, req, pools(t), nil)
		req.IPs = nil
		res := a.Allocate(req, pools(t), nil)
		wantAssignment(t, oneAssignment(t, res), "10.0.0.50", "a", Held)
		wantRelease(t, res)
	})
	t.Run("named pool changes", func(t *testing.T) {
		a, req := start(t)
		req.Pool = "b"
		res := allocate(t, a, req, pools(t), nil)
		wantAssignment(t, oneAssignment(t, res), "10.0.1.0", "b", New)
		wantRelease(t, res, "10.0.0.0")
	})
	t.Run("sharing key added", func(t *testing.T) {
		a, req := start(t)
		req.SharingKey = "ns/k"
		res := allocate(t, a, req, pools(t), nil)
		asg := oneAssignment(t, res)
		if asg.State != New || asg.Addr.String() == "10.0.0.0" || asg.SharingKey != "ns/k" {
			t.Fatalf("got %s", fmtAsg(asg))
		}
		wantRelease(t, res, "10.0.0.0")
		// And removed again.
		req.SharingKey = ""
		res = allocate(t, a, req, pools(t), nil)
		if asg2 := oneAssignment(t, res); asg2.State != New || asg2.SharingKey != "" {
			t.Fatalf("got %s", fmtAsg(asg2))
		}
		wantRelease(t, res, asg.Addr.String())
	})
	t.Run("sharing key changed to one in use joins", func(t *testing.T) {
		a, req := start(t)
		other := svc("u2", IPv4)
		other.SharingKey = "ns/k"
		y := oneAssignment(t, allocate(t, a, other, pools(t), nil)).Addr
		req.SharingKey = "ns/k"
		res := a.Allocate(req, pools(t), nil)
		wantAssignment(t, oneAssignment(t, res), y.String(), "a", Join)
		wantRelease(t, res, "10.0.0.0")
	})
	t.Run("failed move keeps the address", func(t *testing.T) {
		a, req := start(t)
		a.Set(Allocation{Addr: mustAddr(t, "10.0.0.99"), Pool: "a", Holders: []Holder{{UID: "o", Namespace: "ns", Name: "o"}}})
		for _, tc := range []struct {
			ip, reason string
		}{
			{"10.0.0.99", ReasonRequestedIPInUse},
			{"192.0.2.1", ReasonRequestedIPNotInPool},
		} {
			r := req
			r.IPs = addrs(t, tc.ip)
			res := a.Allocate(r, pools(t), nil)
			wantFailureKeeping(t, res, IPv4, tc.reason, "10.0.0.0", "a")
			wantRelease(t, res)
		}
		r := req
		r.Pool = "missing"
		res := a.Allocate(r, pools(t), nil)
		wantFailureKeeping(t, res, IPv4, ReasonNoMatchingPool, "10.0.0.0", "a")
		wantRelease(t, res)
		if held := a.HeldBy("u1"); len(held) != 1 || held[0].Addr.String() != "10.0.0.0" {
			t.Fatalf("HeldBy = %+v", held)
		}
	})
	t.Run("failed move of one family keeps the other", func(t *testing.T) {
		a := NewAllocator()
		ps := []*Pool{newPool(t, "a", "10.0.0.0/24", "2001:db8::/120")}
		req := svc("u1", IPv4, IPv6)
		req.RequireAll = false
		allocate(t, a, req, ps, nil)
		req.IPs = addrs(t, "2001:db8:ffff::1")
		res := a.Allocate(req, ps, nil)
		if len(res.Assignments) != 2 || len(res.Failures) != 1 || res.Failures[0].Reason != ReasonRequestedIPNotInPool {
			t.Fatalf("got %s", fmtResult(res))
		}
		wantAssignment(t, res.Assignments[0], "10.0.0.0", "a", Held)
		wantAssignment(t, res.Assignments[1], "2001:db8::1", "a", Held)
		wantRelease(t, res)
	})
}

// ---- dual-stack ----

func TestAllocateDualStack(t *testing.T) {
	v4 := func(t *testing.T) *Pool { return newPool(t, "a4", "10.0.0.0/24") }
	v6 := func(t *testing.T) *Pool { return newPool(t, "a6", "2001:db8::/120") }

	t.Run("both families", func(t *testing.T) {
		a := NewAllocator()
		res := a.Allocate(svc("u1", IPv4, IPv6), []*Pool{v6(t), v4(t)}, nil)
		if len(res.Assignments) != 2 || len(res.Failures) != 0 {
			t.Fatalf("got %s", fmtResult(res))
		}
		wantAssignment(t, res.Assignments[0], "10.0.0.0", "a4", New)
		wantAssignment(t, res.Assignments[1], "2001:db8::1", "a6", New)
		if a.reservedCount() != 2 {
			t.Errorf("want both reserved")
		}
	})
	t.Run("families in request order", func(t *testing.T) {
		res := NewAllocator().Allocate(svc("u1", IPv6, IPv4), []*Pool{v4(t), v6(t)}, nil)
		if len(res.Assignments) != 2 {
			t.Fatalf("got %s", fmtResult(res))
		}
		wantAssignment(t, res.Assignments[0], "2001:db8::1", "a6", New)
		wantAssignment(t, res.Assignments[1], "10.0.0.0", "a4", New)
	})
	t.Run("one mixed pool", func(t *testing.T) {
		res := NewAllocator().Allocate(svc("u1", IPv4, IPv6), []*Pool{newPool(t, "m", "2001:db8::/120", "10.0.0.0/24")}, nil)
		if len(res.Assignments) != 2 {
			t.Fatalf("got %s", fmtResult(res))
		}
		wantAssignment(t, res.Assignments[0], "10.0.0.0", "m", New)
		wantAssignment(t, res.Assignments[1], "2001:db8::1", "m", New)
	})
	t.Run("requested pair", func(t *testing.T) {
		req := svc("u1", IPv4, IPv6)
		req.IPs = addrs(t, "2001:db8::7", "10.0.0.7")
		res := NewAllocator().Allocate(req, []*Pool{v4(t), v6(t)}, nil)
		if len(res.Assignments) != 2 {
			t.Fatalf("got %s", fmtResult(res))
		}
		wantAssignment(t, res.Assignments[0], "10.0.0.7", "a4", New)
		wantAssignment(t, res.Assignments[1], "2001:db8::7", "a6", New)
	})
	t.Run("PreferDualStack with only v4 pools", func(t *testing.T) {
		a := NewAllocator()
		req := svc("u1", IPv4, IPv6)
		req.RequireAll = false
		res := a.Allocate(req, []*Pool{v4(t)}, nil)
		if len(res.Assignments) != 1 || len(res.Failures) != 1 {
			t.Fatalf("got %s", fmtResult(res))
		}
		wantAssignment(t, res.Assignments[0], "10.0.0.0", "a4", New)
		if f := res.Failures[0]; f.Family != IPv6 || f.Reason != ReasonNoMatchingPool {
			t.Fatalf("failure %+v", f)
		}
		if _, ok := a.reservedBy(mustAddr(t, "10.0.0.0")); !ok {
			t.Errorf("the served family's address is not reserved")
		}
	})
	t.Run("RequireAll with a missing family", func(t *testing.T) {
		a := NewAllocator()
		one := newPool(t, "one", "10.0.0.7")
		res := a.Allocate(svc("u1", IPv4, IPv6), []*Pool{one}, nil)
		if len(res.Assignments) != 0 || len(res.Failures) != 1 || res.Failures[0].Family != IPv6 || res.Failures[0].Reason != ReasonNoMatchingPool {
			t.Fatalf("got %s", fmtResult(res))
		}
		wantRelease(t, res)
		if n := a.reservedCount(); n != 0 {
			t.Fatalf("%d reservations left", n)
		}
		// The address that was tried is free for others.
		wantAssignment(t, oneAssignment(t, a.Allocate(svc("u2", IPv4), []*Pool{one}, nil)), "10.0.0.7", "one", New)
	})
	t.Run("RequireAll failure does not drop an earlier reservation of another Service", func(t *testing.T) {
		a := NewAllocator()
		pools := []*Pool{v4(t)}
		x := oneAssignment(t, a.Allocate(svc("u0", IPv4), pools, nil)).Addr
		a.Allocate(svc("u1", IPv4, IPv6), pools, nil)
		if uid, ok := a.reservedBy(x); !ok || uid != "u0" {
			t.Fatalf("reservation of u0 lost")
		}
	})
	t.Run("RequireAll keeps held addresses", func(t *testing.T) {
		a := NewAllocator()
		pools := []*Pool{v4(t)}
		x := oneAssignment(t, allocate(t, a, svc("u1", IPv4), pools, nil)).Addr
		res := a.Allocate(svc("u1", IPv4, IPv6), pools, nil)
		if len(res.Assignments) != 1 || len(res.Failures) != 1 || res.Failures[0].Family != IPv6 {
			t.Fatalf("got %s", fmtResult(res))
		}
		wantAssignment(t, res.Assignments[0], x.String(), "a4", Held)
		wantRelease(t, res)
	})
	t.Run("RequireAll failure with a Join drops the join", func(t *testing.T) {
		a := NewAllocator()
		pools := []*Pool{v4(t)}
		first := svc("u0", IPv4)
		first.SharingKey = "ns/k"
		allocate(t, a, first, pools, nil)
		req := svc("u1", IPv4, IPv6)
		req.SharingKey = "ns/k"
		res := a.Allocate(req, pools, nil)
		if len(res.Assignments) != 0 || len(res.Failures) != 1 {
			t.Fatalf("got %s", fmtResult(res))
		}
	})
	t.Run("upgrade to dual-stack keeps v4 and adds v6", func(t *testing.T) {
		a := NewAllocator()
		pools := []*Pool{v4(t), v6(t)}
		x := oneAssignment(t, allocate(t, a, svc("u1", IPv4), pools, nil)).Addr
		res := a.Allocate(svc("u1", IPv4, IPv6), pools, nil)
		if len(res.Assignments) != 2 {
			t.Fatalf("got %s", fmtResult(res))
		}
		wantAssignment(t, res.Assignments[0], x.String(), "a4", Held)
		wantAssignment(t, res.Assignments[1], "2001:db8::1", "a6", New)
		wantRelease(t, res)
	})
	t.Run("family dropped releases its address", func(t *testing.T) {
		for _, keep := range []Family{IPv4, IPv6} {
			a := NewAllocator()
			pools := []*Pool{v4(t), v6(t)}
			res := allocate(t, a, svc("u1", IPv4, IPv6), pools, nil)
			x4, x6 := res.Assignments[0].Addr, res.Assignments[1].Addr
			res = a.Allocate(svc("u1", keep), pools, nil)
			asg := oneAssignment(t, res)
			if keep == IPv4 {
				wantAssignment(t, asg, x4.String(), "a4", Held)
				wantRelease(t, res, x6.String())
			} else {
				wantAssignment(t, asg, x6.String(), "a6", Held)
				wantRelease(t, res, x4.String())
			}
		}
	})
	t.Run("release is sorted", func(t *testing.T) {
		a := NewAllocator()
		pools := []*Pool{v4(t), v6(t)}
		allocate(t, a, svc("u1", IPv6, IPv4), pools, nil)
		res := a.Allocate(svc("u1"), pools, nil)
		wantRelease(t, res, "10.0.0.0", "2001:db8::1")
	})
}

// requireAllRollbackCases: a RequireDualStack Service holds 10.0.0.0 and
// 2001:db8::, then changes its request so that IPv4 gets a New address while
// IPv6 fails; RequireAll rolls the New address back.
var requireAllRollbackCases = []struct {
	name   string
	change func(t *testing.T, r Request) Request
}{
	{"requested IPs change", func(t *testing.T, r Request) Request {
		r.IPs = addrs(t, "10.0.0.50", "2001:db8:ffff::1")
		return r
	}},
	{"named pool without IPv6", func(t *testing.T, r Request) Request {
		r.Pool = "b4"
		return r
	}},
}

func requireAllRollback(t *testing.T, change func(t *testing.T, r Request) Request) (*Allocator, Result) {
	t.Helper()
	a := NewAllocator()
	pools := []*Pool{newPool(t, "a", "10.0.0.0/24", "2001:db8::/120"), newPool(t, "b4", "10.0.1.0/24")}
	req := svc("u1", IPv4, IPv6)
	res := allocate(t, a, req, pools, nil)
	if len(res.Assignments) != 2 {
		t.Fatalf("setup: %s", fmtResult(res))
	}
	res = a.Allocate(change(t, req), pools, nil)
	if len(res.Failures) != 1 || res.Failures[0].Family != IPv6 {
		t.Fatalf("want an IPv6 failure, got %s", fmtResult(res))
	}
	return a, res
}

// The rolled-back family keeps what it held: "a request it can't satisfy
// never takes a working address away".
func TestAllocateRequireAllRollbackKeepsReplacedAddress(t *testing.T) {
	for _, tc := range requireAllRollbackCases {
		t.Run(tc.name, func(t *testing.T) {
			a, res := requireAllRollback(t, tc.change)
			wantRelease(t, res)
			got := map[string]bool{}
			for _, asg := range res.Assignments {
				if asg.State != Held {
					t.Fatalf("RequireAll failure returned a %s assignment: %s", stateName(asg.State), fmtResult(res))
				}
				got[asg.Addr.String()] = true
			}
			if len(res.Assignments) != 2 || !got["10.0.0.0"] || !got["2001:db8::1"] {
				t.Fatalf("want both held addresses kept, got %s", fmtResult(res))
			}
			if n := a.reservedCount(); n != 0 {
				t.Fatalf("%d reservations left", n)
			}
		})
	}
}

// Result.Assignments is documented to be "in the order of the request's
// families", also after a RequireAll rollback re-keeps a held address
// (regression: it used to be appended after the IPv6 one).
func TestAllocateRequireAllRollbackKeepsFamilyOrder(t *testing.T) {
	for _, tc := range requireAllRollbackCases {
		t.Run(tc.name, func(t *testing.T) {
			_, res := requireAllRollback(t, tc.change)
			if len(res.Assignments) != 2 {
				t.Fatalf("got %s", fmtResult(res))
			}
			if FamilyOf(res.Assignments[0].Addr) != IPv4 || FamilyOf(res.Assignments[1].Addr) != IPv6 {
				t.Errorf("assignments %s are not in the request's family order [IPv4 IPv6]", fmtResult(res))
			}
		})
	}
}

// ---- adoption of the current address ----

func TestAllocateAdoptsCurrentAddress(t *testing.T) {
	pools := func(t *testing.T) []*Pool {
		m := newPool(t, "manual", "10.0.9.0/24")
		m.AutoAssign = false
		return []*Pool{newPool(t, "a", "10.0.0.0/24"), m}
	}
	t.Run("free address in a pool is adopted", func(t *testing.T) {
		req := svc("u1", IPv4)
		req.Current = addrs(t, "10.0.0.77")
		wantAssignment(t, oneAssignment(t, NewAllocator().Allocate(req, pools(t), nil)), "10.0.0.77", "a", New)
	})
	t.Run("taken address is not adopted", func(t *testing.T) {
		a := NewAllocator()
		a.Set(Allocation{Addr: mustAddr(t, "10.0.0.77"), Pool: "a", Holders: []Holder{{UID: "o"}}})
		req := svc("u1", IPv4)
		req.Current = addrs(t, "10.0.0.77")
		wantAssignment(t, oneAssignment(t, a.Allocate(req, pools(t), nil)), "10.0.0.0", "a", New)
	})
	t.Run("address outside the pools is not adopted", func(t *testing.T) {
		req := svc("u1", IPv4)
		req.Current = addrs(t, "192.0.2.1")
		wantAssignment(t, oneAssignment(t, NewAllocator().Allocate(req, pools(t), nil)), "10.0.0.0", "a", New)
	})
	t.Run("requested address wins", func(t *testing.T) {
		req := svc("u1", IPv4)
		req.Current = addrs(t, "10.0.0.77")
		req.IPs = addrs(t, "10.0.0.88")
		wantAssignment(t, oneAssignment(t, NewAllocator().Allocate(req, pools(t), nil)), "10.0.0.88", "a", New)
	})
}

// ---- bookkeeping ----

func TestUsageAndOrphans(t *testing.T) {
	a := NewAllocator()
	h := []Holder{{UID: "x", Namespace: "ns", Name: "x"}}
	for _, s := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.200", "2001:db8::1", "2001:db8::2"} {
		a.Set(Allocation{Addr: mustAddr(t, s), Pool: "a", Holders: h})
	}
	a.Set(Allocation{Addr: mustAddr(t, "10.0.1.1"), Pool: "b", Holders: h})

	full := newPool(t, "a", "10.0.0.0/24", "2001:db8::/120")
	u := a.Usage("a", full)
	if u.Allocated[IPv4] != 3 || u.Allocated[IPv6] != 2 || u.Orphaned != 0 {
		t.Errorf("Usage(a, full) = %+v", u)
	}
	shrunk := newPool(t, "a", "10.0.0.0-10.0.0.100")
	u = a.Usage("a", shrunk)
	if u.Allocated[IPv4] != 2 || u.Allocated[IPv6] != 0 || u.Orphaned != 3 {
		t.Errorf("Usage(a, shrunk) = %+v", u)
	}
	u = a.Usage("a", nil)
	if u.Allocated[IPv4] != 0 || u.Allocated[IPv6] != 0 || u.Orphaned != 5 {
		t.Errorf("Usage(a, nil) = %+v", u)
	}
	u = a.Usage("nope", full)
	if u.Allocated == nil || u.Allocated[IPv4] != 0 || u.Orphaned != 0 {
		t.Errorf("Usage(nope) = %+v", u)
	}
	if got := a.Pools(); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Pools() = %q", got)
	}
	a.Delete(mustAddr(t, "10.0.1.1"))
	if got := a.Pools(); !slices.Equal(got, []string{"a"}) {
		t.Errorf("Pools() after deleting b's only address = %q", got)
	}
	// Moving a record to another pool moves its count.
	a.Set(Allocation{Addr: mustAddr(t, "10.0.0.1"), Pool: "c", Holders: h})
	if u := a.Usage("a", full); u.Allocated[IPv4] != 2 {
		t.Errorf("Usage(a) after re-Set into c = %+v", u)
	}
	if u := a.Usage("c", nil); u.Orphaned != 1 {
		t.Errorf("Usage(c, nil) = %+v", u)
	}
}

func TestDeleteThenReuse(t *testing.T) {
	a := NewAllocator()
	pools := []*Pool{newPool(t, "a", "10.0.0.0/30")}
	for i := range 4 {
		oneAssignment(t, allocate(t, a, svc(fmt.Sprint("u", i), IPv4), pools, nil))
	}
	wantFailure(t, a.Allocate(svc("late", IPv4), pools, nil), IPv4, ReasonPoolExhausted)
	a.Delete(mustAddr(t, "10.0.0.2"))
	a.Delete(mustAddr(t, "10.0.0.2")) // deleting twice is harmless
	if held := a.HeldBy("u2"); len(held) != 0 {
		t.Errorf("HeldBy(u2) after Delete = %+v", held)
	}
	wantAssignment(t, oneAssignment(t, allocate(t, a, svc("late", IPv4), pools, nil)), "10.0.0.2", "a", New)
	wantFailure(t, a.Allocate(svc("later", IPv4), pools, nil), IPv4, ReasonPoolExhausted)
}

func TestAllocateCursor(t *testing.T) {
	a := NewAllocator()
	pools := []*Pool{newPool(t, "a", "10.0.0.0/29")}
	next := func(uid string) string {
		t.Helper()
		return oneAssignment(t, allocate(t, a, svc(uid, IPv4), pools, nil)).Addr.String()
	}
	for i, want := range []string{"10.0.0.0", "10.0.0.1", "10.0.0.2"} {
		if got := next(fmt.Sprint("u", i)); got != want {
			t.Fatalf("allocation %d = %s, want %s", i, got, want)
		}
	}
	// Release .0: the allocator continues after its cursor rather than
	// immediately reusing the freed address.
	commit(t, a, svc("u0", IPv4), a.Allocate(svc("u0"), pools, nil))
	if _, ok := a.Get(mustAddr(t, "10.0.0.0")); ok {
		t.Fatalf("10.0.0.0 not released")
	}
	for i, want := range []string{"10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7"} {
		if got := next(fmt.Sprint("v", i)); got != want {
			t.Fatalf("allocation after release %d = %s, want %s", i, got, want)
		}
	}
	// The rest is full: wrap around to the freed address.
	if got := next("w0"); got != "10.0.0.0" {
		t.Fatalf("after wrap = %s, want 10.0.0.0", got)
	}
	wantFailure(t, a.Allocate(svc("w1", IPv4), pools, nil), IPv4, ReasonPoolExhausted)
	// Free two addresses behind and ahead of the cursor (now .0): the one
	// after the cursor comes first.
	a.Delete(mustAddr(t, "10.0.0.5"))
	a.Delete(mustAddr(t, "10.0.0.2"))
	if got := next("w2"); got != "10.0.0.2" {
		t.Fatalf("got %s, want 10.0.0.2", got)
	}
	if got := next("w3"); got != "10.0.0.5" {
		t.Fatalf("got %s, want 10.0.0.5", got)
	}
}

func TestAllocateCursorAcrossRanges(t *testing.T) {
	a := NewAllocator()
	p := newPool(t, "a", "10.0.5.1", "10.0.0.1-10.0.0.2", "2001:db8::1-2001:db8::2")
	pools := []*Pool{p}
	var got []string
	for i := range 3 {
		got = append(got, oneAssignment(t, allocate(t, a, svc(fmt.Sprint("u", i), IPv4), pools, nil)).Addr.String())
	}
	if want := []string{"10.0.0.1", "10.0.0.2", "10.0.5.1"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	wantFailure(t, a.Allocate(svc("x", IPv4), pools, nil), IPv4, ReasonPoolExhausted)
	a.Delete(mustAddr(t, "10.0.0.1"))
	wantAssignment(t, oneAssignment(t, a.Allocate(svc("x", IPv4), pools, nil)), "10.0.0.1", "a", New)
	// The IPv6 cursor is separate.
	wantAssignment(t, oneAssignment(t, a.Allocate(svc("y", IPv6), pools, nil)), "2001:db8::1", "a", New)

	// A pool whose ranges changed so that the cursor is outside them starts
	// from its first address.
	p2 := newPool(t, "a", "10.0.7.0/30")
	wantAssignment(t, oneAssignment(t, a.Allocate(svc("z", IPv4), []*Pool{p2}, nil)), "10.0.7.0", "a", New)
}

func TestSetGetHeldBy(t *testing.T) {
	a := NewAllocator()
	x, y, z := mustAddr(t, "10.0.0.9"), mustAddr(t, "10.0.0.1"), mustAddr(t, "2001:db8::1")
	h1 := Holder{UID: "u1", Namespace: "ns", Name: "one"}
	h2 := Holder{UID: "u2", Namespace: "ns", Name: "two"}
	holders := []Holder{h1, h2}
	a.Set(Allocation{Addr: x, Pool: "a", SharingKey: "ns/k", Holders: holders})
	holders[0].UID = "changed" // Set keeps its own copy
	a.Set(Allocation{Addr: z, Pool: "a", Holders: []Holder{h1}})
	a.Set(Allocation{Addr: y, Pool: "a", Holders: []Holder{h1}})

	got := a.HeldBy("u1")
	if len(got) != 3 || got[0].Addr != y || got[1].Addr != x || got[2].Addr != z {
		t.Fatalf("HeldBy(u1) = %+v, want sorted by address", got)
	}
	if got[1].Holders[0] != h1 {
		t.Fatalf("Set did not copy holders: %+v", got[1].Holders)
	}
	if got := a.HeldBy("u2"); len(got) != 1 || got[0].Addr != x || got[0].SharingKey != "ns/k" {
		t.Fatalf("HeldBy(u2) = %+v", got)
	}
	if got := a.HeldByName("ns", "one"); len(got) != 3 || got[0].Addr != y {
		t.Fatalf("HeldByName(ns, one) = %+v", got)
	}
	if got := a.HeldBy("nobody"); len(got) != 0 {
		t.Fatalf("HeldBy(nobody) = %+v", got)
	}

	// Get returns a copy.
	al, ok := a.Get(x)
	if !ok || al.Pool != "a" || len(al.Holders) != 2 {
		t.Fatalf("Get(x) = %+v, %v", al, ok)
	}
	al.Holders[0].UID = "mutated"
	if again, _ := a.Get(x); again.Holders[0].UID != "u1" {
		t.Fatalf("Get exposes internal state")
	}
	if _, ok := a.Get(mustAddr(t, "10.9.9.9")); ok {
		t.Fatalf("Get of an unknown address succeeded")
	}

	// Re-Set replaces holders and key, and the indexes follow.
	a.Set(Allocation{Addr: x, Pool: "a", SharingKey: "ns/other", Holders: []Holder{h2}})
	if got := a.HeldBy("u1"); len(got) != 2 {
		t.Fatalf("HeldBy(u1) after re-Set = %+v", got)
	}
	if got := a.HeldByName("ns", "one"); len(got) != 2 {
		t.Fatalf("HeldByName(ns, one) after re-Set = %+v", got)
	}
	pools := []*Pool{newPool(t, "a", "10.0.0.0/24")}
	req := svc("u3", IPv4)
	req.SharingKey = "ns/k"
	if asg := oneAssignment(t, a.Allocate(req, pools, nil)); asg.State != New {
		t.Fatalf("old key still indexed: %s", fmtAsg(asg))
	}
	req.SharingKey = "ns/other"
	wantAssignment(t, oneAssignment(t, a.Allocate(req, pools, nil)), x.String(), "a", Join)

	a.Delete(x)
	if got := a.HeldBy("u2"); len(got) != 0 {
		t.Fatalf("HeldBy(u2) after Delete = %+v", got)
	}
	req.UID = "u4"
	if asg := oneAssignment(t, a.Allocate(req, pools, nil)); asg.State != New {
		t.Fatalf("deleted key still indexed: %s", fmtAsg(asg))
	}
}

func TestStrings(t *testing.T) {
	if got := (Holder{UID: "u", Namespace: "ns", Name: "web"}).String(); got != "ns/web" {
		t.Errorf("Holder.String() = %q", got)
	}
	f := Failure{Family: IPv4, Reason: ReasonPoolExhausted, Message: "no free IPv4 address in pool a"}
	if got := f.Error(); got != "PoolExhausted: no free IPv4 address in pool a" {
		t.Errorf("Failure.Error() = %q", got)
	}
	var err error = f
	var ff Failure
	if !errors.As(err, &ff) || ff.Reason != ReasonPoolExhausted {
		t.Errorf("Failure is not usable as an error")
	}
}

// ---- concurrency ----

func TestAllocateConcurrent(t *testing.T) {
	for round := range 5 {
		a := NewAllocator()
		pools := []*Pool{newPool(t, "a", "10.0.0.0/28"), newPool(t, "b6", "2001:db8::/124")}
		const workers = 64
		var (
			mu       sync.Mutex
			got      = map[netip.Addr]string{}
			okCount  int
			failures = map[string]int{}
			wg       sync.WaitGroup
			start    = make(chan struct{})
		)
		for i := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				req := svc(fmt.Sprintf("r%d-u%d", round, i), IPv4)
				res := a.Allocate(req, pools, nil)
				for _, asg := range res.Assignments {
					if asg.State != New {
						t.Errorf("%s: state %s", req.UID, stateName(asg.State))
						continue
					}
					a.Set(Allocation{Addr: asg.Addr, Pool: asg.Pool, Holders: []Holder{holderOf(req)}})
					a.Unreserve(asg.Addr)
				}
				// Readers race with writers too.
				_ = a.Usage("a", pools[0])
				_ = a.HeldBy(req.UID)
				_ = a.Pools()
				mu.Lock()
				defer mu.Unlock()
				for _, asg := range res.Assignments {
					if other, dup := got[asg.Addr]; dup {
						t.Errorf("%s handed out to %s and %s", asg.Addr, other, req.UID)
					}
					got[asg.Addr] = req.UID
					okCount++
				}
				for _, f := range res.Failures {
					failures[f.Reason]++
				}
			}()
		}
		close(start)
		wg.Wait()
		if okCount != 16 || len(got) != 16 {
			t.Fatalf("round %d: %d successes over %d addresses, want 16 (capacity)", round, okCount, len(got))
		}
		if failures[ReasonPoolExhausted] != workers-16 || len(failures) != 1 {
			t.Fatalf("round %d: failures %v, want %d PoolExhausted", round, failures, workers-16)
		}
		if u := a.Usage("a", pools[0]); u.Allocated[IPv4] != 16 {
			t.Fatalf("round %d: usage %+v", round, u)
		}
		if a.reservedCount() != 0 {
			t.Fatalf("round %d: reservations left", round)
		}
	}
}

// Reservations alone (no Set) must keep concurrent Allocate calls apart.
func TestAllocateConcurrentReservationsOnly(t *testing.T) {
	a := NewAllocator()
	pools := []*Pool{newPool(t, "a", "2001:db8::1-2001:db8::40")} // 64 addresses
	const workers = 100
	var (
		mu  sync.Mutex
		got = map[netip.Addr]int{}
		wg  sync.WaitGroup
	)
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := a.Allocate(svc(fmt.Sprint("u", i), IPv6), pools, nil)
			mu.Lock()
			defer mu.Unlock()
			for _, asg := range res.Assignments {
				got[asg.Addr]++
			}
		}()
	}
	wg.Wait()
	if len(got) != 64 {
		t.Fatalf("%d distinct addresses reserved, want 64", len(got))
	}
	for addr, n := range got {
		if n != 1 {
			t.Errorf("%s handed out %d times", addr, n)
		}
	}
}
