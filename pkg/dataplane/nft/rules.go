package nft

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

	"github.com/eiplb/eiplb/pkg/dataplane"
)

// baseVersion is carried in the comment of every base-chain rule. Change it
// whenever a base rule changes: a writer that finds rules with another
// comment replaces them (in the same transaction, the chain stays).
const baseVersion = "eiplb:v1"

// Registers: NFT_REG_1 is 16 bytes wide and overlaps the 32-bit registers
// 8..11; concatenations use 32-bit registers like nft does.
const (
	reg1     = unix.NFT_REG_1
	reg2     = unix.NFT_REG_2
	regVerd  = unix.NFT_REG_VERDICT
	reg32_00 = unix.NFT_REG32_00
)

// Names of the named sets and maps.
const (
	setEIPs4    = "eips4"
	setEIPs6    = "eips6"
	setMasq4    = "masq4"
	setMasq6    = "masq6"
	setHairpin4 = "hairpin4"
	setHairpin6 = "hairpin6"
	mapFwd4     = "fwd4"
	mapFwd6     = "fwd6"
)

var (
	typeFwd4     = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	typeFwd6     = nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetProto, nftables.TypeInetService)
	typeHairpin4 = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeIPAddr)
	typeHairpin6 = nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeIP6Addr)
)

// setSpec describes one named set or map of the table.
type setSpec struct {
	name   string
	key    nftables.SetDatatype
	concat bool
	vmap   bool
	// nat: only in ModeNftables.
	nat bool
}

var setSpecs = []setSpec{
	{name: setEIPs4, key: nftables.TypeIPAddr},
	{name: setEIPs6, key: nftables.TypeIP6Addr},
	{name: setMasq4, key: nftables.TypeIPAddr, nat: true},
	{name: setMasq6, key: nftables.TypeIP6Addr, nat: true},
	{name: setHairpin4, key: typeHairpin4, concat: true, nat: true},
	{name: setHairpin6, key: typeHairpin6, concat: true, nat: true},
	{name: mapFwd4, key: typeFwd4, concat: true, vmap: true, nat: true},
	{name: mapFwd6, key: typeFwd6, concat: true, vmap: true, nat: true},
}

func (s setSpec) set(t *nftables.Table) *nftables.Set {
	set := &nftables.Set{Table: t, Name: s.name, KeyType: s.key, Concatenation: s.concat}
	if s.vmap {
		set.IsMap = true
		set.DataType = nftables.TypeVerdict
	}
	return set
}

// baseRule is one rule of a base chain; id names it in the comment.
type baseRule struct {
	id    string
	exprs []expr.Any
}

func (r baseRule) comment() string { return baseVersion + ":" + r.id }

// baseSpec describes one base chain and its rules.
type baseSpec struct {
	name  string
	typ   nftables.ChainType
	hook  *nftables.ChainHook
	prio  int32
	nat   bool
	rules func() []baseRule
}

var baseSpecs = []baseSpec{
	{name: "prerouting", typ: nftables.ChainTypeNAT, hook: nftables.ChainHookPrerouting, prio: -110, nat: true, rules: dnatRules},
	{name: "output", typ: nftables.ChainTypeNAT, hook: nftables.ChainHookOutput, prio: -110, nat: true, rules: dnatRules},
	{name: "postrouting", typ: nftables.ChainTypeNAT, hook: nftables.ChainHookPostrouting, prio: 110, nat: true, rules: masqRules},
	{name: "forward", typ: nftables.ChainTypeFilter, hook: nftables.ChainHookForward, prio: -10, rules: rejectRules},
	{name: "out-filter", typ: nftables.ChainTypeFilter, hook: nftables.ChainHookOutput, prio: -10, rules: rejectRules},
}

func wantSet(mode dataplane.Mode, s setSpec) bool   { return mode == dataplane.ModeNftables || !s.nat }
func wantBase(mode dataplane.Mode, b baseSpec) bool { return mode == dataplane.ModeNftables || !b.nat }

// Expression helpers.

func nfproto(v4 bool) []expr.Any {
	p := byte(unix.NFPROTO_IPV6)
	if v4 {
		p = unix.NFPROTO_IPV4
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{p}},
	}
}

func addrLen(v4 bool) uint32 {
	if v4 {
		return 4
	}
	return 16
}

// daddr loads ip(6) daddr into reg.
func daddr(v4 bool, reg uint32) expr.Any {
	off := uint32(24)
	if v4 {
		off = 16
	}
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: addrLen(v4)}
}

// saddr loads ip(6) saddr into reg.
func saddr(v4 bool, reg uint32) expr.Any {
	off := uint32(8)
	if v4 {
		off = 12
	}
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: addrLen(v4)}
}

func lookup(set string, reg uint32) expr.Any {
	return &expr.Lookup{SourceRegister: reg, SetName: set}
}

func fam(v4 bool, s4, s6 string) string {
	if v4 {
		return s4
	}
	return s6
}

// dnatRules: ip daddr . meta l4proto . th dport vmap @fwd4 (and v6).
func dnatRules() []baseRule {
	var out []baseRule
	for _, v4 := range []bool{true, false} {
		// The address fills 1 (v4) or 4 (v6) 32-bit registers from reg32_00.
		next := uint32(reg32_00) + addrLen(v4)/4
		e := nfproto(v4)
		e = append(e,
			daddr(v4, reg1),
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: next},
			&expr.Payload{DestRegister: next + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: reg1, SetName: fam(v4, mapFwd4, mapFwd6), DestRegister: regVerd, IsDestRegSet: true},
		)
		out = append(out, baseRule{id: fam(v4, "fwd4", "fwd6"), exprs: e})
	}
	return out
}

// labelBit is the conntrack label that marks a connection DNATed from an
// EIP by this table (set in the fw/ chains, read in postrouting). A label,
// not `ct original ip daddr @eips4`: nft (1.0.6) cannot list a lookup on the
// inet family's 16-byte NFT_CT_DST load, and the library cannot send the
// typed NFT_CT_DST_IP key (it omits the direction); a label, unlike a packet
// mark, does not take part in routing decisions.
const labelBit = 100

func labelMask() []byte {
	b := make([]byte, 16)
	b[labelBit/8] = 1 << (labelBit % 8)
	return b
}

// setLabel: ct label set <labelBit> (the kernel ORs it into the labels).
func setLabel() []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: reg1, Data: labelMask()},
		&expr.Ct{Register: reg1, SourceRegister: true, Key: expr.CtKeyLABELS},
	}
}

// hasLabel: ct label <labelBit>.
func hasLabel() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: reg1, Key: expr.CtKeyLABELS},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 16, Mask: labelMask(), Xor: make([]byte, 16)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: make([]byte, 16)},
	}
}

// masqRules: masquerade EIP traffic DNATed to remote endpoints (@masq) and
// to a local endpoint that is also the client (@hairpin).
func masqRules() []baseRule {
	var out []baseRule
	for _, v4 := range []bool{true, false} {
		e := append(hasLabel(), nfproto(v4)...)
		e = append(e, daddr(v4, reg1), lookup(fam(v4, setMasq4, setMasq6), reg1), &expr.Masq{})
		out = append(out, baseRule{id: fam(v4, "masq4", "masq6"), exprs: e})

		e = append(hasLabel(), nfproto(v4)...)
		second := uint32(reg32_00) + addrLen(v4)/4
		e = append(e, saddr(v4, reg1), daddr(v4, second), lookup(fam(v4, setHairpin4, setHairpin6), reg1), &expr.Masq{})
		out = append(out, baseRule{id: fam(v4, "hairpin4", "hairpin6"), exprs: e})
	}
	return out
}

// rejectRules: traffic still addressed to an EIP (nothing DNATed it) is
// rejected, TCP with a reset, the rest with icmpx port-unreachable, so it is
// never routed back to the router.
func rejectRules() []baseRule {
	var out []baseRule
	for _, v4 := range []bool{true, false} {
		e := nfproto(v4)
		e = append(e, daddr(v4, reg1), lookup(fam(v4, setEIPs4, setEIPs6), reg1),
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Reject{Type: unix.NFT_REJECT_TCP_RST},
		)
		out = append(out, baseRule{id: fam(v4, "reset4", "reset6"), exprs: e})
		e = nfproto(v4)
		e = append(e, daddr(v4, reg1), lookup(fam(v4, setEIPs4, setEIPs6), reg1),
			&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH},
		)
		out = append(out, baseRule{id: fam(v4, "unreach4", "unreach6"), exprs: e})
	}
	return out
}

// comment encodes s as nft's rule comment (userdata TLV).
func comment(s string) []byte { return userdata.AppendString(nil, userdata.TypeComment, s) }

// commentOf decodes a rule comment.
func commentOf(ud []byte) string {
	s, _ := userdata.GetString(ud, userdata.TypeComment)
	return s
}

// chainVersion salts the hashes of fw/ and ep/ rules: change it when their
// encoding changes beyond what dataplane renders, so old rules get replaced.
const chainVersion = "v1;"

// hash is the short hash of a rendered rule kept in its comment.
func hash(rendered string) string {
	h := sha256.Sum256([]byte(chainVersion + rendered))
	return hex.EncodeToString(h[:8])
}

// dnatExprs: dnat ip(6) to addr:port.
func dnatExprs(ap netip.AddrPort) []expr.Any {
	a := ap.Addr()
	family := uint32(unix.NFPROTO_IPV6)
	if a.Is4() {
		family = unix.NFPROTO_IPV4
	}
	return []expr.Any{
		&expr.Immediate{Register: reg1, Data: a.AsSlice()},
		&expr.Immediate{Register: reg2, Data: binaryutil.BigEndian.PutUint16(ap.Port())},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: family, RegAddrMin: reg1, RegProtoMin: reg2},
	}
}

// spreadSet is the anonymous constant verdict map of a forward's chain:
// i → goto ep/<endpoint i>. Keys are in host byte order (numgen writes the
// register natively).
func spreadSet(t *nftables.Table, fw dataplane.Forward) (*nftables.Set, []nftables.SetElement) {
	s := &nftables.Set{
		Table: t, Anonymous: true, Constant: true, IsMap: true,
		KeyType: nftables.TypeInteger, DataType: nftables.TypeVerdict,
	}
	el := make([]nftables.SetElement, len(fw.Endpoints))
	for i, e := range fw.Endpoints {
		el[i] = nftables.SetElement{
			Key:         binaryutil.NativeEndian.PutUint32(uint32(i)),
			VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: dataplane.EpChain(e.AddrPort())},
		}
	}
	return s, el
}

// spreadExprs: numgen random mod N vmap <set>. The set must have been added
// (AddSet assigns its name and id).
func spreadExprs(s *nftables.Set, n int) []expr.Any {
	return append(setLabel(),
		&expr.Numgen{Register: reg1, Modulus: uint32(n), Type: unix.NFT_NG_RANDOM},
		&expr.Lookup{SourceRegister: reg1, SetName: s.Name, SetID: s.ID, DestRegister: regVerd, IsDestRegSet: true},
	)
}

// Set element keys. Concatenated fields are padded to 4 bytes.

func addrKey(a netip.Addr) []byte { return a.AsSlice() }

func hairpinKey(a netip.Addr) []byte { return append(a.AsSlice(), a.AsSlice()...) }

func fwdKey(k dataplane.Key) []byte {
	b := k.EIP.AsSlice()
	b = append(b, byte(k.Proto), 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, k.Port)
	return append(b, 0, 0)
}

func parseFwdKey(b []byte) (dataplane.Key, bool) {
	var n int
	switch len(b) {
	case 12:
		n = 4
	case 24:
		n = 16
	default:
		return dataplane.Key{}, false
	}
	a, _ := netip.AddrFromSlice(b[:n])
	return dataplane.Key{EIP: a, Proto: dataplane.Proto(b[n]), Port: binary.BigEndian.Uint16(b[n+4 : n+6])}, true
}

func parseHairpinKey(b []byte) (netip.Addr, bool) {
	if len(b) != 8 && len(b) != 32 {
		return netip.Addr{}, false
	}
	a, _ := netip.AddrFromSlice(b[:len(b)/2])
	c, _ := netip.AddrFromSlice(b[len(b)/2:])
	return a, a == c
}

func parseAddrKey(b []byte) (netip.Addr, bool) {
	if len(b) != 4 && len(b) != 16 {
		return netip.Addr{}, false
	}
	a, _ := netip.AddrFromSlice(b)
	return a, true
}
