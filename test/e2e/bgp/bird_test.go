//go:build privileged

package bgp_test

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/eiplb/eiplb/test/netlab"
)

// TestBIRDECMP: the same manager gives BIRD 2 a 3-way ECMP route (ADD-PATH
// receive, merged paths in the kernel), so we are not tuned to FRR.
func TestBIRDECMP(t *testing.T) {
	tp := newTopo(t)
	tp.lab.StartBIRD(tp.rtr, `router id 192.168.100.1;
protocol device {}
protocol kernel {
  ipv4 { export all; };
  merge paths on;
}
protocol bgp eiplb {
  local 192.168.100.1 as 65000;
  neighbor 192.168.100.11 as 65001;
  passive on;
  ipv4 { import all; export none; add paths rx; };
}
`)
	basics(t)
	api.StartManager(t, tp.nodes[0], "node1", "192.168.100.11", "--leader-elect=false")
	ns := namespace(t)
	ip := ips(t, service(t, ns, "web", false, corev1.IPv4Protocol), 1)[0]
	tp.rtr.WaitRoute(t, ip, 15*time.Second, netlab.Via("192.168.100.11", "192.168.100.12", "192.168.100.13"))
}
