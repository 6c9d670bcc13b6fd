package bgp

import (
	"net/netip"
	"testing"

	api "github.com/osrg/gobgp/v4/api"

	"github.com/eiplb/eiplb/pkg/bgp/route"
)

// BenchmarkSentTo: counting the paths sent to one peer at 10,000 Services
// with three next hops each, once with ADD-PATH and once without. It runs
// at every status refresh, under the speaker's lock.
func BenchmarkSentTo(b *testing.B) {
	s := &Speaker{sent: map[pathKey]*sentPath{}, ids: map[netip.Prefix]map[uint32]struct{}{}, filters: map[netip.Addr]*peerFilter{}}
	base := netip.MustParseAddr("10.200.0.0").As4()
	for i := range 10000 {
		a := base
		a[2], a[3] = byte(i>>8), byte(i)
		for n := range 3 {
			prefix := netip.PrefixFrom(netip.AddrFrom4(a), 32)
			s.sent[pathKey{prefix, netip.AddrFrom4([4]byte{192, 168, 100, byte(11 + n)})}] = &sentPath{id: s.allocID(prefix)}
		}
	}
	p := route.Peer{Address: netip.MustParseAddr("192.168.100.1")}
	for _, c := range []struct {
		name string
		n    negotiated
		want uint64
	}{
		{"add-path", negotiated{family: [2]bool{true, true}, addPathSend: [2]bool{true, true}}, 30000},
		{"best-only", negotiated{family: [2]bool{true, true}}, 10000},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if got := s.sentTo(p, c.n); got != c.want {
					b.Fatalf("sentTo = %d, want %d", got, c.want)
				}
			}
		})
	}
}

func TestNegotiation(t *testing.T) {
	fam := func(afi api.Family_Afi) *api.Family { return &api.Family{Afi: afi, Safi: api.Family_SAFI_UNICAST} }
	mp := func(afi api.Family_Afi) *api.Capability {
		return &api.Capability{Cap: &api.Capability_MultiProtocol{MultiProtocol: &api.MultiProtocolCapability{Family: fam(afi)}}}
	}
	addPath := func(afi api.Family_Afi, mode api.AddPathCapabilityTuple_Mode) *api.Capability {
		return &api.Capability{Cap: &api.Capability_AddPath{AddPath: &api.AddPathCapability{Tuples: []*api.AddPathCapabilityTuple{{Family: fam(afi), Mode: mode}}}}}
	}
	v4, v6 := api.Family_AFI_IP, api.Family_AFI_IP6
	for _, c := range []struct {
		name          string
		local, remote []*api.Capability
		want          negotiated
	}{
		{"both families, ADD-PATH send against receive for IPv4 only",
			[]*api.Capability{mp(v4), mp(v6), addPath(v4, api.AddPathCapabilityTuple_MODE_SEND), addPath(v6, api.AddPathCapabilityTuple_MODE_SEND)},
			[]*api.Capability{mp(v4), mp(v6), addPath(v4, api.AddPathCapabilityTuple_MODE_BOTH)},
			negotiated{family: [2]bool{true, true}, addPathSend: [2]bool{true, false}}},
		{"the remote has IPv4 only",
			[]*api.Capability{mp(v4), mp(v6)}, []*api.Capability{mp(v4)},
			negotiated{family: [2]bool{true, false}}},
		{"the remote sends no multiprotocol capability: IPv4 unicast",
			[]*api.Capability{mp(v4), mp(v6), addPath(v4, api.AddPathCapabilityTuple_MODE_SEND)}, nil,
			negotiated{family: [2]bool{true, false}}},
		{"ADD-PATH receive on both sides is not send",
			[]*api.Capability{mp(v4), addPath(v4, api.AddPathCapabilityTuple_MODE_RECEIVE)},
			[]*api.Capability{mp(v4), addPath(v4, api.AddPathCapabilityTuple_MODE_RECEIVE)},
			negotiated{family: [2]bool{true, false}}},
	} {
		if got := negotiation(c.local, c.remote); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}
