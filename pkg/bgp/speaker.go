package bgp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"
	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"

	"github.com/eiplb/eiplb/pkg/bgp/route"
)

// Config of a speaker.
type Config struct {
	// RouterID is the BGP identifier (an IPv4 address, usually the node's).
	RouterID netip.Addr
	// ASN is the default local AS; each Peer may override it.
	ASN uint32
	// ListenPort for incoming sessions; -1 (or 0) dials out only.
	ListenPort int32
	// ListenAddresses restrict the listener.
	ListenAddresses []string
	Logger          logr.Logger
}

// Speaker is an embedded GoBGP server. It is safe for concurrent use.
type Speaker struct {
	srv *server.BgpServer
	log logr.Logger

	mu      sync.Mutex
	peers   map[netip.Addr]route.Peer
	owners  map[string][]route.Path                         // owner → its desired paths
	contrib map[pathKey]map[string]route.Attributes         // key → owner → attributes
	hops    map[netip.Prefix]map[netip.Addr]struct{}        // prefix → next hops in contrib
	sent    map[pathKey]*sentPath                           // what GoBGP holds
	ids     map[netip.Prefix]map[uint32]struct{}            // ADD-PATH ids in use per prefix
	hook    func(added, withdrawn, total int, at time.Time) // test and metrics hook

	filters    map[netip.Addr]*peerFilter    // export filter per peer
	filterSeq  int                           // names filters uniquely
	restricted map[netip.Prefix][]netip.Addr // prefix → the only peers it may go to

	bfdOn     map[netip.Addr]bool // peers whose BFD runs (see followSession)
	renewing  sync.WaitGroup      // renewPeer calls under way (stalereset.go)
	stopWatch context.CancelFunc
}

type pathKey struct {
	prefix  netip.Prefix
	nextHop netip.Addr
}

type sentPath struct {
	id    uint32
	uuid  uuid.UUID
	attrs route.Attributes
}

// New starts a speaker. Stop it with Stop.
func New(ctx context.Context, cfg Config) (*Speaker, error) {
	if !cfg.RouterID.Is4() {
		return nil, fmt.Errorf("router ID %v must be an IPv4 address", cfg.RouterID)
	}
	if cfg.ASN == 0 {
		cfg.ASN = 64512
	}
	if cfg.ListenPort == 0 {
		cfg.ListenPort = -1
	}
	var onReset func(addr string) // set below, before any peer exists, so before any reset
	logger := slog.New(&resetWatch{next: logr.ToSlogHandler(cfg.Logger.WithName("gobgp")), onReset: func(addr string) { onReset(addr) }})
	level := &slog.LevelVar{}
	level.Set(slog.LevelInfo)
	srv := server.NewBgpServer(server.LoggerOption(logger, level))
	go srv.Serve()
	err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn:             cfg.ASN,
		RouterId:        cfg.RouterID.String(),
		ListenPort:      cfg.ListenPort,
		ListenAddresses: cfg.ListenAddresses,
	}})
	if err != nil {
		srv.Stop()
		return nil, fmt.Errorf("starting BGP: %w", err)
	}
	s := &Speaker{
		srv: srv, log: cfg.Logger,
		peers:   map[netip.Addr]route.Peer{},
		bfdOn:   map[netip.Addr]bool{},
		owners:  map[string][]route.Path{},
		contrib: map[pathKey]map[string]route.Attributes{},
		hops:    map[netip.Prefix]map[netip.Addr]struct{}{},
		sent:    map[pathKey]*sentPath{},
		ids:     map[netip.Prefix]map[uint32]struct{}{},
		filters: map[netip.Addr]*peerFilter{}, restricted: map[netip.Prefix][]netip.Addr{},
	}
	onReset = func(addr string) {
		s.renewing.Add(1)
		go func() { defer s.renewing.Done(); s.renewPeer(addr) }()
	}
	watchCtx, stop := context.WithCancel(context.Background())
	s.stopWatch = stop
	err = srv.WatchEvent(watchCtx, server.WatchEventMessageCallbacks{
		OnPeerUpdate: func(e *apiutil.WatchEventMessage_PeerEvent, _ time.Time) {
			if e.Type == apiutil.PEER_EVENT_STATE {
				up := e.Peer.State.SessionState == bgp.BGP_FSM_ESTABLISHED
				s.followSession(e.Peer.State.NeighborAddress, up)
				if up {
					go s.sweepStale(watchCtx, e.Peer.State.NeighborAddress, e.Peer.State.RemoteCap)
				}
			}
		},
	}, server.WatchPeer())
	if err != nil {
		stop()
		srv.Stop()
		return nil, fmt.Errorf("watching sessions: %w", err)
	}
	return s, nil
}

// Stop ends every session (with a Cease notification) and the server.
func (s *Speaker) Stop(ctx context.Context) {
	// Peers are removed one by one first: StopBgp alone leaves a goroutine of
	// each session's outgoing queue behind in GoBGP v4.8.
	s.stopWatch()
	_ = s.SetPeers(ctx, nil)
	_ = s.srv.StopBgp(ctx, &api.StopBgpRequest{})
	s.srv.Stop()
	s.renewing.Wait()
}

// OnUpdate sets a function told, after each change handed to GoBGP, how many
// paths were added or replaced and withdrawn, and how many are announced. It
// runs under the speaker's lock: it must not call the speaker.
func (s *Speaker) OnUpdate(fn func(added, withdrawn, total int, at time.Time)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hook = fn
}

// SetPaths makes paths the complete set of paths of owner. Paths of several
// owners for the same prefix and next hop are announced once, with their
// attributes merged (communities united, link bandwidth summed, the highest
// local preference). Only the difference from what is announced is sent;
// changed attributes replace a path in place, without a withdrawal.
func (s *Speaker) SetPaths(owner string, paths []route.Path) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	affected := map[pathKey]struct{}{}
	for _, p := range s.owners[owner] {
		k := pathKey{p.Prefix.Masked(), p.NextHop}
		affected[k] = struct{}{}
		delete(s.contrib[k], owner)
	}
	if len(paths) == 0 {
		delete(s.owners, owner)
	} else {
		s.owners[owner] = slices.Clone(paths)
	}
	for _, p := range paths {
		k := pathKey{p.Prefix.Masked(), p.NextHop}
		affected[k] = struct{}{}
		if s.contrib[k] == nil {
			s.contrib[k] = map[string]route.Attributes{}
			if s.hops[k.prefix] == nil {
				s.hops[k.prefix] = map[netip.Addr]struct{}{}
			}
			s.hops[k.prefix][k.nextHop] = struct{}{}
		}
		if old, dup := s.contrib[k][owner]; dup {
			s.contrib[k][owner] = merge([]route.Attributes{old, p.Attrs})
		} else {
			s.contrib[k][owner] = p.Attrs
		}
	}
	keys := make([]pathKey, 0, len(affected))
	prefixes := map[netip.Prefix]bool{}
	for k := range affected {
		keys = append(keys, k)
		prefixes[k.prefix] = true
	}
	slices.SortFunc(keys, func(a, b pathKey) int {
		return cmp.Or(a.prefix.Addr().Compare(b.prefix.Addr()), cmp.Compare(a.prefix.Bits(), b.prefix.Bits()), a.nextHop.Compare(b.nextHop))
	})
	// Filters first, so a new restricted prefix never reaches a peer it is
	// kept from; peers that already had it are refreshed after.
	refresh, ferr := s.updateFilters(prefixes)
	err := s.apply(keys)
	if ferr == nil {
		ferr = s.refresh(refresh)
	}
	return errors.Join(err, ferr)
}

// apply brings GoBGP in line with contrib for the given keys. s.sent
// records a path only once GoBGP holds it, so a retry after any failure
// sends what is still missing; a path that can't be encoded is reported and
// skipped, never keeping the others (withdrawals included) from being sent.
func (s *Speaker) apply(keys []pathKey) error {
	var errs []error
	var add []*apiutil.Path
	var adds []sentPath // what add[i] will be once GoBGP holds it
	var addKeys []pathKey
	var del []uuid.UUID
	var delKeys []pathKey
	for _, k := range keys {
		owners := s.contrib[k]
		cur := s.sent[k]
		if len(owners) == 0 {
			delete(s.contrib, k)
			delete(s.hops[k.prefix], k.nextHop)
			if len(s.hops[k.prefix]) == 0 {
				delete(s.hops, k.prefix)
			}
			if cur != nil {
				del = append(del, cur.uuid)
				delKeys = append(delKeys, k)
			}
			continue
		}
		attrs := mergeOwners(owners)
		if cur != nil && cur.attrs.Equal(attrs) {
			continue
		}
		id := uint32(0)
		if cur != nil {
			id = cur.id
		} else {
			id = s.allocID(k.prefix)
		}
		p, err := toGoBGP(k, id, attrs)
		if err != nil {
			if cur == nil {
				s.releaseID(k.prefix, id)
			}
			errs = append(errs, err)
			continue
		}
		add = append(add, p)
		adds = append(adds, sentPath{id: id, attrs: attrs})
		addKeys = append(addKeys, k)
	}
	if len(del) > 0 {
		if err := s.srv.DeletePath(apiutil.DeletePathRequest{UUIDs: del}); err != nil {
			errs = append(errs, fmt.Errorf("withdrawing %d paths: %w", len(del), err))
		} else {
			for _, k := range delKeys {
				s.releaseID(k.prefix, s.sent[k].id)
				delete(s.sent, k)
			}
		}
	}
	if len(add) > 0 {
		resps, err := s.srv.AddPath(apiutil.AddPathRequest{Paths: add})
		if err != nil {
			errs = append(errs, fmt.Errorf("announcing %d paths: %w", len(add), err))
		}
		for i, k := range addKeys {
			if i < len(resps) && resps[i].Error == nil {
				sent := adds[i]
				sent.uuid = resps[i].UUID
				s.sent[k] = &sent
				continue
			}
			if i < len(resps) && err == nil {
				errs = append(errs, fmt.Errorf("announcing %s via %s: %w", k.prefix, k.nextHop, resps[i].Error))
			}
			// Not held by GoBGP: a new path's id is free again; a changed
			// one stays recorded with the attributes GoBGP still holds, so
			// a retry sends it again.
			if s.sent[k] == nil {
				s.releaseID(k.prefix, adds[i].id)
			}
		}
	}
	if s.hook != nil && (len(add) > 0 || len(del) > 0) {
		s.hook(len(add), len(del), len(s.sent), time.Now())
	}
	return errors.Join(errs...)
}

// allocID returns the lowest ADD-PATH identifier unused for a prefix (from
// 1), so paths are distinct and ids stay small and stable.
func (s *Speaker) allocID(p netip.Prefix) uint32 {
	used := s.ids[p]
	if used == nil {
		used = map[uint32]struct{}{}
		s.ids[p] = used
	}
	for id := uint32(1); ; id++ {
		if _, ok := used[id]; !ok {
			used[id] = struct{}{}
			return id
		}
	}
}

func (s *Speaker) releaseID(p netip.Prefix, id uint32) {
	delete(s.ids[p], id)
	if len(s.ids[p]) == 0 {
		delete(s.ids, p)
	}
}

func mergeOwners(m map[string]route.Attributes) route.Attributes {
	all := make([]route.Attributes, 0, len(m))
	for _, a := range m {
		all = append(all, a)
	}
	return merge(all)
}

func merge(all []route.Attributes) route.Attributes {
	if len(all) == 1 {
		return all[0]
	}
	var out route.Attributes
	for _, a := range all {
		out.Communities = append(out.Communities, a.Communities...)
		out.LargeCommunities = append(out.LargeCommunities, a.LargeCommunities...)
		out.LocalPref = max(out.LocalPref, a.LocalPref)
		out.LinkBandwidth += a.LinkBandwidth
	}
	slices.Sort(out.Communities)
	out.Communities = slices.Compact(out.Communities)
	slices.SortFunc(out.LargeCommunities, func(a, b route.LargeCommunity) int {
		return cmp.Or(cmp.Compare(a.Global, b.Global), cmp.Compare(a.Local1, b.Local1), cmp.Compare(a.Local2, b.Local2))
	})
	out.LargeCommunities = slices.Compact(out.LargeCommunities)
	return out
}

func toGoBGP(k pathKey, id uint32, a route.Attributes) (*apiutil.Path, error) {
	nlri, err := bgp.NewIPAddrPrefix(k.prefix)
	if err != nil {
		return nil, fmt.Errorf("prefix %s: %w", k.prefix, err)
	}
	nh, err := bgp.NewPathAttributeNextHop(k.nextHop)
	if err != nil {
		return nil, fmt.Errorf("next hop %s: %w", k.nextHop, err)
	}
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP), nh}
	if len(a.Communities) > 0 {
		attrs = append(attrs, bgp.NewPathAttributeCommunities(a.Communities))
	}
	if len(a.LargeCommunities) > 0 {
		lcs := make([]*bgp.LargeCommunity, 0, len(a.LargeCommunities))
		for _, l := range a.LargeCommunities {
			lcs = append(lcs, bgp.NewLargeCommunity(l.Global, l.Local1, l.Local2))
		}
		attrs = append(attrs, bgp.NewPathAttributeLargeCommunities(lcs))
	}
	if a.LocalPref > 0 {
		attrs = append(attrs, bgp.NewPathAttributeLocalPref(a.LocalPref))
	}
	if a.LinkBandwidth > 0 {
		// The AS field of the community is informational; AS_TRANS fits any
		// 4-byte ASN.
		attrs = append(attrs, bgp.NewPathAttributeExtendedCommunities([]bgp.ExtendedCommunityInterface{
			bgp.NewLinkBandwidthExtended(23456, a.LinkBandwidth),
		}))
	}
	family := bgp.RF_IPv4_UC
	if k.prefix.Addr().Is6() {
		family = bgp.RF_IPv6_UC
	}
	return &apiutil.Path{Family: family, Nlri: nlri, Attrs: attrs, RemoteID: id}, nil
}
