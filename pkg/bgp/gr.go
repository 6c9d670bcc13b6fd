package bgp

import (
	"context"
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// deferralTime bounds how long a new speaker waits for a router's
// End-of-RIB before it sends its own table (RFC 4724 selection deferral;
// GoBGP's default is 360 s). The routers send eiplb nothing, so there is
// nothing to wait for beyond their (empty) End-of-RIB.
const deferralTime = 3 * time.Second

// sweepInterval paces the extra End-of-RIB markers of sweepStale (FRR 8.4
// needs about its route-processing delay, tens of milliseconds, between
// two; a second leaves room on a loaded router).
const sweepInterval = time.Second

// sweepStale follows the End-of-RIB that ends the initial table of a
// session with graceful restart by as many more as a prefix has paths,
// less one (see docs/bgp.md, graceful restart).
//
// RFC 4724 has the router drop, on End-of-RIB, every path that the previous
// session left stale. FRR without its fix of November 2024 (FRR PR 17376,
// backported to the 9.1, 10.0 and 10.1 branches; 8.4, as in Debian 12, has
// the bug) removes only one stale path per prefix each time it sweeps: with ADD-PATH a prefix
// that the new session no longer announces (the address of a Service
// deleted while every manager was down) kept its other next hops until the
// stale-path timer (360 s), which again removes one. Each further
// End-of-RIB sweeps once more. GoBGP sends one with every soft reset out,
// which sends the table again too (the router ignores those duplicates):
// one pass over the table per extra End-of-RIB, when a session comes up,
// a second apart: a deleted Service's address with N next hops is gone N-1
// seconds after the initial table (FRR's own stale-path timer: 360 s).
//
// It gives up when ctx ends (the speaker stops).
func (s *Speaker) sweepStale(ctx context.Context, addr netip.Addr, remote []bgp.ParameterCapabilityInterface) {
	grRemote := false
	for _, c := range remote {
		if _, ok := c.(*bgp.CapGracefulRestart); ok {
			grRemote = true
		}
	}
	s.mu.Lock()
	p, ok := s.peers[addr]
	s.mu.Unlock()
	if !ok || !p.GracefulRestart || !grRemote {
		return
	}
	// GoBGP sends the initial table once the router's End-of-RIB came (or
	// after deferralTime): a soft reset before would go first.
	deadline := time.Now().Add(deferralTime + 10*time.Second)
	for s.localRestarting(ctx, addr) {
		if time.Now().After(deadline) {
			s.log.Info("Initial table not sent in time; stale paths left to the router", "peer", addr)
			return
		}
		if !wait(ctx, 50*time.Millisecond) {
			return
		}
	}
	s.mu.Lock()
	most := 0
	for _, ids := range s.ids {
		most = max(most, len(ids))
	}
	s.mu.Unlock()
	most = min(most, max(int(p.AddPathSendMax), 1))
	for range most - 1 {
		// The router sweeps on each End-of-RIB, but one that comes while
		// the paths the last sweep removed are still queued for its route
		// processing finds them first and removes nothing more: pace them.
		if !wait(ctx, sweepInterval) {
			return
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := s.srv.ResetPeer(rctx, &api.ResetPeerRequest{Address: addr.String(), Soft: true, Direction: api.ResetPeerRequest_DIRECTION_OUT})
		cancel()
		if err != nil {
			s.log.Error(err, "Sending End-of-RIB again failed", "peer", addr)
			return
		}
	}
	if most > 1 {
		s.log.V(1).Info("Sent End-of-RIB again", "peer", addr, "times", most-1)
	}
}

// localRestarting reports whether GoBGP still holds back the session's
// initial table.
func (s *Speaker) localRestarting(ctx context.Context, addr netip.Addr) bool {
	restarting := false
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_ = s.srv.ListPeer(ctx, &api.ListPeerRequest{Address: addr.String()}, func(p *api.Peer) {
		restarting = p.GetGracefulRestart().GetLocalRestarting()
	})
	return restarting
}

// wait waits for d, or until ctx ends (false).
func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
