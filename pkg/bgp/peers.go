package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	api "github.com/osrg/gobgp/v4/api"

	"github.com/eiplb/eiplb/pkg/bgp/route"
)

// SetPeers makes peers the complete set of sessions. A peer whose settings
// changed is re-created (its session restarts); the others are untouched.
// There is one session per address: of several peers with one address the
// first counts, and the others are an error.
func (s *Speaker) SetPeers(ctx context.Context, peers []route.Peer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	want := make(map[netip.Addr]route.Peer, len(peers))
	for _, p := range peers {
		if _, dup := want[p.Address]; dup {
			errs = append(errs, fmt.Errorf("peer %s: another peer has that address", p))
			continue
		}
		want[p.Address] = p
	}
	for addr, old := range s.peers {
		if p, ok := want[addr]; ok && peerEqual(p, old) {
			continue
		}
		if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: addr.String()}); err != nil {
			errs = append(errs, fmt.Errorf("removing peer %s: %w", old, err))
			continue
		}
		delete(s.peers, addr)
		delete(s.bfdOn, addr)
		s.log.Info("Removed BGP peer", "peer", addr)
	}
	// The filters of removed peers, and of earlier removals that failed.
	if err := s.removeStaleFilters(ctx); err != nil {
		errs = append(errs, err)
	}
	for addr, p := range want {
		if _, ok := s.peers[addr]; ok {
			continue
		}
		if _, stale := s.filters[addr]; stale {
			errs = append(errs, fmt.Errorf("peer %s: the export filter of the previous peer at that address is not removed yet", p))
			continue
		}
		if err := s.addFilter(ctx, addr); err != nil {
			errs = append(errs, err, s.removeFilter(ctx, addr))
			continue
		}
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: toAPIPeer(p, false)}); err != nil {
			errs = append(errs, fmt.Errorf("adding peer %s: %w", p, err), s.removeFilter(ctx, addr))
			continue
		}
		s.peers[addr] = p
		s.log.Info("Added BGP peer", "peer", addr, "asn", p.ASN, "localASN", p.LocalASN, "bfd", p.BFD != nil, "md5", p.Password != "")
	}
	return errors.Join(errs...)
}

// GracefulRestart reports whether any peer has graceful restart enabled.
func (s *Speaker) GracefulRestart() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.peers {
		if p.GracefulRestart {
			return true
		}
	}
	return false
}

func peerEqual(a, b route.Peer) bool {
	if (a.BFD == nil) != (b.BFD == nil) || (a.BFD != nil && *a.BFD != *b.BFD) {
		return false
	}
	a.BFD, b.BFD = nil, nil
	return a == b
}

// toAPIPeer is p for GoBGP, with BFD (if p has it) only when bfd is set.
func toAPIPeer(p route.Peer, bfd bool) *api.Peer {
	out := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: p.Address.String(),
			PeerAsn:         p.ASN,
			LocalAsn:        p.LocalASN,
			AuthPassword:    p.Password,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:          uint64(p.HoldTime / time.Second),
			KeepaliveInterval: uint64(p.KeepaliveTime / time.Second),
			ConnectRetry:      uint64(p.ConnectTime / time.Second),
			// After a reset (BFD down included) GoBGP waits this long before
			// reconnecting; its default of 30 s would keep a recovered
			// router without our routes for half a minute.
			IdleHoldTimeAfterReset: 1,
		}},
		Transport: &api.Transport{RemotePort: uint32(p.Port)},
	}
	if p.LocalAddress.IsValid() {
		out.Transport.LocalAddress = p.LocalAddress.String()
	}
	if p.EBGPMultihop > 0 {
		out.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(p.EBGPMultihop)}
	}
	if p.GracefulRestart {
		// A new speaker is a restarting one (RFC 4724): its OPEN sets the
		// restart bit and, per family, the forwarding-state bit (the nodes
		// forward without us), so the router keeps our stale paths until
		// End-of-RIB instead of dropping them when the session comes up;
		// GoBGP sends its table and End-of-RIB once the router's End-of-RIB
		// came, or after deferralTime. UpdatePeer ignores both.
		out.GracefulRestart = &api.GracefulRestart{Enabled: true, RestartTime: uint32(p.RestartTime / time.Second),
			LocalRestarting: true, DeferralTime: uint32(deferralTime / time.Second)}
	}
	if p.BFD != nil && bfd {
		out.Bfd = &api.BfdPeerConfig{
			Enabled:                  true,
			DesiredMinimumTxInterval: uint32(p.BFD.MinTx / time.Microsecond),
			RequiredMinimumReceive:   uint32(p.BFD.MinRx / time.Microsecond),
			DetectionMultiplier:      uint32(p.BFD.Multiplier),
		}
	}
	family := func(afi api.Family_Afi) *api.AfiSafi {
		a := &api.AfiSafi{Config: &api.AfiSafiConfig{Family: &api.Family{Afi: afi, Safi: api.Family_SAFI_UNICAST}, Enabled: true}}
		if p.AddPathSendMax > 1 {
			a.AddPaths = &api.AddPaths{Config: &api.AddPathsConfig{SendMax: uint32(p.AddPathSendMax)}}
		}
		if p.GracefulRestart {
			a.MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
		}
		return a
	}
	if p.IPv4 {
		out.AfiSafis = append(out.AfiSafis, family(api.Family_AFI_IP))
	}
	if p.IPv6 {
		out.AfiSafis = append(out.AfiSafis, family(api.Family_AFI_IP6))
	}
	return out
}

// PeerStates reports every session, by address. PrefixesSent is counted
// from the speaker's own table: for each family the session negotiated,
// every path not kept from the peer by a restriction if the session
// negotiated ADD-PATH (send), one per prefix otherwise. That is the count
// GoBGP gives, but GoBGP takes it by running every path through the export
// policies inside its main loop, which meanwhile takes no path change:
// about half a second at 10,000 Services, which delayed announcements.
func (s *Speaker) PeerStates(ctx context.Context) ([]route.PeerState, error) {
	var out []route.PeerState
	neg := map[netip.Addr]negotiated{}
	err := s.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		st := route.PeerState{State: "Unknown"}
		if p.Conf != nil {
			st.Address, _ = netip.ParseAddr(p.Conf.NeighborAddress)
		}
		if p.State != nil {
			st.State = sessionState(p.State.SessionState)
			if p.State.DisconnectMessage != "" {
				st.LastError = p.State.DisconnectMessage
			}
			if b := p.State.BfdState; b != nil {
				st.BFDState = bfdState(b.SessionState)
			}
			neg[st.Address] = negotiation(p.State.LocalCap, p.State.RemoteCap)
		}
		if p.Timers != nil && p.Timers.State != nil {
			if st.Established() && p.Timers.State.Uptime != nil {
				st.Since = p.Timers.State.Uptime.AsTime()
			} else if p.Timers.State.Downtime != nil {
				st.Since = p.Timers.State.Downtime.AsTime()
			}
		}
		out = append(out, st)
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range out {
		st := &out[i]
		p, ok := s.peers[st.Address]
		if !ok {
			continue
		}
		if p.BFD != nil && st.BFDState == "" {
			st.BFDState = "Down" // configured, not running (see followSession)
		}
		if st.Established() {
			st.PrefixesSent = s.sentTo(p, neg[st.Address])
		}
	}
	slices.SortFunc(out, func(a, b route.PeerState) int { return a.Address.Compare(b.Address) })
	return out, nil
}

// negotiated is what a session agreed on, per family (index: isV6).
type negotiated struct {
	family, addPathSend [2]bool
}

func negotiation(local, remote []*api.Capability) negotiated {
	type caps struct{ mp, send, receive [2]bool }
	read := func(cs []*api.Capability) (c caps) {
		anyMP := false
		for _, cp := range cs {
			if mp := cp.GetMultiProtocol(); mp != nil {
				anyMP = true
				if i, ok := unicastFamily(mp.GetFamily()); ok {
					c.mp[i] = true
				}
			}
			for _, t := range cp.GetAddPath().GetTuples() {
				if i, ok := unicastFamily(t.GetFamily()); ok {
					m := t.GetMode()
					c.send[i] = c.send[i] || m == api.AddPathCapabilityTuple_MODE_SEND || m == api.AddPathCapabilityTuple_MODE_BOTH
					c.receive[i] = c.receive[i] || m == api.AddPathCapabilityTuple_MODE_RECEIVE || m == api.AddPathCapabilityTuple_MODE_BOTH
				}
			}
		}
		// A speaker without multiprotocol capabilities speaks IPv4
		// unicast (RFC 4760).
		c.mp[0] = c.mp[0] || !anyMP
		return c
	}
	l, r := read(local), read(remote)
	var n negotiated
	for i := range 2 {
		n.family[i] = l.mp[i] && r.mp[i]
		n.addPathSend[i] = n.family[i] && l.send[i] && r.receive[i]
	}
	return n
}

func unicastFamily(f *api.Family) (int, bool) {
	if f.GetSafi() != api.Family_SAFI_UNICAST {
		return 0, false
	}
	switch f.GetAfi() {
	case api.Family_AFI_IP:
		return 0, true
	case api.Family_AFI_IP6:
		return 1, true
	}
	return 0, false
}

// sentTo counts the paths the table sends to p (see PeerStates). Called
// with s.mu held. s.ids has each prefix's paths in s.sent.
func (s *Speaker) sentTo(p route.Peer, n negotiated) uint64 {
	var denied map[netip.Prefix]bool
	if f := s.filters[p.Address]; f != nil {
		denied = f.denied
	}
	var count uint64
	for prefix, ids := range s.ids {
		fam := 0
		if prefix.Addr().Is6() {
			fam = 1
		}
		switch {
		case !n.family[fam] || denied[prefix]:
		case n.addPathSend[fam]:
			count += uint64(len(ids))
		default:
			count++
		}
	}
	return count
}

func sessionState(s api.PeerState_SessionState) string {
	name := strings.TrimPrefix(s.String(), "SESSION_STATE_")
	switch name {
	case "OPENSENT":
		return "OpenSent"
	case "OPENCONFIRM":
		return "OpenConfirm"
	case "UNSPECIFIED":
		return "Unknown"
	}
	return strings.ToUpper(name[:1]) + strings.ToLower(name[1:])
}

func bfdState(s api.BfdSessionState) string {
	switch s {
	case api.BfdSessionState_BFD_SESSION_STATE_UP:
		return "Up"
	case api.BfdSessionState_BFD_SESSION_STATE_DOWN:
		return "Down"
	case api.BfdSessionState_BFD_SESSION_STATE_INIT:
		return "Init"
	case api.BfdSessionState_BFD_SESSION_STATE_ADMIN_DOWN:
		return "AdminDown"
	}
	return ""
}
