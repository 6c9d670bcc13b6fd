package ipam

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/ipam"
)

// PoolStatusReconciler writes each pool's usage and Ready condition, and
// keeps the pool metrics, computing them at most once per minInterval per
// pool (lastWrite is the last computation).
type PoolStatusReconciler struct {
	client      client.Client
	alloc       *ipam.Allocator
	index       *allocationIndex
	pools       *poolCache
	minInterval time.Duration

	mu        sync.Mutex
	lastWrite map[string]time.Time
}

// Reconcile updates one pool's status.
func (r *PoolStatusReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if !r.index.synced() {
		return ctrl.Result{RequeueAfter: 100 * time.Millisecond}, nil
	}
	pool := &v1alpha1.EIPPool{}
	if err := r.client.Get(ctx, req.NamespacedName, pool); err != nil {
		if apierrors.IsNotFound(err) {
			for _, f := range []ipam.Family{ipam.IPv4, ipam.IPv6} {
				poolAddresses.DeleteLabelValues(req.Name, string(f))
				poolAllocated.DeleteLabelValues(req.Name, string(f))
			}
			r.mu.Lock()
			delete(r.lastWrite, req.Name)
			r.mu.Unlock()
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	// Rate-limit before computing: counting a pool's allocations costs
	// O(allocations), and a burst sends an event per allocation.
	r.mu.Lock()
	wait := r.minInterval - time.Since(r.lastWrite[pool.Name])
	r.mu.Unlock()
	if wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	var list v1alpha1.EIPPoolList
	if err := r.client.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return ctrl.Result{}, err
	}
	set := r.pools.get(list.Items)
	status := poolStatus(pool, set, r.alloc)
	for _, f := range []ipam.Family{ipam.IPv4, ipam.IPv6} {
		u := familyUsage(status, f)
		if u == nil {
			poolAddresses.DeleteLabelValues(pool.Name, string(f))
			poolAllocated.DeleteLabelValues(pool.Name, string(f))
			continue
		}
		poolAddresses.WithLabelValues(pool.Name, string(f)).Set(float64(u.Capacity))
		poolAllocated.WithLabelValues(pool.Name, string(f)).Set(float64(u.Allocated))
	}
	r.mu.Lock()
	r.lastWrite[pool.Name] = time.Now()
	r.mu.Unlock()
	if statusEqual(&pool.Status, &status) {
		return ctrl.Result{}, nil
	}
	upd := pool.DeepCopy()
	upd.Status = status
	if err := r.client.Status().Update(ctx, upd); err != nil {
		if apierrors.IsConflict(err) {
			return ctrl.Result{Requeue: true}, nil
		}
		return ctrl.Result{}, fmt.Errorf("writing pool status: %w", err)
	}
	return ctrl.Result{}, nil
}

func familyUsage(s v1alpha1.EIPPoolStatus, f ipam.Family) *v1alpha1.FamilyUsage {
	if f == ipam.IPv4 {
		return s.IPv4
	}
	return s.IPv6
}

// poolStatus computes a pool's status from the parsed pools and the index.
func poolStatus(pool *v1alpha1.EIPPool, set *poolSet, alloc *ipam.Allocator) v1alpha1.EIPPoolStatus {
	st := v1alpha1.EIPPoolStatus{ObservedGeneration: pool.Generation, Conditions: pool.Status.Conditions}
	st.Conditions = append([]metav1.Condition(nil), st.Conditions...)
	parsed := set.parsed[pool.Name]
	usage := alloc.Usage(pool.Name, parsed)
	st.Orphaned = clamp(usage.Orphaned)
	if parsed != nil {
		for _, f := range []ipam.Family{ipam.IPv4, ipam.IPv6} {
			if !parsed.HasFamily(f) {
				continue
			}
			fu := &v1alpha1.FamilyUsage{Capacity: clamp(parsed.Capacity(f)), Allocated: clamp(usage.Allocated[f])}
			fu.Free = max(fu.Capacity-fu.Allocated, 0)
			if f == ipam.IPv4 {
				st.IPv4 = fu
			} else {
				st.IPv6 = fu
			}
			st.Capacity = satAdd(st.Capacity, fu.Capacity)
			st.Allocated += fu.Allocated
			st.Free = satAdd(st.Free, fu.Free)
		}
	}
	cond := metav1.Condition{Type: v1alpha1.PoolConditionReady, Status: metav1.ConditionTrue,
		Reason: v1alpha1.PoolReasonReady, Message: "Addresses are available for allocation", ObservedGeneration: pool.Generation}
	switch p, bad := set.problems[pool.Name]; {
	case bad:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, p.reason, p.message
	case pool.Spec.Disabled:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, v1alpha1.PoolReasonDisabled, "The pool is disabled: no new allocations; Services keep their addresses"
	case st.Capacity > 0 && st.Free == 0:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, v1alpha1.PoolReasonExhausted, "Every address of the pool is allocated"
	}
	if st.Orphaned > 0 && cond.Status == metav1.ConditionTrue {
		cond.Message = fmt.Sprintf("%s; %d allocated addresses are outside the pool's addresses and are kept until their Services release them", cond.Message, st.Orphaned)
	}
	meta.SetStatusCondition(&st.Conditions, cond)
	return st
}

func statusEqual(a, b *v1alpha1.EIPPoolStatus) bool {
	ca, cb := meta.FindStatusCondition(a.Conditions, v1alpha1.PoolConditionReady), meta.FindStatusCondition(b.Conditions, v1alpha1.PoolConditionReady)
	if ca == nil || cb == nil || ca.Status != cb.Status || ca.Reason != cb.Reason || ca.Message != cb.Message || ca.ObservedGeneration != cb.ObservedGeneration {
		return false
	}
	return a.Capacity == b.Capacity && a.Allocated == b.Allocated && a.Free == b.Free && a.Orphaned == b.Orphaned &&
		a.ObservedGeneration == b.ObservedGeneration && usageEqual(a.IPv4, b.IPv4) && usageEqual(a.IPv6, b.IPv6)
}

func usageEqual(a, b *v1alpha1.FamilyUsage) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func clamp(n uint64) int64 {
	if n > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(n)
}

func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
