package manager

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/uuid"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// ipamElector runs the IPAM controllers on one replica at a time, through a
// Lease, while the rest of the manager (the announcer, the informers) runs
// on every replica whatever happens to the Lease. controller-runtime's own
// leader election ends the process when a renewal fails, so an API server
// outage longer than the renew deadline would restart every replica; here
// a replica that loses the Lease stops its IPAM controllers and campaigns
// again, a standby like the others.
//
// Fencing: the controllers of a term run under a context that ends as soon
// as a renewal fails, and the term is over (every reconcile returned) before
// the replica campaigns again. A renewal fails at the latest RetryPeriod +
// RenewDeadline after the last successful one, which New keeps below the
// LeaseDuration that the other replicas wait before taking the Lease. A
// write already on its way to the API server when the term ends is not
// recalled: that case is what the API server's uniqueness of allocation
// records (docs/ipam.md) is for.
type ipamElector struct {
	events    record.EventBroadcaster
	eventSink record.EventSink
	mgr       ctrl.Manager
	lock      resourcelock.Interface
	// name labels client-go's leader_election_master_status metric.
	name                                      string
	leaseDuration, renewDeadline, retryPeriod time.Duration
	// setup adds one term's controllers to the manager it is given.
	setup func(context.Context, ctrl.Manager) error
	log   logr.Logger
}

func newIPAMElector(cfg *rest.Config, mgr ctrl.Manager, namespace, name string, lease, renew, retry time.Duration, setup func(context.Context, ctrl.Manager) error) (*ipamElector, error) {
	if renew+retry >= lease {
		return nil, fmt.Errorf("the lease duration (%v) must exceed the renew deadline (%v) plus the retry period (%v): a leader that can't renew must stop allocating before another replica may take the lease", lease, renew, retry)
	}
	host, err := os.Hostname()
	if err != nil {
		return nil, err
	}
	cfg = rest.AddUserAgent(cfg, "leader-election")
	// A hung request must not use up the whole renew deadline.
	cfg.Timeout = max(renew/2, time.Second)
	core, err := corev1client.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	coord, err := coordinationv1client.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	// "became leader" Events on the Lease, with the core API as client-go
	// records them (the Role allows core Events in the manager's
	// namespace); the broadcaster stops with Start.
	events := record.NewBroadcaster()
	rec := events.NewRecorder(mgr.GetScheme(), corev1.EventSource{Component: "eiplb-manager", Host: host})
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, namespace, name, core, coord,
		resourcelock.ResourceLockConfig{Identity: host + "_" + string(uuid.NewUUID()), EventRecorder: rec})
	if err != nil {
		events.Shutdown()
		return nil, err
	}
	e := &ipamElector{
		events: events, eventSink: &corev1client.EventSinkImpl{Interface: core.Events("")},
		mgr: mgr, lock: lock, name: name,
		leaseDuration: lease, renewDeadline: renew, retryPeriod: retry,
		setup: setup, log: mgr.GetLogger().WithName("ipam-leader"),
	}
	// client-go's own checks of the timings, once, at start.
	if _, err := leaderelection.NewLeaderElector(e.config(leaderelection.LeaderCallbacks{
		OnStartedLeading: func(context.Context) {}, OnStoppedLeading: func() {},
	})); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *ipamElector) config(cb leaderelection.LeaderCallbacks) leaderelection.LeaderElectionConfig {
	return leaderelection.LeaderElectionConfig{
		Lock:          e.lock,
		Name:          e.name,
		LeaseDuration: e.leaseDuration,
		RenewDeadline: e.renewDeadline,
		RetryPeriod:   e.retryPeriod,
		// No ReleaseOnCancel: client-go releases before it cancels the
		// leader's context, which would leave the controllers running
		// for one more request timeout after a failed renewal. The
		// term releases the Lease itself once it is over.
		Callbacks: cb,
	}
}

// NeedLeaderElection: the elector is what elects.
func (*ipamElector) NeedLeaderElection() bool { return false }

// Start campaigns until ctx ends, leading when elected.
func (e *ipamElector) Start(ctx context.Context) error {
	stop := e.events.StartRecordingToSink(e.eventSink)
	defer stop.Stop()
	defer e.events.Shutdown()
	for ctx.Err() == nil {
		if err := e.campaign(ctx); err != nil {
			// The term's controllers failed (not a lost Lease): the
			// Lease was given up; pause before campaigning again.
			e.log.Error(err, "IPAM term failed, campaigning again")
			select {
			case <-ctx.Done():
			case <-time.After(e.leaseDuration):
			}
		}
	}
	return nil
}

// campaign waits for the Lease, leads until it is lost, the term fails or
// ctx ends, and returns once the term's controllers have all stopped.
func (e *ipamElector) campaign(ctx context.Context) error {
	// The election outlives ctx by the end of the term: the Lease is
	// renewed until the controllers have stopped, then given up.
	electCtx, stopElect := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElect()
	var (
		mu      sync.Mutex
		over    bool          // Run is returning: no term may start
		term    chan struct{} // closed when the term's controllers stopped
		release bool          // the term ended with the Lease still ours
		termErr error
	)
	defer context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if term == nil {
			stopElect() // not leading: stop campaigning now
		}
	})()
	le, err := leaderelection.NewLeaderElector(e.config(leaderelection.LeaderCallbacks{
		OnStartedLeading: func(leaderCtx context.Context) {
			mu.Lock()
			if over {
				mu.Unlock()
				return
			}
			done := make(chan struct{})
			term = done
			mu.Unlock()
			defer close(done)
			termCtx, cancel := context.WithCancel(leaderCtx)
			defer cancel()
			defer context.AfterFunc(ctx, cancel)()
			e.log.Info("Leading IPAM", "lease", e.lock.Describe())
			start := time.Now()
			termErr = e.runTerm(termCtx)
			reason := "lease lost"
			if leaderCtx.Err() == nil || ctx.Err() != nil {
				reason = "stopping"
				if termErr != nil {
					reason = "controllers failed"
				}
				release = true
				stopElect() // stop renewing, then release
			}
			e.log.Info("Stopped leading IPAM, allocation stopped", "reason", reason, "led", time.Since(start).Round(time.Millisecond))
		},
		OnStoppedLeading: func() {
			mu.Lock()
			over = true
			done := term
			mu.Unlock()
			if done != nil {
				<-done
			}
		},
	}))
	if err != nil {
		return err
	}
	le.Run(logr.NewContext(electCtx, e.log))
	if release {
		e.release()
	}
	return termErr
}

// release gives up the Lease if it is still this replica's, so another
// replica takes it at once instead of after the lease duration (what
// client-go's ReleaseOnCancel writes).
func (e *ipamElector) release() {
	ctx, cancel := context.WithTimeout(context.Background(), e.renewDeadline)
	defer cancel()
	rec, _, err := e.lock.Get(ctx)
	if err != nil || rec.HolderIdentity != e.lock.Identity() {
		return
	}
	now := metav1.NewTime(time.Now())
	err = e.lock.Update(ctx, resourcelock.LeaderElectionRecord{
		LeaderTransitions: rec.LeaderTransitions, LeaseDurationSeconds: 1, RenewTime: now, AcquireTime: now,
	})
	if err != nil {
		e.log.Error(err, "Releasing the IPAM lease", "lease", e.lock.Describe())
	}
}

// runTerm sets up a fresh set of IPAM controllers (fresh allocator state,
// rebuilt from the informers: whatever another leader did meanwhile is in
// it) and runs them until ctx ends or one of them fails; it returns when
// every one has stopped.
func (e *ipamElector) runTerm(ctx context.Context) error {
	if ctx.Err() != nil {
		return nil
	}
	t := &termManager{Manager: e.mgr, cache: &termCache{Cache: e.mgr.GetCache()}}
	defer t.cache.close()
	if err := e.setup(ctx, t); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if len(t.runnables) == 0 {
		<-ctx.Done() // nothing to run: keep the Lease (no acquire-release loop)
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(t.runnables))
	var wg sync.WaitGroup
	for _, r := range t.runnables {
		wg.Go(func() {
			err := r.Start(ctx)
			if ctx.Err() == nil {
				errs <- fmt.Errorf("%T stopped: %w", r, err)
				cancel()
			}
		})
	}
	wg.Wait()
	close(errs)
	return errors.Join(func() (out []error) {
		for err := range errs {
			out = append(out, err)
		}
		return out
	}()...)
}

// termManager is the manager as one term's IPAM controllers see it: what
// they add runs for the term only, their controller names may repeat from
// one term to the next, and the event handlers they register on the
// manager's informers go away with the term.
type termManager struct {
	ctrl.Manager
	cache     *termCache
	runnables []manager.Runnable
}

func (m *termManager) Add(r manager.Runnable) error {
	m.runnables = append(m.runnables, r)
	return nil
}

func (m *termManager) GetCache() cache.Cache { return m.cache }

func (m *termManager) GetControllerOptions() config.Controller {
	o := m.Manager.GetControllerOptions()
	o.SkipNameValidation = ptr.To(true)
	return o
}

// termCache is the manager's cache, with every event handler added through
// it removed by close (and at once when added after close).
type termCache struct {
	cache.Cache
	mu     sync.Mutex
	closed bool
	regs   []termHandler
}

type termHandler struct {
	inf cache.Informer
	reg toolscache.ResourceEventHandlerRegistration
}

func (c *termCache) GetInformer(ctx context.Context, obj client.Object, opts ...cache.InformerGetOption) (cache.Informer, error) {
	i, err := c.Cache.GetInformer(ctx, obj, opts...)
	if err != nil {
		return nil, err
	}
	return &termInformer{Informer: i, c: c}, nil
}

func (c *termCache) GetInformerForKind(ctx context.Context, gvk schema.GroupVersionKind, opts ...cache.InformerGetOption) (cache.Informer, error) {
	i, err := c.Cache.GetInformerForKind(ctx, gvk, opts...)
	if err != nil {
		return nil, err
	}
	return &termInformer{Informer: i, c: c}, nil
}

func (c *termCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for _, h := range c.regs {
		_ = h.inf.RemoveEventHandler(h.reg)
	}
	c.regs = nil
}

func (c *termCache) track(inf cache.Informer, reg toolscache.ResourceEventHandlerRegistration, err error) (toolscache.ResourceEventHandlerRegistration, error) {
	if err != nil {
		return reg, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		_ = inf.RemoveEventHandler(reg)
	} else {
		c.regs = append(c.regs, termHandler{inf, reg})
	}
	return reg, nil
}

type termInformer struct {
	cache.Informer
	c *termCache
}

func (i *termInformer) AddEventHandler(h toolscache.ResourceEventHandler) (toolscache.ResourceEventHandlerRegistration, error) {
	reg, err := i.Informer.AddEventHandler(h)
	return i.c.track(i.Informer, reg, err)
}

func (i *termInformer) AddEventHandlerWithResyncPeriod(h toolscache.ResourceEventHandler, resync time.Duration) (toolscache.ResourceEventHandlerRegistration, error) {
	reg, err := i.Informer.AddEventHandlerWithResyncPeriod(h, resync)
	return i.c.track(i.Informer, reg, err)
}

func (i *termInformer) AddEventHandlerWithOptions(h toolscache.ResourceEventHandler, o toolscache.HandlerOptions) (toolscache.ResourceEventHandlerRegistration, error) {
	reg, err := i.Informer.AddEventHandlerWithOptions(h, o)
	return i.c.track(i.Informer, reg, err)
}
