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
	tp.lab.StartFRR(tp.rtr, frrConfig())
	api.Basics(t)
	tp.startManagers()
	for i := 1; i <= 3; i++ {
		tp.startAgent(i)
	}
	ns := api.Namespace(t)
	web := api.Service(t, ns, "web", false, corev1.IPv4Protocol)
	endpoints(t, web, 1, 2, 3)
	ip := api.IPs(t, web, 1)[0]
	tp.rtr.WaitRoute(t, ip, 15*time.Second, via(1, 2, 3))

	var cut []time.Duration
	dev := tp.nodes[2].DevTo(tp.rtr)
	for range runs {
		mustExec(t, tp.nodes[2], "ip", "link", "set", dev, "down")
		start := time.Now()
		for {
			if r, _, _ := tp.rtr.Route(ip + "/32"); len(r.NextHops) == 2 {
				break
			}
			if time.Since(start) > 10*time.Second {
				t.Fatal("node3 never withdrawn")
			}
			time.Sleep(2 * time.Millisecond)
		}
		cut = append(cut, time.Since(start))
		mustExec(t, tp.nodes[2], "ip", "link", "set", dev, "up")
		tp.rtr.WaitRoute(t, ip, 15*time.Second, via(1, 2, 3))
		time.Sleep(300 * time.Millisecond)
	}

	// The data plane's cost: one pod behind node1, reached through its EIP
	// (router → node1 → DNAT → pod) or at its own address over the same
	// hops (the router routes the pod network to node1 for this).
	one := api.Service(t, ns, "one", true, corev1.IPv4Protocol)
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: "one-1", Labels: map[string]string{discoveryv1.LabelServiceName: "one"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(""), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](8080)}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{podIP(1, 0)}, NodeName: ptr.To("node1"),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
	}
	api.Create(t, es)
	oneIP := api.IPs(t, one, 1)[0]
	tp.rtr.WaitRoute(t, oneIP, 15*time.Second, via(1))
	mustExec(t, tp.rtr, "ip", "route", "add", podIP(1, 0)+"/32", "via", nodeIP(1))
	eip, direct := net.JoinHostPort(oneIP, "80"), net.JoinHostPort(podIP(1, 0), "8080")
	type result struct{ eip, direct float64 }
	measure := func(keepAlive bool) result {
		var r result
		// Alternate to spread the machine's noise over both.
		for range 3 {
			r.direct += tp.rps(t, direct, keepAlive, 2*time.Second)
			r.eip += tp.rps(t, eip, keepAlive, 2*time.Second)
		}
		return result{r.eip / 3, r.direct / 3}
	}
	fresh, kept := measure(false), measure(true)

	// Agent memory with 1,000 Services (two endpoints each) programmed.
	api.Create(t, &v1alpha1.EIPPool{ObjectMeta: metav1.ObjectMeta{Name: "bench"}, Spec: v1alpha1.EIPPoolSpec{Addresses: []string{"10.200.0.0/20"}}})
	const many = 1000
	for i := range many {
		s := testenv.LoadBalancer(ns, fmt.Sprintf("m%04d", i))
		s.Annotations = map[string]string{v1alpha1.AnnotationPool: "bench"}
		api.Create(t, s)
		endpoints(t, s, 1, 2)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		out, err := tp.nodes[0].Exec(context.Background(), "nft", "list", "map", "inet", "eiplb", "count4")
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
	for i, p := range tp.agent {
		rss = append(rss, fmt.Sprintf("node%d %s", i+1, vmRSS(t, p.Pid())))
	}

	fmt.Printf("\n| measure (%d runs) | p50 | p99 | max | target |\n| --- | --- | --- | --- | --- |\n", runs)
	fmt.Printf("| node link cut → next hop gone from the router FIB (ms) | %s | %s | %s | p99 < 1000 |\n",
		ms(pct(cut, 0.5)), ms(pct(cut, 0.99)), ms(slices.Max(cut)))
	fmt.Printf("\n| requests/s, 8 clients | through the EIP | straight to the pod | data-plane cost | target |\n| --- | --- | --- | --- | --- |\n")
	for _, row := range []struct {
		name string
		r    result
	}{{"new connection per request", fresh}, {"keep-alive connections", kept}} {
		fmt.Printf("| %s | %.0f | %.0f | %.1f %% | < 10 %% |\n", row.name, row.r.eip, row.r.direct, 100*(1-row.r.eip/row.r.direct))
	}
	fmt.Printf("\n| agent memory (VmRSS) with %d Services programmed | %s | target ≤ 40 MiB |\n", many+3, strings.Join(rss, ", "))
}

func vmRSS(t *testing.T, pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			var kb int
			fmt.Sscan(strings.TrimSpace(v), &kb)
			return fmt.Sprintf("%.1f MiB", float64(kb)/1024)
		}
	}
	return "?"
}

// rps runs 8 concurrent clients against addr for d and returns requests
// per second; any failure fails the test.
func (tp *topo) rps(t *testing.T, addr string, keepAlive bool, d time.Duration) float64 {
	t.Helper()
	tr := &http.Transport{
		DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 8,
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) { return tp.client.Dial(ctx, network, a) },
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	var n, failed atomic.Int64
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
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d requests to %s failed", failed.Load(), addr)
	}
	return float64(n.Load()) / d.Seconds()
}
