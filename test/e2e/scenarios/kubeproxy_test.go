//go:build privileged

package scenarios_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/eiplb/eiplb/test/e2e/cluster"
)

// nft lists a table in node i's namespace.
func nft(t *testing.T, l *cluster.Lab, i int, family, table string) string {
	t.Helper()
	out, err := l.Nodes[i-1].Exec(context.Background(), "nft", "list", "table", family, table)
	if err != nil {
		t.Fatalf("nft list table %s %s in node%d: %v: %s", family, table, i, err, out)
	}
	return out
}

// clusterIPAnswers sends n requests from a pod namespace to the Service's
// ClusterIP and returns the pods that answered.
func clusterIPAnswers(t *testing.T, l *cluster.Lab, from int, clusterIP string, n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for range n {
		out, err := cluster.GetFrom(l.Pods[from-1][0], clusterIP, 80)
		if err != nil {
			t.Fatalf("from %s to ClusterIP %s: %v", cluster.PodName(from, 0), clusterIP, err)
		}
		seen[strings.Fields(out)[0]]++
	}
	return seen
}

// kubeProxy: kube-proxy (nftables mode) runs on every node next to the
// agent, as on a real cluster. It writes nothing for the EIPs (eiplb sets
// ipMode Proxy), Services' ClusterIPs work through it from the pods, and
// neither side's resync disturbs the other's traffic.
func kubeProxy(t *testing.T, l *cluster.Lab, web, local *corev1.Service, webIP, localIP string) {
	t.Run("kube-proxy writes no rule for an EIP; eiplb's table is intact", func(t *testing.T) {
		for i := 1; i <= len(l.Nodes); i++ {
			kp := nft(t, l, i, "ip", "kube-proxy")
			if !strings.Contains(kp, web.Spec.ClusterIP) {
				t.Errorf("node%d: kube-proxy's table has no rule for web's ClusterIP %s (is it programming at all?)", i, web.Spec.ClusterIP)
			}
			for _, ip := range []string{webIP, localIP} {
				if rule := cluster.Matches(kp, ip); rule != "" {
					t.Errorf("node%d: kube-proxy's table matches the EIP %s: %s", i, ip, rule)
				}
				if !strings.Contains(nft(t, l, i, "inet", "eiplb"), ip) {
					t.Errorf("node%d: eiplb's table lacks the EIP %s", i, ip)
				}
			}
		}
	})

	t.Run("a ClusterIP answers from a pod through kube-proxy", func(t *testing.T) {
		for _, from := range []int{1, 3} {
			seen := clusterIPAnswers(t, l, from, web.Spec.ClusterIP, 30)
			t.Logf("from %s to web's ClusterIP %s: %v", cluster.PodName(from, 0), web.Spec.ClusterIP, seen)
			if len(seen) < 3 {
				t.Errorf("only %d pods answered, want requests spread over at least 3 of 6", len(seen))
			}
		}
	})

	t.Run("kube-proxy restarted on every node during a steady loop to an EIP: zero failed requests", func(t *testing.T) {
		loop := l.Steady(webIP, 80)
		time.Sleep(300 * time.Millisecond)
		for i := 1; i <= len(l.Nodes); i++ {
			l.Kill(l.KubeProxies[i-1])
			l.StartKubeProxy(i, "nftables") // returns once it has synced its rules
		}
		time.Sleep(300 * time.Millisecond)
		ok, failed := loop.Finish()
		t.Logf("%d requests, %s", ok+len(failed), cluster.Summary(failed))
		if len(failed) != 0 || ok < 50 {
			t.Errorf("%d requests, %s", ok+len(failed), cluster.Summary(failed))
		}
		for i := 1; i <= len(l.Nodes); i++ {
			for _, ip := range []string{webIP, localIP} {
				if !strings.Contains(nft(t, l, i, "inet", "eiplb"), ip) {
					t.Errorf("node%d: eiplb's table lost the EIP %s after kube-proxy's restart", i, ip)
				}
			}
		}
		l.Rtr.WaitRoute(t, webIP, 15*time.Second, via(1, 2, 3))
	})

	t.Run("agent restarted during a steady loop to a ClusterIP from a pod: zero failed requests", func(t *testing.T) {
		loop := l.SteadyFrom(l.Pods[1][0], web.Spec.ClusterIP, 80) // from node2, whose agent restarts
		eip := l.Steady(webIP, 80)
		time.Sleep(300 * time.Millisecond)
		l.Kill(l.Agents[1])
		l.StartAgent(2)
		time.Sleep(2 * time.Second)
		ok, failed := loop.Finish()
		t.Logf("ClusterIP from pod20: %d requests, %s", ok+len(failed), cluster.Summary(failed))
		if len(failed) != 0 || ok < 50 {
			t.Errorf("ClusterIP: %d requests, %s", ok+len(failed), cluster.Summary(failed))
		}
		ok, failed = eip.Finish()
		t.Logf("EIP from the client: %d requests, %s", ok+len(failed), cluster.Summary(failed))
		if len(failed) != 0 || ok < 50 {
			t.Errorf("EIP: %d requests, %s", ok+len(failed), cluster.Summary(failed))
		}
		if !strings.Contains(nft(t, l, 2, "ip", "kube-proxy"), web.Spec.ClusterIP) {
			t.Errorf("node2: kube-proxy's table lost web's ClusterIP after the agent's restart")
		}
	})
}

// TestKubeProxyIPTables: the same lab with kube-proxy in iptables mode
// (iptables-nft): it writes no rule for the EIP, which answers from every
// pod through eiplb, and the Service's ClusterIP answers from a pod.
func TestKubeProxyIPTables(t *testing.T) {
	l := cluster.NewLab(t, api, cluster.LabOptions{KubeProxy: "iptables"})
	l.Up()
	ns := api.Namespace(t)
	web := api.Service(t, ns, "web", false, corev1.IPv4Protocol)
	l.Endpoints(t, web, 1, 2, 3)
	ip := api.IPs(t, web, 1)[0]
	l.Rtr.WaitRoute(t, ip, 15*time.Second, via(1, 2, 3))
	for i := 1; i <= len(l.Nodes); i++ {
		// kube-proxy writes at most once a second, after its own watch
		// saw the Service: wait (bounded) for the ClusterIP's rules.
		var out string
		for deadline := time.Now().Add(15 * time.Second); ; {
			var err error
			out, err = l.Nodes[i-1].Exec(context.Background(), "iptables-save")
			if err != nil {
				t.Fatalf("iptables-save in node%d: %v: %s", i, err, out)
			}
			if strings.Contains(out, web.Spec.ClusterIP) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node%d: kube-proxy wrote no rule for web's ClusterIP %s in 15 s (is it programming at all?)", i, web.Spec.ClusterIP)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if rule := cluster.Matches(out, ip); rule != "" {
			t.Errorf("node%d: kube-proxy's rules match the EIP %s: %s", i, ip, rule)
		}
		if !strings.Contains(nft(t, l, i, "inet", "eiplb"), ip) {
			t.Errorf("node%d: eiplb's table lacks the EIP %s", i, ip)
		}
	}
	if seen := answers(t, l, ip, 80, 60); len(seen) != 6 {
		t.Errorf("pods that answered on the EIP: %v, want all 6", seen)
	}
	// kube-proxy's iptables mode writes its rules at most once a second
	// (--iptables-min-sync-period): until then the ClusterIP is refused.
	reach(t, l.Pods[0][0], web.Spec.ClusterIP, true)
	seen := clusterIPAnswers(t, l, 1, web.Spec.ClusterIP, 30)
	t.Logf("from pod10 to web's ClusterIP %s: %v", web.Spec.ClusterIP, seen)
	if len(seen) < 3 {
		t.Errorf("only %d pods answered, want requests spread over at least 3 of 6", len(seen))
	}
}
