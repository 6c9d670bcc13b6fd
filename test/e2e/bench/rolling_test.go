//go:build privileged

package bench_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/eiplb/eiplb/test/e2e/cluster"
)

// TestBenchRolling: the failed requests of a rolling update of every pod
// of a Cluster and of a Local Service (cluster.Lab.RollOut, real
// EndpointSlices, terminating phase included), from outside and from
// inside the cluster, with eiplb's data plane and with kube-proxy doing
// the DNAT (managers at --ip-mode=VIP, agents at --dataplane=kube-proxy).
// Its own table, after make bench's main one.
func TestBenchRolling(t *testing.T) {
	mode := os.Getenv("EIPLB_BENCH")
	if mode == "" {
		t.Skip("benchmark: run with EIPLB_BENCH=1 (make bench), or EIPLB_BENCH=quick for a smoke run")
	}
	rounds := 3
	if mode == "quick" {
		rounds = 1
	}
	var rep report
	for _, m := range []struct {
		name      string
		kubeProxy bool
	}{{"eiplb", false}, {"kube-proxy (ipMode VIP)", true}} {
		t.Run(m.name, func(t *testing.T) {
			opts := cluster.LabOptions{KubeProxy: "nftables"}
			if m.kubeProxy {
				opts.ManagerArgs = []string{"--ip-mode=VIP"}
				opts.AgentArgs = []string{"--dataplane=kube-proxy"}
			}
			l := cluster.NewLab(t, api, opts)
			l.Up()
			ns := api.Namespace(t)
			for _, local := range []bool{false, true} {
				policy := "Cluster"
				if local {
					policy = "Local"
				}
				var sum cluster.Rollout
				unexplained := 0
				for k := range rounds {
					svc := api.Service(t, ns, fmt.Sprintf("roll-%s-%d", map[bool]string{false: "cluster", true: "local"}[local], k), local, corev1.IPv4Protocol)
					old := l.EndpointPods(t, svc, [2]int{1, 0}, [2]int{2, 0}, [2]int{3, 0})
					ip := api.IPs(t, svc, 1)[0]
					l.Rtr.WaitRoute(t, ip, 15*time.Second, cluster.Via(false, 1, 2, 3))
					l.WaitProgrammed(t, ip, m.kubeProxy)
					r := l.RollOut(t, svc, ip, old)
					t.Log(r)
					sum.OK += r.OK
					sum.Failed = append(sum.Failed, r.Failed...)
					sum.InOK += r.InOK
					sum.InFailed = append(sum.InFailed, r.InFailed...)
					unexplained += len(r.Unexplained())
					if err := api.Client.Delete(t.Context(), svc); err != nil {
						t.Fatal(err)
					}
				}
				rep.text(fmt.Sprintf("rolling update of 3 pods ×%d, %s, %s: failed requests from outside / from a node (not in flight at a next-hop change)", rounds, policy, m.name),
					fmt.Sprintf("%d of %d / %d of %d (%d)", len(sum.Failed), sum.OK+len(sum.Failed), len(sum.InFailed), sum.InOK+len(sum.InFailed), unexplained), "0")
			}
		})
	}
	rep.print(t, mode+", rolling updates")
}
