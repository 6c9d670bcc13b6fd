package announce_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/bgp/bgptest"
	announcectrl "github.com/eiplb/eiplb/pkg/controller/announce"
)

// TestPeerSource: a peer with sourceAddress connects from it (the router
// accepts the session only from 127.0.0.7); a source address the node
// lacks, or an interface it lacks, leaves that peer NotConfigured with the
// reason; a per-node peer for another node at the same router gets no entry
// from this replica.
func TestPeerSource(t *testing.T) {
	node := unique("src")
	createNode(t, node, "192.168.100.11", true)
	other := unique("src-other")
	r := bgptest.NewFrom(t, "127.0.0.1", "127.0.0.7", 65001)
	peer := createPeer(t, r.Port, func(p *v1alpha1.BGPPeer) {
		p.Spec.SourceAddress = "127.0.0.7"
		p.Spec.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/hostname": node}}
	})
	otherNode := createPeer(t, r.Port, func(p *v1alpha1.BGPPeer) {
		p.Spec.SourceAddress = "127.0.0.8"
		p.Spec.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/hostname": other}}
	})
	notHere := createPeer(t, r.Port+1, func(p *v1alpha1.BGPPeer) {
		p.Spec.PeerAddress, p.Spec.SourceAddress = "127.0.0.2", "127.0.0.9"
	})
	noIface := createPeer(t, r.Port+2, func(p *v1alpha1.BGPPeer) {
		p.Spec.PeerAddress, p.Spec.SourceInterface = "127.0.0.3", "eth9"
	})
	startManager(t, node, func(o *announcectrl.Options) {
		o.LocalAddrs = func(iface string) ([]netip.Addr, error) {
			if iface == "" {
				return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.7"), netip.MustParseAddr("::1")}, nil
			}
			return nil, errors.New("no such network interface")
		}
	})
	session := func(p *v1alpha1.BGPPeer) []v1alpha1.BGPSession {
		got := &v1alpha1.BGPPeer{}
		must(t, k8s.Get(ctx, client.ObjectKeyFromObject(p), got))
		return got.Status.Sessions
	}
	eventually(t, 15*time.Second, func() string {
		s := session(peer)
		if len(s) != 1 || s[0].State != "Established" {
			return fmt.Sprintf("sessions of the peer with sourceAddress: %+v", s)
		}
		return ""
	})
	for _, tc := range []struct {
		peer *v1alpha1.BGPPeer
		want string
	}{
		{notHere, "sourceAddress 127.0.0.9 is not an address of node " + node},
		{noIface, "sourceInterface eth9 on node " + node + ": no such network interface"},
	} {
		eventually(t, 10*time.Second, func() string {
			s := session(tc.peer)
			if len(s) != 1 || s[0].State != "NotConfigured" || !strings.Contains(s[0].LastError, tc.want) {
				return fmt.Sprintf("sessions of %s: %+v, want NotConfigured: %s", tc.peer.Name, s, tc.want)
			}
			return ""
		})
	}
	if s := session(otherNode); len(s) != 0 {
		t.Errorf("the peer of node %s has this replica's session: %+v", other, s)
	}
}
