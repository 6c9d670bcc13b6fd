package agentlink

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
)

// Phase is what a manager knows of a node's agent.
type Phase string

// Phases. Only Up and AgentDown (within the grace period) make a node a next hop.
const (
	// PhaseUnknown: no answer yet (the manager just started or the node is new).
	PhaseUnknown Phase = "Unknown"
	// PhaseUp: connected, heartbeats arriving.
	PhaseUp Phase = "Up"
	// PhaseAgentDown: the host answered but the agent process is gone; its
	// rules keep forwarding, the node stays a next hop for the grace period.
	PhaseAgentDown Phase = "AgentDown"
	// PhaseGone: no agent for longer than the grace period, or none since
	// the node was last unreachable.
	PhaseGone Phase = "Gone"
	// PhaseUnreachable: heartbeats stopped or a dial got no answer.
	PhaseUnreachable Phase = "Unreachable"
	// PhaseDraining: the agent asked to be withdrawn.
	PhaseDraining Phase = "Draining"
)

// Phases lists every phase (for metrics).
var Phases = []Phase{PhaseUnknown, PhaseUp, PhaseAgentDown, PhaseGone, PhaseUnreachable, PhaseDraining}

// TrackerOptions configure a manager's tracker.
type TrackerOptions struct {
	// Manager names this replica to the agents.
	Manager string
	// Port of the agents; 0 means DefaultPort.
	Port int
	// DeadAfter without a message marks a node unreachable.
	DeadAfter time.Duration
	// Grace keeps a node whose agent process is gone as a next hop.
	Grace time.Duration
	// DialTimeout bounds a connection attempt; no answer within it is
	// unreachable. 0 means DeadAfter.
	DialTimeout time.Duration
	// Retry is the pause between connection attempts (default 100 ms).
	Retry time.Duration
	// SettleTimeout bounds the wait for the first answer of every agent.
	SettleTimeout time.Duration
	// OnChange is called (without locks held) when the eligibility of a
	// node may have changed: for the listed Services, or all when nil.
	OnChange func(node string, services []string)
	// Withdrawn reports whether this replica's paths no longer use node;
	// a drain is acknowledged once it is true.
	Withdrawn func(node string) bool
	Log       logr.Logger
}

// NodeStatus is a snapshot of a node's agent as this manager sees it.
type NodeStatus struct {
	Node       string
	Addr       netip.AddrPort
	Phase      Phase
	Since      time.Time
	Boot       string
	Programmed int
}

// Tracker is a manager's view of every node's agent.
type Tracker struct {
	opts TrackerOptions

	mu      sync.Mutex
	ctx     context.Context
	nodes   map[string]*nodeState
	settled chan struct{}
	pending map[string]bool // nodes whose first attempt has not concluded
	first   bool            // SetNodes was called
	stopped bool            // Start is returning: no new loops
	loops   sync.WaitGroup  // the per-node loops and their drain acknowledgements
	// version counts changes of what Status and Unprogrammed report.
	version atomic.Uint64
}

type nodeState struct {
	name       string
	addr       netip.AddrPort
	ctx        context.Context
	cancel     context.CancelFunc
	phase      Phase
	since      time.Time
	boot       string
	programmed map[string]Programmed
}

// NewTracker returns a tracker; Start runs it.
func NewTracker(opts TrackerOptions) *Tracker {
	if opts.Port == 0 {
		opts.Port = DefaultPort
	}
	if opts.DeadAfter <= 0 {
		opts.DeadAfter = DefaultDeadAfter
	}
	if opts.Grace <= 0 {
		opts.Grace = DefaultGrace
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = opts.DeadAfter
	}
	if opts.Retry <= 0 {
		opts.Retry = 100 * time.Millisecond
	}
	if opts.SettleTimeout <= 0 {
		opts.SettleTimeout = 2 * time.Second
	}
	if opts.OnChange == nil {
		opts.OnChange = func(string, []string) {}
	}
	return &Tracker{opts: opts, nodes: map[string]*nodeState{}, settled: make(chan struct{}), pending: map[string]bool{}}
}

// Start runs the connections until ctx ends (a manager Runnable).
func (t *Tracker) Start(ctx context.Context) error {
	t.mu.Lock()
	t.ctx = ctx
	for _, n := range t.nodes {
		t.startLocked(n)
	}
	t.mu.Unlock()
	timer := time.AfterFunc(t.opts.SettleTimeout, t.settle)
	defer timer.Stop()
	<-ctx.Done()
	// Return only once every connection is closed and no loop can touch
	// the tracker any more.
	t.mu.Lock()
	t.stopped = true
	t.mu.Unlock()
	t.loops.Wait()
	return nil
}

// NeedLeaderElection: every replica tracks the agents.
func (*Tracker) NeedLeaderElection() bool { return false }

// Settled is closed once every node known at the first SetNodes has
// answered or failed to once (or after SettleTimeout): until then the
// manager does not know which nodes are next hops.
func (t *Tracker) Settled() <-chan struct{} { return t.settled }

func (t *Tracker) settle() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.settleLocked()
}

func (t *Tracker) settleLocked() {
	select {
	case <-t.settled:
	default:
		close(t.settled)
	}
}

// SetNodes sets the nodes to track and their agents' addresses (the
// Node's InternalIP); an invalid address stops tracking the node.
func (t *Tracker) SetNodes(addrs map[string]netip.Addr) {
	t.mu.Lock()
	var changed []string
	for name, n := range t.nodes {
		a, ok := addrs[name]
		if ok && a.IsValid() && netip.AddrPortFrom(a, uint16(t.opts.Port)) == n.addr {
			continue
		}
		if n.cancel != nil {
			n.cancel()
		}
		delete(t.nodes, name)
		delete(t.pending, name)
		changed = append(changed, name)
	}
	for name, a := range addrs {
		if _, ok := t.nodes[name]; ok || !a.IsValid() {
			continue
		}
		n := &nodeState{name: name, addr: netip.AddrPortFrom(a, uint16(t.opts.Port)), phase: PhaseUnknown, since: time.Now()}
		t.nodes[name] = n
		if !t.first {
			t.pending[name] = true
		}
		if t.ctx != nil {
			t.startLocked(n)
		}
	}
	if !t.first {
		t.first = true
		if len(t.pending) == 0 {
			t.settleLocked()
		}
	}
	t.version.Add(1)
	t.mu.Unlock()
	for _, name := range changed {
		t.opts.OnChange(name, nil)
	}
}

func (t *Tracker) startLocked(n *nodeState) {
	if n.cancel != nil || t.stopped {
		return
	}
	ctx, cancel := context.WithCancel(t.ctx)
	n.ctx, n.cancel = ctx, cancel
	t.loops.Add(1)
	go func() { defer t.loops.Done(); t.run(ctx, n) }()
}

// Eligible reports whether node may be a next hop for the Service key with
// addrs: its agent is up (or gone for less than the grace period) and has
// programmed the Service with every one of addrs.
func (t *Tracker) Eligible(node, key string, addrs []netip.Addr) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, ok := t.nodes[node]
	if !ok || (n.phase != PhaseUp && n.phase != PhaseAgentDown) {
		return false
	}
	p, ok := n.programmed[key]
	return ok && p.Covers(addrs)
}

// Status returns the state of every tracked node.
func (t *Tracker) Status() []NodeStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]NodeStatus, 0, len(t.nodes))
	for _, n := range t.nodes {
		out = append(out, NodeStatus{Node: n.name, Addr: n.addr, Phase: n.phase, Since: n.since, Boot: n.boot, Programmed: len(n.programmed)})
	}
	return out
}

// Version changes whenever what Status or Unprogrammed report may have
// changed, so a reader can skip recomputing when it has not.
func (t *Tracker) Version() uint64 { return t.version.Load() }

// Unprogrammed counts the Services of want (key → addresses) whose
// addresses node's agent has not all programmed, and names the first limit
// of them in sorted order. A node whose agent is not up has programmed
// nothing.
func (t *Tracker) Unprogrammed(node string, want map[string][]netip.Addr, limit int) (int, []string) {
	t.mu.Lock()
	var missing []string
	n := t.nodes[node]
	for k, addrs := range want {
		if n == nil || n.programmed == nil {
			missing = append(missing, k)
			continue
		}
		if p, ok := n.programmed[k]; !ok || !p.Covers(addrs) {
			missing = append(missing, k)
		}
	}
	t.mu.Unlock()
	slices.Sort(missing)
	return len(missing), missing[:min(limit, len(missing))]
}

// run keeps one node's connection.
func (t *Tracker) run(ctx context.Context, n *nodeState) {
	d := net.Dialer{Timeout: t.opts.DialTimeout}
	for ctx.Err() == nil {
		c, err := d.DialContext(ctx, "tcp", n.addr.String())
		if err == nil {
			err = t.session(ctx, n, c)
		}
		if ctx.Err() != nil {
			return
		}
		t.lost(ctx, n, err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(t.opts.Retry):
		}
	}
}

// hostAnswered tells a closed or refused connection (the node's kernel
// answered: only the agent is gone) from silence (host or link down).
func hostAnswered(err error) bool {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF),
		errors.Is(err, syscall.EPIPE), errors.Is(err, errWrongNode):
		return true
	case errors.As(err, &ne) && ne.Timeout():
		return false
	}
	return false
}

var errWrongNode = errors.New("agent of another node at this address")

// lost records the end of a connection or a failed attempt.
func (t *Tracker) lost(ctx context.Context, n *nodeState, err error) {
	t.mu.Lock()
	if ctx.Err() != nil || t.nodes[n.name] != n {
		t.mu.Unlock()
		return
	}
	delete(t.pending, n.name)
	if len(t.pending) == 0 {
		t.settleLocked()
	}
	before := n.phase
	eligibleBefore := before == PhaseUp || before == PhaseAgentDown
	now := time.Now()
	switch {
	case !hostAnswered(err):
		// The host may have rebooted meanwhile: what it had programmed
		// is not known any more.
		n.phase, n.programmed = PhaseUnreachable, nil
	case before == PhaseUp:
		n.phase = PhaseAgentDown
		time.AfterFunc(t.opts.Grace, func() { t.graceOver(n, now) })
	case before == PhaseAgentDown:
		// Still within (or at the end of) the grace period.
	default:
		n.phase, n.programmed = PhaseGone, nil
	}
	if n.phase != before {
		n.since = now
		t.opts.Log.Info("Agent link changed", "node", n.name, "from", before, "to", n.phase, "error", errString(err))
	}
	t.version.Add(1)
	after := n.phase
	t.mu.Unlock()
	if eligibleBefore && after != PhaseAgentDown && after != PhaseUp {
		t.opts.OnChange(n.name, nil)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (t *Tracker) graceOver(n *nodeState, since time.Time) {
	t.mu.Lock()
	if n.ctx.Err() != nil || t.nodes[n.name] != n || n.phase != PhaseAgentDown || !n.since.Equal(since) {
		t.mu.Unlock()
		return
	}
	n.phase, n.programmed, n.since = PhaseGone, nil, time.Now()
	t.version.Add(1)
	t.opts.Log.Info("Agent gone for longer than the grace period: withdrawing the node", "node", n.name, "grace", t.opts.Grace.String())
	t.mu.Unlock()
	t.opts.OnChange(n.name, nil)
}

// session reads one connection until it ends.
func (t *Tracker) session(ctx context.Context, n *nodeState, c net.Conn) error {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	var wmu sync.Mutex
	send := func(m managerMsg) error {
		wmu.Lock()
		defer wmu.Unlock()
		_ = c.SetWriteDeadline(time.Now().Add(t.opts.DeadAfter))
		return json.NewEncoder(c).Encode(&m)
	}
	if err := send(managerMsg{Manager: t.opts.Manager}); err != nil {
		return err
	}
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 64<<10), 256<<20)
	draining := false
	for {
		_ = c.SetReadDeadline(time.Now().Add(t.opts.DeadAfter))
		if !sc.Scan() {
			if sc.Err() == nil {
				return io.EOF
			}
			return sc.Err()
		}
		var m agentMsg
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return err
		}
		if m.Full && m.Node != n.name {
			t.opts.Log.Info("The agent at a node's address is of another node: is its InternalIP right?", "node", n.name, "agent", m.Node, "addr", n.addr.String())
			return errWrongNode
		}
		services, changed := t.apply(ctx, n, &m)
		if changed {
			t.opts.OnChange(n.name, services)
		}
		if m.Draining && !draining {
			draining = true
			t.loops.Add(1) // within run's own count: never races with Wait
			go func() { defer t.loops.Done(); t.acknowledgeDrain(ctx, n, send) }()
		}
	}
}

// apply takes a message into the node's state; it reports which Services
// changed (nil: all).
func (t *Tracker) apply(ctx context.Context, n *nodeState, m *agentMsg) ([]string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ctx.Err() != nil || t.nodes[n.name] != n {
		return nil, false
	}
	before := n.phase
	if m.Full {
		n.programmed, n.boot = m.Set, m.Boot
		if n.programmed == nil {
			n.programmed = map[string]Programmed{}
		}
		delete(t.pending, n.name)
		if len(t.pending) == 0 {
			t.settleLocked()
		}
	}
	phase := PhaseUp
	if m.Draining {
		phase = PhaseDraining
	}
	if phase != before {
		n.phase, n.since = phase, time.Now()
		t.opts.Log.Info("Agent link changed", "node", n.name, "from", before, "to", phase, "boot", n.boot)
	}
	if m.Full || phase != before {
		t.version.Add(1)
		return nil, true
	}
	var keys []string
	for k, v := range m.Set {
		// An agent may resend what it sent before (older agents did on
		// every endpoint change): nothing changed, nothing to reconcile.
		if old, ok := n.programmed[k]; ok && old.equal(v) {
			continue
		}
		n.programmed[k] = v
		keys = append(keys, k)
	}
	for _, k := range m.Del {
		delete(n.programmed, k)
		keys = append(keys, k)
	}
	if len(keys) > 0 {
		t.version.Add(1)
	}
	return keys, len(keys) > 0
}

// acknowledgeDrain tells the agent once this replica's paths have left
// the node.
func (t *Tracker) acknowledgeDrain(ctx context.Context, n *nodeState, send func(managerMsg) error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if t.opts.Withdrawn == nil || t.opts.Withdrawn(n.name) {
			if err := send(managerMsg{Drained: true}); err == nil {
				t.opts.Log.Info("Drain acknowledged: no path uses the node", "node", n.name)
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
