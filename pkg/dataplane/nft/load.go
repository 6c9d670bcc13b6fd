package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/eiplb/eiplb/pkg/dataplane"
)

// mirror is what the writer believes the kernel's table holds.
type mirror struct {
	table bool
	sets  map[string]bool
	// base: base chain → the comments of its rules, in order.
	base map[string][]string
	// dispatch: dispatch chain → the comments of its rules, in order.
	dispatch map[string][]string
	// spread: spread chain → hash in its rule's comment ("" when the chain
	// does not hold exactly one rule with a comment: rewritten on Sync).
	spread map[dataplane.Spread]string
	stray  map[string]bool // chains this version does not know
	// count: forward → its count element (-1: unreadable, rewritten).
	count map[dataplane.Key]int
	// dnat: forward → slot → endpoint of its dnat elements (the zero
	// AddrPort: unreadable, rewritten).
	dnat                map[dataplane.Key]map[uint32]netip.AddrPort
	eips, masq, hairpin map[netip.Addr]bool
	// fw: the restricted forwards; allow: forward → the source ranges its
	// allow elements admit.
	fw    map[dataplane.Key]bool
	allow map[dataplane.Key]map[netip.Prefix]bool
}

func newMirror() *mirror {
	return &mirror{
		sets: map[string]bool{}, base: map[string][]string{}, dispatch: map[string][]string{},
		spread: map[dataplane.Spread]string{}, stray: map[string]bool{},
		count: map[dataplane.Key]int{}, dnat: map[dataplane.Key]map[uint32]netip.AddrPort{},
		eips: map[netip.Addr]bool{}, masq: map[netip.Addr]bool{}, hairpin: map[netip.Addr]bool{},
		fw: map[dataplane.Key]bool{}, allow: map[dataplane.Key]map[netip.Prefix]bool{},
	}
}

func (m *mirror) setAllow(k dataplane.Key, p netip.Prefix, on bool) {
	s := m.allow[k]
	if on {
		if s == nil {
			s = map[netip.Prefix]bool{}
			m.allow[k] = s
		}
		s[p] = true
		return
	}
	delete(s, p)
	if len(s) == 0 {
		delete(m.allow, k)
	}
}

func (m *mirror) setSlot(k dataplane.Key, slot uint32, ap netip.AddrPort) {
	s := m.dnat[k]
	if s == nil {
		s = map[uint32]netip.AddrPort{}
		m.dnat[k] = s
	}
	s[slot] = ap
}

func (m *mirror) delSlot(k dataplane.Key, slot uint32) {
	delete(m.dnat[k], slot)
	if len(m.dnat[k]) == 0 {
		delete(m.dnat, k)
	}
}

// addrs returns the address elements of the named set.
func (m *mirror) addrs(set string) map[netip.Addr]bool {
	switch set {
	case setEIPs4, setEIPs6:
		return m.eips
	case setMasq4, setMasq6:
		return m.masq
	case setHairpin4, setHairpin6:
		return m.hairpin
	}
	panic("nft: no address set " + set)
}

// Load reads what the kernel holds in the table into the mirror, replacing
// it. It changes nothing in the kernel.
func (w *Writer) Load() error {
	m := newMirror()
	if _, err := w.conn.ListTableOfFamily(w.table.Name, w.table.Family); err != nil {
		if errors.Is(err, unix.ENOENT) {
			w.m = m
			return nil
		}
		return fmt.Errorf("nft: list table: %w", err)
	}
	m.table = true

	sets, err := w.conn.GetSets(w.table)
	if err != nil {
		return fmt.Errorf("nft: list sets: %w", err)
	}
	for _, s := range sets {
		if strings.HasPrefix(s.Name, "__") { // anonymous
			continue
		}
		if slices.Contains(legacySets, s.Name) {
			m.sets[s.Name] = true // deleted by Sync
			continue
		}
		if !slices.ContainsFunc(setSpecs, func(spec setSpec) bool { return spec.name == s.Name }) {
			// Not ours to understand; left alone (a later version's).
			continue
		}
		m.sets[s.Name] = true
		els, err := w.conn.GetSetElements(s)
		if err != nil {
			return fmt.Errorf("nft: list elements of %s: %w", s.Name, err)
		}
		for _, e := range els {
			switch s.Name {
			case mapCount4, mapCount6, mapICount4, mapICount6:
				if k, ok := parseFwdKey(e.Key); ok {
					k.Internal = s.Name == mapICount4 || s.Name == mapICount6
					m.count[k] = parseCount(e.Val)
				}
			case mapDNAT4, mapDNAT6, mapIDNAT4, mapIDNAT6:
				if k, slot, ok := parseSlotKey(e.Key); ok {
					k.Internal = s.Name == mapIDNAT4 || s.Name == mapIDNAT6
					m.setSlot(k, slot, parseDest(e.Val))
				}
			case setHairpin4, setHairpin6:
				if a, ok := parseHairpinKey(e.Key); ok {
					m.hairpin[a] = true
				}
			case setFw4, setFw6:
				if k, ok := parseFwdKey(e.Key); ok {
					m.fw[k] = true
				}
			case setAllow4, setAllow6:
				// An element that is not one prefix of a forward was not
				// written by a writer: left alone.
				if k, p, ok := parseAllow(e.Key, e.KeyEnd); ok {
					m.setAllow(k, p, true)
				}
			default:
				if a, ok := parseAddrKey(e.Key); ok {
					m.addrs(s.Name)[a] = true
				}
			}
		}
	}

	chains, err := w.conn.ListChainsOfTableFamily(w.table.Family)
	if err != nil {
		return fmt.Errorf("nft: list chains: %w", err)
	}
	for _, c := range chains {
		if c.Table == nil || c.Table.Name != w.table.Name {
			continue
		}
		switch {
		case c.Hooknum != nil && isBase(c.Name):
			m.base[c.Name] = []string{}
		case c.Hooknum == nil && slices.ContainsFunc(dispatchChains, func(sp dataplane.Spread) bool { return sp.Dispatch() == c.Name }):
			m.dispatch[c.Name] = []string{}
		default:
			if sp, ok := parseSpreadChain(c.Name); ok && c.Hooknum == nil {
				m.spread[sp] = ""
				continue
			}
			m.stray[c.Name] = true
		}
	}

	rules, err := w.dumpRules()
	if err != nil {
		return err
	}
	counts := map[string]int{}
	for _, r := range rules {
		counts[r.chain]++
		if _, ok := m.base[r.chain]; ok {
			m.base[r.chain] = append(m.base[r.chain], r.comment)
		}
		if _, ok := m.dispatch[r.chain]; ok {
			m.dispatch[r.chain] = append(m.dispatch[r.chain], r.comment)
		}
	}
	for _, r := range rules {
		if counts[r.chain] != 1 {
			continue // "" stays: rewritten
		}
		if sp, ok := parseSpreadChain(r.chain); ok {
			if _, ok := m.spread[sp]; ok {
				m.spread[sp] = r.comment
			}
		}
	}
	w.m = m
	return nil
}

func isBase(name string) bool {
	for _, b := range baseSpecs {
		if b.name == name {
			return true
		}
	}
	return false
}

// parseSpreadChain parses "spread4/<N>", "internal6/<N>",
// "spread4/<N>/affinity", ... (dataplane.Spread.Chain).
func parseSpreadChain(name string) (dataplane.Spread, bool) {
	for _, sp := range dispatchChains {
		rest, ok := strings.CutPrefix(name, sp.Dispatch()+"/")
		if !ok {
			continue
		}
		rest, sp.Sticky = strings.CutSuffix(rest, "/affinity")
		n, err := strconv.Atoi(rest)
		if err != nil || n < 1 {
			return sp, false
		}
		sp.N = n
		return sp, sp.Chain() == name
	}
	return dataplane.Spread{}, false
}

type ruleInfo struct {
	chain   string
	comment string
}

// dumpRules reads chain and comment of every rule of the table in
// one netlink dump (the library's GetRules wants one chain per call).
func (w *Writer) dumpRules() ([]ruleInfo, error) {
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: []byte(w.table.Name + "\x00")},
	})
	if err != nil {
		return nil, err
	}
	req := netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETRULE),
			Flags: netlink.Request | netlink.Dump,
		},
		// struct nfgenmsg: family, version, resource id.
		Data: append([]byte{byte(w.table.Family), unix.NFNETLINK_V0, 0, 0}, attrs...),
	}
	msgs, err := w.nl.Execute(req)
	if err != nil {
		return nil, fmt.Errorf("nft: list rules: %w", err)
	}
	out := make([]ruleInfo, 0, len(msgs))
	for _, msg := range msgs {
		if len(msg.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(msg.Data[4:])
		if err != nil {
			return nil, fmt.Errorf("nft: list rules: %w", err)
		}
		ad.ByteOrder = binary.BigEndian
		var r ruleInfo
		for ad.Next() {
			switch ad.Type() {
			case unix.NFTA_RULE_CHAIN:
				r.chain = ad.String()
			case unix.NFTA_RULE_USERDATA:
				r.comment = commentOf(ad.Bytes())
			}
		}
		if err := ad.Err(); err != nil {
			return nil, fmt.Errorf("nft: list rules: %w", err)
		}
		out = append(out, r)
	}
	return out, nil
}
