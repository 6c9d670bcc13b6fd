package ipam

import (
	"cmp"
	"fmt"
	"math/big"
	"net/netip"
	"slices"

	"k8s.io/apimachinery/pkg/labels"
)

// Pool is the allocator's view of an EIPPool.
type Pool struct {
	Name          string
	Ranges        []Range // sorted by first address, IPv4 before IPv6
	AvoidBuggyIPs bool
	AutoAssign    bool
	Disabled      bool
	Priority      int32
	// Selectors; nil means the pool has no such selector.
	NamespaceSelector labels.Selector
	ServiceSelector   labels.Selector
	// Problem, when set, keeps the pool from serving new allocations (an
	// overlap with another pool, an invalid spec, no usable address): the
	// reason and message of its Ready=False condition, which a Service
	// naming the pool is told.
	Problem *PoolProblem
}

// PoolProblem says why a pool serves no new allocation.
type PoolProblem struct {
	Reason, Message string
}

// NewPool parses a pool's address entries. Overlapping entries within one
// pool are an error.
func NewPool(name string, addresses []string) (*Pool, error) {
	p := &Pool{Name: name, AutoAssign: true}
	for _, s := range addresses {
		r, err := ParseRange(s)
		if err != nil {
			return nil, err
		}
		p.Ranges = append(p.Ranges, r)
	}
	slices.SortFunc(p.Ranges, func(a, b Range) int {
		return cmp.Or(cmp.Compare(a.First.BitLen(), b.First.BitLen()), a.First.Compare(b.First))
	})
	for i := 1; i < len(p.Ranges); i++ {
		if p.Ranges[i-1].Overlaps(p.Ranges[i]) {
			return nil, fmt.Errorf("entries %s and %s overlap", p.Ranges[i-1], p.Ranges[i])
		}
	}
	return p, nil
}

// HasSelector reports whether the pool restricts which Services it serves.
func (p *Pool) HasSelector() bool { return p.NamespaceSelector != nil || p.ServiceSelector != nil }

// Admits reports whether the pool's selectors match a Service.
func (p *Pool) Admits(namespaceLabels, serviceLabels map[string]string) bool {
	if p.NamespaceSelector != nil && !p.NamespaceSelector.Matches(labels.Set(namespaceLabels)) {
		return false
	}
	if p.ServiceSelector != nil && !p.ServiceSelector.Matches(labels.Set(serviceLabels)) {
		return false
	}
	return true
}

// Contains reports whether a is one of the pool's addresses.
func (p *Pool) Contains(a netip.Addr) bool {
	for _, r := range p.Ranges {
		if r.Contains(a) {
			return true
		}
	}
	return false
}

// Usable reports whether a may be handed out from this pool: one of its
// addresses, not Unusable, and not skipped by avoidBuggyIPs.
func (p *Pool) Usable(a netip.Addr) bool {
	return p.Contains(a) && Unusable(a) == "" && !(p.AvoidBuggyIPs && IsBuggy(a))
}

// pieces returns the pool's ranges of family f without the special blocks
// (which may be large: a pool 0.0.0.0/1 holds 0.0.0.0/8 and 127.0.0.0/8),
// so that what is left to skip address by address is sparse.
func (p *Pool) pieces(f Family) []Range {
	var out []Range
	for _, r := range p.Ranges {
		if r.Family() == f {
			out = append(out, withoutSpecial(r)...)
		}
	}
	return out
}

// skip reports whether an address outside the special blocks is still not
// handed out: an IPv6 Subnet-Router anycast address, or an address
// avoidBuggyIPs rules out.
func (p *Pool) skip(a netip.Addr) bool {
	return isSubnetRouterAnycast(a) || (p.AvoidBuggyIPs && IsBuggy(a))
}

// Skipped describes the kinds of addresses of family f the pool holds but
// never hands out, for a condition message.
func (p *Pool) Skipped(f Family) []string {
	var out []string
	var anycast, buggy bool
	for _, r := range p.Ranges {
		if r.Family() != f {
			continue
		}
		for _, s := range specialIn(r) {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
		for _, piece := range withoutSpecial(r) {
			anycast = anycast || anycastIn(piece).Sign() > 0
			buggy = buggy || (p.AvoidBuggyIPs && buggyIn(piece) > 0)
		}
	}
	if anycast {
		out = append(out, "IPv6 Subnet-Router anycast addresses (interface ID 0)")
	}
	if buggy {
		out = append(out, "addresses ending in .0 or .255 (avoidBuggyIPs)")
	}
	return out
}

// HasFamily reports whether the pool has addresses of family f.
func (p *Pool) HasFamily(f Family) bool {
	for _, r := range p.Ranges {
		if r.Family() == f {
			return true
		}
	}
	return false
}

// Capacity is the number of usable addresses of family f (see Usable),
// saturating at MaxInt64.
func (p *Pool) Capacity(f Family) uint64 {
	total := new(big.Int)
	for _, r := range p.pieces(f) {
		total.Add(total, r.Size())
		total.Sub(total, anycastIn(r))
		if p.AvoidBuggyIPs {
			total.Sub(total, new(big.Int).SetUint64(buggyIn(r)))
		}
	}
	return saturate(total)
}

// Overlap returns the first range of p that overlaps a range of o.
func (p *Pool) Overlap(o *Pool) (Range, bool) {
	for _, a := range p.Ranges {
		for _, b := range o.Ranges {
			if a.Overlaps(b) {
				return a, true
			}
		}
	}
	return Range{}, false
}

// SortPools orders pools by priority (lower first), then name.
func SortPools(pools []*Pool) {
	slices.SortFunc(pools, func(a, b *Pool) int {
		return cmp.Or(cmp.Compare(a.Priority, b.Priority), cmp.Compare(a.Name, b.Name))
	})
}
