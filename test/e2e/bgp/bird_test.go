//go:build privileged

package bgp_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/eiplb/eiplb/test/e2e/cluster"
	"github.com/eiplb/eiplb/test/netlab"
)

// TestBIRDECMP: BIRD 2 running docs/routers/bird.conf, as the docs give it,
// peers with two manager replicas configured by config/samples (MD5
// password, BFD, graceful restart, the sample pools) and installs a 3-way
// ECMP route for each family of a dual-stack Service (ADD-PATH receive,
// merged paths in the kernel), so we are not tuned to FRR and the BIRD
// configuration of the docs works as written.
func TestBIRDECMP(t *testing.T) {
	tp := newTopo(t)
	conf, err := os.ReadFile(cluster.RouterConfigFile("bird.conf"))
	must(t, err)
	bird := tp.lab.StartBIRD(tp.rtr, string(conf))
	api.Nodes(t, 3)
	for _, f := range []string{"eippool.yaml", "bgp.yaml"} {
		api.Apply(t, filepath.Join(cluster.Root(), "config", "samples", f))
	}
	for i := 1; i <= 2; i++ {
		api.StartManager(t, tp.nodes[i-1], cluster.NodeName(i), cluster.NodeIP(i), "--leader-elect=false")
	}
	ns := namespace(t)
	got := ips(t, service(t, ns, "web", false, corev1.IPv4Protocol, corev1.IPv6Protocol), 2)
	for _, ip := range got {
		want := []string{cluster.NodeIP(1), cluster.NodeIP(2), cluster.NodeIP(3)}
		if strings.Contains(ip, ":") {
			want = []string{cluster.NodeIP6(1), cluster.NodeIP6(2), cluster.NodeIP6(3)}
		}
		tp.rtr.WaitRoute(t, ip, 15*time.Second, netlab.Via(want...))
	}
	// Both sessions are protected by BFD, as the sample peer asks.
	eventually(t, 15*time.Second, func() string {
		out, err := bird.Birdc("show", "bfd", "sessions")
		if err != nil {
			return err.Error()
		}
		for i := 1; i <= 2; i++ {
			if !birdBFDUp(out, cluster.NodeIP(i)) {
				return fmt.Sprintf("BIRD BFD session with %s not up:\n%s", cluster.NodeIP(i), out)
			}
		}
		return ""
	})
}

// birdBFDUp reports whether birdc's "show bfd sessions" lists the neighbor ip
// as Up.
func birdBFDUp(out, ip string) bool {
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == ip && f[2] == "Up" {
			return true
		}
	}
	return false
}
