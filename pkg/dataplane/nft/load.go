package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/nftables/expr"
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
	// fw, ep: chain → hash in its rule's comment ("" when the chain does
	// not hold exactly one rule with a comment: rewritten on Sync).
	fw    map[dataplane.Key]string
	ep    map[netip.AddrPort]string
	stray map[string]bool // chains this version does not know
	// fwd: map element → the chain it jumps to.
	fwd                 map[dataplane.Key]string
	eips, masq, hairpin map[netip.Addr]bool
}

func newMirror() *mirror {
	return &mirror{
		sets: map[string]bool{}, base: map[string][]string{},
		fw: map[dataplane.Key]string{}, ep: map[netip.AddrPort]string{}, stray: map[string]bool{},
		fwd:  map[dataplane.Key]string{},
		eips: map[netip.Addr]bool{}, masq: map[netip.Addr]bool{}, hairpin: map[netip.Addr]bool{},
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
		known := false
		for _, spec := range setSpecs {
			known = known || spec.name == s.Name
		}
		if !known {
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
			case mapFwd4, mapFwd6:
				k, ok := parseFwdKey(e.Key)
				if !ok {
					continue
				}
				// An element that is no goto counts as pointing nowhere
				// (""): Sync replaces it.
				m.fwd[k] = gotoTarget(e.Val)
			case setHairpin4, setHairpin6:
				if a, ok := parseHairpinKey(e.Key); ok {
					m.hairpin[a] = true
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
		case strings.HasPrefix(c.Name, "fw/"):
			if k, ok := parseFwdChain(c.Name); ok {
				m.fw[k] = ""
				continue
			}
			m.stray[c.Name] = true
		case strings.HasPrefix(c.Name, "ep/"):
			if ap, err := netip.ParseAddrPort(strings.TrimPrefix(c.Name, "ep/")); err == nil && dataplane.EpChain(ap) == c.Name {
				m.ep[ap] = ""
				continue
			}
			m.stray[c.Name] = true
		default:
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
	}
	for _, r := range rules {
		if counts[r.chain] != 1 {
			continue // "" stays: rewritten
		}
		if k, ok := parseFwdChain(r.chain); ok {
			if _, ok := m.fw[k]; ok {
				m.fw[k] = r.comment
			}
		} else if ap, err := netip.ParseAddrPort(strings.TrimPrefix(r.chain, "ep/")); err == nil {
			if _, ok := m.ep[ap]; ok {
				m.ep[ap] = r.comment
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

// parseFwdChain parses "fw/<eip>/<proto>/<port>" (dataplane.FwdChain).
func parseFwdChain(name string) (dataplane.Key, bool) {
	rest, ok := strings.CutPrefix(name, "fw/")
	if !ok {
		return dataplane.Key{}, false
	}
	f := strings.Split(rest, "/")
	if len(f) != 3 {
		return dataplane.Key{}, false
	}
	a, err := netip.ParseAddr(f[0])
	if err != nil {
		return dataplane.Key{}, false
	}
	var p dataplane.Proto
	switch f[1] {
	case "tcp":
		p = dataplane.TCP
	case "udp":
		p = dataplane.UDP
	case "sctp":
		p = dataplane.SCTP
	default:
		n, err := strconv.ParseUint(f[1], 10, 8)
		if err != nil {
			return dataplane.Key{}, false
		}
		p = dataplane.Proto(n)
	}
	port, err := strconv.ParseUint(f[2], 10, 16)
	if err != nil {
		return dataplane.Key{}, false
	}
	k := dataplane.Key{EIP: a, Proto: p, Port: uint16(port)}
	return k, dataplane.FwdChain(k) == name
}

// gotoTarget decodes a verdict map element's data: the chain of a goto.
func gotoTarget(val []byte) string {
	ad, err := netlink.NewAttributeDecoder(val)
	if err != nil {
		return ""
	}
	ad.ByteOrder = binary.BigEndian
	var code int32
	var chain string
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_VERDICT_CODE:
			code = int32(ad.Uint32())
		case unix.NFTA_VERDICT_CHAIN:
			chain = ad.String()
		}
	}
	if ad.Err() != nil || expr.VerdictKind(code) != expr.VerdictGoto {
		return ""
	}
	return chain
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
