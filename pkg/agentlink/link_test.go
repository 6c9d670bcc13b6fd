package agentlink

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	lo    = netip.MustParseAddr("127.0.0.1")
	eip   = netip.MustParseAddr("192.0.2.10")
	other = netip.MustParseAddr("192.0.2.11")
)

// agent is a running Server on a fixed loopback port.
type agent struct {
	srv    *Server
	cancel context.CancelFunc
	done   chan struct{}
}

func startAgent(t *testing.T, node string, port int, programmed map[string]Programmed) *agent {
	t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port of a just stopped agent may linger briefly
		if ln, err = net.Listen("tcp", netip.AddrPortFrom(lo, uint16(port)).String()); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(node, 20*time.Millisecond, testr.New(t))
	for k, v := range programmed {
		srv.SetProgrammed(k, &v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &agent{srv: srv, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(a.done); _ = srv.Serve(ctx, ln) }()
	t.Cleanup(a.stop)
	return a
}

func (a *agent) stop() {
	a.cancel()
	<-a.done
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// changes records the tracker's OnChange calls.
type changes struct {
	mu  sync.Mutex
	tr  *Tracker
	all int
	svc map[string]int
	// allSaw is the node's phase as the tracker reported it during each
	// call for all Services: what the announcer, called back, would read.
	allSaw []Phase
}

func (c *changes) on(_ string, services []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if services == nil {
		c.all++
		c.allSaw = append(c.allSaw, phase(c.tr))
		return
	}
	for _, s := range services {
		c.svc[s]++
	}
}

// wait bounds the waits for what must happen; it is long because the
// machine may be busy, and it never shortens a test that passes.
const wait = 10 * time.Second

// startTracker runs a tracker of the node n1 at addr. Unless the test is
// about silence (and sets DeadAfter), DeadAfter is long: the agent's
// heartbeats are in the same process, and a busy machine can stall both
// for longer than a short DeadAfter, which reads as the node unreachable.
func startTracker(t *testing.T, port int, addr netip.Addr, opts TrackerOptions) (*Tracker, *changes) {
	t.Helper()
	ch := &changes{svc: map[string]int{}}
	opts.Port, opts.OnChange, opts.Log = port, ch.on, testr.New(t)
	if opts.Manager == "" {
		opts.Manager = "m-test"
	}
	if opts.DeadAfter == 0 {
		opts.DeadAfter = wait
	}
	opts.Retry = 20 * time.Millisecond
	tr := NewTracker(opts)
	ch.mu.Lock()
	ch.tr = tr
	ch.mu.Unlock()
	tr.SetNodes(map[string]netip.Addr{"n1": addr})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = tr.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return tr, ch
}

// attempts waits until the tracker has concluded n more connection
// attempts (each changes its Version).
func attempts(t *testing.T, tr *Tracker, n uint64) {
	t.Helper()
	v := tr.Version()
	eventually(t, wait, fmt.Sprintf("%d more connection attempts", n), func() bool { return tr.Version() >= v+n })
}

// managerNames returns the names the connected managers gave.
func managerNames(s *Server) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for c := range s.conns {
		out = append(out, c.manager)
	}
	slices.Sort(out)
	return out
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func phase(tr *Tracker) Phase {
	for _, s := range tr.Status() {
		return s.Phase
	}
	return ""
}

func TestProgrammedGatesEligibility(t *testing.T) {
	port := freePort(t)
	tr, ch := startTracker(t, port, lo, TrackerOptions{})
	if tr.Eligible("n1", "ns/a", []netip.Addr{eip}) {
		t.Fatal("eligible before any agent answered")
	}
	a := startAgent(t, "n1", port, map[string]Programmed{"ns/a": {Generation: 1, Addrs: []netip.Addr{eip}}})
	eventually(t, wait, "agent up", func() bool { return tr.Eligible("n1", "ns/a", []netip.Addr{eip}) })
	select {
	case <-tr.Settled():
	default:
		t.Fatal("not settled after the agent answered")
	}
	if tr.Eligible("n1", "ns/a", []netip.Addr{eip, other}) {
		t.Fatal("eligible for an address the agent has not programmed")
	}
	if tr.Eligible("n1", "ns/b", []netip.Addr{eip}) || tr.Eligible("n2", "ns/a", []netip.Addr{eip}) {
		t.Fatal("eligible for a Service or node never programmed")
	}
	a.srv.SetProgrammed("ns/b", &Programmed{Generation: 2, Addrs: []netip.Addr{other}})
	eventually(t, wait, "delta", func() bool { return tr.Eligible("n1", "ns/b", []netip.Addr{other}) })
	// The tracker calls OnChange after it has taken the change in.
	eventually(t, wait, "OnChange for ns/b", func() bool { ch.mu.Lock(); defer ch.mu.Unlock(); return ch.svc["ns/b"] > 0 })
	ch.mu.Lock()
	if ch.svc["ns/b"] != 1 {
		t.Errorf("OnChange for ns/b: %d calls, want 1", ch.svc["ns/b"])
	}
	ch.mu.Unlock()
	a.srv.SetProgrammed("ns/b", nil)
	eventually(t, wait, "delete", func() bool { return !tr.Eligible("n1", "ns/b", []netip.Addr{other}) })
	if !tr.Eligible("n1", "ns/a", []netip.Addr{eip}) {
		t.Fatal("deleting one Service affected another")
	}
}

// TestAgentRestartWithinGraceKeepsNode: the agent process goes away and a
// new one comes back within the grace period: the node never stops being
// a next hop.
func TestAgentRestartWithinGraceKeepsNode(t *testing.T) {
	port := freePort(t)
	// The grace period is long: the restart below must fit in it on a busy
	// machine too.
	tr, _ := startTracker(t, port, lo, TrackerOptions{Grace: time.Minute})
	prog := map[string]Programmed{"ns/a": {Generation: 1, Addrs: []netip.Addr{eip}}}
	a := startAgent(t, "n1", port, prog)
	eventually(t, wait, "agent up", func() bool { return tr.Eligible("n1", "ns/a", []netip.Addr{eip}) })
	var lost atomic.Bool
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			if !tr.Eligible("n1", "ns/a", []netip.Addr{eip}) {
				lost.Store(true)
			}
		}
	}()
	a.stop()
	eventually(t, wait, "agent seen down", func() bool { return phase(tr) == PhaseAgentDown })
	attempts(t, tr, 3) // refused redials
	b := startAgent(t, "n1", port, prog)
	eventually(t, wait, "new agent up", func() bool { return phase(tr) == PhaseUp })
	close(stop)
	<-watched
	if lost.Load() {
		t.Fatal("node stopped being eligible during an agent restart within the grace period")
	}
	b.stop()
}

// TestAgentGoneWithdrawnAfterGrace: no agent comes back; the node goes after
// the grace period, not before.
func TestAgentGoneWithdrawnAfterGrace(t *testing.T) {
	port := freePort(t)
	grace := 400 * time.Millisecond
	tr, ch := startTracker(t, port, lo, TrackerOptions{Grace: grace})
	a := startAgent(t, "n1", port, map[string]Programmed{"ns/a": {Addrs: []netip.Addr{eip}}})
	eventually(t, wait, "agent up", func() bool { return tr.Eligible("n1", "ns/a", []netip.Addr{eip}) })
	eventually(t, wait, "OnChange for the agent up", func() bool { ch.mu.Lock(); defer ch.mu.Unlock(); return ch.all > 0 })
	ch.mu.Lock()
	allBefore := ch.all
	ch.mu.Unlock()
	// Taken before the stop: the tracker may see the connection close
	// before stop returns.
	stopped := time.Now()
	a.stop()
	eventually(t, wait, "withdrawn after grace", func() bool { return !tr.Eligible("n1", "ns/a", []netip.Addr{eip}) })
	if took := time.Since(stopped); took < grace {
		t.Fatalf("withdrawn after %v, before the grace period of %v", took, grace)
	}
	if phase(tr) != PhaseGone {
		t.Fatalf("phase %s, want Gone", phase(tr))
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.all <= allBefore {
		t.Fatal("no OnChange when the grace period ended")
	}
}

// pausable forwards TCP to an agent and can go silent like a dead host:
// connections stay open, nothing flows, new ones are accepted and starve.
type pausable struct {
	ln     net.Listener
	to     string
	paused atomic.Bool
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func newPausable(t *testing.T, port int, to string) *pausable {
	t.Helper()
	ln, err := net.Listen("tcp", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), uint16(port)).String())
	if err != nil {
		t.Fatal(err)
	}
	p := &pausable{ln: ln, to: to}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.track(c)
			if p.paused.Load() {
				continue
			}
			u, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			p.track(u)
			p.wg.Add(2)
			go func() { defer p.wg.Done(); p.copy(u, c) }()
			go func() { defer p.wg.Done(); p.copy(c, u) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *pausable) track(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns = append(p.conns, c)
}

func (p *pausable) copy(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		if p.paused.Load() {
			continue // swallowed: silence on the wire
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

// TestUnreachableWithdrawsAtOnce: silence (host down, link cut) withdraws
// after DeadAfter without waiting for the grace period.
func TestUnreachableWithdrawsAtOnce(t *testing.T) {
	port := freePort(t)
	a := startAgent(t, "n1", port, map[string]Programmed{"ns/a": {Addrs: []netip.Addr{eip}}})
	p := newPausable(t, port, netip.AddrPortFrom(lo, uint16(port)).String())
	dead := 150 * time.Millisecond
	tr, _ := startTracker(t, port, netip.MustParseAddr("127.0.0.2"), TrackerOptions{Grace: time.Minute, DeadAfter: dead})
	eventually(t, wait, "agent up", func() bool { return tr.Eligible("n1", "ns/a", []netip.Addr{eip}) })
	p.paused.Store(true)
	cut := time.Now()
	eventually(t, wait, "withdrawn", func() bool { return !tr.Eligible("n1", "ns/a", []netip.Addr{eip}) })
	took := time.Since(cut)
	if phase(tr) != PhaseUnreachable {
		t.Fatalf("phase %s, want Unreachable", phase(tr))
	}
	if took > dead+300*time.Millisecond {
		t.Errorf("withdrawn %v after the cut; DeadAfter is %v", took, dead)
	}
	// Back: the agent's full set makes the node eligible again.
	p.paused.Store(false)
	eventually(t, wait, "back", func() bool { return tr.Eligible("n1", "ns/a", []netip.Addr{eip}) })
	_ = a
}

// TestUnreachableForgetsProgrammed: after silence, a refused connection
// (host rebooted, agent not started yet) must not bring back what the old
// agent had programmed: the kernel may not have it any more.
func TestUnreachableForgetsProgrammed(t *testing.T) {
	port := freePort(t)
	a := startAgent(t, "n1", port, map[string]Programmed{"ns/a": {Addrs: []netip.Addr{eip}}})
	p := newPausable(t, port, netip.AddrPortFrom(lo, uint16(port)).String())
	tr, _ := startTracker(t, port, netip.MustParseAddr("127.0.0.2"), TrackerOptions{Grace: time.Minute, DeadAfter: 150 * time.Millisecond})
	eventually(t, wait, "agent up", func() bool { return tr.Eligible("n1", "ns/a", []netip.Addr{eip}) })
	p.paused.Store(true)
	eventually(t, wait, "unreachable", func() bool { return phase(tr) == PhaseUnreachable })
	a.stop() // the proxy now refuses nothing but forwards to a closed port: EOF
	p.paused.Store(false)
	eventually(t, wait, "gone", func() bool { return phase(tr) == PhaseGone })
	attempts(t, tr, 3)
	if tr.Eligible("n1", "ns/a", []netip.Addr{eip}) {
		t.Fatal("eligible again from a programmed set reported before the node was unreachable")
	}
}

func TestDrainWaitsForAcknowledgement(t *testing.T) {
	port := freePort(t)
	var withdrawn atomic.Bool
	var asked atomic.Int32
	tr, ch := startTracker(t, port, lo, TrackerOptions{Withdrawn: func(string) bool { asked.Add(1); return withdrawn.Load() }})
	a := startAgent(t, "n1", port, map[string]Programmed{"ns/a": {Addrs: []netip.Addr{eip}}})
	eventually(t, wait, "agent up", func() bool { return tr.Eligible("n1", "ns/a", []netip.Addr{eip}) })
	eventually(t, wait, "manager named", func() bool { return slices.Equal(managerNames(a.srv), []string{"m-test"}) })
	done := make(chan []string, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 3*wait)
	defer cancel()
	go func() { done <- a.srv.Drain(ctx) }()
	eventually(t, wait, "draining", func() bool { return phase(tr) == PhaseDraining })
	if tr.Eligible("n1", "ns/a", []netip.Addr{eip}) {
		t.Fatal("a draining node is still eligible")
	}
	// The tracker calls OnChange after it has taken the drain in, so the
	// announcer it calls reads the node as draining.
	eventually(t, wait, "an OnChange for the drain", func() bool {
		ch.mu.Lock()
		defer ch.mu.Unlock()
		return slices.Contains(ch.allSaw, PhaseDraining)
	})
	// The tracker has found its paths still on the node a few times.
	n := asked.Load()
	eventually(t, wait, "withdrawal checked", func() bool { return asked.Load() >= n+3 })
	select {
	case m := <-done:
		t.Fatalf("drain returned %v before the manager withdrew", m)
	default:
	}
	withdrawn.Store(true)
	select {
	case m := <-done:
		if len(m) != 0 {
			t.Fatalf("unacknowledged: %v", m)
		}
	case <-time.After(wait):
		t.Fatal("drain not acknowledged")
	}
	a.stop()
	eventually(t, wait, "gone after drain", func() bool { return phase(tr) == PhaseGone })
}

func TestDrainTimesOutOnSilentManager(t *testing.T) {
	port := freePort(t)
	tr, _ := startTracker(t, port, lo, TrackerOptions{Manager: "m-1", Withdrawn: func(string) bool { return false }})
	a := startAgent(t, "n1", port, map[string]Programmed{"ns/a": {Addrs: []netip.Addr{eip}}})
	eventually(t, wait, "agent up", func() bool { return tr.Eligible("n1", "ns/a", []netip.Addr{eip}) })
	eventually(t, wait, "manager named", func() bool { return slices.Equal(managerNames(a.srv), []string{"m-1"}) })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if m := a.srv.Drain(ctx); len(m) != 1 || m[0] != "m-1" {
		t.Fatalf("unacknowledged %v, want [m-1]", m)
	}
}

// rawManager is a manager's end of the link driven by hand.
type rawManager struct {
	c  net.Conn
	sc *bufio.Scanner
}

func dialRaw(t *testing.T, port int, name string) *rawManager {
	t.Helper()
	c, err := net.Dial("tcp", netip.AddrPortFrom(lo, uint16(port)).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(wait))
	m := &rawManager{c: c, sc: bufio.NewScanner(c)}
	m.send(t, managerMsg{Manager: name})
	return m
}

func (m *rawManager) send(t *testing.T, msg managerMsg) {
	t.Helper()
	if err := json.NewEncoder(m.c).Encode(&msg); err != nil {
		t.Fatal(err)
	}
}

// untilDraining reads the agent's messages until one says it is draining.
func (m *rawManager) untilDraining(t *testing.T) {
	t.Helper()
	for m.sc.Scan() {
		var a agentMsg
		if err := json.Unmarshal(m.sc.Bytes(), &a); err != nil {
			t.Fatal(err)
		}
		if a.Draining {
			return
		}
	}
	t.Fatalf("no draining message: %v", m.sc.Err())
}

// TestDrainWaitsForDroppedManager: a manager whose connection drops during
// a drain has not acknowledged it: the drain reports it, and waits for it
// to come back and acknowledge.
func TestDrainWaitsForDroppedManager(t *testing.T) {
	port := freePort(t)
	a := startAgent(t, "n1", port, nil)
	m1 := dialRaw(t, port, "m-1")
	eventually(t, wait, "manager named", func() bool { return slices.Equal(managerNames(a.srv), []string{"m-1"}) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	done := make(chan []string, 1)
	go func() { done <- a.srv.Drain(ctx) }()
	m1.untilDraining(t)
	m1.c.Close()
	if m := <-done; !slices.Equal(m, []string{"m-1"}) {
		t.Fatalf("unacknowledged %v after m-1's connection dropped, want [m-1]", m)
	}

	// m-1 comes back, sees the drain and acknowledges.
	ctx, cancel = context.WithTimeout(context.Background(), wait)
	defer cancel()
	go func() { done <- a.srv.Drain(ctx) }()
	m1 = dialRaw(t, port, "m-1")
	m1.untilDraining(t)
	m1.send(t, managerMsg{Drained: true})
	if m := <-done; len(m) != 0 {
		t.Fatalf("unacknowledged %v after m-1 came back and acknowledged", m)
	}
}

// TestStartWaitsForItsLoops: Start returns only once no goroutine of the
// tracker runs any more (here: a drain acknowledgement asking Withdrawn),
// so nothing calls back into a manager that has stopped.
func TestStartWaitsForItsLoops(t *testing.T) {
	port := freePort(t)
	a := startAgent(t, "n1", port, map[string]Programmed{"ns/a": {Addrs: []netip.Addr{eip}}})
	entered, release := make(chan struct{}, 1), make(chan struct{})
	tr := NewTracker(TrackerOptions{Manager: "m-1", Port: port, DeadAfter: wait, Retry: 20 * time.Millisecond, Log: testr.New(t),
		Withdrawn: func(string) bool {
			select {
			case entered <- struct{}{}:
			default:
			}
			<-release
			return false
		}})
	tr.SetNodes(map[string]netip.Addr{"n1": lo})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); _ = tr.Start(ctx) }()
	eventually(t, wait, "agent up", func() bool { return tr.Eligible("n1", "ns/a", []netip.Addr{eip}) })
	dctx, dcancel := context.WithCancel(context.Background())
	defer dcancel()
	go a.srv.Drain(dctx)
	select {
	case <-entered:
	case <-time.After(wait):
		t.Fatal("the tracker never asked whether its paths left the node")
	}
	cancel()
	select {
	case <-done:
		t.Fatal("Start returned while its drain acknowledgement still ran")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("Start did not return after its loops ended")
	}
}

func TestWrongNodeAtAddressIsNotEligible(t *testing.T) {
	port := freePort(t)
	tr, _ := startTracker(t, port, lo, TrackerOptions{})
	startAgent(t, "n2", port, map[string]Programmed{"ns/a": {Addrs: []netip.Addr{eip}}})
	eventually(t, wait, "answered", func() bool { return phase(tr) != PhaseUnknown })
	attempts(t, tr, 3)
	if tr.Eligible("n1", "ns/a", []netip.Addr{eip}) {
		t.Fatal("eligible through another node's agent")
	}
}

// TestBadManagerMessageDropsOnlyThatConnection: garbage from a client does
// not stop the server.
func TestBadManagerMessageDropsOnlyThatConnection(t *testing.T) {
	port := freePort(t)
	a := startAgent(t, "n1", port, nil)
	c, err := net.Dial("tcp", netip.AddrPortFrom(lo, uint16(port)).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("not json\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("connection not closed by the server: %v", err)
	}
	tr, _ := startTracker(t, port, lo, TrackerOptions{})
	eventually(t, wait, "a good manager still served", func() bool { return phase(tr) == PhaseUp })
	_ = a
}

// TestUnprogrammed: the count is exact, the list sorted and cut at the
// limit; a Service programmed with only some of its addresses is not
// programmed; an unknown node has programmed nothing.
func TestUnprogrammed(t *testing.T) {
	a1, a2 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	tr := NewTracker(TrackerOptions{})
	tr.nodes["n1"] = &nodeState{name: "n1", phase: PhaseUp, programmed: map[string]Programmed{
		"ns/a": {Addrs: []netip.Addr{a1}},
		"ns/b": {Addrs: []netip.Addr{a1}}, // lacks a2
	}}
	want := map[string][]netip.Addr{"ns/a": {a1}, "ns/b": {a1, a2}, "ns/d": {a1}, "ns/c": {a2}}
	n, some := tr.Unprogrammed("n1", want, 2)
	if n != 3 || !slices.Equal(some, []string{"ns/b", "ns/c"}) {
		t.Fatalf("Unprogrammed = %d %v, want 3 [ns/b ns/c]", n, some)
	}
	if n, some := tr.Unprogrammed("n2", want, 10); n != 4 || len(some) != 4 {
		t.Fatalf("unknown node: %d %v, want all 4", n, some)
	}
	v := tr.Version()
	tr.SetNodes(map[string]netip.Addr{})
	if tr.Version() == v {
		t.Fatal("Version unchanged after SetNodes changed the nodes")
	}
}

// BenchmarkUnprogrammed: the EIPNode writer's cost per node and write, with
// 10,000 Services of which the agent lacks 100.
func BenchmarkUnprogrammed(b *testing.B) {
	tr := NewTracker(TrackerOptions{})
	want := map[string][]netip.Addr{}
	prog := map[string]Programmed{}
	for i := range 10000 {
		k := fmt.Sprintf("ns%d/svc%d", i%50, i)
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		want[k] = []netip.Addr{a}
		if i%100 != 0 {
			prog[k] = Programmed{Addrs: []netip.Addr{a}}
		}
	}
	tr.nodes["n1"] = &nodeState{name: "n1", phase: PhaseUp, programmed: prog}
	b.ReportAllocs()
	for b.Loop() {
		if n, _ := tr.Unprogrammed("n1", want, 50); n != 100 {
			b.Fatalf("unprogrammed %d, want 100", n)
		}
	}
}

// TestUnchangedProgrammedNotResent: the agent sets the same record again
// (it does on every endpoint change of the Service): nothing goes on the
// wire, and a tracker that gets a resent record anyway (an older agent)
// calls no OnChange for it. Before, every such call reached every manager
// and cost it an announcer reconcile.
func TestUnchangedProgrammedNotResent(t *testing.T) {
	port := freePort(t)
	rec := Programmed{Generation: 1, Addrs: []netip.Addr{eip}}
	a := startAgent(t, "n1", port, map[string]Programmed{"ns/a": rec})

	// The wire: after the full set, the next message with content has
	// only the Service that changed.
	m := dialRaw(t, port, "m-raw")
	next := func() agentMsg {
		t.Helper()
		for m.sc.Scan() {
			var msg agentMsg
			if err := json.Unmarshal(m.sc.Bytes(), &msg); err != nil {
				t.Fatal(err)
			}
			if msg.Full || len(msg.Set) > 0 || len(msg.Del) > 0 {
				return msg
			}
		}
		t.Fatalf("no message: %v", m.sc.Err())
		return agentMsg{}
	}
	if first := next(); !first.Full {
		t.Fatalf("first message %+v, want the full set", first)
	}
	for range 3 {
		same := rec
		a.srv.SetProgrammed("ns/a", &same)
	}
	a.srv.SetProgrammed("ns/b", &Programmed{Generation: 2, Addrs: []netip.Addr{other}})
	if got := next(); len(got.Set) != 1 || len(got.Del) != 0 || got.Set["ns/b"].Generation != 2 {
		t.Fatalf("after unchanged ns/a and a new ns/b the agent sent %+v, want ns/b only", got)
	}

	// The tracker: a record resent unchanged changes nothing.
	tr, ch := startTracker(t, port, lo, TrackerOptions{})
	eventually(t, wait, "agent up", func() bool { return tr.Eligible("n1", "ns/a", []netip.Addr{eip}) })
	a.srv.mu.Lock()
	for c := range a.srv.conns {
		c.dirty["ns/a"] = struct{}{} // resend it as is
		c.poke()
	}
	a.srv.mu.Unlock()
	a.srv.SetProgrammed("ns/c", &Programmed{Generation: 3, Addrs: []netip.Addr{eip}})
	// One connection, in order: once ns/c is taken in, so is the resend.
	eventually(t, wait, "OnChange for ns/c", func() bool { ch.mu.Lock(); defer ch.mu.Unlock(); return ch.svc["ns/c"] > 0 })
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.svc["ns/a"] != 0 {
		t.Errorf("OnChange for the unchanged ns/a: %d calls, want 0", ch.svc["ns/a"])
	}
}
