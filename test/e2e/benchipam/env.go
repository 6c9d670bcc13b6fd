package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/eiplb/eiplb/pkg/apis"
	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
)

const (
	leaseNamespace    = "eiplb-system"
	benchNamespace    = "bench"
	baselineNamespace = "bench-baseline"
	poolName          = "bench"
	poolCIDR          = "10.128.0.0/16"
	foreignClass      = "example.com/none"
	// The Services' ClusterIPs: envtest's default /24 holds only 254.
	serviceCIDR = "10.0.0.0/16"
)

// bench holds what one run started; cleanup releases all of it.
type bench struct {
	o     options
	start time.Time

	env      *envtest.Environment
	cfg      *rest.Config  // admin, no client-side rate limit
	c        client.Client // on cfg
	cs       kubernetes.Interface
	dir      string // kubeconfig and manager logs
	keepLogs bool

	trk          *tracker
	stopInformer chan struct{}

	mgrMu    sync.Mutex
	mgrBin   string
	mgrs     []*managerProc
	mgrExits []string // managers that exited on their own (and were restarted)
	stopping bool     // no more restarts
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%7.2fs] %s\n", time.Since(b.start).Seconds(), fmt.Sprintf(format, args...))
}

// startEnv starts etcd and kube-apiserver with the CRDs, and writes a
// kubeconfig for the manager processes.
func (b *bench) startEnv() error {
	dir, err := os.MkdirTemp("", "bench-ipam-")
	if err != nil {
		return err
	}
	b.dir = dir
	b.env = &envtest.Environment{
		CRDDirectoryPaths:     strings.Split(b.o.crdDir, ","),
		ErrorIfCRDPathMissing: true,
	}
	b.env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", serviceCIDR)
	cfg, err := b.env.Start()
	if err != nil {
		return fmt.Errorf("starting envtest (kube-apiserver + etcd): %w", err)
	}
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = -1, 0 // like the manager: no client-side rate limit
	b.cfg = cfg
	scheme, err := apis.NewScheme()
	if err != nil {
		return err
	}
	if b.c, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return err
	}
	if b.cs, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	user, err := b.env.AddUser(envtest.User{Name: "bench", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("adding the kubeconfig user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return err
	}
	return os.WriteFile(b.kubeconfig(), kc, 0o600)
}

func (b *bench) kubeconfig() string { return filepath.Join(b.dir, "kubeconfig") }

// cleanup kills the managers, stops the informer and the API server, and
// removes the temporary folder unless its logs are worth keeping.
func (b *bench) cleanup() {
	b.killAllManagers()
	if b.stopInformer != nil {
		close(b.stopInformer)
	}
	if b.env != nil {
		if err := b.env.Stop(); err != nil {
			b.logf("stopping envtest: %v", err)
		}
	}
	if b.dir != "" {
		if b.keepLogs || b.o.keepLogs {
			b.logf("manager logs and kubeconfig kept in %s", b.dir)
		} else {
			_ = os.RemoveAll(b.dir)
		}
	}
}

// setup creates the namespaces and the pool.
func (b *bench) setup(ctx context.Context) error {
	for _, ns := range []string{leaseNamespace, benchNamespace, baselineNamespace} {
		if err := b.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return fmt.Errorf("creating namespace %s: %w", ns, err)
		}
	}
	pool := &v1alpha1.EIPPool{
		ObjectMeta: metav1.ObjectMeta{Name: poolName},
		Spec:       v1alpha1.EIPPoolSpec{Addresses: []string{poolCIDR}},
	}
	if err := b.c.Create(ctx, pool); err != nil {
		return fmt.Errorf("creating EIPPool %s: %w", poolName, err)
	}
	return nil
}

// newService is a LoadBalancer Service with one port (80/TCP). NodePorts
// are not allocated: the API server's default range holds only 2768 and
// eiplb does not need them.
//
// Without a class it is a plain ClusterIP Service.
func newService(ns, name, class string) *corev1.Service {
	if class == "" {
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: corev1.ServiceSpec{
				Type:     corev1.ServiceTypeClusterIP,
				Selector: map[string]string{"app": name},
				Ports: []corev1.ServicePort{{
					Name: "http", Port: 80, TargetPort: intstr.FromInt32(80), Protocol: corev1.ProtocolTCP,
				}},
			},
		}
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type:                          corev1.ServiceTypeLoadBalancer,
			LoadBalancerClass:             ptr.To(class),
			AllocateLoadBalancerNodePorts: ptr.To(false),
			Selector:                      map[string]string{"app": name},
			Ports: []corev1.ServicePort{{
				Name: "http", Port: 80, TargetPort: intstr.FromInt32(80), Protocol: corev1.ProtocolTCP,
			}},
		},
	}
}

// createServices creates prefix-00000 … with conc concurrent creators and
// returns the created objects (in index order) and the moment the last
// create returned.
func (b *bench) createServices(ctx context.Context, c client.Client, ns, prefix, class string, n, conc int) ([]*corev1.Service, time.Time, error) {
	out := make([]*corev1.Service, n)
	var (
		mu       sync.Mutex
		last     time.Time
		firstErr error
	)
	err := parallel(ctx, n, conc, func(ctx context.Context, i int) error {
		s := newService(ns, fmt.Sprintf("%s-%05d", prefix, i), class)
		err := retry(ctx, func() error { return c.Create(ctx, s) })
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("creating %s/%s: %w", ns, s.Name, err)
			}
			return firstErr
		}
		out[i] = s
		if now.After(last) {
			last = now
		}
		return nil
	})
	return out, last, err
}

// retry retries transient API errors a few times; the create/update must be
// idempotent for AlreadyExists to be an error (a fresh API server).
func retry(ctx context.Context, f func() error) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if err = f(); err == nil {
			return nil
		}
		if apierrors.IsAlreadyExists(err) || apierrors.IsInvalid(err) || apierrors.IsConflict(err) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 100 * time.Millisecond):
		}
	}
	return err
}

// parallel runs f(0..n-1) on conc goroutines and returns the first error
// (the others stop taking work after it).
func parallel(ctx context.Context, n, conc int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	errs := make(chan error, conc)
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(ctx, i); err != nil {
					errs <- err
					cancel()
					for range next {
					}
					return
				}
			}
		}()
	}
feed:
	for i := 0; i < n; i++ {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return ctx.Err()
	}
}

// tracker records, from a Service informer, the moment each Service of the
// bench namespace first showed an address.
type tracker struct {
	ns      string
	mu      sync.Mutex
	first   map[string]time.Time // by name
	counts  map[string]int       // by name prefix
	changed chan struct{}
}

func (b *bench) startTracker(ctx context.Context) error {
	b.trk = &tracker{ns: benchNamespace, first: map[string]time.Time{}, counts: map[string]int{}, changed: make(chan struct{}, 1)}
	b.stopInformer = make(chan struct{})
	f := informers.NewSharedInformerFactory(b.cs, 0)
	inf := f.Core().V1().Services().Informer()
	_ = inf.SetTransform(func(obj any) (any, error) {
		if m, ok := obj.(metav1.Object); ok {
			m.SetManagedFields(nil)
		}
		return obj, nil
	})
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    b.trk.observe,
		UpdateFunc: func(_, obj any) { b.trk.observe(obj) },
	}); err != nil {
		return err
	}
	f.Start(b.stopInformer)
	for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("informer for %v did not sync", typ)
		}
	}
	return nil
}

func (t *tracker) observe(obj any) {
	now := time.Now()
	s, ok := obj.(*corev1.Service)
	if !ok || s.Namespace != t.ns || len(s.Status.LoadBalancer.Ingress) == 0 {
		return
	}
	t.mu.Lock()
	if _, seen := t.first[s.Name]; !seen {
		t.first[s.Name] = now
		t.counts[prefixOf(s.Name)]++
	}
	t.mu.Unlock()
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

func prefixOf(name string) string {
	if i := strings.LastIndexByte(name, '-'); i >= 0 {
		return name[:i]
	}
	return name
}

func (t *tracker) count(prefix string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.counts[prefix]
}

// times returns the first-address moments of the Services with prefix.
func (t *tracker) times(prefix string) []time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []time.Time
	for name, at := range t.first {
		if prefixOf(name) == prefix {
			out = append(out, at)
		}
	}
	return out
}

// waitCount waits until n Services with prefix have an address. check is
// called on every wake-up and can abort the wait (a manager that died);
// stall bounds the time without any progress.
func (t *tracker) waitCount(ctx context.Context, prefix string, n int, stall time.Duration, check func() error, logf func(string, ...any)) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last, lastAt := -1, time.Now()
	reported, reportedAt := t.count(prefix), time.Now()
	for {
		got := t.count(prefix)
		if got >= n {
			return nil
		}
		if d := time.Since(reportedAt); d >= 5*time.Second {
			logf("  %d/%d %s-* Services have an address (%.0f/s over the last %.0fs)", got, n, prefix, float64(got-reported)/d.Seconds(), d.Seconds())
			reported, reportedAt = got, time.Now()
		}
		if got != last {
			last, lastAt = got, time.Now()
		} else if time.Since(lastAt) > stall {
			return fmt.Errorf("no progress for %s: %d of %d %s-* Services have an address", stall, got, n, prefix)
		}
		if check != nil {
			if err := check(); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d %s-* Services to have an address (%d have one): %w", n, prefix, got, ctx.Err())
		case <-t.changed:
		case <-tick.C:
		}
	}
}

var labelRE = regexp.MustCompile(`(\w+)="([^"]*)"`)

// apiRequests reads the API server's apiserver_request_total counters,
// summed by "VERB resource[/subresource]" (with the code when not 2xx).
func (b *bench) apiRequests(ctx context.Context) (map[string]float64, error) {
	raw, err := b.cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the API server's /metrics: %w", err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "apiserver_request_total{") {
			continue
		}
		end := strings.LastIndexByte(line, '}')
		if end < 0 {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(line[end+1:]), 64)
		if err != nil {
			continue
		}
		l := map[string]string{}
		for _, m := range labelRE.FindAllStringSubmatch(line[:end], -1) {
			l[m[1]] = m[2]
		}
		key := l["verb"] + " " + l["resource"]
		if l["subresource"] != "" {
			key += "/" + l["subresource"]
		}
		if c := l["code"]; c != "" && !strings.HasPrefix(c, "2") {
			key += " (" + c + ")"
		}
		out[key] += v
	}
	return out, nil
}

func diffCounters(before, after map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		if d := v - before[k]; d >= 1 {
			out[k] = d
		}
	}
	return out
}

// profileAPIServer, with -profile-dir, takes a CPU profile of the API server
// in the background; the returned func waits for it.
func (b *bench) profileAPIServer(ctx context.Context, name string) (wait func()) {
	if b.o.profileDir == "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		raw, err := b.cs.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").
			Param("seconds", strconv.Itoa(b.o.profileSeconds)).Timeout(time.Duration(b.o.profileSeconds+30) * time.Second).DoRaw(ctx)
		if err != nil {
			b.logf("profiling the API server: %v", err)
			return
		}
		path := filepath.Join(b.o.profileDir, "kube-apiserver-"+name+".pprof")
		err = os.MkdirAll(b.o.profileDir, 0o755)
		if err == nil {
			err = os.WriteFile(path, raw, 0o644)
		}
		if err != nil {
			b.logf("writing the API server profile: %v", err)
			return
		}
		b.logf("wrote the API server's CPU profile to %s", path)
	}()
	return func() { <-done }
}
