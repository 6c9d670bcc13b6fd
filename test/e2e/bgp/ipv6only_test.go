//go:build privileged

package bgp_test

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/manager"
	"github.com/eiplb/eiplb/test/netlab"
)

// TestFRRIPv6OnlyNode: a manager on an IPv6-only node, whose router ID
// source ($ROUTER_ID, the node's status.hostIPs) holds only an IPv6
// address, starts (it used to exit: "--router-id must be an IPv4
// address"), peers with FRR over IPv6 with the identifier derived from its
// node name, and announces an IPv6 EIP with every node as next hop.
func TestFRRIPv6OnlyNode(t *testing.T) {
	lab := netlab.New(t)
	rtr := lab.Namespace("rtr")
	lab.Bridge(rtr, "br0", "fd00:100::1/64")
	var nodes []*netlab.NS
	for i := 1; i <= 3; i++ {
		n := lab.Namespace(fmt.Sprintf("node%d", i))
		lab.LinkToBridge(n, []string{fmt.Sprintf("fd00:100::%d/64", 10+i)}, rtr, "br0")
		nodes = append(nodes, n)
		api.Node(t, fmt.Sprintf("node%d", i), fmt.Sprintf("fd00:100::%d", 10+i))
	}
	frr := lab.StartFRR(rtr, frrConfig([]string{"fd00:100::11"}))
	create(t, &v1alpha1.EIPPool{ObjectMeta: metav1.ObjectMeta{Name: "v6only"}, Spec: v1alpha1.EIPPoolSpec{Addresses: []string{"fd00:30::/124"}}})
	create(t, &v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "v6only"}})
	create(t, &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "rtr6"}, Spec: v1alpha1.BGPPeerSpec{
		PeerAddress: "fd00:100::1", PeerASN: 65000, LocalASN: 65001,
		ConnectTime: &metav1.Duration{Duration: time.Second},
	}})
	api.StartManager(t, nodes[0], "node1", "fd00:100::11", "--leader-elect=false")

	ip := ips(t, service(t, namespace(t), "web6", false, corev1.IPv6Protocol), 1)[0]
	rtr.WaitRoute(t, ip, 15*time.Second, netlab.Via("fd00:100::11", "fd00:100::12", "fd00:100::13"))

	want := manager.DerivedRouterID("node1").String()
	var nb map[string]struct {
		RemoteRouterID string `json:"remoteRouterId"`
		State          string `json:"bgpState"`
	}
	must(t, frr.VtyshJSON("show bgp neighbors fd00:100::11", &nb))
	if got := nb["fd00:100::11"]; got.RemoteRouterID != want || got.State != "Established" {
		t.Fatalf("FRR's neighbour fd00:100::11: %+v, want router ID %s (derived from the node name), Established", got, want)
	}
}
