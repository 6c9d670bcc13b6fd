//go:build privileged

// Package bgp_test proves the announcer against real routers: the
// eiplb-manager binary in a node namespace peers with FRR (and BIRD 2) in a
// router namespace, and the tests assert on the router's kernel FIB.
package bgp_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/eiplb/eiplb/pkg/testenv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/test/e2e/cluster"
	"github.com/eiplb/eiplb/test/netlab"
)

var (
	api *cluster.API
	ctx = context.Background()
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("skipping: the BGP e2e tests need root (network namespaces)")
		os.Exit(0)
	}
	var err error
	if api, err = cluster.StartAPI(); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	code := m.Run()
	api.Stop()
	os.Exit(code)
}

// topo is a router namespace with a bridge and three node namespaces.
type topo struct {
	lab   *netlab.Lab
	rtr   *netlab.NS
	nodes []*netlab.NS
}

func newTopo(t *testing.T) *topo {
	lab := netlab.New(t)
	tp := &topo{lab: lab, rtr: lab.Namespace("rtr")}
	lab.Bridge(tp.rtr, "br0", "192.168.100.1/24", "fd00:100::1/64")
	for i := 1; i <= 3; i++ {
		n := lab.Namespace(fmt.Sprintf("node%d", i))
		lab.LinkToBridge(n, []string{fmt.Sprintf("192.168.100.%d/24", 10+i), fmt.Sprintf("fd00:100::%d/64", 10+i)}, tp.rtr, "br0")
		tp.nodes = append(tp.nodes, n)
	}
	return tp
}

// frrConfig peers the router with the managers at the given addresses.
// extra lines go into each neighbor's configuration ("bfd profile fast",
// "password x").
func frrConfig(managers []string, extra ...string) string {
	c := `frr defaults datacenter
hostname rtr
log stdout
!
bfd
 profile fast
  receive-interval 100
  transmit-interval 100
 !
!
router bgp 65000
 bgp router-id 192.168.100.1
 no bgp ebgp-requires-policy
`
	for _, m := range managers {
		c += fmt.Sprintf(" neighbor %s remote-as 65001\n", m)
		for _, e := range extra {
			c += fmt.Sprintf(" neighbor %s %s\n", m, e)
		}
	}
	c += ` address-family ipv4 unicast
  maximum-paths 16
 exit-address-family
 address-family ipv6 unicast
`
	for _, m := range managers {
		c += fmt.Sprintf("  neighbor %s activate\n", m)
	}
	c += `  maximum-paths 16
 exit-address-family
exit
`
	return c
}

// unique names per test, since Nodes and pools are cluster-scoped.
func name(t *testing.T, s string) string {
	return fmt.Sprintf("%s-%d", s, time.Now().UnixNano()%1e9)
}

// basics creates three Ready nodes, a pool, an advertisement and a peer
// for the FRR router, and returns the node objects.
func basics(t *testing.T, mutatePeer ...func(*v1alpha1.BGPPeer)) []*corev1.Node {
	t.Helper()
	var nodes []*corev1.Node
	for i := 1; i <= 3; i++ {
		nodes = append(nodes, api.Node(t, fmt.Sprintf("node%d", i), fmt.Sprintf("192.168.100.%d", 10+i), fmt.Sprintf("fd00:100::%d", 10+i)))
	}
	create(t, &v1alpha1.EIPPool{ObjectMeta: metav1.ObjectMeta{Name: "e2e"}, Spec: v1alpha1.EIPPoolSpec{Addresses: []string{"172.30.0.0/28", "fd00:30::/124"}}})
	create(t, &v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "all"}})
	peer := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "rtr"}, Spec: v1alpha1.BGPPeerSpec{
		PeerAddress: "192.168.100.1", PeerASN: 65000, LocalASN: 65001,
		ConnectTime: &metav1.Duration{Duration: time.Second},
	}}
	for _, m := range mutatePeer {
		m(peer)
	}
	create(t, peer)
	return nodes
}

func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := api.Client.Create(ctx, obj); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Client.Delete(context.Background(), obj) })
}

func service(t *testing.T, ns, n string, local bool, families ...corev1.IPFamily) *corev1.Service {
	t.Helper()
	s := testenv.LoadBalancer(ns, n)
	if local {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
	if len(families) > 1 {
		s.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyRequireDualStack)
	}
	s.Spec.IPFamilies = families
	create(t, s)
	return s
}

// ips waits for the Service's addresses.
func ips(t *testing.T, s *corev1.Service, n int) []string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if err := api.Client.Get(ctx, client.ObjectKeyFromObject(s), s); err != nil {
			t.Fatal(err)
		}
		if len(s.Status.LoadBalancer.Ingress) == n {
			var out []string
			for _, i := range s.Status.LoadBalancer.Ingress {
				out = append(out, i.IP)
			}
			return out
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s got no addresses: %+v", s.Name, s.Status)
	return nil
}

func namespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name(t, "e2e")}}
	create(t, ns)
	return ns.Name
}
