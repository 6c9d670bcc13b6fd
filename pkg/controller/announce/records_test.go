package announce_test

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/bgp/bgptest"
	announcectrl "github.com/eiplb/eiplb/pkg/controller/announce"
	"github.com/eiplb/eiplb/pkg/ipam"
	"github.com/eiplb/eiplb/pkg/manager"
)

// communityPaths waits until the router holds exactly one path per next
// hop for ip, each carrying community (as GoBGP prints it).
func communityPaths(t *testing.T, r *bgptest.Receiver, ip, community string, nextHops ...string) {
	t.Helper()
	want := paths(ip, nextHops...)
	r.Wait(t, bgptest.IPv4, func(got []string) string {
		var g []string
		for _, l := range got {
			g = append(g, strings.Join(strings.Fields(l)[:3], " "))
		}
		slices.Sort(g)
		if !slices.Equal(g, want) {
			return "want (attributes aside) " + strings.Join(want, ", ")
		}
		for _, l := range got {
			if !strings.Contains(l, "communities=["+community+"]") {
				return "want every path with community " + community
			}
		}
		return ""
	})
}

// TestPoolLabelEditReannounces: the advertisement of a Service follows the
// labels of the pool its address came from. Relabelling the pool moves the
// Service from the advertisement selecting the old label to the one
// selecting the new label (its community), with nothing else changing.
func TestPoolLabelEditReannounces(t *testing.T) {
	r := bgptest.New(t, 65001)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: unique("ns")}}
	must(t, k8s.Create(ctx, ns))
	node := unique("pl")
	createNode(t, node, "192.168.100.31", true)
	pool := &v1alpha1.EIPPool{
		ObjectMeta: metav1.ObjectMeta{Name: unique("pool"), Labels: map[string]string{"tier": "gold"}},
		Spec:       v1alpha1.EIPPoolSpec{Addresses: []string{"203.0.113.64/28"}, AutoAssign: ptr.To(false)},
	}
	must(t, k8s.Create(ctx, pool))
	t.Cleanup(func() { _ = k8s.Delete(ctx, pool) })
	for tier, community := range map[string]string{"gold": "65000:1", "silver": "65000:2"} {
		adv := &v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: unique(tier)}, Spec: v1alpha1.BGPAdvertisementSpec{
			PoolSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": tier}},
			Communities:  []string{community},
		}}
		must(t, k8s.Create(ctx, adv))
		t.Cleanup(func() { _ = k8s.Delete(ctx, adv) })
	}
	createPeer(t, r.Port)
	startManager(t, node)

	createService(t, ns.Name, "web", pool.Name, false)
	ip := waitIP(t, ns.Name, "web")
	communityPaths(t, r, ip, "4259840001", "192.168.100.31")

	must(t, k8s.Get(ctx, client.ObjectKeyFromObject(pool), pool))
	pool.Labels = map[string]string{"tier": "silver"}
	must(t, k8s.Update(ctx, pool))
	communityPaths(t, r, ip, "4259840002", "192.168.100.31")
}

// TestRecordBeforeStatus: the announcer takes a Service's address from its
// EIPAllocation record, so a record that exists before (here: without) any
// Service status is announced; the record's removal withdraws it. IPAM
// does not run (its Lease is held by someone else for the whole test), so
// nothing writes the Service status.
func TestRecordBeforeStatus(t *testing.T) {
	r := bgptest.New(t, 65001)
	sys := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "eiplb-system"}}
	if err := k8s.Create(ctx, sys); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: unique("ns")}}
	must(t, k8s.Create(ctx, ns))
	node := unique("rb")
	createNode(t, node, "192.168.100.32", true)
	pool := &v1alpha1.EIPPool{
		ObjectMeta: metav1.ObjectMeta{Name: unique("pool"), Labels: map[string]string{"tier": "bronze"}},
		Spec:       v1alpha1.EIPPoolSpec{Addresses: []string{"203.0.113.80/28"}, AutoAssign: ptr.To(false)},
	}
	must(t, k8s.Create(ctx, pool))
	t.Cleanup(func() { _ = k8s.Delete(ctx, pool) })
	adv := &v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: unique("bronze")}, Spec: v1alpha1.BGPAdvertisementSpec{
		PoolSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "bronze"}},
		Communities:  []string{"65000:3"},
	}}
	must(t, k8s.Create(ctx, adv))
	t.Cleanup(func() { _ = k8s.Delete(ctx, adv) })
	createPeer(t, r.Port)

	// The IPAM Lease, held elsewhere: this manager only announces.
	leaseID := unique("ipam-held")
	lease := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: "eiplb-system", Name: leaseID},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity: ptr.To("someone-else"), LeaseDurationSeconds: ptr.To(int32(3600)),
			AcquireTime: &metav1.MicroTime{Time: time.Now()}, RenewTime: &metav1.MicroTime{Time: time.Now()},
		},
	}
	must(t, k8s.Create(ctx, lease))
	t.Cleanup(func() { _ = k8s.Delete(ctx, lease) })
	c, cancel := context.WithCancel(context.Background())
	mgr, err := manager.New(c, cfg, manager.Options{
		SeveralPerProcess: true, LeaderElection: true, LeaderElectionID: leaseID,
		Announce: &manager.AnnounceOptions{
			Options:  announcectrl.Options{NodeName: node, StatusInterval: 100 * time.Millisecond},
			RouterID: netip.MustParseAddr("10.255.0.2"), ASN: 65001,
		},
	})
	must(t, err)
	done := make(chan struct{})
	go func() { defer close(done); _ = mgr.Start(c) }()
	t.Cleanup(func() { cancel(); <-done })

	svc := createService(t, ns.Name, "web", pool.Name, false)
	addr := netip.MustParseAddr("203.0.113.85")
	rec := &v1alpha1.EIPAllocation{
		ObjectMeta: metav1.ObjectMeta{Name: ipam.AllocationName(addr)},
		Spec: v1alpha1.EIPAllocationSpec{Address: addr.String(), Pool: pool.Name, Services: []v1alpha1.ServiceReference{
			{Namespace: svc.Namespace, Name: svc.Name, UID: string(svc.UID)},
		}},
	}
	must(t, k8s.Create(ctx, rec))
	t.Cleanup(func() { _ = k8s.Delete(ctx, rec) })
	communityPaths(t, r, addr.String(), "4259840003", "192.168.100.32")

	must(t, k8s.Get(ctx, client.ObjectKeyFromObject(svc), svc))
	if len(svc.Status.LoadBalancer.Ingress) != 0 {
		t.Fatalf("the Service has a status %v: IPAM ran, the test proves nothing", svc.Status.LoadBalancer.Ingress)
	}
	must(t, k8s.Delete(ctx, rec))
	r.WaitExactly(t, bgptest.IPv4)
}
