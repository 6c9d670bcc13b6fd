package dataplane

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Table is the whole desired content of the node's eiplb table, kept up to
// date one Service at a time. Things several Services share (an EIP of a
// sharing key, an endpoint behind two Services) are reference counted, so a
// Service change touches only its own part: Set returns what to rewrite.
//
// The kernel layout it stands for (rendered by String, written by
// pkg/dataplane/nft). Services live only in set and map elements, never in
// chains: a Service change is a few element updates, and the kernel, which
// re-validates every chain reachable from the base chains when a rule with a
// jump, a lookup or a NAT is added, never has more than a handful of chains
// to walk, whatever the number of Services.
//   - set eips4/eips6: every EIP; traffic to one that no forward DNATs is
//     rejected (never routed back to the router);
//   - map count4/count6: EIP . protocol . port → number of endpoints N;
//   - chain spread4/spread6, jumped to for a packet to an EIP: one rule per
//     endpoint count N in use, "EIP . protocol . port in count4 with value
//     N → goto spread4/N" (a new connection costs at most as many lookups
//     as there are distinct endpoint counts, never more with more Services);
//   - chain spread4/N: EIP . protocol . port . (numgen random mod N) looked
//     up in map dnat4, dnat to the endpoint found (an even spread of new
//     connections; see docs/agent.md);
//   - map dnat4/dnat6: EIP . protocol . port . slot → endpoint address . port;
//   - set masq4/masq6: remote endpoints (Cluster): masqueraded after
//     DNAT, so replies come back through this node;
//   - set hairpin4/hairpin6: local endpoints: masqueraded when the client
//     is the endpoint itself (a pod reaching itself through its EIP);
//   - set fw4/fw6: EIP . protocol . port of the forwards restricted to
//     source ranges; a new connection to one whose EIP . protocol . port .
//     source is not in set allow4/allow6 (intervals: one element per
//     range) is dropped before DNAT, from outside, from pods and from the
//     node itself alike.
type Table struct {
	Mode     Mode
	EIPs     map[netip.Addr]int
	Masq     map[netip.Addr]int
	Hairpin  map[netip.Addr]int
	Forwards map[Key]Forward // only forwards with endpoints
	// Firewall: the restricted forwards (with endpoints or not) → the
	// source ranges they admit.
	Firewall map[Key][]netip.Prefix
	// Spreads counts the forwards per family and number of endpoints.
	Spreads map[Spread]int

	services map[string]Service
}

// NewTable returns an empty table.
func NewTable(mode Mode) *Table {
	return &Table{
		Mode: mode, EIPs: map[netip.Addr]int{}, Masq: map[netip.Addr]int{}, Hairpin: map[netip.Addr]int{},
		Forwards: map[Key]Forward{}, Firewall: map[Key][]netip.Prefix{}, Spreads: map[Spread]int{},
		services: map[string]Service{},
	}
}

// Touched names the parts of a table a change may have altered; the
// kernel layer compares exactly these with what it wrote before.
type Touched struct {
	EIPs, Masq, Hairpin []netip.Addr
	Forwards            []Key
	Firewall            []Key
	Spreads             []Spread
}

// Spread names the chain that spreads the forwards of one family with N
// endpoints (Internal: the internal forwards, see Key). Sticky spreads
// (sessionAffinity ClientIP) choose the endpoint by a hash of the client's
// address (jhash with a fixed seed: the same on every node) instead of at
// random, so a client's connections reach one endpoint, through any node,
// while the endpoints stay the same.
type Spread struct {
	V6       bool
	N        int
	Internal bool
	Sticky   bool
}

// stickyBit marks the count of a sticky forward (Value): the dispatch
// rules tell the two kinds apart by the count they compare.
const stickyBit = 1 << 31

// Value is the count element of the spread's forwards: N, with stickyBit
// when sticky.
func (s Spread) Value() uint32 {
	if s.Sticky {
		return uint32(s.N) | stickyBit
	}
	return uint32(s.N)
}

// Dispatch is the name of the dispatch chain of the spread's family and
// kind: spread4, spread6, internal4, internal6.
func (s Spread) Dispatch() string {
	name := "spread"
	if s.Internal {
		name = "internal"
	}
	if s.V6 {
		return name + "6"
	}
	return name + "4"
}

// Chain is the name of the spread chain: spread4/N, internal4/N,
// spread4/N/affinity, ...
func (s Spread) Chain() string {
	name := s.Dispatch() + "/" + strconv.Itoa(s.N)
	if s.Sticky {
		name += "/affinity"
	}
	return name
}

// Maps are the names of the count and dnat maps of the spread's family
// and kind: count4 and dnat4, icount4 and idnat4, ...
func (s Spread) Maps() (count, dnat string) {
	f := "4"
	if s.V6 {
		f = "6"
	}
	if s.Internal {
		return "icount" + f, "idnat" + f
	}
	return "count" + f, "dnat" + f
}

func (s Spread) compare(o Spread) int {
	return cmp.Or(cmp.Compare(b2i(s.Internal), b2i(o.Internal)), cmp.Compare(b2i(s.V6), b2i(o.V6)),
		s.N-o.N, cmp.Compare(b2i(s.Sticky), b2i(o.Sticky)))
}

// SpreadOf is the spread of a forward's endpoints.
func SpreadOf(fw Forward) Spread {
	return Spread{V6: fw.EIP.Is6(), N: len(fw.Endpoints), Internal: fw.Internal, Sticky: fw.Sticky}
}

// Empty reports whether nothing was touched.
func (t Touched) Empty() bool {
	return len(t.EIPs)+len(t.Masq)+len(t.Hairpin)+len(t.Forwards)+len(t.Firewall)+len(t.Spreads) == 0
}

// Merge adds o's names to t.
func (t *Touched) Merge(o Touched) {
	t.EIPs = append(t.EIPs, o.EIPs...)
	t.Masq = append(t.Masq, o.Masq...)
	t.Hairpin = append(t.Hairpin, o.Hairpin...)
	t.Forwards = append(t.Forwards, o.Forwards...)
	t.Firewall = append(t.Firewall, o.Firewall...)
	t.Spreads = append(t.Spreads, o.Spreads...)
}

// Service returns the contribution last set for key.
func (t *Table) Service(key string) (Service, bool) {
	s, ok := t.services[key]
	return s, ok
}

// Services returns the keys of the services in the table.
func (t *Table) Services() []string {
	return slices.Sorted(maps.Keys(t.services))
}

// Len is the number of Services in the table.
func (t *Table) Len() int { return len(t.services) }

// Set replaces the contribution of svc.Key. A forward key already owned by
// another Service stays with that Service (the API and IPAM keep this from
// happening; the owner is the one set first).
func (t *Table) Set(svc Service) Touched {
	if t.Mode == ModeKubeProxy {
		svc.Forwards = nil
	}
	var touched Touched
	if old, ok := t.services[svc.Key]; ok {
		touched = t.remove(old)
	}
	var kept []Forward
	for _, fw := range svc.Forwards {
		if t.taken(fw.Key) {
			continue
		}
		kept = append(kept, fw)
	}
	svc.Forwards = kept
	t.services[svc.Key] = svc
	touched.Merge(t.add(svc))
	return touched
}

// taken: another Service owns forward key k (with endpoints, or
// restricted to source ranges).
func (t *Table) taken(k Key) bool {
	_, fwd := t.Forwards[k]
	_, fw := t.Firewall[k]
	return fwd || fw
}

// Delete removes the contribution of key.
func (t *Table) Delete(key string) Touched {
	old, ok := t.services[key]
	if !ok {
		return Touched{}
	}
	delete(t.services, key)
	return t.remove(old)
}

func (t *Table) add(s Service) Touched { return t.count(s, 1) }

func (t *Table) remove(s Service) Touched { return t.count(s, -1) }

// count adds (by +1) or removes (by -1) the references of s, and names
// what it touched.
func (t *Table) count(s Service, by int) Touched {
	var tc Touched
	for _, a := range s.EIPs {
		bump(t.EIPs, a, by)
		tc.EIPs = append(tc.EIPs, a)
	}
	for _, fw := range s.Forwards {
		if fw.Restricted {
			if by > 0 {
				t.Firewall[fw.Key] = fw.Sources
			} else {
				delete(t.Firewall, fw.Key)
			}
			tc.Firewall = append(tc.Firewall, fw.Key)
		}
		if len(fw.Endpoints) == 0 {
			continue
		}
		if by > 0 {
			t.Forwards[fw.Key] = fw
		} else {
			delete(t.Forwards, fw.Key)
		}
		tc.Forwards = append(tc.Forwards, fw.Key)
		bump(t.Spreads, SpreadOf(fw), by)
		tc.Spreads = append(tc.Spreads, SpreadOf(fw))
		// Remote endpoints of internal forwards are not masqueraded: an
		// in-cluster client's address is routable in the cluster, the
		// reply comes back through this node anyway (as with kube-proxy).
		// The same address may be in Masq for a Cluster Service's forward:
		// the connection's label (internal) decides, not the address.
		for _, e := range fw.Endpoints {
			switch {
			case e.Local:
				bump(t.Hairpin, e.Addr, by)
				tc.Hairpin = append(tc.Hairpin, e.Addr)
			case !fw.Internal:
				bump(t.Masq, e.Addr, by)
				tc.Masq = append(tc.Masq, e.Addr)
			}
		}
	}
	return tc
}

// bump changes the count of k by by, forgetting k at zero.
func bump[K comparable](m map[K]int, k K, by int) {
	if m[k]+by <= 0 {
		delete(m, k)
		return
	}
	m[k] += by
}

// All touches everything the table holds (a full sync).
func (t *Table) All() Touched {
	return Touched{
		EIPs: slices.Collect(maps.Keys(t.EIPs)), Masq: slices.Collect(maps.Keys(t.Masq)),
		Hairpin: slices.Collect(maps.Keys(t.Hairpin)), Forwards: slices.Collect(maps.Keys(t.Forwards)),
		Firewall: slices.Collect(maps.Keys(t.Firewall)), Spreads: slices.Collect(maps.Keys(t.Spreads)),
	}
}

// String renders the table in nft's syntax, sorted (the golden files).
func (t *Table) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet eiplb { # mode %s\n", t.Mode)
	addrSet := func(name string, m map[netip.Addr]int, v4 bool, pair bool) {
		var el []string
		for _, a := range sortedAddrs(m) {
			if a.Is4() != v4 {
				continue
			}
			if pair {
				el = append(el, a.String()+" . "+a.String())
			} else {
				el = append(el, a.String())
			}
		}
		fmt.Fprintf(&b, "  set %s { %s }\n", name, strings.Join(el, ", "))
	}
	addrSet("eips4", t.EIPs, true, false)
	addrSet("eips6", t.EIPs, false, false)
	addrSet("masq4", t.Masq, true, false)
	addrSet("masq6", t.Masq, false, false)
	addrSet("hairpin4", t.Hairpin, true, true)
	addrSet("hairpin6", t.Hairpin, false, true)
	fwKeys := slices.SortedFunc(maps.Keys(t.Firewall), Key.compare)
	for _, fam := range []string{"4", "6"} {
		var el, allow []string
		for _, k := range fwKeys {
			if k.EIP.Is4() != (fam == "4") {
				continue
			}
			el = append(el, fwdKey(k))
			for _, p := range t.Firewall[k] {
				allow = append(allow, fwdKey(k)+" . "+p.String())
			}
		}
		fmt.Fprintf(&b, "  set fw%s { %s }\n", fam, strings.Join(el, ", "))
		fmt.Fprintf(&b, "  set allow%s { %s }\n", fam, strings.Join(allow, ", "))
	}
	keys := slices.SortedFunc(maps.Keys(t.Forwards), Key.compare)
	spreads := slices.SortedFunc(maps.Keys(t.Spreads), Spread.compare)
	kinds := []Spread{{}, {V6: true}, {Internal: true}, {Internal: true, V6: true}}
	for _, kind := range kinds {
		count, dnat := kind.Maps()
		fmt.Fprintf(&b, "  map %s {\n", count)
		for _, k := range keys {
			if k.EIP.Is6() == kind.V6 && k.Internal == kind.Internal {
				fmt.Fprintf(&b, "    %s : %#x\n", fwdKey(k), SpreadOf(t.Forwards[k]).Value())
			}
		}
		fmt.Fprintf(&b, "  }\n  map %s {\n", dnat)
		for _, k := range keys {
			if k.EIP.Is6() != kind.V6 || k.Internal != kind.Internal {
				continue
			}
			for i, e := range t.Forwards[k].Endpoints {
				fmt.Fprintf(&b, "    %s . %d : %s . %d\n", fwdKey(k), i, e.Addr, e.Port)
			}
		}
		b.WriteString("  }\n")
	}
	for _, kind := range kinds {
		var rules []string
		for _, sp := range spreads {
			if sp.V6 == kind.V6 && sp.Internal == kind.Internal {
				rules = append(rules, DispatchRule(sp))
			}
		}
		fmt.Fprintf(&b, "  chain %s { %s }\n", kind.Dispatch(), strings.Join(rules, "; "))
	}
	for _, sp := range spreads {
		fmt.Fprintf(&b, "  chain %s { %s }\n", sp.Chain(), SpreadChainRule(sp))
	}
	b.WriteString("}\n")
	return b.String()
}

func fwdKey(k Key) string { return fmt.Sprintf("%s . %s . %d", k.EIP, k.Proto, k.Port) }

// DispatchRule renders the rule of chain spread4/spread6 that sends the
// forwards with sp.N endpoints to their spread chain.
func DispatchRule(sp Spread) string {
	count, _ := sp.Maps()
	if sp.V6 {
		return fmt.Sprintf("ip6 daddr . meta l4proto . th dport map @%s %#x goto %s", count, sp.Value(), sp.Chain())
	}
	return fmt.Sprintf("ip daddr . meta l4proto . th dport map @%s %#x goto %s", count, sp.Value(), sp.Chain())
}

// AffinitySeed is the seed of the sticky spreads' jhash: fixed, so every
// node maps a client to the same endpoint.
const AffinitySeed = 0x65697062

// SpreadChainRule renders the one rule of a spread chain.
func SpreadChainRule(sp Spread) string {
	_, dnat := sp.Maps()
	ip := "ip"
	if sp.V6 {
		ip = "ip6"
	}
	slot := fmt.Sprintf("numgen random mod %d", sp.N)
	if sp.Sticky {
		slot = fmt.Sprintf("jhash %s saddr mod %d seed %#x", ip, sp.N, AffinitySeed)
	}
	label := "eiplb"
	if sp.Internal {
		label = "eiplb,eiplb-internal"
	}
	return fmt.Sprintf("ct label set %s dnat %s to %s daddr . meta l4proto . th dport . %s map @%s", label, ip, ip, slot, dnat)
}

func sortedAddrs(m map[netip.Addr]int) []netip.Addr {
	return slices.SortedFunc(maps.Keys(m), netip.Addr.Compare)
}
