package bgp

import (
	"net/netip"
	"testing"
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
	p := Peer{Address: netip.MustParseAddr("192.168.100.1")}
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
