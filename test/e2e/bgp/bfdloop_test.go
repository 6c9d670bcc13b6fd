//go:build privileged

package bgp_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eiplb/eiplb/test/e2e/cluster"
	"github.com/eiplb/eiplb/test/netlab"
)

// TestFRRBFDNoFlapLoop: BFD cannot turn one failure into a flap loop.
// GoBGP v4.8.0 (osrg/gobgp#3561, fixed in v4.9.0) queues the reset of a BFD
// detection-time expiry or remote Down that comes while the BGP session is
// already down (the router dropped it first, on its own BFD Down), and the
// next session reads it the moment it is established and closes: one
// extra reset, and against a router that deletes its BFD session with the
// BGP one (FRR with `bgp listen range`) a loop that never ends. A speaker
// with the sample peer (MD5, graceful restart, BFD 100 ms x 5) against FRR
// with a fixed neighbor and with docs/routers/frr-dynamic.conf: BFD dropped
// on the router for 3 s, then its bfdd restarted. After each, the session
// comes back once and stays established with BFD up for 60 s.
func TestFRRBFDNoFlapLoop(t *testing.T) {
	for _, tc := range []struct{ name, conf string }{
		{"fixed neighbor", frrConfig([]string{"192.168.100.11"}, "password "+cluster.SamplePassword, "bfd profile eiplb")},
		{"listen range", cluster.FRRConfigFile("frr-dynamic.conf")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := newTopo(t)
			frr := tp.lab.StartFRR(tp.rtr, tc.conf)
			peer := grPeer()
			peer.BFD = sampleBFD(t)
			peer.Password = cluster.SamplePassword
			prefix := "172.30.0.10/32"
			spec := speakerSpec{RouterID: netip.MustParseAddr("192.168.100.11"), ASN: 65001, Paths: nodePaths(prefix)}
			spec.Peers = append(spec.Peers, peer)
			sp := startSpeakerProc(t, tp.nodes[0], spec)
			all := netlab.Via("192.168.100.11", "192.168.100.12", "192.168.100.13")
			tp.rtr.WaitRoute(t, prefix, 20*time.Second, all)
			eventually(t, 15*time.Second, func() string { return frrSteady(frr, "192.168.100.11") })

			for _, ph := range []struct {
				name    string
				disturb func()
			}{
				{"BFD dropped for 3 s", func() { dropBFD(t, tp.rtr, 3*time.Second) }},
				{"bfdd restarted", func() { frr.RestartDaemon("bfdd") }},
			} {
				ups := sp.sessionsUp(t)
				start := time.Now()
				ph.disturb()
				// Back: reset by the disturbance, then established again
				// with BFD up on the router.
				eventually(t, 30*time.Second, func() string {
					if n := sp.sessionsUp(t); n == ups {
						return "the session was not reset"
					}
					return frrSteady(frr, "192.168.100.11")
				})
				back := time.Since(start)
				if _, found, err := tp.rtr.Route(prefix); err != nil || !found {
					tp.rtr.WaitRoute(t, prefix, 10*time.Second, all)
				}
				// The measurement window: the session must stay up, BFD
				// with it, and no new session may have started.
				const window = 60 * time.Second
				var broken string
				for end := time.Now().Add(window); time.Now().Before(end) && broken == ""; {
					if msg := frrSteady(frr, "192.168.100.11"); msg != "" {
						broken = fmt.Sprintf("%s after it came back: %s", time.Since(start).Round(time.Millisecond), msg)
					}
					time.Sleep(250 * time.Millisecond) // polling period of the window
				}
				resets := sp.sessionsUp(t) - ups
				t.Logf("%s: session back (BFD up) %v after the disturbance began; %d new session(s) over it and the next %v",
					ph.name, back.Round(time.Millisecond), resets, window)
				if broken != "" || resets != 1 {
					// FRR's diagnostics tell a missed-packet timeout (a
					// stall of the loaded machine: "control detection time
					// expired") from a reset sent by the speaker.
					diag, _ := frr.Vtysh("show bfd peers", "show bgp neighbors 192.168.100.11")
					t.Fatalf("%s: the session did not come back once and stay up: %d new sessions (want 1); %s\nFRR:\n%s", ph.name, resets, broken, diag)
				}
			}
		})
	}
}

// dropBFD drops every BFD control packet (UDP 3784) the router receives
// or sends for d, then lets them through again.
func dropBFD(t *testing.T, rtr *netlab.NS, d time.Duration) {
	t.Helper()
	const table = "eiplbt_bfddrop"
	run := func(cmd string) {
		t.Helper()
		if out, err := rtr.Exec(context.Background(), "nft", cmd); err != nil {
			t.Fatalf("nft %s: %v %s", cmd, err, out)
		}
	}
	run("add table inet " + table)
	t.Cleanup(func() { _, _ = rtr.Exec(context.Background(), "nft", "delete table inet "+table) })
	run("add chain inet " + table + " in { type filter hook input priority -10 ; }")
	run("add chain inet " + table + " out { type filter hook output priority -10 ; }")
	run("add rule inet " + table + " in udp dport 3784 drop")
	run("add rule inet " + table + " out udp dport 3784 drop")
	time.Sleep(d) // the outage itself
	run("delete table inet " + table)
}

// frrSteady is "" when FRR's session with the neighbor is established and
// its BFD session with it up, else what is not.
func frrSteady(frr *netlab.FRR, nbr string) string {
	var n map[string]bgpCounters
	if err := frr.VtyshJSON("show bgp neighbors "+nbr, &n); err != nil {
		return err.Error()
	}
	if s := n[nbr].State; s != "Established" {
		return "FRR's BGP session " + s
	}
	var peers []struct {
		Peer   string `json:"peer"`
		Status string `json:"status"`
	}
	if err := frr.VtyshJSON("show bfd peers", &peers); err != nil {
		return err.Error()
	}
	for _, p := range peers {
		if p.Peer == nbr && p.Status == "up" {
			return ""
		}
	}
	return fmt.Sprintf("FRR's BFD sessions: %+v", peers)
}

// sessionsUp counts the sessions the speaker has established so far
// (GoBGP logs "Peer Up" for each).
func (p *speakerProc) sessionsUp(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(p.log)
	must(t, err)
	return strings.Count(string(b), `"Peer Up"`)
}
