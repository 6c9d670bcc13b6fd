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
)

// Paths restricted to some peers (Path.Peers) are kept from the others by
// one export policy per peer, assigned globally (GoBGP has per-peer policies
// only for route-server clients): "if the prefix is in this peer's deny set
// and the neighbor is this peer, reject". The deny sets are kept in step with
// the paths; a peer whose set changed for a prefix it was already sent gets
// a soft reset (out) so the change reaches it.

type peerFilter struct {
	idx    int
	denied map[netip.Prefix]bool
}

func filterNames(idx int) (neighbors, v4, v6, policy string) {
	n := fmt.Sprintf("eiplb-peer-%d", idx)
	return n, n + "-deny-v4", n + "-deny-v6", n
}

func prefixSet(name string, prefixes ...netip.Prefix) *api.DefinedSet {
	ds := &api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_PREFIX, Name: name}
	for _, p := range prefixes {
		ds.Prefixes = append(ds.Prefixes, &api.Prefix{IpPrefix: p.String(), MaskLengthMin: uint32(p.Bits()), MaskLengthMax: uint32(p.Bits())})
	}
	return ds
}

// addFilter creates a peer's (empty) deny sets and policy; call before the
// peer is added.
func (s *Speaker) addFilter(ctx context.Context, addr netip.Addr) error {
	s.filterSeq++
	f := &peerFilter{idx: s.filterSeq, denied: map[netip.Prefix]bool{}}
	// Registered first, so removeFilter can undo a setup that fails half way.
	s.filters[addr] = f
	nb, v4, v6, pol := filterNames(f.idx)
	bits := 32
	if addr.Is6() {
		bits = 128
	}
	steps := []func() error{
		func() error {
			return s.srv.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: &api.DefinedSet{
				DefinedType: api.DefinedType_DEFINED_TYPE_NEIGHBOR, Name: nb, List: []string{netip.PrefixFrom(addr, bits).String()}}})
		},
		func() error { return s.srv.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: prefixSet(v4)}) },
		func() error { return s.srv.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: prefixSet(v6)}) },
		func() error {
			st := func(set string) *api.Statement {
				return &api.Statement{Name: set, Conditions: &api.Conditions{
					PrefixSet:   &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: set},
					NeighborSet: &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: nb},
				}, Actions: &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_REJECT}}
			}
			return s.srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.Policy{Name: pol, Statements: []*api.Statement{st(v4), st(v6)}}})
		},
		func() error {
			return s.srv.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
				Name: "global", Direction: api.PolicyDirection_POLICY_DIRECTION_EXPORT,
				Policies: []*api.Policy{{Name: pol}}, DefaultAction: api.RouteAction_ROUTE_ACTION_ACCEPT}})
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return fmt.Errorf("export filter for %s: %w", addr, err)
		}
	}
	// Deny what is already restricted away from this peer.
	_, err := s.syncFilter(ctx, addr, f, s.restricted)
	return err
}

// removeFilter drops a peer's policy and sets; call after the peer is gone.
// What doesn't exist (addFilter failed before creating it) is no error. The
// filter is forgotten only once all of it is gone: otherwise SetPeers
// retries (removeStaleFilters), and a peer at the address is not added
// again while its old policy, which may reject prefixes for it, is there.
func (s *Speaker) removeFilter(ctx context.Context, addr netip.Addr) error {
	f, ok := s.filters[addr]
	if !ok {
		return nil
	}
	nb, v4, v6, pol := filterNames(f.idx)
	var errs []error
	step := func(what string, err error) {
		if err != nil && !notFound(err) {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
	}
	step("policy assignment", s.srv.DeletePolicyAssignment(ctx, &api.DeletePolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name: "global", Direction: api.PolicyDirection_POLICY_DIRECTION_EXPORT, Policies: []*api.Policy{{Name: pol}}}}))
	step("policy "+pol, s.srv.DeletePolicy(ctx, &api.DeletePolicyRequest{Policy: &api.Policy{Name: pol}, PreserveStatements: false, All: true}))
	for _, name := range []string{v4, v6} {
		step("prefix set "+name, s.srv.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{DefinedSet: prefixSet(name), All: true}))
	}
	step("neighbor set "+nb, s.srv.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{DefinedSet: &api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_NEIGHBOR, Name: nb}, All: true}))
	if len(errs) > 0 {
		return fmt.Errorf("removing the export filter of %s: %w", addr, errors.Join(errs...))
	}
	delete(s.filters, addr)
	return nil
}

// removeStaleFilters retries removing the filters of peers that are gone.
func (s *Speaker) removeStaleFilters(ctx context.Context) error {
	var errs []error
	for addr := range s.filters {
		if _, ok := s.peers[addr]; !ok {
			errs = append(errs, s.removeFilter(ctx, addr))
		}
	}
	return errors.Join(errs...)
}

// notFound: GoBGP's error for deleting a policy, assignment or set that
// does not exist (its errors have no type; the text is all there is).
func notFound(err error) bool { return strings.Contains(err.Error(), "not found") }

// allowed returns the peers a prefix may go to (nil: all), from what the
// owners want now. It looks only at the prefix's own paths.
func (s *Speaker) allowed(prefix netip.Prefix) (peers []netip.Addr, restricted bool) {
	seen := map[netip.Addr]bool{}
	found := false
	for nh := range s.hops[prefix] {
		for owner := range s.contrib[pathKey{prefix, nh}] {
			for _, p := range s.owners[owner] {
				if p.Prefix.Masked() != prefix {
					continue
				}
				found = true
				if p.Peers == nil {
					return nil, false
				}
				for _, a := range p.Peers {
					seen[a] = true
				}
			}
		}
	}
	if !found {
		return nil, false
	}
	peers = make([]netip.Addr, 0, len(seen)) // non-nil: restricted, maybe to none
	for a := range seen {
		peers = append(peers, a)
	}
	slices.SortFunc(peers, netip.Addr.Compare)
	return peers, true
}

// updateFilters recomputes the restrictions of prefixes and brings every
// peer's deny set in line; it returns the peers that must be refreshed
// because a prefix they were already sent changed membership.
func (s *Speaker) updateFilters(prefixes map[netip.Prefix]bool) ([]netip.Addr, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	changes := map[netip.Prefix][]netip.Addr{}
	for prefix := range prefixes {
		peers, restricted := s.allowed(prefix)
		_, was := s.restricted[prefix]
		if !restricted && !was {
			continue
		}
		if restricted {
			s.restricted[prefix] = peers
		} else {
			delete(s.restricted, prefix)
		}
		changes[prefix] = peers // nil: allowed everywhere again
	}
	if len(changes) == 0 {
		return nil, nil
	}
	var refresh []netip.Addr
	for addr, f := range s.filters {
		changed, err := s.syncFilter(ctx, addr, f, changes)
		if err != nil {
			return refresh, err
		}
		for _, prefix := range changed {
			if s.isSent(prefix) {
				refresh = append(refresh, addr)
				break
			}
		}
	}
	return refresh, nil
}

func (s *Speaker) isSent(prefix netip.Prefix) bool {
	for nh := range s.hops[prefix] {
		if _, ok := s.sent[pathKey{prefix, nh}]; ok {
			return true
		}
	}
	return false
}

// refresh re-sends a peer's routes through the (changed) export policy.
func (s *Speaker) refresh(peers []netip.Addr) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, addr := range peers {
		if err := s.srv.ResetPeer(ctx, &api.ResetPeerRequest{Address: addr.String(), Soft: true, Direction: api.ResetPeerRequest_DIRECTION_OUT}); err != nil {
			return fmt.Errorf("refreshing %s: %w", addr, err)
		}
	}
	return nil
}

// syncFilter brings one peer's deny set in line for the given prefixes
// (restricted ones map to their allowed peers; others are not denied). It
// returns the prefixes whose membership changed.
func (s *Speaker) syncFilter(ctx context.Context, addr netip.Addr, f *peerFilter, prefixes map[netip.Prefix][]netip.Addr) ([]netip.Prefix, error) {
	_, v4, v6, _ := filterNames(f.idx)
	var changed []netip.Prefix
	for prefix, allowedPeers := range prefixes {
		deny := allowedPeers != nil && !slices.Contains(allowedPeers, addr)
		if deny == f.denied[prefix] {
			continue
		}
		set := v4
		if prefix.Addr().Is6() {
			set = v6
		}
		var err error
		if deny {
			err = s.srv.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: prefixSet(set, prefix)})
		} else {
			err = s.srv.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{DefinedSet: prefixSet(set, prefix)})
		}
		if err != nil {
			return changed, fmt.Errorf("export filter of %s for %s: %w", addr, prefix, err)
		}
		if deny {
			f.denied[prefix] = true
		} else {
			delete(f.denied, prefix)
		}
		changed = append(changed, prefix)
	}
	return changed, nil
}
