//go:build privileged

package bgp_test

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eiplb/eiplb/pkg/testenv"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/test/e2e/cluster"
	"github.com/eiplb/eiplb/test/netlab"
)

// TestFRRECMP: one manager session gives FRR a 3-way ECMP route in its
// kernel FIB; NotReady and cordoned nodes leave it; a Local Service is
// weighted by endpoints; IPv6 works; a Service delete removes the route.
func TestFRRECMP(t *testing.T) {
	tp := newTopo(t)
	tp.lab.StartFRR(tp.rtr, frrConfig([]string{"192.168.100.11"}))
	nodes := basics(t)
	api.StartManager(t, tp.nodes[0], "node1", "192.168.100.11", "--leader-elect=false")
	ns := namespace(t)

	web := service(t, ns, "web", false, corev1.IPv4Protocol, corev1.IPv6Protocol)
	addrs := ips(t, web, 2)
	v4, v6 := addrs[0], addrs[1]
	tp.rtr.WaitRoute(t, v4, 10*time.Second, netlab.Via("192.168.100.11", "192.168.100.12", "192.168.100.13"))
	tp.rtr.WaitRoute(t, v6, 10*time.Second, netlab.Via("fd00:100::11", "fd00:100::12", "fd00:100::13"))

	t.Run("NotReady node withdrawn", func(t *testing.T) {
		api.SetNodeReady(t, nodes[1], false)
		tp.rtr.WaitRoute(t, v4, 5*time.Second, netlab.Via("192.168.100.11", "192.168.100.13"))
		api.SetNodeReady(t, nodes[1], true)
		tp.rtr.WaitRoute(t, v4, 5*time.Second, netlab.Via("192.168.100.11", "192.168.100.12", "192.168.100.13"))
	})
	t.Run("cordoned node withdrawn", func(t *testing.T) {
		n := nodes[2]
		must(t, api.Client.Get(ctx, client.ObjectKeyFromObject(n), n))
		n.Spec.Unschedulable = true
		must(t, api.Client.Update(ctx, n))
		tp.rtr.WaitRoute(t, v4, 5*time.Second, netlab.Via("192.168.100.11", "192.168.100.12"))
		n.Spec.Unschedulable = false
		must(t, api.Client.Update(ctx, n))
		tp.rtr.WaitRoute(t, v4, 5*time.Second, netlab.Via("192.168.100.11", "192.168.100.12", "192.168.100.13"))
	})
	t.Run("Local weighted by endpoints", func(t *testing.T) {
		local := service(t, ns, "local", true, corev1.IPv4Protocol)
		lip := ips(t, local, 1)[0]
		es := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: "local-1", Labels: map[string]string{discoveryv1.LabelServiceName: "local"}},
			AddressType: discoveryv1.AddressTypeIPv4,
		}
		for i, node := range []string{"node1", "node1", "node1", "node2"} {
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
				Addresses: []string{fmt.Sprintf("10.244.0.%d", i+1)}, NodeName: ptr.To(node),
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			})
		}
		create(t, es)
		r := tp.rtr.WaitRoute(t, lip, 10*time.Second, netlab.Via("192.168.100.11", "192.168.100.12"))
		w := map[string]int{}
		for _, nh := range r.NextHops {
			w[nh.Gateway] = nh.Weight
		}
		// FRR turns link bandwidth into weights out of 100: 3:1 → 75/25.
		if w["192.168.100.11"] != 75 || w["192.168.100.12"] != 25 {
			t.Fatalf("weights %v, want 75 via node1 (3 endpoints) and 25 via node2 (1)", w)
		}
	})
	t.Run("delete removes the route", func(t *testing.T) {
		must(t, api.Client.Delete(ctx, web))
		tp.rtr.WaitRoute(t, v4, 5*time.Second, netlab.Absent)
		tp.rtr.WaitRoute(t, v6, 5*time.Second, netlab.Absent)
	})
}

// TestFRRBFD: BFD comes up on both sides without ever resetting the BGP
// session, and when the manager freezes (its TCP session stays open, only
// BFD can tell) FRR drops the session and the route within a second.
func TestFRRBFD(t *testing.T) {
	tp, frr := bfdTopo(t)
	mgr := api.StartManager(t, tp.nodes[0], "node1", "192.168.100.11", "--leader-elect=false")
	ns := namespace(t)
	ip := ips(t, service(t, ns, "web", false, corev1.IPv4Protocol), 1)[0]
	tp.rtr.WaitRoute(t, ip, 10*time.Second, netlab.Via("192.168.100.11", "192.168.100.12", "192.168.100.13"))
	eventually(t, 10*time.Second, bfdUp(t, frr))
	// FRR replaces its BFD session once BGP is up (it learns the local
	// address and interface then). Had GoBGP's BFD come up with the first
	// one, the replacement would reset the BGP session within a few
	// seconds; none may have.
	time.Sleep(4 * time.Second)
	if n := frrSession(t, frr); n.State != "Established" || n.Established != 1 || n.Dropped != 0 {
		t.Errorf("BGP session flapped while BFD came up: %+v", n)
	}
	if out, err := frr.Vtysh("show bfd peer 192.168.100.11", "show bfd peer 192.168.100.11 counters"); err == nil {
		t.Logf("FRR BFD session:\n%s", out)
	}
	if r, found, _ := tp.rtr.Route(ip); !found || len(r.NextHops) != 3 {
		t.Fatalf("route before the freeze: %v", r)
	}
	mgr.Signal(syscall.SIGSTOP)
	defer mgr.Signal(syscall.SIGCONT)
	start := time.Now()
	tp.rtr.WaitRoute(t, ip, 3*time.Second, netlab.Absent)
	if took := time.Since(start); took > time.Second {
		t.Fatalf("FRR dropped the frozen manager's route after %s, want < 1s", took)
	} else {
		t.Logf("route withdrawn %s after the manager froze", took.Round(time.Millisecond))
	}
}

// TestFRRBFDRestart: when the router's BFD daemon restarts, the session is
// reset once (BFD went silent) and comes back with BFD, without a second
// reset when the router sets its BFD session up again.
func TestFRRBFDRestart(t *testing.T) {
	tp, frr := bfdTopo(t)
	api.StartManager(t, tp.nodes[0], "node1", "192.168.100.11", "--leader-elect=false")
	eventually(t, 15*time.Second, bfdUp(t, frr))
	time.Sleep(4 * time.Second)
	before := frrSession(t, frr)
	frr.RestartDaemon("bfdd")
	eventually(t, 30*time.Second, bfdUp(t, frr))
	time.Sleep(4 * time.Second)
	after := frrSession(t, frr)
	t.Logf("FRR's session before the restart %+v, after %+v", before, after)
	if after.State != "Established" || after.Dropped-before.Dropped > 1 || after.Established-before.Established > 1 {
		t.Errorf("the session was reset more than once: before %+v, after %+v", before, after)
	}
}

// bfdTopo: the router peers with the manager at 192.168.100.11 with BFD
// (100 ms x 3 on both sides).
func bfdTopo(t *testing.T) (*topo, *netlab.FRR) {
	tp := newTopo(t)
	frr := tp.lab.StartFRR(tp.rtr, frrConfig([]string{"192.168.100.11"}, "bfd profile fast"))
	basics(t, func(p *v1alpha1.BGPPeer) {
		p.Spec.BFD = &v1alpha1.BFD{Enabled: true, MinTxInterval: &metav1.Duration{Duration: 100 * time.Millisecond},
			MinRxInterval: &metav1.Duration{Duration: 100 * time.Millisecond}, Multiplier: ptr.To[int32](3)}
	})
	return tp, frr
}

// bfdUp: FRR's BFD session with 192.168.100.11 is up, and the manager
// reports its session Established with BFD Up.
func bfdUp(t *testing.T, frr *netlab.FRR) func() string {
	return func() string {
		out, _ := frr.Vtysh("show bfd peers brief")
		p := &v1alpha1.BGPPeer{}
		must(t, api.Client.Get(ctx, client.ObjectKey{Name: "rtr"}, p))
		if strings.Contains(out, "192.168.100.11") && strings.Contains(out, "up") &&
			len(p.Status.Sessions) == 1 && p.Status.Sessions[0].BFDState == "Up" && p.Status.Sessions[0].State == "Established" {
			return ""
		}
		return fmt.Sprintf("FRR BFD: %s\neiplb: %+v", out, p.Status.Sessions)
	}
}

// bgpCounters are FRR's counts of a neighbor's session.
type bgpCounters struct {
	State       string `json:"bgpState"`
	Established int    `json:"connectionsEstablished"`
	Dropped     int    `json:"connectionsDropped"`
}

func frrSession(t *testing.T, frr *netlab.FRR) bgpCounters {
	var nbr map[string]bgpCounters
	must(t, frr.VtyshJSON("show bgp neighbors 192.168.100.11", &nbr))
	return nbr["192.168.100.11"]
}

// TestFRRMD5: the session comes up with the Secret's password and not with
// a wrong one.
func TestFRRMD5(t *testing.T) {
	for _, tc := range []struct {
		name, routerPassword string
		up                   bool
	}{{"right password", "s3cret-pw", true}, {"wrong password", "other-pw", false}} {
		t.Run(tc.name, func(t *testing.T) {
			tp := newTopo(t)
			frr := tp.lab.StartFRR(tp.rtr, frrConfig([]string{"192.168.100.11"}, "password "+tc.routerPassword))
			create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "eiplb-system", Name: "rtr-md5"}, Data: map[string][]byte{"password": []byte("s3cret-pw")}})
			basics(t, func(p *v1alpha1.BGPPeer) {
				p.Spec.PasswordSecretRef = &v1alpha1.SecretKeyRef{Name: "rtr-md5", Key: "password"}
			})
			mgr := api.StartManager(t, tp.nodes[0], "node1", "192.168.100.11", "--leader-elect=false")
			state := func() string {
				var out map[string]any
				if err := frr.VtyshJSON("show bgp neighbors 192.168.100.11", &out); err != nil {
					return err.Error()
				}
				if n, ok := out["192.168.100.11"].(map[string]any); ok {
					s, _ := n["bgpState"].(string)
					return s
				}
				return fmt.Sprint(out)
			}
			if tc.up {
				eventually(t, 15*time.Second, func() string {
					if s := state(); s != "Established" {
						return "FRR session " + s
					}
					return ""
				})
			} else {
				deadline := time.Now().Add(5 * time.Second)
				for time.Now().Before(deadline) {
					if s := state(); s == "Established" {
						t.Fatal("session established with a wrong password")
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
			_ = mgr
		})
	}
}

// TestFRRGracefulRestart: with graceful restart, FRR keeps the routes while
// the manager is killed and restarted, and the route never leaves its FIB.
func TestFRRGracefulRestart(t *testing.T) {
	tp := newTopo(t)
	frr := tp.lab.StartFRR(tp.rtr, frrConfig([]string{"192.168.100.11"}))
	basics(t, func(p *v1alpha1.BGPPeer) {
		p.Spec.GracefulRestart = &v1alpha1.GracefulRestart{Enabled: true, RestartTime: &metav1.Duration{Duration: 30 * time.Second}}
	})
	mgr := api.StartManager(t, tp.nodes[0], "node1", "192.168.100.11", "--leader-elect=false")
	ns := namespace(t)
	ip := ips(t, service(t, ns, "web", false, corev1.IPv4Protocol), 1)[0]
	all := netlab.Via("192.168.100.11", "192.168.100.12", "192.168.100.13")
	tp.rtr.WaitRoute(t, ip, 10*time.Second, all)

	// Watch the FIB every 5 ms from the kill until the new manager's
	// session is back and has sent its routes.
	mgr.Signal(syscall.SIGKILL)
	if !mgr.Wait(5 * time.Second) {
		t.Fatal("manager did not exit")
	}
	start := time.Now()
	restarted := false
	for time.Since(start) < 15*time.Second {
		r, found, err := tp.rtr.Route(ip)
		must(t, err)
		if !all(r, found) {
			t.Fatalf("route changed %s after the kill: %v (found %v)", time.Since(start).Round(time.Millisecond), r, found)
		}
		if !restarted && time.Since(start) > 500*time.Millisecond {
			api.StartManager(t, tp.nodes[0], "node1", "192.168.100.11", "--leader-elect=false")
			restarted = true
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The new session refreshed the paths: none is left marked stale.
	eventually(t, 10*time.Second, func() string {
		out, err := frr.Vtysh("show bgp ipv4 unicast " + ip + " json")
		if err != nil || !strings.Contains(out, `"paths"`) || strings.Contains(out, `"stale"`) {
			return "FRR paths: " + out
		}
		return ""
	})
}

var must = testenv.Must
var eventually = testenv.Eventually

// TestFRRAPIServerUnreachable: when the manager loses the API server,
// nothing is withdrawn; when it comes back, changes flow again.
func TestFRRAPIServerUnreachable(t *testing.T) {
	tp := newTopo(t)
	tp.lab.StartFRR(tp.rtr, frrConfig([]string{"192.168.100.11"}))
	nodes := basics(t)
	mgr := api.StartManager(t, tp.nodes[0], "node1", "192.168.100.11", "--leader-elect=false")
	ns := namespace(t)
	ip := ips(t, service(t, ns, "web", false, corev1.IPv4Protocol), 1)[0]
	all := netlab.Via("192.168.100.11", "192.168.100.12", "192.168.100.13")
	tp.rtr.WaitRoute(t, ip, 10*time.Second, all)

	mgr.API.Cut()
	// A cordon the manager can't see: the route staying 3-way also proves
	// the cut is real (without it, node3 would leave the route).
	n := nodes[2]
	must(t, api.Client.Get(ctx, client.ObjectKeyFromObject(n), n))
	n.Spec.Unschedulable = true
	must(t, api.Client.Update(ctx, n))
	start := time.Now()
	for time.Since(start) < 8*time.Second {
		r, found, err := tp.rtr.Route(ip)
		must(t, err)
		if !all(r, found) {
			t.Fatalf("route changed %s after the API server became unreachable: %v (found %v)", time.Since(start).Round(time.Millisecond), r, found)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mgr.API.Restore()
	tp.rtr.WaitRoute(t, ip, 30*time.Second, netlab.Via("192.168.100.11", "192.168.100.12"))
}

// TestFRRBGPDRestart: the router's bgpd restarts under a manager peering
// with the sample's MD5, graceful restart and BFD (or none): the session
// comes back once, without a BFD reset after it (the new bgpd replaces the
// BFD session it registered at start once BGP is up), and the route comes
// back about as fast with BFD as without.
func TestFRRBGPDRestart(t *testing.T) {
	back := map[bool]time.Duration{}
	for _, withBFD := range []bool{false, true} {
		t.Run(fmt.Sprintf("BFD %v", withBFD), func(t *testing.T) {
			tp := newTopo(t)
			extra := []string{"password " + cluster.SamplePassword}
			if withBFD {
				extra = append(extra, "bfd profile eiplb")
			}
			frr := tp.lab.StartFRR(tp.rtr, frrConfig([]string{"192.168.100.11"}, extra...))
			create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "eiplb-system", Name: "tor1-md5"},
				Data: map[string][]byte{"password": []byte(cluster.SamplePassword)}})
			basics(t, func(p *v1alpha1.BGPPeer) {
				p.Spec.PasswordSecretRef = &v1alpha1.SecretKeyRef{Name: "tor1-md5", Key: "password"}
				p.Spec.GracefulRestart = &v1alpha1.GracefulRestart{Enabled: true, RestartTime: &metav1.Duration{Duration: 120 * time.Second}}
				if withBFD {
					b := sampleBFD(t)
					p.Spec.BFD = &v1alpha1.BFD{Enabled: true, MinTxInterval: &metav1.Duration{Duration: b.MinTx},
						MinRxInterval: &metav1.Duration{Duration: b.MinRx}, Multiplier: ptr.To(int32(b.Multiplier))}
				}
			})
			api.StartManager(t, tp.nodes[0], "node1", "192.168.100.11", "--leader-elect=false")
			ns := namespace(t)
			ip := ips(t, service(t, ns, "web", false, corev1.IPv4Protocol), 1)[0]
			all := netlab.Via("192.168.100.11", "192.168.100.12", "192.168.100.13")
			tp.rtr.WaitRoute(t, ip, 15*time.Second, all)
			if withBFD {
				eventually(t, 15*time.Second, bfdUp(t, frr))
			}

			start := time.Now()
			frr.RestartDaemon("bgpd")
			tp.rtr.WaitRoute(t, ip, 30*time.Second, all)
			back[withBFD] = time.Since(start)
			if withBFD {
				eventually(t, 15*time.Second, bfdUp(t, frr))
			}
			// A BFD session replaced under the new one would reset it
			// within a few seconds (GoBGP: after its detection time).
			time.Sleep(4 * time.Second)
			n := frrSession(t, frr) // the new bgpd's counts
			t.Logf("route back %v after the bgpd restart; the new bgpd's session: %+v", back[withBFD].Round(time.Millisecond), n)
			if n.State != "Established" || n.Established != 1 || n.Dropped != 0 {
				t.Errorf("the session came back more than once after the bgpd restart: %+v", n)
			}
		})
	}
	if b, nb := back[true], back[false]; b > 0 && nb > 0 && b > nb+3*time.Second {
		t.Errorf("route back %v after a bgpd restart with BFD, %v without", b.Round(time.Millisecond), nb.Round(time.Millisecond))
	}
}
