// Package nft writes the content of a dataplane.Table into the kernel's
// nftables over netlink, in table "inet eiplb" (see dataplane.Table for the
// layout). A Writer keeps a mirror of what the kernel holds, so a change
// writes only the difference, in one transaction.
//
// Base chains (the hooks) are created when missing and never flushed or
// deleted on start, so an agent restart drops no traffic; their rules carry
// the comment baseVersion and are replaced when a writer finds older ones.
// Services live only in map elements (count4, dnat4, ...), so a Service
// change is a few element updates in one transaction. The chains are few:
// one spread chain per endpoint count in use (its one rule carries a short
// hash of its rendering, dataplane.SpreadChainRule, and is rewritten only
// when the hash differs) and one dispatch chain per family, rewritten when
// the set of counts in use changes. The first full Sync after Load replaces
// the objects of an older layout (v1: fw/ and ep/ chains, fwd4/fwd6 maps) in
// the same transaction as it writes the new ones.
package nft

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/eiplb/eiplb/pkg/dataplane"
)

// DefaultTable is the name of the table when Options.Table is empty.
const DefaultTable = "eiplb"

// Options configure a Writer.
type Options struct {
	// Table is the name of the inet table; DefaultTable if empty.
	Table string
	// Mode decides which chains and sets exist (see dataplane.Mode).
	Mode dataplane.Mode
	// NetNS is the fd of a network namespace to work in; 0: the current one.
	NetNS int
	// PodCIDRs hold the addresses of this node's pods (or the whole
	// cluster's): connections from them to an EIP are in-cluster traffic
	// (dataplane.Key.Internal), as the node's own are.
	PodCIDRs []netip.Prefix
}

// conn opens a netlink connection to nftables in the options' namespace.
func (o Options) conn(extra ...nftables.ConnOption) (*nftables.Conn, error) {
	if o.NetNS != 0 {
		extra = append(extra, nftables.WithNetNSFd(o.NetNS))
	}
	c, err := nftables.New(extra...)
	if err != nil {
		return nil, fmt.Errorf("nft: netlink: %w", err)
	}
	return c, nil
}

func (o Options) withDefaults() (Options, error) {
	if o.Table == "" {
		o.Table = DefaultTable
	}
	switch o.Mode {
	case dataplane.ModeNftables, dataplane.ModeKubeProxy:
	default:
		return o, fmt.Errorf("nft: unknown mode %q", o.Mode)
	}
	return o, nil
}

// Writer writes dataplane.Tables into the kernel. It is not safe for
// concurrent use; the caller serializes.
type Writer struct {
	opts  Options
	table *nftables.Table
	conn  *nftables.Conn
	nl    *netlink.Conn // the lasting socket of conn (buffer sizes, rule dumps)
	buf   int           // socket buffer size set on nl
	m     *mirror

	changes      uint64
	transactions uint64
}

// New opens a lasting netlink connection. The mirror starts empty: call
// Load before the first Sync (or Apply) when the table may exist.
func New(opts Options) (*Writer, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	w := &Writer{
		opts:  opts,
		table: &nftables.Table{Name: opts.Table, Family: nftables.TableFamilyINet},
		m:     newMirror(),
	}
	if err := w.dial(); err != nil {
		return nil, err
	}
	return w, nil
}

// minBuf is the socket buffer size a connection starts with; a large
// transaction grows it (acks of every message queue up until it is read).
const minBuf = 4 << 20

func (w *Writer) dial() error {
	var nl *netlink.Conn
	conn, err := w.opts.conn(nftables.AsLasting(),
		nftables.WithSockOptions(func(c *netlink.Conn) error { nl = c; return nil }))
	if err != nil {
		return err
	}
	if nl == nil {
		_ = conn.CloseLasting()
		return errors.New("nft: netlink: no socket")
	}
	w.conn, w.nl, w.buf = conn, nl, 0
	if err := w.grow(minBuf); err != nil {
		_ = conn.CloseLasting()
		return err
	}
	return nil
}

// grow raises the socket's send and receive buffers to at least n bytes
// (the FORCE options need CAP_NET_ADMIN, which writing nftables needs too).
func (w *Writer) grow(n int) error {
	if n <= w.buf {
		return nil
	}
	rc, err := w.nl.SyscallConn()
	if err != nil {
		return fmt.Errorf("nft: netlink: %w", err)
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = errors.Join(
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, n),
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n),
		)
	})
	if err = errors.Join(err, serr); err != nil {
		return fmt.Errorf("nft: socket buffers: %w", err)
	}
	w.buf = n
	return nil
}

// redial replaces the connection after a failed transaction: messages
// left queued or unread acks must not leak into the next one.
func (w *Writer) redial() error {
	_ = w.conn.CloseLasting()
	return w.dial()
}

// Close closes the netlink connection. The kernel keeps the table.
func (w *Writer) Close() error {
	return w.conn.CloseLasting()
}

// Changes is the number of changes (chains, rules, elements, sets) the
// writer sent to the kernel so far.
func (w *Writer) Changes() uint64 { return w.changes }

// Transactions is the number of transactions the writer sent so far.
func (w *Writer) Transactions() uint64 { return w.transactions }

// Sync makes the kernel's table equal to desired: everything desired holds
// and everything the mirror holds is compared, in one transaction. After
// Load it repairs whatever differs, without flushing anything.
func (w *Writer) Sync(desired *dataplane.Table) error {
	if err := w.checkMode(desired); err != nil {
		return err
	}
	tc := desired.All()
	m := w.m
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
	w.plan(t, desired, tc, true)
	return w.commit(t)
}

// Apply writes the difference between desired and the mirror for the names
// in touched only, in one transaction; its cost follows the size of
// touched, not of the table.
func (w *Writer) Apply(desired *dataplane.Table, touched dataplane.Touched) error {
	if err := w.checkMode(desired); err != nil {
		return err
	}
	t := newTxn()
	w.plan(t, desired, touched, false)
	return w.commit(t)
}

func (w *Writer) checkMode(d *dataplane.Table) error {
	if d.Mode != w.opts.Mode {
		return fmt.Errorf("nft: table of mode %q given to a writer of mode %q", d.Mode, w.opts.Mode)
	}
	return nil
}

// Cleanup deletes the table and everything in it. A missing table is no
// error.
func Cleanup(opts Options) error {
	if opts.Table == "" {
		opts.Table = DefaultTable
	}
	conn, err := opts.conn()
	if err != nil {
		return err
	}
	conn.DelTable(&nftables.Table{Name: opts.Table, Family: nftables.TableFamilyINet})
	if err := conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("nft: delete table %s: %w", opts.Table, err)
	}
	return nil
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
	// and ep/ chains refer to each other: all are flushed before any goes)
	stSetDel   // sets the mode does not use, maps of older layouts
	stStrayDel // chains this version does not know
	nStages
)

// maxElems bounds the elements of one netlink message (its attributes
// have 16-bit lengths).
const maxElems = 256

// op is one change: what to queue on the connection, and what to record in
// the mirror once the kernel accepted it.
type op struct {
	n    int
	do   func(c *nftables.Conn) error
	done func(m *mirror)
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

func (t *txn) op(stage int, n int, do func(c *nftables.Conn) error, done func(m *mirror)) {
	t.stages[stage] = append(t.stages[stage], op{n: n, do: do, done: done})
	t.changes += n
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

// commit sends t in one transaction and updates the mirror with what the
// kernel accepted. Nothing is sent when nothing differs.
func (w *Writer) commit(t *txn) error {
	if t.changes == 0 {
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(t.elems)) {
		ops := t.elems[name]
		for c := range slices.Chunk(ops.dels, maxElems) {
			t.stages[stElemDel] = append(t.stages[stElemDel], op{do: func(cc *nftables.Conn) error { return cc.SetDeleteElements(ops.set, c) }})
		}
		for c := range slices.Chunk(ops.adds, maxElems) {
			t.stages[stElemAdd] = append(t.stages[stElemAdd], op{do: func(cc *nftables.Conn) error { return cc.SetAddElements(ops.set, c) }})
		}
	}
	var all []op
	for _, s := range t.stages {
		all = append(all, s...)
	}
	return w.flush(all, t.commits)
}

// flush sends ops in one transaction (one Flush) and, if the kernel
// accepted it, records them and commits in the mirror.
func (w *Writer) flush(ops []op, commits []func(m *mirror)) error {
	changes := len(commits)
	for _, o := range ops {
		changes += o.n
	}
	if len(ops) == 0 {
		for _, f := range commits {
			f(w.m)
		}
		return nil
	}
	// Every message is acked and every rule echoed: the socket must hold
	// them all until Flush reads them.
	if err := w.grow(min(len(ops)*4096+minBuf, 1<<30)); err != nil {
		return err
	}
	for _, o := range ops {
		if err := o.do(w.conn); err != nil {
			return errors.Join(fmt.Errorf("nft: %w", err), w.redial())
		}
	}
	if err := w.conn.Flush(); err != nil {
		return errors.Join(fmt.Errorf("nft: transaction of %d changes: %w", changes, err), w.redial())
	}
	w.transactions++
	w.changes += uint64(changes)
	for _, o := range ops {
		if o.done != nil {
			o.done(w.m)
		}
	}
	for _, f := range commits {
		f(w.m)
	}
	return nil
}

// plan adds to t what makes the names of tc in the kernel equal to desired;
// full also removes sets, base chains and unknown chains the mode does not
// use.
func (w *Writer) plan(t *txn, d *dataplane.Table, tc dataplane.Touched, full bool) {
	m, tbl := w.m, w.table
	mode := w.opts.Mode

	if !m.table {
		t.op(stTable, 1, func(c *nftables.Conn) error { c.AddTable(tbl); return nil }, func(m *mirror) { m.table = true })
	}
	sets := map[string]*nftables.Set{}
	for _, s := range setSpecs {
		sets[s.name] = s.set(tbl)
		switch want, have := wantSet(mode, s), m.sets[s.name]; {
		case want && !have:
			set := sets[s.name]
			t.op(stSets, 1, func(c *nftables.Conn) error { return c.AddSet(set, nil) }, func(m *mirror) { m.sets[set.Name] = true })
		case !want && have && full:
			w.delSet(t, s.name)
		}
	}
	if full {
		for _, name := range legacySets {
			if m.sets[name] {
				w.delSet(t, name)
			}
		}
	}

	nat := mode == dataplane.ModeNftables
	for _, k := range uniq(tc.Forwards) {
		fw, want := d.Forwards[k]
		w.planForward(t, sets, k, fw, nat && want && len(fw.Endpoints) > 0)
	}
	for _, k := range uniq(tc.Firewall) {
		srcs, want := d.Firewall[k]
		w.planFirewall(t, sets, k, srcs, nat && want)
	}
	planAddrs(t, uniq(tc.EIPs), d.EIPs, m.eips, sets[setEIPs4], sets[setEIPs6], addrKey, true)
	planAddrs(t, uniq(tc.Masq), d.Masq, m.masq, sets[setMasq4], sets[setMasq6], addrKey, nat)
	planAddrs(t, uniq(tc.Hairpin), d.Hairpin, m.hairpin, sets[setHairpin4], sets[setHairpin6], hairpinKey, nat)

	spreads := uniq(tc.Spreads)
	for _, sp := range spreads {
		w.planSpread(t, sp, nat && d.Spreads[sp] > 0)
	}
	for _, kind := range dispatchChains {
		w.planDispatch(t, d, kind, nat, full || len(spreads) > 0)
	}

	for _, b := range baseSpecs {
		w.planBase(t, b, full)
	}
	if full {
		for name := range m.stray {
			ch := &nftables.Chain{Table: tbl, Name: name}
			t.op(stStrayFlush, 1, func(c *nftables.Conn) error { c.FlushChain(ch); return nil }, nil)
			t.op(stStrayDel, 1, func(c *nftables.Conn) error { c.DelChain(ch); return nil }, func(m *mirror) { delete(m.stray, ch.Name) })
		}
	}
}

func (w *Writer) delSet(t *txn, name string) {
	set := &nftables.Set{Table: w.table, Name: name}
	t.op(stSetDel, 1, func(c *nftables.Conn) error { c.DelSet(set); return nil }, func(m *mirror) { delete(m.sets, name) })
}

// planForward updates the elements of forward k: its count and one dnat
// element per endpoint slot. A changed element is deleted and added again
// in the same transaction (the kernel has no replace), which is atomic.
func (w *Writer) planForward(t *txn, sets map[string]*nftables.Set, k dataplane.Key, fw dataplane.Forward, want bool) {
	cname, dname := dataplane.Spread{V6: k.EIP.Is6(), Internal: k.Internal}.Maps()
	count, dnat := sets[cname], sets[dname]
	n, val := 0, 0
	if want {
		n, val = len(fw.Endpoints), int(dataplane.SpreadOf(fw).Value())
	}
	if have, ok := w.m.count[k]; !ok || have != val {
		if ok {
			t.elem(count, false, nftables.SetElement{Key: fwdKey(k)})
			t.then(func(m *mirror) { delete(m.count, k) })
		}
		if want {
			t.elem(count, true, nftables.SetElement{Key: fwdKey(k), Val: countVal(uint32(val))})
			t.then(func(m *mirror) { m.count[k] = val })
		}
	}
	have := w.m.dnat[k]
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
func (w *Writer) planFirewall(t *txn, sets map[string]*nftables.Set, k dataplane.Key, srcs []netip.Prefix, want bool) {
	v4 := k.EIP.Is4()
	fw, allow := sets[fam(v4, setFw4, setFw6)], sets[fam(v4, setAllow4, setAllow6)]
	switch have := w.m.fw[k]; {
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
	for p := range w.m.allow[k] {
		if !wanted[p] {
			key, end := allowKeys(k, p)
			t.elem(allow, false, nftables.SetElement{Key: key, KeyEnd: end})
			t.then(func(m *mirror) { m.setAllow(k, p, false) })
		}
	}
	for p := range wanted {
		if !w.m.allow[k][p] {
			key, end := allowKeys(k, p)
			t.elem(allow, true, nftables.SetElement{Key: key, KeyEnd: end})
			t.then(func(m *mirror) { m.setAllow(k, p, true) })
		}
	}
}

// planSpread makes chain sp.Chain() hold its one rule, or deletes it (after
// the dispatch chain stopped going there).
func (w *Writer) planSpread(t *txn, sp dataplane.Spread, want bool) {
	ch := &nftables.Chain{Table: w.table, Name: sp.Chain()}
	have, ok := w.m.spread[sp]
	if !want {
		if ok {
			t.op(stSpreadDel, 1, func(c *nftables.Conn) error { c.DelChain(ch); return nil }, func(m *mirror) { delete(m.spread, sp) })
		}
		return
	}
	h := hash(dataplane.SpreadChainRule(sp))
	if ok && have == h {
		return
	}
	rule := &nftables.Rule{Table: w.table, Chain: ch, Exprs: spreadExprs(sp), UserData: comment(h)}
	writeChain(t, stSpread, 1, ch, ok, []*nftables.Rule{rule}, func(m *mirror) { m.spread[sp] = h })
}

// writeChain queues chain ch with exactly rules: created when it does not
// exist, otherwise its rules replaced in the same transaction (the chain,
// and the traffic through it, stays). n is the number of changes counted.
func writeChain(t *txn, stage, n int, ch *nftables.Chain, exists bool, rules []*nftables.Rule, done func(m *mirror)) {
	t.op(stage, n, func(c *nftables.Conn) error {
		if exists {
			c.FlushChain(ch)
		} else {
			c.AddChain(ch)
		}
		for _, r := range rules {
			c.AddRule(r)
		}
		return nil
	}, done)
}

// planDispatch makes the family's dispatch chain hold one rule per spread
// in use, in order of N, rewriting it whole when that set changed (rarely:
// a first forward with a new number of endpoints, or the last one gone).
// check: compare with the mirror (a full Sync, or spreads were touched).
func (w *Writer) planDispatch(t *txn, d *dataplane.Table, kind dataplane.Spread, nat, check bool) {
	name := kind.Dispatch()
	ch := &nftables.Chain{Table: w.table, Name: name}
	have, ok := w.m.dispatch[name]
	if !nat {
		if ok {
			t.op(stDispatchDel, 1, func(c *nftables.Conn) error { c.DelChain(ch); return nil }, func(m *mirror) { delete(m.dispatch, name) })
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
		rules[i] = &nftables.Rule{Table: w.table, Chain: ch, Exprs: dispatchExprs(sp), UserData: comment(comments[i])}
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

func (w *Writer) planBase(t *txn, b baseSpec, full bool) {
	have, ok := w.m.base[b.name]
	want := wantBase(w.opts.Mode, b)
	ch := &nftables.Chain{
		Table: w.table, Name: b.name, Type: b.typ, Hooknum: b.hook,
		Priority: nftables.ChainPriorityRef(nftables.ChainPriority(b.prio)),
	}
	if !want {
		if ok && full {
			t.op(stBase, 1, func(c *nftables.Conn) error { c.DelChain(ch); return nil }, func(m *mirror) { delete(m.base, ch.Name) })
		}
		return
	}
	rules := b.rules(w.opts)
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
		nrules[i] = &nftables.Rule{Table: w.table, Chain: ch, Exprs: r.exprs, UserData: comment(comments[i])}
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
