package bgp

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v4/api"
)

// A workaround for osrg/gobgp#3561 (GoBGP v4.6.0 to v4.8.0; fixed in
// v4.9.0, which the module proxy here does not serve yet: drop this file
// and the handler in New once we move to v4.9.0).
//
// GoBGP's BFD resets a session with a hard ResetPeer when its detection
// time runs out or the router signals Down. The reset is a NOTIFICATION
// put in a per-peer queue that only an established session reads, and the
// queue outlives the session. A reset that comes while the session is
// already down (the router closed it first, on its own BFD Down; or BFD
// expired in the moment between the session going down and followSession
// stopping it) waits there, and the next session sends it the moment it is
// established: one more reset (with GoBGP's BFD running all the time, not
// following the session, and a router that deletes its BFD session with
// the BGP one, as FRR does with `bgp listen range`, a loop).
//
// Nothing else in the speaker resets a session hard, so every hard reset
// comes from BFD. GoBGP logs each one ("Send operation notification", Op
// "Neighbor reset") from its main loop while queueing it; renewPeer then
// replaces the GoBGP peer (delete and add, same settings), which drops the
// queue with the old peer. GoBGP runs management calls one at a time, so
// the delete comes after the reset is queued, never before. When the reset
// came while the session was established, the session is going down
// anyway; the new peer connects at once instead of a second later.

// resetWatch passes every record to next and tells onReset the neighbor
// address of every hard reset GoBGP queues. onReset must not block: it is
// called from GoBGP's main loop.
type resetWatch struct {
	next    slog.Handler
	onReset func(addr string)
}

func (h *resetWatch) Enabled(ctx context.Context, l slog.Level) bool {
	// Resets are logged at Info; see them even when next drops Info.
	return l >= slog.LevelInfo || h.next.Enabled(ctx, l)
}

func (h *resetWatch) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "Send operation notification" {
		var op, key string
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "Op":
				op = a.Value.String()
			case "Key":
				key = a.Value.String()
			}
			return true
		})
		if op == "Neighbor reset" && key != "" {
			h.onReset(key)
		}
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *resetWatch) WithAttrs(as []slog.Attr) slog.Handler {
	return &resetWatch{next: h.next.WithAttrs(as), onReset: h.onReset}
}

func (h *resetWatch) WithGroup(name string) slog.Handler {
	return &resetWatch{next: h.next.WithGroup(name), onReset: h.onReset}
}

// renewPeer replaces the GoBGP peer at addr by a new one with the same
// settings and BFD off (followSession starts it once the new session is
// up), dropping any reset queued for the next session (see above).
func (s *Speaker) renewPeer(key string) {
	addr, err := netip.ParseAddr(key)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.peers[addr]
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: addr.String()}); err != nil {
		s.log.Error(err, "Renewing the peer after a BFD reset failed; a stale reset may close its next session", "peer", addr)
		return
	}
	delete(s.bfdOn, addr)
	if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: toAPIPeer(p, false)}); err != nil {
		// Gone: the next SetPeers adds it again, with its filter.
		delete(s.peers, addr)
		if ferr := s.removeFilter(ctx, addr); ferr != nil {
			s.log.Error(ferr, "Removing the peer's filter after a failed re-add failed", "peer", addr)
		}
		s.log.Error(err, "Adding the peer again after a BFD reset failed", "peer", addr)
		return
	}
	s.log.Info("Renewed the peer after a BFD reset, so the next session can't inherit it (osrg/gobgp#3561)", "peer", addr)
}
