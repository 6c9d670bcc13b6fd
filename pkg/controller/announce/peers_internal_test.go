package announce

import (
	"maps"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
)

func TestPeerAddressOwners(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 17, 0, 0, 0, time.UTC)
	peer := func(name, addr string, age time.Duration) *v1alpha1.BGPPeer {
		return &v1alpha1.BGPPeer{
			ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(t0.Add(-age))},
			Spec:       v1alpha1.BGPPeerSpec{PeerAddress: addr, PeerASN: 65000, LocalASN: 65001},
		}
	}
	cases := []struct {
		name  string
		peers []*v1alpha1.BGPPeer
		want  map[string]string // loser → owner
	}{
		{"distinct addresses", []*v1alpha1.BGPPeer{peer("tor1", "192.168.100.1", time.Hour), peer("tor2", "192.168.100.2", 0)}, map[string]string{}},
		{"the older keeps it, whatever the names",
			[]*v1alpha1.BGPPeer{peer("zz-dup-tor1", "192.168.100.1", 0), peer("tor1", "192.168.100.1", time.Hour)},
			map[string]string{"zz-dup-tor1": "tor1"}},
		{"older with a higher name",
			[]*v1alpha1.BGPPeer{peer("a-new", "192.168.100.1", time.Minute), peer("z-old", "192.168.100.1", time.Hour)},
			map[string]string{"a-new": "z-old"}},
		{"same second: the lower name",
			[]*v1alpha1.BGPPeer{peer("tor1-b", "192.168.100.1", 0), peer("tor1-a", "192.168.100.1", 0)},
			map[string]string{"tor1-b": "tor1-a"}},
		{"three, two addresses",
			[]*v1alpha1.BGPPeer{peer("c", "192.168.100.1", 0), peer("b", "192.168.100.1", time.Second), peer("a", "192.168.100.1", 0), peer("d", "192.168.100.2", 0)},
			map[string]string{"a": "b", "c": "b"}},
		{"one address written two ways",
			[]*v1alpha1.BGPPeer{peer("v6-old", "2001:db8::1", time.Hour), peer("v6-new", "2001:DB8:0:0::1", 0)},
			map[string]string{"v6-new": "v6-old"}},
		{"IPv4-mapped IPv6 is the IPv4 address",
			[]*v1alpha1.BGPPeer{peer("v4", "192.168.100.1", time.Hour), peer("mapped", "::ffff:192.168.100.1", 0)},
			map[string]string{"mapped": "v4"}},
		{"another port is still the same address",
			[]*v1alpha1.BGPPeer{peer("tor1", "192.168.100.1", time.Hour), func() *v1alpha1.BGPPeer {
				p := peer("tor1-port", "192.168.100.1", 0)
				p.Spec.PeerPort = 1179
				return p
			}()},
			map[string]string{"tor1-port": "tor1"}},
		{"unparseable addresses take part in nothing",
			[]*v1alpha1.BGPPeer{peer("bad1", "router", time.Hour), peer("bad2", "router", 0)}, map[string]string{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := peerAddressOwners(c.peers)
			if !maps.Equal(got, c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
			// The order of the list changes nothing.
			rev := make([]*v1alpha1.BGPPeer, len(c.peers))
			for i, p := range c.peers {
				rev[len(c.peers)-1-i] = p
			}
			if got := peerAddressOwners(rev); !maps.Equal(got, c.want) {
				t.Errorf("reversed list: got %v, want %v", got, c.want)
			}
		})
	}
}
