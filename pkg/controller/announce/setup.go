package announce

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/eiplb/eiplb/pkg/agentlink"
	"github.com/eiplb/eiplb/pkg/announce"
	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
)

// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups=eiplb.io,resources=bgppeers;bgpadvertisements;eipallocations;eippools,verbs=get;list;watch
// +kubebuilder:rbac:groups=eiplb.io,resources=bgppeers/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch,namespace=eiplb-system

// Options of the announcer.
type Options struct {
	// NodeName is the node this replica runs on: its BGPPeer node
	// selectors are matched against it, and it names the replica in status.
	NodeName string
	// Namespace holds the password Secrets.
	Namespace string
	// Class and ServeNoClass select the Services, as for IPAM.
	Class        string
	ServeNoClass bool
	// Eligible is an extra say on next hops (tests); nil: every Ready node.
	Eligible announce.Eligible
	// Agents, when set, makes a node a next hop for a Service only while
	// its agent is alive and has programmed the Service (pkg/agentlink).
	// Setup fills in Manager, OnChange, Withdrawn and Log.
	Agents *agentlink.TrackerOptions
	// StatusInterval bounds how often session status is written.
	StatusInterval time.Duration
	// PruneInterval is how often the leader removes the status entries of
	// manager replicas whose Lease ran out (default 30 s).
	PruneInterval time.Duration
	// LocalAddrs lists the addresses of the node's network interface iface,
	// or of all its interfaces when iface is empty (BGPPeer sourceAddress
	// and sourceInterface). nil: the interfaces of the manager's own
	// network namespace, which is the node's (hostNetwork).
	LocalAddrs func(iface string) ([]netip.Addr, error)
}

func (o Options) serves(svc *corev1.Service) bool {
	return v1alpha1.Serves(svc, o.Class, o.ServeNoClass)
}

const peersKey = "peers"

// Setup adds the announcer to a manager. It runs on every replica (no
// leader election): all replicas announce the same paths.
func Setup(mgr ctrl.Manager, speaker Speaker, opts Options) error {
	if opts.Class == "" {
		opts.Class = v1alpha1.LoadBalancerClass
	}
	if opts.StatusInterval <= 0 {
		opts.StatusInterval = 2 * time.Second
	}
	if opts.PruneInterval <= 0 {
		opts.PruneInterval = 30 * time.Second
	}
	speaker.OnUpdate(func(added, withdrawn, total int, _ time.Time) {
		pathUpdates.WithLabelValues("announce").Add(float64(added))
		pathUpdates.WithLabelValues("withdraw").Add(float64(withdrawn))
		pathsAnnounced.Set(float64(total))
	})
	svcR := &ServiceReconciler{
		client: mgr.GetClient(), speaker: speaker, opts: opts,
		recorder:  mgr.GetEventRecorder("eiplb-announcer"),
		announced: map[string]string{}, seen: map[string]time.Time{}, served: map[string][]netip.Addr{},
	}
	var tracker *agentlink.Tracker
	agentEvents := make(chan event.TypedGenericEvent[client.Object], 4096)
	if opts.Agents != nil {
		to := *opts.Agents
		to.Manager = opts.NodeName
		to.Log = mgr.GetLogger().WithName("agents")
		to.Withdrawn = svcR.withdrawnFrom
		to.OnChange = func(node string, services []string) {
			if services == nil {
				agentEvents <- event.TypedGenericEvent[client.Object]{Object: &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}}
				return
			}
			for _, k := range services {
				ns, name, _ := strings.Cut(k, "/")
				agentEvents <- event.TypedGenericEvent[client.Object]{Object: &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}}
			}
		}
		tracker = agentlink.NewTracker(to)
		if err := mgr.Add(tracker); err != nil {
			return err
		}
		// A second manager in one process (tests) keeps the first one's.
		_ = metrics.Registry.Register(agentCollector{tracker})
		extra := opts.Eligible
		svcR.opts.Eligible = func(node string, svc announce.Service) bool {
			return tracker.Eligible(node, svc.Key, svc.Addrs) && (extra == nil || extra(node, svc))
		}
	}
	allServices := func(ctx context.Context) []reconcile.Request {
		var list corev1.ServiceList
		if err := mgr.GetClient().List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
			return nil
		}
		var out []reconcile.Request
		for i := range list.Items {
			if opts.serves(&list.Items[i]) {
				out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
			}
		}
		return out
	}
	if err := indexRecords(mgr); err != nil {
		return err
	}
	err := ctrl.NewControllerManagedBy(mgr).
		Named("announce-service").
		Watches(&corev1.Service{}, svcR.stamped(func(_ context.Context, o client.Object) []reconcile.Request {
			return []reconcile.Request{{NamespacedName: client.ObjectKeyFromObject(o)}}
		}), builder.WithPredicates(servicePredicate(opts))).
		// The addresses of a Service and their pools come from its
		// allocation records; a pool's labels select its advertisement.
		Watches(&v1alpha1.EIPAllocation{}, svcR.stamped(recordHolders), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.EIPPool{}, svcR.stamped(func(ctx context.Context, o client.Object) []reconcile.Request {
			return poolHolders(ctx, mgr.GetClient(), o.GetName())
		}), builder.WithPredicates(predicate.LabelChangedPredicate{})).
		// A Local Service's next hops follow its endpoints.
		Watches(&discoveryv1.EndpointSlice{}, svcR.stamped(func(_ context.Context, o client.Object) []reconcile.Request {
			name := o.GetLabels()[discoveryv1.LabelServiceName]
			if name == "" {
				return nil
			}
			return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: o.GetNamespace(), Name: name}}}
		})).
		// Only a change of what makes a node a next hop touches Services;
		// status heartbeats don't.
		Watches(&corev1.Node{}, svcR.stamped(func(ctx context.Context, _ client.Object) []reconcile.Request {
			return allServices(ctx)
		}), builder.WithPredicates(nodePredicate())).
		Watches(&v1alpha1.BGPAdvertisement{}, svcR.stamped(func(ctx context.Context, _ client.Object) []reconcile.Request {
			return allServices(ctx)
		}), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// An agent's state: a whole node, or some of its Services.
		WatchesRawSource(source.Channel(agentEvents, svcR.stamped(func(ctx context.Context, o client.Object) []reconcile.Request {
			if _, ok := o.(*corev1.Node); ok {
				return allServices(ctx)
			}
			return []reconcile.Request{{NamespacedName: client.ObjectKeyFromObject(o)}}
		}))).
		// Peer selectors of advertisements match BGPPeer labels.
		Watches(&v1alpha1.BGPPeer{}, svcR.stamped(func(ctx context.Context, _ client.Object) []reconcile.Request {
			return allServices(ctx)
		}), builder.WithPredicates(predicate.Or[client.Object](predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{}))).
		WithOptions(controller.Options{NeedLeaderElection: ptr.To(false), MaxConcurrentReconciles: 4}).
		Complete(svcR)
	if err != nil {
		return fmt.Errorf("setting up the Service announcer: %w", err)
	}

	peerR := &PeerReconciler{client: mgr.GetClient(), speaker: speaker, opts: opts, recorder: mgr.GetEventRecorder("eiplb-announcer")}
	if tracker != nil {
		peerR.settled = tracker.Settled()
		if err := setupAgentNodes(mgr, tracker); err != nil {
			return err
		}
		if err := mgr.Add(&nodeStatusWriter{client: mgr.GetClient(), tracker: tracker, services: svcR, opts: opts,
			interval: opts.StatusInterval, last: map[string]writtenNode{}}); err != nil {
			return err
		}
	}
	one := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: peersKey}}}
	})
	err = ctrl.NewControllerManagedBy(mgr).
		Named("announce-peers").
		Watches(&v1alpha1.BGPPeer{}, one, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Secret{}, one).
		// Its labels select peers; its addresses are no peer's.
		Watches(&corev1.Node{}, one, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetName() == opts.NodeName
		}), predicate.Or[client.Object](predicate.LabelChangedPredicate{}, predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
			o, n := e.ObjectOld.(*corev1.Node), e.ObjectNew.(*corev1.Node)
			return !reflect.DeepEqual(o.Status.Addresses, n.Status.Addresses)
		}}))).
		WithOptions(controller.Options{NeedLeaderElection: ptr.To(false)}).
		Complete(peerR)
	if err != nil {
		return fmt.Errorf("setting up the peer controller: %w", err)
	}
	if err := mgr.Add(&replicaLease{client: mgr.GetClient(), reader: mgr.GetAPIReader(), opts: opts}); err != nil {
		return err
	}
	if err := mgr.Add(&replicaPruner{client: mgr.GetClient(), reader: mgr.GetAPIReader(), opts: opts, interval: opts.PruneInterval}); err != nil {
		return err
	}
	return mgr.Add(&statusWriter{client: mgr.GetClient(), speaker: speaker, peers: peerR, opts: opts,
		interval: opts.StatusInterval, last: map[string]v1alpha1.BGPSession{}})
}

// servicePredicate passes events of served Services (and of ones that just
// stopped being served), ignoring changes that can't move paths.
func servicePredicate(opts Options) predicate.Funcs {
	is := func(o client.Object) bool {
		s, ok := o.(*corev1.Service)
		return ok && opts.serves(s)
	}
	return predicate.Funcs{
		CreateFunc: func(e event.CreateEvent) bool { return is(e.Object) },
		DeleteFunc: func(e event.DeleteEvent) bool { return is(e.Object) },
		UpdateFunc: func(e event.UpdateEvent) bool {
			if !is(e.ObjectOld) && !is(e.ObjectNew) {
				return false
			}
			o, n := e.ObjectOld.(*corev1.Service), e.ObjectNew.(*corev1.Service)
			// Not the status: the addresses come from the records.
			return opts.serves(o) != opts.serves(n) ||
				o.Spec.ExternalTrafficPolicy != n.Spec.ExternalTrafficPolicy ||
				n.DeletionTimestamp != nil
		},
	}
}

// nodePredicate passes Node changes that can change eligibility.
func nodePredicate() predicate.Funcs {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, n := e.ObjectOld.(*corev1.Node), e.ObjectNew.(*corev1.Node)
			ov, nv := nodeView(o), nodeView(n)
			return !reflect.DeepEqual(ov, nv)
		},
	}
}

// indexRecords adds the cache indexes of EIPAllocation records the
// announcer reads by (the Service UIDs holding them, their pool).
func indexRecords(mgr ctrl.Manager) error {
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(context.Background(), &v1alpha1.EIPAllocation{}, recordServiceIndex, recordServiceUIDs); err != nil {
		return fmt.Errorf("indexing EIPAllocations by Service: %w", err)
	}
	if err := idx.IndexField(context.Background(), &v1alpha1.EIPAllocation{}, recordPoolIndex, recordPool); err != nil {
		return fmt.Errorf("indexing EIPAllocations by pool: %w", err)
	}
	return nil
}

// recordHolders are the Services a record names (an update maps the old
// and the new record, so a Service dropped from it is reconciled too).
func recordHolders(_ context.Context, o client.Object) []reconcile.Request {
	rec, ok := o.(*v1alpha1.EIPAllocation)
	if !ok {
		return nil
	}
	out := make([]reconcile.Request, 0, len(rec.Spec.Services))
	for _, s := range rec.Spec.Services {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKey{Namespace: s.Namespace, Name: s.Name}})
	}
	return out
}

// poolHolders are the Services holding records of the pool.
func poolHolders(ctx context.Context, c client.Reader, pool string) []reconcile.Request {
	var list v1alpha1.EIPAllocationList
	if err := c.List(ctx, &list, client.MatchingFields{recordPoolIndex: pool}, client.UnsafeDisableDeepCopy); err != nil {
		// The cache's index answers without I/O; an error here is a bug.
		ctrl.Log.WithName("announcer").Error(err, "Listing the allocation records of a pool failed", "pool", pool)
		return nil
	}
	var out []reconcile.Request
	for i := range list.Items {
		out = append(out, recordHolders(ctx, &list.Items[i])...)
	}
	return out
}

// stamped enqueues what fn maps an event to, and notes when each request
// was first seen (eiplb_announce_latency_seconds). The handler does it,
// once per event that passed the predicates, which stay free of effects.
func (r *ServiceReconciler) stamped(fn handler.MapFunc) handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		reqs := fn(ctx, o)
		for _, q := range reqs {
			r.markSeen(q.String())
		}
		return reqs
	})
}
