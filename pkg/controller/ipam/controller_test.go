package ipam_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/ipam"
	"github.com/eiplb/eiplb/pkg/testenv"
)

var ctx = context.Background()

func poolAnn(p string) svcOpt { return withAnnotation(v1alpha1.AnnotationPool, p) }

func TestAllocateFromPool(t *testing.T) {
	startManager(t, defaultOpts())
	ns := newNamespace(t, nil)
	pool := newPool(t, unique("basic"), v1alpha1.EIPPoolSpec{Addresses: []string{"198.51.100.0/30"}, AutoAssign: ptr.To(false)})
	newService(t, ns, "web", poolAnn(pool.Name))
	got := waitIPs(t, ns, "web", 1)
	a := netip.MustParseAddr(got[0])
	if !netip.MustParsePrefix("198.51.100.0/30").Contains(a) {
		t.Fatalf("address %s is not from the pool", a)
	}
	s := getService(t, ns, "web")
	if m := s.Status.LoadBalancer.Ingress[0].IPMode; m == nil || *m != corev1.LoadBalancerIPModeProxy {
		t.Fatalf("ipMode = %v, want Proxy", m)
	}
	// The durable record exists, names the Service and the pool.
	ea := &v1alpha1.EIPAllocation{}
	must(t, k8s.Get(ctx, client.ObjectKey{Name: ipam.AllocationName(a)}, ea))
	if ea.Spec.Pool != pool.Name || len(ea.Spec.Services) != 1 || ea.Spec.Services[0].UID != string(s.UID) {
		t.Fatalf("record %+v does not name pool %s and Service %s", ea.Spec, pool.Name, s.UID)
	}
	// Pool status counts it.
	eventually(t, 5*time.Second, func() string {
		p := &v1alpha1.EIPPool{}
		must(t, k8s.Get(ctx, client.ObjectKeyFromObject(pool), p))
		if p.Status.Capacity != 4 || p.Status.Allocated != 1 || p.Status.Free != 3 || p.Status.IPv4 == nil {
			return fmt.Sprintf("pool status %+v", p.Status)
		}
		return ""
	})
	// The pool metrics say the same.
	eventually(t, 5*time.Second, func() string {
		capacity, allocated := testenv.Gauge(t, "eiplb_pool_addresses", map[string]string{"pool": pool.Name, "family": "IPv4"}), testenv.Gauge(t, "eiplb_pool_addresses_allocated", map[string]string{"pool": pool.Name, "family": "IPv4"})
		if capacity != 4 || allocated != 1 {
			return fmt.Sprintf("metrics: capacity %v allocated %v", capacity, allocated)
		}
		return ""
	})
	// Deleting the Service deletes the record.
	must(t, k8s.Delete(ctx, s))
	eventually(t, 5*time.Second, func() string {
		err := k8s.Get(ctx, client.ObjectKey{Name: ipam.AllocationName(a)}, &v1alpha1.EIPAllocation{})
		if !apierrors.IsNotFound(err) {
			return fmt.Sprintf("record still there (err %v)", err)
		}
		return ""
	})
}

func TestPoolChoiceBySelectorAndPriority(t *testing.T) {
	startManager(t, defaultOpts())
	team := unique("team")
	ns := newNamespace(t, map[string]string{"team": team})
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"team": team}}
	// Two selector pools, one general pool: the selector pool with the lower
	// priority wins, whatever the names.
	newPool(t, unique("z-sel-low"), v1alpha1.EIPPoolSpec{Addresses: []string{"203.0.113.8/30"}, NamespaceSelector: sel, Priority: -5})
	newPool(t, unique("a-sel-high"), v1alpha1.EIPPoolSpec{Addresses: []string{"203.0.113.12/30"}, NamespaceSelector: sel, Priority: 5})
	newService(t, ns, "s1")
	got := waitIPs(t, ns, "s1", 1)
	if !netip.MustParsePrefix("203.0.113.8/30").Contains(netip.MustParseAddr(got[0])) {
		t.Fatalf("got %s, want an address of the priority -5 selector pool", got[0])
	}
}

func TestSpecificIP(t *testing.T) {
	startManager(t, defaultOpts())
	ns := newNamespace(t, nil)
	pool := newPool(t, unique("specific"), v1alpha1.EIPPoolSpec{Addresses: []string{"198.51.100.16-198.51.100.20"}, AutoAssign: ptr.To(false)})
	newService(t, ns, "a", withAnnotation(v1alpha1.AnnotationIP, "198.51.100.19"))
	if got := waitIPs(t, ns, "a", 1); got[0] != "198.51.100.19" {
		t.Fatalf("got %v, want 198.51.100.19", got)
	}
	newService(t, ns, "b", withAnnotation(v1alpha1.AnnotationIP, "198.51.100.19"))
	c := waitReason(t, ns, "b", v1alpha1.ReasonRequestedIPInUse)
	if !containsAll(c.Message, "198.51.100.19", ns+"/a") {
		t.Fatalf("message %q does not say who holds the address", c.Message)
	}
	newService(t, ns, "c", withAnnotation(v1alpha1.AnnotationIP, "192.0.2.200"))
	waitReason(t, ns, "c", v1alpha1.ReasonRequestedIPNotInPool)
	// Events explain it too.
	eventually(t, 5*time.Second, func() string {
		if !hasEvent(t, ns, "b", v1alpha1.ReasonRequestedIPInUse) {
			return "no RequestedIPInUse event for b"
		}
		return ""
	})
	_ = pool
}

func hasEvent(t *testing.T, ns, name, reason string) bool {
	var list corev1.EventList
	must(t, k8s.List(ctx, &list, client.InNamespace(ns)))
	for _, e := range list.Items {
		if e.InvolvedObject.Name == name && e.Reason == reason {
			return true
		}
	}
	return false
}

func TestSharingAndConflict(t *testing.T) {
	startManager(t, defaultOpts())
	ns := newNamespace(t, nil)
	pool := newPool(t, unique("share"), v1alpha1.EIPPoolSpec{Addresses: []string{"198.51.100.32/29"}, AutoAssign: ptr.To(false)})
	key := withAnnotation(v1alpha1.AnnotationSharingKey, "web")
	newService(t, ns, "http", poolAnn(pool.Name), key, withPorts(80))
	newService(t, ns, "https", poolAnn(pool.Name), key, withPorts(443))
	a, b := waitIPs(t, ns, "http", 1), waitIPs(t, ns, "https", 1)
	if a[0] != b[0] {
		t.Fatalf("sharing Services got %v and %v, want one address", a, b)
	}
	newService(t, ns, "clash", poolAnn(pool.Name), key, withPorts(443))
	c := waitReason(t, ns, "clash", v1alpha1.ReasonSharingConflict)
	if !containsAll(c.Message, "443", ns+"/https") {
		t.Fatalf("conflict message %q does not name the port and the Service", c.Message)
	}
	if got := ips(getService(t, ns, "clash")); len(got) != 0 {
		t.Fatalf("clashing Service got %v, want no silent second address", got)
	}
	// The record lists both holders; releasing one keeps it for the other.
	ea := &v1alpha1.EIPAllocation{}
	must(t, k8s.Get(ctx, client.ObjectKey{Name: ipam.AllocationName(netip.MustParseAddr(a[0]))}, ea))
	if len(ea.Spec.Services) != 2 || ea.Spec.SharingKey != ns+"/web" {
		t.Fatalf("shared record %+v", ea.Spec)
	}
	must(t, k8s.Delete(ctx, getService(t, ns, "http")))
	eventually(t, 5*time.Second, func() string {
		must(t, k8s.Get(ctx, client.ObjectKeyFromObject(ea), ea))
		if len(ea.Spec.Services) != 1 || ea.Spec.Services[0].Name != "https" {
			return fmt.Sprintf("record holders %+v", ea.Spec.Services)
		}
		return ""
	})
	if got := waitIPs(t, ns, "https", 1); got[0] != a[0] {
		t.Fatalf("remaining sharer moved from %s to %s", a[0], got[0])
	}
}

func TestExhaustionAndFix(t *testing.T) {
	startManager(t, defaultOpts())
	ns := newNamespace(t, nil)
	pool := newPool(t, unique("small"), v1alpha1.EIPPoolSpec{Addresses: []string{"198.51.100.64/31"}, AutoAssign: ptr.To(false)})
	newService(t, ns, "s1", poolAnn(pool.Name))
	newService(t, ns, "s2", poolAnn(pool.Name))
	waitIPs(t, ns, "s1", 1)
	waitIPs(t, ns, "s2", 1)
	newService(t, ns, "s3", poolAnn(pool.Name))
	c := waitReason(t, ns, "s3", v1alpha1.ReasonPoolExhausted)
	if !containsAll(c.Message, pool.Name) {
		t.Fatalf("message %q does not name the pool", c.Message)
	}
	eventually(t, 5*time.Second, func() string {
		p := &v1alpha1.EIPPool{}
		must(t, k8s.Get(ctx, client.ObjectKeyFromObject(pool), p))
		if c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.PoolConditionReady); c == nil || c.Reason != v1alpha1.PoolReasonExhausted {
			return fmt.Sprintf("pool condition %+v", c)
		}
		return ""
	})
	// Enlarging the pool serves the waiting Service and clears the condition.
	must(t, k8s.Get(ctx, client.ObjectKeyFromObject(pool), pool))
	pool.Spec.Addresses = []string{"198.51.100.64/30"}
	must(t, k8s.Update(ctx, pool))
	got := waitIPs(t, ns, "s3", 1)
	if !netip.MustParsePrefix("198.51.100.64/30").Contains(netip.MustParseAddr(got[0])) {
		t.Fatalf("got %s", got[0])
	}
	c = meta.FindStatusCondition(getService(t, ns, "s3").Status.Conditions, v1alpha1.ConditionIPAllocated)
	if c.Reason != v1alpha1.ReasonAllocated {
		t.Fatalf("condition not cleared: %+v", c)
	}
}

func TestDeleteFreesAddressForWaitingService(t *testing.T) {
	startManager(t, defaultOpts())
	ns := newNamespace(t, nil)
	pool := newPool(t, unique("one"), v1alpha1.EIPPoolSpec{Addresses: []string{"198.51.100.80"}, AutoAssign: ptr.To(false)})
	newService(t, ns, "first", poolAnn(pool.Name))
	waitIPs(t, ns, "first", 1)
	newService(t, ns, "second", poolAnn(pool.Name))
	waitReason(t, ns, "second", v1alpha1.ReasonPoolExhausted)
	must(t, k8s.Delete(ctx, getService(t, ns, "first")))
	if got := waitIPs(t, ns, "second", 1); got[0] != "198.51.100.80" {
		t.Fatalf("got %v, want the freed 198.51.100.80", got)
	}
}

func TestTypeChangeReleases(t *testing.T) {
	startManager(t, defaultOpts())
	ns := newNamespace(t, nil)
	pool := newPool(t, unique("typechange"), v1alpha1.EIPPoolSpec{Addresses: []string{"198.51.100.88/30"}, AutoAssign: ptr.To(false)})
	newService(t, ns, "s", poolAnn(pool.Name))
	got := waitIPs(t, ns, "s", 1)
	s := getService(t, ns, "s")
	s.Spec.Type = corev1.ServiceTypeClusterIP
	s.Spec.LoadBalancerClass = nil
	must(t, k8s.Update(ctx, s))
	eventually(t, 5*time.Second, func() string {
		err := k8s.Get(ctx, client.ObjectKey{Name: ipam.AllocationName(netip.MustParseAddr(got[0]))}, &v1alpha1.EIPAllocation{})
		if !apierrors.IsNotFound(err) {
			return "record of a ClusterIP Service still there"
		}
		if c := meta.FindStatusCondition(getService(t, ns, "s").Status.Conditions, v1alpha1.ConditionIPAllocated); c != nil {
			return fmt.Sprintf("condition left behind: %+v", c)
		}
		return ""
	})
}

func TestDualStack(t *testing.T) {
	startManager(t, defaultOpts())
	ns := newNamespace(t, nil)
	pool := newPool(t, unique("dual"), v1alpha1.EIPPoolSpec{Addresses: []string{"198.51.100.96/30", "2001:db8:1::/126"}, AutoAssign: ptr.To(false)})
	v4only := newPool(t, unique("v4only"), v1alpha1.EIPPoolSpec{Addresses: []string{"198.51.100.100/30"}, AutoAssign: ptr.To(false)})
	newService(t, ns, "both", poolAnn(pool.Name), withFamilies(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv6Protocol, corev1.IPv4Protocol))
	got := waitIPs(t, ns, "both", 2)
	if !netip.MustParseAddr(got[0]).Is6() || !netip.MustParseAddr(got[1]).Is4() {
		t.Fatalf("got %v, want IPv6 then IPv4 (the Service's family order)", got)
	}
	// PreferDualStack from a v4-only pool: served with IPv4, condition True.
	newService(t, ns, "prefer", poolAnn(v4only.Name), withFamilies(corev1.IPFamilyPolicyPreferDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol))
	waitIPs(t, ns, "prefer", 1)
	// RequireDualStack from the v4-only pool: refused, nothing half-assigned.
	newService(t, ns, "require", poolAnn(v4only.Name), withFamilies(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol))
	c := waitReason(t, ns, "require", v1alpha1.ReasonNoMatchingPool)
	if !containsAll(c.Message, "IPv6") {
		t.Fatalf("message %q does not name the missing family", c.Message)
	}
	if got := ips(getService(t, ns, "require")); len(got) != 0 {
		t.Fatalf("RequireDualStack half-assigned %v", got)
	}
}

func TestInvalidAnnotationKeepsAddress(t *testing.T) {
	startManager(t, defaultOpts())
	ns := newNamespace(t, nil)
	pool := newPool(t, unique("inv"), v1alpha1.EIPPoolSpec{Addresses: []string{"198.51.100.104/30"}, AutoAssign: ptr.To(false)})
	newService(t, ns, "bad", withAnnotation(v1alpha1.AnnotationIP, "not-an-ip,,"))
	c := waitReason(t, ns, "bad", v1alpha1.ReasonInvalidAnnotation)
	if !containsAll(c.Message, "not-an-ip") {
		t.Fatalf("message %q", c.Message)
	}
	// A working Service whose annotation turns to garbage keeps its address.
	newService(t, ns, "good", poolAnn(pool.Name))
	before := waitIPs(t, ns, "good", 1)
	s := getService(t, ns, "good")
	s.Annotations[v1alpha1.AnnotationSharingKey] = "Not A Key!"
	must(t, k8s.Update(ctx, s))
	waitReason(t, ns, "good", v1alpha1.ReasonInvalidAnnotation)
	if after := ips(getService(t, ns, "good")); !slices.Equal(before, after) {
		t.Fatalf("address changed from %v to %v on a bad annotation", before, after)
	}
	// The manager is alive: a new Service still gets an address.
	newService(t, ns, "after", poolAnn(pool.Name))
	waitIPs(t, ns, "after", 1)
}

func TestBadPoolRejectedByAPIServer(t *testing.T) {
	for _, addrs := range [][]string{
		{"198.51.100.0/33"},
		{"not-an-address"},
		{"198.51.100.1-2001:db8::1"},
		{},
	} {
		p := &v1alpha1.EIPPool{ObjectMeta: metav1.ObjectMeta{Name: unique("bad")}, Spec: v1alpha1.EIPPoolSpec{Addresses: addrs}}
		err := k8s.Create(ctx, p)
		if !apierrors.IsInvalid(err) {
			_ = k8s.Delete(ctx, p)
			t.Errorf("pool %v: got %v, want Invalid", addrs, err)
		}
	}
}

func TestReversedRangeFlagged(t *testing.T) {
	startManager(t, defaultOpts())
	// CEL has no ordering of IPs: the API server takes a reversed range and
	// the pool says why it is not used.
	p := newPool(t, unique("reversed"), v1alpha1.EIPPoolSpec{Addresses: []string{"198.51.100.9-198.51.100.1"}})
	eventually(t, 5*time.Second, func() string {
		must(t, k8s.Get(ctx, client.ObjectKeyFromObject(p), p))
		c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.PoolConditionReady)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != "Invalid" || !containsAll(c.Message, "ends before it starts") {
			return fmt.Sprintf("condition %+v", c)
		}
		return ""
	})
}

func TestOverlappingPoolFlagged(t *testing.T) {
	startManager(t, defaultOpts())
	first := newPool(t, unique("ov-first"), v1alpha1.EIPPoolSpec{Addresses: []string{"198.51.100.112/29"}, AutoAssign: ptr.To(false)})
	time.Sleep(1100 * time.Millisecond) // creation timestamps have one-second resolution
	second := newPool(t, unique("ov-second"), v1alpha1.EIPPoolSpec{Addresses: []string{"198.51.100.116-198.51.100.130"}, AutoAssign: ptr.To(false)})
	eventually(t, 5*time.Second, func() string {
		p := &v1alpha1.EIPPool{}
		must(t, k8s.Get(ctx, client.ObjectKeyFromObject(second), p))
		c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.PoolConditionReady)
		if c == nil || c.Reason != v1alpha1.PoolReasonOverlap || !containsAll(c.Message, first.Name) {
			return fmt.Sprintf("second pool condition %+v", c)
		}
		must(t, k8s.Get(ctx, client.ObjectKeyFromObject(first), p))
		if c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.PoolConditionReady); c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Sprintf("first pool condition %+v", c)
		}
		return ""
	})
	// The flagged pool serves nothing, and a Service naming it is told why.
	ns := newNamespace(t, nil)
	newService(t, ns, "s", poolAnn(second.Name))
	if c := waitReason(t, ns, "s", v1alpha1.ReasonPoolNotReady); !containsAll(c.Message, "Overlap", first.Name) {
		t.Errorf("message %q", c.Message)
	}
}

// TestRestartKeepsEveryAddress stops the manager and starts a new one: every
// Service keeps its address and new ones get distinct addresses.
func TestRestartKeepsEveryAddress(t *testing.T) {
	stop := startManager(t, defaultOpts())
	ns := newNamespace(t, nil)
	pool := newPool(t, unique("restart"), v1alpha1.EIPPoolSpec{Addresses: []string{"198.51.100.128/28"}, AutoAssign: ptr.To(false)})
	before := map[string]string{}
	for i := range 6 {
		newService(t, ns, fmt.Sprintf("s%d", i), poolAnn(pool.Name))
	}
	for i := range 6 {
		before[fmt.Sprintf("s%d", i)] = waitIPs(t, ns, fmt.Sprintf("s%d", i), 1)[0]
	}
	stop()
	startManager(t, defaultOpts())
	for i := 6; i < 10; i++ {
		newService(t, ns, fmt.Sprintf("s%d", i), poolAnn(pool.Name))
	}
	seen := map[string]string{}
	for i := range 10 {
		name := fmt.Sprintf("s%d", i)
		ip := waitIPs(t, ns, name, 1)[0]
		if b, ok := before[name]; ok && b != ip {
			t.Errorf("%s changed address from %s to %s across a restart", name, b, ip)
		}
		if other, dup := seen[ip]; dup {
			t.Errorf("%s and %s both have %s", name, other, ip)
		}
		seen[ip] = name
	}
}

// TestAdoptsAddressWithoutRecord: a Service whose status shows an address
// with no record (records lost, or an older eiplb) keeps it.
func TestAdoptsAddressWithoutRecord(t *testing.T) {
	ns := newNamespace(t, nil)
	pool := newPool(t, unique("adopt"), v1alpha1.EIPPoolSpec{Addresses: []string{"198.51.100.144/29"}, AutoAssign: ptr.To(false)})
	s := newService(t, ns, "old", poolAnn(pool.Name))
	s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.149"}}
	must(t, k8s.Status().Update(ctx, s))
	startManager(t, defaultOpts())
	if got := waitIPs(t, ns, "old", 1); got[0] != "198.51.100.149" {
		t.Fatalf("got %v, want the adopted 198.51.100.149", got)
	}
	ea := &v1alpha1.EIPAllocation{}
	must(t, k8s.Get(ctx, client.ObjectKey{Name: "198.51.100.149"}, ea))
	if ea.Spec.Services[0].Name != "old" {
		t.Fatalf("record %+v", ea.Spec)
	}
}

// TestTwoManagersNeverDuplicate runs two allocators at once without leader
// election (the worst case: split brain) while Services are created and
// deleted concurrently; no address is ever shown by two Services.
func TestTwoManagersNeverDuplicate(t *testing.T) {
	startManager(t, defaultOpts())
	startManager(t, defaultOpts())
	ns := newNamespace(t, nil)
	pool := newPool(t, unique("race"), v1alpha1.EIPPoolSpec{Addresses: []string{"198.51.100.160/27"}, AutoAssign: ptr.To(false)})
	const n = 40 // more Services than the 32 addresses; 10 are deleted
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			newService(t, ns, fmt.Sprintf("s%02d", i), poolAnn(pool.Name))
		}()
	}
	wg.Wait()
	for i := range 10 {
		must(t, k8s.Delete(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("s%02d", i*4)}}))
	}
	// 30 Services remain for 32 addresses: every one must get a distinct one.
	eventually(t, 20*time.Second, func() string {
		var list corev1.ServiceList
		must(t, k8s.List(ctx, &list, client.InNamespace(ns)))
		owner := map[string]string{}
		withIP := 0
		for _, s := range list.Items {
			if s.DeletionTimestamp != nil {
				continue
			}
			for _, ip := range ips(&s) {
				if o, dup := owner[ip]; dup {
					t.Fatalf("DUPLICATE: %s shown by %s and %s", ip, o, s.Name)
				}
				owner[ip] = s.Name
			}
			if len(ips(&s)) == 1 {
				withIP++
			}
		}
		if withIP != 30 {
			return fmt.Sprintf("%d of 30 Services have an address", withIP)
		}
		return ""
	})
	// And the records match: one per address, none left for deleted Services.
	eventually(t, 10*time.Second, func() string {
		var recs v1alpha1.EIPAllocationList
		must(t, k8s.List(ctx, &recs))
		var list corev1.ServiceList
		must(t, k8s.List(ctx, &list, client.InNamespace(ns)))
		shown := map[string]string{} // address → the Service whose status shows it
		for _, s := range list.Items {
			for _, ip := range ips(&s) {
				shown[ip] = s.Name
			}
		}
		count := 0
		var extra []string // records no Service's status shows, for the failure message
		for _, r := range recs.Items {
			if r.Spec.Pool != pool.Name {
				continue
			}
			count++
			if shown[r.Spec.Address] == "" {
				extra = append(extra, fmt.Sprintf("%s held by %v", r.Spec.Address, r.Spec.Services))
			}
		}
		if count != 30 {
			return fmt.Sprintf("%d records for the pool, want 30; not shown by any Service: %v", count, extra)
		}
		return ""
	})
}

// TestSourceRangesOfOneFamilyReported: a dual-stack Service restricted to
// IPv4 clients gets one Warning Event saying its IPv6 address admits no
// client (the agents fail closed; kube-proxy would leave it open). The API
// server itself refuses entries that are not CIDRs on LoadBalancer
// Services, so those reach eiplb only on objects older than its check.
func TestSourceRangesOfOneFamilyReported(t *testing.T) {
	startManager(t, defaultOpts())
	ns := newNamespace(t, nil)
	pool := newPool(t, unique("ranges"), v1alpha1.EIPPoolSpec{Addresses: []string{"198.51.100.104/30", "2001:db8:2::/126"}, AutoAssign: ptr.To(false)})
	newService(t, ns, "restricted", poolAnn(pool.Name), withFamilies(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol),
		func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = []string{"203.0.113.0/24"} })
	newService(t, ns, "fine", poolAnn(pool.Name), withFamilies(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol),
		func(s *corev1.Service) {
			s.Spec.LoadBalancerSourceRanges = []string{"203.0.113.0/24", "2001:db8:ff::/48"}
		})
	waitIPs(t, ns, "restricted", 2)
	waitIPs(t, ns, "fine", 2)
	var msgs []string
	eventually(t, 10*time.Second, func() string {
		var list corev1.EventList
		must(t, k8s.List(ctx, &list, client.InNamespace(ns)))
		msgs = nil
		for _, e := range list.Items {
			if e.Reason == v1alpha1.ReasonSourceRangesIgnored {
				msgs = append(msgs, e.InvolvedObject.Name+": "+e.Message)
			}
		}
		if len(msgs) == 0 {
			return "no " + v1alpha1.ReasonSourceRangesIgnored + " Event"
		}
		return ""
	})
	if len(msgs) != 1 || !containsAll(msgs[0], "restricted: ", "no valid IPv6 range") {
		t.Errorf("Events %q, want one for restricted naming IPv6", msgs)
	}
}
