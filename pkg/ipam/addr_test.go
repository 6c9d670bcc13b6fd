package ipam

import (
	"math"
	"math/big"
	"net/netip"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

// mustAddr parses an address or fails the test.
func mustAddr(t testing.TB, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatalf("ParseAddr(%q): %v", s, err)
	}
	return a
}

// mustRange parses a pool entry or fails the test.
func mustRange(t testing.TB, s string) Range {
	t.Helper()
	r, err := ParseRange(s)
	if err != nil {
		t.Fatalf("ParseRange(%q): %v", s, err)
	}
	return r
}

func TestFamilyOf(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Family
	}{
		{"192.0.2.1", IPv4},
		{"0.0.0.0", IPv4},
		{"2001:db8::1", IPv6},
		{"::", IPv6},
	} {
		if got := FamilyOf(mustAddr(t, tc.in)); got != tc.want {
			t.Errorf("FamilyOf(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		name        string
		in          string
		first, last string
		wantErr     string // substring of the error; "" means success
	}{
		// CIDRs.
		{name: "v4 /24", in: "10.0.0.0/24", first: "10.0.0.0", last: "10.0.0.255"},
		{name: "v4 non-masked /24", in: "10.0.0.5/24", first: "10.0.0.0", last: "10.0.0.255"},
		{name: "v4 /23 non-masked", in: "10.0.1.77/23", first: "10.0.0.0", last: "10.0.1.255"},
		{name: "v4 /32", in: "192.0.2.7/32", first: "192.0.2.7", last: "192.0.2.7"},
		{name: "v4 /31", in: "192.0.2.7/31", first: "192.0.2.6", last: "192.0.2.7"},
		{name: "v4 /0", in: "0.0.0.0/0", first: "0.0.0.0", last: "255.255.255.255"},
		{name: "v4 /12 odd bits", in: "172.16.0.0/12", first: "172.16.0.0", last: "172.31.255.255"},
		{name: "v6 /120", in: "2001:db8::/120", first: "2001:db8::", last: "2001:db8::ff"},
		{name: "v6 non-masked /64", in: "2001:db8::1234/64", first: "2001:db8::", last: "2001:db8::ffff:ffff:ffff:ffff"},
		{name: "v6 /128", in: "2001:db8::1/128", first: "2001:db8::1", last: "2001:db8::1"},
		{name: "v6 /127", in: "2001:db8::3/127", first: "2001:db8::2", last: "2001:db8::3"},
		{name: "v6 /57 odd bits", in: "2001:db8:0:80::/57", first: "2001:db8:0:80::", last: "2001:db8:0:ff:ffff:ffff:ffff:ffff"},
		{name: "cidr with spaces", in: "  10.1.0.0/16\t", first: "10.1.0.0", last: "10.1.255.255"},

		// Ranges.
		{name: "v4 range", in: "10.0.0.10-10.0.0.20", first: "10.0.0.10", last: "10.0.0.20"},
		{name: "v4 range spaces", in: " 10.0.0.10 - 10.0.0.20 ", first: "10.0.0.10", last: "10.0.0.20"},
		{name: "v4 range one address", in: "10.0.0.10-10.0.0.10", first: "10.0.0.10", last: "10.0.0.10"},
		{name: "v4 range across octets", in: "10.0.0.250-10.0.1.5", first: "10.0.0.250", last: "10.0.1.5"},
		{name: "v6 range", in: "2001:db8::10-2001:db8::1:0", first: "2001:db8::10", last: "2001:db8::1:0"},
		{name: "v6 range spaces", in: "2001:db8::10 -\t2001:db8::20", first: "2001:db8::10", last: "2001:db8::20"},

		// Single addresses.
		{name: "v4 single", in: "192.0.2.1", first: "192.0.2.1", last: "192.0.2.1"},
		{name: "v6 single", in: "2001:db8::1", first: "2001:db8::1", last: "2001:db8::1"},
		{name: "single with spaces", in: "\n192.0.2.1 ", first: "192.0.2.1", last: "192.0.2.1"},

		// Errors.
		{name: "empty", in: "", wantErr: "empty"},
		{name: "blank", in: "   ", wantErr: "empty"},
		{name: "garbage", in: "not-an-ip", wantErr: "invalid address"},
		{name: "garbage single", in: "hello", wantErr: "invalid address"},
		{name: "garbage cidr", in: "hello/24", wantErr: "invalid CIDR"},
		{name: "v4 with too many octets", in: "10.0.0.0.1", wantErr: "invalid"},
		{name: "v4 octet overflow", in: "10.0.0.256", wantErr: "invalid"},
		{name: "v4 leading zero", in: "010.0.0.1", wantErr: "invalid"},
		{name: "mixed families", in: "10.0.0.1-2001:db8::1", wantErr: "mixes IPv4 and IPv6"},
		{name: "mixed families v6 first", in: "2001:db8::1-10.0.0.1", wantErr: "mixes IPv4 and IPv6"},
		{name: "reversed v4", in: "10.0.0.20-10.0.0.10", wantErr: "ends before it starts"},
		{name: "reversed v6", in: "2001:db8::2-2001:db8::1", wantErr: "ends before it starts"},
		{name: "range missing end", in: "10.0.0.1-", wantErr: "invalid address"},
		{name: "range missing start", in: "-10.0.0.1", wantErr: "invalid address"},
		{name: "range two dashes", in: "10.0.0.1-10.0.0.2-10.0.0.3", wantErr: "invalid address"},
		{name: "zone single", in: "fe80::1%eth0", wantErr: "zone"},
		{name: "zone in range start", in: "fe80::1%eth0-fe80::2", wantErr: "zone"},
		{name: "zone in range end", in: "fe80::1-fe80::2%eth0", wantErr: "zone"},
		{name: "zone in cidr", in: "fe80::1%eth0/64", wantErr: "invalid CIDR"},
		{name: "v4-mapped single", in: "::ffff:1.2.3.4", wantErr: "IPv4-mapped"},
		{name: "v4-mapped hex", in: "::ffff:102:304", wantErr: "IPv4-mapped"},
		{name: "v4-mapped cidr", in: "::ffff:1.2.3.0/120", wantErr: "IPv4-mapped"},
		{name: "v4-mapped range", in: "::ffff:1.2.3.4-::ffff:1.2.3.8", wantErr: "IPv4-mapped"},
		{name: "v4 prefix too long", in: "10.0.0.0/33", wantErr: "invalid CIDR"},
		{name: "v6 prefix too long", in: "2001:db8::/129", wantErr: "invalid CIDR"},
		{name: "negative prefix", in: "10.0.0.0/-1", wantErr: "invalid CIDR"},
		{name: "empty prefix", in: "10.0.0.0/", wantErr: "invalid CIDR"},
		{name: "non-numeric prefix", in: "10.0.0.0/abc", wantErr: "invalid CIDR"},
		{name: "prefix with range", in: "10.0.0.0/24-10.0.1.0", wantErr: "invalid CIDR"},
		// Ranges covering the IPv4-mapped block ::ffff:0:0/96, even when
		// their bounds are not mapped addresses.
		{name: "v6 /0 covers mapped", in: "::/0", wantErr: "IPv4-mapped"},
		{name: "v6 /64 covers mapped", in: "::/64", wantErr: "IPv4-mapped"},
		{name: "v6 /80 ends in mapped", in: "::/80", wantErr: "IPv4-mapped"},
		{name: "v6 /95 ends in mapped", in: "::fffe:0:0/95", wantErr: "IPv4-mapped"},
		{name: "v6 range around mapped", in: "::fffe:ffff:ffff-::1:0:0:0", wantErr: "IPv4-mapped"},
		{name: "v6 /96 below mapped", in: "::/96", first: "::", last: "::ffff:ffff"},
		{name: "just below mapped", in: "::fffe:ffff:ffff", first: "::fffe:ffff:ffff", last: "::fffe:ffff:ffff"},
		{name: "just above mapped", in: "::1:0:0:0-::1:0:0:1", first: "::1:0:0:0", last: "::1:0:0:1"},
		{name: "v6 /1 high half", in: "8000::/1", first: "8000::", last: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRange(tc.in)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseRange(%q) = %v, want error containing %q", tc.in, got, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseRange(%q) error = %q, want it to contain %q", tc.in, err, tc.wantErr)
				}
				if got != (Range{}) {
					t.Errorf("ParseRange(%q) returned %v with an error, want the zero Range", tc.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRange(%q): unexpected error %v", tc.in, err)
			}
			want := Range{First: mustAddr(t, tc.first), Last: mustAddr(t, tc.last)}
			if got != want {
				t.Fatalf("ParseRange(%q) = %v..%v, want %v..%v", tc.in, got.First, got.Last, want.First, want.Last)
			}
		})
	}
}

func TestRangeSize(t *testing.T) {
	pow := func(n uint) *big.Int { return new(big.Int).Lsh(big.NewInt(1), n) }
	for _, tc := range []struct {
		in   string
		want *big.Int
	}{
		{"192.0.2.1", big.NewInt(1)},
		{"10.0.0.0/24", big.NewInt(256)},
		{"10.0.0.0/23", big.NewInt(512)},
		{"10.0.0.0/31", big.NewInt(2)},
		{"10.0.0.250-10.0.1.5", big.NewInt(12)},
		{"0.0.0.0/0", pow(32)},
		{"2001:db8::/120", big.NewInt(256)},
		{"2001:db8::/112", big.NewInt(65536)},
		{"2001:db8::/64", pow(64)},
		{"8000::/1", pow(127)},
		{"::/96", pow(32)},
		{"2001:db8::1", big.NewInt(1)},
		{"2001:db8::fffe-2001:db8::1:1", big.NewInt(4)},
	} {
		if got := mustRange(t, tc.in).Size(); got.Cmp(tc.want) != 0 {
			t.Errorf("Size(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestRangeFamily(t *testing.T) {
	if got := mustRange(t, "10.0.0.0/8").Family(); got != IPv4 {
		t.Errorf("Family(10.0.0.0/8) = %s, want IPv4", got)
	}
	if got := mustRange(t, "2001:db8::/32").Family(); got != IPv6 {
		t.Errorf("Family(2001:db8::/32) = %s, want IPv6", got)
	}
}

func TestRangeContains(t *testing.T) {
	for _, tc := range []struct {
		r, a string
		want bool
	}{
		{"10.0.0.0/24", "10.0.0.0", true},
		{"10.0.0.0/24", "10.0.0.255", true},
		{"10.0.0.0/24", "10.0.0.128", true},
		{"10.0.0.0/24", "10.0.1.0", false},
		{"10.0.0.0/24", "9.255.255.255", false},
		{"10.0.0.10-10.0.0.20", "10.0.0.9", false},
		{"10.0.0.10-10.0.0.20", "10.0.0.10", true},
		{"10.0.0.10-10.0.0.20", "10.0.0.20", true},
		{"10.0.0.10-10.0.0.20", "10.0.0.21", false},
		{"192.0.2.1", "192.0.2.1", true},
		{"192.0.2.1", "192.0.2.2", false},
		{"2001:db8::/120", "2001:db8::ff", true},
		{"2001:db8::/120", "2001:db8::100", false},
		// A family never contains the other, even when the bits look alike.
		{"0.0.0.0/0", "::", false},
		{"0.0.0.0/0", "::ffff:10.0.0.1", false},
		{"::/96", "10.0.0.1", false},
		{"::/96", "::a00:1", true},
		{"2000::/3", "2001:db8::1", true},
		{"2000::/3", "4000::", false},
	} {
		if got := mustRange(t, tc.r).Contains(mustAddr(t, tc.a)); got != tc.want {
			t.Errorf("%s.Contains(%s) = %v, want %v", tc.r, tc.a, got, tc.want)
		}
	}
}

func TestRangeOverlaps(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"10.0.0.0/24", "10.0.0.0/24", true},
		{"10.0.0.0/24", "10.0.0.128/25", true},
		{"10.0.0.0/24", "10.0.0.255-10.0.1.10", true},
		{"10.0.0.0/24", "10.0.1.0/24", false},
		{"10.0.0.0/24", "10.0.0.255", true},
		{"10.0.0.0/24", "10.0.1.0", false},
		{"10.0.0.10-10.0.0.20", "10.0.0.20-10.0.0.30", true},
		{"10.0.0.10-10.0.0.20", "10.0.0.21-10.0.0.30", false},
		{"10.0.0.10-10.0.0.20", "10.0.0.0-10.0.0.9", false},
		{"10.0.0.10-10.0.0.20", "10.0.0.12-10.0.0.13", true},
		{"2001:db8::/64", "2001:db8::1", true},
		{"2001:db8::/64", "2001:db8:0:1::/64", false},
		// Different families never overlap.
		{"0.0.0.0/0", "::/96", false},
	} {
		ra, rb := mustRange(t, tc.a), mustRange(t, tc.b)
		if got := ra.Overlaps(rb); got != tc.want {
			t.Errorf("%s.Overlaps(%s) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		if got := rb.Overlaps(ra); got != tc.want {
			t.Errorf("%s.Overlaps(%s) = %v, want %v (symmetry)", tc.b, tc.a, got, tc.want)
		}
	}
}

func TestRangeString(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"192.0.2.1", "192.0.2.1"},
		{"192.0.2.1/32", "192.0.2.1"},
		{"10.0.0.5/24", "10.0.0.0-10.0.0.255"},
		{" 10.0.0.10 - 10.0.0.20 ", "10.0.0.10-10.0.0.20"},
		{"2001:db8::/120", "2001:db8::-2001:db8::ff"},
		{"2001:0db8:0000::0001", "2001:db8::1"},
	} {
		r := mustRange(t, tc.in)
		got := r.String()
		if got != tc.want {
			t.Errorf("String(ParseRange(%q)) = %q, want %q", tc.in, got, tc.want)
		}
		// String is a valid pool entry for the same range.
		if back := mustRange(t, got); back != r {
			t.Errorf("ParseRange(%q) = %v, want %v", got, back, r)
		}
	}
}

func TestIsBuggy(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"10.0.0.0", true},
		{"10.0.0.255", true},
		{"10.0.1.0", true},
		{"0.0.0.0", true},
		{"255.255.255.255", true},
		{"10.0.0.1", false},
		{"10.0.0.254", false},
		{"10.0.255.1", false},
		{"10.255.0.128", false},
		{"2001:db8::", false},
		{"2001:db8::ff", false},
		{"2001:db8::ffff", false},
	} {
		if got := IsBuggy(mustAddr(t, tc.in)); got != tc.want {
			t.Errorf("IsBuggy(%s) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// buggyBrute counts the .0 and .255 addresses of a small range one by one.
func buggyBrute(r Range) uint64 {
	var n uint64
	for a := r.First; ; a = a.Next() {
		if IsBuggy(a) {
			n++
		}
		if a == r.Last {
			return n
		}
	}
}

// usableBrute counts the addresses of a small range that p.Usable accepts.
func usableBrute(p *Pool, r Range) uint64 {
	var n uint64
	for a := r.First; ; a = a.Next() {
		if p.Usable(a) {
			n++
		}
		if a == r.Last {
			return n
		}
	}
}

func TestBuggyCount(t *testing.T) {
	for _, tc := range []struct {
		in         string
		size       uint64
		buggy      uint64
		avoidTotal uint64
	}{
		{"10.0.0.0/23", 512, 4, 508},
		{"10.0.0.250-10.0.1.5", 12, 2, 10},
		{"10.0.0.0/24", 256, 2, 254},
		{"10.0.0.1-10.0.0.254", 254, 0, 254},
		{"10.0.0.0", 1, 1, 0},
		{"10.0.0.255", 1, 1, 0},
		{"10.0.0.255-10.0.1.0", 2, 2, 0},
		{"10.0.0.7", 1, 0, 1},
		{"10.0.0.0/16", 65536, 512, 65024},
		// Capacities count usable addresses only: without 0.0.0.0/8,
		// 127.0.0.0/8, 169.254.0.0/16, 224.0.0.0/4 and 255.255.255.255
		// (whose 2,359,809 .0/.255 addresses are not subtracted twice)...
		{"0.0.0.0/0", 1<<32 - 2<<24 - 1<<16 - 1<<28 - 1, 1 << 25, 1<<32 - 2<<24 - 1<<16 - 1<<28 - 1 - (1<<25 - 2359809)},
		{"0.0.0.0-0.0.0.10", 0, 1, 0},
		{"255.255.255.0-255.255.255.255", 255, 2, 254},
		// ... and without the IPv6 Subnet-Router anycast address.
		{"2001:db8::/120", 255, 0, 255},
		{"2001:db8::/112", 65535, 0, 65535},
	} {
		t.Run(tc.in, func(t *testing.T) {
			r := mustRange(t, tc.in)
			if got := buggyIn(r); got != tc.buggy {
				t.Errorf("buggyIn = %d, want %d", got, tc.buggy)
			}
			if r.Size().Uint64() <= 1<<17 {
				if got := buggyBrute(r); got != tc.buggy {
					t.Fatalf("test table wrong: brute-force count is %d, table says %d", got, tc.buggy)
				}
			}
			p, err := NewPool("p", []string{tc.in})
			if err != nil {
				t.Fatal(err)
			}
			fam := r.Family()
			if got := p.Capacity(fam); got != tc.size {
				t.Errorf("Capacity without AvoidBuggyIPs = %d, want %d", got, tc.size)
			}
			if r.Size().Uint64() <= 1<<17 {
				if got := usableBrute(p, r); got != tc.size {
					t.Fatalf("test table wrong: brute-force count of usable addresses is %d, table says %d", got, tc.size)
				}
			}
			p.AvoidBuggyIPs = true
			if got := p.Capacity(fam); got != tc.avoidTotal {
				t.Errorf("Capacity with AvoidBuggyIPs = %d, want %d", got, tc.avoidTotal)
			}
			if r.Size().Uint64() <= 1<<17 {
				if got := usableBrute(p, r); got != tc.avoidTotal {
					t.Fatalf("test table wrong: brute-force count of usable addresses avoiding is %d, table says %d", got, tc.avoidTotal)
				}
			}
		})
	}
}

func TestCapacitySaturates(t *testing.T) {
	for _, tc := range []struct {
		name  string
		addrs []string
		want  uint64
	}{
		{"v6 /64", []string{"2001:db8::/64"}, math.MaxInt64},
		{"v6 /65 is exactly 2^63", []string{"2001:db8::/65"}, math.MaxInt64},
		// Minus one Subnet-Router anycast address per /64.
		{"v6 /66 is 2^62 - 1", []string{"2001:db8::/66"}, 1<<62 - 1},
		{"two v6 /66 sum to 2^63 - 2", []string{"2001:db8::/66", "2001:db8:1::/66"}, 1<<63 - 2},
		{"three v6 /66", []string{"2001:db8::/66", "2001:db8:1::/66", "2001:db8:2::/66"}, math.MaxInt64},
		{"v6 /1", []string{"8000::/1"}, math.MaxInt64},
		{"/64 plus small", []string{"2001:db8::/64", "2001:db9::/120"}, math.MaxInt64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewPool("p", tc.addrs)
			if err != nil {
				t.Fatal(err)
			}
			for _, avoid := range []bool{false, true} {
				p.AvoidBuggyIPs = avoid
				if got := p.Capacity(IPv6); got != tc.want {
					t.Errorf("Capacity(IPv6) avoid=%v = %d, want %d", avoid, got, tc.want)
				}
			}
			if got := p.Capacity(IPv4); got != 0 {
				t.Errorf("Capacity(IPv4) = %d, want 0", got)
			}
		})
	}
}

func TestAllocationName(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"192.0.2.1", "192.0.2.1"},
		{"10.0.0.0", "10.0.0.0"},
		{"255.255.255.255", "255.255.255.255"},
		{"2001:db8::1", "2001-0db8-0000-0000-0000-0000-0000-0001"},
		{"2001:DB8::ABCD", "2001-0db8-0000-0000-0000-0000-0000-abcd"},
		{"fd00::", "fd00-0000-0000-0000-0000-0000-0000-0000"},
		{"::", "0000-0000-0000-0000-0000-0000-0000-0000"},
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff-ffff-ffff-ffff-ffff-ffff-ffff-ffff"},
		{"::1.2.3.4", "0000-0000-0000-0000-0000-0000-0102-0304"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			a := mustAddr(t, tc.in)
			got := AllocationName(a)
			if got != tc.want {
				t.Fatalf("AllocationName(%s) = %q, want %q", a, got, tc.want)
			}
			if errs := validation.IsDNS1123Subdomain(got); len(errs) > 0 {
				t.Errorf("AllocationName(%s) = %q is not a DNS-1123 subdomain: %v", a, got, errs)
			}
			back, err := ParseAllocationName(got)
			if err != nil {
				t.Fatalf("ParseAllocationName(%q): %v", got, err)
			}
			if back != a {
				t.Errorf("ParseAllocationName(%q) = %s, want %s", got, back, a)
			}
		})
	}
}

func TestAllocationNameDistinct(t *testing.T) {
	// IPv4 10.0.0.1 and IPv6 ::a00:1 (same low 32 bits) must not collide.
	a4, a6 := mustAddr(t, "10.0.0.1"), mustAddr(t, "::a00:1")
	if AllocationName(a4) == AllocationName(a6) {
		t.Fatalf("AllocationName(%s) == AllocationName(%s) == %q", a4, a6, AllocationName(a4))
	}
}

func TestParseAllocationNameErrors(t *testing.T) {
	for _, in := range []string{
		"",
		"foo",
		"192.0.2",
		"192.0.2.256",
		"2001-0db8-0000-0000-0000-0000-0000", // seven groups
		"2001-0db8-0000-0000-0000-0000-0000-0001-0002", // nine groups
		"2001-0db8-0000-0000-0000-0000-0000-zzzz",
		"2001:db8::1", // compressed, not the allocation form
		"1-2-3-4",
		"fe80::1%eth0",
		"fe80-0000-0000-0000-0000-0000-0000-0001%eth0",
		"::ffff:1.2.3.4",
	} {
		if a, err := ParseAllocationName(in); err == nil {
			t.Errorf("ParseAllocationName(%q) = %s, want an error", in, a)
		}
	}
}

// IPv4-mapped IPv6 addresses are refused as pool entries, so the allocator
// can never hand one out; still, AllocationName and ParseAllocationName
// round-trip them, and ParseAllocationName keeps the two spellings apart.
func TestAllocationNameIPv4Mapped(t *testing.T) {
	a := netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff, 12: 1, 13: 2, 14: 3, 15: 4})
	name := AllocationName(a)
	if name != "0000-0000-0000-0000-0000-ffff-0102-0304" {
		t.Fatalf("AllocationName(%s) = %q", a, name)
	}
	if back, err := ParseAllocationName(name); err != nil || back != a {
		t.Errorf("ParseAllocationName(%q) = %v, %v; want %s", name, back, err, a)
	}
	if back, err := ParseAllocationName("1.2.3.4"); err != nil || back != a.Unmap() || !back.Is4() {
		t.Errorf("ParseAllocationName(1.2.3.4) = %v, %v", back, err)
	}
}

func TestSaturate(t *testing.T) {
	for _, tc := range []struct {
		in   *big.Int
		want uint64
	}{
		{big.NewInt(0), 0},
		{big.NewInt(1), 1},
		{big.NewInt(math.MaxInt64), math.MaxInt64},
		{new(big.Int).Lsh(big.NewInt(1), 63), math.MaxInt64},
		{new(big.Int).Lsh(big.NewInt(1), 64), math.MaxInt64},
		{new(big.Int).Lsh(big.NewInt(1), 128), math.MaxInt64},
	} {
		if got := saturate(tc.in); got != tc.want {
			t.Errorf("saturate(%s) = %d, want %d", tc.in, got, tc.want)
		}
	}
}
