package bgp

import (
	"context"
	"net/netip"
	"testing"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/eiplb/eiplb/pkg/bgp/route"
)

// TestSpeakerBadPathKeepsOthersGoing: a path GoBGP can't take (here, no
// valid next hop) is reported, and the rest of the change still reaches the
// router, withdrawals included; a retry re-sends nothing it believes sent
// that isn't. Before, apply recorded the paths before the failing one as
// sent and returned, so the router kept a withdrawn path and never got the
// new one, and no retry sent them.
func TestSpeakerBadPathKeepsOthersGoing(t *testing.T) {
	noLeaks(t)
	r := newReceiver(t)
	s := startSpeaker(t, r)
	defer s.Stop(context.Background())

	must(t, s.SetPaths("ns/a", []route.Path{p("192.0.2.1/32", "192.168.100.11")}))
	waitReceived(t, r, bgp.RF_IPv4_UC, "192.0.2.1/32 via 192.168.100.11 id=1")

	bad := route.Path{Prefix: netip.MustParsePrefix("192.0.2.9/32")} // no next hop
	change := []route.Path{p("192.0.2.2/32", "192.168.100.11"), bad}
	if err := s.SetPaths("ns/a", change); err == nil {
		t.Fatal("SetPaths with a path without a next hop: no error")
	}
	waitReceived(t, r, bgp.RF_IPv4_UC, "192.0.2.2/32 via 192.168.100.11 id=1")

	// The controller retries the same change: the bad path fails again,
	// nothing else moves.
	if err := s.SetPaths("ns/a", change); err == nil {
		t.Fatal("retried SetPaths with a path without a next hop: no error")
	}
	// Another owner is not disturbed, and the fixed change succeeds.
	must(t, s.SetPaths("ns/b", []route.Path{p("192.0.2.3/32", "192.168.100.12")}))
	must(t, s.SetPaths("ns/a", change[:1]))
	waitReceived(t, r, bgp.RF_IPv4_UC, "192.0.2.2/32 via 192.168.100.11 id=1", "192.0.2.3/32 via 192.168.100.12 id=1")
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.sent) != 2 || len(s.ids) != 2 {
		t.Errorf("speaker records %d paths and ids for %d prefixes, want 2 and 2: %v", len(s.sent), len(s.ids), s.ids)
	}
}
