package announce_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/pkg/agent"
	"github.com/eiplb/eiplb/pkg/agentlink"
	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/bgp/bgptest"
	announcectrl "github.com/eiplb/eiplb/pkg/controller/announce"
	"github.com/eiplb/eiplb/pkg/dataplane"
	"github.com/eiplb/eiplb/pkg/manager"
	"github.com/eiplb/eiplb/pkg/testenv"
)

// gatedDataplane stands in for the kernel writer (the real one is tested
// with real nftables and packets in test/e2e): its writes block until
// released, so the test controls when a node's rules are "in place".
type gatedDataplane struct {
	release chan struct{}
	once    sync.Once
	// syncFree: only changes after the initial sync wait.
	syncFree bool
}

func newGated(open bool) *gatedDataplane {
	d := &gatedDataplane{release: make(chan struct{})}
	if open {
		d.open()
	}
	return d
}

func (d *gatedDataplane) open()       { d.once.Do(func() { close(d.release) }) }
func (d *gatedDataplane) Load() error { return nil }
func (d *gatedDataplane) Sync(*dataplane.Table) error {
	if !d.syncFree {
		<-d.release
	}
	return nil
}
func (d *gatedDataplane) Apply(*dataplane.Table, dataplane.Touched) error {
	<-d.release
	return nil
}

// runAgent runs an agent for node at addr:port; the returned stop ends it
// (as SIGTERM would) and waits for its exit.
func runAgent(t *testing.T, node, addr string, port int, dp agent.Dataplane) (stop func()) {
	stop, _ = runAgentObj(t, node, addr, port, dp)
	return stop
}

func runAgentObj(t *testing.T, node, addr string, port int, dp agent.Dataplane) (func(), *agent.Agent) {
	t.Helper()
	a, err := agent.New(cfg, dp, agent.Options{
		NodeName: node, LinkAddr: net.JoinHostPort(addr, itoa(port)), Heartbeat: 20 * time.Millisecond,
		DrainTimeout: 3 * time.Second, SeveralPerProcess: true,
	})
	must(t, err)
	c, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := a.Run(c); err != nil {
			t.Errorf("agent %s: %v", node, err)
		}
	}()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(func() { dp.(*gatedDataplane).open(); stop() })
	return stop, a
}

func itoa(i int) string {
	return netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(i)).String()[len("0.0.0.0:"):]
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestAgentGating: a node is a next hop for a Service only once its agent
// has programmed it; an agent that stops stays a next hop for the grace
// period, then is withdrawn; a draining agent exits only once withdrawn.
func TestAgentGating(t *testing.T) {
	r := bgptest.New(t, 65001)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: unique("ns")}}
	must(t, k8s.Create(ctx, ns))
	createNode(t, "ag-a", "127.0.0.2", true)
	nodeB := createNode(t, "ag-b", "127.0.0.3", true)
	pool := &v1alpha1.EIPPool{ObjectMeta: metav1.ObjectMeta{Name: unique("pool")}, Spec: v1alpha1.EIPPoolSpec{Addresses: []string{"203.0.113.64/28"}, AutoAssign: ptr.To(false)}}
	must(t, k8s.Create(ctx, pool))
	t.Cleanup(func() { _ = k8s.Delete(ctx, pool) })
	adv := &v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: unique("all")}}
	must(t, k8s.Create(ctx, adv))
	t.Cleanup(func() { _ = k8s.Delete(ctx, adv) })
	createPeer(t, r.Port)

	port := freePort(t)
	grace := 2 * time.Second
	c, cancel := context.WithCancel(context.Background())
	mgr, err := manager.New(c, cfg, manager.Options{
		SeveralPerProcess: true,
		Announce: &manager.AnnounceOptions{
			// Nothing here is about silence: a long DeadAfter keeps a busy
			// machine's stalls (agents and manager share the process) from
			// reading as unreachable nodes and withdrawing them.
			Options: announcectrl.Options{NodeName: "ag-a", StatusInterval: 100 * time.Millisecond,
				Agents: &agentlink.TrackerOptions{Port: port, Grace: grace, DeadAfter: 10 * time.Second}},
			RouterID: netip.MustParseAddr("10.255.0.2"), ASN: 65001,
		},
	})
	must(t, err)
	done := make(chan struct{})
	go func() { defer close(done); _ = mgr.Start(c) }()
	t.Cleanup(func() { cancel(); <-done })

	dpA, dpB := newGated(true), newGated(false)
	stopA, agentA := runAgentObj(t, "ag-a", "127.0.0.2", port, dpA)
	stopB := runAgent(t, "ag-b", "127.0.0.3", port, dpB)

	svc := createService(t, ns.Name, "web", pool.Name, false)
	// Other tests of the package announce every Service left behind.
	t.Cleanup(func() { _ = k8s.Delete(ctx, svc) })
	ip := waitIP(t, ns.Name, "web")

	t.Run("only the node whose agent programmed the Service is a next hop", func(t *testing.T) {
		waitPaths(t, r, paths(ip, "127.0.0.2"))
		time.Sleep(300 * time.Millisecond)
		if got := bgptest.Without(r.Received(t, bgptest.IPv4)); len(got) != 1 {
			t.Fatalf("paths before node b's rules are in place: %v", got)
		}
		dpB.open()
		waitPaths(t, r, paths(ip, "127.0.0.2", "127.0.0.3"))
	})

	t.Run("agent gone: kept for the grace period, then withdrawn", func(t *testing.T) {
		// Taken before the stop: the manager may see the agent's
		// connection close before stopB returns.
		stopped := time.Now()
		stopB()
		time.Sleep(grace / 2)
		// A busy machine may read this late; withdrawn is a failure only
		// if the read ended within the grace period.
		got := bgptest.Without(r.Received(t, bgptest.IPv4))
		if read := time.Since(stopped); len(got) != 2 && read < grace {
			t.Fatalf("withdrawn within the grace period (%v after the stop): %v", read, got)
		}
		waitPaths(t, r, paths(ip, "127.0.0.2"))
		if took := time.Since(stopped); took < grace {
			t.Fatalf("withdrawn after %v, grace is %v", took, grace)
		}
	})

	top := t // the agent must outlive the subtest that starts it
	var agentB *agent.Agent
	t.Run("agent back: next hop again", func(t *testing.T) {
		stopB, agentB = runAgentObj(top, "ag-b", "127.0.0.3", port, newGated(true))
		waitPaths(t, r, paths(ip, "127.0.0.2", "127.0.0.3"))
	})

	t.Run("drain: the agent exits only after the managers withdrew the node", func(t *testing.T) {
		must(t, k8s.Get(ctx, client.ObjectKeyFromObject(nodeB), nodeB))
		nodeB.Spec.Unschedulable = true
		must(t, k8s.Update(ctx, nodeB))
		// The cordon alone withdraws the node; the agent's drain waits for
		// the manager to confirm it has, then exits.
		stopB()
		if d := agentB.Drained(); d == nil || len(d.Unacknowledged) != 0 {
			t.Fatalf("drain result %+v: want a drain every manager acknowledged", d)
		}
		waitPaths(t, r, paths(ip, "127.0.0.2"))
	})
	t.Run("stop on a schedulable node: no drain", func(t *testing.T) {
		stopA()
		if d := agentA.Drained(); d != nil {
			t.Fatalf("drained %+v on a node that is not cordoned", d)
		}
	})
}

// TestEIPNodeStatus: each manager replica publishes its view of a node's
// agent in the node's EIPNode, including the Services the agent has not
// programmed yet, and removes its entry when it stops.
func TestEIPNodeStatus(t *testing.T) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: unique("ns")}}
	must(t, k8s.Create(ctx, ns))
	node := unique("st")
	nodeObj := createNode(t, node, "127.0.0.4", true)
	pool := &v1alpha1.EIPPool{ObjectMeta: metav1.ObjectMeta{Name: unique("pool")}, Spec: v1alpha1.EIPPoolSpec{Addresses: []string{"203.0.113.96/28"}, AutoAssign: ptr.To(false)}}
	must(t, k8s.Create(ctx, pool))
	t.Cleanup(func() { _ = k8s.Delete(ctx, pool) })

	port := freePort(t)
	c, cancel := context.WithCancel(context.Background())
	mgr, err := manager.New(c, cfg, manager.Options{
		SeveralPerProcess: true,
		Announce: &manager.AnnounceOptions{
			Options: announcectrl.Options{NodeName: node, StatusInterval: 100 * time.Millisecond,
				Agents: &agentlink.TrackerOptions{Port: port, Grace: 500 * time.Millisecond, DeadAfter: 200 * time.Millisecond}},
			RouterID: netip.MustParseAddr("10.255.0.4"), ASN: 65001,
		},
	})
	must(t, err)
	done := make(chan struct{})
	go func() { defer close(done); _ = mgr.Start(c) }()
	stopMgr := func() { cancel(); <-done }
	t.Cleanup(stopMgr)

	// The agent's initial sync goes through; later changes wait.
	dp := &gatedDataplane{release: make(chan struct{}), syncFree: true}
	stopAgent := runAgent(t, node, "127.0.0.4", port, dp)

	entry := func(t *testing.T, what string, ok func(v1alpha1.EIPNodeAgent) bool) v1alpha1.EIPNode {
		t.Helper()
		var got v1alpha1.EIPNode
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if err := k8s.Get(ctx, client.ObjectKey{Name: node}, &got); err == nil {
				for _, a := range got.Status.Agents {
					if a.Manager == node && ok(a) {
						return got
					}
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("EIPNode %s never had %s; last status %+v", node, what, got.Status)
		return got
	}

	obj := entry(t, "the agent Up", func(a v1alpha1.EIPNodeAgent) bool {
		return a.Phase == v1alpha1.AgentPhaseUp && a.Boot != "" && a.UpdatedAt != nil && a.Unprogrammed == 0
	})
	if refs := obj.OwnerReferences; len(refs) != 1 || refs[0].Kind != "Node" || refs[0].UID != nodeObj.UID {
		t.Fatalf("EIPNode owner references %+v: want the Node %s (uid %s), so that it goes with the Node", refs, node, nodeObj.UID)
	}

	svc := createService(t, ns.Name, "web", pool.Name, false)
	t.Cleanup(func() { _ = k8s.Delete(ctx, svc) })
	waitIP(t, ns.Name, "web")
	key := ns.Name + "/web"
	entry(t, "the new Service listed as not programmed", func(a v1alpha1.EIPNodeAgent) bool {
		return a.Phase == v1alpha1.AgentPhaseUp && a.Unprogrammed == 1 && slices.Equal(a.UnprogrammedServices, []string{key})
	})
	eventually(t, 10*time.Second, func() string {
		var got v1alpha1.EIPNode
		must(t, k8s.Get(ctx, client.ObjectKey{Name: node}, &got))
		if got.Status.Summary != "1/1 Up, 1 unprogrammed" {
			return fmt.Sprintf("summary %q, want 1/1 Up, 1 unprogrammed", got.Status.Summary)
		}
		return ""
	})

	dp.open()
	entry(t, "the Service programmed", func(a v1alpha1.EIPNodeAgent) bool {
		return a.Unprogrammed == 0 && len(a.UnprogrammedServices) == 0 && a.Programmed >= 1
	})
	// The summary (kubectl get eipnodes' first column) follows.
	eventually(t, 10*time.Second, func() string {
		var got v1alpha1.EIPNode
		must(t, k8s.Get(ctx, client.ObjectKey{Name: node}, &got))
		if got.Status.Summary != "1/1 Up, all programmed" {
			return fmt.Sprintf("summary %q, want 1/1 Up, all programmed", got.Status.Summary)
		}
		return ""
	})

	stopAgent()
	entry(t, "the agent down, then gone after the grace period", func(a v1alpha1.EIPNodeAgent) bool {
		return a.Phase == v1alpha1.AgentPhaseGone && a.Unprogrammed == 0 && a.Programmed == 0
	})

	stopMgr()
	must(t, k8s.Get(ctx, client.ObjectKey{Name: node}, &obj))
	for _, a := range obj.Status.Agents {
		if a.Manager == node {
			t.Fatalf("a stopped manager left its entry: %+v", a)
		}
	}
}

// TestGoneReplicaEntriesPruned: the status entries of a manager replica
// that was killed and whose Lease ran out are removed by the leader; those
// of a replica whose Lease is alive, however old, stay, and so do the
// running replica's own.
func TestGoneReplicaEntriesPruned(t *testing.T) {
	sys := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "eiplb-system"}}
	if err := k8s.Create(ctx, sys); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	node := unique("pr")
	createNode(t, node, "127.0.0.5", true)
	peer := createPeer(t, 1)
	eipNode := &v1alpha1.EIPNode{ObjectMeta: metav1.ObjectMeta{Name: node}}
	must(t, k8s.Create(ctx, eipNode))
	t.Cleanup(func() { _ = k8s.Delete(ctx, eipNode) })

	old := metav1.NewTime(time.Now().Add(-10 * time.Minute))
	ghost, idle := unique("ghost"), unique("idle")
	// A live replica's Lease, renewed now; the ghost's ran out long ago.
	lease := func(name string, renewed time.Time) {
		l := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: "eiplb-system", Name: "eiplb-replica-" + name, Labels: map[string]string{"eiplb.io/manager-replica": "true"}},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To(name), LeaseDurationSeconds: ptr.To[int32](30), RenewTime: ptr.To(metav1.NewMicroTime(renewed))},
		}
		must(t, k8s.Create(ctx, l))
		t.Cleanup(func() { _ = k8s.Delete(ctx, l) })
	}
	lease(ghost, time.Now().Add(-time.Hour))
	lease(idle, time.Now())
	// Entries written as the replicas write them: server-side apply, each
	// as its own field manager.
	apply := func(kind, name, list, manager string, entry map[string]any) {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": v1alpha1.GroupVersion.String(), "kind": kind, "metadata": map[string]any{"name": name},
			"status": map[string]any{list: []any{entry}},
		}}
		//nolint:staticcheck // as the managers do
		must(t, k8s.Status().Patch(ctx, u, client.Apply, client.FieldOwner("eiplb-manager-"+manager), client.ForceOwnership))
	}
	for _, m := range []string{ghost, idle} {
		apply("BGPPeer", peer.Name, "sessions", m, map[string]any{"manager": m, "state": "Established", "prefixesSent": int64(3), "updatedAt": old.UTC().Format(time.RFC3339)})
		apply("EIPNode", node, "agents", m, map[string]any{"manager": m, "phase": "Up", "programmed": int64(1), "unprogrammed": int64(0), "updatedAt": old.UTC().Format(time.RFC3339)})
	}

	c, cancel := context.WithCancel(context.Background())
	mgr, err := manager.New(c, cfg, manager.Options{
		SeveralPerProcess: true,
		Announce: &manager.AnnounceOptions{
			Options:  announcectrl.Options{NodeName: node, StatusInterval: 100 * time.Millisecond, PruneInterval: 200 * time.Millisecond},
			RouterID: netip.MustParseAddr("10.255.0.5"), ASN: 65001,
		},
	})
	must(t, err)
	done := make(chan struct{})
	go func() { defer close(done); _ = mgr.Start(c) }()
	t.Cleanup(func() { cancel(); <-done })

	managers := func() (sessions, agents []string) {
		var p v1alpha1.BGPPeer
		must(t, k8s.Get(ctx, client.ObjectKeyFromObject(peer), &p))
		for _, s := range p.Status.Sessions {
			sessions = append(sessions, s.Manager)
		}
		var n v1alpha1.EIPNode
		must(t, k8s.Get(ctx, client.ObjectKey{Name: node}, &n))
		for _, a := range n.Status.Agents {
			agents = append(agents, a.Manager)
		}
		slices.Sort(sessions)
		slices.Sort(agents)
		return sessions, agents
	}
	testenv.Eventually(t, 10*time.Second, func() string {
		s, a := managers()
		if slices.Contains(s, ghost) || slices.Contains(a, ghost) {
			return fmt.Sprintf("the ghost's entries are still there: sessions %v, agents %v", s, a)
		}
		return ""
	})
	s, a := managers()
	if !slices.Contains(s, idle) || !slices.Contains(a, idle) {
		t.Fatalf("an old entry of a replica whose Lease is alive was removed: sessions %v, agents %v", s, a)
	}
	var own coordinationv1.Lease
	must(t, k8s.Get(ctx, client.ObjectKey{Namespace: "eiplb-system", Name: "eiplb-replica-" + node}, &own))
	if own.Spec.HolderIdentity == nil || *own.Spec.HolderIdentity != node || own.Spec.RenewTime == nil {
		t.Fatalf("the running replica's Lease: %+v", own.Spec)
	}
}
