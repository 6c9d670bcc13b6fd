// Package announce computes, without I/O, which BGP paths announce a
// Service: one path per eligible node next hop and address, with the
// attributes of the advertisement that selects the Service's pool.
package announce

import (
	"cmp"
	"net/netip"
	"slices"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/eiplb/eiplb/pkg/bgp/route"
)

// ExcludeLabel on a Node keeps it from being a next hop.
const ExcludeLabel = "node.kubernetes.io/exclude-from-external-load-balancers"

// Node is the announcer's view of a Node.
type Node struct {
	Name          string
	Labels        map[string]string
	Ready         bool
	Unschedulable bool
	// Addresses in order of preference (InternalIP first); the first of a
	// family is the next hop for addresses of that family.
	Addresses []netip.Addr
}

// Service is the announcer's view of a served Service with addresses.
type Service struct {
	Key        string // namespace/name
	Addrs      []netip.Addr
	PoolLabels map[string]string
	// Local is externalTrafficPolicy Local: only nodes with ready local
	// endpoints are next hops, weighted by how many.
	Local bool
	// Endpoints counts ready endpoints per node name (used with Local).
	Endpoints map[string]int
}

// Advertisement is the announcer's view of a BGPAdvertisement.
type Advertisement struct {
	Name         string
	PoolSelector labels.Selector // nil: every pool
	NodeSelector labels.Selector // nil: every node
	Attrs        route.Attributes
	// Peers are the addresses of the peers the paths may go to, resolved
	// from the advertisement's peer selector; nil: every peer.
	Peers []netip.Addr
	// AggregationV4/V6 are prefix lengths (0: host routes).
	AggregationV4, AggregationV6 int
}

// Eligible reports whether a node may be a next hop for a Service beyond
// what the Node object says: the agent is alive and has programmed the
// Service there, with every address it has. nil means always.
type Eligible func(node string, svc Service) bool

// Why a Service has no path.
const (
	ReasonAnnounced        = "Announced"
	ReasonNoAdvertisement  = "NoAdvertisement"
	ReasonNoEligibleNode   = "NoEligibleNode"
	ReasonNoLocalEndpoints = "NoLocalEndpoints"
	ReasonNoAddress        = "NoAddress"
)

// BandwidthPerEndpoint is the link bandwidth (bytes/s) a path carries per
// ready local endpoint under Local. Only the ratios matter to the router.
const BandwidthPerEndpoint = 1e6

// Result is the desired announcement of one Service.
type Result struct {
	Paths []route.Path
	// NextHops are the node names used, sorted.
	NextHops []string
	// Reason is ReasonAnnounced or why there is no path.
	Reason string
}

// Desired computes the paths of a Service. advs need not be sorted; the
// first by name that selects the pool applies.
func Desired(svc Service, nodes []Node, advs []Advertisement, eligible Eligible) Result {
	if len(svc.Addrs) == 0 {
		return Result{Reason: ReasonNoAddress}
	}
	adv, ok := choose(advs, svc.PoolLabels)
	if !ok {
		return Result{Reason: ReasonNoAdvertisement}
	}
	var res Result
	anyEligible := false
	for _, n := range nodes {
		if !n.Ready || n.Unschedulable {
			continue
		}
		if _, excluded := n.Labels[ExcludeLabel]; excluded {
			continue
		}
		if adv.NodeSelector != nil && !adv.NodeSelector.Matches(labels.Set(n.Labels)) {
			continue
		}
		if eligible != nil && !eligible(n.Name, svc) {
			continue
		}
		var nodePaths []route.Path
		for _, a := range svc.Addrs {
			nh, ok := nextHop(n, a.Is4())
			if !ok {
				continue
			}
			bits := a.BitLen()
			if a.Is4() && adv.AggregationV4 > 0 {
				bits = adv.AggregationV4
			}
			if a.Is6() && adv.AggregationV6 > 0 {
				bits = adv.AggregationV6
			}
			prefix, err := a.Prefix(bits)
			if err != nil {
				continue
			}
			// Addresses aggregated into one prefix make one path.
			if !slices.ContainsFunc(nodePaths, func(p route.Path) bool { return p.Prefix == prefix }) {
				nodePaths = append(nodePaths, route.Path{Prefix: prefix, NextHop: nh, Attrs: adv.Attrs, Peers: adv.Peers})
			}
		}
		if len(nodePaths) == 0 {
			continue // no address of the Service's families
		}
		anyEligible = true
		if svc.Local {
			count := svc.Endpoints[n.Name]
			if count == 0 {
				continue
			}
			for i := range nodePaths {
				nodePaths[i].Attrs.LinkBandwidth = float32(count) * BandwidthPerEndpoint
			}
		}
		res.Paths = append(res.Paths, nodePaths...)
		res.NextHops = append(res.NextHops, n.Name)
	}
	switch {
	case len(res.Paths) > 0:
		res.Reason = ReasonAnnounced
	case svc.Local && anyEligible:
		res.Reason = ReasonNoLocalEndpoints
	default:
		res.Reason = ReasonNoEligibleNode
	}
	slices.Sort(res.NextHops)
	slices.SortFunc(res.Paths, func(a, b route.Path) int {
		return cmp.Or(a.Prefix.Addr().Compare(b.Prefix.Addr()), a.NextHop.Compare(b.NextHop))
	})
	return res
}

func choose(advs []Advertisement, poolLabels map[string]string) (Advertisement, bool) {
	var best *Advertisement
	for i := range advs {
		a := &advs[i]
		if a.PoolSelector != nil && !a.PoolSelector.Matches(labels.Set(poolLabels)) {
			continue
		}
		if best == nil || a.Name < best.Name {
			best = a
		}
	}
	if best == nil {
		return Advertisement{}, false
	}
	return *best, true
}

func nextHop(n Node, v4 bool) (netip.Addr, bool) {
	for _, a := range n.Addresses {
		if a.Is4() == v4 {
			return a, true
		}
	}
	return netip.Addr{}, false
}
