package bgp

import (
	"context"
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v4/api"
)

// followSession runs a peer's BFD only while its BGP session is
// established: it starts BFD when the session comes up and stops it when
// the session goes down, on every reset as on the first start.
//
// A router keys its BFD session by its local address and interface, which
// it learns only when BGP comes up: FRR registers a session for the
// neighbour when bgpd starts (or the neighbour is configured) and replaces
// it by a new one once BGP is established. A GoBGP BFD session that is
// already running meets the first one; when the router replaces it, BFD
// goes down, which resets the BGP session (the router's side on its own
// BFD down, ours when told Down), and GoBGP, bound to the first session's
// discriminator, ignores the new one until its detection time runs out and
// resets BGP once more. That is what a manager start did before BFD waited
// for the session, and what every restart of the router's bgpd did while
// BFD stayed on through resets (its bfdd drops the sessions of a bgpd that
// stops): two extra resets per session, the routes back after ~12 s instead
// of ~6 s. Started after BGP is up (GoBGP's BFD peer sends its first packet
// a second later), BFD meets the router's final session, with a new
// discriminator each time.
//
// The price: after a failure that BFD detected, the router no longer sees
// BFD come back before BGP does, so it can't use that to reconnect early;
// the session comes back on the BGP connect timers (connectTime, 5 s by
// default).
func (s *Speaker) followSession(addr netip.Addr, established bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.peers[addr]
	if !ok || p.BFD == nil || s.bfdOn[addr] == established {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Same neighbour configuration but BFD: GoBGP adds or removes its BFD
	// peer without touching the session.
	if _, err := s.srv.UpdatePeer(ctx, &api.UpdatePeerRequest{Peer: toAPIPeer(p, established)}); err != nil {
		// The session's next state change tries again.
		s.log.Error(err, "Switching BFD failed", "peer", addr, "on", established)
		return
	}
	s.bfdOn[addr] = established
	s.log.V(1).Info("Switched BFD", "peer", addr, "on", established)
}
