package main

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/ipam"
)

// stall bounds the time without any new address while the bench waits.
const stall = 60 * time.Second

func (b *bench) run(ctx context.Context) (*result, error) {
	o := b.o
	res := &result{Services: o.services, BaselineServices: o.baseline, Workers: o.workers, Managers: o.managers, BurstSize: o.burst}

	b.logf("starting kube-apiserver + etcd (envtest, CRDs from %s)", o.crdDir)
	if err := b.startEnv(); err != nil {
		return nil, err
	}
	if err := b.setup(ctx); err != nil {
		return nil, err
	}
	if err := b.startTracker(ctx); err != nil {
		return nil, err
	}

	// 2. Baseline: the API server's plain Service status-write rate.
	bl, err := b.baseline(ctx, "plain", true)
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	res.BaselineWritesPerSec, res.BaselineRoundsPerSec, res.BaselineCPU = bl.rate, bl.rounds, bl.cpu
	res.PatternWritesPerSec = bl.patternRate
	b.logf("baseline: %.0f status writes/s with %d writers (rounds: %s); the manager's write pattern (EIPAllocation create + status update) without a manager: %.0f writes/s",
		bl.rate, o.workers, fmtRates(bl.rounds), bl.patternRate)
	b.logf("  CPU: %s", bl.cpu)
	b.logf("  CPU of the write pattern: %s", bl.patternCPU)
	res.PatternCPU = bl.patternCPU
	res.PatternEventsWritesPerSec, res.PatternEventsCPU = bl.eventsRate, bl.eventsCPU
	b.logf("  the write pattern while an Event per Service is posted too: %.0f writes/s (Events not counted)", bl.eventsRate)
	b.logf("  CPU of the write pattern with Events: %s", bl.eventsCPU)

	// 3. N Services while no manager runs.
	creator := rest.CopyConfig(b.cfg)
	creator.QPS, creator.Burst = 500, 1000
	cc, err := client.New(creator, client.Options{Scheme: b.c.Scheme()})
	if err != nil {
		return nil, err
	}
	t := time.Now()
	if _, _, err := b.createServices(ctx, cc, benchNamespace, "svc", v1alpha1.LoadBalancerClass, o.services, o.creators); err != nil {
		return nil, err
	}
	res.CreateSec = time.Since(t).Seconds()
	b.logf("created %d Services of class %s in %.1fs (%.0f/s)", o.services, v1alpha1.LoadBalancerClass, res.CreateSec, float64(o.services)/res.CreateSec)

	// 4. Managers, leader killed at half.
	before, err := b.apiRequests(ctx)
	if err != nil {
		return nil, err
	}
	cpu0 := b.sampleCPU()
	t0 := time.Now()
	if err := b.startManagers(o.managers); err != nil {
		return nil, err
	}
	stopProfile := b.profileAPIServer(ctx, "manager-phase")
	defer stopProfile()
	half := o.services / 2
	if err := b.trk.waitCount(ctx, "svc", half, stall, b.managersHealthy, b.logf); err != nil {
		return nil, err
	}
	var leader *managerProc
	if err := waitFor(ctx, 10*time.Second, 20*time.Millisecond, func() bool { leader = b.leader(); return leader != nil }); err != nil {
		return nil, fmt.Errorf("no manager logged %q although %d Services have an address", leaseAcquiredLine, half)
	}
	if leader.metrics != 0 {
		if m, err := scrapeManager(ctx, leader.metrics); err == nil {
			res.FirstLeaderMetrics = m.summary()
			b.logf("  %s before the kill: %s", leader.name, res.FirstLeaderMetrics)
		} else {
			b.logf("  reading %s's metrics: %v", leader.name, err)
		}
	}
	res.KilledAtAssigned = b.trk.count("svc")
	tKill := time.Now()
	if err := b.kill(leader); err != nil {
		return nil, err
	}
	b.logf("SIGKILLed the leader %s at %d/%d Services assigned (%.2fs after the managers started)", leader.name, res.KilledAtAssigned, o.services, tKill.Sub(t0).Seconds())
	if err := b.trk.waitCount(ctx, "svc", o.services, stall, b.managersHealthy, b.logf); err != nil {
		return nil, err
	}
	res.ManagerPhaseCPU = usage(cpu0, b.sampleCPU())
	var newLeaderMetrics mgrMetrics
	if nl := b.leader(); nl != nil && nl.metrics != 0 {
		if m, err := scrapeManager(ctx, nl.metrics); err == nil {
			newLeaderMetrics = m
			res.NewLeaderMetrics = m.summary()
			b.logf("  %s after taking over: %s", nl.name, res.NewLeaderMetrics)
		}
	}
	after, err := b.apiRequests(ctx)
	if err != nil {
		return nil, err
	}
	res.APIRequests = diffCounters(before, after)
	times := b.trk.times("svc")
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	tFirst, tAll := times[0], times[len(times)-1]
	res.TimeToAllSec = tAll.Sub(t0).Seconds()
	res.FirstAddressSec = tFirst.Sub(t0).Seconds()
	if name, at := b.acquiredAfter(tKill); name != "" {
		res.NewLeader = name
		res.LeaseTakeoverSec = at.Sub(tKill).Seconds()
	}
	gapEnd, stragglers := killGap(times, tKill)
	res.LeaderKillGapSec = gapEnd.Sub(tKill).Seconds()
	res.StragglersAfterKill = stragglers
	b.logf("all %d Services have an address %.2fs after the managers started; new leader %s took the lease %.2fs after the kill, next address %.2fs after the kill",
		o.services, res.TimeToAllSec, res.NewLeader, res.LeaseTakeoverSec, res.LeaderKillGapSec)
	b.logf("  CPU: %s", res.ManagerPhaseCPU)

	// 5. Writes achieved.
	var allocs v1alpha1.EIPAllocationList
	if err := b.c.List(ctx, &allocs); err != nil {
		return nil, err
	}
	res.AllocationsCreated = len(allocs.Items)
	res.StatusUpdates = o.services
	writes := float64(res.AllocationsCreated + res.StatusUpdates)
	res.AchievedWritesPerSec = writes / res.TimeToAllSec
	res.PercentOfBaseline = 100 * res.AchievedWritesPerSec / res.BaselineWritesPerSec
	res.ServicesPerSec = float64(o.services) / res.TimeToAllSec
	if busy := tAll.Sub(tFirst).Seconds() - res.LeaderKillGapSec; busy > 0 {
		res.SteadyWritesPerSec = writes / busy
	}

	// 6. Correctness after the kill.
	sleep(ctx, o.settle)
	c1, err := b.check(ctx)
	if err != nil {
		return nil, err
	}
	b.logf("check after the kill: %s", c1)

	// 7. Burst with the surviving managers.
	final := c1
	if o.burst > 0 {
		var pre []*corev1.Service
		if o.burstMode == "convert" {
			// Services of type ClusterIP are created first (not timed); the
			// burst turns them into LoadBalancers of our class, which is as
			// fast as the API server takes updates (a Service create pays
			// for a ClusterIP, and that gets slower with every Service).
			t := time.Now()
			if pre, _, err = b.createServices(ctx, b.c, benchNamespace, "burst", "", o.burst, o.burstCreators); err != nil {
				return nil, err
			}
			b.logf("burst: created %d ClusterIP Services to convert in %.1fs", o.burst, time.Since(t).Seconds())
		}
		burstBefore, err := b.apiRequests(ctx)
		if err != nil {
			return nil, err
		}
		cpuB := b.sampleCPU()
		stopBurstProfile := b.profileAPIServer(ctx, "burst")
		defer stopBurstProfile()
		tb := time.Now()
		var lastCreate time.Time
		if o.burstMode == "convert" {
			lastCreate, err = b.convertServices(ctx, pre, o.burstCreators)
		} else {
			_, lastCreate, err = b.createServices(ctx, b.c, benchNamespace, "burst", v1alpha1.LoadBalancerClass, o.burst, o.burstCreators)
		}
		if err != nil {
			return nil, err
		}
		res.BurstMode = o.burstMode
		res.BurstCreateSec = lastCreate.Sub(tb).Seconds()
		b.logf("burst (%s): %d Services in %.2fs (%.0f/s)", o.burstMode, o.burst, res.BurstCreateSec, float64(o.burst)/res.BurstCreateSec)
		if err := b.trk.waitCount(ctx, "burst", o.burst, stall, b.managersHealthy, b.logf); err != nil {
			return nil, err
		}
		bt := b.trk.times("burst")
		lastAddr := slices.MaxFunc(bt, func(a, b time.Time) int { return a.Compare(b) })
		res.BurstLagSec = lastAddr.Sub(lastCreate).Seconds()
		res.BurstTotalSec = lastAddr.Sub(tb).Seconds()
		res.BurstCPU = usage(cpuB, b.sampleCPU())
		if nl := b.leader(); nl != nil && nl.metrics != 0 && newLeaderMetrics != nil {
			if m, err := scrapeManager(ctx, nl.metrics); err == nil {
				res.BurstLeaderMetrics = m.minus(newLeaderMetrics).summary()
				b.logf("  %s during the burst: %s", nl.name, res.BurstLeaderMetrics)
			}
		}
		burstAfter, err := b.apiRequests(ctx)
		if err != nil {
			return nil, err
		}
		res.BurstAPIRequests = diffCounters(burstBefore, burstAfter)
		b.logf("burst: the last address came %.3fs after the last create returned (%.2fs after the first create)", res.BurstLagSec, res.BurstTotalSec)
		b.logf("  CPU: %s", res.BurstCPU)
		sleep(ctx, o.settle)
		if final, err = b.check(ctx); err != nil {
			return nil, err
		}
		b.logf("check after the burst: %s", final)
	}
	res.Duplicates = max(c1.Duplicates, final.Duplicates)
	res.Leaks = max(c1.Leaks, final.Leaks)
	res.Unexplained = max(c1.Unexplained, final.Unexplained)
	res.Unassigned = max(c1.Unassigned, final.Unassigned)
	res.Problems = append(c1.Problems, final.Problems...)
	res.Correct = res.Duplicates == 0 && res.Leaks == 0 && res.Unexplained == 0
	for _, p := range res.Problems {
		b.logf("problem: %s", p)
	}
	res.ManagerLogErrors, res.ManagerLogErrorSamples = b.logErrors()
	b.mgrMu.Lock()
	res.ManagerExits = slices.Clone(b.mgrExits)
	b.mgrMu.Unlock()
	// The same baseline again, with the surviving managers idle: the machine
	// is shared, so a large difference means the load changed under the run.
	if o.remeasure {
		bl2, err := b.baseline(ctx, "again", false)
		if err != nil {
			return nil, fmt.Errorf("second baseline: %w", err)
		}
		res.BaselineAgainWritesPerSec = bl2.rate
		b.logf("baseline again at the end: %.0f status writes/s (rounds: %s)", bl2.rate, fmtRates(bl2.rounds))
	}
	res.TargetsMet = res.PercentOfBaseline >= 80 && res.LeaderKillGapSec < 2 && (o.burst == 0 || res.BurstLagSec <= 1)
	return res, ctx.Err()
}

// convertServices turns ClusterIP Services into LoadBalancers of class
// eiplb.io/bgp with conc concurrent writers and returns the moment the last
// update returned.
func (b *bench) convertServices(ctx context.Context, svcs []*corev1.Service, conc int) (time.Time, error) {
	var (
		mu   sync.Mutex
		last time.Time
	)
	err := parallel(ctx, len(svcs), conc, func(ctx context.Context, i int) error {
		s := svcs[i]
		s.Spec.Type = corev1.ServiceTypeLoadBalancer
		s.Spec.LoadBalancerClass = ptr.To(v1alpha1.LoadBalancerClass)
		s.Spec.AllocateLoadBalancerNodePorts = ptr.To(false)
		if err := b.c.Update(ctx, s); err != nil {
			return fmt.Errorf("converting %s to a LoadBalancer: %w", s.Name, err)
		}
		now := time.Now()
		mu.Lock()
		if now.After(last) {
			last = now
		}
		mu.Unlock()
		return nil
	})
	return last, err
}

// killGap finds the silence in allocations that the kill caused: among the
// addresses that appeared after the kill, the longest interval without one
// (counting from the kill) ends at gapEnd. Addresses before it are writes
// the old leader had in flight when it died.
func killGap(sorted []time.Time, kill time.Time) (gapEnd time.Time, stragglers int) {
	i := 0
	for i < len(sorted) && !sorted[i].After(kill) {
		i++
	}
	after := sorted[i:]
	if len(after) == 0 {
		return kill, 0
	}
	prev, best := kill, time.Duration(-1)
	for j, t := range after {
		if d := t.Sub(prev); d > best {
			best, gapEnd, stragglers = d, t, j
		}
		prev = t
	}
	return gapEnd, stragglers
}

type checkResult struct {
	Services, Assigned, Allocations            int
	Duplicates, Leaks, Unexplained, Unassigned int
	Problems                                   []string
}

func (c checkResult) String() string {
	return fmt.Sprintf("%d Services, %d with an address, %d EIPAllocations; duplicates %d, leaks %d, without address %d (unexplained %d)",
		c.Services, c.Assigned, c.Allocations, c.Duplicates, c.Leaks, c.Unassigned, c.Unexplained)
}

func (c *checkResult) problem(format string, args ...any) {
	if len(c.Problems) < 20 {
		c.Problems = append(c.Problems, fmt.Sprintf(format, args...))
	}
}

// check reads every Service and EIPAllocation from the API server and
// counts duplicate addresses, leaked or missing records, and Services
// without an address whose condition does not say why.
func (b *bench) check(ctx context.Context) (checkResult, error) {
	var c checkResult
	var svcs corev1.ServiceList
	if err := b.c.List(ctx, &svcs, client.InNamespace(benchNamespace)); err != nil {
		return c, err
	}
	var allocs v1alpha1.EIPAllocationList
	if err := b.c.List(ctx, &allocs); err != nil {
		return c, err
	}
	c.Services, c.Allocations = len(svcs.Items), len(allocs.Items)

	byUID := map[string]*corev1.Service{}
	holders := map[string][]string{} // address → Services showing it
	for i := range svcs.Items {
		s := &svcs.Items[i]
		byUID[string(s.UID)] = s
		if len(s.Status.LoadBalancer.Ingress) > 0 {
			c.Assigned++
		} else {
			c.Unassigned++
			cond := meta.FindStatusCondition(s.Status.Conditions, v1alpha1.ConditionIPAllocated)
			if cond == nil || cond.Status != metav1.ConditionFalse {
				c.Unexplained++
				c.problem("%s/%s has no address and no False %s condition (%+v)", s.Namespace, s.Name, v1alpha1.ConditionIPAllocated, cond)
			}
		}
		for _, ing := range s.Status.LoadBalancer.Ingress {
			holders[ing.IP] = append(holders[ing.IP], s.Name)
		}
	}
	for ip, names := range holders {
		if len(names) > 1 {
			c.Duplicates += len(names) - 1
			c.problem("address %s shown by %d Services: %v", ip, len(names), names)
		}
	}

	byAddr := map[string]*v1alpha1.EIPAllocation{}
	for i := range allocs.Items {
		ea := &allocs.Items[i]
		addr, err := netip.ParseAddr(ea.Spec.Address)
		if err != nil || ipam.AllocationName(addr) != ea.Name {
			c.Leaks++
			c.problem("EIPAllocation %s has address %q that does not match its name", ea.Name, ea.Spec.Address)
			continue
		}
		byAddr[addr.String()] = ea
		if len(ea.Spec.Services) == 0 {
			c.Leaks++
			c.problem("EIPAllocation %s names no Service", ea.Name)
		}
		for _, ref := range ea.Spec.Services {
			s := byUID[ref.UID]
			switch {
			case s == nil:
				c.Leaks++
				c.problem("EIPAllocation %s is held by %s/%s (uid %s), which does not exist", ea.Name, ref.Namespace, ref.Name, ref.UID)
			case !slices.ContainsFunc(s.Status.LoadBalancer.Ingress, func(i corev1.LoadBalancerIngress) bool { return i.IP == addr.String() }):
				c.Leaks++
				c.problem("EIPAllocation %s is held by %s/%s, which does not show the address (shows %v)", ea.Name, s.Namespace, s.Name, s.Status.LoadBalancer.Ingress)
			}
		}
	}
	for i := range svcs.Items {
		s := &svcs.Items[i]
		for _, ing := range s.Status.LoadBalancer.Ingress {
			addr, err := netip.ParseAddr(ing.IP)
			if err != nil {
				c.Leaks++
				c.problem("%s/%s shows an unparseable address %q", s.Namespace, s.Name, ing.IP)
				continue
			}
			ea := byAddr[addr.String()]
			if ea == nil || !slices.ContainsFunc(ea.Spec.Services, func(r v1alpha1.ServiceReference) bool { return r.UID == string(s.UID) }) {
				c.Leaks++
				c.problem("%s/%s shows %s but no EIPAllocation names it", s.Namespace, s.Name, addr)
			}
		}
	}
	return c, nil
}

// waitFor polls cond every interval for at most d (and ctx).
func waitFor(ctx context.Context, d, interval time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
