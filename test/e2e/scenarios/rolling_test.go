//go:build privileged

package scenarios_test

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/eiplb/eiplb/test/e2e/cluster"
)

// rollingUpdate replaces every pod of a Service one at a time across the
// nodes (cluster.Lab.RollOut) under a steady loop of new connections from
// the client and from inside the cluster. No request may fail.
func rollingUpdate(t *testing.T, l *cluster.Lab, ns string, local bool) {
	name := "roll-cluster"
	if local {
		name = "roll-local"
	}
	svc := api.Service(t, ns, name, local, corev1.IPv4Protocol)
	old := l.EndpointPods(t, svc, [2]int{1, 0}, [2]int{2, 0}, [2]int{3, 0})
	ip := api.IPs(t, svc, 1)[0]
	l.Rtr.WaitRoute(t, ip, 15*time.Second, via(1, 2, 3))
	r := l.RollOut(t, svc, ip, old)
	t.Log(r)
	for _, f := range r.Failed {
		if r.InFlight(f.At) {
			t.Logf("request started at %s, in flight when the router's next hops changed: %v", f.At.Format("15:04:05.000"), f.Err)
		}
	}
	if len(r.Unexplained()) != 0 || r.OK < 100 || r.InOK < 100 {
		t.Errorf("%v", r)
	}
	l.Rtr.WaitRoute(t, ip, 10*time.Second, via(1, 2, 3))
	for pod := range answers(t, l, ip, 80, 30) {
		if !strings.HasSuffix(pod, "1") {
			t.Errorf("%s answered after the rollout, want only the new pods pod11, pod21, pod31", pod)
		}
	}
}
