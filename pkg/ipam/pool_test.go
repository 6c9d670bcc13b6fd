package ipam

import (
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
)

// newPool builds an enabled, auto-assign pool or fails the test.
func newPool(t testing.TB, name string, addrs ...string) *Pool {
	t.Helper()
	p, err := NewPool(name, addrs)
	if err != nil {
		t.Fatalf("NewPool(%q, %q): %v", name, addrs, err)
	}
	return p
}

func mustSelector(t testing.TB, s string) labels.Selector {
	t.Helper()
	sel, err := labels.Parse(s)
	if err != nil {
		t.Fatalf("labels.Parse(%q): %v", s, err)
	}
	return sel
}

func rangeStrings(rs []Range) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.String())
	}
	return out
}

func TestNewPool(t *testing.T) {
	for _, tc := range []struct {
		name    string
		addrs   []string
		want    []string // ranges, in order, as String()
		wantErr string
	}{
		{name: "no addresses", addrs: nil, want: []string{}},
		{name: "one cidr", addrs: []string{"10.0.0.0/30"}, want: []string{"10.0.0.0-10.0.0.3"}},
		{
			name:  "sorted by first address",
			addrs: []string{"10.0.2.0/30", "10.0.0.9", "10.0.1.0-10.0.1.5"},
			want:  []string{"10.0.0.9", "10.0.1.0-10.0.1.5", "10.0.2.0-10.0.2.3"},
		},
		{
			name:  "v4 before v6",
			addrs: []string{"2001:db8::/126", "10.0.0.0/30", "::1", "192.0.2.1"},
			want:  []string{"10.0.0.0-10.0.0.3", "192.0.2.1", "::1", "2001:db8::-2001:db8::3"},
		},
		{
			name:  "v6 low address after v4 high address",
			addrs: []string{"::1", "255.255.255.254"},
			want:  []string{"255.255.255.254", "::1"},
		},
		{
			name:  "adjacent ranges are fine",
			addrs: []string{"10.0.0.4-10.0.0.7", "10.0.0.0/30", "10.0.0.8"},
			want:  []string{"10.0.0.0-10.0.0.3", "10.0.0.4-10.0.0.7", "10.0.0.8"},
		},
		{
			name:  "same bits in both families do not overlap",
			addrs: []string{"::/96", "0.0.0.0/0"},
			want:  []string{"0.0.0.0-255.255.255.255", "::-::ffff:ffff"},
		},
		{name: "duplicate entry", addrs: []string{"10.0.0.0/24", "10.0.0.0/24"}, wantErr: "overlap"},
		{name: "cidr contains single", addrs: []string{"10.0.0.0/24", "10.0.0.7"}, wantErr: "overlap"},
		{name: "partial overlap", addrs: []string{"10.0.0.0-10.0.0.10", "10.0.0.10-10.0.0.20"}, wantErr: "overlap"},
		{name: "non-masked cidr overlaps", addrs: []string{"10.0.0.200/24", "10.0.0.0-10.0.0.5"}, wantErr: "overlap"},
		{
			// The overlapping pair is not adjacent in input order.
			name:    "overlap found after sorting",
			addrs:   []string{"10.0.0.0-10.0.0.100", "10.0.5.0/24", "10.0.0.50"},
			wantErr: "overlap",
		},
		{
			// A wide range swallows two later ones; only the first pair is
			// adjacent after sorting.
			name:    "wide range over several",
			addrs:   []string{"10.0.0.20-10.0.0.21", "10.0.0.30", "10.0.0.0-10.0.0.255"},
			wantErr: "overlap",
		},
		{name: "v6 overlap", addrs: []string{"2001:db8::/64", "2001:db8::5-2001:db8::9"}, wantErr: "overlap"},
		{name: "bad entry", addrs: []string{"10.0.0.0/24", "nope"}, wantErr: "invalid address"},
		{name: "empty entry", addrs: []string{""}, wantErr: "empty"},
		{name: "entry covering IPv4-mapped", addrs: []string{"10.0.0.0/24", "::/64"}, wantErr: "IPv4-mapped"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewPool("pool-a", tc.addrs)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("NewPool(%q) = %v, want error containing %q", tc.addrs, rangeStrings(p.Ranges), tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("NewPool(%q) error %q, want it to contain %q", tc.addrs, err, tc.wantErr)
				}
				if p != nil {
					t.Errorf("NewPool returned a pool with an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("NewPool(%q): %v", tc.addrs, err)
			}
			if got := rangeStrings(p.Ranges); !slices.Equal(got, tc.want) {
				t.Errorf("ranges = %q, want %q", got, tc.want)
			}
			if p.Name != "pool-a" {
				t.Errorf("Name = %q, want pool-a", p.Name)
			}
			if !p.AutoAssign || p.Disabled || p.AvoidBuggyIPs || p.Priority != 0 || p.HasSelector() {
				t.Errorf("defaults = %+v, want AutoAssign only", p)
			}
		})
	}
}

func TestPoolAdmits(t *testing.T) {
	nsProd := map[string]string{"env": "prod"}
	nsDev := map[string]string{"env": "dev"}
	svcWeb := map[string]string{"app": "web"}
	svcDB := map[string]string{"app": "db"}
	for _, tc := range []struct {
		name         string
		nsSel, svSel string // "" means nil selector
		ns, svc      map[string]string
		want         bool
	}{
		{name: "no selectors", ns: nil, svc: nil, want: true},
		{name: "no selectors with labels", ns: nsProd, svc: svcWeb, want: true},
		{name: "ns selector match", nsSel: "env=prod", ns: nsProd, svc: svcDB, want: true},
		{name: "ns selector mismatch", nsSel: "env=prod", ns: nsDev, svc: svcWeb, want: false},
		{name: "ns selector no labels", nsSel: "env=prod", ns: nil, svc: svcWeb, want: false},
		{name: "svc selector match", svSel: "app=web", ns: nsDev, svc: svcWeb, want: true},
		{name: "svc selector mismatch", svSel: "app=web", ns: nsDev, svc: svcDB, want: false},
		{name: "both match", nsSel: "env=prod", svSel: "app=web", ns: nsProd, svc: svcWeb, want: true},
		{name: "both, ns mismatch", nsSel: "env=prod", svSel: "app=web", ns: nsDev, svc: svcWeb, want: false},
		{name: "both, svc mismatch", nsSel: "env=prod", svSel: "app=web", ns: nsProd, svc: svcDB, want: false},
		{name: "set-based", svSel: "app in (web,api)", svc: svcWeb, want: true},
		{name: "not-in", svSel: "app notin (web)", svc: svcDB, want: true},
		{name: "exists mismatch", nsSel: "team", ns: nsProd, want: false},
		// Selector labels.Everything() is not nil: it admits everyone.
		{name: "everything selector", nsSel: "<everything>", ns: nil, want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPool(t, "p", "10.0.0.0/24")
			if tc.nsSel == "<everything>" {
				p.NamespaceSelector = labels.Everything()
			} else if tc.nsSel != "" {
				p.NamespaceSelector = mustSelector(t, tc.nsSel)
			}
			if tc.svSel != "" {
				p.ServiceSelector = mustSelector(t, tc.svSel)
			}
			if got := p.Admits(tc.ns, tc.svc); got != tc.want {
				t.Errorf("Admits(%v, %v) = %v, want %v", tc.ns, tc.svc, got, tc.want)
			}
			if want := tc.nsSel != "" || tc.svSel != ""; p.HasSelector() != want {
				t.Errorf("HasSelector() = %v, want %v", p.HasSelector(), want)
			}
		})
	}
}

func TestPoolContainsUsableHasFamily(t *testing.T) {
	p := newPool(t, "p", "10.0.0.0/24", "10.0.2.10-10.0.2.20", "2001:db8::/126")
	for _, tc := range []struct {
		addr                       string
		contains, usable, avoiding bool // avoiding: Usable with AvoidBuggyIPs
	}{
		{"10.0.0.0", true, true, false},
		{"10.0.0.1", true, true, true},
		{"10.0.0.255", true, true, false},
		{"10.0.1.1", false, false, false},
		{"10.0.2.10", true, true, true},
		{"10.0.2.21", false, false, false},
		{"2001:db8::", true, false, false}, // Subnet-Router anycast
		{"2001:db8::3", true, true, true},
		{"2001:db8::4", false, false, false},
	} {
		a := mustAddr(t, tc.addr)
		p.AvoidBuggyIPs = false
		if got := p.Contains(a); got != tc.contains {
			t.Errorf("Contains(%s) = %v, want %v", a, got, tc.contains)
		}
		if got := p.Usable(a); got != tc.usable {
			t.Errorf("Usable(%s) without AvoidBuggyIPs = %v, want %v", a, got, tc.usable)
		}
		p.AvoidBuggyIPs = true
		if got := p.Usable(a); got != tc.avoiding {
			t.Errorf("Usable(%s) with AvoidBuggyIPs = %v, want %v", a, got, tc.avoiding)
		}
		if got := p.Contains(a); got != tc.contains {
			t.Errorf("Contains(%s) with AvoidBuggyIPs = %v, want %v", a, got, tc.contains)
		}
	}
	if !p.HasFamily(IPv4) || !p.HasFamily(IPv6) {
		t.Errorf("HasFamily: want both families")
	}
	v4 := newPool(t, "v4", "10.0.0.0/24")
	if !v4.HasFamily(IPv4) || v4.HasFamily(IPv6) {
		t.Errorf("v4 pool HasFamily(IPv4)=%v HasFamily(IPv6)=%v", v4.HasFamily(IPv4), v4.HasFamily(IPv6))
	}
	v6 := newPool(t, "v6", "2001:db8::1")
	if v6.HasFamily(IPv4) || !v6.HasFamily(IPv6) {
		t.Errorf("v6 pool HasFamily(IPv4)=%v HasFamily(IPv6)=%v", v6.HasFamily(IPv4), v6.HasFamily(IPv6))
	}
	empty := newPool(t, "empty")
	if empty.HasFamily(IPv4) || empty.HasFamily(IPv6) || empty.Contains(mustAddr(t, "10.0.0.1")) {
		t.Errorf("empty pool claims addresses")
	}
}

func TestPoolCapacity(t *testing.T) {
	p := newPool(t, "p", "10.0.0.0/24", "10.0.1.0-10.0.1.9", "192.0.2.255", "2001:db8::/120", "2001:db8:1::1")
	if got, want := p.Capacity(IPv4), uint64(256+10+1); got != want {
		t.Errorf("Capacity(IPv4) = %d, want %d", got, want)
	}
	// 2001:db8:: is the Subnet-Router anycast address of its /64.
	if got, want := p.Capacity(IPv6), uint64(255+1); got != want {
		t.Errorf("Capacity(IPv6) = %d, want %d", got, want)
	}
	p.AvoidBuggyIPs = true
	// /24: -2; 10.0.1.0-9: -1 (10.0.1.0); 192.0.2.255: -1.
	if got, want := p.Capacity(IPv4), uint64(254+9+0); got != want {
		t.Errorf("Capacity(IPv4) avoiding = %d, want %d", got, want)
	}
	if got, want := p.Capacity(IPv6), uint64(255+1); got != want {
		t.Errorf("Capacity(IPv6) avoiding = %d, want %d (IPv6 is never buggy)", got, want)
	}
}

func TestPoolOverlap(t *testing.T) {
	a := newPool(t, "a", "10.0.0.0/24", "2001:db8::/64")
	for _, tc := range []struct {
		addrs []string
		want  string // overlapping range of a; "" for none
	}{
		{[]string{"10.0.1.0/24"}, ""},
		{[]string{"10.0.0.255"}, "10.0.0.0-10.0.0.255"},
		{[]string{"10.0.1.0/24", "2001:db8::ffff"}, "2001:db8::-2001:db8::ffff:ffff:ffff:ffff"},
		{[]string{"2001:db8:1::/64", "192.0.2.0/24"}, ""},
		{[]string{"2000::/3"}, "2001:db8::-2001:db8::ffff:ffff:ffff:ffff"},
		{nil, ""},
	} {
		b := newPool(t, "b", tc.addrs...)
		r, ok := a.Overlap(b)
		if ok != (tc.want != "") {
			t.Errorf("Overlap(%q) ok = %v, want %v", tc.addrs, ok, tc.want != "")
			continue
		}
		if ok && r.String() != tc.want {
			t.Errorf("Overlap(%q) = %s, want %s", tc.addrs, r, tc.want)
		}
		if _, ok2 := b.Overlap(a); ok2 != ok {
			t.Errorf("Overlap(%q) not symmetric", tc.addrs)
		}
	}
}

func TestSortPools(t *testing.T) {
	mk := func(name string, prio int32) *Pool {
		return &Pool{Name: name, Priority: prio}
	}
	want := []string{"neg", "a", "b", "c", "z-first-of-10", "a-20", "b-20"}
	pools := []*Pool{
		mk("b-20", 20), mk("c", 0), mk("z-first-of-10", 10), mk("a", 0),
		mk("neg", -5), mk("a-20", 20), mk("b", 0),
	}
	// Every rotation of the input sorts the same.
	for i := range pools {
		in := slices.Clone(pools)
		in = append(in[i:], in[:i]...)
		SortPools(in)
		var got []string
		for _, p := range in {
			got = append(got, p.Name)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("rotation %d: SortPools = %q, want %q", i, got, want)
		}
	}
}
