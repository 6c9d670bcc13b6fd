package bgp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
	"go.uber.org/goleak"
)

// receiver is a second, plain GoBGP server that peers with the speaker
// under test and shows what it received, path identifiers included.
type receiver struct {
	srv  *server.BgpServer
	port int
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	r := &receiver{srv: server.NewBgpServer(), port: freePort(t)}
	go r.srv.Serve()
	ctx := context.Background()
	if err := r.srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: 65000, RouterId: "10.255.0.1", ListenPort: int32(r.port), ListenAddresses: []string{"127.0.0.1"},
	}}); err != nil {
		t.Fatal(err)
	}
	fam := func(afi api.Family_Afi) *api.AfiSafi {
		return &api.AfiSafi{
			Config:   &api.AfiSafiConfig{Family: &api.Family{Afi: afi, Safi: api.Family_SAFI_UNICAST}, Enabled: true},
			AddPaths: &api.AddPaths{Config: &api.AddPathsConfig{Receive: true}},
		}
	}
	if err := r.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: "127.0.0.1", PeerAsn: 65001},
		Transport: &api.Transport{PassiveMode: true},
		AfiSafis:  []*api.AfiSafi{fam(api.Family_AFI_IP), fam(api.Family_AFI_IP6)},
	}}); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *receiver) stop() {
	_ = r.srv.StopBgp(context.Background(), &api.StopBgpRequest{})
	r.srv.Stop()
}

// received lists "prefix via nexthop id=N [extra]" lines, sorted.
func (r *receiver) received(t *testing.T, family bgp.Family) []string {
	t.Helper()
	var out []string
	err := r.srv.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_ADJ_IN, Name: "127.0.0.1", Family: family},
		func(prefix bgp.NLRI, paths []*apiutil.Path) {
			for _, p := range paths {
				line := fmt.Sprintf("%s via %s id=%d", prefix, nextHop(p), p.RemoteID)
				for _, a := range p.Attrs {
					switch v := a.(type) {
					case *bgp.PathAttributeCommunities:
						line += fmt.Sprintf(" communities=%v", v.Value)
					case *bgp.PathAttributeExtendedCommunities:
						for _, e := range v.Value {
							if lb, ok := e.(*bgp.LinkBandwidthExtended); ok {
								line += fmt.Sprintf(" bw=%g", lb.Bandwidth)
							}
						}
					}
				}
				out = append(out, line)
			}
		})
	if err != nil && !strings.Contains(err.Error(), "not found") {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func nextHop(p *apiutil.Path) string {
	for _, a := range p.Attrs {
		switch v := a.(type) {
		case *bgp.PathAttributeNextHop:
			return v.Value.String()
		case *bgp.PathAttributeMpReachNLRI:
			return v.Nexthop.String()
		}
	}
	return "?"
}

func waitReceived(t *testing.T, r *receiver, family bgp.Family, want ...string) {
	t.Helper()
	slices.Sort(want)
	deadline := time.Now().Add(10 * time.Second)
	var got []string
	for time.Now().Before(deadline) {
		if got = r.received(t, family); slices.Equal(got, want) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("receiver has\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
}

func eventuallyRcv(t *testing.T, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		if last = cond(); last == "" {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("receiver has\n  %s", last)
}

func startSpeaker(t *testing.T, r *receiver) *Speaker {
	t.Helper()
	ctx := context.Background()
	s, err := New(ctx, Config{RouterID: netip.MustParseAddr("10.255.0.2"), ASN: 65001, Logger: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	err = s.SetPeers(ctx, []Peer{{
		Address: netip.MustParseAddr("127.0.0.1"), Port: uint16(r.port), ASN: 65000, LocalASN: 65001,
		ConnectTime: time.Second, AddPathSendMax: 16, IPv4: true, IPv6: true,
	}})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, err := s.PeerStates(ctx)
		if err == nil && len(st) == 1 && st[0].Established() {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("session not established: %+v %v", st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func p(prefix, nh string, attrs ...Attributes) Path {
	out := Path{Prefix: netip.MustParsePrefix(prefix), NextHop: netip.MustParseAddr(nh)}
	if len(attrs) > 0 {
		out.Attrs = attrs[0]
	}
	return out
}

func TestSpeakerPathsAgainstGoBGP(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	r := newReceiver(t)
	defer r.stop()
	s := startSpeaker(t, r)
	defer s.Stop(context.Background())

	// One EIP, three node next hops: three paths, distinct ADD-PATH ids.
	must(t, s.SetPaths("ns/a", []Path{p("192.0.2.1/32", "192.168.100.11"), p("192.0.2.1/32", "192.168.100.12"), p("192.0.2.1/32", "192.168.100.13")}))
	waitReceived(t, r, bgp.RF_IPv4_UC,
		"192.0.2.1/32 via 192.168.100.11 id=1", "192.0.2.1/32 via 192.168.100.12 id=2", "192.0.2.1/32 via 192.168.100.13 id=3")

	// A node leaves: only its path is withdrawn; the others keep their ids.
	must(t, s.SetPaths("ns/a", []Path{p("192.0.2.1/32", "192.168.100.11"), p("192.0.2.1/32", "192.168.100.13")}))
	waitReceived(t, r, bgp.RF_IPv4_UC, "192.0.2.1/32 via 192.168.100.11 id=1", "192.0.2.1/32 via 192.168.100.13 id=3")

	// A returning node gets an id of its own (GoBGP picks the one on the
	// wire); weights and communities change in place, keeping ids 1 and 3.
	must(t, s.SetPaths("ns/a", []Path{
		p("192.0.2.1/32", "192.168.100.11", Attributes{LinkBandwidth: 3e6}),
		p("192.0.2.1/32", "192.168.100.12", Attributes{LinkBandwidth: 1e6}),
		p("192.0.2.1/32", "192.168.100.13", Attributes{LinkBandwidth: 1e6, Communities: []uint32{65000<<16 | 100}}),
	}))
	eventuallyRcv(t, func() string {
		got := r.received(t, bgp.RF_IPv4_UC)
		if len(got) != 3 || got[0] != "192.0.2.1/32 via 192.168.100.11 id=1 bw=3e+06" ||
			!strings.HasPrefix(got[1], "192.0.2.1/32 via 192.168.100.12 id=") || !strings.HasSuffix(got[1], " bw=1e+06") ||
			strings.Contains(got[1], "id=1 ") || strings.Contains(got[1], "id=3 ") ||
			got[2] != "192.0.2.1/32 via 192.168.100.13 id=3 communities=[4259840100] bw=1e+06" {
			return strings.Join(got, "\n  ")
		}
		return ""
	})
	returning := r.received(t, bgp.RF_IPv4_UC)[1]

	// Two owners of one address (sharing): announced once, withdrawn only
	// when the last owner goes.
	must(t, s.SetPaths("ns/b", []Path{p("192.0.2.1/32", "192.168.100.11", Attributes{LinkBandwidth: 1e6})}))
	waitReceived(t, r, bgp.RF_IPv4_UC,
		"192.0.2.1/32 via 192.168.100.11 id=1 bw=4e+06",
		returning,
		"192.0.2.1/32 via 192.168.100.13 id=3 communities=[4259840100] bw=1e+06")
	must(t, s.SetPaths("ns/a", nil))
	waitReceived(t, r, bgp.RF_IPv4_UC, "192.0.2.1/32 via 192.168.100.11 id=1 bw=1e+06")
	must(t, s.SetPaths("ns/b", nil))
	waitReceived(t, r, bgp.RF_IPv4_UC)

	// IPv6.
	must(t, s.SetPaths("ns/c", []Path{p("2001:db8::1/128", "fd00:100::11"), p("2001:db8::1/128", "fd00:100::12")}))
	waitReceived(t, r, bgp.RF_IPv6_UC, "2001:db8::1/128 via fd00:100::11 id=1", "2001:db8::1/128 via fd00:100::12 id=2")
	must(t, s.SetPaths("ns/c", nil))
	waitReceived(t, r, bgp.RF_IPv6_UC)
}

// TestSpeakerSendsOnlyDifference counts what reaches GoBGP: re-setting the
// same paths sends nothing.
func TestSpeakerSendsOnlyDifference(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx := context.Background()
	s, err := New(ctx, Config{RouterID: netip.MustParseAddr("10.255.0.3"), Logger: logr.Discard()})
	must(t, err)
	defer s.Stop(ctx)
	var adds, dels int
	s.OnUpdate(func(a, d int, _ time.Time) { adds += a; dels += d })
	paths := []Path{p("192.0.2.9/32", "192.168.100.11"), p("192.0.2.9/32", "192.168.100.12")}
	must(t, s.SetPaths("x", paths))
	must(t, s.SetPaths("x", paths))
	must(t, s.SetPaths("x", slices.Clone(paths)))
	if adds != 2 || dels != 0 {
		t.Fatalf("adds %d dels %d, want 2 and 0", adds, dels)
	}
	must(t, s.SetPaths("x", paths[:1]))
	if adds != 2 || dels != 1 {
		t.Fatalf("adds %d dels %d, want 2 and 1", adds, dels)
	}
	// Other owners are never touched by one owner's change.
	must(t, s.SetPaths("y", []Path{p("192.0.2.10/32", "192.168.100.11")}))
	must(t, s.SetPaths("x", nil))
	if adds != 3 || dels != 2 {
		t.Fatalf("adds %d dels %d, want 3 and 2", adds, dels)
	}
}

func TestParseCommunities(t *testing.T) {
	for in, want := range map[string]uint32{"65000:100": 65000<<16 | 100, "0:0": 0, "no-export": 0xFFFFFF01, "blackhole": 0xFFFF029A} {
		got, err := ParseCommunity(in)
		if err != nil || got != want {
			t.Errorf("ParseCommunity(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"65536:1", "1:65536", "x:1", "100", ""} {
		if _, err := ParseCommunity(bad); err == nil {
			t.Errorf("ParseCommunity(%q) accepted", bad)
		}
	}
	if l, err := ParseLargeCommunity("4200000000:1:2"); err != nil || l != (LargeCommunity{4200000000, 1, 2}) {
		t.Errorf("ParseLargeCommunity = %v, %v", l, err)
	}
	for _, bad := range []string{"1:2", "4294967296:1:1", "a:b:c"} {
		if _, err := ParseLargeCommunity(bad); err == nil {
			t.Errorf("ParseLargeCommunity(%q) accepted", bad)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
