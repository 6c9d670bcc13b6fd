package bgp

import (
	"context"
	"slices"
	"testing"

	"github.com/eiplb/eiplb/pkg/bgp/bgptest"
	"github.com/eiplb/eiplb/pkg/bgp/route"
)

// TestSetPeersDuplicateAddress: of two peers with one address the first
// counts; the second is an error and leaves the established session and
// its routes alone (the last one used to replace it).
func TestSetPeersDuplicateAddress(t *testing.T) {
	s, r1, r2, one, two := twoRouters(t)
	ctx := context.Background()
	must(t, s.SetPeers(ctx, []route.Peer{routerPeer(one, r1.Port, 16)}))
	must(t, s.SetPaths("a", []route.Path{p("192.0.2.1/32", "192.168.100.11")}))
	r1.WaitExactly(t, bgptest.IPv4, "192.0.2.1/32 via 192.168.100.11 id=1")
	before := r1.Session(t)
	if before.State != "ESTABLISHED" {
		t.Fatalf("session %+v", before)
	}

	dup := routerPeer(one, r1.Port, 16)
	dup.ASN = 65099
	if err := s.SetPeers(ctx, []route.Peer{routerPeer(one, r1.Port, 16), dup, routerPeer(two, r2.Port, 16)}); err == nil {
		t.Error("SetPeers took two peers with one address without an error")
	}
	// The other peer was added all the same.
	r2.WaitExactly(t, bgptest.IPv4, "192.0.2.1/32 via 192.168.100.11 id=1")
	if after := r1.Session(t); after != before {
		t.Errorf("the session changed: before %+v, after %+v", before, after)
	}
	if got := r1.Received(t, bgptest.IPv4); !slices.Equal(got, []string{"192.0.2.1/32 via 192.168.100.11 id=1"}) {
		t.Errorf("the router has %v", got)
	}
	st, err := s.PeerStates(ctx)
	must(t, err)
	if len(st) != 2 || st[0].Address != one || !st[0].Established() {
		t.Errorf("peer states %+v", st)
	}
}
