package ipam

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/ipam"
)

// poolSet is the parsed form of every EIPPool, with the problems that keep a
// pool from being used: an invalid spec, or an overlap with an older pool.
type poolSet struct {
	// usable pools, and only those, can serve new allocations.
	usable []*ipam.Pool
	// all pools, for allocation: the usable ones, and the others with their
	// Problem set (an invalid one with no addresses), so that a Service
	// naming a pool is told what is wrong with it, not that it does not
	// exist; disabled ones are among them as they are.
	all []*ipam.Pool
	// parsed holds every pool that parsed, usable or not.
	parsed map[string]*ipam.Pool
	// problems by pool name: reason and message of a Ready=False condition.
	problems map[string]poolProblem
}

type poolProblem struct {
	reason, message string
}

// buildPools parses pools. Overlaps are decided deterministically: of two
// overlapping pools, the one created later (then the greater name) is not
// used, and its condition names the other, so the addresses already handed
// out keep a single owner.
func buildPools(pools []v1alpha1.EIPPool) *poolSet {
	ps := &poolSet{parsed: map[string]*ipam.Pool{}, problems: map[string]poolProblem{}}
	sorted := slices.Clone(pools)
	slices.SortFunc(sorted, func(a, b v1alpha1.EIPPool) int {
		return cmp.Or(a.CreationTimestamp.Compare(b.CreationTimestamp.Time), cmp.Compare(a.Name, b.Name))
	})
	for i := range sorted {
		p, err := convertPool(&sorted[i])
		if err != nil {
			// A selector's error quotes its value, which nothing bounds.
			msg := bounded(err.Error(), maxQuotedError)
			ps.problems[sorted[i].Name] = poolProblem{poolReasonInvalid, msg}
			ps.all = append(ps.all, &ipam.Pool{Name: sorted[i].Name, Problem: &ipam.PoolProblem{Reason: poolReasonInvalid, Message: msg}})
			continue
		}
		ps.parsed[p.Name] = p
		ps.all = append(ps.all, p)
		if p.Capacity(ipam.IPv4) == 0 && p.Capacity(ipam.IPv6) == 0 {
			// Not usable, and not in the way of other pools either.
			ps.problems[p.Name] = poolProblem{poolReasonNoUsableAddresses, noUsableMessage(p)}
			p.Problem = &ipam.PoolProblem{Reason: poolReasonNoUsableAddresses, Message: ps.problems[p.Name].message}
			continue
		}
		if other, r, ok := overlapsAny(p, ps.usable); ok {
			ps.problems[p.Name] = poolProblem{v1alpha1.PoolReasonOverlap,
				fmt.Sprintf("addresses %s overlap pool %s; this pool is not used until the overlap is removed", r, other)}
			p.Problem = &ipam.PoolProblem{Reason: v1alpha1.PoolReasonOverlap, Message: ps.problems[p.Name].message}
			continue
		}
		ps.usable = append(ps.usable, p)
	}
	return ps
}

// maxQuotedError bounds an error of a library that quotes user input in
// full (label selector validation) where ipam.Quote can't be used.
const maxQuotedError = 512

// Pool reasons beyond the API's constants.
const (
	poolReasonInvalid           = "Invalid"
	poolReasonNoUsableAddresses = "NoUsableAddresses"
)

func noUsableMessage(p *ipam.Pool) string {
	var skipped []string
	for _, f := range []ipam.Family{ipam.IPv4, ipam.IPv6} {
		skipped = append(skipped, p.Skipped(f)...)
	}
	return "None of the pool's addresses can be handed out: it holds only " + strings.Join(skipped, ", ")
}

func overlapsAny(p *ipam.Pool, others []*ipam.Pool) (string, ipam.Range, bool) {
	for _, o := range others {
		if r, ok := p.Overlap(o); ok {
			return o.Name, r, true
		}
	}
	return "", ipam.Range{}, false
}

func convertPool(in *v1alpha1.EIPPool) (*ipam.Pool, error) {
	p, err := ipam.NewPool(in.Name, in.Spec.Addresses)
	if err != nil {
		return nil, err
	}
	p.AutoAssign = in.Spec.AutoAssign == nil || *in.Spec.AutoAssign
	p.AvoidBuggyIPs = in.Spec.AvoidBuggyIPs
	p.Disabled = in.Spec.Disabled
	p.Priority = in.Spec.Priority
	if in.Spec.NamespaceSelector != nil {
		if p.NamespaceSelector, err = metav1.LabelSelectorAsSelector(in.Spec.NamespaceSelector); err != nil {
			return nil, fmt.Errorf("namespaceSelector: %w", err)
		}
	}
	if in.Spec.ServiceSelector != nil {
		if p.ServiceSelector, err = metav1.LabelSelectorAsSelector(in.Spec.ServiceSelector); err != nil {
			return nil, fmt.Errorf("serviceSelector: %w", err)
		}
	}
	return p, nil
}

// poolCache rebuilds the pool set only when some pool changed, so a
// reconcile costs O(pools) to check and nothing to parse.
type poolCache struct {
	mu          sync.Mutex
	fingerprint string
	set         *poolSet
}

func (c *poolCache) get(pools []v1alpha1.EIPPool) *poolSet {
	slices.SortFunc(pools, func(a, b v1alpha1.EIPPool) int { return cmp.Compare(a.Name, b.Name) })
	var b strings.Builder
	for i := range pools {
		b.WriteString(pools[i].Name)
		b.WriteByte('@')
		b.WriteString(pools[i].ResourceVersion)
		b.WriteByte(',')
	}
	fp := b.String()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.set == nil || fp != c.fingerprint {
		c.set, c.fingerprint = buildPools(pools), fp
	}
	return c.set
}
