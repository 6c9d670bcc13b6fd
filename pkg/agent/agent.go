// Package agent is the node agent: it keeps the node's nftables data plane
// equal to what the served Services and their EndpointSlices ask for, and
// streams to the managers which Services it has programmed (pkg/agentlink).
package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/eiplb/eiplb/pkg/agentlink"
	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/dataplane"
	"github.com/eiplb/eiplb/pkg/ipam"
	"github.com/eiplb/eiplb/pkg/serving"
)

// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups=eiplb.io,resources=eipallocations,verbs=get;list;watch

// Dataplane is what the agent needs of the kernel writer (pkg/dataplane/nft).
type Dataplane interface {
	// Load reads what the kernel holds, changing nothing.
	Load() error
	// Sync makes the kernel equal to desired.
	Sync(desired *dataplane.Table) error
	// Apply writes the touched part of desired, in one transaction.
	Apply(desired *dataplane.Table, touched dataplane.Touched) error
}

// Options of the agent.
type Options struct {
	NodeName     string
	Class        string
	ServeNoClass bool
	Mode         dataplane.Mode
	// LinkAddr is where managers connect (host:port).
	LinkAddr string
	// Heartbeat of the link.
	Heartbeat time.Duration
	// DrainTimeout bounds how long a draining agent waits for the managers.
	DrainTimeout time.Duration
	// ResyncPeriod is how often the agent re-reads the kernel's table and
	// repairs what others changed (0: only when the kernel reports a
	// removal, with a Dataplane that can watch).
	ResyncPeriod time.Duration
	MetricsAddr  string
	// MetricsInsecure: as the manager's (plain HTTP, no authentication).
	MetricsInsecure bool
	ProbeAddr       string
	// PprofAddr: as the manager's.
	PprofAddr string
	// SeveralPerProcess lets tests run several agents in one process.
	SeveralPerProcess bool
}

// Agent is one node's agent.
type Agent struct {
	opts Options
	dp   Dataplane
	mgr  ctrl.Manager
	link *agentlink.Server

	mu     sync.Mutex // serializes the table and the kernel writes
	table  *dataplane.Table
	synced chan struct{}
	// broken: a kernel write and the re-sync after it failed; the next
	// reconcile re-syncs first.
	broken bool

	drainMu sync.Mutex
	drain   *DrainResult
}

// DrainResult is how the agent's last exit went, when it drained.
type DrainResult struct {
	// Unacknowledged lists the managers that did not confirm in time.
	Unacknowledged []string
}

// Drained reports how the drain went on the way out; nil when the agent
// did not drain (its Node was not cordoned) or has not stopped.
func (a *Agent) Drained() *DrainResult {
	a.drainMu.Lock()
	defer a.drainMu.Unlock()
	return a.drain
}

// New builds an agent; Run starts it.
func New(cfg *rest.Config, dp Dataplane, opts Options) (*Agent, error) {
	if opts.NodeName == "" {
		return nil, errors.New("the agent needs its node name (--node-name or NODE_NAME)")
	}
	if opts.Class == "" {
		opts.Class = v1alpha1.LoadBalancerClass
	}
	if opts.Mode == "" {
		opts.Mode = dataplane.ModeNftables
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 10 * time.Second
	}
	scheme := runtime.NewScheme()
	if err := errors.Join(corev1.AddToScheme(scheme), discoveryv1.AddToScheme(scheme), v1alpha1.AddToScheme(scheme)); err != nil {
		return nil, err
	}
	a := &Agent{opts: opts, dp: dp, table: dataplane.NewTable(opts.Mode), synced: make(chan struct{}),
		link: agentlink.NewServer(opts.NodeName, opts.Heartbeat, ctrl.Log.WithName("link"))}
	// The caches keep only what the data plane reads (the agent runs on
	// every node: its memory is paid N times).
	strip := func(o any) (any, error) {
		if m, ok := o.(client.Object); ok {
			m.SetManagedFields(nil)
			m.SetAnnotations(nil)
			m.SetOwnerReferences(nil)
		}
		switch x := o.(type) {
		case *corev1.Service:
			x.Labels = nil
			spec := corev1.ServiceSpec{Type: x.Spec.Type, LoadBalancerClass: x.Spec.LoadBalancerClass}
			if v1alpha1.Serves(x, opts.Class, opts.ServeNoClass) {
				// Every field dataplane.Compute reads.
				spec.Ports, spec.ExternalTrafficPolicy = x.Spec.Ports, x.Spec.ExternalTrafficPolicy
				spec.LoadBalancerSourceRanges, spec.SessionAffinity = x.Spec.LoadBalancerSourceRanges, x.Spec.SessionAffinity
			}
			// Services eiplb does not serve are kept as bare names; the
			// addresses of the others come from their records, not the
			// status.
			x.Spec, x.Status = spec, corev1.ServiceStatus{}
		case *v1alpha1.EIPAllocation:
			// The address and who holds it.
			x.Labels = nil
			x.Spec.Pool, x.Spec.SharingKey = "", ""
		case *discoveryv1.EndpointSlice:
			x.Labels = map[string]string{discoveryv1.LabelServiceName: x.Labels[discoveryv1.LabelServiceName]}
			for i := range x.Endpoints {
				e := &x.Endpoints[i]
				e.TargetRef, e.Hints, e.Zone, e.Hostname, e.DeprecatedTopology = nil, nil, nil, nil, nil
			}
		}
		return o, nil
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                serving.Metrics(opts.MetricsAddr, opts.MetricsInsecure),
		HealthProbeBindAddress: orDefault(opts.ProbeAddr, "0"),
		PprofBindAddress:       orDefault(opts.PprofAddr, "0"),
		Controller:             config.Controller{SkipNameValidation: &opts.SeveralPerProcess},
		Cache: cache.Options{DefaultTransform: strip, ByObject: map[client.Object]cache.ByObject{
			// Only its own Node.
			&corev1.Node{}: {Field: fields.OneTermEqualSelector("metadata.name", opts.NodeName)},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("creating the agent: %w", err)
	}
	a.mgr = mgr
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &discoveryv1.EndpointSlice{}, sliceServiceIndex,
		func(o client.Object) []string {
			if n := o.GetLabels()[discoveryv1.LabelServiceName]; n != "" {
				return []string{n}
			}
			return nil
		}); err != nil {
		return nil, err
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &v1alpha1.EIPAllocation{}, recordServiceIndex,
		func(o client.Object) []string {
			var out []string
			for _, s := range o.(*v1alpha1.EIPAllocation).Spec.Services {
				out = append(out, s.UID)
			}
			return out
		}); err != nil {
		return nil, err
	}
	err = ctrl.NewControllerManagedBy(mgr).
		Named("agent").
		For(&corev1.Service{}, builder.WithPredicates(a.servicePredicate())).
		// A Service's addresses are those of the records naming it: the
		// rules follow a record as soon as IPAM wrote it, before the
		// Service status. An update maps the old and the new record, so a
		// Service dropped from one is reconciled too.
		Watches(&v1alpha1.EIPAllocation{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			rec := o.(*v1alpha1.EIPAllocation)
			out := make([]reconcile.Request, 0, len(rec.Spec.Services))
			for _, s := range rec.Spec.Services {
				out = append(out, reconcile.Request{NamespacedName: client.ObjectKey{Namespace: s.Namespace, Name: s.Name}})
			}
			return out
		}), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&discoveryv1.EndpointSlice{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			name := o.GetLabels()[discoveryv1.LabelServiceName]
			if name == "" {
				return nil
			}
			return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: o.GetNamespace(), Name: name}}}
		})).
		WithOptions(controller.Options{NeedLeaderElection: ptr.To(false), MaxConcurrentReconciles: 1}).
		Complete(a)
	if err != nil {
		return nil, err
	}
	// A second agent in one process (tests) keeps the first one's gauge.
	_ = metrics.Registry.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "eiplb_agent_managers_connected",
		Help: "Manager replicas connected to this agent's link.",
	}, func() float64 { return float64(a.link.Managers()) }))
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("synced", func(*http.Request) error {
		select {
		case <-a.synced:
			return nil
		default:
			return errors.New("initial sync not done")
		}
	}); err != nil {
		return nil, err
	}
	return a, nil
}

const (
	sliceServiceIndex  = "eiplb.io/service-name"
	recordServiceIndex = "eiplb.io/service-uid"
)

// Link is the agent's link server (tests read the programmed set).
func (a *Agent) Link() *agentlink.Server { return a.link }

func (a *Agent) servicePredicate() predicate.Funcs {
	relevant := func(o client.Object) bool {
		s, ok := o.(*corev1.Service)
		return ok && v1alpha1.Serves(s, a.opts.Class, a.opts.ServeNoClass)
	}
	return predicate.Funcs{
		CreateFunc: func(e event.CreateEvent) bool { return relevant(e.Object) },
		DeleteFunc: func(e event.DeleteEvent) bool { return relevant(e.Object) },
		// The cache keeps only the spec fields the rules use (the status
		// not at all): a status write changes nothing here.
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, n := e.ObjectOld.(*corev1.Service), e.ObjectNew.(*corev1.Service)
			return (relevant(o) || relevant(n)) &&
				(!reflect.DeepEqual(o.Spec, n.Spec) || o.Generation != n.Generation || (o.DeletionTimestamp == nil) != (n.DeletionTimestamp == nil))
		},
	}
}

// Run runs the agent until ctx ends. On the way out, if its Node is
// cordoned (a drain), it first asks the managers to withdraw the node and
// waits for them (at most DrainTimeout); otherwise (a restart or upgrade) it
// exits at once, leaving its rules in the kernel to keep forwarding.
func (a *Agent) Run(ctx context.Context) error {
	log := ctrl.Log.WithName("agent")
	if err := a.dp.Load(); err != nil {
		return fmt.Errorf("reading the kernel's rules: %w", err)
	}
	mgrCtx, stopMgr := context.WithCancel(context.Background())
	defer stopMgr()
	mgrErr := make(chan error, 1)
	go func() { mgrErr <- a.mgr.Start(mgrCtx) }()
	if !a.mgr.GetCache().WaitForCacheSync(ctx) {
		stopMgr()
		if err := <-mgrErr; err != nil {
			return err
		}
		return ctx.Err()
	}
	start := time.Now()
	n, err := a.initialSync(ctx)
	if err != nil {
		stopMgr()
		<-mgrErr
		return err
	}
	log.Info("Initial sync done", "services", n, "took", time.Since(start).String())
	syncSeconds.WithLabelValues("initial").Observe(time.Since(start).Seconds())

	ln, err := net.Listen("tcp", a.opts.LinkAddr)
	if err != nil {
		stopMgr()
		<-mgrErr
		return fmt.Errorf("listening for managers: %w", err)
	}
	linkCtx, stopLink := context.WithCancel(context.Background())
	defer stopLink()
	linkDone := make(chan error, 1)
	go func() { linkDone <- a.link.Serve(linkCtx, ln) }()
	log.Info("Serving managers", "address", ln.Addr().String())
	repairDone := make(chan struct{})
	go func() { defer close(repairDone); a.keepKernel(linkCtx) }()
	defer func() { stopLink(); <-repairDone }()

	select {
	case <-ctx.Done():
	case err := <-mgrErr:
		stopLink()
		<-linkDone
		return err
	case err := <-linkDone:
		stopMgr()
		<-mgrErr
		return err
	}
	if a.cordoned() {
		log.Info("Node cordoned: asking the managers to withdraw it before exiting", "timeout", a.opts.DrainTimeout.String())
		dctx, cancel := context.WithTimeout(context.Background(), a.opts.DrainTimeout)
		missing := a.link.Drain(dctx)
		cancel()
		a.drainMu.Lock()
		a.drain = &DrainResult{Unacknowledged: missing}
		a.drainMu.Unlock()
		if len(missing) > 0 {
			log.Info("Drain not acknowledged by every manager; exiting anyway", "missing", missing)
		} else {
			log.Info("Every manager withdrew the node")
		}
	}
	stopLink()
	<-linkDone
	stopMgr()
	return <-mgrErr
}

// cordoned reads the Node fresh from the API server (the cache may not
// have seen a cordon made just before the SIGTERM), falling back to the
// cache when the API server does not answer.
func (a *Agent) cordoned() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var n corev1.Node
	key := client.ObjectKey{Name: a.opts.NodeName}
	if err := a.mgr.GetAPIReader().Get(ctx, key, &n); err != nil {
		if err := a.mgr.GetClient().Get(ctx, key, &n); err != nil {
			return false
		}
	}
	return n.Spec.Unschedulable
}

// initialSync computes every served Service and writes them in one
// transaction, before any manager can see the agent.
func (a *Agent) initialSync(ctx context.Context) (int, error) {
	var svcs corev1.ServiceList
	if err := a.mgr.GetClient().List(ctx, &svcs); err != nil {
		return 0, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var done []dataplane.Service
	for i := range svcs.Items {
		s := &svcs.Items[i]
		if !v1alpha1.Serves(s, a.opts.Class, a.opts.ServeNoClass) || s.DeletionTimestamp != nil {
			continue
		}
		d, err := a.compute(ctx, s)
		if err != nil {
			return 0, err
		}
		if len(d.EIPs) == 0 {
			continue
		}
		a.table.Set(d)
		done = append(done, d)
	}
	if err := a.dp.Sync(a.table); err != nil {
		return 0, fmt.Errorf("initial sync: %w", err)
	}
	for _, d := range done {
		a.link.SetProgrammed(d.Key, programmed(d))
	}
	servicesProgrammed.Set(float64(len(done)))
	close(a.synced)
	return len(done), nil
}

func programmed(d dataplane.Service) *agentlink.Programmed {
	return &agentlink.Programmed{Generation: d.Generation, Addrs: d.EIPs}
}

// compute is the Service's rules: its addresses are those of the
// EIPAllocation records naming it by UID (IPAM's truth), never its status,
// which IPAM writes after the records and only reports them. An address
// the status shows without a record is not programmed (IPAM adopts such
// addresses at its start, writing their records); an address with a
// record is programmed before the status shows it.
func (a *Agent) compute(ctx context.Context, s *corev1.Service) (dataplane.Service, error) {
	var recs v1alpha1.EIPAllocationList
	if err := a.mgr.GetClient().List(ctx, &recs, client.MatchingFields{recordServiceIndex: string(s.UID)}); err != nil {
		return dataplane.Service{}, err
	}
	var eips []netip.Addr
	for i := range recs.Items {
		if addr, err := netip.ParseAddr(recs.Items[i].Spec.Address); err == nil && ipam.AllocationName(addr) == recs.Items[i].Name {
			eips = append(eips, addr)
		}
	}
	var list discoveryv1.EndpointSliceList
	if err := a.mgr.GetClient().List(ctx, &list, client.InNamespace(s.Namespace),
		client.MatchingFields{sliceServiceIndex: s.Name}); err != nil {
		return dataplane.Service{}, err
	}
	eps := make([]*discoveryv1.EndpointSlice, len(list.Items))
	for i := range list.Items {
		eps[i] = &list.Items[i]
	}
	return dataplane.Compute(s, eips, eps, a.opts.NodeName, a.opts.Mode), nil
}

// Reconcile brings one Service's rules up to date.
func (a *Agent) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	select {
	case <-a.synced:
	case <-ctx.Done():
		return ctrl.Result{}, ctx.Err()
	}
	key := req.String()
	var s corev1.Service
	var want *dataplane.Service
	err := a.mgr.GetClient().Get(ctx, req.NamespacedName, &s)
	switch {
	case client.IgnoreNotFound(err) != nil:
		return ctrl.Result{}, err
	case err == nil && v1alpha1.Serves(&s, a.opts.Class, a.opts.ServeNoClass) && s.DeletionTimestamp == nil:
		d, err := a.compute(ctx, &s)
		if err != nil {
			return ctrl.Result{}, err
		}
		if len(d.EIPs) > 0 {
			want = &d
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	start := time.Now()
	if a.broken {
		// A write failed earlier: the kernel may hold less than the table.
		if err := a.resync(); err != nil {
			syncErrors.Inc()
			return ctrl.Result{}, err
		}
		a.broken = false
	}
	old, had := a.table.Service(key)
	if want == nil && !had {
		return ctrl.Result{}, nil
	}
	if want != nil && had && reflect.DeepEqual(old, *want) {
		return ctrl.Result{}, nil
	}
	var touched dataplane.Touched
	if want == nil {
		touched = a.table.Delete(key)
	} else {
		touched = a.table.Set(*want)
	}
	if err := a.dp.Apply(a.table, touched); err != nil {
		syncErrors.Inc()
		ctrl.LoggerFrom(ctx).Error(err, "Applying rules failed; re-reading the kernel and writing everything")
		if err := a.resync(); err != nil {
			a.broken = true
			syncErrors.Inc()
			return ctrl.Result{}, err
		}
	}
	syncSeconds.WithLabelValues("change").Observe(time.Since(start).Seconds())
	if want == nil {
		a.link.SetProgrammed(key, nil)
	} else {
		a.link.SetProgrammed(key, programmed(*want))
	}
	servicesProgrammed.Set(float64(a.table.Len())) // not Services(): it sorts every key, per change
	return ctrl.Result{}, nil
}

// watcher is a Dataplane that reports removals others make (nft.Writer).
type watcher interface {
	Watch(ctx context.Context, changed func()) error
}

// counter is a Dataplane that counts the changes it wrote (nft.Writer).
type counter interface{ Changes() uint64 }

// keepKernel repairs the table when something else changes it (`nft flush
// ruleset`, a firewall service restarting): at once when the kernel reports
// a removal in the table, and every ResyncPeriod as a backstop.
func (a *Agent) keepKernel(ctx context.Context) {
	log := ctrl.Log.WithName("agent")
	trigger := make(chan struct{}, 1)
	poke := func() {
		select {
		case trigger <- struct{}{}:
		default:
		}
	}
	if w, ok := a.dp.(watcher); ok {
		go func() {
			for ctx.Err() == nil {
				if err := w.Watch(ctx, poke); err != nil {
					// Events may have been lost: check, and watch again.
					log.Info("Watching the kernel's table failed; re-checking it", "error", err.Error())
					poke()
				}
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
		}()
	}
	var tick <-chan time.Time
	if a.opts.ResyncPeriod > 0 {
		t := time.NewTicker(a.opts.ResyncPeriod)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-trigger:
			// One repair for a burst of removals (a flush sends many).
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			select {
			case <-trigger:
			default:
			}
		case <-tick:
		}
		a.repair()
	}
}

// repair re-reads the kernel and writes what differs from the table.
func (a *Agent) repair() {
	log := ctrl.Log.WithName("agent")
	a.mu.Lock()
	defer a.mu.Unlock()
	var before uint64
	c, counts := a.dp.(counter)
	if counts {
		before = c.Changes()
	}
	if err := a.resync(); err != nil {
		a.broken = true
		syncErrors.Inc()
		log.Error(err, "Re-checking the kernel's rules failed; retrying with the next change")
		return
	}
	a.broken = false
	if counts {
		if n := c.Changes() - before; n > 0 {
			repairs.Inc()
			log.Info("Repaired the kernel's rules: something other than the agent changed them", "changes", n)
		}
	}
}

// resync re-reads the kernel and writes the whole table; a.mu is held.
func (a *Agent) resync() error {
	if err := a.dp.Load(); err != nil {
		return err
	}
	return a.dp.Sync(a.table)
}

func orDefault(s, def string) string {
	if s != "" {
		return s
	}
	return def
}
