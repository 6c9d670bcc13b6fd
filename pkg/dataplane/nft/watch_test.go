//go:build privileged

package nft

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eiplb/eiplb/pkg/dataplane"
)

// TestWatchReportsRemovals: a flush of the whole ruleset, or a chain of the
// table deleted by hand, is reported; element changes the writer makes are
// not.
func TestWatchReportsRemovals(t *testing.T) {
	ns, fd := labNS(t)
	w := newWriter(t, fd, dataplane.ModeNftables)
	d := sampleTable()
	if err := w.Sync(d); err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Watch(ctx, func() { n.Add(1) }) }()
	t.Cleanup(func() { cancel(); <-done })
	time.Sleep(100 * time.Millisecond) // the monitor is joined

	wait := func(what string) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for n.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("no report after %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// An endpoint change: elements only, nothing reported.
	tc := d.Set(svc("dns", []string{"192.0.2.11"},
		dataplane.Forward{Key: key("192.0.2.11", dataplane.UDP, 53), Endpoints: []dataplane.Endpoint{ep("10.1.0.4:5353", true)}}))
	if err := w.Apply(d, tc); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if got := n.Load(); got != 0 {
		t.Fatalf("%d reports for the writer's own element changes", got)
	}
	nft(t, ns, "flush", "ruleset")
	wait("nft flush ruleset")
}
