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
// v1: ip daddr . meta l4proto . th dport vmap @fwd4 → fw/ and ep/ chains.
// v2: ip daddr @eips4 jump spread4 (Services only in map elements).
// v3: masq4/masq6 skip connections labelled internal (internalBit).
const baseVersion = "eiplb:v3"

// Registers: NFT_REG_1 is 16 bytes wide and overlaps the 32-bit registers
// 8..11; concatenations use 32-bit registers like nft does.
const (
	reg1     = unix.NFT_REG_1
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
	mapCount4   = "count4"
	mapCount6   = "count6"
	mapDNAT4    = "dnat4"
	mapDNAT6    = "dnat6"
	mapICount4  = "icount4"
	mapICount6  = "icount6"
	mapIDNAT4   = "idnat4"
	mapIDNAT6   = "idnat6"
	setFw4      = "fw4"
	setFw6      = "fw6"
	setAllow4   = "allow4"
	setAllow6   = "allow6"
)

// legacySets are maps of older layouts, deleted by a full Sync (v1: the
// verdict maps to the fw/ chains).
var legacySets = []string{"fwd4", "fwd6"}

// Names of the dispatch chains: one rule per endpoint count N in use,
// `ip daddr . meta l4proto . th dport map @count4 N goto spread4/N`.
//
// Not the single `... map @count4 vmap @spread4` rule (a lookup of the count
// in a verdict map): the kernel takes it, but nft 1.0.6 aborts listing it
// (netlink_delinearize.c: netlink_parse_concat_expr: Assertion
// `consumed > 0' failed: it gives a map's result no length), and nothing but
// a register can carry the count from one lookup to the next without
// touching the packet or the connection. Not a verdict map from the forward
// to spread4/N either: every commit that adds a goto element walks all the
// elements of such a map (8–19 ms with 10,000 forwards).
//
// internal4/internal6 do the same for the internal forwards (in-cluster
// clients of Local Services, dataplane.Key.Internal) with icount4 and
// idnat4; a key none of them has falls through to spread4.
//
// dispatchChains are the dispatch chains, one per kind of dataplane.Spread
// (named by Spread.Dispatch: spread4, spread6, internal4, internal6).
var dispatchChains = []dataplane.Spread{{}, {V6: true}, {Internal: true}, {Internal: true, V6: true}}

// dispatchChain is the name of the dispatch chain of a family and kind.
func dispatchChain(v4, internal bool) string {
	return dataplane.Spread{V6: !v4, Internal: internal}.Dispatch()
}

// The 32-bit fields of the maps (the count, the slot) are typed mark: nft
// 1.0.6 aborts listing a concatenation with an integer field
// (mergesort.c: concat_expr_msort_value: Assertion `ilen > 0' failed), and a
// mark is a fixed-size 32-bit value it prints in hex.
var (
	typeFwd4     = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	typeFwd6     = nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetProto, nftables.TypeInetService)
	typeSlot4    = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService, nftables.TypeMark)
	typeSlot6    = nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetProto, nftables.TypeInetService, nftables.TypeMark)
	typeDest4    = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
	typeDest6    = nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetService)
	typeHairpin4 = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeIPAddr)
	typeHairpin6 = nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeIP6Addr)
	typeAllow4   = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService, nftables.TypeIPAddr)
	typeAllow6   = nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetProto, nftables.TypeInetService, nftables.TypeIP6Addr)
)

// setSpec describes one named set or map of the table.
type setSpec struct {
	name   string
	key    nftables.SetDatatype
	concat bool
	// data: the type of a map's values; a set when zero.
	data nftables.SetDatatype
	// nat: only in ModeNftables.
	nat bool
	// interval: elements are ranges (the last field of the key; the
	// kernel's pipapo set, which refuses overlapping elements).
	interval bool
}

var setSpecs = []setSpec{
	{name: setEIPs4, key: nftables.TypeIPAddr},
	{name: setEIPs6, key: nftables.TypeIP6Addr},
	{name: setMasq4, key: nftables.TypeIPAddr, nat: true},
	{name: setMasq6, key: nftables.TypeIP6Addr, nat: true},
	{name: setHairpin4, key: typeHairpin4, concat: true, nat: true},
	{name: setHairpin6, key: typeHairpin6, concat: true, nat: true},
	{name: mapCount4, key: typeFwd4, concat: true, data: nftables.TypeMark, nat: true},
	{name: mapCount6, key: typeFwd6, concat: true, data: nftables.TypeMark, nat: true},
	{name: mapDNAT4, key: typeSlot4, concat: true, data: typeDest4, nat: true},
	{name: mapDNAT6, key: typeSlot6, concat: true, data: typeDest6, nat: true},
	{name: mapICount4, key: typeFwd4, concat: true, data: nftables.TypeMark, nat: true},
	{name: mapICount6, key: typeFwd6, concat: true, data: nftables.TypeMark, nat: true},
	{name: mapIDNAT4, key: typeSlot4, concat: true, data: typeDest4, nat: true},
	{name: mapIDNAT6, key: typeSlot6, concat: true, data: typeDest6, nat: true},
	{name: setFw4, key: typeFwd4, concat: true, nat: true},
	{name: setFw6, key: typeFwd6, concat: true, nat: true},
	{name: setAllow4, key: typeAllow4, concat: true, interval: true, nat: true},
	{name: setAllow6, key: typeAllow6, concat: true, interval: true, nat: true},
}

func (s setSpec) set(t *nftables.Table) *nftables.Set {
	set := &nftables.Set{Table: t, Name: s.name, KeyType: s.key, Concatenation: s.concat, Interval: s.interval}
	if s.data.Name != "" {
		set.IsMap = true
		set.DataType = s.data
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
	rules func(o Options) []baseRule
}

var baseSpecs = []baseSpec{
	{name: "prerouting", typ: nftables.ChainTypeNAT, hook: nftables.ChainHookPrerouting, prio: -110, nat: true, rules: preroutingRules},
	{name: "output", typ: nftables.ChainTypeNAT, hook: nftables.ChainHookOutput, prio: -110, nat: true, rules: outputRules},
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

// preroutingRules: the source-range firewall (firewallExprs); packets
// from this node's pods (Options.PodCIDRs) to an EIP try the internal
// forwards (jump internal4); then ip daddr @eips4 jump spread4 (and v6).
// The dispatch chains do the rest; traffic to other addresses costs a few
// lookups. In the NAT chains, so only the first packet of a connection is
// looked at, as kube-proxy's `ct state new` firewall does.
func preroutingRules(o Options) []baseRule {
	out := firewallRules()
	for _, p := range o.PodCIDRs {
		v4 := p.Addr().Is4()
		e := append(nfproto(v4), saddr(v4, reg1))
		e = append(e, masked(p, reg1)...)
		out = append(out, baseRule{id: "internal:" + p.String(), exprs: append(e, jumpEIP(v4, dispatchChain(v4, true))...)})
	}
	return append(out, dnatRules()...)
}

// outputRules: like preroutingRules; every packet of the node itself is
// from inside the cluster.
func outputRules(Options) []baseRule {
	out := firewallRules()
	for _, v4 := range []bool{true, false} {
		out = append(out, baseRule{id: fam(v4, "internal4", "internal6"), exprs: append(nfproto(v4), jumpEIP(v4, dispatchChain(v4, true))...)})
	}
	return append(out, dnatRules()...)
}

func firewallRules() []baseRule {
	var out []baseRule
	for _, v4 := range []bool{true, false} {
		out = append(out, baseRule{id: fam(v4, "firewall4", "firewall6"), exprs: firewallExprs(v4)})
	}
	return out
}

// dnatRules: ip daddr @eips4 jump spread4 (and v6).
func dnatRules() []baseRule {
	var out []baseRule
	for _, v4 := range []bool{true, false} {
		out = append(out, baseRule{id: fam(v4, "dnat4", "dnat6"), exprs: append(nfproto(v4), jumpEIP(v4, dispatchChain(v4, false))...)})
	}
	return out
}

// jumpEIP: ip daddr @eips4 jump chain.
func jumpEIP(v4 bool, chain string) []expr.Any {
	return []expr.Any{
		daddr(v4, reg1),
		lookup(fam(v4, setEIPs4, setEIPs6), reg1),
		&expr.Verdict{Kind: expr.VerdictJump, Chain: chain},
	}
}

// masked: the address in reg, masked to p's length, equals p's address.
func masked(p netip.Prefix, reg uint32) []expr.Any {
	p = p.Masked()
	n := p.Addr().BitLen() / 8
	mask := make([]byte, n)
	for i := range p.Bits() {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	return []expr.Any{
		&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: uint32(n), Mask: mask, Xor: make([]byte, n)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: p.Addr().AsSlice()},
	}
}

// loadForward loads ip(6) daddr . meta l4proto . th dport into consecutive
// 32-bit registers from reg1 and returns the first register after them.
func loadForward(v4 bool) ([]expr.Any, uint32) {
	// The address fills 1 (v4) or 4 (v6) 32-bit registers from reg32_00.
	next := uint32(reg32_00) + addrLen(v4)/4
	return []expr.Any{
		daddr(v4, reg1),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: next},
		&expr.Payload{DestRegister: next + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
	}, next + 2
}

// firewallExprs: ip daddr . meta l4proto . th dport @fw4 ip daddr . meta
// l4proto . th dport . ip saddr != @allow4 drop.
func firewallExprs(v4 bool) []expr.Any {
	e := nfproto(v4)
	load, next := loadForward(v4)
	e = append(e, load...)
	return append(e,
		lookup(fam(v4, setFw4, setFw6), reg1),
		saddr(v4, next),
		&expr.Lookup{SourceRegister: reg1, SetName: fam(v4, setAllow4, setAllow6), Invert: true},
		&expr.Verdict{Kind: expr.VerdictDrop},
	)
}

// dispatchExprs: ip daddr . meta l4proto . th dport map @count4 N goto
// spread4/N (the rule of sp in its family's dispatch chain).
func dispatchExprs(sp dataplane.Spread) []expr.Any {
	v4 := !sp.V6
	count, _ := sp.Maps()
	e := nfproto(v4)
	load, _ := loadForward(v4)
	e = append(e, load...)
	return append(e,
		&expr.Lookup{SourceRegister: reg1, SetName: count, DestRegister: reg1, IsDestRegSet: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: countVal(sp.Value())},
		&expr.Verdict{Kind: expr.VerdictGoto, Chain: sp.Chain()},
	)
}

// spreadExprs: the rule of chain spread4/N (dataplane.SpreadChainRule):
// ct label set; dnat ip to ip daddr . meta l4proto . th dport . numgen
// random mod N map @dnat4. The map's value is the endpoint's address in the
// first register(s) and its port in the next 32-bit register, like nft
// encodes it (v4: addr_min reg 1, proto_min reg32_01; v6: proto_min
// reg32_04).
func spreadExprs(sp dataplane.Spread) []expr.Any {
	v4 := !sp.V6
	_, dnat := sp.Maps()
	e := append(nfproto(v4), setLabel(sp.Internal)...)
	load, next := loadForward(v4)
	e = append(e, load...)
	family := uint32(unix.NFPROTO_IPV6)
	if v4 {
		family = unix.NFPROTO_IPV4
	}
	// The slot: numgen random mod N, or for a sticky spread jhash ip saddr
	// mod N with the fixed seed (the address loaded where the slot goes).
	slot := []expr.Any{&expr.Numgen{Register: next, Modulus: uint32(sp.N), Type: unix.NFT_NG_RANDOM}}
	if sp.Sticky {
		slot = []expr.Any{saddr(v4, next), &expr.Hash{SourceRegister: next, DestRegister: next, Length: addrLen(v4),
			Modulus: uint32(sp.N), Seed: dataplane.AffinitySeed, Type: expr.HashTypeJenkins}}
	}
	e = append(e, slot...)
	return append(e,
		&expr.Lookup{SourceRegister: reg1, SetName: dnat, DestRegister: reg1, IsDestRegSet: true},
		&expr.NAT{
			Type: expr.NATTypeDestNAT, Family: family,
			RegAddrMin: reg1, RegProtoMin: uint32(reg32_00) + addrLen(v4)/4, Specified: true,
		},
	)
}

// labelBit is the conntrack label that marks a connection DNATed from an
// EIP by this table (set in the spread chains, read in postrouting). A label,
// not `ct original ip daddr @eips4`: nft (1.0.6) cannot list a lookup on the
// inet family's 16-byte NFT_CT_DST load, and the library cannot send the
// typed NFT_CT_DST_IP key (it omits the direction); a label, unlike a packet
// mark, does not take part in routing decisions.
const labelBit = 100

// internalBit marks, besides labelBit, a connection DNATed by an internal
// forward (an in-cluster client of a Local Service): it goes to a remote
// endpoint with the client's own address, as with kube-proxy. The masq sets
// are keyed by endpoint address alone, and the same endpoint can be a
// remote one of a Cluster Service too: the label, not the address, tells
// the two connections apart.
const internalBit = 101

func labelMask(bits ...int) []byte {
	b := make([]byte, 16)
	for _, bit := range bits {
		b[bit/8] |= 1 << (bit % 8)
	}
	return b
}

// setLabel: ct label set <labelBit> (and <internalBit> for an internal
// spread); the kernel ORs them into the labels.
func setLabel(internal bool) []expr.Any {
	bits := []int{labelBit}
	if internal {
		bits = append(bits, internalBit)
	}
	return []expr.Any{
		&expr.Immediate{Register: reg1, Data: labelMask(bits...)},
		&expr.Ct{Register: reg1, SourceRegister: true, Key: expr.CtKeyLABELS},
	}
}

// hasLabel: ct label <labelBit>.
func hasLabel() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: reg1, Key: expr.CtKeyLABELS},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 16, Mask: labelMask(labelBit), Xor: make([]byte, 16)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: make([]byte, 16)},
	}
}

// externalLabel: ct label <labelBit> and not <internalBit>.
func externalLabel() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: reg1, Key: expr.CtKeyLABELS},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 16, Mask: labelMask(labelBit, internalBit), Xor: make([]byte, 16)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: labelMask(labelBit)},
	}
}

// masqRules: masquerade EIP traffic DNATed to remote endpoints (@masq)
// unless an internal forward did it (the in-cluster client keeps its
// address), and to a local endpoint that is also the client (@hairpin).
func masqRules(Options) []baseRule {
	var out []baseRule
	for _, v4 := range []bool{true, false} {
		e := append(externalLabel(), nfproto(v4)...)
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
func rejectRules(Options) []baseRule {
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

// chainVersion salts the hashes of the spread chains' rules: change it
// when their encoding changes beyond what dataplane renders, so old rules
// get replaced.
const chainVersion = "v2;"

// hash is the short hash of a rendered rule kept in its comment.
func hash(rendered string) string {
	h := sha256.Sum256([]byte(chainVersion + rendered))
	return hex.EncodeToString(h[:8])
}

// dispatchComment is the comment of sp's rule in its dispatch chain.
func dispatchComment(sp dataplane.Spread) string { return "goto " + sp.Chain() }

// Set element keys and values. Concatenated fields are padded to 4 bytes.

func addrKey(a netip.Addr) []byte { return a.AsSlice() }

func hairpinKey(a netip.Addr) []byte { return append(a.AsSlice(), a.AsSlice()...) }

func fwdKey(k dataplane.Key) []byte {
	b := k.EIP.AsSlice()
	b = append(b, byte(k.Proto), 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, k.Port)
	return append(b, 0, 0)
}

// countVal is the value of a count element (and what the dispatch rules
// compare it with): big endian, so nft lists the number.
func countVal(v uint32) []byte { return binaryutil.BigEndian.PutUint32(v) }

// slotKey is the key of a dnat element: the forward and the slot, in host
// byte order (numgen writes its register natively; nft lists the slot as
// it is).
func slotKey(k dataplane.Key, slot uint32) []byte {
	return append(fwdKey(k), binaryutil.NativeEndian.PutUint32(slot)...)
}

// destVal is the value of a dnat element: the endpoint's address . port.
func destVal(ap netip.AddrPort) []byte {
	b := ap.Addr().AsSlice()
	b = binary.BigEndian.AppendUint16(b, ap.Port())
	return append(b, 0, 0)
}

// allowKeys are the key and the key end of the allow element that admits
// sources in p to forward k.
func allowKeys(k dataplane.Key, p netip.Prefix) (key, end []byte) {
	first, last := prefixBounds(p)
	return append(fwdKey(k), first.AsSlice()...), append(fwdKey(k), last.AsSlice()...)
}

// prefixBounds are the first and the last address of p.
func prefixBounds(p netip.Prefix) (netip.Addr, netip.Addr) {
	p = p.Masked()
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	last, _ := netip.AddrFromSlice(b)
	return p.Addr(), last
}

// parseAllow decodes an allow element back into its forward and prefix;
// false when the range is not exactly one prefix (not written by us).
func parseAllow(key, end []byte) (dataplane.Key, netip.Prefix, bool) {
	var n int
	switch len(key) {
	case 12 + 4:
		n = 4
	case 24 + 16:
		n = 16
	default:
		return dataplane.Key{}, netip.Prefix{}, false
	}
	if len(end) != len(key) {
		return dataplane.Key{}, netip.Prefix{}, false
	}
	k, ok := parseFwdKey(key[:len(key)-n])
	k2, ok2 := parseFwdKey(end[:len(end)-n])
	first, _ := netip.AddrFromSlice(key[len(key)-n:])
	last, _ := netip.AddrFromSlice(end[len(end)-n:])
	if !ok || !ok2 || k != k2 {
		return dataplane.Key{}, netip.Prefix{}, false
	}
	for bits := 0; bits <= n*8; bits++ {
		p := netip.PrefixFrom(first, bits)
		if f, l := prefixBounds(p); f == first && l == last {
			return k, p, true
		}
	}
	return dataplane.Key{}, netip.Prefix{}, false
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

func parseSlotKey(b []byte) (dataplane.Key, uint32, bool) {
	if len(b) < 4 {
		return dataplane.Key{}, 0, false
	}
	k, ok := parseFwdKey(b[:len(b)-4])
	return k, binaryutil.NativeEndian.Uint32(b[len(b)-4:]), ok
}

// parseCount decodes a count element's value; -1 if it is none.
func parseCount(b []byte) int {
	if len(b) != 4 {
		return -1
	}
	return int(binary.BigEndian.Uint32(b))
}

// parseDest decodes a dnat element's value; the zero AddrPort if it is
// none.
func parseDest(b []byte) netip.AddrPort {
	if len(b) != 8 && len(b) != 20 {
		return netip.AddrPort{}
	}
	a, _ := netip.AddrFromSlice(b[:len(b)-4])
	return netip.AddrPortFrom(a, binary.BigEndian.Uint16(b[len(b)-4:]))
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
