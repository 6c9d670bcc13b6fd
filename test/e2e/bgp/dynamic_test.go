//go:build privileged

package bgp_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/eiplb/eiplb/test/e2e/cluster"
	"github.com/eiplb/eiplb/test/netlab"
)

// dynamicRouter is what the dynamic-neighbor test asks of a router: which
// manager addresses its table has live paths for ip from (not stale ones
// kept for graceful restart), and whether its BFD session with a manager
// is up.
type dynamicRouter struct {
	pathsFrom func(ip string) (map[string]bool, string)
	bfdUp     func(mgr string) bool
}

// TestFRRDynamicNeighbors: FRR running docs/routers/frr-dynamic.conf (`bgp
// listen range` of the node subnet, no neighbor named) takes sessions from
// two managers configured by config/samples (MD5, BFD, graceful restart);
// one replica moves from node1 to node3, and the router accepts the new
// session and routes the EIP by the new replica's paths.
func TestFRRDynamicNeighbors(t *testing.T) {
	tp := newTopo(t)
	frr := tp.lab.StartFRR(tp.rtr, cluster.FRRConfigFile("frr-dynamic.conf"))
	testDynamicNeighbors(t, tp, dynamicRouter{
		pathsFrom: func(ip string) (map[string]bool, string) {
			var out struct {
				Paths []struct {
					Stale bool `json:"stale"`
					Peer  struct {
						PeerID string `json:"peerId"`
					} `json:"peer"`
				} `json:"paths"`
			}
			if err := frr.VtyshJSON("show bgp ipv4 unicast "+ip, &out); err != nil {
				return nil, err.Error()
			}
			from := map[string]bool{}
			for _, p := range out.Paths {
				if !p.Stale {
					from[p.Peer.PeerID] = true
				}
			}
			return from, fmt.Sprintf("%+v", out.Paths)
		},
		bfdUp: func(mgr string) bool {
			var peers []struct {
				Peer   string `json:"peer"`
				Status string `json:"status"`
			}
			if err := frr.VtyshJSON("show bfd peers", &peers); err != nil {
				return false
			}
			for _, p := range peers {
				if p.Peer == mgr && p.Status == "up" {
					return true
				}
			}
			return false
		},
	})
}

// TestBIRDDynamicNeighbors: the same with BIRD 2 running
// docs/routers/bird-dynamic.conf (`neighbor range` of the node subnet).
func TestBIRDDynamicNeighbors(t *testing.T) {
	tp := newTopo(t)
	conf, err := os.ReadFile(cluster.RouterConfigFile("bird-dynamic.conf"))
	must(t, err)
	bird := tp.lab.StartBIRD(tp.rtr, string(conf))
	testDynamicNeighbors(t, tp, dynamicRouter{
		pathsFrom: func(ip string) (map[string]bool, string) {
			out, err := bird.Birdc("show", "route", "for", ip, "all")
			if err != nil {
				return nil, err.Error()
			}
			// Each path: "... unicast [eiplb1 20:01:02.345 from 192.168.100.11] ..."
			from := map[string]bool{}
			for _, line := range strings.Split(out, "\n") {
				if _, rest, ok := strings.Cut(line, " from "); ok {
					if f := strings.FieldsFunc(rest, func(r rune) bool { return r == ']' || r == ' ' }); len(f) > 0 {
						from[f[0]] = true
					}
				}
			}
			return from, out
		},
		bfdUp: func(mgr string) bool {
			out, err := bird.Birdc("show", "bfd", "sessions")
			return err == nil && birdBFDUp(out, mgr)
		},
	})
}

func testDynamicNeighbors(t *testing.T, tp *topo, rtr dynamicRouter) {
	api.Nodes(t, 3)
	for _, f := range []string{"eippool.yaml", "bgp.yaml"} {
		api.Apply(t, filepath.Join(cluster.Root(), "config", "samples", f))
	}
	start := func(i int) *cluster.Process {
		return api.StartManager(t, tp.nodes[i-1], cluster.NodeName(i), cluster.NodeIP(i), "--leader-elect=false")
	}
	mgr1 := start(1)
	start(2)
	ns := namespace(t)
	ip := ips(t, service(t, ns, "web", false, corev1.IPv4Protocol), 1)[0]
	all := netlab.Via(cluster.NodeIP(1), cluster.NodeIP(2), cluster.NodeIP(3))
	tp.rtr.WaitRoute(t, ip, 15*time.Second, all)
	// paths: the router has live paths for ip from exactly the managers
	// want, with BFD up with each.
	paths := func(want ...string) func() string {
		return func() string {
			from, detail := rtr.pathsFrom(ip)
			if len(from) != len(want) {
				return fmt.Sprintf("paths for %s from %v, want from %v: %s", ip, from, want, detail)
			}
			for _, m := range want {
				if !from[m] {
					return fmt.Sprintf("paths for %s from %v, want from %v: %s", ip, from, want, detail)
				}
				if !rtr.bfdUp(m) {
					return "BFD with " + m + " not up"
				}
			}
			return ""
		}
	}
	eventually(t, 15*time.Second, paths(cluster.NodeIP(1), cluster.NodeIP(2)))

	// The replica of node1 stops (a rollout, a drain) and the Deployment
	// starts it on node3, an address no router line names. With graceful
	// restart (the sample peer) FRR keeps the stopped replica's paths as
	// stale until its restart time; BIRD drops them with the dynamic
	// protocol. Either way none is live.
	mgr1.Signal(syscall.SIGTERM)
	if !mgr1.Wait(15 * time.Second) {
		t.Fatal("the manager on node1 did not stop")
	}
	eventually(t, 15*time.Second, paths(cluster.NodeIP(2)))
	moved := time.Now()
	start(3)
	eventually(t, 20*time.Second, paths(cluster.NodeIP(2), cluster.NodeIP(3)))
	t.Logf("the router took the replica on node3 and its paths %v after it started", time.Since(moved).Round(time.Millisecond))
	tp.rtr.WaitRoute(t, ip, 5*time.Second, all)
}
