//go:build privileged

// Package bench_test is `make bench`: the whole system in the lab of `make
// demo` (real API server, FRR, two managers, three agents), measured from
// the outside — the router's kernel FIB, the nodes' nftables, /proc — and
// printed as one table next to the targets of the design brief. The table
// is also written to bench/results/, named by date and commit, so runs can
// be compared across commits.
package bench_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/testenv"
	"github.com/eiplb/eiplb/test/e2e/cluster"
	"github.com/google/nftables"
)

var api *cluster.API

func TestMain(m *testing.M) { cluster.Main(m, "benchmark", func(a *cluster.API) { api = a }) }

type sizes struct{ runs, cuts, burst, many int }

func TestBench(t *testing.T) {
	mode := os.Getenv("EIPLB_BENCH")
	if mode == "" {
		t.Skip("benchmark: run with EIPLB_BENCH=1 (make bench), or EIPLB_BENCH=quick for a smoke run")
	}
	sz := sizes{runs: 30, cuts: 10, burst: 1000, many: 10000}
	if mode == "quick" {
		sz = sizes{runs: 3, cuts: 2, burst: 50, many: 200}
	}
	if v := os.Getenv("EIPLB_BENCH_SIZES"); v != "" { // runs,cuts,burst,many
		if _, err := fmt.Sscanf(v, "%d,%d,%d,%d", &sz.runs, &sz.cuts, &sz.burst, &sz.many); err != nil {
			t.Fatalf("EIPLB_BENCH_SIZES=%q: want runs,cuts,burst,many: %v", v, err)
		}
	}
	// Profiles are taken at the largest size (bin/bench-*.pprof).
	l := cluster.NewLab(t, api, cluster.LabOptions{
		ManagerArgs: []string{"--pprof-bind-address=127.0.0.1:6060"},
		AgentArgs:   []string{"--pprof-bind-address=127.0.0.1:6061"},
	})
	l.Up()
	api.Create(t, &v1alpha1.EIPPool{ObjectMeta: metav1.ObjectMeta{Name: "bench"},
		Spec: v1alpha1.EIPPoolSpec{Addresses: []string{"10.200.0.0/17"}, AutoAssign: new(bool)}})
	b := &bench{t: t, l: l, fib: cluster.OpenFIB(t, l.Rtr), ns: api.Namespace(t), eps: map[string][]*discoveryv1.EndpointSlice{}}
	var rep report

	// Service → routed, one at a time, nothing else present, hop by hop.
	one := b.ones(sz.runs)
	rep.dist("one Service created → all 3 next hops in the router's FIB (ms)", one.routed, "p99 ≤ 75")
	one.split(&rep, "")
	rep.dist("(the API server's Service create call itself, not counted above) (ms)", one.calls, "—")

	// Node death.
	probe := b.service(false, 1, 2, 3)
	b.create(probe)
	b.routed(probe, 3)
	var cut []time.Duration
	for range sz.cuts {
		l.LinkDown(3)
		start := time.Now()
		b.waitGateways(probe, cluster.NodeIP(1), cluster.NodeIP(2))
		cut = append(cut, time.Since(start))
		l.LinkUp(3)
		b.routed(probe, 3)
		time.Sleep(300 * time.Millisecond)
	}
	rep.dist("node link cut → its next hop gone from the FIB (ms)", cut, "p99 < 1000")

	// Endpoint change with few Services.
	applied, wire, routed := b.moves(sz.runs)
	rep.dist("Local endpoint moves node → in the new node's nftables (ms), few Services", applied, "— (the agent's kernel write alone: < 10)")
	rep.dist("Local endpoint moves node → the new path received by the router (ms), few Services", wire, "—")
	rep.dist("Local endpoint moves node → FIB switched (ms), few Services", routed, "≤ 75")

	// A burst of creates.
	lat, lag := b.burst(sz.burst)
	rep.dist(fmt.Sprintf("burst of %d created at once: each Service → routed (ms)", sz.burst), lat, "—")
	rep.one(fmt.Sprintf("burst of %d: lag after the last create until all routed (ms)", sz.burst), lag, "≤ 1000")
	one = b.ones(sz.runs)
	rep.dist(fmt.Sprintf("one Service → routed with %d present (ms)", b.n), one.routed, "no change from empty")
	one.split(&rep, fmt.Sprintf(" with %d present", b.n))
	rep.dist(fmt.Sprintf("(the API server's Service create call with %d present) (ms)", b.n), one.calls, "—")
	rep.mem(fmt.Sprintf("memory (VmRSS) at %d Services (MiB)", b.n), l, "manager ≤ 100, agent ≤ 40")
	idle1 := b.idleCPU(l, 10*time.Second)
	rep.text(fmt.Sprintf("manager CPU idle at %d Services (%% of one core)", b.n), idle1, "—")

	// Grow to many.
	cpu0 := cpuSeconds(l)
	start := time.Now()
	if sz.many >= 5000 {
		// A CPU profile in the middle of the grow (bin/bench-*-grow-cpu.pprof).
		go func() { time.Sleep(time.Minute); b.profiles(l, 30*time.Second, "grow") }()
	}
	_, growLag := b.burst(sz.many - b.n)
	took := time.Since(start)
	cpu1 := cpuSeconds(l)
	rep.text(fmt.Sprintf("grow to %d Services: wall time, manager CPU seconds (replica 1 / 2)", b.n),
		fmt.Sprintf("%.1f s (lag after last create %s ms); %.1f / %.1f CPU s", took.Seconds(), ms(growLag), cpu1[0]-cpu0[0], cpu1[1]-cpu0[1]), "—")
	rep.mem(fmt.Sprintf("memory (VmRSS) at %d Services (MiB)", b.n), l, "—")
	go b.profiles(l, 8*time.Second, "idle")
	rep.text(fmt.Sprintf("manager CPU idle at %d Services (%% of one core)", b.n), b.idleCPU(l, 10*time.Second), "—")
	applied, wire, routed = b.moves(sz.runs)
	rep.dist(fmt.Sprintf("Local endpoint moves node → in the new node's nftables (ms), %d Services", b.n), applied, "— (the agent's kernel write alone: < 10)")
	rep.dist(fmt.Sprintf("Local endpoint moves node → the new path received by the router (ms), %d Services", b.n), wire, "—")
	rep.dist(fmt.Sprintf("Local endpoint moves node → FIB switched (ms), %d Services", b.n), routed, "≤ 75")

	rep.print(t, fmt.Sprintf("EIPLB_BENCH=%s, sizes runs=%d cuts=%d burst=%d many=%d", mode, sz.runs, sz.cuts, sz.burst, sz.many))
}

type bench struct {
	t   *testing.T
	l   *cluster.Lab
	fib *cluster.FIB
	ns  string
	mu  sync.Mutex
	n   int                                     // Services made so far
	eps map[string][]*discoveryv1.EndpointSlice // by Service name
}

// service makes the next benchmark Service with its address requested by
// annotation (so the FIB can be watched before the status is read) and
// endpoints on the given nodes.
func (b *bench) service(local bool, nodes ...int) *corev1.Service {
	b.mu.Lock()
	i := b.n
	b.n++
	b.mu.Unlock()
	s := testenv.LoadBalancer(b.ns, fmt.Sprintf("s%05d", i))
	s.Annotations = map[string]string{v1alpha1.AnnotationPool: "bench",
		v1alpha1.AnnotationIP: fmt.Sprintf("10.200.%d.%d", (i+1)/256, (i+1)%256)}
	// 10,000 Services don't fit the 2,768 NodePorts, and eiplb needs none.
	s.Spec.AllocateLoadBalancerNodePorts = new(bool)
	if local {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
	var pods [][2]int
	for _, n := range nodes {
		pods = append(pods, [2]int{n, 0}, [2]int{n, 1})
	}
	b.mu.Lock()
	b.eps[s.Name] = cluster.EndpointSlices(s, pods...)
	b.mu.Unlock()
	return s
}

func ipOf(s *corev1.Service) string { return s.Annotations[v1alpha1.AnnotationIP] }

// create creates the Service's EndpointSlices, then the Service (none is
// deleted: the API server goes away with the package). It returns when
// the Service's create call returned, and how long that call took.
func (b *bench) create(s *corev1.Service) (time.Time, time.Duration) {
	at, took, err := b.tryCreate(s)
	if err != nil {
		b.t.Fatal(err)
	}
	return at, took
}

func (b *bench) tryCreate(s *corev1.Service) (time.Time, time.Duration, error) {
	ctx := context.Background()
	b.mu.Lock()
	ess := b.eps[s.Name]
	b.mu.Unlock()
	for _, es := range ess {
		if err := api.Client.Create(ctx, es); err != nil {
			return time.Time{}, 0, err
		}
	}
	t0 := time.Now()
	err := api.Client.Create(ctx, s)
	return time.Now(), time.Since(t0), err
}

func (b *bench) routed(s *corev1.Service, hops int) time.Time {
	return b.fib.WaitAll(b.t, []string{ipOf(s)}, hops, 30*time.Second)[ipOf(s)]
}

func (b *bench) waitGateways(s *corev1.Service, want ...string) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		gws, err := b.fib.Gateways(ipOf(s))
		if err != nil {
			b.t.Fatal(err)
		}
		if slices.Equal(gws, want) {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s via %v, want %v", ipOf(s), gws, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// created is what ones measured: per Service, from its create call
// returning to each hop of the create path.
type created struct {
	record     []time.Duration // its EIPAllocation record is seen (IPAM's first write)
	status     []time.Duration // its status shows the address (IPAM's second write)
	programmed []time.Duration // all 3 agents have it in their nftables
	wire       []time.Duration // the router received its first path (bgpd's log)
	routed     []time.Duration // all 3 next hops in the router's FIB
	calls      []time.Duration // the create call itself
}

// split adds the hops of the create path as rows.
func (c created) split(rep *report, present string) {
	rep.dist("  ↳ one Service created → its EIPAllocation record seen"+present+" (ms)", c.record, "—")
	rep.dist("  ↳ one Service created → its status shows the address"+present+" (ms; the agents and announcer no longer wait for it)", c.status, "—")
	rep.dist("  ↳ one Service created → programmed in all 3 agents' nftables"+present+" (ms)", c.programmed, "—")
	rep.dist("  ↳ one Service created → its first path received by the router"+present+" (ms; our part)", c.wire, "p99 ≤ 20")
}

// ones creates n Services one at a time, each with endpoints on every node,
// and returns, per Service, when each hop of the create path was reached:
// record, status, agents programmed, UPDATE received, all three next hops
// in the FIB; and how long the API server took for the create call itself.
func (b *bench) ones(n int) created {
	defer b.logUpdates()()
	seen := b.watchAllocations()
	defer seen.stop()
	var out created
	start := map[string]time.Time{}
	for range n {
		s := b.service(false, 1, 2, 3)
		var waits []func(time.Time) time.Time
		var stops []func()
		for i := 1; i <= 3; i++ {
			wait, stop := b.watchProgrammed(i, ipOf(s))
			waits, stops = append(waits, wait), append(stops, stop)
		}
		t0, call := b.create(s)
		// Each node's events are read as they come (a reader that waits
		// for another node would stamp them late).
		programmed := make(chan time.Time, len(waits))
		for _, wait := range waits {
			go func() {
				var at time.Time // zero when wait failed the test
				defer func() { programmed <- at }()
				at = wait(t0)
			}()
		}
		out.routed = append(out.routed, b.routed(s, 3).Sub(t0))
		var last time.Time
		for range waits {
			if at := <-programmed; at.After(last) {
				last = at
			}
		}
		for _, stop := range stops {
			stop()
		}
		out.programmed = append(out.programmed, last.Sub(t0))
		out.calls = append(out.calls, call)
		start[ipOf(s)] = t0
	}
	got, err := cluster.UpdatesReceived(filepath.Join(b.l.FRR.Dir, "bgpd.log"))
	if err != nil {
		b.t.Fatal(err)
	}
	for ip, t0 := range start {
		// Log times are to the millisecond; an earlier holder of the
		// address has times before t0.
		at := got[ip]
		if k := slices.IndexFunc(at, func(at time.Time) bool { return !at.Before(t0.Truncate(time.Millisecond)) }); k >= 0 {
			out.wire = append(out.wire, at[k].Sub(t0))
		}
		if at, ok := seen.record(ip); ok {
			out.record = append(out.record, at.Sub(t0))
		}
		if at, ok := seen.status(ip); ok {
			out.status = append(out.status, at.Sub(t0))
		}
	}
	if len(out.wire) < n || len(out.record) < n || len(out.status) < n {
		b.t.Errorf("of %d new Services: the router's log showed a path of %d, records were seen of %d, statuses of %d",
			n, len(out.wire), len(out.record), len(out.status))
	}
	return out
}

// allocations records when this process first saw each address's
// EIPAllocation record and a Service status showing it, through watches
// of the API server (as the managers and agents see them).
type allocations struct {
	mu                 sync.Mutex
	recordAt, statusAt map[string]time.Time
	stop               func()
}

func (a *allocations) record(ip string) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.recordAt[ip]
	return t, ok
}

func (a *allocations) status(ip string) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.statusAt[ip]
	return t, ok
}

func (b *bench) watchAllocations() *allocations {
	ctx, cancel := context.WithCancel(context.Background())
	c, err := client.NewWithWatch(api.Env.Config, client.Options{Scheme: api.Client.Scheme()})
	if err != nil {
		b.t.Fatal(err)
	}
	recs, err := c.Watch(ctx, &v1alpha1.EIPAllocationList{})
	if err != nil {
		b.t.Fatal(err)
	}
	svcs, err := c.Watch(ctx, &corev1.ServiceList{}, client.InNamespace(b.ns))
	if err != nil {
		recs.Stop()
		b.t.Fatal(err)
	}
	a := &allocations{recordAt: map[string]time.Time{}, statusAt: map[string]time.Time{}}
	first := func(m map[string]time.Time, ip string, at time.Time) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if _, ok := m[ip]; !ok {
			m[ip] = at
		}
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for ev := range recs.ResultChan() {
			if rec, ok := ev.Object.(*v1alpha1.EIPAllocation); ok {
				first(a.recordAt, rec.Spec.Address, time.Now())
			}
		}
	}()
	go func() {
		defer wg.Done()
		for ev := range svcs.ResultChan() {
			if s, ok := ev.Object.(*corev1.Service); ok {
				for _, ing := range s.Status.LoadBalancer.Ingress {
					first(a.statusAt, ing.IP, time.Now())
				}
			}
		}
	}()
	a.stop = func() { cancel(); recs.Stop(); svcs.Stop(); wg.Wait() }
	return a
}

// logUpdates has the router log each path it receives, to the millisecond
// (see cluster.UpdatesReceived), until the returned func is called: that
// splits a change into ours (up to the UPDATE on the wire) and FRR's.
func (b *bench) logUpdates() (stop func()) {
	if _, err := b.l.FRR.Vtysh("configure terminal", "log timestamp precision 3"); err != nil {
		b.t.Fatal(err)
	}
	if _, err := b.l.FRR.Vtysh("debug bgp updates in"); err != nil {
		b.t.Fatal(err)
	}
	return func() { _, _ = b.l.FRR.Vtysh("no debug bgp updates in") }
}

// burst creates n Services from 8 workers and returns each one's create
// (returned) → routed, and the lag from the last create returning to all
// routed.
func (b *bench) burst(n int) ([]time.Duration, time.Duration) {
	svcs := make([]*corev1.Service, n)
	for i := range svcs {
		svcs[i] = b.service(false, 1, 2, 3)
	}
	started := make([]time.Time, n)
	errs := make([]error, n)
	var last time.Time
	created := make(chan struct{})
	go func() {
		defer close(created)
		work := make(chan int)
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range work {
					started[i], _, errs[i] = b.tryCreate(svcs[i])
				}
			}()
		}
		for i := range svcs {
			work <- i
		}
		close(work)
		wg.Wait()
		last = time.Now()
	}()
	var ips []string
	for _, s := range svcs {
		ips = append(ips, ipOf(s))
	}
	// The FIB is watched while the Services are being created.
	done := b.fib.WaitAll(b.t, ips, 3, 30*time.Minute)
	<-created
	if err := errors.Join(errs...); err != nil {
		b.t.Fatal(err)
	}
	var lat []time.Duration
	var end time.Time
	for i, s := range svcs {
		d := done[ipOf(s)]
		lat = append(lat, d.Sub(started[i]))
		if d.After(end) {
			end = d
		}
	}
	return lat, end.Sub(last)
}

// moves moves a Local Service's endpoints between node1 and node2, n times,
// and returns when the new node had the Service in its rules, and when
// the FIB switched to it.
func (b *bench) moves(n int) (applied, wire, routed []time.Duration) {
	s := b.service(true, 1)
	b.create(s)
	b.waitGateways(s, cluster.NodeIP(1))
	ctx := context.Background()
	defer b.logUpdates()()
	for i := range n {
		to := 2 - i%2 // 2, 1, 2, ...
		es := cluster.EndpointSlices(s, [2]int{to, 0}, [2]int{to, 1})[0]
		cur := es.DeepCopy()
		if err := api.Client.Get(ctx, client.ObjectKeyFromObject(es), cur); err != nil {
			b.t.Fatal(err)
		}
		cur.Endpoints = es.Endpoints
		wait, stop := b.watchProgrammed(to, ipOf(s))
		called := time.Now()
		if err := api.Client.Update(ctx, cur); err != nil {
			stop()
			b.t.Fatal(err)
		}
		t0 := time.Now()
		at := wait(t0)
		stop()
		applied = append(applied, at.Sub(t0))
		b.waitGateways(s, cluster.NodeIP(to))
		routed = append(routed, time.Since(t0))
		got, err := cluster.UpdatesReceived(filepath.Join(b.l.FRR.Dir, "bgpd.log"))
		if err != nil {
			b.t.Fatal(err)
		}
		// The first path received after the change was asked for (log
		// times are to the millisecond: one before the call is an earlier
		// move's). On a loaded machine the agent can see the slice, and
		// the path leave, before the Update call has returned to us: such a
		// move counts as a negative time, not as a missing path.
		if k := slices.IndexFunc(got[ipOf(s)], func(at time.Time) bool { return !at.Before(called.Truncate(time.Millisecond)) }); k >= 0 {
			wire = append(wire, got[ipOf(s)][k].Sub(t0))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(wire) < n {
		b.t.Errorf("the router's log showed the new path of %d of %d moves", len(wire), n)
	}
	return applied, wire, routed
}

// watchProgrammed watches node i's nftables for the element changes the
// agent commits (the kernel's nftables event stream, in-process) and
// returns a wait that gives when the first committed element keyed by ip
// arrived. Events come after the commit of the agent's one transaction, so
// that is when the rules are in place. (Polling instead meant dumping a
// 10,000-element set every millisecond, which took a core of its own and
// added up to a dump's time to every sample.)
func (b *bench) watchProgrammed(i int, ip string) (wait func(since time.Time) time.Time, stop func()) {
	f, err := os.Open(b.l.Nodes[i-1].Path())
	if err != nil {
		b.t.Fatal(err)
	}
	conn, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		f.Close()
		b.t.Fatal(err)
	}
	mon := nftables.NewMonitor(nftables.WithMonitorEventBuffer(4096))
	events, err := conn.AddMonitor(mon)
	if err != nil {
		f.Close()
		b.t.Fatal(err)
	}
	stop = func() { _ = mon.Close(); _ = conn.CloseLasting(); f.Close() }
	want := net.ParseIP(ip).To4()
	wait = func(since time.Time) time.Time {
		timeout := time.After(30 * time.Second)
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					b.t.Fatalf("node%d: nftables monitor closed", i)
				}
				now := time.Now()
				if ev.Type == nftables.MonitorEventTypeOOB {
					b.t.Fatalf("node%d: nftables monitor: %v", i, ev.Error)
				}
				if ev.Type != nftables.MonitorEventTypeNewSetElem {
					continue
				}
				els, _ := ev.Data.([]nftables.SetElement)
				for _, e := range els {
					if len(e.Key) >= 4 && net.IP(e.Key[:4]).Equal(want) {
						return now
					}
				}
			case <-timeout:
				b.t.Fatalf("node%d never programmed %s within 30 s of %s", i, ip, since.Format(time.RFC3339Nano))
			}
		}
	}
	return wait, stop
}

// cpuSeconds is the CPU time (user + system) of the two managers so far.
func cpuSeconds(l *cluster.Lab) [2]float64 {
	var out [2]float64
	for i := range 2 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", l.Managers[i].Pid()))
		if err != nil {
			continue
		}
		// Fields after the command name (which is in parentheses):
		// utime and stime are fields 14 and 15 of the line.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		var ut, st float64
		fmt.Sscan(f[11], &ut)
		fmt.Sscan(f[12], &st)
		out[i] = (ut + st) / 100 // USER_HZ
	}
	return out
}

func (b *bench) idleCPU(l *cluster.Lab, d time.Duration) string {
	c0 := cpuSeconds(l)
	time.Sleep(d)
	c1 := cpuSeconds(l)
	return fmt.Sprintf("%.1f / %.1f %%", 100*(c1[0]-c0[0])/d.Seconds(), 100*(c1[1]-c0[1])/d.Seconds())
}

// profiles saves CPU profiles of manager 1 and agent 1 (taken over d) and
// their heap profiles to bin/bench-<process>-<when>-*.pprof, for `go tool
// pprof`.
func (b *bench) profiles(l *cluster.Lab, d time.Duration, when string) {
	for _, p := range []struct{ name, addr string }{{"manager", "127.0.0.1:6060"}, {"agent", "127.0.0.1:6061"}} {
		c := &http.Client{Timeout: d + 10*time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
				return l.Nodes[0].Dial(ctx, network, a)
			}}}
		for _, q := range []struct{ kind, path string }{{"cpu", fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(d.Seconds()))}, {"heap", "/debug/pprof/heap"}} {
			go func() {
				resp, err := c.Get("http://" + p.addr + q.path)
				if err != nil {
					fmt.Println("profile:", err)
					return
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				_ = os.WriteFile(filepath.Join(cluster.Root(), "bin", fmt.Sprintf("bench-%s-%s-%s.pprof", p.name, when, q.kind)), body, 0o644)
			}()
		}
	}
}

func rss(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb float64
			fmt.Sscan(strings.TrimSpace(v), &kb)
			return kb / 1024
		}
	}
	return 0
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }

func pct(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p)]
}

type report struct{ rows [][4]string }

func (r *report) dist(what string, ds []time.Duration, target string) {
	r.rows = append(r.rows, [4]string{what, ms(pct(ds, .5)), ms(pct(ds, .99)), target})
}

func (r *report) one(what string, d time.Duration, target string) {
	r.rows = append(r.rows, [4]string{what, ms(d), "", target})
}

func (r *report) text(what, value, target string) {
	r.rows = append(r.rows, [4]string{what, value, "", target})
}

func (r *report) mem(what string, l *cluster.Lab, target string) {
	var agents []string
	for _, a := range l.Agents {
		agents = append(agents, fmt.Sprintf("%.0f", rss(a.Pid())))
	}
	r.text(what, fmt.Sprintf("managers %.0f / %.0f; agents %s", rss(l.Managers[0].Pid()), rss(l.Managers[1].Pid()), strings.Join(agents, " / ")), target)
}

func (r *report) print(t *testing.T, mode string) {
	commit := "unknown"
	if out, err := exec.Command("git", "-C", cluster.Root(), "describe", "--always", "--dirty").Output(); err == nil {
		commit = strings.TrimSpace(string(out))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# make bench, %s, commit %s, %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), commit, mode)
	b.WriteString("Lab of `make demo`: real API server, FRR, 2 managers, 3 agents. Times run from the moment the API call that creates or changes the object returned (the EndpointSlices are written before the Service) to what the router's kernel FIB or the node's nftables show.\n\n")
	b.WriteString("| what | p50 (or value) | p99 | target |\n| --- | --- | --- | --- |\n")
	for _, row := range r.rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", row[0], row[1], row[2], row[3])
	}
	fmt.Print("\n" + b.String())
	dir := filepath.Join(cluster.Root(), "bench", "results")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, time.Now().UTC().Format("2006-01-02-1504")+"-"+commit+".md")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	fmt.Println("\nwritten to", file)
}
