//go:build privileged

package scenarios_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/eiplb/eiplb/test/e2e/cluster"
)

// preStop is how long a terminating pod keeps serving before its container
// exits: the preStop delay a Deployment behind any load balancer needs, so
// that every node has stopped sending it new connections first.
const preStop = time.Second

// rollingUpdate replaces every pod of a Service one at a time across the
// nodes, as a Deployment's rolling update with maxSurge 1 does, under a
// steady loop of new connections from the client: the new pod (on the
// node's other pod namespace, so a new address) is created and Ready; the
// old one is deleted (terminating, still serving) and, after preStop, its
// server shuts down gracefully and the pod is force-deleted as the kubelet
// does. No request may fail.
func rollingUpdate(t *testing.T, l *cluster.Lab, ns string, local bool) {
	name := "roll-cluster"
	if local {
		name = "roll-local"
	}
	svc := api.Service(t, ns, name, local, corev1.IPv4Protocol)
	old := l.EndpointPods(t, svc, [2]int{1, 0}, [2]int{2, 0}, [2]int{3, 0})
	ip := api.IPs(t, svc, 1)[0]
	l.Rtr.WaitRoute(t, ip, 15*time.Second, via(1, 2, 3))
	defer func() {
		for i := 1; i <= 3; i++ {
			l.StartServing(i, 0)
		}
	}()

	loop := l.Steady(ip, 80)
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	var steps []string
	for k, i := range []int{1, 2, 3} {
		s := time.Now()
		l.EndpointPods(t, svc, [2]int{i, 1}) // returns once it is a ready endpoint
		api.TerminatePod(t, svc, old[k])     // returns once it is terminating in the slices
		time.Sleep(preStop)
		l.StopServing(i, 0)
		api.ForcePod(t, svc, old[k])
		steps = append(steps, fmt.Sprintf("%s→%s %v", cluster.PodName(i, 0), cluster.PodName(i, 1), time.Since(s).Round(time.Millisecond)))
	}
	took := time.Since(start)
	time.Sleep(300 * time.Millisecond)
	ok, failed := loop.Finish()
	t.Logf("rolled 3 pods in %v (%s); %d requests, %s", took.Round(time.Millisecond), strings.Join(steps, ", "), ok+len(failed), cluster.Summary(failed))
	if len(failed) != 0 || ok < 100 {
		t.Errorf("%d requests, %s", ok+len(failed), cluster.Summary(failed))
	}
	l.Rtr.WaitRoute(t, ip, 10*time.Second, via(1, 2, 3))
	for pod := range answers(t, l, ip, 80, 30) {
		if !strings.HasSuffix(pod, "1") {
			t.Errorf("%s answered after the rollout, want only the new pods pod11, pod21, pod31", pod)
		}
	}
}
