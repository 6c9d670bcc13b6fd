// Package bgptest has a plain GoBGP server that plays the router in tests:
// it accepts a session from 127.0.0.1 and lists the paths it received,
// ADD-PATH identifiers and attributes included.
package bgptest

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// Families for Received.
const (
	IPv4 = bgp.RF_IPv4_UC
	IPv6 = bgp.RF_IPv6_UC
)

// Receiver is a GoBGP server in AS 65000 listening on 127.0.0.1:Port,
// peering passively with 127.0.0.1 in AS PeerASN, with ADD-PATH receive.
type Receiver struct {
	srv  *server.BgpServer
	Port int
	from string // the speaker's address
}

// New starts a receiver on 127.0.0.1; it stops when the test ends.
func New(t testing.TB, peerASN uint32) *Receiver { return NewAt(t, "127.0.0.1", peerASN) }

// NewAt starts a receiver listening on a loopback address of its own (for
// tests with several routers).
func NewAt(t testing.TB, listen string, peerASN uint32) *Receiver {
	t.Helper()
	return NewFrom(t, listen, "127.0.0.1", peerASN)
}

// NewFrom starts a receiver listening on listen that accepts the session
// only from the address from (a speaker with a chosen source address).
func NewFrom(t testing.TB, listen, from string, peerASN uint32) *Receiver {
	t.Helper()
	l, err := net.Listen("tcp", listen+":0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	r := &Receiver{srv: server.NewBgpServer(), Port: port, from: from}
	go r.srv.Serve()
	ctx := context.Background()
	if err := r.srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: 65000, RouterId: "10.255.0.1", ListenPort: int32(port), ListenAddresses: []string{listen},
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
		Conf:      &api.PeerConf{NeighborAddress: from, PeerAsn: peerASN},
		Transport: &api.Transport{PassiveMode: true},
		AfiSafis:  []*api.AfiSafi{fam(api.Family_AFI_IP), fam(api.Family_AFI_IP6)},
		// Back a second after a reset (Reset), not GoBGP's 30 s.
		Timers: &api.Timers{Config: &api.TimersConfig{IdleHoldTimeAfterReset: 1}},
	}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = r.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: from})
		_ = r.srv.StopBgp(ctx, &api.StopBgpRequest{})
		r.srv.Stop()
	})
	return r
}

// Session is the receiver's side of its session with 127.0.0.1: GoBGP's
// state ("ESTABLISHED", "ACTIVE", ...), since when it is established (zero
// otherwise), and how often it went down after being established.
type Session struct {
	State string
	Up    time.Time
	Flops uint32
}

// Session reports the session with 127.0.0.1.
func (r *Receiver) Session(t testing.TB) Session {
	t.Helper()
	var out Session
	err := r.srv.ListPeer(context.Background(), &api.ListPeerRequest{Address: "127.0.0.1"}, func(p *api.Peer) {
		if st := p.GetState(); st != nil {
			out.State = strings.TrimPrefix(st.GetSessionState().String(), "SESSION_STATE_")
			out.Flops = st.GetFlops()
		}
		if out.State == "ESTABLISHED" && p.GetTimers().GetState().GetUptime() != nil {
			out.Up = p.GetTimers().GetState().GetUptime().AsTime()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Reset closes the session with 127.0.0.1 from the receiver's side with a
// Cease NOTIFICATION, as a router does whose BFD session went down.
func (r *Receiver) Reset(t testing.TB) {
	t.Helper()
	if err := r.srv.ResetPeer(context.Background(), &api.ResetPeerRequest{Address: r.from, Communication: "test reset"}); err != nil {
		t.Fatal(err)
	}
}

// Received lists "prefix via nexthop id=N [communities=...] [bw=...]" lines,
// sorted.
func (r *Receiver) Received(t testing.TB, family bgp.Family) []string {
	t.Helper()
	var out []string
	err := r.srv.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_ADJ_IN, Name: r.from, Family: family},
		func(prefix bgp.NLRI, paths []*apiutil.Path) {
			for _, p := range paths {
				out = append(out, describe(prefix, p))
			}
		})
	if err != nil && !strings.Contains(err.Error(), "not found") {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func describe(prefix bgp.NLRI, p *apiutil.Path) string {
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
	return line
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

// Wait polls until cond(Received) returns "" or 10 s pass.
func (r *Receiver) Wait(t testing.TB, family bgp.Family, cond func(got []string) string) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var got []string
	last := ""
	for time.Now().Before(deadline) {
		got = r.Received(t, family)
		if last = cond(got); last == "" {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("receiver has\n  %s\n%s", strings.Join(got, "\n  "), last)
	return nil
}

// WaitExactly waits until the received paths are exactly want (any order).
func (r *Receiver) WaitExactly(t testing.TB, family bgp.Family, want ...string) {
	t.Helper()
	want = slices.Clone(want)
	slices.Sort(want)
	r.Wait(t, family, func(got []string) string {
		if slices.Equal(got, want) {
			return ""
		}
		return "want\n  " + strings.Join(want, "\n  ")
	})
}

// Without strips " id=N" so tests can compare paths whose identifiers GoBGP
// chose on the wire.
func Without(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		if j := strings.Index(l, " id="); j >= 0 {
			k := strings.IndexByte(l[j+1:], ' ')
			if k < 0 {
				out[i] = l[:j]
			} else {
				out[i] = l[:j] + l[j+1+k:]
			}
		}
	}
	return out
}
