package dataplane

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// Table is the whole desired content of the node's eiplb table, kept up to
// date one Service at a time. Things several Services share (an EIP of a
// sharing key, an endpoint behind two Services) are reference counted, so a
// Service change touches only its own part: Set returns what to rewrite.
//
// The kernel layout it stands for (rendered by String, written by
// pkg/dataplane/nft):
//   - set eips4/eips6: every EIP; traffic to one that no forward DNATs is
//     rejected (never routed back to the router);
//   - map fwd4/fwd6: EIP . protocol . port → goto the forward's chain
//     (one lookup per packet whatever the number of Services);
//   - chain fw/<key>: numgen random mod N vmap → goto an endpoint chain
//     (an even spread of new connections; see docs/agent.md);
//   - chain ep/<addr:port>: dnat to the endpoint;
//   - set masq4/masq6: remote endpoints (Cluster): masqueraded after
//     DNAT, so replies come back through this node;
//   - set hairpin4/hairpin6: local endpoints: masqueraded when the client
//     is the endpoint itself (a pod reaching itself through its EIP).
type Table struct {
	Mode      Mode
	EIPs      map[netip.Addr]int
	Masq      map[netip.Addr]int
	Hairpin   map[netip.Addr]int
	Forwards  map[Key]Forward // only forwards with endpoints
	Endpoints map[netip.AddrPort]int

	services map[string]Service
}

// NewTable returns an empty table.
func NewTable(mode Mode) *Table {
	return &Table{
		Mode: mode, EIPs: map[netip.Addr]int{}, Masq: map[netip.Addr]int{}, Hairpin: map[netip.Addr]int{},
		Forwards: map[Key]Forward{}, Endpoints: map[netip.AddrPort]int{}, services: map[string]Service{},
	}
}

// Touched names the parts of a table a change may have altered; the
// kernel layer compares exactly these with what it wrote before.
type Touched struct {
	EIPs, Masq, Hairpin []netip.Addr
	Forwards            []Key
	Endpoints           []netip.AddrPort
}

// Empty reports whether nothing was touched.
func (t Touched) Empty() bool {
	return len(t.EIPs)+len(t.Masq)+len(t.Hairpin)+len(t.Forwards)+len(t.Endpoints) == 0
}

// Merge adds o's names to t.
func (t *Touched) Merge(o Touched) {
	t.EIPs = append(t.EIPs, o.EIPs...)
	t.Masq = append(t.Masq, o.Masq...)
	t.Hairpin = append(t.Hairpin, o.Hairpin...)
	t.Forwards = append(t.Forwards, o.Forwards...)
	t.Endpoints = append(t.Endpoints, o.Endpoints...)
}

// FwdChain names the chain of a forward.
func FwdChain(k Key) string { return "fw/" + k.String() }

// EpChain names the chain that DNATs to an endpoint.
func EpChain(ap netip.AddrPort) string { return "ep/" + ap.String() }

// Service returns the contribution last set for key.
func (t *Table) Service(key string) (Service, bool) {
	s, ok := t.services[key]
	return s, ok
}

// Services returns the keys of the services in the table.
func (t *Table) Services() []string {
	return slices.Sorted(maps.Keys(t.services))
}

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
		if _, taken := t.Forwards[fw.Key]; taken {
			continue
		}
		kept = append(kept, fw)
	}
	svc.Forwards = kept
	t.services[svc.Key] = svc
	touched.Merge(t.add(svc))
	return touched
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

func (t *Table) add(s Service) Touched {
	var tc Touched
	for _, a := range s.EIPs {
		inc(t.EIPs, a)
		tc.EIPs = append(tc.EIPs, a)
	}
	for _, fw := range s.Forwards {
		if len(fw.Endpoints) == 0 {
			continue
		}
		t.Forwards[fw.Key] = fw
		tc.Forwards = append(tc.Forwards, fw.Key)
		for _, e := range fw.Endpoints {
			inc(t.Endpoints, e.AddrPort())
			tc.Endpoints = append(tc.Endpoints, e.AddrPort())
			if e.Local {
				inc(t.Hairpin, e.Addr)
				tc.Hairpin = append(tc.Hairpin, e.Addr)
			} else {
				inc(t.Masq, e.Addr)
				tc.Masq = append(tc.Masq, e.Addr)
			}
		}
	}
	return tc
}

func (t *Table) remove(s Service) Touched {
	var tc Touched
	for _, a := range s.EIPs {
		dec(t.EIPs, a)
		tc.EIPs = append(tc.EIPs, a)
	}
	for _, fw := range s.Forwards {
		if len(fw.Endpoints) == 0 {
			continue
		}
		delete(t.Forwards, fw.Key)
		tc.Forwards = append(tc.Forwards, fw.Key)
		for _, e := range fw.Endpoints {
			dec(t.Endpoints, e.AddrPort())
			tc.Endpoints = append(tc.Endpoints, e.AddrPort())
			if e.Local {
				dec(t.Hairpin, e.Addr)
				tc.Hairpin = append(tc.Hairpin, e.Addr)
			} else {
				dec(t.Masq, e.Addr)
				tc.Masq = append(tc.Masq, e.Addr)
			}
		}
	}
	return tc
}

func inc[K comparable](m map[K]int, k K) { m[k]++ }

func dec[K comparable](m map[K]int, k K) {
	if m[k] <= 1 {
		delete(m, k)
		return
	}
	m[k]--
}

// All touches everything the table holds (a full sync).
func (t *Table) All() Touched {
	return Touched{
		EIPs: slices.Collect(maps.Keys(t.EIPs)), Masq: slices.Collect(maps.Keys(t.Masq)),
		Hairpin: slices.Collect(maps.Keys(t.Hairpin)), Forwards: slices.Collect(maps.Keys(t.Forwards)),
		Endpoints: slices.Collect(maps.Keys(t.Endpoints)),
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
	keys := slices.SortedFunc(maps.Keys(t.Forwards), Key.compare)
	for _, v4 := range []bool{true, false} {
		var el []string
		for _, k := range keys {
			if k.EIP.Is4() == v4 {
				el = append(el, fmt.Sprintf("%s . %s . %d : goto %s", k.EIP, k.Proto, k.Port, FwdChain(k)))
			}
		}
		name := "fwd4"
		if !v4 {
			name = "fwd6"
		}
		fmt.Fprintf(&b, "  map %s {\n", name)
		for _, e := range el {
			fmt.Fprintf(&b, "    %s\n", e)
		}
		b.WriteString("  }\n")
	}
	for _, k := range keys {
		fmt.Fprintf(&b, "  chain %s { %s }\n", FwdChain(k), SpreadRule(t.Forwards[k]))
	}
	eps := slices.SortedFunc(maps.Keys(t.Endpoints), netip.AddrPort.Compare)
	for _, ap := range eps {
		fmt.Fprintf(&b, "  chain %s { %s }\n", EpChain(ap), DNATRule(ap))
	}
	b.WriteString("}\n")
	return b.String()
}

// SpreadRule renders the rule of a forward's chain.
func SpreadRule(fw Forward) string {
	var el []string
	for i, e := range fw.Endpoints {
		el = append(el, fmt.Sprintf("%d : goto %s", i, EpChain(e.AddrPort())))
	}
	return fmt.Sprintf("numgen random mod %d vmap { %s }", len(fw.Endpoints), strings.Join(el, ", "))
}

// DNATRule renders the rule of an endpoint's chain.
func DNATRule(ap netip.AddrPort) string {
	if ap.Addr().Is4() {
		return "dnat ip to " + ap.String()
	}
	return "dnat ip6 to " + ap.String()
}

func sortedAddrs(m map[netip.Addr]int) []netip.Addr {
	return slices.SortedFunc(maps.Keys(m), netip.Addr.Compare)
}
