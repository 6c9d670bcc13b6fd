//go:build privileged

package nft

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/eiplb/eiplb/pkg/dataplane"
)

func sampleTable() *dataplane.Table {
	t := dataplane.NewTable(dataplane.ModeNftables)
	t.Set(svc("web", []string{"192.0.2.10", "2001:db8::10"},
		dataplane.Forward{Key: key("192.0.2.10", dataplane.TCP, 80), Endpoints: []dataplane.Endpoint{
			ep("10.1.0.2:8080", true), ep("10.2.0.2:8080", false),
		}},
		dataplane.Forward{Key: key("2001:db8::10", dataplane.TCP, 80), Endpoints: []dataplane.Endpoint{
			ep("[fd00:1::2]:8080", true),
		}},
	))
	t.Set(svc("dns", []string{"192.0.2.11"},
		dataplane.Forward{Key: key("192.0.2.11", dataplane.UDP, 53), Endpoints: []dataplane.Endpoint{
			ep("10.1.0.3:5353", true),
		}, Restricted: true, Sources: []netip.Prefix{netip.MustParsePrefix("198.51.100.7/32"), netip.MustParsePrefix("203.0.113.0/24")}},
	))
	return t
}

func TestSyncListsExpectedContent(t *testing.T) {
	ns, fd := labNS(t)
	before := nft(t, ns, "list", "ruleset")
	w := newWriter(t, fd, dataplane.ModeNftables)
	if err := w.Load(); err != nil {
		t.Fatal(err)
	}
	d := sampleTable()
	if err := w.Sync(d); err != nil {
		t.Fatal(err)
	}
	if w.Transactions() != 1 {
		t.Errorf("Sync took %d transactions, want 1", w.Transactions())
	}
	out := nft(t, ns, "list", "table", "inet", "eiplb")
	for _, want := range []string{
		"type ipv4_addr . inet_proto . inet_service : mark",
		"type ipv4_addr . inet_proto . inet_service . mark : ipv4_addr . inet_service",
		"type ipv6_addr . inet_proto . inet_service . mark : ipv6_addr . inet_service",
		"192.0.2.10 . tcp . 80 : 0x00000002",
		"192.0.2.11 . udp . 53 : 0x00000001",
		"2001:db8::10 . tcp . 80 : 0x00000001",
		"192.0.2.10 . tcp . 80 . 0x00000000 : 10.1.0.2 . 8080",
		"192.0.2.10 . tcp . 80 . 0x00000001 : 10.2.0.2 . 8080",
		"192.0.2.11 . udp . 53 . 0x00000000 : 10.1.0.3 . 5353",
		"2001:db8::10 . tcp . 80 . 0x00000000 : fd00:1::2 . 8080",
		"chain spread4/1 {", "chain spread4/2 {", "chain spread6/1 {",
		"ct label set 100 dnat ip to ip daddr . meta l4proto . th dport . numgen random mod 2 map @dnat4",
		"dnat ip6 to ip6 daddr . meta l4proto . th dport . numgen random mod 1 map @dnat6",
		"ip daddr . meta l4proto . th dport map @count4 0x2 [invalid type] goto spread4/2",
		"ip6 daddr . meta l4proto . th dport map @count6 0x1 [invalid type] goto spread6/1",
		"ip daddr @eips4 jump spread4",
		"10.1.0.2 . 10.1.0.2",
		`comment "eiplb:v3:dnat4"`,
		"type nat hook prerouting priority dstnat - 10",
		"type nat hook postrouting priority srcnat + 10",
		"type filter hook forward priority filter - 10",
		"reject with tcp reset",
		"ct label 100",
		"masquerade",
		"type ipv4_addr . inet_proto . inet_service . ipv4_addr",
		"flags interval",
		"192.0.2.11 . udp . 53 . 198.51.100.7",
		"192.0.2.11 . udp . 53 . 203.0.113.0/24",
		"ip daddr . meta l4proto . th dport @fw4 ip daddr . meta l4proto . th dport . ip saddr != @allow4 drop",
		"ip6 daddr . meta l4proto . th dport @fw6 ip6 daddr . meta l4proto . th dport . ip6 saddr != @allow6 drop",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("nft list lacks %q:\n%s", want, out)
		}
	}
	for _, gone := range []string{"fw/", "ep/", "fwd4"} {
		if strings.Contains(out, gone) {
			t.Errorf("nft list holds %q:\n%s", gone, out)
		}
	}
	// The whole ruleset lists too (nft aborts on encodings it cannot
	// delinearize).
	nft(t, ns, "list", "ruleset")
	if t.Failed() {
		return
	}

	// A second writer (an agent restart) loads and syncs: nothing to write.
	w2 := newWriter(t, fd, dataplane.ModeNftables)
	if err := w2.Load(); err != nil {
		t.Fatal(err)
	}
	if err := w2.Sync(d); err != nil {
		t.Fatal(err)
	}
	if w2.Changes() != 0 || w2.Transactions() != 0 {
		t.Errorf("Sync after Load wrote %d changes in %d transactions, want none", w2.Changes(), w2.Transactions())
	}

	// One endpoint changes: only that forward's elements.
	tc := d.Set(svc("web", []string{"192.0.2.10", "2001:db8::10"},
		dataplane.Forward{Key: key("192.0.2.10", dataplane.TCP, 80), Endpoints: []dataplane.Endpoint{
			ep("10.1.0.2:8080", true), ep("10.1.0.9:8080", true),
		}},
		dataplane.Forward{Key: key("2001:db8::10", dataplane.TCP, 80), Endpoints: []dataplane.Endpoint{
			ep("[fd00:1::2]:8080", true),
		}},
	))
	if err := w2.Apply(d, tc); err != nil {
		t.Fatal(err)
	}
	// dnat slot 1 deleted and added, masq 10.2.0.2 deleted, hairpin
	// 10.1.0.9 added; one transaction.
	if got := w2.Changes(); got != 4 || w2.Transactions() != 1 {
		t.Errorf("Apply of one endpoint change wrote %d changes in %d transactions, want 4 in 1", got, w2.Transactions())
	}
	out = nft(t, ns, "list", "table", "inet", "eiplb")
	if strings.Contains(out, "10.2.0.2") || !strings.Contains(out, "192.0.2.10 . tcp . 80 . 0x00000001 : 10.1.0.9 . 8080") {
		t.Errorf("after Apply:\n%s", out)
	}

	// A third writer agrees with the kernel after the Apply.
	w3 := newWriter(t, fd, dataplane.ModeNftables)
	if err := w3.Load(); err != nil {
		t.Fatal(err)
	}
	if err := w3.Sync(d); err != nil || w3.Changes() != 0 {
		t.Errorf("Sync after Apply + Load: %v, %d changes", err, w3.Changes())
	}

	// Deleting a service removes its elements, and the spread chain of
	// its endpoint count, which it alone used.
	if err := w3.Apply(d, d.Delete("default/dns")); err != nil {
		t.Fatal(err)
	}
	out = nft(t, ns, "list", "table", "inet", "eiplb")
	for _, gone := range []string{"192.0.2.11", "udp", "10.1.0.3", "spread4/1"} {
		if strings.Contains(out, gone) {
			t.Errorf("%q still listed after delete:\n%s", gone, out)
		}
	}

	if err := Cleanup(Options{NetNS: fd}); err != nil {
		t.Fatal(err)
	}
	if err := Cleanup(Options{NetNS: fd}); err != nil {
		t.Errorf("second Cleanup: %v", err)
	}
	if after := nft(t, ns, "list", "ruleset"); after != before {
		t.Errorf("ruleset after Cleanup:\n%s\nwant:\n%s", after, before)
	}
}

func TestOutdatedBaseRulesReplaced(t *testing.T) {
	ns, fd := labNS(t)
	w := newWriter(t, fd, dataplane.ModeNftables)
	d := sampleTable()
	if err := w.Sync(d); err != nil {
		t.Fatal(err)
	}
	// An "older version" rule in forward, with another comment.
	c, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		t.Fatal(err)
	}
	tbl := &nftables.Table{Name: "eiplb", Family: nftables.TableFamilyINet}
	c.AddRule(&nftables.Rule{Table: tbl, Chain: &nftables.Chain{Name: "forward", Table: tbl},
		Exprs: []expr.Any{&expr.Counter{}}, UserData: comment("eiplb:v0:old")})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	handle := func() string {
		out := nft(t, ns, "-a", "list", "chain", "inet", "eiplb", "forward")
		i := strings.Index(out, "hook forward")
		return out[:i]
	}
	before := handle()

	w2 := newWriter(t, fd, dataplane.ModeNftables)
	if err := w2.Load(); err != nil {
		t.Fatal(err)
	}
	if err := w2.Sync(d); err != nil {
		t.Fatal(err)
	}
	out := nft(t, ns, "-a", "list", "chain", "inet", "eiplb", "forward")
	if strings.Contains(out, "eiplb:v0:old") || strings.Count(out, "eiplb:v3:") != 4 {
		t.Errorf("forward after Sync:\n%s", out)
	}
	if handle() != before {
		t.Errorf("forward chain was recreated")
	}
	// The other base chains were not touched: 4 rules + the chain flush.
	if w2.Changes() != 5 {
		t.Errorf("Sync wrote %d changes, want 5", w2.Changes())
	}
}

func TestKubeProxyMode(t *testing.T) {
	ns, fd := labNS(t)
	w := newWriter(t, fd, dataplane.ModeKubeProxy)
	d := dataplane.NewTable(dataplane.ModeKubeProxy)
	d.Set(svc("web", []string{"192.0.2.10", "2001:db8::10"}))
	if err := w.Sync(d); err != nil {
		t.Fatal(err)
	}
	out := nft(t, ns, "list", "table", "inet", "eiplb")
	for _, bad := range []string{"nat", "count4", "masq", "spread"} {
		if strings.Contains(out, bad) {
			t.Errorf("kube-proxy mode table holds %q:\n%s", bad, out)
		}
	}
	if !strings.Contains(out, "192.0.2.10") || !strings.Contains(out, "2001:db8::10") {
		t.Errorf("EIPs missing:\n%s", out)
	}

	// Switching an nftables-mode table to kube-proxy mode removes the NAT part.
	if err := Cleanup(Options{NetNS: fd}); err != nil {
		t.Fatal(err)
	}
	wn := newWriter(t, fd, dataplane.ModeNftables)
	if err := wn.Sync(sampleTable()); err != nil {
		t.Fatal(err)
	}
	wk := newWriter(t, fd, dataplane.ModeKubeProxy)
	if err := wk.Load(); err != nil {
		t.Fatal(err)
	}
	if err := wk.Sync(d); err != nil {
		t.Fatal(err)
	}
	out = nft(t, ns, "list", "table", "inet", "eiplb")
	for _, bad := range []string{"nat", "count4", "dnat4", "masq", "spread", "192.0.2.11"} {
		if strings.Contains(out, bad) {
			t.Errorf("after switch to kube-proxy mode the table holds %q:\n%s", bad, out)
		}
	}
}

func TestFailedFlushKeepsMirror(t *testing.T) {
	ns, fd := labNS(t)
	w := newWriter(t, fd, dataplane.ModeNftables)
	d := sampleTable()
	if err := w.Sync(d); err != nil {
		t.Fatal(err)
	}
	// Someone deletes an element behind the writer's back: the next Apply
	// that replaces it fails, and Load + Sync repairs.
	nft(t, ns, "delete", "element", "inet", "eiplb", "count4", "{ 192.0.2.11 . udp . 53 }")
	tc := d.Set(svc("dns", []string{"192.0.2.11"},
		dataplane.Forward{Key: key("192.0.2.11", dataplane.UDP, 53), Endpoints: []dataplane.Endpoint{
			ep("10.1.0.3:5353", true), ep("10.1.0.4:5353", true),
		}},
	))
	if err := w.Apply(d, tc); err == nil {
		t.Fatal("Apply on an element deleted behind the writer's back succeeded")
	}
	if strings.Contains(nft(t, ns, "list", "table", "inet", "eiplb"), "10.1.0.4") {
		t.Fatal("failed transaction left changes")
	}
	if err := w.Load(); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(d); err != nil {
		t.Fatal(err)
	}
	out := nft(t, ns, "list", "table", "inet", "eiplb")
	if !strings.Contains(out, "192.0.2.11 . udp . 53 : 0x00000002") || !strings.Contains(out, "192.0.2.11 . udp . 53 . 0x00000001 : 10.1.0.4 . 5353") {
		t.Errorf("after Load + Sync:\n%s", out)
	}
}
