package nft

import (
	"context"
	"fmt"

	"github.com/google/nftables"
)

// Watch calls changed whenever something removes a part of the table: the
// table itself (`nft flush ruleset`, a firewall service restarting), one of
// its chains, rules or sets. Element changes are not reported (the writer
// makes them all the time). Watch returns when ctx ends, or with an error
// when the kernel's event stream breaks (events were lost: the caller
// should re-check the table and watch again).
func Watch(ctx context.Context, opts Options, changed func()) error {
	if opts.Table == "" {
		opts.Table = DefaultTable
	}
	conn, err := opts.conn()
	if err != nil {
		return err
	}
	// Every event, filtered here: v0.3.0 maps MonitorActionDel alone to no
	// event at all (seen on these machines).
	mon := nftables.NewMonitor(nftables.WithMonitorEventBuffer(1024))
	events, err := conn.AddMonitor(mon)
	if err != nil {
		return fmt.Errorf("nft: monitor: %w", err)
	}
	defer mon.Close()
	ours := func(t *nftables.Table) bool {
		return t != nil && t.Name == opts.Table && (t.Family == nftables.TableFamilyINet || t.Family == nftables.TableFamilyUnspecified)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				return fmt.Errorf("nft: monitor closed")
			}
			switch ev.Type {
			case nftables.MonitorEventTypeOOB:
				return fmt.Errorf("nft: monitor: %w", ev.Error)
			case nftables.MonitorEventTypeDelTable:
				if t, _ := ev.Data.(*nftables.Table); ours(t) {
					changed()
				}
			case nftables.MonitorEventTypeDelChain:
				if c, _ := ev.Data.(*nftables.Chain); c != nil && ours(c.Table) {
					changed()
				}
			case nftables.MonitorEventTypeDelRule:
				if r, _ := ev.Data.(*nftables.Rule); r != nil && ours(r.Table) {
					changed()
				}
			case nftables.MonitorEventTypeDelSet:
				if s, _ := ev.Data.(*nftables.Set); s != nil && ours(s.Table) {
					changed()
				}
			}
		}
	}
}

// Watch is Watch for the writer's table and namespace.
func (w *Writer) Watch(ctx context.Context, changed func()) error { return Watch(ctx, w.opts, changed) }
