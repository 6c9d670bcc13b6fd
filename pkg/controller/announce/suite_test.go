package announce_test

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	announcectrl "github.com/eiplb/eiplb/pkg/controller/announce"
	"github.com/eiplb/eiplb/pkg/manager"
	"github.com/eiplb/eiplb/pkg/testenv"
)

var (
	cfg *rest.Config
	k8s client.Client
	ctx = context.Background()
	seq atomic.Int64
)

func TestMain(m *testing.M) {
	testenv.Main(m, func(e *testenv.Env) { cfg, k8s = e.Config, e.Client })
}

func unique(p string) string { return fmt.Sprintf("%s-%d", p, seq.Add(1)) }

// startManager runs a manager (IPAM and announcer) on node "node" until the
// test ends; mutate changes the announcer's options.
func startManager(t *testing.T, node string, mutate ...func(*announcectrl.Options)) {
	t.Helper()
	c, cancel := context.WithCancel(context.Background())
	opts := announcectrl.Options{NodeName: node, StatusInterval: 100 * time.Millisecond}
	for _, m := range mutate {
		m(&opts)
	}
	mgr, err := manager.New(c, cfg, manager.Options{
		SeveralPerProcess: true,
		Announce: &manager.AnnounceOptions{
			Options:  opts,
			RouterID: netip.MustParseAddr("10.255.0.2"), ASN: 65001,
		},
	})
	must(t, err)
	done := make(chan struct{})
	go func() { defer close(done); _ = mgr.Start(c) }()
	t.Cleanup(func() { cancel(); <-done })
}

func createNode(t *testing.T, name, ip string, ready bool) *corev1.Node {
	t.Helper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}}}
	must(t, k8s.Create(ctx, n))
	setNode(t, n, ip, ready)
	t.Cleanup(func() { _ = k8s.Delete(ctx, n) })
	return n
}

func setNode(t *testing.T, n *corev1.Node, ip string, ready bool) {
	t.Helper()
	status := corev1.ConditionTrue
	if !ready {
		status = corev1.ConditionFalse
	}
	must(t, k8s.Get(ctx, client.ObjectKeyFromObject(n), n))
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status, LastHeartbeatTime: metav1.Now()}}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}
	must(t, k8s.Status().Update(ctx, n))
}

func createPeer(t *testing.T, port int, mutate ...func(*v1alpha1.BGPPeer)) *v1alpha1.BGPPeer {
	t.Helper()
	p := &v1alpha1.BGPPeer{
		ObjectMeta: metav1.ObjectMeta{Name: unique("rtr")},
		Spec: v1alpha1.BGPPeerSpec{
			PeerAddress: "127.0.0.1", PeerPort: int32(port), PeerASN: 65000, LocalASN: 65001,
			ConnectTime: &metav1.Duration{Duration: time.Second},
		},
	}
	for _, m := range mutate {
		m(p)
	}
	must(t, k8s.Create(ctx, p))
	t.Cleanup(func() { _ = k8s.Delete(ctx, p) })
	return p
}

func createService(t *testing.T, ns, name, pool string, local bool) *corev1.Service {
	t.Helper()
	s := testenv.LoadBalancer(ns, name)
	s.Annotations = map[string]string{v1alpha1.AnnotationPool: pool}
	if local {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
	must(t, k8s.Create(ctx, s))
	return s
}

// setEndpoints writes the Service's one EndpointSlice: count ready pods per
// node.
func setEndpoints(t *testing.T, svc *corev1.Service, perNode map[string]int) {
	t.Helper()
	es := &discoveryv1.EndpointSlice{}
	key := client.ObjectKey{Namespace: svc.Namespace, Name: svc.Name + "-eps"}
	exists := k8s.Get(ctx, key, es) == nil
	es.Namespace, es.Name = key.Namespace, key.Name
	es.Labels = map[string]string{discoveryv1.LabelServiceName: svc.Name}
	es.AddressType = discoveryv1.AddressTypeIPv4
	es.Endpoints = nil
	i := 0
	for node, n := range perNode {
		for range n {
			i++
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{fmt.Sprintf("10.244.0.%d", i)},
				NodeName:   ptr.To(node),
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			})
		}
	}
	if exists {
		must(t, k8s.Update(ctx, es))
	} else {
		must(t, k8s.Create(ctx, es))
	}
}

func waitIP(t *testing.T, ns, name string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		s := &corev1.Service{}
		must(t, k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s))
		if len(s.Status.LoadBalancer.Ingress) > 0 {
			return s.Status.LoadBalancer.Ingress[0].IP
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s/%s got no address", ns, name)
	return ""
}

var must = testenv.Must
