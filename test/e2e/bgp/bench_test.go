//go:build privileged

package bgp_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eiplb/eiplb/pkg/testenv"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/test/e2e/cluster"
)

// wireTimes: when each prefix's last next hop arrived at the router.
func wireTimes(t *testing.T, logPath string) map[string]time.Time {
	all, err := cluster.UpdatesReceived(logPath)
	must(t, err)
	out := map[string]time.Time{}
	for ip, ts := range all {
		out[ip] = ts[len(ts)-1] // the last UPDATE for a prefix completes it
	}
	return out
}

// countUpdates counts the UPDATE messages bgpd has logged receiving.
func countUpdates(t *testing.T, logPath string) int {
	b, err := os.ReadFile(logPath)
	must(t, err)
	return strings.Count(string(b), " rcvd UPDATE wlen ")
}

type sample struct{ total, ours, announce time.Duration }

// ipSeen watches Services and records when each first showed an address:
// the end of IPAM's part and the start of the announcer's.
type ipSeen struct {
	mu   sync.Mutex
	seen map[string]time.Time // address → first seen
}

func watchIPs(t *testing.T, ns string) *ipSeen {
	wc, err := client.NewWithWatch(api.Env.Config, client.Options{Scheme: api.Client.Scheme()})
	must(t, err)
	w, err := wc.Watch(ctx, &corev1.ServiceList{}, client.InNamespace(ns))
	must(t, err)
	t.Cleanup(w.Stop)
	s := &ipSeen{seen: map[string]time.Time{}}
	go func() {
		for ev := range w.ResultChan() {
			svc, ok := ev.Object.(*corev1.Service)
			if !ok {
				continue
			}
			now := time.Now()
			s.mu.Lock()
			for _, i := range svc.Status.LoadBalancer.Ingress {
				if _, ok := s.seen[i.IP]; !ok {
					s.seen[i.IP] = now
				}
			}
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *ipSeen) at(ip string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[ip]
}

func (s *ipSeen) forget(ip string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.seen, ip)
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return s[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }

// TestBenchServiceToFIB measures Service created → every next hop in FRR's
// kernel FIB, split into our part (create → the UPDATE completing the route
// received by bgpd, from its millisecond log) and the router's (that → FIB).
// It runs only with EIPLB_BENCH=1 (make bench-bgp) and prints a table.
func TestBenchServiceToFIB(t *testing.T) {
	if os.Getenv("EIPLB_BENCH") == "" {
		t.Skip("benchmark: run with EIPLB_BENCH=1 (make bench-bgp)")
	}
	tp := newTopo(t)
	frr := tp.lab.StartFRR(tp.rtr, strings.Replace(frrConfig([]string{"192.168.100.11"}), "log stdout\n",
		"log stdout\nlog timestamp precision 3\ndebug bgp updates in\n", 1))
	basics(t)
	must(t, api.Client.Get(ctx, client.ObjectKey{Name: "e2e"}, &v1alpha1.EIPPool{}))
	// A bigger pool for the scale runs.
	create(t, &v1alpha1.EIPPool{ObjectMeta: metav1.ObjectMeta{Name: "bench"}, Spec: v1alpha1.EIPPoolSpec{Addresses: []string{"10.200.0.0/20"}}})
	api.StartManager(t, tp.nodes[0], "node1", "192.168.100.11", "--leader-elect=false")
	ns := namespace(t)
	f := cluster.OpenFIB(t, tp.rtr)
	seen := watchIPs(t, ns)
	bgpLog := filepath.Join(frr.Dir, "bgpd.log")
	seq := 0
	newSvc := func() *corev1.Service {
		seq++
		s := testenv.LoadBalancer(ns, fmt.Sprintf("s%05d", seq))
		s.Annotations = map[string]string{v1alpha1.AnnotationPool: "bench"}
		return s
	}
	ipOf := func(s *corev1.Service) string { return ips(t, s, 1)[0] }

	// one measures single creates; afterDelete deletes another Service
	// right before each create.
	one := func(n int, afterDelete bool) []sample {
		var out []sample
		for range n {
			var victim *corev1.Service
			if afterDelete {
				victim = newSvc()
				must(t, api.Client.Create(ctx, victim))
				f.WaitAll(t, []string{ipOf(victim)}, 3, 10*time.Second)
			}
			s := newSvc()
			if victim != nil {
				must(t, api.Client.Delete(ctx, victim))
			}
			t0 := time.Now()
			must(t, api.Client.Create(ctx, s))
			ip := ipOf(s)
			done := f.WaitAll(t, []string{ip}, 3, 10*time.Second)
			wire := wireTimes(t, bgpLog)[ip]
			out = append(out, sample{total: done[ip].Sub(t0), ours: wire.Sub(t0), announce: wire.Sub(seen.at(ip))})
			must(t, api.Client.Delete(ctx, s))
			f.WaitGone(t, ip)
			seen.forget(ip)
		}
		return out
	}
	burst := func(n int) (lag, oursLag time.Duration) {
		svcs := make([]*corev1.Service, n)
		for i := range svcs {
			svcs[i] = newSvc()
		}
		var wg sync.WaitGroup
		work := make(chan *corev1.Service)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for s := range work {
					must(t, api.Client.Create(ctx, s))
				}
			}()
		}
		for _, s := range svcs {
			work <- s
		}
		close(work)
		wg.Wait()
		last := time.Now()
		var addrs []string
		for _, s := range svcs {
			addrs = append(addrs, ipOf(s))
		}
		done := f.WaitAll(t, addrs, 3, 60*time.Second)
		wire := wireTimes(t, bgpLog)
		var end, wireEnd time.Time
		for _, ip := range addrs {
			if done[ip].After(end) {
				end = done[ip]
			}
			if wire[ip].After(wireEnd) {
				wireEnd = wire[ip]
			}
		}
		return end.Sub(last), wireEnd.Sub(last)
	}
	row := func(name string, ss []sample) string {
		var tot, ours, ann []time.Duration
		for _, s := range ss {
			tot, ours, ann = append(tot, s.total), append(ours, s.ours), append(ann, s.announce)
		}
		return fmt.Sprintf("| %-40s | %7s | %7s | %7s | %7s | %7s | %7s |", name, ms(pct(tot, .5)), ms(pct(tot, .99)),
			ms(pct(ours, .5)), ms(pct(ours, .99)), ms(pct(ann, .5)), ms(pct(ann, .99)))
	}
	runs, small, big := 40, 100, 1000
	if os.Getenv("EIPLB_BENCH") == "quick" {
		runs, small, big = 3, 10, 20
	}
	var table []string
	table = append(table, row("one Service, 0 others", one(runs, false)))
	table = append(table, row("one Service, right after a delete", one(runs, true)))
	lag100, wire100 := burst(small)
	lag1000, wire1000 := burst(big) // leaves small+big Services announced
	table = append(table, row(fmt.Sprintf("one Service, %d others", small+big), one(runs, false)))
	table = append(table, row(fmt.Sprintf("one Service, %d others, after a delete", small+big), one(runs, true)))

	// One endpoint change of a Local Service among them: how many UPDATE
	// messages reach the router, and how long until its FIB follows.
	loc := newSvc()
	loc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	must(t, api.Client.Create(ctx, loc))
	lip := ipOf(loc)
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: loc.Name + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: loc.Name}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	setEPs := func(nodes ...string) {
		es.Endpoints = nil
		for i, n := range nodes {
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.244.1.%d", i+1)},
				NodeName: ptr.To(n), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
		}
	}
	setEPs("node1", "node2")
	must(t, api.Client.Create(ctx, es))
	waitGW := func(want ...string) time.Time {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			gw, err := f.Gateways(lip)
			must(t, err)
			if slices.Equal(gw, want) {
				return time.Now()
			}
			time.Sleep(2 * time.Millisecond)
		}
		t.Fatalf("route %s never went via %v", lip, want)
		return time.Time{}
	}
	waitGW("192.168.100.11", "192.168.100.12")
	var epTimes []time.Duration
	var updates []int
	for i := range runs {
		// Alternate node1+node2 → node2+node3 and back: one next hop swaps.
		from, to := []string{"192.168.100.11", "192.168.100.12"}, []string{"192.168.100.12", "192.168.100.13"}
		nodesTo := []string{"node2", "node3"}
		if i%2 == 1 {
			from, to, nodesTo = to, from, []string{"node1", "node2"}
		}
		_ = from
		before := countUpdates(t, bgpLog)
		must(t, api.Client.Get(ctx, client.ObjectKeyFromObject(es), es))
		setEPs(nodesTo...)
		t0 := time.Now()
		must(t, api.Client.Update(ctx, es))
		done := waitGW(to...)
		time.Sleep(300 * time.Millisecond) // let any further UPDATE land before counting
		epTimes = append(epTimes, done.Sub(t0))
		updates = append(updates, countUpdates(t, bgpLog)-before)
	}
	slices.Sort(updates)

	fmt.Printf("\nService created -> all 3 next hops in FRR's kernel FIB (ms, %d runs each)\n", runs)
	fmt.Println("| scenario                                 | FIB p50 | FIB p99 | ours p50| ours p99| ann p50 | ann p99 |")
	fmt.Println("|------------------------------------------|---------|---------|---------|---------|---------|---------|")
	for _, r := range table {
		fmt.Println(r)
	}
	fmt.Printf("\nBurst lag after the last create returned (ms): %d -> FIB %s (ours %s); %d -> FIB %s (ours %s)\n",
		small, ms(lag100), ms(wire100), big, ms(lag1000), ms(wire1000))
	fmt.Printf("One endpoint change (Local Service, %d others announced): FIB follows p50 %s ms, p99 %s ms; UPDATE messages sent per change: min %d, max %d\n",
		small+big, ms(pct(epTimes, .5)), ms(pct(epTimes, .99)), updates[0], updates[len(updates)-1])
	fmt.Println("(FIB: create -> all next hops in the router's kernel FIB. ours: create -> the UPDATE completing the route received")
	fmt.Println(" by bgpd, IPAM's two API writes included; the rest is FRR's batching and zebra. ann: the address visible in the")
	fmt.Println(" Service status (watch) -> that UPDATE, i.e. the announcer alone. Timestamps of FRR's log have 1 ms resolution.)")
}
