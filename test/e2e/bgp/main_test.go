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

	corev1 "k8s.io/api/core/v1"
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
	if spec := os.Getenv(speakerEnv); spec != "" {
		os.Exit(runSpeaker(spec))
	}
	cluster.Main(m, "BGP", func(a *cluster.API) { api = a })
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

func frrConfig(managers []string, extra ...string) string {
	return cluster.FRRConfig(managers, extra...)
}

func basics(t *testing.T, mutatePeer ...func(*v1alpha1.BGPPeer)) []*corev1.Node {
	return api.Basics(t, mutatePeer...)
}

func create(t *testing.T, obj client.Object) { api.Create(t, obj) }

func service(t *testing.T, ns, n string, local bool, families ...corev1.IPFamily) *corev1.Service {
	return api.Service(t, ns, n, local, families...)
}

func ips(t *testing.T, s *corev1.Service, n int) []string { return api.IPs(t, s, n) }

func namespace(t *testing.T) string { return api.Namespace(t) }
