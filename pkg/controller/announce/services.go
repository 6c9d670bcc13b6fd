// Package announce is the announcer of every manager replica: it turns
// Services with addresses, Nodes and EndpointSlices into BGP paths, and
// BGPPeers into sessions, through the embedded speaker of pkg/bgp.
package announce

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/eiplb/eiplb/pkg/announce"
	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/bgp/route"
	"github.com/eiplb/eiplb/pkg/dataplane"
	"github.com/eiplb/eiplb/pkg/ipam"
)

// Speaker is what the announcer needs of pkg/bgp.
type Speaker interface {
	SetPaths(owner string, paths []route.Path) error
	SetPeers(ctx context.Context, peers []route.Peer) error
	PeerStates(ctx context.Context) ([]route.PeerState, error)
	OnUpdate(fn func(added, withdrawn, total int, at time.Time))
}

// ServiceReconciler announces one Service's addresses.
type ServiceReconciler struct {
	client   client.Client
	speaker  Speaker
	recorder events.EventRecorder
	opts     Options

	mu        sync.Mutex
	announced map[string]string    // service → last announced next hops, for Events
	seen      map[string]time.Time // service → when a change was first seen
	// served: every served Service with addresses, which each agent must
	// program (for EIPNode status); servedVersion counts its changes.
	served        map[string][]netip.Addr
	servedVersion uint64
}

// Reconcile computes the Service's paths and hands them to the speaker.
// The Service's addresses, and the pools they came from, are those of the
// EIPAllocation records naming it (by UID): IPAM's truth, present before it
// writes the Service status, which the announcer does not read.
func (r *ServiceReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	key := req.String()
	svc := &corev1.Service{}
	if err := r.client.Get(ctx, req.NamespacedName, svc); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
		svc = nil
	}
	var res announce.Result
	var addrs []netip.Addr
	if svc != nil && r.opts.serves(svc) && svc.DeletionTimestamp == nil {
		recs, err := indexedRecords(ctx, r.client, svc)
		if err != nil {
			return ctrl.Result{}, err
		}
		addrs = recordAddrs(recs)
		if res, err = Desired(ctx, r.client, svc, recs, r.opts.Eligible); err != nil {
			return ctrl.Result{}, err
		}
	}
	if err := r.speaker.SetPaths(key, res.Paths); err != nil {
		return ctrl.Result{}, err
	}
	r.observe(key)
	r.report(ctx, svc, key, res)
	r.setServed(key, addrs)
	return ctrl.Result{}, nil
}

// The manager's cache indexes EIPAllocation records by the UIDs of the
// Services holding them and by pool.
const (
	recordServiceIndex = "eiplb.io/service-uid"
	recordPoolIndex    = "eiplb.io/pool"
)

func recordServiceUIDs(o client.Object) []string {
	rec, ok := o.(*v1alpha1.EIPAllocation)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(rec.Spec.Services))
	for _, s := range rec.Spec.Services {
		out = append(out, s.UID)
	}
	return out
}

func recordPool(o client.Object) []string {
	if rec, ok := o.(*v1alpha1.EIPAllocation); ok && rec.Spec.Pool != "" {
		return []string{rec.Spec.Pool}
	}
	return nil
}

// indexedRecords lists the records holding svc through the cache's index.
func indexedRecords(ctx context.Context, c client.Reader, svc *corev1.Service) ([]v1alpha1.EIPAllocation, error) {
	var list v1alpha1.EIPAllocationList
	if err := c.List(ctx, &list, client.MatchingFields{recordServiceIndex: string(svc.UID)}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing the allocation records of %s: %w", klog.KObj(svc), err)
	}
	return list.Items, nil
}

// RecordsOf lists the EIPAllocation records holding svc, with a reader
// that has no index (kubectl-eiplb): Desired's input.
func RecordsOf(ctx context.Context, c client.Reader, svc *corev1.Service) ([]v1alpha1.EIPAllocation, error) {
	var list v1alpha1.EIPAllocationList
	if err := c.List(ctx, &list); err != nil {
		return nil, err
	}
	return slices.DeleteFunc(list.Items, func(rec v1alpha1.EIPAllocation) bool {
		return !slices.Contains(recordServiceUIDs(&rec), string(svc.UID))
	}), nil
}

// recordAddrs are the addresses of recs, sorted: what the announcer
// announces and the agents program. A record whose name does not match its
// address (only possible when written by hand) is ignored, as IPAM does.
func recordAddrs(recs []v1alpha1.EIPAllocation) []netip.Addr {
	var out []netip.Addr
	for i := range recs {
		if a, ok := recordAddr(&recs[i]); ok && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

func recordAddr(rec *v1alpha1.EIPAllocation) (netip.Addr, bool) {
	a, err := netip.ParseAddr(rec.Spec.Address)
	if err != nil || ipam.AllocationName(a) != rec.Name {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func (r *ServiceReconciler) setServed(key string, addrs []netip.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old, had := r.served[key]
	switch {
	case len(addrs) == 0 && had:
		delete(r.served, key)
	case len(addrs) > 0 && !slices.Equal(old, addrs):
		r.served[key] = addrs
	default:
		return
	}
	r.servedVersion++
}

// servedSince returns a copy of the served Services when they changed
// since version (ok false otherwise), and the current version.
func (r *ServiceReconciler) servedSince(version uint64) (map[string][]netip.Addr, uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.servedVersion == version {
		return nil, version, false
	}
	return maps.Clone(r.served), r.servedVersion, true
}

// Desired is what the announcer announces for a served Service, read with
// c: its paths and next hops, among the nodes eligible says may be next
// hops (nil: every node the objects allow, as kubectl-eiplb shows them).
// recs are the allocation records holding the Service (RecordsOf): its
// addresses, and the pool whose labels select the advertisement.
func Desired(ctx context.Context, c client.Reader, svc *corev1.Service, recs []v1alpha1.EIPAllocation, eligible announce.Eligible) (announce.Result, error) {
	in, err := gather(ctx, c, svc, recs)
	if err != nil {
		return announce.Result{}, err
	}
	nodes, err := nodeViews(ctx, c)
	if err != nil {
		return announce.Result{}, err
	}
	advs, err := advertisements(ctx, c)
	if err != nil {
		return announce.Result{}, err
	}
	return announce.Desired(in, nodes, advs, eligible), nil
}

// gather builds the announcer's view of a Service held by recs.
func gather(ctx context.Context, c client.Reader, svc *corev1.Service, recs []v1alpha1.EIPAllocation) (announce.Service, error) {
	out := announce.Service{
		Key:   types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}.String(),
		Local: svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
	}
	out.Addrs = recordAddrs(recs)
	if len(out.Addrs) > 0 {
		// The pool of the first address selects the advertisement.
		var err error
		for i := range recs {
			if a, ok := recordAddr(&recs[i]); ok && a == out.Addrs[0] {
				if out.PoolLabels, err = poolLabels(ctx, c, recs[i].Spec.Pool); err != nil {
					return out, err
				}
				break
			}
		}
	}
	if out.Local {
		var eps discoveryv1.EndpointSliceList
		if err := c.List(ctx, &eps, client.InNamespace(svc.Namespace),
			client.MatchingLabels{discoveryv1.LabelServiceName: svc.Name}, client.UnsafeDisableDeepCopy); err != nil {
			return out, err
		}
		out.Endpoints = map[string]int{}
		seen := map[string]bool{}
		for _, s := range eps.Items {
			for _, ep := range s.Endpoints {
				if ep.NodeName == nil || !dataplane.Ready(ep.Conditions) || len(ep.Addresses) == 0 {
					continue
				}
				// A pod is in one slice per family: count it once.
				id := ep.Addresses[0]
				if ep.TargetRef != nil {
					id = string(ep.TargetRef.UID)
				}
				if seen[id] {
					continue
				}
				seen[id] = true
				out.Endpoints[*ep.NodeName]++
			}
		}
	}
	return out, nil
}

// poolLabels are the labels of the named pool. A pool that does not exist
// (deleted while its addresses are still held) has none: it matches only
// selector-less advertisements, and the EIPPool watch re-queues its Services
// when it comes back. Any other error is returned, to retry.
func poolLabels(ctx context.Context, c client.Reader, name string) (map[string]string, error) {
	pool := &v1alpha1.EIPPool{}
	if err := c.Get(ctx, client.ObjectKey{Name: name}, pool); err != nil {
		if apierrors.IsNotFound(err) {
			return map[string]string{}, nil
		}
		return nil, fmt.Errorf("reading EIPPool %s: %w", name, err)
	}
	if pool.Labels == nil {
		return map[string]string{}, nil
	}
	return pool.Labels, nil
}

func nodeViews(ctx context.Context, c client.Reader) ([]announce.Node, error) {
	var list corev1.NodeList
	if err := c.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	out := make([]announce.Node, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, nodeView(&list.Items[i]))
	}
	return out, nil
}

func nodeView(n *corev1.Node) announce.Node {
	v := announce.Node{Name: n.Name, Labels: n.Labels, Unschedulable: n.Spec.Unschedulable}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			v.Ready = c.Status == corev1.ConditionTrue
		}
	}
	for _, t := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP} {
		for _, a := range n.Status.Addresses {
			if a.Type != t {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				v.Addresses = append(v.Addresses, ip)
			}
		}
	}
	return v
}

func advertisements(ctx context.Context, c client.Reader) ([]announce.Advertisement, error) {
	var list v1alpha1.BGPAdvertisementList
	if err := c.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	var peers v1alpha1.BGPPeerList
	if err := c.List(ctx, &peers, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	out := make([]announce.Advertisement, 0, len(list.Items))
	for i := range list.Items {
		a, err := convertAdvertisement(&list.Items[i], peers.Items)
		if err != nil {
			// Schema validation makes this unreachable for objects written
			// through the API; skip rather than announce wrong attributes.
			log.FromContext(ctx).Error(err, "Skipping an invalid BGPAdvertisement", "advertisement", list.Items[i].Name)
			continue
		}
		out = append(out, a)
	}
	return out, nil
}

func convertAdvertisement(in *v1alpha1.BGPAdvertisement, peers []v1alpha1.BGPPeer) (announce.Advertisement, error) {
	a := announce.Advertisement{Name: in.Name}
	var err error
	if in.Spec.PeerSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(in.Spec.PeerSelector)
		if err != nil {
			return a, err
		}
		a.Peers = []netip.Addr{} // restricted, maybe to none
		for i := range peers {
			if addr, err := netip.ParseAddr(peers[i].Spec.PeerAddress); err == nil && sel.Matches(labels.Set(peers[i].Labels)) {
				a.Peers = append(a.Peers, addr)
			}
		}
	}
	if in.Spec.PoolSelector != nil {
		if a.PoolSelector, err = metav1.LabelSelectorAsSelector(in.Spec.PoolSelector); err != nil {
			return a, err
		}
	}
	if in.Spec.NodeSelector != nil {
		if a.NodeSelector, err = metav1.LabelSelectorAsSelector(in.Spec.NodeSelector); err != nil {
			return a, err
		}
	}
	for _, c := range in.Spec.Communities {
		v, err := route.ParseCommunity(c)
		if err != nil {
			return a, err
		}
		a.Attrs.Communities = append(a.Attrs.Communities, v)
	}
	for _, c := range in.Spec.LargeCommunities {
		v, err := route.ParseLargeCommunity(c)
		if err != nil {
			return a, err
		}
		a.Attrs.LargeCommunities = append(a.Attrs.LargeCommunities, v)
	}
	if in.Spec.LocalPref != nil {
		a.Attrs.LocalPref = uint32(*in.Spec.LocalPref)
	}
	if in.Spec.AggregationLength != nil {
		a.AggregationV4 = int(*in.Spec.AggregationLength)
	}
	if in.Spec.AggregationLengthV6 != nil {
		a.AggregationV6 = int(*in.Spec.AggregationLengthV6)
	}
	return a, nil
}

// markSeen records when a change to a Service was first seen.
func (r *ServiceReconciler) markSeen(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.seen[key]; !ok {
		r.seen[key] = time.Now()
	}
}

func (r *ServiceReconciler) observe(key string) {
	r.mu.Lock()
	t, ok := r.seen[key]
	delete(r.seen, key)
	r.mu.Unlock()
	if ok {
		announceLatency.Observe(time.Since(t).Seconds())
	}
}

// report records an Event when the set of next hops of a Service changes.
func (r *ServiceReconciler) report(ctx context.Context, svc *corev1.Service, key string, res announce.Result) {
	now := strings.Join(res.NextHops, ",")
	r.mu.Lock()
	before, known := r.announced[key]
	if now == "" {
		delete(r.announced, key)
	} else {
		r.announced[key] = now
	}
	r.mu.Unlock()
	if before == now || svc == nil {
		return
	}
	log.FromContext(ctx).V(1).Info("Next hops changed", "service", klog.KObj(svc), "nextHops", res.NextHops)
	// Events only when a Service starts or stops being announced: a node
	// going NotReady changes the next hops of every Service, and an Event
	// each would be a storm of API writes.
	switch {
	case !known && now != "":
		r.recorder.Eventf(svc, nil, corev1.EventTypeNormal, "Announced", "Announce",
			"Announced by %s via %d next hops: %s", r.opts.NodeName, len(res.NextHops), now)
	case known && now == "":
		r.recorder.Eventf(svc, nil, corev1.EventTypeWarning, "Withdrawn", "Announce",
			"Withdrawn by %s: %s", r.opts.NodeName, res.Reason)
	}
}
