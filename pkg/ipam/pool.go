package ipam

import (
	"cmp"
	"fmt"
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

// Usable reports whether a may be handed out from this pool.
func (p *Pool) Usable(a netip.Addr) bool {
	return p.Contains(a) && !(p.AvoidBuggyIPs && IsBuggy(a))
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

// Capacity is the number of usable addresses of family f, saturating at
// MaxInt64.
func (p *Pool) Capacity(f Family) uint64 {
	var total uint64
	for _, r := range p.Ranges {
		if r.Family() != f {
			continue
		}
		n := saturate(r.Size())
		if p.AvoidBuggyIPs {
			n -= buggyIn(r)
		}
		if total+n < total || total+n > 1<<63-1 {
			return 1<<63 - 1
		}
		total += n
	}
	return total
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
