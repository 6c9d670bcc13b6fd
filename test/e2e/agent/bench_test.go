//go:build privileged

package agent_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/testenv"
	"github.com/eiplb/eiplb/test/e2e/cluster"
	"github.com/eiplb/eiplb/test/netlab"
)

func pct(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d.Microseconds())/1000) }

// TestBenchAgent measures, in the lab (make bench-agent, EIPLB_BENCH=1):
// node link cut → its next hop gone from the router's kernel FIB, and the
// cost of the data plane: requests per second through the EIP against
// straight to the same backend over the same hops.
func TestBenchAgent(t *testing.T) {
	if os.Getenv("EIPLB_BENCH") == "" {
		t.Skip("benchmark: run with EIPLB_BENCH=1 (make bench-agent)")
	}
	runs := 10
	tp := newTopo(t)
	tp.StartFRR(cluster.FRRConfig(cluster.ManagerIPs(2)))
	api.Basics(t)
	tp.startManagers()
	for i := 1; i <= 3; i++ {
		tp.StartAgent(i, "--metrics-insecure") // goMem reads the Go runtime's figures over plain HTTP
	}
	ns := api.Namespace(t)
	web := api.Service(t, ns, "web", false, corev1.IPv4Protocol)
	tp.Endpoints(t, web, 1, 2, 3)
	ip := api.IPs(t, web, 1)[0]
	tp.Rtr.WaitRoute(t, ip, 15*time.Second, via(1, 2, 3))

	var cut []time.Duration
	for range runs {
		tp.LinkDown(3)
		start := time.Now()
		for {
			if r, _, _ := tp.Rtr.Route(ip + "/32"); len(r.NextHops) == 2 {
				break
			}
			if time.Since(start) > 10*time.Second {
				t.Fatal("node3 never withdrawn")
			}
			time.Sleep(2 * time.Millisecond)
		}
		cut = append(cut, time.Since(start))
		tp.LinkUp(3)
		tp.Rtr.WaitRoute(t, ip, 15*time.Second, via(1, 2, 3))
		time.Sleep(300 * time.Millisecond)
	}

	// The data plane's cost: a pod behind node1 reached through its EIP
	// (router → node1 → DNAT → pod), against a pod behind node1 reached at
	// its own address over the same hops (the router routes it to node1).
	one := api.Service(t, ns, "one", true, corev1.IPv4Protocol)
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: "one-1", Labels: map[string]string{discoveryv1.LabelServiceName: "one"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(""), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](8080)}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{cluster.PodIP(1, 0)}, NodeName: ptr.To("node1"),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
	}
	api.Create(t, es)
	oneIP := api.IPs(t, one, 1)[0]
	tp.Rtr.WaitRoute(t, oneIP, 15*time.Second, via(1))
	// The direct runs go to the other pod of node1: the same hops and the
	// same kind of pod, but not the same server sockets. Sharing one would
	// mix the two paths' TCP timestamps (Linux offsets them per address
	// pair) on reused ports, and the pod's TIME_WAIT would answer a reused
	// port's SYN with an ACK that conntrack can only call invalid.
	mustExec(t, tp.Rtr, "ip", "route", "add", cluster.PodIP(1, 1)+"/32", "via", nodeIP(1))
	eip, direct := net.JoinHostPort(oneIP, "80"), net.JoinHostPort(cluster.PodIP(1, 1), "8080")
	type result struct {
		eip, direct       float64
		eipFail, directFl int64
	}
	measure := func(keepAlive bool) result {
		var r result
		// Alternate to spread the machine's noise over both.
		for range 3 {
			n, f := tp.rps(t, direct, keepAlive, 2*time.Second)
			r.direct, r.directFl = r.direct+n, r.directFl+f
			n, f = tp.rps(t, eip, keepAlive, 2*time.Second)
			r.eip, r.eipFail = r.eip+n, r.eipFail+f
		}
		r.eip, r.direct = r.eip/3, r.direct/3
		return r
	}
	fresh, kept := measure(false), measure(true)
	ctStats, _ := tp.Nodes[0].Exec(context.Background(), "cat", "/proc/net/stat/nf_conntrack")
	t.Logf("node1 conntrack statistics after the runs (hex, one row per CPU):\n%s", ctStats)

	// Agent memory with 1,000 Services (two endpoints each) programmed.
	var rss0 []string
	for i, p := range tp.Agents {
		rss0 = append(rss0, fmt.Sprintf("node%d %s", i+1, vmRSS(t, p.Pid())))
	}
	api.Create(t, &v1alpha1.EIPPool{ObjectMeta: metav1.ObjectMeta{Name: "bench"}, Spec: v1alpha1.EIPPoolSpec{Addresses: []string{"10.200.0.0/20"}}})
	const many = 1000
	for i := range many {
		s := testenv.LoadBalancer(ns, fmt.Sprintf("m%04d", i))
		s.Annotations = map[string]string{v1alpha1.AnnotationPool: "bench"}
		api.Create(t, s)
		tp.Endpoints(t, s, 1, 2)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		out, err := tp.Nodes[0].Exec(context.Background(), "nft", "list", "map", "inet", "eiplb", "count4")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Count(out, "10.200.") >= many {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node1 programmed %d of %d Services", strings.Count(out, "10.200."), many)
		}
		time.Sleep(500 * time.Millisecond)
	}
	var rss []string
	for i, p := range tp.Agents {
		rss = append(rss, fmt.Sprintf("node%d %s", i+1, vmRSS(t, p.Pid())))
	}
	t.Logf("node1 agent's Go memory: %s", tp.goMem(t, tp.Nodes[0]))

	fmt.Printf("\n| measure (%d runs) | p50 | p99 | max | target |\n| --- | --- | --- | --- | --- |\n", runs)
	fmt.Printf("| node link cut → next hop gone from the router FIB (ms) | %s | %s | %s | p99 < 1000 |\n",
		ms(pct(cut, 0.5)), ms(pct(cut, 0.99)), ms(slices.Max(cut)))
	fmt.Printf("\n| requests/s, 8 clients | through the EIP | straight to the pod | data-plane cost | target | timed out (EIP / direct) |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, row := range []struct {
		name string
		r    result
	}{{"new connection per request", fresh}, {"keep-alive connections", kept}} {
		fmt.Printf("| %s | %.0f | %.0f | %.1f %% | < 10 %% | %d / %d |\n", row.name, row.r.eip, row.r.direct, 100*(1-row.r.eip/row.r.direct), row.r.eipFail, row.r.directFl)
	}
	fmt.Printf("\n| agent memory (VmRSS) | with 3 Services | with %d Services | target |\n| --- | --- | --- | --- |\n", many+3)
	fmt.Printf("| | %s | %s | ≤ 40 MiB at 1,000 |\n", strings.Join(rss0, ", "), strings.Join(rss, ", "))
}

// goMem reads the Go runtime's memory figures from an agent's metrics.
func (tp topo) goMem(t *testing.T, node *netlab.NS) string {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) { return node.Dial(ctx, network, a) }}}
	resp, err := c.Get("http://127.0.0.1:9475/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		for _, m := range []string{"go_memstats_heap_inuse_bytes ", "go_memstats_heap_alloc_bytes ", "go_memstats_sys_bytes ", "go_memstats_stack_inuse_bytes ", "go_gc_gogc_percent ", "go_gc_gomemlimit_bytes "} {
			if strings.HasPrefix(l, m) {
				out = append(out, l)
			}
		}
	}
	return strings.Join(out, "; ")
}

// vmRSS reports the resident memory of a process and its split between
// anonymous memory (heap, stacks) and file pages (the binary's code,
// shared and reclaimable).
func vmRSS(t *testing.T, pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	kb := map[string]int{}
	for _, l := range strings.Split(string(b), "\n") {
		for _, k := range []string{"VmRSS", "RssAnon", "RssFile"} {
			if v, ok := strings.CutPrefix(l, k+":"); ok {
				var n int
				fmt.Sscan(strings.TrimSpace(v), &n)
				kb[k] = n
			}
		}
	}
	mib := func(k string) string { return fmt.Sprintf("%.1f", float64(kb[k])/1024) }
	return fmt.Sprintf("%s MiB (anon %s, file %s)", mib("VmRSS"), mib("RssAnon"), mib("RssFile"))
}

// rps runs 8 concurrent clients against addr for d and returns requests
// per second and failed requests. Thousands of new connections a second
// from one client address reuse source ports while the server side still
// holds the old connection in TIME_WAIT; more than 1 % failed fails the
// test.
func (tp topo) rps(t *testing.T, addr string, keepAlive bool, d time.Duration) (float64, int64) {
	t.Helper()
	tr := &http.Transport{
		DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 8,
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) { return tp.Client.Dial(ctx, network, a) },
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	var n, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				resp, err := c.Get("http://" + addr + "/")
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		t.Logf("%d of %d requests to %s failed, first: %v", f, f+n.Load(), addr, firstErr.Load())
		if f*100 > n.Load() {
			t.Fatalf("more than 1 %% of the requests failed")
		}
	}
	return float64(n.Load()) / d.Seconds(), failed.Load()
}
