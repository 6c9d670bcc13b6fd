//go:build privileged

// Package scenarios_test runs the end-to-end scenarios (make e2e) in the
// lab `make demo` brings up: a real API server, FRR peered with two
// eiplb-manager replicas as config/samples/bgp.yaml asks (MD5, BFD,
// graceful restart), an eiplb-agent on each of three nodes, pods answering
// HTTP, kube-controller-manager's EndpointSlice controller writing the
// Services' slices from the lab's Pods, kube-proxy (nftables) on every
// node, and a client beyond the router. Every assertion is on the router's
// kernel FIB, on real requests from the client, or on what the API shows.
//
// The scenarios share one lab and run in order; each leaves the lab as it
// found it. One runs alone with -run 'TestScenarios/4'.
package scenarios_test

import (
	"bytes"
	"fmt"
	"maps"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/cli"
	"github.com/eiplb/eiplb/pkg/testenv"
	"github.com/eiplb/eiplb/test/e2e/cluster"
	"github.com/eiplb/eiplb/test/netlab"
)

var api *cluster.API

func TestMain(m *testing.M) { cluster.Main(m, "scenario", func(a *cluster.API) { api = a }) }

// grace is the manager's --agent-grace, as deployed.
const grace = 5 * time.Second

func via(nodes ...int) func(netlab.Route, bool) bool  { return cluster.Via(false, nodes...) }
func via6(nodes ...int) func(netlab.Route, bool) bool { return cluster.Via(true, nodes...) }

func TestScenarios(t *testing.T) {
	l := cluster.NewLab(t, api, cluster.LabOptions{KubeProxy: "nftables"})
	l.Up()
	ns := api.Namespace(t)

	// web (Cluster) and local (Local) have endpoints on every node; they
	// are the Services the other scenarios must not disturb.
	web := api.Service(t, ns, "web", false, corev1.IPv4Protocol)
	l.Endpoints(t, web, 1, 2, 3)
	webIP := api.IPs(t, web, 1)[0]
	local := api.Service(t, ns, "local", true, corev1.IPv4Protocol)
	l.Endpoints(t, local, 1, 2, 3)
	localIP := api.IPs(t, local, 1)[0]
	l.Rtr.WaitRoute(t, webIP, 15*time.Second, via(1, 2, 3))
	l.Rtr.WaitRoute(t, localIP, 15*time.Second, via(1, 2, 3))

	t.Run("1 an EIP routed over every node reaches backends on every node", func(t *testing.T) {
		if !strings.HasPrefix(webIP, "192.0.2.") {
			t.Errorf("EIP %s is not from the sample pool 192.0.2.0/24", webIP)
		}
		seen := answers(t, l, webIP, 80, 120)
		if len(seen) != 6 {
			t.Fatalf("pods that answered: %v, want all 6", seen)
		}
		for pod, srcs := range seen {
			for src := range srcs {
				// Local pods see the client; remote ones the node that
				// forwarded (masquerade), so replies go back the same way.
				if src != cluster.ClientIP && !strings.HasPrefix(src, "192.168.100.1") {
					t.Errorf("%s saw %s: neither the client nor a node", pod, src)
				}
			}
		}
	})

	t.Run("2 Local: next hops are the nodes with endpoints, weighted; client IP preserved", func(t *testing.T) {
		svc := api.Service(t, ns, "weighted", true, corev1.IPv4Protocol)
		// Two endpoints on node1, one on node2, none on node3.
		l.EndpointPods(t, svc, [2]int{1, 0}, [2]int{1, 1}, [2]int{2, 0})
		ip := api.IPs(t, svc, 1)[0]
		r := l.Rtr.WaitRoute(t, ip, 15*time.Second, via(1, 2))
		w := map[string]int{}
		for _, nh := range r.NextHops {
			w[nh.Gateway] = nh.Weight
		}
		// FRR turns the link-bandwidth community into weights out of 100.
		t.Logf("next-hop weights: %v", w)
		if d := w[cluster.NodeIP(1)] - 2*w[cluster.NodeIP(2)]; d < -2 || d > 2 {
			t.Errorf("weights %v, want node1 twice node2 (2 endpoints against 1)", w)
		}
		seen := answers(t, l, ip, 80, 60)
		for pod, srcs := range seen {
			for src := range srcs {
				if src != cluster.ClientIP {
					t.Errorf("%s saw %s, want the client's address %s", pod, src, cluster.ClientIP)
				}
			}
			if pod == "pod21" || strings.HasPrefix(pod, "pod3") {
				t.Errorf("%s answered but is not an endpoint", pod)
			}
		}
		if len(seen) != 3 {
			t.Errorf("pods that answered: %v, want pod10, pod11, pod20", seen)
		}
	})

	t.Run("3 node failure", func(t *testing.T) {
		// The client loop goes to the Local Service: each node forwards
		// only to its own pods, so a request fails only when the router
		// sends it to the dead node. (A Cluster Service's other nodes
		// keep forwarding to the dead node's pods until the endpoint
		// controller marks them not ready, 40 s later in Kubernetes.)
		t.Run("link cut: withdrawn within a second, failures only until then", func(t *testing.T) {
			nodeDies(t, l, localIP, via(1, 2), func() { l.LinkDown(3) })
			l.LinkUp(3)
			l.Rtr.WaitRoute(t, localIP, 10*time.Second, via(1, 2, 3))
		})

		t.Run("node1 dead (manager and agent killed, interfaces down): withdrawn within a second", func(t *testing.T) {
			nodeDies(t, l, localIP, via(2, 3), func() {
				// Interfaces first: a powered-off host sends no FIN.
				for _, dev := range l.Devices(1) {
					l.Exec(l.Nodes[0], "ip", "link", "set", dev, "down")
				}
				l.Kill(l.Managers[0])
				l.Kill(l.Agents[0])
			})
			for _, dev := range l.Devices(1) {
				l.Exec(l.Nodes[0], "ip", "link", "set", dev, "up")
			}
			l.LinkUp(1)
			l.StartAgent(1)
			l.StartManager(1)
			l.WaitSessions(2, 30*time.Second)
			l.Rtr.WaitRoute(t, localIP, 15*time.Second, via(1, 2, 3))
		})

		t.Run("agent killed for good: kept for the grace period, then withdrawn; no failed request", func(t *testing.T) {
			loop := l.Steady(localIP, 80)
			time.Sleep(200 * time.Millisecond)
			l.Kill(l.Agents[2])
			killed := time.Now()
			time.Sleep(grace - time.Second)
			if r, _, _ := l.Rtr.Route(localIP + "/32"); len(r.NextHops) != 3 {
				t.Fatalf("withdrawn within the grace period: %v", r)
			}
			l.Rtr.WaitRoute(t, localIP, 5*time.Second, via(1, 2))
			gone := time.Now()
			took := gone.Sub(killed)
			time.Sleep(300 * time.Millisecond)
			ok, failed := loop.Finish()
			t.Logf("withdrawn %v after the kill (grace %v); %d requests, %s", took.Round(time.Millisecond), grace, ok+len(failed), cluster.Summary(failed))
			if took < grace {
				t.Errorf("withdrawn before the grace period ended")
			}
			// The router's multipath hash is not resilient: taking one of
			// three next hops away also moves flows between the other two,
			// so a request in flight at that moment can reach a node that
			// never saw its connection, and is reset. That is the router's
			// doing at any withdrawal; only such requests are forgiven (the
			// route is read every few ms, a request takes a few).
			for _, f := range failed {
				if f.At.After(gone.Add(-100*time.Millisecond)) && f.At.Before(gone.Add(50*time.Millisecond)) {
					t.Logf("request started at %s, in flight when the next hops changed: %v", f.At.Format("15:04:05.000"), f.Err)
					continue
				}
				t.Errorf("request started at %s failed (next hops changed at %s): %v", f.At.Format("15:04:05.000"), gone.Format("15:04:05.000"), f.Err)
			}
			l.StartAgent(3)
			l.Rtr.WaitRoute(t, localIP, 10*time.Second, via(1, 2, 3))
		})
	})

	t.Run("4 manager replica killed during a steady loop: zero failed requests", func(t *testing.T) {
		loop := l.Steady(webIP, 80)
		for i := 1; i <= 2; i++ {
			time.Sleep(300 * time.Millisecond)
			l.Kill(l.Managers[i-1])
			time.Sleep(time.Second)
			l.StartManager(i)
			l.WaitSessions(2, 30*time.Second)
		}
		time.Sleep(300 * time.Millisecond)
		ok, failed := loop.Finish()
		t.Logf("both replicas killed and restarted in turn; %d requests, %s", ok+len(failed), cluster.Summary(failed))
		if len(failed) != 0 || ok < 100 {
			t.Errorf("%d requests, %s", ok+len(failed), cluster.Summary(failed))
		}
		l.Rtr.WaitRoute(t, webIP, 10*time.Second, via(1, 2, 3))
	})

	t.Run("5 agent restarted during a steady loop: zero failed requests", func(t *testing.T) {
		loop := l.Steady(webIP, 80)
		stopWatch := routeStays(t, l, webIP, via(1, 2, 3))
		time.Sleep(300 * time.Millisecond)
		l.Kill(l.Agents[1])
		l.StartAgent(2)
		time.Sleep(2 * time.Second)
		stopWatch()
		ok, failed := loop.Finish()
		t.Logf("%d requests, %s", ok+len(failed), cluster.Summary(failed))
		if len(failed) != 0 || ok < 50 {
			t.Errorf("%d requests, %s", ok+len(failed), cluster.Summary(failed))
		}
	})

	t.Run("6 pool exhausted, then enlarged", func(t *testing.T) {
		pool := &v1alpha1.EIPPool{ObjectMeta: metav1.ObjectMeta{Name: "tiny"},
			Spec: v1alpha1.EIPPoolSpec{Addresses: []string{"198.18.0.1/32"}, AutoAssign: new(bool)}}
		api.Create(t, pool)
		a := annotated(t, ns, "tiny-a", map[string]string{v1alpha1.AnnotationPool: "tiny"})
		l.Endpoints(t, a, 1, 2, 3)
		if ip := api.IPs(t, a, 1)[0]; ip != "198.18.0.1" {
			t.Fatalf("first Service of the pool got %s", ip)
		}
		b := annotated(t, ns, "tiny-b", map[string]string{v1alpha1.AnnotationPool: "tiny"})
		l.Endpoints(t, b, 1, 2, 3)
		cond := waitCondition(t, b, v1alpha1.ReasonPoolExhausted)
		t.Logf("condition: %s: %s", cond.Reason, cond.Message)
		if !strings.Contains(cond.Message, "tiny") {
			t.Errorf("condition message %q does not name the pool", cond.Message)
		}
		testenv.Must(t, api.Client.Get(t.Context(), client.ObjectKeyFromObject(pool), pool))
		pool.Spec.Addresses = []string{"198.18.0.1-198.18.0.2"}
		testenv.Must(t, api.Client.Update(t.Context(), pool))
		ip := api.IPs(t, b, 1)[0]
		if ip != "198.18.0.2" {
			t.Fatalf("after the pool grew the Service got %s, want 198.18.0.2", ip)
		}
		l.Rtr.WaitRoute(t, ip, 15*time.Second, via(1, 2, 3))
		if _, err := l.Get(ip, 80); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("7 two Services share an IP on different ports; a clashing third gets a condition", func(t *testing.T) {
		share := map[string]string{v1alpha1.AnnotationSharingKey: "shop"}
		s1 := annotated(t, ns, "shop-http", share)
		s2 := annotatedPort(t, ns, "shop-alt", share, 8081)
		l.Endpoints(t, s1, 1, 2, 3)
		l.Endpoints(t, s2, 1, 2, 3)
		ip1, ip2 := api.IPs(t, s1, 1)[0], api.IPs(t, s2, 1)[0]
		if ip1 != ip2 {
			t.Fatalf("shop-http got %s, shop-alt %s: not shared", ip1, ip2)
		}
		s3 := annotated(t, ns, "shop-clash", share)
		cond := waitCondition(t, s3, v1alpha1.ReasonSharingConflict)
		t.Logf("condition: %s: %s", cond.Reason, cond.Message)
		if !strings.Contains(cond.Message, "80") {
			t.Errorf("condition message %q does not name the port", cond.Message)
		}
		l.Rtr.WaitRoute(t, ip1, 15*time.Second, via(1, 2, 3))
		for _, port := range []int{80, 8081} {
			if out, err := l.Get(ip1, port); err != nil {
				t.Errorf("%s:%d: %v", ip1, port, err)
			} else {
				t.Logf("%s:%d answered %q", ip1, port, out)
			}
		}
	})

	t.Run("8 dual-stack Service routed and reachable over IPv4 and IPv6", func(t *testing.T) {
		svc := api.Service(t, ns, "dual", false, corev1.IPv4Protocol, corev1.IPv6Protocol)
		l.Endpoints(t, svc, 1, 2, 3)
		ips := api.IPs(t, svc, 2)
		v4, v6 := ips[0], ips[1]
		if !strings.HasPrefix(v6, "2001:db8:100::") {
			t.Errorf("IPv6 EIP %s is not from the sample pool", v6)
		}
		l.Rtr.WaitRoute(t, v4, 15*time.Second, via(1, 2, 3))
		l.Rtr.WaitRoute(t, v6, 15*time.Second, via6(1, 2, 3))
		seen := answers(t, l, v6, 80, 90)
		if len(seen) != 6 {
			t.Errorf("pods that answered over IPv6: %v, want all 6", seen)
		}
		// A request reaches a pod of the node the router chose (one in
		// three) with the client's address, any other masqueraded.
		sawClient := false
		for _, srcs := range seen {
			sawClient = sawClient || srcs[cluster.ClientIP6]
		}
		if !sawClient {
			t.Errorf("no pod saw the client's IPv6 address: %v", seen)
		}
		if len(answers(t, l, v4, 80, 30)) < 2 {
			t.Errorf("IPv4 side of the dual-stack Service answers from fewer than 2 pods")
		}
	})

	t.Run("9 bad inputs are rejected or reported, nothing else disturbed", func(t *testing.T) {
		stopWatch := routeStays(t, l, webIP, via(1, 2, 3))
		loop := l.Steady(webIP, 80)

		err := api.Client.Create(t.Context(), &v1alpha1.EIPPool{ObjectMeta: metav1.ObjectMeta{Name: "bad"},
			Spec: v1alpha1.EIPPoolSpec{Addresses: []string{"10.0.0.300/24"}}})
		t.Logf("invalid pool: %v", err)
		if err == nil || !strings.Contains(err.Error(), "10.0.0.300/24") {
			t.Errorf("invalid pool accepted or error unclear: %v", err)
		}
		err = api.Client.Create(t.Context(), &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "bad-asn"},
			Spec: v1alpha1.BGPPeerSpec{PeerAddress: "192.168.100.2", PeerASN: 4294967296, LocalASN: 65001}})
		t.Logf("ASN out of range: %v", err)
		if err == nil || !strings.Contains(err.Error(), "peerASN") {
			t.Errorf("peer with ASN 2^32 accepted or error unclear: %v", err)
		}
		garbage := annotated(t, ns, "garbage", map[string]string{v1alpha1.AnnotationIP: "not-an-ip"})
		cond := waitCondition(t, garbage, v1alpha1.ReasonInvalidAnnotation)
		t.Logf("garbage annotation: %s: %s", cond.Reason, cond.Message)
		if !strings.Contains(cond.Message, "not-an-ip") {
			t.Errorf("condition message %q does not quote the bad value", cond.Message)
		}
		peer := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "no-secret"},
			Spec: v1alpha1.BGPPeerSpec{PeerAddress: "192.168.100.2", PeerASN: 65000, LocalASN: 65001,
				PasswordSecretRef: &v1alpha1.SecretKeyRef{Name: "missing", Key: "password"}}}
		api.Create(t, peer)
		ev := waitEvent(t, peer, "InvalidPeer")
		t.Logf("peer without its Secret: Event %s: %s", ev.Reason, ev.Note)
		if !strings.Contains(ev.Note, "missing") {
			t.Errorf("Event %q does not name the Secret", ev.Note)
		}

		time.Sleep(time.Second)
		stopWatch()
		ok, failed := loop.Finish()
		if len(failed) != 0 {
			t.Errorf("requests to web failed meanwhile: %s", cluster.Summary(failed))
		}
		t.Logf("%d requests to web meanwhile, none failed", ok)
		if got := api.IPs(t, web, 1)[0]; got != webIP {
			t.Errorf("web's address changed from %s to %s", webIP, got)
		}
		if n, err := l.Sessions(); err != nil || n != 2 {
			t.Errorf("router sessions: %d (%v), want 2", n, err)
		}
	})

	t.Run("10 every manager restarted with graceful restart: routes stay at the router", func(t *testing.T) {
		loop := l.Steady(webIP, 80)
		stopWatch := routeStays(t, l, webIP, via(1, 2, 3))
		time.Sleep(200 * time.Millisecond)
		var wg sync.WaitGroup
		for _, m := range l.Managers[:2] {
			wg.Add(1)
			go func() { defer wg.Done(); m.Signal(syscall.SIGKILL); m.Wait(10 * time.Second) }()
		}
		wg.Wait()
		time.Sleep(2 * time.Second) // both gone: only graceful restart keeps the routes
		l.StartManager(1)
		l.StartManager(2)
		l.WaitSessions(2, 30*time.Second)
		testenv.Eventually(t, 15*time.Second, func() string {
			out, err := l.FRR.Vtysh("show bgp ipv4 unicast " + webIP + " json")
			if err != nil || !strings.Contains(out, `"paths"`) || strings.Contains(out, `"stale"`) {
				return "FRR paths: " + out
			}
			return ""
		})
		stopWatch()
		ok, failed := loop.Finish()
		t.Logf("%d requests, %s", ok+len(failed), cluster.Summary(failed))
		if len(failed) != 0 {
			t.Errorf("requests failed: %s", cluster.Summary(failed))
		}
	})

	t.Run("11 security: least privilege, no secret in logs, only the documented ports", func(t *testing.T) {
		security(t, l, web)
	})

	t.Run("12 kubectl eiplb against the lab", func(t *testing.T) {
		var b bytes.Buffer
		testenv.Must(t, cli.Run(t.Context(), api.Client, &b, []string{"status"}, cli.Options{}))
		out := b.String()
		t.Logf("kubectl eiplb status:\n%s", out)
		for _, want := range []string{"tor1", "node1", "node2", "Established", ns + "/web", webIP, "node3:2", "Announced by"} {
			if !strings.Contains(out, want) {
				t.Errorf("status lacks %q", want)
			}
		}
		// Each session reports the paths it sent: 2 Services × 3 nodes.
		testenv.Eventually(t, 5*time.Second, func() string {
			peers, err := cli.Peers(t.Context(), api.Client)
			if err != nil {
				return err.Error()
			}
			for _, p := range peers {
				for _, s := range p.Sessions {
					if s.PrefixesSent < 6 {
						return fmt.Sprintf("%s: %+v", p.Name, p.Sessions)
					}
				}
			}
			return ""
		})
		// Every manager reports every node's agent up, with nothing left
		// to program; the Service's next hops have each programmed it.
		testenv.Eventually(t, 10*time.Second, func() string {
			nodes, err := cli.Nodes(t.Context(), api.Client)
			if err != nil {
				return err.Error()
			}
			if len(nodes) != 3 {
				return fmt.Sprintf("nodes %+v", nodes)
			}
			for _, n := range nodes {
				if len(n.Agents) != 2 {
					return fmt.Sprintf("%s: %d manager reports, want 2: %+v", n.Name, len(n.Agents), n.Agents)
				}
				for _, a := range n.Agents {
					if a.Phase != v1alpha1.AgentPhaseUp || a.Unprogrammed != 0 || a.Programmed < 2 {
						return fmt.Sprintf("%s: %+v", n.Name, a)
					}
				}
			}
			return ""
		})
		svcs, err := cli.Services(t.Context(), api.Client, cli.Options{})
		testenv.Must(t, err)
		for _, sv := range svcs {
			if sv.Namespace+"/"+sv.Name != ns+"/web" {
				continue
			}
			want := map[string]string{cluster.NodeName(1): "yes", cluster.NodeName(2): "yes", cluster.NodeName(3): "yes"}
			if !maps.Equal(sv.Programmed, want) {
				t.Errorf("%s/web programmed %v, want %v", ns, sv.Programmed, want)
			}
		}
		b.Reset()
		testenv.Must(t, cli.Run(t.Context(), api.Client, &b, []string{"nodes"}, cli.Options{}))
		t.Logf("kubectl eiplb nodes:\n%s", b.String())
		b.Reset()
		testenv.Must(t, cli.Run(t.Context(), api.Client, &b, []string{"explain", "svc", ns + "/web"}, cli.Options{}))
		t.Logf("kubectl eiplb explain svc %s/web:\n%s", ns, b.String())
		if !strings.Contains(b.String(), ": announced via node1, node2, node3") || !strings.Contains(b.String(), "from pool default") {
			t.Errorf("explain of an announced Service:\n%s", b.String())
		}
		b.Reset()
		waitCondition(t, annotated(t, ns, "garbage2", map[string]string{v1alpha1.AnnotationIP: "not-an-ip"}), v1alpha1.ReasonInvalidAnnotation)
		testenv.Must(t, cli.Run(t.Context(), api.Client, &b, []string{"explain", "svc", ns + "/garbage2"}, cli.Options{}))
		if !strings.Contains(b.String(), "no address: InvalidAnnotation") {
			t.Errorf("explain of the garbage Service:\n%s", b.String())
		}
	})

	t.Run("13 loadBalancerSourceRanges: only the allowed clients reach the EIP", func(t *testing.T) {
		sourceRanges(t, l, ns, webIP)
	})

	t.Run("14 in-cluster clients of a Local Service on a node without its endpoints", func(t *testing.T) {
		inClusterLocal(t, l, ns)
	})

	t.Run("15 kube-proxy alongside: EIPs left alone, ClusterIPs work, restarts disturb nothing", func(t *testing.T) {
		kubeProxy(t, l, web, local, webIP, localIP)
	})

	t.Run("16 rolling update of every pod: zero failed requests", func(t *testing.T) {
		t.Run("Cluster", func(t *testing.T) { rollingUpdate(t, l, ns, false) })
		t.Run("Local", func(t *testing.T) { rollingUpdate(t, l, ns, true) })
	})
}

// answers sends n requests to ip:port and returns, by pod, every client
// address it saw.
func answers(t *testing.T, l *cluster.Lab, ip string, port, n int) map[string]map[string]bool {
	t.Helper()
	seen := map[string]map[string]bool{}
	for range n {
		out, err := l.Get(ip, port)
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(out)
		if len(f) != 2 {
			t.Fatalf("answer %q", out)
		}
		if seen[f[0]] == nil {
			seen[f[0]] = map[string]bool{}
		}
		seen[f[0]][f[1]] = true
	}
	return seen
}

// nodeDies runs kill under a steady request loop to ip and checks that the
// router's route becomes rest within a second and that requests failed
// only between the kill and the withdrawal (50 ms of slack after it).
func nodeDies(t *testing.T, l *cluster.Lab, ip string, rest func(netlab.Route, bool) bool, kill func()) {
	t.Helper()
	loop := l.Steady(ip, 80)
	time.Sleep(300 * time.Millisecond)
	cut := time.Now()
	kill()
	l.Rtr.WaitRoute(t, ip, 5*time.Second, rest)
	gone := time.Now()
	time.Sleep(500 * time.Millisecond)
	ok, failed := loop.Finish()
	t.Logf("withdrawn %v after the node died; %d requests, %s", gone.Sub(cut).Round(time.Millisecond), ok+len(failed), cluster.Summary(failed))
	if gone.Sub(cut) > time.Second {
		t.Errorf("withdrawn after %v, want under 1 s", gone.Sub(cut))
	}
	for _, f := range failed {
		if f.At.Before(cut.Add(-20*time.Millisecond)) || f.At.After(gone.Add(50*time.Millisecond)) {
			t.Errorf("request started at %s failed outside the window %s–%s: %v",
				f.At.Format("15:04:05.000"), cut.Format("15:04:05.000"), gone.Format("15:04:05.000"), f.Err)
		}
	}
}

// routeStays samples the router's FIB every 5 ms until the returned func is
// called, and fails the test if the route ever differs from ok.
func routeStays(t *testing.T, l *cluster.Lab, ip string, ok func(netlab.Route, bool) bool) (stop func()) {
	done, stopped := make(chan struct{}), make(chan struct{})
	var bad string
	go func() {
		defer close(stopped)
		for {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
			r, found, err := l.Rtr.Route(ip + "/32")
			if err == nil && !ok(r, found) && bad == "" {
				bad = fmt.Sprintf("%s: %v (found %v)", time.Now().Format("15:04:05.000"), r, found)
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
		if bad != "" {
			t.Errorf("route to %s changed: %s", ip, bad)
		}
	}
}

// annotated creates a LoadBalancer Service with annotations.
func annotated(t *testing.T, ns, name string, ann map[string]string) *corev1.Service {
	return annotatedPort(t, ns, name, ann, 80)
}

func annotatedPort(t *testing.T, ns, name string, ann map[string]string, port int32) *corev1.Service {
	t.Helper()
	s := testenv.LoadBalancer(ns, name)
	s.Annotations = ann
	s.Spec.Ports[0].Port = port
	api.Create(t, s)
	return s
}

// waitCondition waits until the Service's IPAllocated condition has reason.
func waitCondition(t *testing.T, s *corev1.Service, reason string) metav1.Condition {
	t.Helper()
	var c *metav1.Condition
	testenv.Eventually(t, 15*time.Second, func() string {
		if err := api.Client.Get(t.Context(), client.ObjectKeyFromObject(s), s); err != nil {
			return err.Error()
		}
		c = apimeta.FindStatusCondition(s.Status.Conditions, v1alpha1.ConditionIPAllocated)
		if c == nil || c.Reason != reason {
			return fmt.Sprintf("%s: condition %+v, want reason %s", s.Name, c, reason)
		}
		return ""
	})
	if len(s.Status.LoadBalancer.Ingress) != 0 {
		t.Errorf("%s has addresses %v despite %s", s.Name, s.Status.LoadBalancer.Ingress, reason)
	}
	return *c
}

// waitEvent waits for an Event with reason about obj.
func waitEvent(t *testing.T, obj client.Object, reason string) eventsv1.Event {
	t.Helper()
	var found eventsv1.Event
	testenv.Eventually(t, 15*time.Second, func() string {
		var list eventsv1.EventList
		if err := api.Client.List(t.Context(), &list); err != nil {
			return err.Error()
		}
		for _, e := range list.Items {
			if e.Regarding.Name == obj.GetName() && e.Reason == reason {
				found = e
				return ""
			}
		}
		return fmt.Sprintf("no %s Event about %s among %d", reason, obj.GetName(), len(list.Items))
	})
	return found
}
