//go:build privileged

package agent_test

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/pkg/testenv"
	"github.com/eiplb/eiplb/test/e2e/cluster"
)

// TestAgent walks one lab through what is particular to the agent: no
// next hop before the rules are in place; an unserved port refused; the
// table repaired after a flush; a drain acknowledged by both managers.
func TestAgent(t *testing.T) {
	tp := newTopo(t)
	tp.StartFRR(cluster.FRRConfig(cluster.ManagerIPs(2)))
	api.Basics(t)
	tp.startManagers()
	ns := api.Namespace(t)

	web := api.Service(t, ns, "web", false, corev1.IPv4Protocol)
	tp.Endpoints(t, web, 1, 2, 3)
	ip := api.IPs(t, web, 1)[0]

	t.Run("no next hop before the agent programmed the Service", func(t *testing.T) {
		time.Sleep(1500 * time.Millisecond)
		if r, found, err := tp.Rtr.Route(ip + "/32"); err != nil || found {
			t.Fatalf("route before any agent ran: %v (err %v)", r, err)
		}
		for i := 1; i <= 3; i++ {
			tp.StartAgent(i)
		}
		tp.Rtr.WaitRoute(t, ip, 15*time.Second, via(1, 2, 3))
	})

	t.Run("unserved port on the EIP is refused, not looped", func(t *testing.T) {
		start := time.Now()
		c, err := tp.Client.Dial(t.Context(), "tcp", ip+":81")
		if err == nil {
			c.Close()
			t.Fatal("connected to an unserved port")
		}
		if !strings.Contains(err.Error(), "refused") || time.Since(start) > time.Second {
			t.Fatalf("want connection refused at once, got %v after %v", err, time.Since(start))
		}
	})

	t.Run("nft flush ruleset on a node: the agent puts its rules back at once", func(t *testing.T) {
		before, err := tp.Nodes[0].Exec(t.Context(), "nft", "list", "table", "inet", "eiplb")
		if err != nil {
			t.Fatal(err)
		}
		mustExec(t, tp.Nodes[0], "nft", "flush", "ruleset")
		flushed := time.Now()
		for {
			out, err := tp.Nodes[0].Exec(t.Context(), "nft", "list", "map", "inet", "eiplb", "count4")
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
		after, err := tp.Nodes[0].Exec(t.Context(), "nft", "list", "table", "inet", "eiplb")
		if err != nil || after != before {
			t.Fatalf("table after the repair differs (%v):\n%s\nbefore the flush:\n%s", err, after, before)
		}
		for range 30 {
			if _, err := tp.Get(ip, 80); err != nil {
				t.Fatalf("after the repair: %v", err)
			}
		}
	})

	t.Run("drain: SIGTERM on a cordoned node exits once both managers withdrew it", func(t *testing.T) {
		n := &corev1.Node{}
		testenv.Must(t, api.Client.Get(t.Context(), client.ObjectKey{Name: "node2"}, n))
		n.Spec.Unschedulable = true
		testenv.Must(t, api.Client.Update(t.Context(), n))
		tp.Agents[1].Signal(syscall.SIGTERM)
		if !tp.Agents[1].Wait(15 * time.Second) {
			t.Fatal("draining agent did not exit")
		}
		log, err := os.ReadFile(tp.Agents[1].Log)
		testenv.Must(t, err)
		if !strings.Contains(string(log), "Every manager withdrew the node") {
			t.Fatalf("no acknowledged drain in the agent's log:\n%s", log)
		}
		tp.Rtr.WaitRoute(t, ip, 5*time.Second, via(1, 3))
	})
}
