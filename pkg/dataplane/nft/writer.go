// Package nft writes the content of a dataplane.Table into the kernel's
// nftables over netlink, in table "inet eiplb" (see dataplane.Table for the
// layout). A Writer keeps a mirror of what the kernel holds, so a change
// writes only the difference, in one transaction. The transaction is
// planned as data by the planner (plan.go, no I/O, tested against golden
// transactions without root); only send and commit talk netlink.
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
	"net/netip"

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
	planner // opts, table and the mirror m
	conn    *nftables.Conn
	nl      *netlink.Conn // the lasting socket of conn (buffer sizes, rule dumps)
	buf     int           // socket buffer size set on nl

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
	w := &Writer{planner: planner{
		opts:  opts,
		table: &nftables.Table{Name: opts.Table, Family: nftables.TableFamilyINet},
		m:     newMirror(),
	}}
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
	return w.commit(w.planSync(desired))
}

// Apply writes the difference between desired and the mirror for the names
// in touched only, in one transaction; its cost follows the size of
// touched, not of the table.
func (w *Writer) Apply(desired *dataplane.Table, touched dataplane.Touched) error {
	if err := w.checkMode(desired); err != nil {
		return err
	}
	return w.commit(w.planApply(desired, touched))
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

// commit sends t in one transaction (one Flush) and, if the kernel
// accepted it, records it in the mirror. Nothing is sent when nothing
// differs.
func (w *Writer) commit(t *txn) error {
	ops := t.ops()
	if len(ops) == 0 {
		t.record(w.m)
		return nil
	}
	changes := t.count()
	// Every message is acked and every rule echoed: the socket must hold
	// them all until Flush reads them.
	if err := w.grow(min(len(ops)*4096+minBuf, 1<<30)); err != nil {
		return err
	}
	for _, o := range ops {
		if err := send(w.conn, o); err != nil {
			return errors.Join(fmt.Errorf("nft: %w", err), w.redial())
		}
	}
	if err := w.conn.Flush(); err != nil {
		return errors.Join(fmt.Errorf("nft: transaction of %d changes: %w", changes, err), w.redial())
	}
	w.transactions++
	w.changes += uint64(changes)
	t.record(w.m)
	return nil
}

// send queues o on c: the only place a planned change becomes netlink
// messages.
func send(c *nftables.Conn, o op) error {
	switch o.kind {
	case opAddTable:
		c.AddTable(o.table)
	case opAddSet:
		return c.AddSet(o.set, nil)
	case opDelSet:
		c.DelSet(o.set)
	case opWriteChain:
		if o.exists {
			c.FlushChain(o.chain)
		} else {
			c.AddChain(o.chain)
		}
		for _, r := range o.rules {
			c.AddRule(r)
		}
	case opFlushChain:
		c.FlushChain(o.chain)
	case opDelChain:
		c.DelChain(o.chain)
	case opAddElems:
		return c.SetAddElements(o.set, o.elems)
	case opDelElems:
		return c.SetDeleteElements(o.set, o.elems)
	default:
		return fmt.Errorf("unknown op %d", o.kind)
	}
	return nil
}
