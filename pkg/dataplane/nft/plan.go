package nft

import (
	"maps"
	"net/netip"
	"slices"

	"github.com/google/nftables"

	"github.com/eiplb/eiplb/pkg/dataplane"
)

// planner computes the transaction that brings the kernel's table from
// what the mirror holds to a desired dataplane.Table. It does no I/O: a
// transaction is data (the ops below, in kernel order), which the Writer
// sends over netlink (send) and tests compare with golden files without
// root. Each op carries what to record in the mirror once the kernel
// accepted the whole transaction.
type planner struct {
	opts  Options
	table *nftables.Table
	m     *mirror
}

// planSync plans a full Sync: every name desired holds and every name the
// mirror holds is compared.
func (pl *planner) planSync(desired *dataplane.Table) *txn {
	tc := desired.All()
	m := pl.m
	for a := range m.eips {
		tc.EIPs = append(tc.EIPs, a)
	}
	for a := range m.masq {
		tc.Masq = append(tc.Masq, a)
	}
	for a := range m.hairpin {
		tc.Hairpin = append(tc.Hairpin, a)
	}
	for k := range m.count {
		tc.Forwards = append(tc.Forwards, k)
	}
	for k := range m.dnat {
		tc.Forwards = append(tc.Forwards, k)
	}
	for sp := range m.spread {
		tc.Spreads = append(tc.Spreads, sp)
	}
	for k := range m.fw {
		tc.Firewall = append(tc.Firewall, k)
	}
	for k := range m.allow {
		tc.Firewall = append(tc.Firewall, k)
	}
	t := newTxn()
	pl.plan(t, desired, tc, true)
	return t
}

// planApply plans an Apply: only the names in touched are compared.
func (pl *planner) planApply(desired *dataplane.Table, touched dataplane.Touched) *txn {
	t := newTxn()
	pl.plan(t, desired, touched, false)
	return t
}

// Transaction stages, in the order the kernel's reference counting needs:
// things are added before what refers to them and deleted after.
const (
	stTable       = iota
	stSets        // named sets and maps
	stSpread      // spread chains and their rules (lookup @dnat4)
	stElemDel     // set and map elements
	stElemAdd     //
	stDispatch    // dispatch chains (goto spread4/N, lookup @count4)
	stBase        // base chains and their rules (jump spread4)
	stDispatchDel // dispatch chains of a mode without NAT
	stSpreadDel   // spread chains nothing dispatches to any more
	stStrayFlush  // rules of chains this version does not know (v1's fw/
	// and ep/ chains refer to each other: all are flushed before any goes).
	stSetDel   // sets the mode does not use, maps of older layouts
	stStrayDel // chains this version does not know
	nStages
)

// maxElems bounds the elements of one netlink message (its attributes
// have 16-bit lengths).
const maxElems = 256

// opKind is what an op asks of the kernel.
type opKind int

const (
	opAddTable   opKind = iota // the table
	opAddSet                   // set (empty)
	opDelSet                   // set
	opWriteChain               // chain created, or flushed when exists, then rules added
	opFlushChain               // chain's rules deleted
	opDelChain                 // chain
	opAddElems                 // elems added to set
	opDelElems                 // elems deleted from set
)

// op is one change of a transaction, as data: what to send (send turns it
// into netlink messages), the number of changes it counts for (n), and what
// to record in the mirror once the kernel accepted it (done).
type op struct {
	kind   opKind
	stage  int // set by txn.op: ops of one stage may go in any order
	table  *nftables.Table
	set    *nftables.Set
	chain  *nftables.Chain
	exists bool // opWriteChain: the chain exists (flush it, don't add it)
	rules  []*nftables.Rule
	elems  []nftables.SetElement
	n      int
	done   func(m *mirror)
}

type elemOps struct {
	set        *nftables.Set
	adds, dels []nftables.SetElement
}

// txn collects the changes of one Sync or Apply.
type txn struct {
	stages  [nStages][]op
	elems   map[string]*elemOps
	commits []func(m *mirror) // of the element changes
	changes int
}

func newTxn() *txn { return &txn{elems: map[string]*elemOps{}} }

func (t *txn) op(stage int, o op) {
	o.stage = stage
	t.stages[stage] = append(t.stages[stage], o)
	t.changes += o.n
}

func (t *txn) then(f func(m *mirror)) { t.commits = append(t.commits, f) }

func (t *txn) elem(set *nftables.Set, add bool, e nftables.SetElement) {
	ops := t.elems[set.Name]
	if ops == nil {
		ops = &elemOps{set: set}
		t.elems[set.Name] = ops
	}
	if add {
		ops.adds = append(ops.adds, e)
	} else {
		ops.dels = append(ops.dels, e)
	}
	t.changes++
}

// ops are the changes of t in the order the kernel gets them: by stage,
// element changes by set name, in messages of at most maxElems elements.
// None when nothing differs.
func (t *txn) ops() []op {
	if t.changes == 0 {
		return nil
	}
	stages := t.stages
	for _, name := range slices.Sorted(maps.Keys(t.elems)) {
		e := t.elems[name]
		for c := range slices.Chunk(e.dels, maxElems) {
			stages[stElemDel] = append(stages[stElemDel], op{kind: opDelElems, stage: stElemDel, set: e.set, elems: c})
		}
		for c := range slices.Chunk(e.adds, maxElems) {
			stages[stElemAdd] = append(stages[stElemAdd], op{kind: opAddElems, stage: stElemAdd, set: e.set, elems: c})
		}
	}
	var all []op
	for _, s := range stages {
		all = append(all, s...)
	}
	return all
}

// count is the number of changes t makes (what Writer.Changes counts).
func (t *txn) count() int {
	n := len(t.commits)
	for _, s := range t.stages {
		for _, o := range s {
			n += o.n
		}
	}
	return n
}

// record updates m with t, once the kernel accepted it.
func (t *txn) record(m *mirror) {
	for _, s := range t.stages {
		for _, o := range s {
			if o.done != nil {
				o.done(m)
			}
		}
	}
	for _, f := range t.commits {
		f(m)
	}
}

// plan adds to t what makes the names of tc in the kernel equal to desired;
// full also removes sets, base chains and unknown chains the mode does not
// use.
func (pl *planner) plan(t *txn, d *dataplane.Table, tc dataplane.Touched, full bool) {
	m, tbl := pl.m, pl.table
	mode := pl.opts.Mode

	if !m.table {
		t.op(stTable, op{kind: opAddTable, table: tbl, n: 1, done: func(m *mirror) { m.table = true }})
	}
	sets := map[string]*nftables.Set{}
	for _, s := range setSpecs {
		sets[s.name] = s.set(tbl)
		switch want, have := wantSet(mode, s), m.sets[s.name]; {
		case want && !have:
			set := sets[s.name]
			t.op(stSets, op{kind: opAddSet, set: set, n: 1, done: func(m *mirror) { m.sets[set.Name] = true }})
		case !want && have && full:
			pl.delSet(t, s.name)
		}
	}
	if full {
		for _, name := range legacySets {
			if m.sets[name] {
				pl.delSet(t, name)
			}
		}
	}

	nat := mode == dataplane.ModeNftables
	for _, k := range uniq(tc.Forwards) {
		fw, want := d.Forwards[k]
		pl.planForward(t, sets, k, fw, nat && want && len(fw.Endpoints) > 0)
	}
	for _, k := range uniq(tc.Firewall) {
		srcs, want := d.Firewall[k]
		pl.planFirewall(t, sets, k, srcs, nat && want)
	}
	planAddrs(t, uniq(tc.EIPs), d.EIPs, m.eips, sets[setEIPs4], sets[setEIPs6], addrKey, true)
	planAddrs(t, uniq(tc.Masq), d.Masq, m.masq, sets[setMasq4], sets[setMasq6], addrKey, nat)
	planAddrs(t, uniq(tc.Hairpin), d.Hairpin, m.hairpin, sets[setHairpin4], sets[setHairpin6], hairpinKey, nat)

	spreads := uniq(tc.Spreads)
	for _, sp := range spreads {
		pl.planSpread(t, sp, nat && d.Spreads[sp] > 0)
	}
	for _, kind := range dispatchChains {
		pl.planDispatch(t, d, kind, nat, full || len(spreads) > 0)
	}

	for _, b := range baseSpecs {
		pl.planBase(t, b, full)
	}
	if full {
		for name := range m.stray {
			ch := &nftables.Chain{Table: tbl, Name: name}
			t.op(stStrayFlush, op{kind: opFlushChain, chain: ch, n: 1})
			t.op(stStrayDel, op{kind: opDelChain, chain: ch, n: 1, done: func(m *mirror) { delete(m.stray, ch.Name) }})
		}
	}
}

func (pl *planner) delSet(t *txn, name string) {
	set := &nftables.Set{Table: pl.table, Name: name}
	t.op(stSetDel, op{kind: opDelSet, set: set, n: 1, done: func(m *mirror) { delete(m.sets, name) }})
}

// planForward updates the elements of forward k: its count and one dnat
// element per endpoint slot. A changed element is deleted and added again
// in the same transaction (the kernel has no replace), which is atomic.
func (pl *planner) planForward(t *txn, sets map[string]*nftables.Set, k dataplane.Key, fw dataplane.Forward, want bool) {
	cname, dname := dataplane.Spread{V6: k.EIP.Is6(), Internal: k.Internal}.Maps()
	count, dnat := sets[cname], sets[dname]
	n, val := 0, 0
	if want {
		n, val = len(fw.Endpoints), int(dataplane.SpreadOf(fw).Value())
	}
	if have, ok := pl.m.count[k]; !ok || have != val {
		if ok {
			t.elem(count, false, nftables.SetElement{Key: fwdKey(k)})
			t.then(func(m *mirror) { delete(m.count, k) })
		}
		if want {
			t.elem(count, true, nftables.SetElement{Key: fwdKey(k), Val: countVal(uint32(val))})
			t.then(func(m *mirror) { m.count[k] = val })
		}
	}
	have := pl.m.dnat[k]
	for slot, ap := range have {
		if int64(slot) < int64(n) && fw.Endpoints[slot].AddrPort() == ap {
			continue
		}
		t.elem(dnat, false, nftables.SetElement{Key: slotKey(k, slot)})
		t.then(func(m *mirror) { m.delSlot(k, slot) })
	}
	for i := range n {
		slot, ap := uint32(i), fw.Endpoints[i].AddrPort()
		if cur, ok := have[slot]; ok && cur == ap {
			continue
		}
		t.elem(dnat, true, nftables.SetElement{Key: slotKey(k, slot), Val: destVal(ap)})
		t.then(func(m *mirror) { m.setSlot(k, slot, ap) })
	}
}

// planFirewall makes forward k restricted to the source ranges srcs
// (want), or not restricted: its fw element, and one allow element per
// range. The fw element is added with the allow elements and deleted with
// them, in one transaction: no packet sees a restricted forward without its
// ranges.
func (pl *planner) planFirewall(t *txn, sets map[string]*nftables.Set, k dataplane.Key, srcs []netip.Prefix, want bool) {
	v4 := k.EIP.Is4()
	fw, allow := sets[fam(v4, setFw4, setFw6)], sets[fam(v4, setAllow4, setAllow6)]
	switch have := pl.m.fw[k]; {
	case want && !have:
		t.elem(fw, true, nftables.SetElement{Key: fwdKey(k)})
		t.then(func(m *mirror) { m.fw[k] = true })
	case !want && have:
		t.elem(fw, false, nftables.SetElement{Key: fwdKey(k)})
		t.then(func(m *mirror) { delete(m.fw, k) })
	}
	wanted := map[netip.Prefix]bool{}
	if want {
		for _, p := range srcs {
			wanted[p] = true
		}
	}
	for p := range pl.m.allow[k] {
		if !wanted[p] {
			key, end := allowKeys(k, p)
			t.elem(allow, false, nftables.SetElement{Key: key, KeyEnd: end})
			t.then(func(m *mirror) { m.setAllow(k, p, false) })
		}
	}
	for p := range wanted {
		if !pl.m.allow[k][p] {
			key, end := allowKeys(k, p)
			t.elem(allow, true, nftables.SetElement{Key: key, KeyEnd: end})
			t.then(func(m *mirror) { m.setAllow(k, p, true) })
		}
	}
}

// planSpread makes chain sp.Chain() hold its one rule, or deletes it (after
// the dispatch chain stopped going there).
func (pl *planner) planSpread(t *txn, sp dataplane.Spread, want bool) {
	ch := &nftables.Chain{Table: pl.table, Name: sp.Chain()}
	have, ok := pl.m.spread[sp]
	if !want {
		if ok {
			t.op(stSpreadDel, op{kind: opDelChain, chain: ch, n: 1, done: func(m *mirror) { delete(m.spread, sp) }})
		}
		return
	}
	h := hash(dataplane.SpreadChainRule(sp))
	if ok && have == h {
		return
	}
	rule := &nftables.Rule{Table: pl.table, Chain: ch, Exprs: spreadExprs(sp), UserData: comment(h)}
	writeChain(t, stSpread, 1, ch, ok, []*nftables.Rule{rule}, func(m *mirror) { m.spread[sp] = h })
}

// writeChain queues chain ch with exactly rules: created when it does not
// exist, otherwise its rules replaced in the same transaction (the chain,
// and the traffic through it, stays). n is the number of changes counted.
func writeChain(t *txn, stage, n int, ch *nftables.Chain, exists bool, rules []*nftables.Rule, done func(m *mirror)) {
	t.op(stage, op{kind: opWriteChain, chain: ch, exists: exists, rules: rules, n: n, done: done})
}

// planDispatch makes the family's dispatch chain hold one rule per spread
// in use, in order of N, rewriting it whole when that set changed (rarely:
// a first forward with a new number of endpoints, or the last one gone).
// check: compare with the mirror (a full Sync, or spreads were touched).
func (pl *planner) planDispatch(t *txn, d *dataplane.Table, kind dataplane.Spread, nat, check bool) {
	name := kind.Dispatch()
	ch := &nftables.Chain{Table: pl.table, Name: name}
	have, ok := pl.m.dispatch[name]
	if !nat {
		if ok {
			t.op(stDispatchDel, op{kind: opDelChain, chain: ch, n: 1, done: func(m *mirror) { delete(m.dispatch, name) }})
		}
		return
	}
	if ok && !check {
		return
	}
	var spreads []dataplane.Spread
	for sp := range d.Spreads {
		if sp.V6 == kind.V6 && sp.Internal == kind.Internal {
			spreads = append(spreads, sp)
		}
	}
	slices.SortFunc(spreads, func(a, b dataplane.Spread) int { return a.N - b.N })
	comments := make([]string, len(spreads))
	for i, sp := range spreads {
		comments[i] = dispatchComment(sp)
	}
	if ok && slices.Equal(have, comments) {
		return
	}
	rules := make([]*nftables.Rule, len(spreads))
	for i, sp := range spreads {
		rules[i] = &nftables.Rule{Table: pl.table, Chain: ch, Exprs: dispatchExprs(sp), UserData: comment(comments[i])}
	}
	writeChain(t, stDispatch, 1+len(spreads), ch, ok, rules, func(m *mirror) { m.dispatch[name] = comments })
}

func planAddrs(t *txn, addrs []netip.Addr, want map[netip.Addr]int, have map[netip.Addr]bool,
	set4, set6 *nftables.Set, key func(netip.Addr) []byte, enabled bool) {
	for _, a := range addrs {
		set := set6
		if a.Is4() {
			set = set4
		}
		w, h := enabled && want[a] > 0, have[a]
		switch {
		case w && !h:
			t.elem(set, true, nftables.SetElement{Key: key(a)})
			t.then(func(m *mirror) { m.addrs(set.Name)[a] = true })
		case !w && h:
			t.elem(set, false, nftables.SetElement{Key: key(a)})
			t.then(func(m *mirror) { delete(m.addrs(set.Name), a) })
		}
	}
}

func (pl *planner) planBase(t *txn, b baseSpec, full bool) {
	have, ok := pl.m.base[b.name]
	want := wantBase(pl.opts.Mode, b)
	ch := &nftables.Chain{
		Table: pl.table, Name: b.name, Type: b.typ, Hooknum: b.hook,
		Priority: nftables.ChainPriorityRef(nftables.ChainPriority(b.prio)),
	}
	if !want {
		if ok && full {
			t.op(stBase, op{kind: opDelChain, chain: ch, n: 1, done: func(m *mirror) { delete(m.base, ch.Name) }})
		}
		return
	}
	rules := b.rules(pl.opts)
	comments := make([]string, len(rules))
	for i, r := range rules {
		comments[i] = r.comment()
	}
	if ok && slices.Equal(have, comments) {
		return
	}
	// Outdated rules are replaced in place (writeChain keeps the chain).
	nrules := make([]*nftables.Rule, len(rules))
	for i, r := range rules {
		nrules[i] = &nftables.Rule{Table: pl.table, Chain: ch, Exprs: r.exprs, UserData: comment(comments[i])}
	}
	writeChain(t, stBase, 1+len(rules), ch, ok, nrules, func(m *mirror) { m.base[ch.Name] = comments })
}

func uniq[T comparable](s []T) []T {
	if len(s) < 2 {
		return s
	}
	seen := make(map[T]struct{}, len(s))
	out := make([]T, 0, len(s))
	for _, v := range s {
		if _, ok := seen[v]; !ok {
			seen[v] = struct{}{}
			out = append(out, v)
		}
	}
	return out
}
