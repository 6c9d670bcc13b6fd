// Package announce is the announcer of every manager replica: it turns
// Services with addresses, Nodes and EndpointSlices into BGP paths, and
// BGPPeers into sessions, through the embedded speaker of pkg/bgp.
package announce

import (
	"context"
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
		addrs = ingressAddrs(svc)
		var err error
		if res, err = Desired(ctx, r.client, svc, r.opts.Eligible); err != nil {
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

// ingressAddrs are a Service's addresses, as the agents program them.
func ingressAddrs(svc *corev1.Service) []netip.Addr {
	var out []netip.Addr
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(ing.IP); err == nil {
			out = append(out, a)
		}
	}
	return out
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
func Desired(ctx context.Context, c client.Reader, svc *corev1.Service, eligible announce.Eligible) (announce.Result, error) {
	in, err := gather(ctx, c, svc)
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

// gather builds the announcer's view of a Service.
func gather(ctx context.Context, c client.Reader, svc *corev1.Service) (announce.Service, error) {
	out := announce.Service{
		Key:   types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}.String(),
		Local: svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
	}
	out.Addrs = ingressAddrs(svc)
	if len(out.Addrs) > 0 {
		out.PoolLabels = poolLabels(ctx, c, out.Addrs[0])
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

// poolLabels finds the labels of the pool an address came from, through its
// allocation record; nil (matching only selector-less advertisements) when
// unknown.
func poolLabels(ctx context.Context, c client.Reader, a netip.Addr) map[string]string {
	rec := &v1alpha1.EIPAllocation{}
	if err := c.Get(ctx, client.ObjectKey{Name: ipam.AllocationName(a)}, rec); err != nil {
		return map[string]string{}
	}
	pool := &v1alpha1.EIPPool{}
	if err := c.Get(ctx, client.ObjectKey{Name: rec.Spec.Pool}, pool); err != nil {
		return map[string]string{}
	}
	if pool.Labels == nil {
		return map[string]string{}
	}
	return pool.Labels
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
