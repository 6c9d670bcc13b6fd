package bgp

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	api "github.com/osrg/gobgp/v4/api"

	"github.com/eiplb/eiplb/pkg/bgp/route"
)

// TestSpeakerFilterRemovalFailureReported: when GoBGP refuses to delete a
// removed peer's export filter, SetPeers says so, keeps the filter to retry,
// and does not add a peer at that address over the old filter; once GoBGP
// lets go, the next SetPeers removes it and the peer can come back. Before,
// removeFilter dropped GoBGP's four errors and forgot the filter, leaving its
// policy in GoBGP's global export policy for good.
func TestSpeakerFilterRemovalFailureReported(t *testing.T) {
	noLeaks(t)
	ctx := context.Background()
	s, err := New(ctx, Config{RouterID: netip.MustParseAddr("10.255.0.4"), ASN: 65001, Logger: logr.Discard()})
	must(t, err)
	defer s.Stop(ctx)
	// A peer that never answers: the test is about its filter, not its session.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	must(t, l.Close())
	addr := netip.MustParseAddr("127.0.0.1")
	peer := route.Peer{Address: addr, Port: uint16(port), ASN: 65000, LocalASN: 65001, ConnectTime: time.Minute, IPv4: true}
	must(t, s.SetPeers(ctx, []route.Peer{peer}))
	s.mu.Lock()
	nb, _, _, _ := filterNames(s.filters[addr].idx)
	s.mu.Unlock()

	// Something else uses the filter's neighbor set: GoBGP refuses to
	// delete it.
	hold := &api.Policy{Name: "hold", Statements: []*api.Statement{{Name: "hold",
		Conditions: &api.Conditions{NeighborSet: &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: nb}}}}}
	must(t, s.srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: hold}))
	if err := s.SetPeers(ctx, nil); err == nil || !strings.Contains(err.Error(), nb) {
		t.Fatalf("SetPeers removing the peer: %v, want the failed removal of neighbor set %s", err, nb)
	}
	if err := s.SetPeers(ctx, []route.Peer{peer}); err == nil {
		t.Fatal("SetPeers added the peer again over its old filter")
	}

	must(t, s.srv.DeletePolicy(ctx, &api.DeletePolicyRequest{Policy: hold, All: true}))
	must(t, s.SetPeers(ctx, nil))
	if got := policies(ctx, t, s); len(got) != 0 {
		t.Fatalf("policies left after the retry: %v", got)
	}
	var sets []string
	must(t, s.srv.ListDefinedSet(ctx, &api.ListDefinedSetRequest{DefinedType: api.DefinedType_DEFINED_TYPE_PREFIX}, func(d *api.DefinedSet) { sets = append(sets, d.Name) }))
	must(t, s.srv.ListDefinedSet(ctx, &api.ListDefinedSetRequest{DefinedType: api.DefinedType_DEFINED_TYPE_NEIGHBOR}, func(d *api.DefinedSet) { sets = append(sets, d.Name) }))
	if len(sets) != 0 {
		t.Fatalf("defined sets left after the retry: %v", sets)
	}
	must(t, s.SetPeers(ctx, []route.Peer{peer}))
}

func policies(ctx context.Context, t *testing.T, s *Speaker) []string {
	t.Helper()
	var out []string
	must(t, s.srv.ListPolicy(ctx, &api.ListPolicyRequest{}, func(p *api.Policy) {
		if strings.HasPrefix(p.Name, "eiplb-peer-") {
			out = append(out, p.Name)
		}
	}))
	return out
}
