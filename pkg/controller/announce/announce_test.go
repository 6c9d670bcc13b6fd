package announce_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eiplb/eiplb/pkg/testenv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/bgp/bgptest"
)

func paths(ip string, nextHops ...string) []string {
	out := make([]string, 0, len(nextHops))
	for _, nh := range nextHops {
		out = append(out, fmt.Sprintf("%s/32 via %s", ip, nh))
	}
	slices.Sort(out)
	return out
}

func waitPaths(t *testing.T, r *bgptest.Receiver, want []string) {
	t.Helper()
	r.Wait(t, bgptest.IPv4, func(got []string) string {
		if g := bgptest.Without(got); !slices.Equal(g, want) {
			return "want (ids aside)\n  " + strings.Join(want, "\n  ")
		}
		return ""
	})
}

// TestAnnouncer drives the announcer of a real manager, against a real API
// server, peering with an in-process GoBGP router: ECMP paths per eligible
// node, NotReady / cordon / exclusion, Local with weights, delete, session
// status, and a missing password Secret.
func TestAnnouncer(t *testing.T) {
	r := bgptest.New(t, 65001)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: unique("ns")}}
	must(t, k8s.Create(ctx, ns))
	n1 := createNode(t, "n1", "192.168.100.11", true)
	n2 := createNode(t, "n2", "192.168.100.12", true)
	n3 := createNode(t, "n3", "192.168.100.13", true)
	pool := &v1alpha1.EIPPool{ObjectMeta: metav1.ObjectMeta{Name: unique("pool")}, Spec: v1alpha1.EIPPoolSpec{Addresses: []string{"203.0.113.0/28"}, AutoAssign: ptr.To(false)}}
	must(t, k8s.Create(ctx, pool))
	peer := createPeer(t, r.Port)
	startManager(t, "n1")

	svc := createService(t, ns.Name, "web", pool.Name, false)
	ip := waitIP(t, ns.Name, "web")
	// Nothing is announced without an advertisement.
	time.Sleep(300 * time.Millisecond)
	if got := r.Received(t, bgptest.IPv4); len(got) != 0 {
		t.Fatalf("announced without a BGPAdvertisement: %v", got)
	}
	adv := &v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: unique("all")}, Spec: v1alpha1.BGPAdvertisementSpec{Communities: []string{"65000:100"}}}
	must(t, k8s.Create(ctx, adv))
	t.Cleanup(func() { _ = k8s.Delete(ctx, adv) })

	t.Run("cluster policy: one path per ready node", func(t *testing.T) {
		got := r.Wait(t, bgptest.IPv4, func(got []string) string {
			if len(got) != 3 {
				return "want 3 paths"
			}
			return ""
		})
		ids := map[string]bool{}
		for _, l := range got {
			if !strings.Contains(l, "communities=[4259840100]") {
				t.Errorf("path %q lacks the advertisement's community", l)
			}
			ids[strings.Fields(l)[3]] = true
		}
		if len(ids) != 3 {
			t.Errorf("paths share ADD-PATH ids: %v", got)
		}
		eventually(t, 10*time.Second, func() string {
			var list corev1.EventList
			must(t, k8s.List(ctx, &list, client.InNamespace(ns.Name)))
			for _, e := range list.Items {
				if e.InvolvedObject.Name == "web" && e.Reason == "Announced" && strings.Contains(e.Message, "Announced by n1 via 3 next hops") {
					return ""
				}
			}
			return "no Announced event for web"
		})
	})

	t.Run("NotReady, cordoned and excluded nodes are withdrawn", func(t *testing.T) {
		setNode(t, n2, "192.168.100.12", false)
		waitPaths(t, r, withCommunity(paths(ip, "192.168.100.11", "192.168.100.13")))
		must(t, k8s.Get(ctx, client.ObjectKeyFromObject(n3), n3))
		n3.Spec.Unschedulable = true
		must(t, k8s.Update(ctx, n3))
		waitPaths(t, r, withCommunity(paths(ip, "192.168.100.11")))
		must(t, k8s.Get(ctx, client.ObjectKeyFromObject(n1), n1))
		n1.Labels["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
		must(t, k8s.Update(ctx, n1))
		waitPaths(t, r, nil)
		// And back.
		delete(n1.Labels, "node.kubernetes.io/exclude-from-external-load-balancers")
		must(t, k8s.Update(ctx, n1))
		must(t, k8s.Get(ctx, client.ObjectKeyFromObject(n3), n3))
		n3.Spec.Unschedulable = false
		must(t, k8s.Update(ctx, n3))
		setNode(t, n2, "192.168.100.12", true)
		waitPaths(t, r, withCommunity(paths(ip, "192.168.100.11", "192.168.100.12", "192.168.100.13")))
	})

	t.Run("local policy: nodes with endpoints, weighted", func(t *testing.T) {
		local := createService(t, ns.Name, "local", pool.Name, true)
		lip := waitIP(t, ns.Name, "local")
		setEndpoints(t, local, map[string]int{"n1": 3, "n3": 1})
		want := append(withCommunity(paths(ip, "192.168.100.11", "192.168.100.12", "192.168.100.13")),
			lip+"/32 via 192.168.100.11 communities=[4259840100] bw=3e+06",
			lip+"/32 via 192.168.100.13 communities=[4259840100] bw=1e+06")
		slices.Sort(want)
		waitPaths(t, r, want)
		// The endpoint moves: n3's path goes, n2's comes.
		setEndpoints(t, local, map[string]int{"n1": 3, "n2": 2})
		want = append(withCommunity(paths(ip, "192.168.100.11", "192.168.100.12", "192.168.100.13")),
			lip+"/32 via 192.168.100.11 communities=[4259840100] bw=3e+06",
			lip+"/32 via 192.168.100.12 communities=[4259840100] bw=2e+06")
		slices.Sort(want)
		waitPaths(t, r, want)
		must(t, k8s.Delete(ctx, local))
		waitPaths(t, r, withCommunity(paths(ip, "192.168.100.11", "192.168.100.12", "192.168.100.13")))
	})

	t.Run("session status per replica", func(t *testing.T) {
		eventually(t, 10*time.Second, func() string {
			p := &v1alpha1.BGPPeer{}
			must(t, k8s.Get(ctx, client.ObjectKeyFromObject(peer), p))
			if len(p.Status.Sessions) != 1 || p.Status.Sessions[0].Manager != "n1" || p.Status.Sessions[0].State != "Established" || p.Status.Sessions[0].PrefixesSent != 3 {
				return fmt.Sprintf("sessions %+v", p.Status.Sessions)
			}
			return ""
		})
	})

	t.Run("metrics", func(t *testing.T) {
		eventually(t, 10*time.Second, func() string {
			paths, up := testenv.Gauge(t, "eiplb_bgp_paths", nil), testenv.Gauge(t, "eiplb_bgp_session_up", map[string]string{"peer": "127.0.0.1"})
			if paths != 3 || up != 1 {
				return fmt.Sprintf("eiplb_bgp_paths %v, eiplb_bgp_session_up %v", paths, up)
			}
			return ""
		})
	})

	t.Run("missing password Secret is reported, nothing else disturbed", func(t *testing.T) {
		bad := createPeer(t, r.Port+1, func(p *v1alpha1.BGPPeer) {
			p.Spec.PeerAddress = "127.0.0.2"
			p.Spec.PasswordSecretRef = &v1alpha1.SecretKeyRef{Name: "nope", Key: "password"}
		})
		eventually(t, 10*time.Second, func() string {
			p := &v1alpha1.BGPPeer{}
			must(t, k8s.Get(ctx, client.ObjectKeyFromObject(bad), p))
			if len(p.Status.Sessions) != 1 || p.Status.Sessions[0].State != "NotConfigured" || !strings.Contains(p.Status.Sessions[0].LastError, "eiplb-system/nope not found") {
				return fmt.Sprintf("sessions %+v", p.Status.Sessions)
			}
			return ""
		})
		waitPaths(t, r, withCommunity(paths(ip, "192.168.100.11", "192.168.100.12", "192.168.100.13")))
	})

	t.Run("peer selector", func(t *testing.T) {
		r2 := bgptest.NewAt(t, "127.0.0.2", 65001)
		createPeer(t, r2.Port, func(p *v1alpha1.BGPPeer) {
			p.Spec.PeerAddress = "127.0.0.2"
			p.Labels = map[string]string{"tier": "b"}
		})
		all := withCommunity(paths(ip, "192.168.100.11", "192.168.100.12", "192.168.100.13"))
		waitPaths(t, r2, all)
		setSelector := func(sel *metav1.LabelSelector) {
			must(t, k8s.Get(ctx, client.ObjectKeyFromObject(adv), adv))
			adv.Spec.PeerSelector = sel
			must(t, k8s.Update(ctx, adv))
		}
		setSelector(&metav1.LabelSelector{MatchLabels: map[string]string{"tier": "b"}})
		waitPaths(t, r, nil)
		waitPaths(t, r2, all)
		setSelector(nil)
		waitPaths(t, r, all)
		waitPaths(t, r2, all)
	})

	t.Run("delete withdraws", func(t *testing.T) {
		must(t, k8s.Delete(ctx, svc))
		waitPaths(t, r, nil)
	})
}

func withCommunity(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l + " communities=[4259840100]"
	}
	return out
}

// TestPeerValidation: the API server rejects bad peers and advertisements.
func TestPeerValidation(t *testing.T) {
	good := v1alpha1.BGPPeerSpec{PeerAddress: "192.0.2.1", PeerASN: 65000, LocalASN: 65001}
	cases := map[string]func(*v1alpha1.BGPPeerSpec){
		"ASN 0":    func(s *v1alpha1.BGPPeerSpec) { s.PeerASN = 0 },
		"ASN 2^32": func(s *v1alpha1.BGPPeerSpec) { s.LocalASN = 4294967296 },
		"address":  func(s *v1alpha1.BGPPeerSpec) { s.PeerAddress = "router-1" },
		"port":     func(s *v1alpha1.BGPPeerSpec) { s.PeerPort = 70000 },
		"hold 2s":  func(s *v1alpha1.BGPPeerSpec) { s.HoldTime = &metav1.Duration{Duration: 2 * time.Second} },
		"keepalive > hold/3": func(s *v1alpha1.BGPPeerSpec) {
			s.HoldTime, s.KeepaliveTime = &metav1.Duration{Duration: 9 * time.Second}, &metav1.Duration{Duration: 4 * time.Second}
		},
		"multihop on iBGP":                func(s *v1alpha1.BGPPeerSpec) { s.LocalASN, s.EBGPMultihop = 65000, ptr.To[int32](3) },
		"sourceAddress":                   func(s *v1alpha1.BGPPeerSpec) { s.SourceAddress = "loopback" },
		"sourceAddress of another family": func(s *v1alpha1.BGPPeerSpec) { s.SourceAddress = "fd00::11" },
		"sourceAddress and sourceInterface": func(s *v1alpha1.BGPPeerSpec) {
			s.SourceAddress, s.SourceInterface = "10.10.0.11", "lo"
		},
		"sourceInterface": func(s *v1alpha1.BGPPeerSpec) { s.SourceInterface = "eth0/1" },
		"BFD 1ms": func(s *v1alpha1.BGPPeerSpec) {
			s.BFD = &v1alpha1.BFD{Enabled: true, MinTxInterval: &metav1.Duration{Duration: time.Millisecond}}
		},
	}
	for name, mutate := range cases {
		spec := good
		mutate(&spec)
		p := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: unique("bad")}, Spec: spec}
		if err := k8s.Create(ctx, p); !apierrors.IsInvalid(err) {
			_ = k8s.Delete(ctx, p)
			t.Errorf("%s: got %v, want Invalid", name, err)
		}
	}
	for _, mutate := range []func(*v1alpha1.BGPPeerSpec){
		func(*v1alpha1.BGPPeerSpec) {},
		func(s *v1alpha1.BGPPeerSpec) { s.SourceAddress = "10.10.0.11" },
		func(s *v1alpha1.BGPPeerSpec) { s.PeerAddress, s.SourceAddress = "fd00::1", "fd00::11" },
		func(s *v1alpha1.BGPPeerSpec) { s.SourceInterface = "lo" },
	} {
		spec := good
		mutate(&spec)
		ok := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: unique("ok")}, Spec: spec}
		must(t, k8s.Create(ctx, ok))
		_ = k8s.Delete(ctx, ok)
	}

	for _, spec := range []v1alpha1.BGPAdvertisementSpec{
		{Communities: []string{"65536:1"}},
		{Communities: []string{"no-such"}},
		{LargeCommunities: []string{"1:2"}},
		{LargeCommunities: []string{"4294967296:1:1"}},
		{AggregationLength: ptr.To[int32](33)},
	} {
		a := &v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: unique("bad")}, Spec: spec}
		if err := k8s.Create(ctx, a); !apierrors.IsInvalid(err) {
			_ = k8s.Delete(ctx, a)
			t.Errorf("advertisement %+v: got %v, want Invalid", spec, err)
		}
	}
}

var eventually = testenv.Eventually
