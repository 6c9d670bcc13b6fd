package bgp

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	api "github.com/osrg/gobgp/v4/api"

	"github.com/eiplb/eiplb/pkg/bgp/bgptest"
)

// TestSpeakerStaleBFDResetSparesNextSession: GoBGP v4.8.0 queues a hard
// reset that comes while the session is down (its BFD peer's detection
// time ran out, or the router signalled Down, after the router had already
// closed the session on its own BFD Down) and the next session reads it
// the moment it is established (osrg/gobgp#3561). The router resets the
// session; a hard reset comes while it is down, as GoBGP's BFD sends it;
// the next session must come up once and stay up.
func TestSpeakerStaleBFDResetSparesNextSession(t *testing.T) {
	noLeaks(t)
	r := bgptest.New(t, 65001)
	ctx := context.Background()
	s, err := New(ctx, Config{RouterID: netip.MustParseAddr("10.255.0.2"), ASN: 65001, Logger: testr.NewWithOptions(t, testr.Options{Verbosity: 1})})
	must(t, err)
	defer s.Stop(ctx)
	addr := netip.MustParseAddr("127.0.0.1")
	must(t, s.SetPeers(ctx, sliceOf(routerPeer(addr, r.Port, 0))))
	must(t, s.SetPaths("test", sliceOf(p("172.30.0.1/32", "192.168.100.11"))))
	state := func() api.PeerState_SessionState {
		var st api.PeerState_SessionState
		must(t, s.srv.ListPeer(ctx, &api.ListPeerRequest{Address: addr.String()}, func(p *api.Peer) { st = p.GetState().GetSessionState() }))
		return st
	}
	established := func() string {
		if st := state(); st != api.PeerState_SESSION_STATE_ESTABLISHED {
			return "our session: " + st.String()
		}
		if rs := r.Session(t); rs.State != "ESTABLISHED" {
			return "the receiver's session: " + rs.State
		}
		return ""
	}
	eventuallyRcv(t, established)
	r.Reset(t)
	eventuallyRcv(t, func() string {
		if st := state(); st == api.PeerState_SESSION_STATE_ESTABLISHED {
			return "our session still established"
		}
		return ""
	})
	// What GoBGP's BFD peer does when its detection time runs out after
	// the session went down (GoBGP waits a second before reconnecting).
	must(t, s.srv.ResetPeer(ctx, &api.ResetPeerRequest{Address: addr.String(), Communication: "BFD is down"}))
	// Without the workaround the next session sends the queued reset as it
	// comes up, and the receiver, reset, stays away for longer than this.
	eventuallyRcv(t, established)
	before := r.Session(t)
	// A stale reset closes the new session within microseconds of its
	// start; the session must have stayed up since (2 s of watching).
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if msg := established(); msg != "" {
			t.Fatalf("the session after the reset went down: %s", msg)
		}
		time.Sleep(50 * time.Millisecond) // polling period of the watch
	}
	if after := r.Session(t); after.Flops != before.Flops || !after.Up.Equal(before.Up) {
		t.Fatalf("the session was reset again: %+v, then %+v", before, after)
	}
	r.WaitExactly(t, bgptest.IPv4, "172.30.0.1/32 via 192.168.100.11 id=0")
}

// sliceOf is its arguments as a slice (of whichever type they are).
func sliceOf[T any](v ...T) []T { return v }
