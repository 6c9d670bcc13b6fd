//go:build privileged

package bgp_test

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/test/netlab"
)

// TestFRRAPIOutageElected: an elected manager, as deployed (leader
// election on), cut off the API server for 2, 10 and 30 s keeps running
// and keeps its routes at FRR through each outage; once the API server is
// back it leads again and a new Service gets an address and a route, while
// the first Service keeps its own. The manager used to exit about 2 s into
// an outage ("leader election lost"), taking its BGP session with it.
func TestFRRAPIOutageElected(t *testing.T) {
	tp := newTopo(t)
	tp.lab.StartFRR(tp.rtr, frrConfig([]string{"192.168.100.11"}))
	basics(t)
	mgr := api.StartManager(t, tp.nodes[0], "node1", "192.168.100.11")
	ns := namespace(t)
	web := service(t, ns, "web", false, corev1.IPv4Protocol)
	ip := ips(t, web, 1)[0]
	all := netlab.Via("192.168.100.11", "192.168.100.12", "192.168.100.13")
	tp.rtr.WaitRoute(t, ip, 10*time.Second, all)

	for i, cut := range []time.Duration{2 * time.Second, 10 * time.Second, 30 * time.Second} {
		mgr.API.Cut()
		start := time.Now()
		for time.Since(start) < cut {
			if mgr.Wait(10 * time.Millisecond) {
				t.Fatalf("the manager exited %v into a %v API outage", time.Since(start).Round(time.Millisecond), cut)
			}
			r, found, err := tp.rtr.Route(ip)
			must(t, err)
			if !all(r, found) {
				t.Fatalf("route changed %v into a %v API outage: %v (found %v)", time.Since(start).Round(time.Millisecond), cut, r, found)
			}
		}
		mgr.API.Restore()
		back := time.Now()
		next := service(t, ns, fmt.Sprintf("after-%d", i), false, corev1.IPv4Protocol)
		nip := ips(t, next, 1)[0]
		allocated := time.Since(back)
		tp.rtr.WaitRoute(t, nip, 10*time.Second, all)
		t.Logf("API cut %v: after it came back, a new Service had its address in %v and its route at FRR in %v",
			cut, allocated.Round(time.Millisecond), time.Since(back).Round(time.Millisecond))
		must(t, api.Client.Get(ctx, client.ObjectKeyFromObject(web), web))
		if in := web.Status.LoadBalancer.Ingress; len(in) != 1 || in[0].IP != ip {
			t.Fatalf("web changed address: %v, had %s", in, ip)
		}
		if r, found, err := tp.rtr.Route(ip); err != nil || !all(r, found) {
			t.Fatalf("web's route: %v (found %v, %v)", r, found, err)
		}
	}
}
