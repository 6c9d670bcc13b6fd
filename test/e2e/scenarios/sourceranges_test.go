//go:build privileged

package scenarios_test

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/pkg/testenv"
	"github.com/eiplb/eiplb/test/e2e/cluster"
	"github.com/eiplb/eiplb/test/netlab"
)

// reach waits (bounded) until a request from ns to ip:80 is answered
// (want) or gets no answer (!want), then checks that three more agree.
func reach(t *testing.T, ns *netlab.NS, ip string, want bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := cluster.GetFrom(ns, ip, 80)
		if (err == nil) == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s to %s: answered %v (%v) for 10 s, want %v", ns.Name, ip, err == nil, err, want)
		}
	}
	for range 3 {
		if _, err := cluster.GetFrom(ns, ip, 80); (err == nil) != want {
			t.Errorf("%s to %s: answered %v (%v), want %v", ns.Name, ip, err == nil, err, want)
		}
	}
}

// sourceRanges: a Service's loadBalancerSourceRanges decide who reaches
// its EIP, through the API server, the managers and every agent: the
// client beyond the router, a pod on a node; invalid ranges are refused by
// the API server; the other Services are not disturbed.
func sourceRanges(t *testing.T, l *cluster.Lab, ns string, webIP string) {
	stopWatch := routeStays(t, l, webIP, via(1, 2, 3))
	loop := l.Steady(webIP, 80)
	svc := api.Service(t, ns, "restricted", false, corev1.IPv4Protocol)
	l.Endpoints(t, svc, 1, 2, 3)
	ip := api.IPs(t, svc, 1)[0]
	l.Rtr.WaitRoute(t, ip, 15*time.Second, via(1, 2, 3))
	pod := l.Pods[0][0] // on node1
	setRanges := func(ranges ...string) error {
		if err := api.Client.Get(t.Context(), client.ObjectKeyFromObject(svc), svc); err != nil {
			return err
		}
		svc.Spec.LoadBalancerSourceRanges = ranges
		return api.Client.Update(t.Context(), svc)
	}

	testenv.Must(t, setRanges(cluster.ClientIP+"/32"))
	reach(t, l.Client, ip, true)
	reach(t, pod, ip, false)

	testenv.Must(t, setRanges("198.51.100.0/24", "10.244.0.0/16"))
	reach(t, l.Client, ip, false)
	reach(t, pod, ip, true)

	err := setRanges("10.244.0.0/16", "office")
	t.Logf("invalid range: %v", err)
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "loadbalancersourceranges") {
		t.Errorf("invalid range accepted or error unclear: %v", err)
	}

	testenv.Must(t, setRanges())
	reach(t, l.Client, ip, true)
	reach(t, pod, ip, true)

	stopWatch()
	ok, failed := loop.Finish()
	if len(failed) != 0 {
		t.Errorf("requests to web failed meanwhile: %s", cluster.Summary(failed))
	}
	t.Logf("%d requests to web meanwhile, none failed", ok)
}

// inClusterLocal: a pod and a host process on a node without an endpoint
// of a Local Service reach its EIP (served by the endpoints elsewhere, as
// with kube-proxy), while the node is not a next hop for outside clients.
func inClusterLocal(t *testing.T, l *cluster.Lab, ns string) {
	svc := api.Service(t, ns, "local-in-cluster", true, corev1.IPv4Protocol)
	l.EndpointPods(t, svc, [2]int{1, 0})
	ip := api.IPs(t, svc, 1)[0]
	l.Rtr.WaitRoute(t, ip, 15*time.Second, via(1))
	reach(t, l.Client, ip, true)
	for _, from := range []*netlab.NS{l.Pods[2][0], l.Nodes[2]} { // on node3
		reach(t, from, ip, true)
		out, err := cluster.GetFrom(from, ip, 80)
		if err != nil || !strings.HasPrefix(out, cluster.PodName(1, 0)+" ") {
			t.Errorf("%s to the Local EIP: %q %v, want %s", from.Name, out, err, cluster.PodName(1, 0))
		}
	}
}
