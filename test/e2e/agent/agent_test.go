//go:build privileged

package agent_test

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/testenv"
	"github.com/eiplb/eiplb/test/e2e/cluster"
)

// TestAgent walks one lab through the agent's life: no next hop before the
// rules are in place; traffic through the EIP for both policies; an agent
// restart under load; an agent gone for good; a node cut off.
func TestAgent(t *testing.T) {
	tp := newTopo(t)
	tp.lab.StartFRR(tp.rtr, frrConfig())
	api.Basics(t)
	tp.startManagers()
	ns := api.Namespace(t)

	web := api.Service(t, ns, "web", false, corev1.IPv4Protocol)
	endpoints(t, web, 1, 2, 3)
	ip := api.IPs(t, web, 1)[0]

	t.Run("no next hop before the agent programmed the Service", func(t *testing.T) {
		time.Sleep(1500 * time.Millisecond)
		if r, found, err := tp.rtr.Route(ip + "/32"); err != nil || found {
			t.Fatalf("route before any agent ran: %v (err %v)", r, err)
		}
		for i := 1; i <= 3; i++ {
			tp.startAgent(i)
		}
		tp.rtr.WaitRoute(t, ip, 15*time.Second, via(1, 2, 3))
	})

	t.Run("cluster: every pod answers; remote pods see the node, local ones the client", func(t *testing.T) {
		seen := map[string]string{}
		for range 80 {
			out, err := tp.get(ip)
			if err != nil {
				t.Fatal(err)
			}
			f := strings.Fields(out)
			if len(f) != 2 {
				t.Fatalf("answer %q", out)
			}
			seen[f[0]] = f[1]
		}
		if len(seen) != 3*podsPerNode {
			t.Fatalf("pods that answered: %v, want all %d", seen, 3*podsPerNode)
		}
		for pod, src := range seen {
			if src != clientIP && !strings.HasPrefix(src, "192.168.100.1") {
				t.Errorf("%s saw %s: neither the client nor a node (masquerade)", pod, src)
			}
		}
	})

	t.Run("local: only nodes with endpoints, client address preserved", func(t *testing.T) {
		local := api.Service(t, ns, "local", true, corev1.IPv4Protocol)
		endpoints(t, local, 1, 2)
		lip := api.IPs(t, local, 1)[0]
		tp.rtr.WaitRoute(t, lip, 15*time.Second, via(1, 2))
		pods := map[string]bool{}
		for range 40 {
			out, err := tp.get(lip)
			if err != nil {
				t.Fatal(err)
			}
			f := strings.Fields(out)
			if len(f) != 2 || f[1] != clientIP {
				t.Fatalf("answer %q: want the client's address %s", out, clientIP)
			}
			if strings.HasPrefix(f[0], "pod3") {
				t.Fatalf("node3 has no endpoint of a Local Service, yet %s answered", f[0])
			}
			pods[f[0]] = true
		}
		if len(pods) < 2 {
			t.Errorf("only %v answered", pods)
		}
	})

	t.Run("unserved port on the EIP is refused, not looped", func(t *testing.T) {
		start := time.Now()
		c, err := tp.client.Dial(t.Context(), "tcp", ip+":81")
		if err == nil {
			c.Close()
			t.Fatal("connected to an unserved port")
		}
		if !strings.Contains(err.Error(), "refused") || time.Since(start) > time.Second {
			t.Fatalf("want connection refused at once, got %v after %v", err, time.Since(start))
		}
	})

	t.Run("agent restart during a steady loop: zero failed requests, nothing withdrawn", func(t *testing.T) {
		l := tp.steady(ip)
		time.Sleep(300 * time.Millisecond)
		tp.agent[1].Signal(syscall.SIGKILL)
		tp.agent[1].Wait(5 * time.Second)
		tp.startAgent(2)
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) {
			if r, found, _ := tp.rtr.Route(ip + "/32"); !found || len(r.NextHops) != 3 {
				t.Errorf("route changed during the restart: %v", r)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		ok, failed, errs := l.finish()
		t.Logf("%d requests, %d failed", ok+failed, failed)
		if failed != 0 || ok < 50 {
			t.Fatalf("%d of %d requests failed: %v", failed, ok+failed, errs)
		}
	})

	t.Run("agent gone for good: kept for the grace period, then withdrawn; no failed request", func(t *testing.T) {
		l := tp.steady(ip)
		time.Sleep(200 * time.Millisecond)
		tp.agent[2].Signal(syscall.SIGKILL)
		killed := time.Now()
		tp.agent[2].Wait(5 * time.Second)
		time.Sleep(grace / 2)
		if r, _, _ := tp.rtr.Route(ip + "/32"); len(r.NextHops) != 3 {
			t.Fatalf("withdrawn within the grace period: %v", r)
		}
		tp.rtr.WaitRoute(t, ip, grace+5*time.Second, via(1, 2))
		took := time.Since(killed)
		ok, failed, errs := l.finish()
		t.Logf("withdrawn %v after the kill (grace %v); %d requests, %d failed", took.Round(time.Millisecond), grace, ok+failed, failed)
		if took < grace {
			t.Errorf("withdrawn before the grace period ended")
		}
		if failed != 0 {
			t.Fatalf("%d of %d requests failed: %v", failed, ok+failed, errs)
		}
		tp.startAgent(3)
		tp.rtr.WaitRoute(t, ip, 10*time.Second, via(1, 2, 3))
	})

	t.Run("node cut off: withdrawn within a second", func(t *testing.T) {
		tp.linkDown(t, 3)
		cut := time.Now()
		tp.rtr.WaitRoute(t, ip, 5*time.Second, via(1, 2))
		took := time.Since(cut)
		t.Logf("node3 withdrawn %v after its link went down", took.Round(time.Millisecond))
		if took > time.Second {
			t.Errorf("took %v, want under 1 s", took)
		}
		tp.linkUp(t, 3)
		tp.rtr.WaitRoute(t, ip, 10*time.Second, via(1, 2, 3))
		for range 30 {
			if _, err := tp.get(ip); err != nil {
				t.Fatalf("after the link came back: %v", err)
			}
		}
	})

	t.Run("nft flush ruleset on a node: the agent puts its rules back at once", func(t *testing.T) {
		before, err := tp.nodes[0].Exec(t.Context(), "nft", "list", "table", "inet", "eiplb")
		if err != nil {
			t.Fatal(err)
		}
		mustExec(t, tp.nodes[0], "nft", "flush", "ruleset")
		flushed := time.Now()
		for {
			out, err := tp.nodes[0].Exec(t.Context(), "nft", "list", "map", "inet", "eiplb", "count4")
			if err == nil && strings.Contains(out, ip+" . tcp . 80") {
				break
			}
			if time.Since(flushed) > 5*time.Second {
				t.Fatalf("rules not back 5 s after a flush: %v %s", err, out)
			}
			time.Sleep(10 * time.Millisecond)
		}
		took := time.Since(flushed)
		t.Logf("rules back %v after nft flush ruleset", took.Round(time.Millisecond))
		if took > time.Second {
			t.Errorf("took %v, want under 1 s", took)
		}
		time.Sleep(200 * time.Millisecond)
		after, err := tp.nodes[0].Exec(t.Context(), "nft", "list", "table", "inet", "eiplb")
		if err != nil || after != before {
			t.Fatalf("table after the repair differs (%v):\n%s\nbefore the flush:\n%s", err, after, before)
		}
		for range 30 {
			if _, err := tp.get(ip); err != nil {
				t.Fatalf("after the repair: %v", err)
			}
		}
	})

	t.Run("drain: SIGTERM on a cordoned node exits once both managers withdrew it", func(t *testing.T) {
		n := &corev1.Node{}
		testenv.Must(t, api.Client.Get(t.Context(), client.ObjectKey{Name: "node2"}, n))
		n.Spec.Unschedulable = true
		testenv.Must(t, api.Client.Update(t.Context(), n))
		tp.agent[1].Signal(syscall.SIGTERM)
		if !tp.agent[1].Wait(15 * time.Second) {
			t.Fatal("draining agent did not exit")
		}
		log, err := os.ReadFile(tp.agent[1].Log)
		testenv.Must(t, err)
		if !strings.Contains(string(log), "Every manager withdrew the node") {
			t.Fatalf("no acknowledged drain in the agent's log:\n%s", log)
		}
		tp.rtr.WaitRoute(t, ip, 5*time.Second, via(1, 3))
	})
}

func frrConfig() string { return cluster.FRRConfig([]string{nodeIP(1), nodeIP(2)}) }

// TestManagerRestartWithAgents: with graceful restart, a manager killed and
// started again keeps its routes at the router throughout, although after
// the restart it knows no agent yet: it opens its BGP session only once
// every agent has answered, so the End-of-RIB never comes before the paths.
func TestManagerRestartWithAgents(t *testing.T) {
	tp := newTopo(t)
	frr := tp.lab.StartFRR(tp.rtr, cluster.FRRConfig([]string{nodeIP(1)}))
	api.Basics(t, func(p *v1alpha1.BGPPeer) {
		p.Spec.GracefulRestart = &v1alpha1.GracefulRestart{Enabled: true, RestartTime: &metav1.Duration{Duration: 30 * time.Second}}
	})
	for i := 1; i <= 3; i++ {
		tp.startAgent(i)
	}
	start := func() *cluster.Process {
		return api.StartManager(t, tp.nodes[0], "node1", nodeIP(1), "--leader-elect=false", "--agent-port=9474")
	}
	mgr := start()
	ns := api.Namespace(t)
	web := api.Service(t, ns, "web", false, corev1.IPv4Protocol)
	endpoints(t, web, 1, 2, 3)
	ip := api.IPs(t, web, 1)[0]
	all := via(1, 2, 3)
	tp.rtr.WaitRoute(t, ip, 15*time.Second, all)

	mgr.Signal(syscall.SIGKILL)
	if !mgr.Wait(5 * time.Second) {
		t.Fatal("manager did not exit")
	}
	killed := time.Now()
	restarted := false
	for time.Since(killed) < 12*time.Second {
		r, found, err := tp.rtr.Route(ip + "/32")
		if err != nil {
			t.Fatal(err)
		}
		if !all(r, found) {
			t.Fatalf("route changed %s after the kill: %v (found %v)", time.Since(killed).Round(time.Millisecond), r, found)
		}
		if !restarted && time.Since(killed) > 500*time.Millisecond {
			start()
			restarted = true
		}
		time.Sleep(5 * time.Millisecond)
	}
	testenv.Eventually(t, 10*time.Second, func() string {
		out, err := frr.Vtysh("show bgp ipv4 unicast " + ip + " json")
		if err != nil || !strings.Contains(out, `"paths"`) || strings.Contains(out, `"stale"`) {
			return "FRR paths: " + out
		}
		return ""
	})
}
