package announce_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/bgp/bgptest"
	"github.com/eiplb/eiplb/pkg/testenv"
)

// peerSession is the manager's status entry of a BGPPeer, or a description
// of why there is none.
func peerSession(t *testing.T, name, manager string) (v1alpha1.BGPSession, string) {
	t.Helper()
	p := &v1alpha1.BGPPeer{}
	must(t, k8s.Get(ctx, client.ObjectKey{Name: name}, p))
	for _, s := range p.Status.Sessions {
		if s.Manager == manager {
			return s, ""
		}
	}
	return v1alpha1.BGPSession{}, fmt.Sprintf("%s has no session entry of %s: %+v", name, manager, p.Status.Sessions)
}

// waitPeerEvent waits for a Warning Event with reason on the BGPPeer name
// whose note contains text.
func waitPeerEvent(t *testing.T, name, reason, text string) {
	t.Helper()
	eventually(t, 10*time.Second, func() string {
		var list eventsv1.EventList
		must(t, k8s.List(ctx, &list))
		var seen []string
		for _, e := range list.Items {
			if e.Regarding.Kind != "BGPPeer" || e.Regarding.Name != name {
				continue
			}
			if e.Reason == reason && e.Type == corev1.EventTypeWarning && strings.Contains(e.Note, text) {
				return ""
			}
			seen = append(seen, e.Reason+": "+e.Note)
		}
		return fmt.Sprintf("no %s Event containing %q on BGPPeer %s; it has %q", reason, text, name, seen)
	})
}

// TestDuplicatePeerAddress: a second BGPPeer with the address of one whose
// session is up leaves that session and its routes alone (the oldest peer
// keeps the address), and is reported in its status and an Event; deleting
// the first lets the second take the address.
func TestDuplicatePeerAddress(t *testing.T) {
	r := bgptest.New(t, 65001)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: unique("ns")}}
	must(t, k8s.Create(ctx, ns))
	createNode(t, "dup1", "192.168.100.21", true)
	pool := &v1alpha1.EIPPool{ObjectMeta: metav1.ObjectMeta{Name: unique("pool")}, Spec: v1alpha1.EIPPoolSpec{Addresses: []string{"198.51.100.0/28"}, AutoAssign: ptr.To(false)}}
	must(t, k8s.Create(ctx, pool))
	t.Cleanup(func() { _ = k8s.Delete(ctx, pool) })
	adv := &v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: unique("adv")}}
	must(t, k8s.Create(ctx, adv))
	t.Cleanup(func() { _ = k8s.Delete(ctx, adv) })
	tor := createPeer(t, r.Port)
	startManager(t, "dup1")
	createService(t, ns.Name, "web", pool.Name, false)
	ip := waitIP(t, ns.Name, "web")
	routes := paths(ip, "192.168.100.21")
	waitPaths(t, r, routes)
	before := r.Session(t)
	if before.State != "ESTABLISHED" {
		t.Fatalf("session with the router: %+v", before)
	}

	// The same address, another AS: as a session it could never come up.
	dup := createPeer(t, r.Port, func(p *v1alpha1.BGPPeer) {
		p.Name = "zz-" + p.Name
		p.Spec.PeerASN = 65099
	})
	// A peer added after the duplicate: once its session is up, the
	// manager has applied a peer set with the duplicate in it (one
	// reconcile at a time).
	r2 := bgptest.NewAt(t, "127.0.0.2", 65001)
	createPeer(t, r2.Port, func(p *v1alpha1.BGPPeer) { p.Spec.PeerAddress = "127.0.0.2" })
	waitPaths(t, r2, routes)

	if after := r.Session(t); after != before {
		t.Errorf("the first session changed when the duplicate came: before %+v, after %+v", before, after)
	}
	if got := bgptest.Without(r.Received(t, bgptest.IPv4)); !equal(got, routes) {
		t.Errorf("the router's routes changed when the duplicate came: %v, want %v", got, routes)
	}
	s, missing := peerSession(t, tor.Name, "dup1")
	if missing != "" || s.State != "Established" || s.LastError != "" || s.PrefixesSent != 1 {
		t.Errorf("first peer's session %+v %s, want Established with 1 prefix", s, missing)
	}
	eventually(t, 10*time.Second, func() string {
		s, missing := peerSession(t, dup.Name, "dup1")
		if missing != "" {
			return missing
		}
		if s.State != "NotConfigured" || !strings.Contains(s.LastError, "already used by BGPPeer "+tor.Name) {
			return fmt.Sprintf("duplicate's session %+v, want NotConfigured naming %s", s, tor.Name)
		}
		return ""
	})
	waitPeerEvent(t, dup.Name, "DuplicatePeerAddress", "dup1: peerAddress 127.0.0.1 is already used by BGPPeer "+tor.Name)

	// Without the first peer the address is the duplicate's.
	must(t, k8s.Delete(ctx, tor))
	eventually(t, 10*time.Second, func() string {
		s, missing := peerSession(t, dup.Name, "dup1")
		if missing != "" {
			return missing
		}
		if s.State == "NotConfigured" || s.State == "" {
			return fmt.Sprintf("duplicate's session %+v, want it configured now", s)
		}
		return ""
	})
}

// TestPeerIsOwnNode: a BGPPeer whose address is the manager's node's own
// address gets no session on that replica, and says why.
func TestPeerIsOwnNode(t *testing.T) {
	n := createNode(t, "self1", "192.168.100.31", true)
	startManager(t, "self1")
	self := createPeer(t, 179, func(p *v1alpha1.BGPPeer) { p.Spec.PeerAddress = "192.168.100.31" })
	eventually(t, 10*time.Second, func() string {
		s, missing := peerSession(t, self.Name, "self1")
		if missing != "" {
			return missing
		}
		if s.State != "NotConfigured" || !strings.Contains(s.LastError, "is an address of this manager's node self1") {
			return fmt.Sprintf("session %+v, want NotConfigured: own address", s)
		}
		return ""
	})
	waitPeerEvent(t, self.Name, "PeerIsOwnNode", "self1: peerAddress 192.168.100.31 is an address of this manager's node self1")
	// No session was attempted: the speaker has no such peer.
	if v := testenv.Gauge(t, "eiplb_bgp_session_up", map[string]string{"peer": "192.168.100.31"}); v != -1 {
		t.Errorf("eiplb_bgp_session_up{peer=192.168.100.31} is %v: the speaker has a session with its own node", v)
	}
	// The node's address changes: the peer is another machine now.
	setNode(t, n, "192.168.100.32", true)
	eventually(t, 10*time.Second, func() string {
		s, missing := peerSession(t, self.Name, "self1")
		if missing != "" {
			return missing
		}
		if s.State == "NotConfigured" || s.State == "" {
			return fmt.Sprintf("session %+v, want it configured once the node has another address", s)
		}
		return ""
	})
}

func equal(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }
