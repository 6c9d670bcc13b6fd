// Package ipam is the IPAM controller of the manager: it gives Services of
// type LoadBalancer addresses from EIPPools and makes every allocation
// durable as an EIPAllocation object named after the address, so the API
// server refuses a duplicate whatever the allocators do.
package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/ipam"
)

// Config selects the Services the controller serves and how it reports
// their addresses.
type Config struct {
	// Class is the loadBalancerClass served (v1alpha1.LoadBalancerClass).
	Class string
	// ServeNoClass also serves LoadBalancer Services without a class.
	ServeNoClass bool
	// IPMode is written to status.loadBalancer.ingress[].ipMode.
	IPMode corev1.LoadBalancerIPMode
}

// ServiceReconciler allocates addresses to Services.
type ServiceReconciler struct {
	client    client.Client
	apiReader client.Reader
	recorder  events.EventRecorder
	cfg       Config
	alloc     *ipam.Allocator
	index     *allocationIndex
	pools     poolCache
	pending   pendingSet

	adoptMu sync.Mutex
	adopted bool

	ranges rangeReports

	// keyLocks serialise the Services of one sharing key, so the second
	// one sees the first one's record and joins it.
	keyLocks keyedMutex
}

// keyedMutex is a set of mutexes by key, dropped when unused.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyLock
}

type keyLock struct {
	sync.Mutex
	users int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &keyLock{}
		k.locks[key] = l
	}
	l.users++
	k.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		if l.users--; l.users == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}

// errRetry asks for a retry after the index learned something new.
var errRetry = errors.New("allocation changed underneath, retrying")

// Reconcile brings one Service's addresses, records and status in line.
func (r *ServiceReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if !r.index.synced() {
		return ctrl.Result{RequeueAfter: 50 * time.Millisecond}, nil
	}
	if err := r.adoptOnce(ctx); err != nil {
		return ctrl.Result{}, err
	}
	err := r.reconcile(ctx, req.NamespacedName)
	if errors.Is(err, errRetry) {
		return ctrl.Result{Requeue: true}, nil
	}
	return ctrl.Result{}, err
}

func (r *ServiceReconciler) reconcile(ctx context.Context, key types.NamespacedName) error {
	logger := log.FromContext(ctx)
	svc := &corev1.Service{}
	if err := r.client.Get(ctx, key, svc); err != nil {
		if !apierrors.IsNotFound(err) {
			return err
		}
		svc = nil
	}
	wanted := svc != nil && r.ours(svc) && svc.DeletionTimestamp == nil
	keepUID := ""
	if wanted {
		keepUID = string(svc.UID)
	}
	var released []netip.Addr
	if r.hasStale(key, keepUID) {
		// Records name a Service of this name that the cache says is gone,
		// is another incarnation, or is no longer ours. The cache may lag:
		// a Service created a moment ago (whose record another allocator
		// wrote) may not be in it yet. Release only what the API server
		// itself says no Service wants.
		live, err := r.liveUID(ctx, key)
		if err != nil {
			return err
		}
		if released, err = r.releaseStale(ctx, key, live); err != nil {
			return err
		}
		if live != keepUID {
			// The cache is behind; its event for this Service brings it
			// back here, and so does this retry.
			return errRetry
		}
	}
	if !wanted {
		r.pending.remove(key)
		if svc != nil {
			r.ranges.forget(svc.UID)
		}
		if svc != nil && svc.DeletionTimestamp == nil {
			return r.clearStatus(ctx, svc, released)
		}
		return nil
	}

	if msg := r.ranges.check(svc); msg != "" {
		r.recorder.Eventf(svc, nil, corev1.EventTypeWarning, v1alpha1.ReasonSourceRangesIgnored, "CheckSourceRanges", "%s", msg)
	}
	req, err := r.request(ctx, svc)
	if err != nil {
		// Bad input loses nothing: the addresses held stay, the condition
		// says what to fix.
		r.pending.remove(key)
		allocationErrors.WithLabelValues(v1alpha1.ReasonInvalidAnnotation).Inc()
		return r.writeStatus(ctx, svc, r.heldIngress(svc), metav1.Condition{
			Type: v1alpha1.ConditionIPAllocated, Status: metav1.ConditionFalse,
			Reason: v1alpha1.ReasonInvalidAnnotation, Message: err.Error(),
		})
	}

	set := r.pools.get(r.listPools(ctx))
	if req.Sharing() {
		unlock := r.keyLocks.lock(req.SharingKey)
		defer unlock()
	}
	res := r.alloc.Allocate(req, set.all, r.joinCheck(ctx, svc))
	if err := r.persist(ctx, svc, res.Assignments); err != nil {
		return err
	}
	for _, f := range res.Failures {
		allocationErrors.WithLabelValues(f.Reason).Inc()
	}
	if len(res.Failures) > 0 {
		r.pending.add(key)
	} else {
		r.pending.remove(key)
	}
	if err := r.writeStatus(ctx, svc, r.ingress(res.Assignments), condition(res, req.RequireAll)); err != nil {
		return err
	}
	// Released only after the new status is written: a crash in between
	// leaves an extra record, never an address shown by two Services.
	for _, addr := range res.Release {
		if err := r.release(ctx, addr, string(svc.UID)); err != nil {
			return err
		}
		logger.Info("Released address", "service", klog.KObj(svc), "ip", addr)
	}
	return nil
}

func (r *ServiceReconciler) ours(svc *corev1.Service) bool {
	return v1alpha1.Serves(svc, r.cfg.Class, r.cfg.ServeNoClass)
}

// request turns a Service into an allocation request; an error is a problem
// with the Service's annotations a person must fix.
func (r *ServiceReconciler) request(ctx context.Context, svc *corev1.Service) (ipam.Request, error) {
	req := ipam.Request{
		UID: string(svc.UID), Namespace: svc.Namespace, Name: svc.Name, Labels: svc.Labels,
		RequireAll: svc.Spec.IPFamilyPolicy == nil || *svc.Spec.IPFamilyPolicy != corev1.IPFamilyPolicyPreferDualStack,
	}
	for _, f := range svc.Spec.IPFamilies {
		req.Families = append(req.Families, ipam.Family(f))
	}
	if len(req.Families) == 0 {
		req.Families = []ipam.Family{ipam.IPv4}
	}
	if svc.Spec.IPFamilyPolicy == nil || *svc.Spec.IPFamilyPolicy == corev1.IPFamilyPolicySingleStack {
		req.Families = req.Families[:1]
	}
	var errs []string
	if s, ok := svc.Annotations[v1alpha1.AnnotationPool]; ok {
		p, err := ipam.ParsePoolName(s)
		if err != nil {
			errs = append(errs, v1alpha1.AnnotationPool+": "+err.Error())
		}
		req.Pool = p
	}
	ips, source := svc.Annotations[v1alpha1.AnnotationIP], v1alpha1.AnnotationIP
	if _, ok := svc.Annotations[v1alpha1.AnnotationIP]; !ok && svc.Spec.LoadBalancerIP != "" {
		ips, source = svc.Spec.LoadBalancerIP, "spec.loadBalancerIP"
	}
	if ips != "" || hasKey(svc.Annotations, v1alpha1.AnnotationIP) {
		addrs, err := ipam.ParseIPs(ips)
		if err != nil {
			errs = append(errs, source+": "+err.Error())
		}
		for _, a := range addrs {
			if !slices.Contains(req.Families, ipam.FamilyOf(a)) {
				errs = append(errs, fmt.Sprintf("%s: %s is %s but the Service's families are %v", source, a, ipam.FamilyOf(a), req.Families))
			}
		}
		req.IPs = addrs
	}
	if k, ok := svc.Annotations[v1alpha1.AnnotationSharingKey]; ok {
		sk, err := ipam.ParseSharingKey(svc.Namespace, k)
		if err != nil {
			errs = append(errs, v1alpha1.AnnotationSharingKey+": "+err.Error())
		}
		req.SharingKey = sk
	}
	if len(errs) > 0 {
		return ipam.Request{}, errors.New(strings.Join(errs, "; "))
	}
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(ing.IP); err == nil {
			req.Current = append(req.Current, a)
		}
	}
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	if err := r.client.Get(ctx, types.NamespacedName{Name: svc.Namespace}, ns); err == nil {
		req.NamespaceLabels = ns.Labels
	}
	return req, nil
}

func hasKey(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}

func (r *ServiceReconciler) listPools(ctx context.Context) []v1alpha1.EIPPool {
	var list v1alpha1.EIPPoolList
	if err := r.client.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		log.FromContext(ctx).Error(err, "Listing pools from the cache")
		return nil
	}
	return list.Items
}

// joinCheck allows joining a shared address when ports don't clash and the
// traffic policies agree (with Local, the Services must select the same
// pods, since they share next hops).
func (r *ServiceReconciler) joinCheck(ctx context.Context, svc *corev1.Service) ipam.JoinCheck {
	return func(al ipam.Allocation) error {
		for _, h := range al.Holders {
			if h.UID == string(svc.UID) {
				continue
			}
			other := &corev1.Service{}
			if err := r.client.Get(ctx, types.NamespacedName{Namespace: h.Namespace, Name: h.Name}, other); err != nil || string(other.UID) != h.UID {
				continue // a holder that is gone is released by its own reconcile
			}
			if err := compatible(svc, other); err != nil {
				return err
			}
		}
		return nil
	}
}

func compatible(a, b *corev1.Service) error {
	if a.Spec.ExternalTrafficPolicy != b.Spec.ExternalTrafficPolicy {
		return fmt.Errorf("externalTrafficPolicy %q differs from %s's %q", a.Spec.ExternalTrafficPolicy, klog.KObj(b), b.Spec.ExternalTrafficPolicy)
	}
	if a.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal && !equality.Semantic.DeepEqual(a.Spec.Selector, b.Spec.Selector) {
		return fmt.Errorf("with externalTrafficPolicy Local the Services must select the same pods, and %s selects others", klog.KObj(b))
	}
	for _, p := range a.Spec.Ports {
		for _, q := range b.Spec.Ports {
			if p.Port == q.Port && p.Protocol == q.Protocol {
				return fmt.Errorf("port %d/%s is also used by %s", p.Port, p.Protocol, klog.KObj(b))
			}
		}
	}
	return nil
}

// persist makes each assignment durable: New ones are created, Join ones get
// this Service added as a holder. On a name clash (another allocator took
// the address) the index learns the holder and the reconcile is retried.
func (r *ServiceReconciler) persist(ctx context.Context, svc *corev1.Service, asgs []ipam.Assignment) error {
	var firstErr error
	self := ipam.Holder{UID: string(svc.UID), Namespace: svc.Namespace, Name: svc.Name}
	for _, a := range asgs {
		if firstErr != nil {
			if a.State == ipam.New {
				r.alloc.Unreserve(a.Addr)
			}
			continue
		}
		switch a.State {
		case ipam.New:
			al := ipam.Allocation{Addr: a.Addr, Pool: a.Pool, SharingKey: a.SharingKey, Holders: []ipam.Holder{self}}
			err := r.client.Create(ctx, toAPI(al))
			switch {
			case err == nil:
				r.alloc.Set(al)
				allocations.Inc()
			case apierrors.IsAlreadyExists(err):
				r.learn(ctx, a.Addr)
				firstErr = errRetry
			default:
				firstErr = fmt.Errorf("recording %s: %w", a.Addr, err)
			}
			r.alloc.Unreserve(a.Addr)
		case ipam.Join:
			if err := r.join(ctx, a.Addr, self); err != nil {
				firstErr = err
			}
		}
	}
	return firstErr
}

// learn reads an allocation from the API server into the index, bypassing a
// cache that may not have seen it yet.
func (r *ServiceReconciler) learn(ctx context.Context, addr netip.Addr) {
	ea := &v1alpha1.EIPAllocation{}
	err := r.apiReader.Get(ctx, types.NamespacedName{Name: ipam.AllocationName(addr)}, ea)
	switch {
	case err == nil:
		if al, ok := fromAPI(ea); ok {
			r.alloc.Set(al)
		}
	case apierrors.IsNotFound(err):
		r.alloc.Delete(addr)
	}
}

func (r *ServiceReconciler) join(ctx context.Context, addr netip.Addr, self ipam.Holder) error {
	ea := &v1alpha1.EIPAllocation{}
	if err := r.apiReader.Get(ctx, types.NamespacedName{Name: ipam.AllocationName(addr)}, ea); err != nil {
		if apierrors.IsNotFound(err) {
			r.alloc.Delete(addr)
			return errRetry
		}
		return err
	}
	if !slices.ContainsFunc(ea.Spec.Services, func(s v1alpha1.ServiceReference) bool { return s.UID == self.UID }) {
		ea.Spec.Services = append(ea.Spec.Services, v1alpha1.ServiceReference{Namespace: self.Namespace, Name: self.Name, UID: self.UID})
		if err := r.client.Update(ctx, ea); err != nil {
			if apierrors.IsConflict(err) {
				r.learn(ctx, addr)
				return errRetry
			}
			return fmt.Errorf("joining %s: %w", addr, err)
		}
	}
	if al, ok := fromAPI(ea); ok {
		r.alloc.Set(al)
	}
	return nil
}

// release drops one holder from an address; the last holder deletes the
// record (guarded by its resourceVersion, so a Service joining at the same
// moment is never dropped).
func (r *ServiceReconciler) release(ctx context.Context, addr netip.Addr, uid string) error {
	ea := &v1alpha1.EIPAllocation{}
	if err := r.apiReader.Get(ctx, types.NamespacedName{Name: ipam.AllocationName(addr)}, ea); err != nil {
		if apierrors.IsNotFound(err) {
			r.alloc.Delete(addr)
			return nil
		}
		return err
	}
	rest := slices.DeleteFunc(slices.Clone(ea.Spec.Services), func(s v1alpha1.ServiceReference) bool { return s.UID == uid })
	var err error
	if len(rest) == 0 {
		err = r.client.Delete(ctx, ea, client.Preconditions{UID: &ea.UID, ResourceVersion: &ea.ResourceVersion})
		if err == nil || apierrors.IsNotFound(err) {
			r.alloc.Delete(addr)
			return nil
		}
	} else if len(rest) != len(ea.Spec.Services) {
		ea.Spec.Services = rest
		if err = r.client.Update(ctx, ea); err == nil {
			if al, ok := fromAPI(ea); ok {
				r.alloc.Set(al)
			}
			return nil
		}
	} else {
		return nil
	}
	if apierrors.IsConflict(err) {
		r.learn(ctx, addr)
		return errRetry
	}
	return fmt.Errorf("releasing %s: %w", addr, err)
}

// hasStale reports whether the index has records naming a Service called
// key under another UID than keepUID (any UID when keepUID is empty).
func (r *ServiceReconciler) hasStale(key types.NamespacedName, keepUID string) bool {
	for _, al := range r.alloc.HeldByName(key.Namespace, key.Name) {
		for _, h := range al.Holders {
			if h.Namespace == key.Namespace && h.Name == key.Name && h.UID != keepUID {
				return true
			}
		}
	}
	return false
}

// liveUID reads the Service named key from the API server, bypassing the
// cache, and returns its UID when it is one eiplb serves and is not being
// deleted, else "". A record's holder whose UID this is not can be
// released: UIDs are never reused, so that Service is gone for good (or no
// longer ours, which a later change re-allocates from scratch).
func (r *ServiceReconciler) liveUID(ctx context.Context, key types.NamespacedName) (string, error) {
	svc := &corev1.Service{}
	if err := r.apiReader.Get(ctx, key, svc); err != nil {
		if apierrors.IsNotFound(err) {
			return "", nil
		}
		return "", err
	}
	if !r.ours(svc) || svc.DeletionTimestamp != nil {
		return "", nil
	}
	return string(svc.UID), nil
}

// releaseStale releases what Services named key hold under another UID
// (every UID when keepUID is empty): deleted Services and older
// incarnations of a recreated one.
func (r *ServiceReconciler) releaseStale(ctx context.Context, key types.NamespacedName, keepUID string) ([]netip.Addr, error) {
	var released []netip.Addr
	for _, al := range r.alloc.HeldByName(key.Namespace, key.Name) {
		for _, h := range al.Holders {
			if h.Namespace != key.Namespace || h.Name != key.Name || h.UID == keepUID {
				continue
			}
			if err := r.release(ctx, al.Addr, h.UID); err != nil {
				return released, err
			}
			released = append(released, al.Addr)
			log.FromContext(ctx).Info("Released address of a Service that is gone or no longer ours", "service", key, "ip", al.Addr)
		}
	}
	return released, nil
}

func (r *ServiceReconciler) ingress(asgs []ipam.Assignment) []corev1.LoadBalancerIngress {
	out := make([]corev1.LoadBalancerIngress, 0, len(asgs))
	for _, a := range asgs {
		mode := r.cfg.IPMode
		out = append(out, corev1.LoadBalancerIngress{IP: a.Addr.String(), IPMode: &mode})
	}
	return out
}

// heldIngress is the ingress of what the Service holds now.
func (r *ServiceReconciler) heldIngress(svc *corev1.Service) []corev1.LoadBalancerIngress {
	var asgs []ipam.Assignment
	for _, al := range r.alloc.HeldBy(string(svc.UID)) {
		asgs = append(asgs, ipam.Assignment{Addr: al.Addr})
	}
	return r.ingress(asgs)
}

// condition summarises a result: True when every family the Service needs
// has an address (with PreferDualStack, at least one), otherwise False with
// the first failure's reason; the message lists what was assigned and what
// was not.
func condition(res ipam.Result, requireAll bool) metav1.Condition {
	c := metav1.Condition{Type: v1alpha1.ConditionIPAllocated, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonAllocated}
	var parts []string
	if len(res.Assignments) > 0 {
		got := make([]string, 0, len(res.Assignments))
		for _, a := range res.Assignments {
			got = append(got, fmt.Sprintf("%s from pool %s", a.Addr, a.Pool))
		}
		parts = append(parts, "Assigned "+strings.Join(got, ", "))
	}
	for _, f := range res.Failures {
		parts = append(parts, fmt.Sprintf("%s not assigned: %s", f.Family, f.Message))
	}
	if len(res.Failures) > 0 && (requireAll || len(res.Assignments) == 0) {
		c.Status, c.Reason = metav1.ConditionFalse, res.Failures[0].Reason
	}
	c.Message = strings.Join(parts, "; ")
	return c
}

// writeStatus writes ingress and condition when they differ from the
// Service's, and records an Event when the condition changes.
func (r *ServiceReconciler) writeStatus(ctx context.Context, svc *corev1.Service, ingress []corev1.LoadBalancerIngress, cond metav1.Condition) error {
	cond.ObservedGeneration = svc.Generation
	cond.Message = bounded(cond.Message, maxConditionMessage)
	old := meta.FindStatusCondition(svc.Status.Conditions, cond.Type)
	sameCond := old != nil && old.Status == cond.Status && old.Reason == cond.Reason && old.Message == cond.Message && old.ObservedGeneration == cond.ObservedGeneration
	if sameCond && equality.Semantic.DeepEqual(svc.Status.LoadBalancer.Ingress, ingress) {
		return nil
	}
	upd := svc.DeepCopy()
	upd.Status.LoadBalancer.Ingress = ingress
	meta.SetStatusCondition(&upd.Status.Conditions, cond)
	if err := r.client.Status().Update(ctx, upd); err != nil {
		if apierrors.IsConflict(err) {
			return errRetry
		}
		return fmt.Errorf("writing status: %w", err)
	}
	// Events for failures and for changes of a working Service; a first
	// allocation is plain from the status, and an Event for each of
	// thousands of new Services would cost as many API writes as the
	// allocation itself.
	switch {
	case sameCond:
	case cond.Status != metav1.ConditionTrue:
		log.FromContext(ctx).Info("Service has no address", "service", klog.KObj(svc), "reason", cond.Reason, "message", cond.Message)
		r.recorder.Eventf(svc, nil, corev1.EventTypeWarning, cond.Reason, "AllocateIP", "%s", bounded(cond.Message, maxEventNote))
	case old != nil && (old.Status != cond.Status || old.Message != cond.Message):
		r.recorder.Eventf(svc, nil, corev1.EventTypeNormal, cond.Reason, "AllocateIP", "%s", bounded(cond.Message, maxEventNote))
	}
	return nil
}

// The API server's limits: an Event's note, a condition's message (bytes).
// Messages quote user input through ipam.Quote and so stay far below them;
// bounded is the backstop that keeps a write from being refused.
const (
	maxEventNote        = 1024
	maxConditionMessage = 32768
)

func bounded(s string, n int) string {
	const more = " …"
	if len(s) <= n {
		return s
	}
	return ipam.Truncate(s, n-len(more)) + more
}

// clearStatus removes what eiplb wrote to a Service that is no longer its
// (type or class changed).
func (r *ServiceReconciler) clearStatus(ctx context.Context, svc *corev1.Service, released []netip.Addr) error {
	cond := meta.FindStatusCondition(svc.Status.Conditions, v1alpha1.ConditionIPAllocated)
	ing := slices.DeleteFunc(slices.Clone(svc.Status.LoadBalancer.Ingress), func(i corev1.LoadBalancerIngress) bool {
		a, err := netip.ParseAddr(i.IP)
		return err == nil && slices.Contains(released, a)
	})
	if cond == nil && len(ing) == len(svc.Status.LoadBalancer.Ingress) {
		return nil
	}
	upd := svc.DeepCopy()
	upd.Status.LoadBalancer.Ingress = ing
	meta.RemoveStatusCondition(&upd.Status.Conditions, v1alpha1.ConditionIPAllocated)
	if err := r.client.Status().Update(ctx, upd); err != nil && !apierrors.IsNotFound(err) {
		if apierrors.IsConflict(err) {
			return errRetry
		}
		return err
	}
	if len(released) > 0 {
		r.recorder.Eventf(svc, nil, corev1.EventTypeNormal, "Released", "ReleaseIP", "Released %v: the Service is no longer served by eiplb", released)
	}
	return nil
}

// adoptOnce runs, before any other allocation, a reconcile of every served
// Service whose status shows an address that has no record, so addresses
// in use (from an older eiplb, or with records lost) are taken back by their
// Services before anything new is handed out.
func (r *ServiceReconciler) adoptOnce(ctx context.Context) error {
	r.adoptMu.Lock()
	defer r.adoptMu.Unlock()
	if r.adopted {
		return nil
	}
	var list corev1.ServiceList
	if err := r.client.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	slices.SortFunc(list.Items, func(a, b corev1.Service) int {
		return a.CreationTimestamp.Compare(b.CreationTimestamp.Time)
	})
	adopted := 0
	for i := range list.Items {
		svc := &list.Items[i]
		if !r.ours(svc) || !r.needsAdoption(svc) {
			continue
		}
		if err := r.reconcile(ctx, client.ObjectKeyFromObject(svc)); err != nil && !errors.Is(err, errRetry) {
			return err
		}
		adopted++
	}
	log.FromContext(ctx).Info("Adopted existing addresses", "services", adopted)
	r.adopted = true
	return nil
}

func (r *ServiceReconciler) needsAdoption(svc *corev1.Service) bool {
	held := r.alloc.HeldBy(string(svc.UID))
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		a, err := netip.ParseAddr(ing.IP)
		if err != nil {
			continue
		}
		if !slices.ContainsFunc(held, func(al ipam.Allocation) bool { return al.Addr == a }) {
			return true
		}
	}
	return false
}
