package dataplane

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	netutils "k8s.io/utils/net"
)

// Ranges is a Service's loadBalancerSourceRanges, read like kube-proxy
// reads them (entries trimmed, parsed sloppily, i.e. IPv4 octets with
// leading zeros taken as decimal; host bits masked), split by family.
type Ranges struct {
	// Set: the field has an entry that isn't blank; the Service is
	// restricted, whatever the entries are.
	Set bool
	// V4, V6: the valid prefixes of each family, sorted, without those
	// inside another.
	V4, V6 []netip.Prefix
	// Invalid entries, as written (reported on the Service, never
	// opening it).
	Invalid []string
}

// SourceRanges reads svc.spec.loadBalancerSourceRanges.
func SourceRanges(svc *corev1.Service) Ranges {
	var r Ranges
	for _, raw := range svc.Spec.LoadBalancerSourceRanges {
		s := strings.TrimSpace(raw)
		if s == "" {
			continue
		}
		r.Set = true
		p, ok := parsePrefix(s)
		if !ok {
			r.Invalid = append(r.Invalid, raw)
			continue
		}
		if p.Addr().Is4() {
			r.V4 = append(r.V4, p)
		} else {
			r.V6 = append(r.V6, p)
		}
	}
	r.V4, r.V6 = outermost(r.V4), outermost(r.V6)
	return r
}

// For says whether traffic to eip is restricted and to which sources.
// Like kube-proxy, a zero-length prefix of the family (0.0.0.0/0, ::/0)
// admits everyone. Unlike kube-proxy, a Service whose ranges hold nothing
// valid of eip's family (only the other family, or only invalid entries)
// admits no one on eip: kube-proxy leaves it open to every source, which
// turns a typo or a dual-stack Service restricted to IPv4 clients into a
// Service open to the world (docs/agent.md).
func (r Ranges) For(eip netip.Addr) (restricted bool, sources []netip.Prefix) {
	if !r.Set {
		return false, nil
	}
	ps := r.V6
	if eip.Is4() {
		ps = r.V4
	}
	if len(ps) > 0 && ps[0].Bits() == 0 {
		return false, nil
	}
	return true, ps
}

// parsePrefix parses a CIDR the way kube-proxy does
// (netutils.ParseCIDRSloppy) into a masked netip.Prefix.
func parsePrefix(s string) (netip.Prefix, bool) {
	_, n, err := netutils.ParseCIDRSloppy(s)
	if err != nil {
		return netip.Prefix{}, false
	}
	ones, bits := n.Mask.Size()
	ip := n.IP.To16()
	if bits == 32 {
		ip = n.IP.To4()
	}
	a, ok := netip.AddrFromSlice(ip)
	if !ok || (bits != 32 && bits != 128) {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones).Masked(), true
}

// outermost sorts ps and drops every prefix inside another (two prefixes
// are either nested or disjoint), so the kernel's interval set, which
// refuses overlapping elements, takes them all.
func outermost(ps []netip.Prefix) []netip.Prefix {
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	var out []netip.Prefix
	for _, p := range ps {
		if n := len(out); n > 0 && out[n-1].Bits() <= p.Bits() && out[n-1].Contains(p.Addr()) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// maxQuotedRanges bounds the entries a problem message quotes.
const maxQuotedRanges = 5

// Problems describes, for the Service's Event, what in its source ranges
// does not do what its author likely meant: entries that are not CIDRs
// (skipped) and EIP families left without a range (refusing every client
// of that family); "" when nothing. quote bounds a quoted user value.
func (r Ranges) Problems(eips []netip.Addr, quote func(string) string) string {
	var parts []string
	if n := len(r.Invalid); n > 0 {
		var q []string
		for _, s := range r.Invalid[:min(n, maxQuotedRanges)] {
			q = append(q, quote(s))
		}
		msg := "loadBalancerSourceRanges entries that are not CIDRs are skipped: " + strings.Join(q, ", ")
		if n > maxQuotedRanges {
			msg += fmt.Sprintf(" and %d more", n-maxQuotedRanges)
		}
		parts = append(parts, msg)
	}
	for _, fam := range []struct {
		v4   bool
		name string
	}{{true, "IPv4"}, {false, "IPv6"}} {
		if !slices.ContainsFunc(eips, func(a netip.Addr) bool { return a.Is4() == fam.v4 }) {
			continue
		}
		a := netip.IPv6Unspecified()
		if fam.v4 {
			a = netip.IPv4Unspecified()
		}
		if restricted, srcs := r.For(a); restricted && len(srcs) == 0 {
			parts = append(parts, "no valid "+fam.name+" range: the "+fam.name+" address admits no client (add "+
				map[bool]string{true: "0.0.0.0/0", false: "::/0"}[fam.v4]+" to admit every one)")
		}
	}
	return strings.Join(parts, "; ")
}
