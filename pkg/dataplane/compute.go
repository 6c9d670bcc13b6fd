// Package dataplane computes, without I/O, the forwarding a node needs for
// the Services eiplb serves: per EIP, protocol and port, the endpoints to
// DNAT to; which endpoint addresses need masquerading; and which EIPs are
// protected against loops. The kernel side lives in pkg/dataplane/nft.
package dataplane

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Mode is how the node forwards EIP traffic.
type Mode string

const (
	// ModeNftables: the agent DNATs EIP traffic to endpoints (ipMode Proxy).
	ModeNftables Mode = "nftables"
	// ModeKubeProxy: kube-proxy DNATs (ipMode VIP); the agent only
	// protects the EIPs against loops.
	ModeKubeProxy Mode = "kube-proxy"
)

// Proto is an IP protocol number.
type Proto uint8

// Protocols a Service port may use.
const (
	TCP  Proto = 6
	UDP  Proto = 17
	SCTP Proto = 132
)

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	case SCTP:
		return "sctp"
	}
	return strconv.Itoa(int(p))
}

func protoOf(p corev1.Protocol) (Proto, bool) {
	switch p {
	case corev1.ProtocolTCP, "":
		return TCP, true
	case corev1.ProtocolUDP:
		return UDP, true
	case corev1.ProtocolSCTP:
		return SCTP, true
	}
	return 0, false
}

// Endpoint is one backend of a forward.
type Endpoint struct {
	Addr netip.Addr
	Port uint16
	// Local: the endpoint runs on this node.
	Local bool
}

// AddrPort is the endpoint's address and port.
func (e Endpoint) AddrPort() netip.AddrPort { return netip.AddrPortFrom(e.Addr, e.Port) }

// Key identifies a forward: traffic to EIP:Port over Proto, from outside
// the cluster, or (Internal) from inside it: pods of the node and the node
// itself.
type Key struct {
	EIP   netip.Addr
	Proto Proto
	Port  uint16
	// Internal: the forward of in-cluster clients of a Local Service
	// (every endpoint of the cluster, as kube-proxy does); the other
	// forwards serve every client that no internal forward takes.
	Internal bool
}

func (k Key) String() string {
	s := k.EIP.String() + "/" + k.Proto.String() + "/" + strconv.Itoa(int(k.Port))
	if k.Internal {
		s += "/internal"
	}
	return s
}

func (k Key) compare(o Key) int {
	return cmp.Or(cmp.Compare(b2i(k.Internal), b2i(o.Internal)),
		k.EIP.Compare(o.EIP), cmp.Compare(k.Proto, o.Proto), cmp.Compare(k.Port, o.Port))
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Forward is where the node sends traffic for one Key.
type Forward struct {
	Key
	// Endpoints sorted by address and port; empty: the traffic is
	// rejected like that of an unserved port.
	Endpoints []Endpoint
	// Restricted: only clients from Sources may open connections
	// (loadBalancerSourceRanges); the rest are dropped before DNAT.
	// Restricted with no Sources refuses every client.
	Restricted bool
	Sources    []netip.Prefix
	// Sticky: sessionAffinity ClientIP; the endpoint of a new connection
	// is a hash of the client's address instead of random (see Spread).
	Sticky bool
}

// Service is the data plane contribution of one Service.
type Service struct {
	Key        string // namespace/name
	Generation int64
	// EIPs of the Service: traffic to them that no forward takes is
	// rejected on the node.
	EIPs []netip.Addr
	// Forwards sorted by key; none in ModeKubeProxy.
	Forwards []Forward
}

// Compute derives a Service's contribution on node from the Service, its
// addresses eips (those of its EIPAllocation records, not its status) and
// its EndpointSlices. Under Local only this node's endpoints are used; under
// Cluster every endpoint, and remote ones are masqueraded (see Table).
// Endpoints count when ready (or of unknown readiness) and not terminating;
// a forward with none of those uses the endpoints that are terminating but
// still serving, as kube-proxy does (a rolling update's last pod keeps
// taking new connections until it stops serving). Malformed addresses and
// ports are skipped, never fatal. loadBalancerSourceRanges restrict every
// forward of the family (see SourceRanges). A Local Service also gets an
// internal forward per port and EIP: in-cluster clients (this node's pods
// and the node itself) reach every endpoint of the cluster, wherever they
// run, as with kube-proxy (only outside clients need the client address
// kept and the node-local path).
func Compute(svc *corev1.Service, eips []netip.Addr, eps []*discoveryv1.EndpointSlice, node string, mode Mode) Service {
	out := Service{Key: svc.Namespace + "/" + svc.Name, Generation: svc.Generation}
	for _, a := range eips {
		if a.IsValid() && !slices.Contains(out.EIPs, a.Unmap()) {
			out.EIPs = append(out.EIPs, a.Unmap())
		}
	}
	slices.SortFunc(out.EIPs, netip.Addr.Compare)
	if mode == ModeKubeProxy {
		return out
	}
	local := svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
	ranges := SourceRanges(svc)
	sticky := svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP
	for _, sp := range svc.Spec.Ports {
		proto, ok := protoOf(sp.Protocol)
		if !ok || sp.Port <= 0 || sp.Port > 65535 {
			continue
		}
		for _, eip := range out.EIPs {
			fw := Forward{Key: Key{EIP: eip, Proto: proto, Port: uint16(sp.Port)}}
			fw.Restricted, fw.Sources = ranges.For(eip)
			fw.Sticky = sticky
			fw.Endpoints = endpoints(eps, sp, eip, node, local, Ready)
			if len(fw.Endpoints) == 0 {
				fw.Endpoints = endpoints(eps, sp, eip, node, local, servingTerminating)
			}
			out.Forwards = append(out.Forwards, sortEndpoints(fw))
			if local {
				in := Forward{Key: fw.Key, Endpoints: endpoints(eps, sp, eip, node, false, Ready), Sticky: sticky}
				in.Internal = true
				if len(in.Endpoints) == 0 {
					in.Endpoints = endpoints(eps, sp, eip, node, false, servingTerminating)
				}
				out.Forwards = append(out.Forwards, sortEndpoints(in))
			}
		}
	}
	slices.SortFunc(out.Forwards, func(a, b Forward) int { return a.Key.compare(b.Key) })
	// Two Service ports with the same protocol and port are invalid; keep the first.
	out.Forwards = slices.CompactFunc(out.Forwards, func(a, b Forward) bool { return a.Key == b.Key })
	return out
}

func sortEndpoints(fw Forward) Forward {
	slices.SortFunc(fw.Endpoints, func(a, b Endpoint) int { return a.AddrPort().Compare(b.AddrPort()) })
	return fw
}

// endpoints lists the endpoints of Service port sp for eip that pass use
// (under Local only this node's), without duplicates.
func endpoints(eps []*discoveryv1.EndpointSlice, sp corev1.ServicePort, eip netip.Addr, node string, local bool,
	use func(discoveryv1.EndpointConditions) bool) []Endpoint {
	var out []Endpoint
	for _, s := range eps {
		if !familyMatches(s.AddressType, eip) {
			continue
		}
		port, ok := slicePort(s, sp.Name, sp.Protocol)
		if !ok {
			continue
		}
		for _, ep := range s.Endpoints {
			if !use(ep.Conditions) {
				continue
			}
			isLocal := ep.NodeName != nil && *ep.NodeName == node
			if local && !isLocal {
				continue
			}
			// One address per endpoint (the API allows one).
			if len(ep.Addresses) == 0 {
				continue
			}
			a, err := netip.ParseAddr(ep.Addresses[0])
			if err != nil || a.Unmap().Is4() != eip.Is4() {
				continue
			}
			e := Endpoint{Addr: a.Unmap(), Port: port, Local: isLocal}
			if !slices.Contains(out, e) {
				out = append(out, e)
			}
		}
	}
	return out
}

func familyMatches(t discoveryv1.AddressType, eip netip.Addr) bool {
	switch t {
	case discoveryv1.AddressTypeIPv4:
		return eip.Is4()
	case discoveryv1.AddressTypeIPv6:
		return eip.Is6()
	}
	return false
}

// slicePort finds the target port of the Service port named name in a
// slice (ports match by name; a Service with one unnamed port has "").
func slicePort(s *discoveryv1.EndpointSlice, name string, proto corev1.Protocol) (uint16, bool) {
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	for _, p := range s.Ports {
		pn, pp := "", corev1.ProtocolTCP
		if p.Name != nil {
			pn = *p.Name
		}
		if p.Protocol != nil {
			pp = *p.Protocol
		}
		if pn == name && pp == proto && p.Port != nil && *p.Port > 0 && *p.Port <= 65535 {
			return uint16(*p.Port), true
		}
	}
	return 0, false
}

// Ready: the endpoint takes new connections (kube-proxy's reading of the
// conditions: Ready unset counts as ready; a terminating endpoint never
// is). The managers count these per node for Local Services.
func Ready(c discoveryv1.EndpointConditions) bool {
	return (c.Ready == nil || *c.Ready) && !terminating(c)
}

// servingTerminating: the endpoint is going away but still serves (Serving
// unset counts as serving), the fallback when no endpoint is ready.
func servingTerminating(c discoveryv1.EndpointConditions) bool {
	return (c.Serving == nil || *c.Serving) && terminating(c)
}

func terminating(c discoveryv1.EndpointConditions) bool {
	return c.Terminating != nil && *c.Terminating
}
