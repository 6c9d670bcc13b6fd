//go:build privileged

package nft

import (
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
		}},
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
		"192.0.2.10 . tcp . 80 : goto fw/192.0.2.10/tcp/80",
		"192.0.2.11 . udp . 53 : goto fw/192.0.2.11/udp/53",
		"2001:db8::10 . tcp . 80 : goto fw/2001:db8::10/tcp/80",
		`chain fw/192.0.2.10/tcp/80 {`,
		"numgen random mod 2 vmap",
		`chain ep/10.1.0.2:8080 {`,
		"dnat ip to 10.1.0.2:8080",
		"dnat ip6 to [fd00:1::2]:8080",
		"10.1.0.2 . 10.1.0.2",
		`comment "eiplb:v1:fwd4"`,
		"type nat hook prerouting priority dstnat - 10",
		"type nat hook postrouting priority srcnat + 10",
		"type filter hook forward priority filter - 10",
		"reject with tcp reset",
		"ct label 100",
		"masquerade",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("nft list lacks %q:\n%s", want, out)
		}
	}
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

	// One endpoint changes: only that forward (and the endpoint chains).
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
	// fw rule replaced, ep/10.1.0.9 added, ep/10.2.0.2 deleted, masq 10.2.0.2
	// deleted, hairpin 10.1.0.9 added.
	if got := w2.Changes(); got != 5 {
		t.Errorf("Apply of one endpoint change wrote %d changes, want 5", got)
	}
	out = nft(t, ns, "list", "table", "inet", "eiplb")
	if strings.Contains(out, "10.2.0.2") || !strings.Contains(out, "chain ep/10.1.0.9:8080") {
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

	// Deleting a service removes its chains and elements.
	if err := w3.Apply(d, d.Delete("default/dns")); err != nil {
		t.Fatal(err)
	}
	out = nft(t, ns, "list", "table", "inet", "eiplb")
	for _, gone := range []string{"192.0.2.11", "udp", "10.1.0.3"} {
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
	if strings.Contains(out, "eiplb:v0:old") || strings.Count(out, "eiplb:v1:") != 4 {
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
	for _, bad := range []string{"nat", "fwd4", "masq"} {
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
	for _, bad := range []string{"nat", "fwd4", "masq", "fw/", "ep/", "192.0.2.11"} {
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
	// Someone deletes a chain behind the writer's back: the next Apply that
	// rewrites it fails, and Load + Sync repairs.
	nft(t, ns, "delete", "element", "inet", "eiplb", "fwd4", "{ 192.0.2.11 . udp . 53 }")
	nft(t, ns, "delete", "chain", "inet", "eiplb", "fw/192.0.2.11/udp/53")
	tc := d.Set(svc("dns", []string{"192.0.2.11"},
		dataplane.Forward{Key: key("192.0.2.11", dataplane.UDP, 53), Endpoints: []dataplane.Endpoint{
			ep("10.1.0.3:5353", true), ep("10.1.0.4:5353", true),
		}},
	))
	if err := w.Apply(d, tc); err == nil {
		t.Fatal("Apply on a chain deleted behind the writer's back succeeded")
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
	if !strings.Contains(out, "192.0.2.11 . udp . 53 : goto fw/192.0.2.11/udp/53") || !strings.Contains(out, "ep/10.1.0.4:5353") {
		t.Errorf("after Load + Sync:\n%s", out)
	}
}
