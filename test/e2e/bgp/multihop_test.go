//go:build privileged

package bgp_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/test/netlab"
)

// The loopback address the manager peers from, and the router's address,
// two hops away (node1 → mid → rtr).
const (
	mhSource = "10.10.0.11"
	mhRouter = "192.168.102.2"
)

// TestFRRMultihopFromLoopback: a manager whose router is two hops away
// peers from its loopback address (sourceAddress, or sourceInterface "lo"),
// with eBGP multihop and TCP MD5; the router, configured for that address
// only, establishes the session and installs the Service's route. The
// router is passive (docs/bgp.md). "router active" is the same without
// `passive`, kept to measure what that costs (it logs the setup time), and
// "router active, manager listening" is the alternative for a router that
// can't be passive (--bgp-listen-port=179).
func TestFRRMultihopFromLoopback(t *testing.T) {
	srcAddr := func(s *v1alpha1.BGPPeerSpec) { s.SourceAddress = mhSource }
	for _, tc := range []struct {
		name    string
		source  func(*v1alpha1.BGPPeerSpec)
		passive bool
		args    []string
	}{
		{"sourceAddress", srcAddr, true, nil},
		{"sourceInterface lo", func(s *v1alpha1.BGPPeerSpec) { s.SourceInterface = "lo" }, true, nil},
		{"router active", srcAddr, false, nil},
		{"router active, manager listening", srcAddr, false, []string{"--bgp-listen-port=179"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lab := netlab.New(t)
			node, mid, rtr := lab.Namespace("node1"), lab.Namespace("mid"), lab.Namespace("rtr")
			lab.Link(node, "192.168.100.11/24", mid, "192.168.100.1/24")
			lab.Link(mid, "192.168.102.1/24", rtr, mhRouter+"/24")
			for _, c := range [][]string{
				{node.Name, "ip", "addr", "add", mhSource + "/32", "dev", "lo"},
				{node.Name, "ip", "route", "add", "default", "via", "192.168.100.1"},
				{rtr.Name, "ip", "route", "add", mhSource + "/32", "via", "192.168.102.1"},
				{rtr.Name, "ip", "route", "add", "192.168.100.0/24", "via", "192.168.102.1"},
				{mid.Name, "ip", "route", "add", mhSource + "/32", "via", "192.168.100.11"},
			} {
				ns := map[string]*netlab.NS{node.Name: node, mid.Name: mid, rtr.Name: rtr}[c[0]]
				if out, err := ns.Exec(ctx, c[1:]...); err != nil {
					t.Fatalf("%v: %s", err, out)
				}
			}
			extra := []string{"ebgp-multihop 2", "password s3cret-pw"}
			conf := frrConfig([]string{mhSource}, extra...)
			if !tc.passive {
				conf = strings.ReplaceAll(conf, " neighbor "+mhSource+" passive\n", "")
			}
			frr := lab.StartFRR(rtr, conf)
			create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "eiplb-system", Name: "rtr-md5"}, Data: map[string][]byte{"password": []byte("s3cret-pw")}})
			basics(t, func(p *v1alpha1.BGPPeer) {
				p.Spec.PeerAddress = mhRouter
				p.Spec.EBGPMultihop = ptr.To[int32](2)
				p.Spec.PasswordSecretRef = &v1alpha1.SecretKeyRef{Name: "rtr-md5", Key: "password"}
				tc.source(&p.Spec)
			})
			start := time.Now()
			api.StartManager(t, node, "node1", "192.168.100.11", append([]string{"--leader-elect=false"}, tc.args...)...)

			// FRR accepts the session only from its neighbor, the loopback
			// address: established at all means from it; its ends say so too.
			eventually(t, 30*time.Second, func() string {
				if n := mhNeighbor(t, frr); n.State != "Established" || n.Foreign != mhSource || n.Local != mhRouter {
					return fmt.Sprintf("FRR's session with %s: %+v, want Established from %s to %s", mhSource, n, mhSource, mhRouter)
				}
				return ""
			})
			eventually(t, 10*time.Second, func() string {
				p := &v1alpha1.BGPPeer{}
				must(t, api.Client.Get(ctx, client.ObjectKey{Name: "rtr"}, p))
				if len(p.Status.Sessions) != 1 || p.Status.Sessions[0].State != "Established" {
					return fmt.Sprintf("manager's sessions: %+v", p.Status.Sessions)
				}
				return ""
			})

			ip := ips(t, service(t, namespace(t), "web", false, corev1.IPv4Protocol), 1)[0]
			// The router resolves the three node next hops through mid.
			rtr.WaitRoute(t, ip, 30*time.Second, netlab.Via("192.168.102.1"))
			n := mhNeighbor(t, frr)
			t.Logf("route in the router's FIB %s after the manager started (router passive: %v, manager %v); FRR's session: %d established, %d dropped",
				time.Since(start).Round(10*time.Millisecond), tc.passive, tc.args, n.Established, n.Dropped)
			if tc.passive && (n.Established != 1 || n.Dropped != 0) {
				t.Errorf("the first session did not stay up: FRR counts %d established, %d dropped", n.Established, n.Dropped)
			}
			var route struct {
				Paths []struct {
					NextHops []struct {
						IP string `json:"ip"`
					} `json:"nexthops"`
				} `json:"paths"`
			}
			must(t, frr.VtyshJSON("show bgp ipv4 unicast "+ip, &route))
			got := map[string]bool{}
			for _, p := range route.Paths {
				for _, nh := range p.NextHops {
					got[nh.IP] = true
				}
			}
			for _, nh := range []string{"192.168.100.11", "192.168.100.12", "192.168.100.13"} {
				if !got[nh] {
					t.Errorf("FRR's paths for %s lack next hop %s: %+v", ip, nh, route)
				}
			}
		})
	}
}

// frrNeighbor is FRR's view of a neighbor's session.
type frrNeighbor struct {
	State       string `json:"bgpState"`
	Established int    `json:"connectionsEstablished"`
	Dropped     int    `json:"connectionsDropped"`
	Local       string `json:"hostLocal"`
	Foreign     string `json:"hostForeign"`
}

func mhNeighbor(t *testing.T, frr *netlab.FRR) frrNeighbor {
	var nbr map[string]frrNeighbor
	if err := frr.VtyshJSON("show bgp neighbors "+mhSource, &nbr); err != nil {
		t.Logf("vtysh: %v", err)
	}
	return nbr[mhSource]
}
