// Package ipam is eiplb's address allocator: parsing of pool addresses and
// Service requests, deterministic pool choice, and an in-memory index of the
// allocations recorded in the API server. It does no I/O; the controller in
// pkg/controller/ipam makes the index durable through EIPAllocation objects.
package ipam

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Family is an IP address family.
type Family string

// The two families, spelled as Kubernetes spells them.
const (
	IPv4 Family = "IPv4"
	IPv6 Family = "IPv6"
)

// FamilyOf returns the family of a valid address.
func FamilyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

// Range is an inclusive range of addresses of one family.
type Range struct {
	First, Last netip.Addr
}

// ParseRange parses a pool address entry: a CIDR ("192.0.2.0/24",
// "2001:db8::/120"), an inclusive range "first-last" of one family, or a
// single address. IPv4-mapped IPv6 addresses and zones are refused.
func ParseRange(s string) (Range, error) {
	r, err := parseRange(s)
	if err != nil {
		return Range{}, err
	}
	if r.Overlaps(mapped) {
		return Range{}, fmt.Errorf("%s includes IPv4-mapped IPv6 addresses (::ffff:0:0/96)", Quote(strings.TrimSpace(s)))
	}
	return r, nil
}

// mapped is ::ffff:0:0/96, which is never a pool's.
var mapped = Range{First: netip.MustParseAddr("::ffff:0.0.0.0"), Last: netip.MustParseAddr("::ffff:255.255.255.255")}

func parseRange(s string) (Range, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Range{}, errors.New("empty address")
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			// netip's error repeats the whole input: keep only its cause.
			msg := err.Error()
			if i := strings.LastIndex(msg, "): "); i >= 0 {
				msg = msg[i+3:]
			}
			return Range{}, fmt.Errorf("invalid CIDR %s: %s", Quote(s), msg)
		}
		if err := checkAddr(p.Addr(), s); err != nil {
			return Range{}, err
		}
		p = p.Masked()
		return Range{First: p.Addr(), Last: lastOf(p)}, nil
	}
	if first, last, ok := strings.Cut(s, "-"); ok {
		a, err := parseAddr(first, s)
		if err != nil {
			return Range{}, err
		}
		b, err := parseAddr(last, s)
		if err != nil {
			return Range{}, err
		}
		if a.Is4() != b.Is4() {
			return Range{}, fmt.Errorf("range %s mixes IPv4 and IPv6", Quote(s))
		}
		if b.Less(a) {
			return Range{}, fmt.Errorf("range %s ends before it starts", Quote(s))
		}
		return Range{First: a, Last: b}, nil
	}
	a, err := parseAddr(s, s)
	if err != nil {
		return Range{}, err
	}
	return Range{First: a, Last: a}, nil
}

func parseAddr(s, entry string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("invalid address %s in %s", Quote(s), Quote(entry))
	}
	return a, checkAddr(a, entry)
}

func checkAddr(a netip.Addr, entry string) error {
	if a.Zone() != "" {
		return fmt.Errorf("address %s has a zone", Quote(entry))
	}
	if a.Is4In6() {
		return fmt.Errorf("address %s is IPv4-mapped IPv6; write the IPv4 address", Quote(entry))
	}
	return nil
}

func lastOf(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// Family returns the family of the range.
func (r Range) Family() Family { return FamilyOf(r.First) }

// Contains reports whether a lies in the range.
func (r Range) Contains(a netip.Addr) bool {
	return a.BitLen() == r.First.BitLen() && r.First.Compare(a) <= 0 && a.Compare(r.Last) <= 0
}

// Overlaps reports whether two ranges share an address.
func (r Range) Overlaps(o Range) bool {
	return r.First.BitLen() == o.First.BitLen() && r.First.Compare(o.Last) <= 0 && o.First.Compare(r.Last) <= 0
}

// Size is the number of addresses in the range.
func (r Range) Size() *big.Int {
	n := new(big.Int).Sub(new(big.Int).SetBytes(r.Last.AsSlice()), new(big.Int).SetBytes(r.First.AsSlice()))
	return n.Add(n, big.NewInt(1))
}

// String renders the range as "first-last", or one address.
func (r Range) String() string {
	if r.First == r.Last {
		return r.First.String()
	}
	return r.First.String() + "-" + r.Last.String()
}

// IsBuggy reports whether a is an IPv4 address ending in .0 or .255.
func IsBuggy(a netip.Addr) bool {
	if !a.Is4() {
		return false
	}
	last := a.As4()[3]
	return last == 0 || last == 255
}

// buggyIn counts the .0 and .255 addresses of an IPv4 range.
func buggyIn(r Range) uint64 {
	if !r.First.Is4() {
		return 0
	}
	f, l := v4int(r.First), v4int(r.Last)
	// count of x in [f,l] with x%256 == k is floor((l-k)/256) - floor((f-1-k)/256)
	count := func(k uint64) uint64 {
		c := func(x int64) int64 { // #{y in [0,x] : y%256==k}
			if x < int64(k) {
				return 0
			}
			return (x-int64(k))/256 + 1
		}
		return uint64(c(int64(l)) - c(int64(f)-1))
	}
	return count(0) + count(255)
}

func v4int(a netip.Addr) uint64 {
	b := a.As4()
	return uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
}

// saturate converts a size to uint64, saturating at MaxInt64 so it fits the
// API's int64 counters.
func saturate(n *big.Int) uint64 {
	if !n.IsInt64() {
		return math.MaxInt64
	}
	return uint64(n.Int64())
}

// AllocationName is the name of the EIPAllocation object for an address. It
// is unique per address, so the API server refuses a second allocation of
// the same address: "192.0.2.1" for IPv4, the eight groups of the full form
// joined by '-' for IPv6 ("2001-0db8-0000-0000-0000-0000-0000-0001").
func AllocationName(a netip.Addr) string {
	if a.Is4() {
		return a.String()
	}
	s := a.StringExpanded()
	return strings.ReplaceAll(s, ":", "-")
}

// ParseAllocationName reverses AllocationName.
func ParseAllocationName(name string) (netip.Addr, error) {
	v6 := strings.Count(name, "-") == 7
	if v6 {
		name = strings.ReplaceAll(name, "-", ":")
	}
	a, err := netip.ParseAddr(name)
	if err != nil || a.Zone() != "" || a.Is4() == v6 {
		return netip.Addr{}, fmt.Errorf("%q is not an allocation name", name)
	}
	return a, nil
}

// specialBlocks are the address blocks that are never a load-balancer
// address, whatever a pool or a Service says. Sorted by family, then first
// address, and disjoint.
var specialBlocks = func() []specialBlock {
	out := []specialBlock{}
	for _, b := range []struct{ prefix, what string }{
		{"0.0.0.0/8", "in 0.0.0.0/8 (unspecified, \"this network\")"},
		{"127.0.0.0/8", "loopback"},
		{"169.254.0.0/16", "link-local"},
		{"224.0.0.0/4", "multicast"},
		{"255.255.255.255/32", "the limited broadcast address"},
		{"::/128", "unspecified"},
		{"::1/128", "loopback"},
		{"fe80::/10", "link-local"},
		{"ff00::/8", "multicast"},
	} {
		p := netip.MustParsePrefix(b.prefix)
		out = append(out, specialBlock{Range{First: p.Addr(), Last: lastOf(p)}, p, b.what})
	}
	return out
}()

type specialBlock struct {
	r      Range
	prefix netip.Prefix
	what   string
}

// Unusable says why an address can never be a load-balancer address, or
// returns "" when it can be one. It is the one check for pools (whose
// unusable addresses are skipped and not counted) and for the eiplb.io/ip
// annotation (which refuses them): unspecified, 0.0.0.0/8, loopback,
// link-local, multicast, 255.255.255.255, and IPv6 addresses whose 64-bit
// interface ID is zero (the Subnet-Router anycast address of their /64,
// RFC 4291 2.6.1, which routers on a link with that prefix answer).
func Unusable(a netip.Addr) string {
	for _, b := range specialBlocks {
		if b.r.Contains(a) {
			return b.what
		}
	}
	if isSubnetRouterAnycast(a) {
		return "the Subnet-Router anycast address of " + netip.PrefixFrom(a, 64).String()
	}
	return ""
}

// isSubnetRouterAnycast reports whether a is an IPv6 address with an
// all-zero 64-bit interface ID.
func isSubnetRouterAnycast(a netip.Addr) bool {
	if !a.Is6() {
		return false
	}
	b := a.As16()
	for _, x := range b[8:] {
		if x != 0 {
			return false
		}
	}
	return true
}

// withoutSpecial returns the parts of r outside every special block, in
// order.
func withoutSpecial(r Range) []Range {
	var out []Range
	cur := r.First
	for _, b := range specialBlocks {
		if !cur.IsValid() || !b.r.Overlaps(Range{First: cur, Last: r.Last}) {
			continue
		}
		if cur.Less(b.r.First) {
			out = append(out, Range{First: cur, Last: b.r.First.Prev()})
		}
		if b.r.Last.Compare(r.Last) >= 0 {
			return out
		}
		cur = b.r.Last.Next()
	}
	if cur.IsValid() {
		out = append(out, Range{First: cur, Last: r.Last})
	}
	return out
}

// specialIn describes the special blocks r overlaps ("127.0.0.0/8
// (loopback)").
func specialIn(r Range) []string {
	var out []string
	for _, b := range specialBlocks {
		if b.r.Overlaps(r) {
			out = append(out, b.prefix.String()+" ("+b.what+")")
		}
	}
	return out
}

// anycastIn counts the IPv6 addresses of r whose interface ID is zero.
func anycastIn(r Range) *big.Int {
	if !r.First.Is6() {
		return new(big.Int)
	}
	hi := func(a netip.Addr) *big.Int {
		b := a.As16()
		return new(big.Int).SetBytes(b[:8])
	}
	n := new(big.Int).Sub(hi(r.Last), hi(r.First))
	if isSubnetRouterAnycast(r.First) {
		n.Add(n, big.NewInt(1))
	}
	return n
}

// maxQuoted is how many bytes of a user's value Quote keeps.
const maxQuoted = 64

// Quote quotes a value a user wrote (an annotation, a pool entry) for a
// condition, Event or log message, keeping at most its first 64 bytes: a
// 64 KiB annotation must not make a 64 KiB condition, nor an Event the API
// server refuses. Every message that quotes user input goes through it.
func Quote(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%s… (%d bytes)", strconv.Quote(Truncate(s, maxQuoted)), len(s))
}

// Truncate cuts s to at most n bytes without splitting a UTF-8 character.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
