package ipam

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/ipam"
)

// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=services/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=eiplb.io,resources=eippools,verbs=get;list;watch
// +kubebuilder:rbac:groups=eiplb.io,resources=eippools/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=eiplb.io,resources=eipallocations,verbs=get;list;watch;create;update;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch,namespace=eiplb-system

// Options configure the IPAM controllers.
type Options struct {
	Config
	// Workers is the number of Services allocated in parallel.
	Workers int
	// PoolStatusInterval bounds how often one pool's status is written.
	PoolStatusInterval time.Duration
}

// Setup adds the IPAM controllers (Service allocation and pool status) to a
// manager. Both need leader election: allocation has a single writer. With
// an elected manager (pkg/manager) Setup runs once per leadership term, on
// a manager that runs the controllers for that term only; what it builds
// lives as long as ctx.
func Setup(ctx context.Context, mgr ctrl.Manager, opts Options) error {
	if opts.Class == "" {
		opts.Class = v1alpha1.LoadBalancerClass
	}
	if opts.IPMode == "" {
		opts.IPMode = corev1.LoadBalancerIPModeProxy
	}
	if opts.Workers <= 0 {
		opts.Workers = 8
	}
	if opts.PoolStatusInterval <= 0 {
		opts.PoolStatusInterval = time.Second
	}
	alloc := ipam.NewAllocator()
	poolEvents := make(chan event.TypedGenericEvent[*v1alpha1.EIPPool], 1024)
	// One buffered retry of the waiting Services after an address was
	// freed; a retry already queued covers the next ones.
	freedEvents := make(chan event.TypedGenericEvent[*v1alpha1.EIPAllocation], 1)
	if err := WarmInformers(ctx, mgr.GetCache()); err != nil {
		return err
	}
	idx, err := newAllocationIndex(ctx, mgr.GetCache(), alloc, func(pool string) {
		p := &v1alpha1.EIPPool{}
		p.Name = pool
		select {
		case poolEvents <- event.TypedGenericEvent[*v1alpha1.EIPPool]{Object: p}:
		case <-ctx.Done():
		}
	}, func() {
		select {
		case freedEvents <- event.TypedGenericEvent[*v1alpha1.EIPAllocation]{Object: &v1alpha1.EIPAllocation{}}:
		default:
		}
	})
	if err != nil {
		return err
	}
	svcR := &ServiceReconciler{
		client: mgr.GetClient(), apiReader: mgr.GetAPIReader(),
		recorder: mgr.GetEventRecorder("eiplb-ipam"),
		cfg:      opts.Config, alloc: alloc, index: idx,
	}
	pending := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return svcR.pending.requests()
	})
	holdersAndPending := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, obj client.Object) []reconcile.Request {
		out := svcR.pending.requests()
		if ea, ok := obj.(*v1alpha1.EIPAllocation); ok {
			for _, s := range ea.Spec.Services {
				out = append(out, reconcile.Request{NamespacedName: client.ObjectKey{Namespace: s.Namespace, Name: s.Name}})
			}
		}
		return out
	})
	err = ctrl.NewControllerManagedBy(mgr).
		Named("ipam-service").
		For(&corev1.Service{}, builder.WithPredicates(servicePredicate(svcR.ours, alloc))).
		Watches(&v1alpha1.EIPPool{}, pending, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// A record deleted or shrunk frees an address (retry the pending
		// Services) or was removed by hand (its holders take it back).
		Watches(&v1alpha1.EIPAllocation{}, holdersAndPending, builder.WithPredicates(predicate.Funcs{
			CreateFunc: func(event.CreateEvent) bool { return false },
			UpdateFunc: func(e event.UpdateEvent) bool {
				o, n := e.ObjectOld.(*v1alpha1.EIPAllocation), e.ObjectNew.(*v1alpha1.EIPAllocation)
				return len(n.Spec.Services) < len(o.Spec.Services)
			},
		})).
		// A record whose holder the cache does not show as a served Service
		// of that UID may be a leak: its Service was deleted while no
		// allocator watched (every manager down, or in the seconds before a
		// standby took over), or the index missed the record when the
		// Service's deletion was handled. The informer lists every record
		// to this handler when the controller starts, so a new leader
		// sweeps them all; the reconcile of the holder releases the record
		// only if the API server confirms the Service is gone.
		Watches(&v1alpha1.EIPAllocation{}, staleHolders(mgr.GetClient(), svcR.ours), builder.WithPredicates(predicate.Funcs{
			UpdateFunc: func(event.UpdateEvent) bool { return false },
			DeleteFunc: func(event.DeleteEvent) bool { return false },
		})).
		WatchesRawSource(source.Channel(freedEvents, handler.TypedEnqueueRequestsFromMapFunc(
			func(context.Context, *v1alpha1.EIPAllocation) []reconcile.Request { return svcR.pending.requests() }))).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.Workers}).
		Complete(svcR)
	if err != nil {
		return fmt.Errorf("setting up the Service allocation controller: %w", err)
	}

	poolR := &PoolStatusReconciler{
		client: mgr.GetClient(), alloc: alloc, index: idx, pools: &svcR.pools,
		minInterval: opts.PoolStatusInterval, lastWrite: map[string]time.Time{},
	}
	allPools := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		var list v1alpha1.EIPPoolList
		if err := mgr.GetClient().List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
			return nil
		}
		out := make([]reconcile.Request, 0, len(list.Items))
		for _, p := range list.Items {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKey{Name: p.Name}})
		}
		return out
	})
	err = ctrl.NewControllerManagedBy(mgr).
		Named("ipam-pool-status").
		// Any pool change can change another pool's overlap condition.
		Watches(&v1alpha1.EIPPool{}, allPools, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesRawSource(source.Channel(poolEvents, &handler.TypedEnqueueRequestForObject[*v1alpha1.EIPPool]{})).
		Complete(poolR)
	if err != nil {
		return fmt.Errorf("setting up the pool status controller: %w", err)
	}
	return nil
}

// staleHolders enqueues, for a record seen created (or listed), the holders
// that the cache does not show as a served Service with that UID. Records
// the manager just wrote for Services in its cache enqueue nothing.
func staleHolders(cache client.Reader, ours func(*corev1.Service) bool) handler.EventHandler {
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			ea, ok := e.Object.(*v1alpha1.EIPAllocation)
			if !ok {
				return
			}
			for _, h := range ea.Spec.Services {
				key := client.ObjectKey{Namespace: h.Namespace, Name: h.Name}
				svc := &corev1.Service{}
				if err := cache.Get(ctx, key, svc); err == nil && string(svc.UID) == h.UID && ours(svc) && svc.DeletionTimestamp == nil {
					continue
				}
				q.Add(reconcile.Request{NamespacedName: key})
			}
		},
	}
}

// WarmInformers gets the informers the IPAM controllers read from the
// manager's cache. Standby replicas keep them warm (call it before the
// manager starts), so a new leader allocates at once instead of first
// listing every Service.
func WarmInformers(ctx context.Context, c cache.Cache) error {
	for _, obj := range []client.Object{&corev1.Service{}, &v1alpha1.EIPPool{}, &v1alpha1.EIPAllocation{}} {
		if _, err := c.GetInformer(ctx, obj); err != nil {
			return fmt.Errorf("informer for %T: %w", obj, err)
		}
	}
	return nil
}

// servicePredicate passes the events of Services that are or were served,
// except the echo of the manager's own status write (a Service whose spec
// and metadata did not change and whose status shows exactly what it
// holds), which would otherwise double the reconciles.
func servicePredicate(ours func(*corev1.Service) bool, alloc *ipam.Allocator) predicate.Funcs {
	is := func(o client.Object) bool {
		s, ok := o.(*corev1.Service)
		return ok && ours(s)
	}
	return predicate.Funcs{
		CreateFunc: func(e event.CreateEvent) bool { return is(e.Object) || hasCondition(e.Object) },
		UpdateFunc: func(e event.UpdateEvent) bool {
			if !is(e.ObjectOld) && !is(e.ObjectNew) {
				return false
			}
			o, n := e.ObjectOld.(*corev1.Service), e.ObjectNew.(*corev1.Service)
			sameInput := equality.Semantic.DeepEqual(o.Spec, n.Spec) && maps.Equal(o.Annotations, n.Annotations) &&
				maps.Equal(o.Labels, n.Labels) && n.DeletionTimestamp == nil
			return !sameInput || !showsHeld(n, alloc)
		},
		DeleteFunc: func(e event.DeleteEvent) bool { return is(e.Object) || hasCondition(e.Object) },
	}
}

// showsHeld reports whether a Service's status shows exactly the addresses
// it holds, with an IPAllocated condition.
func showsHeld(s *corev1.Service, alloc *ipam.Allocator) bool {
	if !hasCondition(s) {
		return false
	}
	held := alloc.HeldBy(string(s.UID))
	if len(held) != len(s.Status.LoadBalancer.Ingress) {
		return false
	}
	for _, ing := range s.Status.LoadBalancer.Ingress {
		if !slices.ContainsFunc(held, func(al ipam.Allocation) bool { return al.Addr.String() == ing.IP }) {
			return false
		}
	}
	return true
}

// hasCondition spots a Service eiplb once served (to clean up after a class
// change that happened while the manager was down).
func hasCondition(o client.Object) bool {
	s, ok := o.(*corev1.Service)
	if !ok {
		return false
	}
	for _, c := range s.Status.Conditions {
		if c.Type == v1alpha1.ConditionIPAllocated {
			return true
		}
	}
	return false
}
