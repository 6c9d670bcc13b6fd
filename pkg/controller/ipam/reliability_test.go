package ipam_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/ipam"
)

// recordsMatchServices waits until the pool's records are exactly one per
// address shown by a Service of ns, each naming that Service by its current
// UID: no record left for a Service that is gone.
func recordsMatchServices(t *testing.T, ns, pool string, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, func() string {
		var recs v1alpha1.EIPAllocationList
		must(t, k8s.List(ctx, &recs))
		var list corev1.ServiceList
		must(t, k8s.List(ctx, &list, client.InNamespace(ns)))
		shown := map[string]*corev1.Service{}
		for i := range list.Items {
			s := &list.Items[i]
			for _, ip := range ips(s) {
				if o, dup := shown[ip]; dup {
					t.Fatalf("DUPLICATE: %s shown by %s and %s", ip, o.Name, s.Name)
				}
				shown[ip] = s
			}
		}
		var bad []string
		count := 0
		for _, r := range recs.Items {
			if r.Spec.Pool != pool {
				continue
			}
			count++
			s := shown[r.Spec.Address]
			if s == nil || len(r.Spec.Services) != 1 || r.Spec.Services[0].UID != string(s.UID) {
				bad = append(bad, fmt.Sprintf("%s held by %v", r.Spec.Address, r.Spec.Services))
			}
		}
		if len(bad) > 0 || count != len(shown) {
			return fmt.Sprintf("%d records for %d shown addresses; records no Service shows: %v", count, len(shown), bad)
		}
		return ""
	})
}

// TestDeletedWhileDownReleased: Services deleted, recreated under the same
// name or turned into ClusterIP while no manager runs leave records behind;
// a starting manager releases them and hands the addresses out again
// (regression: the record of a deleted Service stayed forever).
func TestDeletedWhileDownReleased(t *testing.T) {
	stop := startManager(t, defaultOpts())
	ns := newNamespace(t, nil)
	pool := newPool(t, unique("down"), v1alpha1.EIPPoolSpec{Addresses: []string{"198.51.100.192/30"}, AutoAssign: ptr.To(false)})
	for i := range 4 {
		newService(t, ns, fmt.Sprintf("s%d", i), poolAnn(pool.Name))
	}
	kept := ""
	for i := range 4 {
		ip := waitIPs(t, ns, fmt.Sprintf("s%d", i), 1)[0]
		if i == 3 {
			kept = ip
		}
	}
	stop()

	// While no allocator runs: s0 deleted, s1 deleted and created again
	// (a new UID), s2 turned into a ClusterIP Service; s3 stays.
	must(t, k8s.Delete(ctx, getService(t, ns, "s0")))
	must(t, k8s.Delete(ctx, getService(t, ns, "s1")))
	eventually(t, 10*time.Second, func() string {
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "s1"}, &corev1.Service{}); !apierrors.IsNotFound(err) {
			return fmt.Sprintf("s1 not deleted yet (%v)", err)
		}
		return ""
	})
	newService(t, ns, "s1", poolAnn(pool.Name))
	s2 := getService(t, ns, "s2")
	s2.Spec.Type, s2.Spec.LoadBalancerClass = corev1.ServiceTypeClusterIP, nil
	must(t, k8s.Update(ctx, s2))

	startManager(t, defaultOpts())
	// The pool has 4 addresses: s3 keeps one, the new s1 and two new
	// Services get the 3 others only if the stale records are released.
	newService(t, ns, "s4", poolAnn(pool.Name))
	newService(t, ns, "s5", poolAnn(pool.Name))
	for _, name := range []string{"s1", "s4", "s5"} {
		waitIPs(t, ns, name, 1)
	}
	if got := waitIPs(t, ns, "s3", 1)[0]; got != kept {
		t.Errorf("s3 changed address from %s to %s across the restart", kept, got)
	}
	recordsMatchServices(t, ns, pool.Name, 10*time.Second)
}

// TestChurnAcrossManagerGapNoLeak creates and deletes Services continuously
// while the allocator is stopped for a while and another one starts: every
// record left at the end belongs to a live Service that shows its address
// (regression: each Service deleted in the gap leaked its record).
func TestChurnAcrossManagerGapNoLeak(t *testing.T) {
	stop := startManager(t, defaultOpts())
	ns := newNamespace(t, nil)
	pool := newPool(t, unique("churn"), v1alpha1.EIPPoolSpec{Addresses: []string{"198.51.100.224/27"}, AutoAssign: ptr.To(false)})
	const alive = 8 // Services alive at once; the pool has 32 addresses
	n := 0
	// step creates one Service and deletes the one created alive steps
	// before: the load, paced by the API server's own latency.
	step := func() {
		newService(t, ns, fmt.Sprintf("c%03d", n), poolAnn(pool.Name))
		if n >= alive {
			must(t, k8s.Delete(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("c%03d", n-alive)}}))
		}
		n++
	}
	for range 2 * alive {
		step()
	}
	// Every Service alive now has an address, so the ones deleted in the
	// gap below hold records.
	for i := n - alive; i < n; i++ {
		waitIPs(t, ns, fmt.Sprintf("c%03d", i), 1)
	}
	stop()
	for range alive + alive/2 {
		step()
	}
	startManager(t, defaultOpts())
	for range 2 * alive {
		step()
	}
	for i := n - alive; i < n; i++ {
		waitIPs(t, ns, fmt.Sprintf("c%03d", i), 1)
	}
	recordsMatchServices(t, ns, pool.Name, 15*time.Second)
}

// TestUnusablePoolAddresses: a pool hands out no unspecified, loopback or
// IPv6 Subnet-Router anycast address, counts only usable ones, and a pool
// made only of such addresses says so.
func TestUnusablePoolAddresses(t *testing.T) {
	startManager(t, defaultOpts())
	ns := newNamespace(t, nil)
	low := newPool(t, unique("zero"), v1alpha1.EIPPoolSpec{Addresses: []string{"0.0.0.0/7"}, AutoAssign: ptr.To(false)})
	v6 := newPool(t, unique("anycast"), v1alpha1.EIPPoolSpec{Addresses: []string{"2001:db8:aaaa::/126"}, AutoAssign: ptr.To(false)})
	none := newPool(t, unique("none"), v1alpha1.EIPPoolSpec{Addresses: []string{"127.0.0.0/30", "ff02::/126"}, AutoAssign: ptr.To(false)})
	newService(t, ns, "low", poolAnn(low.Name))
	newService(t, ns, "v6", poolAnn(v6.Name), withFamilies(corev1.IPFamilyPolicySingleStack, corev1.IPv6Protocol))
	newService(t, ns, "none", poolAnn(none.Name))
	if got := waitIPs(t, ns, "low", 1)[0]; got != "1.0.0.0" {
		t.Errorf("pool 0.0.0.0/7 gave %s, want 1.0.0.0 (0.0.0.0/8 is never handed out)", got)
	}
	if got := waitIPs(t, ns, "v6", 1)[0]; got != "2001:db8:aaaa::1" {
		t.Errorf("pool 2001:db8:aaaa::/126 gave %s, want 2001:db8:aaaa::1 (not the Subnet-Router anycast address)", got)
	}
	c := waitReason(t, ns, "none", v1alpha1.ReasonPoolNotReady)
	if !containsAll(c.Message, none.Name, "127.0.0.0/8 (loopback)", "ff00::/8 (multicast)") {
		t.Errorf("message %q does not say what is wrong with the pool", c.Message)
	}
	poolStatus := func(name string, check func(*v1alpha1.EIPPool, *metav1.Condition) string) {
		eventually(t, 10*time.Second, func() string {
			p := &v1alpha1.EIPPool{}
			must(t, k8s.Get(ctx, client.ObjectKey{Name: name}, p))
			return check(p, meta.FindStatusCondition(p.Status.Conditions, v1alpha1.PoolConditionReady))
		})
	}
	poolStatus(low.Name, func(p *v1alpha1.EIPPool, c *metav1.Condition) string {
		if p.Status.Capacity != 1<<24 || c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Sprintf("capacity %d (want %d), condition %+v", p.Status.Capacity, 1<<24, c)
		}
		return ""
	})
	poolStatus(v6.Name, func(p *v1alpha1.EIPPool, c *metav1.Condition) string {
		if p.Status.Capacity != 3 || p.Status.Free != 2 {
			return fmt.Sprintf("capacity %d free %d, want 3 and 2", p.Status.Capacity, p.Status.Free)
		}
		return ""
	})
	poolStatus(none.Name, func(p *v1alpha1.EIPPool, c *metav1.Condition) string {
		if p.Status.Capacity != 0 || c == nil || c.Status != metav1.ConditionFalse || c.Reason != "NoUsableAddresses" || !containsAll(c.Message, "127.0.0.0/8") {
			return fmt.Sprintf("capacity %d, condition %+v", p.Status.Capacity, c)
		}
		return ""
	})
}

// TestNamedPoolNotReady: a Service naming a disabled pool, or one flagged
// Overlap, is told what is wrong with the pool, not that it does not exist.
func TestNamedPoolNotReady(t *testing.T) {
	startManager(t, defaultOpts())
	ns := newNamespace(t, nil)
	first := newPool(t, unique("nr-first"), v1alpha1.EIPPoolSpec{Addresses: []string{"203.0.113.64/29"}, AutoAssign: ptr.To(false)})
	// Creation timestamps have one-second resolution: wait for the clock,
	// so that the second pool is the younger one.
	eventually(t, 5*time.Second, func() string {
		if time.Since(first.CreationTimestamp.Time) < 1100*time.Millisecond {
			return "waiting for a later creation timestamp"
		}
		return ""
	})
	second := newPool(t, unique("nr-second"), v1alpha1.EIPPoolSpec{Addresses: []string{"203.0.113.68/30"}, AutoAssign: ptr.To(false)})
	off := newPool(t, unique("nr-off"), v1alpha1.EIPPoolSpec{Addresses: []string{"203.0.113.80/30"}, AutoAssign: ptr.To(false), Disabled: true})
	newService(t, ns, "ov", poolAnn(second.Name))
	newService(t, ns, "off", poolAnn(off.Name))
	newService(t, ns, "missing", poolAnn(unique("nr-missing")))
	if c := waitReason(t, ns, "ov", v1alpha1.ReasonPoolNotReady); !containsAll(c.Message, second.Name, "Overlap", first.Name) || strings.Contains(c.Message, "does not exist") {
		t.Errorf("message %q", c.Message)
	}
	if c := waitReason(t, ns, "off", v1alpha1.ReasonPoolNotReady); !containsAll(c.Message, off.Name, "disabled") {
		t.Errorf("message %q", c.Message)
	}
	if c := waitReason(t, ns, "missing", v1alpha1.ReasonNoMatchingPool); !containsAll(c.Message, "does not exist") {
		t.Errorf("message %q", c.Message)
	}
}

// counter reads a counter of controller-runtime's registry (0 when absent).
func counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := metrics.Registry.Gather()
	must(t, err)
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := true
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
					match = false
				}
			}
			if match {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

// TestSharingLimit: the 257th Service on one sharing key gets a
// SharingConflict condition that states the limit, one Event, and no
// failing write (regression: no condition, and the manager retried
// "spec.services: Too many: 257" forever).
func TestSharingLimit(t *testing.T) {
	startManager(t, defaultOpts())
	ns := newNamespace(t, nil)
	pool := newPool(t, unique("limit"), v1alpha1.EIPPoolSpec{Addresses: []string{"203.0.113.96/30"}, AutoAssign: ptr.To(false)})
	key := withAnnotation(v1alpha1.AnnotationSharingKey, "many")
	var wg sync.WaitGroup
	const workers = 8
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < ipam.MaxHolders; i += workers {
				newService(t, ns, fmt.Sprintf("s%03d", i), poolAnn(pool.Name), key, withPorts(int32(1000+i)))
			}
		}()
	}
	wg.Wait()
	var addr string
	eventually(t, 60*time.Second, func() string {
		ea := &v1alpha1.EIPAllocationList{}
		must(t, k8s.List(ctx, ea))
		for _, r := range ea.Items {
			if r.Spec.Pool == pool.Name {
				addr = r.Spec.Address
				if len(r.Spec.Services) == ipam.MaxHolders {
					return ""
				}
				return fmt.Sprintf("%d holders", len(r.Spec.Services))
			}
		}
		return "no record"
	})
	errorsBefore := counter(t, "controller_runtime_reconcile_errors_total", map[string]string{"controller": "ipam-service"})
	newService(t, ns, "one-too-many", poolAnn(pool.Name), key, withPorts(2000))
	c := waitReason(t, ns, "one-too-many", v1alpha1.ReasonSharingConflict)
	if !containsAll(c.Message, addr, "256") {
		t.Errorf("message %q does not state the address and the limit", c.Message)
	}
	eventually(t, 10*time.Second, func() string {
		if !hasEvent(t, ns, "one-too-many", v1alpha1.ReasonSharingConflict) {
			return "no SharingConflict Event"
		}
		return ""
	})
	var list corev1.EventList
	must(t, k8s.List(ctx, &list, client.InNamespace(ns)))
	events := 0
	for _, e := range list.Items {
		if e.InvolvedObject.Name == "one-too-many" {
			events++
		}
	}
	if events != 1 {
		t.Errorf("%d Events for the Service, want 1", events)
	}
	if after := counter(t, "controller_runtime_reconcile_errors_total", map[string]string{"controller": "ipam-service"}); after != errorsBefore {
		t.Errorf("reconcile errors went from %v to %v: a write was refused", errorsBefore, after)
	}
	if got := ips(getService(t, ns, "one-too-many")); len(got) != 0 {
		t.Errorf("got %v", got)
	}
}

// TestLongAnnotationBounded: a 64 KiB annotation gives a condition and an
// Event that quote it only in part (regression: the condition quoted all of
// it, and the Event was refused at 1024 characters).
func TestLongAnnotationBounded(t *testing.T) {
	startManager(t, defaultOpts())
	ns := newNamespace(t, nil)
	long := strings.Repeat("x", 64<<10)
	newService(t, ns, "long", withAnnotation(v1alpha1.AnnotationIP, long), withAnnotation(v1alpha1.AnnotationSharingKey, long))
	c := waitReason(t, ns, "long", v1alpha1.ReasonInvalidAnnotation)
	if len(c.Message) > 1024 || !containsAll(c.Message, v1alpha1.AnnotationIP, v1alpha1.AnnotationSharingKey, "65536 bytes") {
		t.Errorf("condition message of %d bytes: %.300q", len(c.Message), c.Message)
	}
	eventually(t, 10*time.Second, func() string {
		var list corev1.EventList
		must(t, k8s.List(ctx, &list, client.InNamespace(ns)))
		for _, e := range list.Items {
			if e.InvolvedObject.Name == "long" && e.Reason == v1alpha1.ReasonInvalidAnnotation {
				if len(e.Message) > 1024 || !strings.Contains(e.Message, "65536 bytes") {
					return fmt.Sprintf("Event message of %d bytes: %.300q", len(e.Message), e.Message)
				}
				return ""
			}
		}
		return "no InvalidAnnotation Event"
	})
	// A pool's selector error quotes the value in full: bounded too.
	pool := newPool(t, unique("longsel"), v1alpha1.EIPPoolSpec{Addresses: []string{"203.0.113.104/30"}, AutoAssign: ptr.To(false),
		ServiceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": long}}})
	eventually(t, 10*time.Second, func() string {
		p := &v1alpha1.EIPPool{}
		must(t, k8s.Get(ctx, client.ObjectKeyFromObject(pool), p))
		c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.PoolConditionReady)
		if c == nil || c.Reason != "Invalid" || len(c.Message) > 1024 {
			if c != nil {
				return fmt.Sprintf("pool condition %s/%s, message of %d bytes: %.300q", c.Status, c.Reason, len(c.Message), c.Message)
			}
			return "no pool condition"
		}
		return ""
	})
}

// TestLeaderHandoverChurnNoLeak: two leader-elected managers, Services
// created and deleted continuously while the leader stops and the standby
// takes over: no record is left for a deleted Service (regression: the
// Services deleted in the moments before the standby's controller started
// leaked theirs) and no address is shown twice.
func TestLeaderHandoverChurnNoLeak(t *testing.T) {
	leaseNS := newNamespace(t, nil)
	opts := defaultOpts()
	opts.LeaderElection = true
	opts.LeaderElectionNamespace = leaseNS
	opts.LeaderElectionID = unique("ipam-lease")
	stopLeader := startManager(t, opts)
	ns := newNamespace(t, nil)
	pool := newPool(t, unique("handover"), v1alpha1.EIPPoolSpec{Addresses: []string{"203.0.113.128/27"}, AutoAssign: ptr.To(false)})
	const alive = 8
	n := 0
	step := func() {
		newService(t, ns, fmt.Sprintf("h%03d", n), poolAnn(pool.Name))
		if n >= alive {
			must(t, k8s.Delete(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("h%03d", n-alive)}}))
		}
		n++
	}
	for range 2 * alive {
		step()
	}
	for i := n - alive; i < n; i++ {
		waitIPs(t, ns, fmt.Sprintf("h%03d", i), 1) // the first manager leads
	}
	startManager(t, opts) // the standby, caches warm
	stopLeader()          // releases the Lease; the standby takes over
	for range 3 * alive {
		step()
	}
	for i := n - alive; i < n; i++ {
		waitIPs(t, ns, fmt.Sprintf("h%03d", i), 1)
	}
	recordsMatchServices(t, ns, pool.Name, 15*time.Second)
}
