package bgp

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/eiplb/eiplb/pkg/bgp/bgptest"
	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"go.uber.org/goleak"
)

type receiver struct{ *bgptest.Receiver }

func newReceiver(t *testing.T) *receiver { return &receiver{bgptest.New(t, 65001)} }

func (r *receiver) received(t *testing.T, family bgp.Family) []string { return r.Received(t, family) }

func waitReceived(t *testing.T, r *receiver, family bgp.Family, want ...string) {
	t.Helper()
	r.WaitExactly(t, family, want...)
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
		Address: netip.MustParseAddr("127.0.0.1"), Port: uint16(r.Port), ASN: 65000, LocalASN: 65001,
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
	noLeaks(t)
	r := newReceiver(t)
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
	noLeaks(t)
	ctx := context.Background()
	s, err := New(ctx, Config{RouterID: netip.MustParseAddr("10.255.0.3"), Logger: logr.Discard()})
	must(t, err)
	defer s.Stop(ctx)
	var adds, dels int
	s.OnUpdate(func(a, d, _ int, _ time.Time) { adds += a; dels += d })
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

// noLeaks checks, after every other cleanup of the test, that no goroutine
// started during the test is left. One GoBGP-internal goroutine is
// tolerated: a session's outgoing queue (eapache/channels) sometimes
// outlives a peer deleted while its FSM is mid-transition (seen in about one
// run in three on the receiver's passive side). Without Stop removing peers
// first it was left every time, which the check caught before this
// exception was narrowed to the intermittent case.
func noLeaks(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		goleak.VerifyNone(t, before, goleak.IgnoreTopFunction("github.com/eapache/channels.(*InfiniteChannel).infiniteBuffer"))
	})
}

// twoRouters starts two receivers, on 127.0.0.1 (one) and 127.0.0.2 (two),
// and a speaker that stops when the test ends, and checks for leaked
// goroutines then.
func twoRouters(t *testing.T) (s *Speaker, r1, r2 *bgptest.Receiver, one, two netip.Addr) {
	noLeaks(t)
	r1 = bgptest.NewAt(t, "127.0.0.1", 65001)
	r2 = bgptest.NewAt(t, "127.0.0.2", 65001)
	ctx := context.Background()
	s, err := New(ctx, Config{RouterID: netip.MustParseAddr("10.255.0.2"), ASN: 65001, Logger: logr.Discard()})
	must(t, err)
	t.Cleanup(func() { s.Stop(ctx) })
	return s, r1, r2, netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
}

// routerPeer is a receiver as the speaker's peer, with both families.
func routerPeer(a netip.Addr, port int, addPath uint8) Peer {
	return Peer{Address: a, Port: uint16(port), ASN: 65000, LocalASN: 65001, ConnectTime: time.Second, AddPathSendMax: addPath, IPv4: true, IPv6: true}
}

// TestSpeakerPeerRestriction: a prefix restricted to some peers reaches only
// them, and moving the restriction moves the prefix.
func TestSpeakerPeerRestriction(t *testing.T) {
	s, r1, r2, one, two := twoRouters(t)
	ctx := context.Background()
	must(t, s.SetPeers(ctx, []Peer{routerPeer(one, r1.Port, 16), routerPeer(two, r2.Port, 16)}))
	restricted := func(to ...netip.Addr) []Path {
		a := p("192.0.2.1/32", "192.168.100.11")
		a.Peers = to
		return []Path{a}
	}
	must(t, s.SetPaths("a", restricted(two)))
	must(t, s.SetPaths("b", []Path{p("192.0.2.2/32", "192.168.100.11")}))
	r1.WaitExactly(t, bgptest.IPv4, "192.0.2.2/32 via 192.168.100.11 id=1")
	r2.WaitExactly(t, bgptest.IPv4, "192.0.2.1/32 via 192.168.100.11 id=1", "192.0.2.2/32 via 192.168.100.11 id=1")

	// The restriction moves to the other router.
	must(t, s.SetPaths("a", restricted(one)))
	r1.WaitExactly(t, bgptest.IPv4, "192.0.2.1/32 via 192.168.100.11 id=1", "192.0.2.2/32 via 192.168.100.11 id=1")
	r2.WaitExactly(t, bgptest.IPv4, "192.0.2.2/32 via 192.168.100.11 id=1")

	// No restriction: everywhere.
	must(t, s.SetPaths("a", restricted()))
	r1.WaitExactly(t, bgptest.IPv4, "192.0.2.1/32 via 192.168.100.11 id=1", "192.0.2.2/32 via 192.168.100.11 id=1")
	r2.WaitExactly(t, bgptest.IPv4, "192.0.2.1/32 via 192.168.100.11 id=1", "192.0.2.2/32 via 192.168.100.11 id=1")
}

// TestSpeakerBFDStartsOnceEstablished: a peer's BFD stays off until its
// session is up (reported Down meanwhile), then starts without resetting
// the session (see followSession).
func TestSpeakerBFDStartsOnceEstablished(t *testing.T) {
	noLeaks(t)
	r := bgptest.New(t, 65001)
	l, err := net.Listen("tcp", "127.0.0.3:0")
	must(t, err)
	closedPort := l.Addr().(*net.TCPAddr).Port
	must(t, l.Close())
	ctx := context.Background()
	s, err := New(ctx, Config{RouterID: netip.MustParseAddr("10.255.0.2"), ASN: 65001, Logger: logr.Discard()})
	must(t, err)
	defer s.Stop(ctx)
	up, down := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.3")
	peer := func(a netip.Addr, port int) Peer {
		return Peer{Address: a, Port: uint16(port), ASN: 65000, LocalASN: 65001, ConnectTime: time.Second, IPv4: true,
			BFD: &BFD{MinTx: 300 * time.Millisecond, MinRx: 300 * time.Millisecond, Multiplier: 3}}
	}
	must(t, s.SetPeers(ctx, []Peer{peer(up, r.Port), peer(down, closedPort)}))

	type gobgpPeer struct {
		bfd   bool
		state api.PeerState_SessionState
		flops uint32
		opens uint64
	}
	list := func() map[netip.Addr]gobgpPeer {
		out := map[netip.Addr]gobgpPeer{}
		must(t, s.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
			g := gobgpPeer{bfd: p.Bfd != nil && p.Bfd.Enabled, state: p.State.SessionState, flops: p.State.Flops}
			if m := p.State.Messages; m != nil && m.Sent != nil {
				g.opens = m.Sent.Open
			}
			out[netip.MustParseAddr(p.Conf.NeighborAddress)] = g
		}))
		return out
	}
	eventuallyRcv(t, func() string {
		if g := list()[up]; !g.bfd || g.state != api.PeerState_SESSION_STATE_ESTABLISHED {
			return fmt.Sprintf("session to the receiver: %+v", g)
		}
		return ""
	})
	// GoBGP's BFD peer starts sending a second after it is added; the
	// session must have outlived that, with its first OPEN.
	time.Sleep(1500 * time.Millisecond)
	peers := list()
	if g := peers[up]; g.state != api.PeerState_SESSION_STATE_ESTABLISHED || g.flops != 0 || g.opens != 1 {
		t.Errorf("session to the receiver was reset when BFD started: %+v", g)
	}
	if g := peers[down]; g.bfd {
		t.Errorf("BFD started on a session that never came up: %+v", g)
	}
	st, err := s.PeerStates(ctx)
	must(t, err)
	for _, p := range st {
		if p.Address == down && p.BFDState != "Down" {
			t.Errorf("BFD of the session that never came up is reported %q, want Down", p.BFDState)
		}
	}
}

// TestSpeakerBFDFollowsSession: BFD stops when the session goes down and
// starts again once it is back, with a new BFD peer (see followSession),
// without resetting the new session.
func TestSpeakerBFDFollowsSession(t *testing.T) {
	noLeaks(t)
	r := bgptest.New(t, 65001)
	ctx := context.Background()
	s, err := New(ctx, Config{RouterID: netip.MustParseAddr("10.255.0.2"), ASN: 65001, Logger: logr.Discard()})
	must(t, err)
	defer s.Stop(ctx)
	addr := netip.MustParseAddr("127.0.0.1")
	must(t, s.SetPeers(ctx, []Peer{{Address: addr, Port: uint16(r.Port), ASN: 65000, LocalASN: 65001, ConnectTime: time.Second, IPv4: true,
		BFD: &BFD{MinTx: 300 * time.Millisecond, MinRx: 300 * time.Millisecond, Multiplier: 3}}}))
	type state struct {
		bfd, established bool
		opens            uint64
	}
	get := func() state {
		var g state
		must(t, s.srv.ListPeer(ctx, &api.ListPeerRequest{Address: addr.String()}, func(p *api.Peer) {
			g = state{bfd: p.Bfd != nil && p.Bfd.Enabled, established: p.State.SessionState == api.PeerState_SESSION_STATE_ESTABLISHED}
			if m := p.State.Messages; m != nil && m.Sent != nil {
				g.opens = m.Sent.Open
			}
		}))
		return g
	}
	want := func(w state) func() string {
		return func() string {
			if g := get(); g.bfd != w.bfd || g.established != w.established {
				return fmt.Sprintf("session %+v, want %+v", g, w)
			}
			return ""
		}
	}
	eventuallyRcv(t, want(state{bfd: true, established: true}))
	// The router resets the session (as a restarting bgpd does): BFD
	// stops while it is down (GoBGP waits a second before reconnecting).
	must(t, s.srv.ResetPeer(ctx, &api.ResetPeerRequest{Address: addr.String(), Communication: "test"}))
	eventuallyRcv(t, want(state{bfd: false, established: false}))
	eventuallyRcv(t, want(state{bfd: true, established: true}))
	// Starting BFD again (GoBGP's BFD peer sends a second after it is
	// added) did not reset the new session.
	before := get()
	time.Sleep(1500 * time.Millisecond)
	if after := get(); !after.established || !after.bfd || after.opens != before.opens {
		t.Errorf("session reset when BFD started again: before %+v, after %+v", before, after)
	}
	if ps, err := s.PeerStates(ctx); err != nil || len(ps) != 1 || ps[0].BFDState == "" {
		t.Errorf("peer states %+v (%v), want one with a BFD state", ps, err)
	}
}

// TestPeerStatesCountLikeGoBGP: the paths-sent count taken from the
// speaker's table equals the one GoBGP takes from its own (which stalls its
// main loop), with ADD-PATH and without, restrictions and both families.
func TestPeerStatesCountLikeGoBGP(t *testing.T) {
	s, r1, r2, one, two := twoRouters(t)
	ctx := context.Background()
	// r2 gets one path per prefix: no ADD-PATH send.
	must(t, s.SetPeers(ctx, []Peer{routerPeer(one, r1.Port, 16), routerPeer(two, r2.Port, 1)}))
	onlyOne := p("192.0.2.9/32", "192.168.100.11")
	onlyOne.Peers = []netip.Addr{one}
	must(t, s.SetPaths("a", []Path{
		p("192.0.2.1/32", "192.168.100.11"), p("192.0.2.1/32", "192.168.100.12"), p("192.0.2.1/32", "192.168.100.13"),
		p("192.0.2.2/32", "192.168.100.11"),
		p("2001:db8::1/128", "fd00:100::11"), p("2001:db8::1/128", "fd00:100::12"),
		onlyOne,
	}))
	gobgp := func() map[netip.Addr]uint64 {
		out := map[netip.Addr]uint64{}
		must(t, s.srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
			for _, a := range p.AfiSafis {
				out[netip.MustParseAddr(p.Conf.NeighborAddress)] += a.GetState().GetAdvertised()
			}
		}))
		return out
	}
	want := map[netip.Addr]uint64{one: 7, two: 3} // r1: 3+1+2+1; r2: 192.0.2.1, .2, 2001:db8::1
	eventuallyRcv(t, func() string {
		st, err := s.PeerStates(ctx)
		if err != nil {
			return err.Error()
		}
		ours := map[netip.Addr]uint64{}
		for _, p := range st {
			ours[p.Address] = p.PrefixesSent
		}
		if theirs := gobgp(); !maps.Equal(ours, want) || !maps.Equal(theirs, want) {
			return fmt.Sprintf("paths sent: ours %v, GoBGP's %v, want %v", ours, theirs, want)
		}
		return ""
	})
}

// TestSpeakerSourceAddress: a peer with a LocalAddress connects from it. The
// router accepts the session only from 127.0.0.7; without the source address
// the kernel would pick 127.0.0.1 and the session would never come up.
func TestSpeakerSourceAddress(t *testing.T) {
	noLeaks(t)
	r := bgptest.NewFrom(t, "127.0.0.1", "127.0.0.7", 65001)
	ctx := context.Background()
	s, err := New(ctx, Config{RouterID: netip.MustParseAddr("10.255.0.2"), ASN: 65001, Logger: logr.Discard()})
	must(t, err)
	defer s.Stop(ctx)
	must(t, s.SetPeers(ctx, []Peer{{
		Address: netip.MustParseAddr("127.0.0.1"), Port: uint16(r.Port), ASN: 65000, LocalASN: 65001,
		LocalAddress: netip.MustParseAddr("127.0.0.7"), ConnectTime: time.Second, IPv4: true,
	}}))
	local := ""
	eventuallyRcv(t, func() string {
		var state api.PeerState_SessionState
		must(t, s.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
			state = p.State.GetSessionState()
			local = p.Transport.GetLocalAddress()
		}))
		if state != api.PeerState_SESSION_STATE_ESTABLISHED {
			return fmt.Sprintf("session %v, local address %q", state, local)
		}
		return ""
	})
	if local != "127.0.0.7" {
		t.Errorf("session's local address %q, want 127.0.0.7", local)
	}
	must(t, s.SetPaths("svc", []Path{p("172.30.0.1/32", "192.168.100.11")}))
	r.WaitExactly(t, bgptest.IPv4, "172.30.0.1/32 via 192.168.100.11 id=0")
}
