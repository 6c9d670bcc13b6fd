package ipam

import (
	"slices"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// pendingSet holds the Services that wait for an address. A pool change or a
// freed address retries only these, never every Service.
type pendingSet struct {
	mu   sync.Mutex
	keys map[types.NamespacedName]struct{}
}

func (p *pendingSet) add(k types.NamespacedName) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.keys == nil {
		p.keys = map[types.NamespacedName]struct{}{}
	}
	p.keys[k] = struct{}{}
}

func (p *pendingSet) remove(k types.NamespacedName) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.keys, k)
}

func (p *pendingSet) requests() []reconcile.Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]reconcile.Request, 0, len(p.keys))
	for k := range p.keys {
		out = append(out, reconcile.Request{NamespacedName: k})
	}
	slices.SortFunc(out, func(a, b reconcile.Request) int {
		return strings.Compare(a.String(), b.String())
	})
	return out
}
