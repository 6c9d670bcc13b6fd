package manager_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/ipam"
	"github.com/eiplb/eiplb/pkg/manager"
	"github.com/eiplb/eiplb/pkg/testenv"
)

// TestIPAMLeaderSurvivesAPIOutage cuts an elected manager off the API
// server for 2, 10 and 30 s (-short: 2 and 10). The process must keep
// running through each outage (it used to exit with "leader election lost"
// once the renew deadline passed), lose the Lease, take it back when the
// API server returns, and allocate a new Service; the addresses of the
// Services allocated before never change. Then a second replica joins:
// with the leader cut off it takes over, and the old leader, back, stays a
// standby.
func TestIPAMLeaderSurvivesAPIOutage(t *testing.T) {
	cuts := []time.Duration{2 * time.Second, 10 * time.Second, 30 * time.Second}
	if testing.Short() {
		cuts = cuts[:2]
	}
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	k8s, ctx := env.Client, context.Background()

	proxy := newAPIProxy(t, env.Config.Host)
	cfg := rest.CopyConfig(env.Config)
	cfg.Host = "https://" + proxy.addr()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "outage"}}
	testenv.Must(t, k8s.Create(ctx, ns))
	const lease = "eiplb-ipam-outage"
	mctx, stop := context.WithCancel(ctx)
	mgr, err := manager.New(mctx, cfg, manager.Options{
		LeaderElection: true, LeaderElectionNamespace: ns.Name, LeaderElectionID: lease,
		MetricsAddr: "0",
	})
	testenv.Must(t, err)
	exited := make(chan error, 1)
	go func() { exited <- mgr.Start(mctx) }()
	t.Cleanup(func() {
		stop()
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			t.Error("manager did not stop")
		}
	})
	leading := func() float64 {
		return testenv.Gauge(t, "leader_election_master_status", map[string]string{"name": lease})
	}

	pool := &v1alpha1.EIPPool{ObjectMeta: metav1.ObjectMeta{Name: "outage"}, Spec: v1alpha1.EIPPoolSpec{Addresses: []string{"198.51.100.0/26"}}}
	testenv.Must(t, k8s.Create(ctx, pool))
	ips := map[string]string{} // Service → address, never to change
	allocate := func(name string, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		svc := testenv.LoadBalancer(ns.Name, name)
		testenv.Must(t, k8s.Create(ctx, svc))
		testenv.Eventually(t, within, func() string {
			select {
			case err := <-exited:
				t.Fatalf("the manager exited: %v", err)
			default:
			}
			testenv.Must(t, k8s.Get(ctx, client.ObjectKeyFromObject(svc), svc))
			if len(svc.Status.LoadBalancer.Ingress) != 1 {
				return name + " has no address"
			}
			return ""
		})
		ips[name] = svc.Status.LoadBalancer.Ingress[0].IP
		return time.Since(start)
	}
	unchanged := func() {
		t.Helper()
		for name, ip := range ips {
			svc := &corev1.Service{}
			testenv.Must(t, k8s.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: name}, svc))
			if got := svc.Status.LoadBalancer.Ingress; len(got) != 1 || got[0].IP != ip {
				t.Fatalf("%s changed address: %v, had %s", name, got, ip)
			}
			rec := &v1alpha1.EIPAllocation{}
			testenv.Must(t, k8s.Get(ctx, client.ObjectKey{Name: ipam.AllocationName(netipMust(t, ip))}, rec))
			if len(rec.Spec.Services) != 1 || rec.Spec.Services[0].UID != string(svc.UID) {
				t.Fatalf("record of %s (%s) holds %+v", ip, name, rec.Spec.Services)
			}
		}
	}
	allocate("before", 30*time.Second)
	testenv.Eventually(t, 5*time.Second, func() string {
		if leading() != 1 {
			return "not leading"
		}
		return ""
	})

	for i, cut := range cuts {
		proxy.cut()
		start := time.Now()
		lost := time.Duration(0)
		for time.Since(start) < cut {
			select {
			case err := <-exited:
				t.Fatalf("the manager exited %v into a %v API outage: %v", time.Since(start).Round(time.Millisecond), cut, err)
			case <-time.After(20 * time.Millisecond):
			}
			if lost == 0 && leading() == 0 {
				lost = time.Since(start)
			}
		}
		// The leader must have stopped allocating before the lease
		// (2 s) could pass to another replica.
		if cut >= 10*time.Second && (lost == 0 || lost > 2*time.Second) {
			t.Fatalf("a %v outage: the Lease was given up after %v, want within the 2 s lease (0: never)", cut, lost)
		}
		proxy.restore()
		back := time.Now()
		took := allocate(fmt.Sprintf("after-%d", i), 15*time.Second)
		retaken := time.Duration(0)
		testenv.Eventually(t, 5*time.Second, func() string {
			if leading() != 1 {
				return "not leading again"
			}
			retaken = time.Since(back)
			return ""
		})
		t.Logf("API cut %v: Lease given up %v into the cut (0: kept); after the API returned: a new Service had its address in %v, the Lease was seen retaken after %v",
			cut, lost.Round(time.Millisecond), took.Round(time.Millisecond), retaken.Round(time.Millisecond))
		unchanged()
	}

	// A second replica: while the leader is cut off it takes the Lease
	// and allocates; when the old leader is back, that one stays a
	// standby (the Lease is not taken back from a live holder).
	proxyB := newAPIProxy(t, env.Config.Host)
	cfgB := rest.CopyConfig(env.Config)
	cfgB.Host = "https://" + proxyB.addr()
	mgrB, err := manager.New(mctx, cfgB, manager.Options{
		LeaderElection: true, LeaderElectionNamespace: ns.Name, LeaderElectionID: lease,
		MetricsAddr: "0", SeveralPerProcess: true,
	})
	testenv.Must(t, err)
	exitedB := make(chan error, 1)
	go func() { exitedB <- mgrB.Start(mctx) }()
	t.Cleanup(func() {
		stop()
		select {
		case <-exitedB:
		case <-time.After(30 * time.Second):
			t.Error("second manager did not stop")
		}
	})
	holder := func() string {
		l := &coordinationv1.Lease{}
		testenv.Must(t, k8s.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: lease}, l))
		return ptr.Deref(l.Spec.HolderIdentity, "")
	}
	first := holder()
	proxy.cut()
	allocate("failover", 15*time.Second)
	second := holder()
	if second == first || second == "" {
		t.Fatalf("a Service was allocated while the leader %q was cut off, but the Lease is held by %q", first, second)
	}
	proxy.restore()
	// Watch the Lease for twice the lease duration: the old leader,
	// back, must not take it.
	for start := time.Now(); time.Since(start) < 4*time.Second; {
		if h := holder(); h != second {
			t.Fatalf("the Lease moved from %q to %q after the old leader came back", second, h)
		}
		select {
		case err := <-exited:
			t.Fatalf("the old leader exited: %v", err)
		case err := <-exitedB:
			t.Fatalf("the new leader exited: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	allocate("after-failover", 10*time.Second)
	unchanged()
	seen := map[string]string{}
	for name, ip := range ips {
		if other, dup := seen[ip]; dup {
			t.Fatalf("%s and %s share %s", name, other, ip)
		}
		seen[ip] = name
	}
}

func netipMust(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	testenv.Must(t, err)
	return a
}

// apiProxy forwards a loopback port to the API server; cut makes the API
// server unreachable (open connections closed, new ones closed at once)
// until restore.
type apiProxy struct {
	l        net.Listener
	upstream string
	mu       sync.Mutex
	down     bool
	open     map[net.Conn]struct{}
}

func newAPIProxy(t *testing.T, server string) *apiProxy {
	t.Helper()
	u, err := url.Parse(server)
	if err != nil || u.Host == "" {
		u, err = url.Parse("https://" + server)
	}
	testenv.Must(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	testenv.Must(t, err)
	p := &apiProxy{l: l, upstream: u.Host, open: map[net.Conn]struct{}{}}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
			if err != nil {
				_ = c.Close()
				continue
			}
			if !p.track(c, up) {
				_ = c.Close()
				_ = up.Close()
				continue
			}
			wg.Go(func() { _, _ = io.Copy(up, c); _ = up.Close() })
			wg.Go(func() { _, _ = io.Copy(c, up); _ = c.Close() })
		}
	})
	t.Cleanup(func() { _ = l.Close(); p.cut(); wg.Wait() })
	return p
}

func (p *apiProxy) addr() string { return p.l.Addr().String() }

func (p *apiProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.open {
		_ = c.Close()
	}
	clear(p.open)
}

func (p *apiProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

func (p *apiProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return false
	}
	for _, c := range cs {
		p.open[c] = struct{}{}
	}
	return true
}
