//go:build privileged

// Package dataplane_test sends packets through the tables pkg/dataplane/nft
// writes: a client namespace reaches EIPs routed to node1, which DNATs them
// to pods behind it and behind node2.
//
//	client 192.168.1.2 ── 192.168.1.1 node1 192.168.12.1 ── 192.168.12.2 node2
//	fd00:1::2               fd00:1::1   │ 10.1.1.1 ── pod1 10.1.1.2       │ 10.2.1.1 ── pod3 10.2.1.2
//	                                     │ fd00:11::1   fd00:11::2
//	                                     │ 10.1.2.1 ── pod2 10.1.2.2
//
// The client routes the EIPs via node1; node1's default route points back
// to the client (the "router"), so an unserved EIP port would loop if node1
// did not reject it.
package dataplane_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/eiplb/eiplb/pkg/dataplane"
	"github.com/eiplb/eiplb/pkg/dataplane/nft"
	"github.com/eiplb/eiplb/test/netlab"
)

const (
	eipCluster = "203.0.113.10"
	eipLocal   = "203.0.113.11"
	eipBare    = "203.0.113.12" // an EIP without any served port
	eip6       = "2001:db8:e::10"
)

type lab struct {
	client, node1, node2 *netlab.NS
	pods                 map[string]*netlab.NS // pod1, pod2 (node1), pod3 (node2)
	fd                   int                   // node1
}

func must(t *testing.T, ns *netlab.NS, args ...string) {
	t.Helper()
	if out, err := ns.Exec(context.Background(), args...); err != nil {
		t.Fatalf("%s: %v\n%s", ns.Name, err, out)
	}
}

func setup(t *testing.T) *lab {
	t.Helper()
	l := netlab.New(t)
	c := l.Namespace("client")
	n1 := l.Namespace("node1")
	n2 := l.Namespace("node2")
	p1, p2, p3 := l.Namespace("pod1"), l.Namespace("pod2"), l.Namespace("pod3")

	l.Link(c, "192.168.1.2/24", n1, "192.168.1.1/24")
	must(t, c, "ip", "addr", "add", "fd00:1::2/64", "dev", c.DevTo(n1), "nodad")
	must(t, n1, "ip", "addr", "add", "fd00:1::1/64", "dev", n1.DevTo(c), "nodad")
	l.Link(n1, "192.168.12.1/24", n2, "192.168.12.2/24")
	l.Link(n1, "10.1.1.1/24", p1, "10.1.1.2/24")
	must(t, n1, "ip", "addr", "add", "fd00:11::1/64", "dev", n1.DevTo(p1), "nodad")
	must(t, p1, "ip", "addr", "add", "fd00:11::2/64", "dev", p1.DevTo(n1), "nodad")
	l.Link(n1, "10.1.2.1/24", p2, "10.1.2.2/24")
	l.Link(n2, "10.2.1.1/24", p3, "10.2.1.2/24")

	// Packets that node1 routes back out of the link they came from would
	// make it send ICMP redirects to the on-link client, which use up the
	// per-host ICMP rate limit before the port unreachable of a reject.
	must(t, n1, "sysctl", "-qw", "net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf."+n1.DevTo(c)+".send_redirects=0")
	must(t, c, "ip", "route", "add", "203.0.113.0/24", "via", "192.168.1.1")
	must(t, c, "ip", "-6", "route", "add", "2001:db8:e::/64", "via", "fd00:1::1")
	must(t, n1, "ip", "route", "add", "default", "via", "192.168.1.2")
	must(t, n1, "ip", "-6", "route", "add", "default", "via", "fd00:1::2")
	must(t, n1, "ip", "route", "add", "10.2.1.0/24", "via", "192.168.12.2")
	must(t, n2, "ip", "route", "add", "default", "via", "192.168.12.1")
	must(t, p1, "ip", "route", "add", "default", "via", "10.1.1.1")
	must(t, p1, "ip", "-6", "route", "add", "default", "via", "fd00:11::1")
	must(t, p2, "ip", "route", "add", "default", "via", "10.1.2.1")
	must(t, p3, "ip", "route", "add", "default", "via", "10.2.1.1")

	lb := &lab{client: c, node1: n1, node2: n2, pods: map[string]*netlab.NS{"pod1": p1, "pod2": p2, "pod3": p3}}
	for name, ns := range lb.pods {
		serve(t, ns, name)
	}
	f, err := os.Open(n1.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	lb.fd = int(f.Fd())
	return lb
}

// serve answers every TCP connection on port 8080 with "<name> <client ip>".
func serve(t *testing.T, ns *netlab.NS, name string) {
	ln, err := ns.Listen("tcp", ":8080")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ap := netip.MustParseAddrPort(c.RemoteAddr().String())
			fmt.Fprintf(c, "%s %s\n", name, ap.Addr().Unmap())
			c.Close()
		}
	})
}

// ask opens a new TCP connection from ns to addr and returns "<pod> <ip>".
func ask(ns *netlab.NS, addr string) (pod, saw string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := ns.Dial(ctx, "tcp", addr)
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", "", err
	}
	f := strings.Fields(line)
	if len(f) != 2 {
		return "", "", fmt.Errorf("bad answer %q", line)
	}
	return f[0], f[1], nil
}

func ep(s string, local bool) dataplane.Endpoint {
	ap := netip.MustParseAddrPort(s)
	return dataplane.Endpoint{Addr: ap.Addr(), Port: ap.Port(), Local: local}
}

func fwd(eip string, p dataplane.Proto, port uint16, eps ...dataplane.Endpoint) dataplane.Forward {
	return dataplane.Forward{Key: dataplane.Key{EIP: netip.MustParseAddr(eip), Proto: p, Port: port}, Endpoints: eps}
}

func service(name string, eips []string, fws ...dataplane.Forward) dataplane.Service {
	s := dataplane.Service{Key: "default/" + name, Forwards: fws}
	for _, e := range eips {
		s.EIPs = append(s.EIPs, netip.MustParseAddr(e))
	}
	return s
}

var (
	clusterSvc = service("cluster", []string{eipCluster},
		fwd(eipCluster, dataplane.TCP, 80, ep("10.1.1.2:8080", true), ep("10.1.2.2:8080", true), ep("10.2.1.2:8080", false)))
	localSvc = service("local", []string{eipLocal},
		fwd(eipLocal, dataplane.TCP, 80, ep("10.1.1.2:8080", true), ep("10.1.2.2:8080", true)))
	bareSvc = service("bare", []string{eipBare})
	v6Svc   = service("v6", []string{eip6}, fwd(eip6, dataplane.TCP, 80, ep("[fd00:11::2]:8080", true)))
)

func desired() *dataplane.Table {
	d := dataplane.NewTable(dataplane.ModeNftables)
	for _, s := range []dataplane.Service{clusterSvc, localSvc, bareSvc, v6Svc} {
		d.Set(s)
	}
	return d
}

func writer(t *testing.T, fd int) *nft.Writer {
	return writerWith(t, nft.Options{Mode: dataplane.ModeNftables, NetNS: fd})
}

// writerWith is a loaded writer with opts.
func writerWith(t *testing.T, opts nft.Options) *nft.Writer {
	t.Helper()
	w, err := nft.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	if err := w.Load(); err != nil {
		t.Fatal(err)
	}
	return w
}

func ruleset(t *testing.T, ns *netlab.NS) string {
	t.Helper()
	out, err := ns.Exec(context.Background(), "nft", "list", "ruleset")
	if err != nil {
		t.Fatalf("nft list ruleset: %v\n%s", err, out)
	}
	return out
}

// spread asks n times and counts the answers per pod; every answer must
// come and name an expected client address.
func spread(t *testing.T, from *netlab.NS, addr string, n int, wantSaw map[string]string) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		pod, saw, err := ask(from, addr)
		if err != nil {
			t.Fatalf("request to %s: %v", addr, err)
		}
		got[pod]++
		if w, ok := wantSaw[pod]; ok && w != saw {
			t.Errorf("%s saw the client as %s, want %s", pod, saw, w)
		}
	}
	return got
}

func TestDataplane(t *testing.T) {
	lb := setup(t)
	before := ruleset(t, lb.node1)
	d := desired()
	w := writer(t, lb.fd)
	if err := w.Sync(d); err != nil {
		t.Fatal(err)
	}

	t.Run("cluster", func(t *testing.T) {
		got := spread(t, lb.client, eipCluster+":80", 60, map[string]string{
			"pod1": "192.168.1.2", "pod2": "192.168.1.2", "pod3": "192.168.12.1", // remote: masqueraded
		})
		if got["pod1"] == 0 || got["pod2"] == 0 || got["pod3"] == 0 {
			t.Errorf("answers per pod %v, want all three", got)
		}
	})

	t.Run("local", func(t *testing.T) {
		got := spread(t, lb.client, eipLocal+":80", 40, map[string]string{"pod1": "192.168.1.2", "pod2": "192.168.1.2"})
		if got["pod3"] != 0 || got["pod1"] == 0 || got["pod2"] == 0 {
			t.Errorf("answers per pod %v, want pod1 and pod2 only", got)
		}
	})

	t.Run("ipv6", func(t *testing.T) {
		pod, saw, err := ask(lb.client, "["+eip6+"]:80")
		if err != nil || pod != "pod1" || saw != "fd00:1::2" {
			t.Errorf("IPv6 EIP: %s %s %v, want pod1 fd00:1::2", pod, saw, err)
		}
	})

	t.Run("unserved", func(t *testing.T) {
		for _, addr := range []string{eipCluster + ":81", eipBare + ":80", eipLocal + ":443"} {
			start := time.Now()
			_, _, err := ask(lb.client, addr)
			if !errors.Is(err, syscall.ECONNREFUSED) || time.Since(start) > time.Second {
				t.Errorf("TCP to unserved %s: %v after %v, want connection refused at once", addr, err, time.Since(start))
			}
		}
		// UDP: ICMP port unreachable makes the connected socket's read fail.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c, err := lb.client.Dial(ctx, "udp", eipCluster+":9999")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		var rerr error
		for range 3 {
			if _, err := c.Write([]byte("x")); err != nil {
				rerr = err
				break
			}
			if _, rerr = c.Read(make([]byte, 16)); rerr != nil {
				break
			}
		}
		if !errors.Is(rerr, syscall.ECONNREFUSED) {
			t.Errorf("UDP to an unserved port: %v, want connection refused (ICMP port unreachable)", rerr)
		}
		// The node itself is rejected too (output hook), not routed out.
		if _, _, err := ask(lb.node1, eipBare+":80"); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("node to unserved EIP port: %v, want connection refused", err)
		}
	})

	t.Run("hairpin", func(t *testing.T) {
		if pod, _, err := ask(lb.node1, eipLocal+":80"); err != nil || (pod != "pod1" && pod != "pod2") {
			t.Errorf("node1 to its EIP: %s %v", pod, err)
		}
		if pod, saw, err := ask(lb.node1, eipCluster+":80"); err != nil || pod == "" {
			t.Errorf("node1 to its EIP (cluster): %s %s %v", pod, saw, err)
		}
		// A pod reaches its own Service, also landing on itself.
		got := spread(t, lb.pods["pod1"], eipLocal+":80", 40, map[string]string{"pod2": "10.1.1.2", "pod1": "10.1.1.1"})
		if got["pod1"] == 0 || got["pod2"] == 0 {
			t.Errorf("pod1 through its EIP reached %v, want itself and pod2", got)
		}
	})

	t.Run("endpoint removed", func(t *testing.T) {
		tc := d.Set(service("cluster", []string{eipCluster},
			fwd(eipCluster, dataplane.TCP, 80, ep("10.1.1.2:8080", true), ep("10.2.1.2:8080", false))))
		if err := w.Apply(d, tc); err != nil {
			t.Fatal(err)
		}
		got := spread(t, lb.client, eipCluster+":80", 50, nil)
		if got["pod2"] != 0 || got["pod1"] == 0 || got["pod3"] == 0 {
			t.Errorf("after removing pod2: answers %v", got)
		}
	})

	t.Run("endpoint count changes", func(t *testing.T) {
		// A forward goes from 2 to 3 to 1 endpoints: the spread chains in
		// use change (spread4/3 appears, then spread4/1 replaces it) while
		// a client keeps asking.
		const eipScale = "203.0.113.13"
		steps := []struct {
			eps  []dataplane.Endpoint
			pods []string
		}{
			{[]dataplane.Endpoint{ep("10.1.1.2:8080", true), ep("10.2.1.2:8080", false)}, []string{"pod1", "pod3"}},
			{[]dataplane.Endpoint{ep("10.1.1.2:8080", true), ep("10.1.2.2:8080", true), ep("10.2.1.2:8080", false)}, []string{"pod1", "pod2", "pod3"}},
			{[]dataplane.Endpoint{ep("10.1.2.2:8080", true)}, []string{"pod2"}},
		}
		var (
			wg       sync.WaitGroup
			failures []error
			asked    int
		)
		stop := make(chan struct{})
		for i, st := range steps {
			tc := d.Set(service("scale", []string{eipScale}, fwd(eipScale, dataplane.TCP, 80, st.eps...)))
			if err := w.Apply(d, tc); err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				// From now on the EIP must answer, also during the changes.
				wg.Go(func() {
					for range 2000 {
						select {
						case <-stop:
							return
						default:
						}
						asked++
						if _, _, err := ask(lb.client, eipScale+":80"); err != nil {
							failures = append(failures, err)
						}
					}
				})
			}
			got := spread(t, lb.client, eipScale+":80", 60, nil)
			for pod, n := range got {
				if !slices.Contains(st.pods, pod) {
					t.Errorf("step %d: %d new connections reached %s, endpoints %v", i, n, pod, st.pods)
				}
			}
			for _, pod := range st.pods {
				if got[pod] == 0 {
					t.Errorf("step %d: no answer from %s: %v", i, pod, got)
				}
			}
			rs := ruleset(t, lb.node1)
			switch i {
			case 1:
				if !strings.Contains(rs, "chain spread4/3 {") {
					t.Errorf("step %d: no chain spread4/3:\n%s", i, rs)
				}
			case 2:
				if strings.Contains(rs, "spread4/3") || !strings.Contains(rs, "chain spread4/1 {") {
					t.Errorf("step %d: spread4/3 left or spread4/1 missing:\n%s", i, rs)
				}
			}
		}
		close(stop)
		wg.Wait()
		if len(failures) != 0 || asked < 10 {
			t.Errorf("%d of %d requests failed while the endpoint count changed: %v", len(failures), asked, failures)
		}
	})

	t.Run("restart without loss", func(t *testing.T) {
		// A new agent: new writer, Load, Sync of the same table.
		var w2 *nft.Writer
		duringRequests(t, lb.client, 200, func(int) string { return eipCluster + ":80" }, func() {
			w2 = writer(t, lb.fd)
			if err := w2.Sync(d); err != nil {
				t.Error(err)
			}
		}, "the restart")
		if w2.Changes() != 0 {
			t.Errorf("restart Sync wrote %d changes, want 0", w2.Changes())
		}
	})

	t.Run("cleanup", func(t *testing.T) {
		if err := nft.Cleanup(nft.Options{NetNS: lb.fd}); err != nil {
			t.Fatal(err)
		}
		if after := ruleset(t, lb.node1); after != before {
			t.Errorf("ruleset after Cleanup:\n%s\nwant:\n%s", after, before)
		}
		// Nothing DNATs any more: the EIP is routed back to the "router",
		// which returns it: no answer.
		if _, _, err := ask(lb.client, eipCluster+":80"); err == nil {
			t.Error("EIP still answers after Cleanup")
		}
	})
}

// TestUpgradeFromV1: node1 holds the table of the first layout (a verdict
// map to one chain per forward and one per endpoint, written here with nft
// from the same desired table); a new writer's Load + Sync replaces it in one
// transaction, without recreating the base chains, while a client keeps
// asking: no request fails.
func TestUpgradeFromV1(t *testing.T) {
	lb := setup(t)
	d := desired()
	writeV1(t, lb, d)
	handles := func() string {
		out, err := lb.node1.Exec(context.Background(), "nft", "-a", "list", "chains", "inet")
		if err != nil {
			t.Fatalf("nft list chains: %v\n%s", err, out)
		}
		var hooks []string
		for line := range strings.Lines(out) {
			if strings.Contains(line, "chain ") && !strings.Contains(line, "/") && !strings.Contains(line, "spread") && !strings.Contains(line, "internal") {
				hooks = append(hooks, strings.TrimSpace(line))
			}
		}
		return strings.Join(hooks, "\n")
	}
	before := handles()
	if strings.Count(before, "handle") != 5 {
		t.Fatalf("base chains of the v1 table:\n%s", before)
	}
	// The v1 table serves.
	if got := spread(t, lb.client, eipCluster+":80", 30, nil); got["pod1"] == 0 || got["pod2"] == 0 || got["pod3"] == 0 {
		t.Fatalf("through the v1 table: answers %v", got)
	}

	var w *nft.Writer
	duringRequests(t, lb.client, 300, func(i int) string {
		if i%2 == 1 {
			return "[" + eip6 + "]:80"
		}
		return eipCluster + ":80"
	}, func() {
		w = writer(t, lb.fd)
		if err := w.Sync(d); err != nil {
			t.Error(err)
		}
	}, "the upgrade")
	if w.Transactions() != 1 {
		t.Errorf("upgrade took %d transactions, want 1", w.Transactions())
	}
	if after := handles(); after != before {
		t.Errorf("base chains recreated:\n%s\nwant:\n%s", after, before)
	}
	rs := ruleset(t, lb.node1)
	for _, gone := range []string{"fw/", "ep/", "fwd4", "fwd6", "eiplb:v1:"} {
		if strings.Contains(rs, gone) {
			t.Errorf("%q left after the upgrade:\n%s", gone, rs)
		}
	}
	// The upgraded table is the one a fresh writer wants, and it serves.
	w2 := writer(t, lb.fd)
	if err := w2.Sync(d); err != nil || w2.Changes() != 0 {
		t.Errorf("Sync after the upgrade: %v, %d changes", err, w2.Changes())
	}
	if got := spread(t, lb.client, eipCluster+":80", 30, nil); got["pod1"] == 0 || got["pod2"] == 0 || got["pod3"] == 0 {
		t.Errorf("after the upgrade: answers %v", got)
	}
}

// writeV1 writes d into node1 in the first kernel layout, as the v1 writer
// did: the maps and the fw/ and ep/ chains through netlink (nft cannot
// parse a chain name with a colon), the base chains with nft.
func writeV1(t *testing.T, lb *lab, d *dataplane.Table) {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(lb.fd))
	if err != nil {
		t.Fatal(err)
	}
	tbl := c.AddTable(&nftables.Table{Name: "eiplb", Family: nftables.TableFamilyINet})
	label := make([]byte, 16)
	label[100/8] = 1 << (100 % 8)
	var gotos []func() error // verdict elements, added after the chains they go to
	for _, v4 := range []bool{true, false} {
		addr, suffix := nftables.TypeIPAddr, "4"
		if !v4 {
			addr, suffix = nftables.TypeIP6Addr, "6"
		}
		sets := []*nftables.Set{
			{Table: tbl, Name: "eips" + suffix, KeyType: addr},
			{Table: tbl, Name: "masq" + suffix, KeyType: addr},
			{Table: tbl, Name: "hairpin" + suffix, KeyType: nftables.MustConcatSetType(addr, addr), Concatenation: true},
			{Table: tbl, Name: "fwd" + suffix, KeyType: nftables.MustConcatSetType(addr, nftables.TypeInetProto, nftables.TypeInetService),
				Concatenation: true, IsMap: true, DataType: nftables.TypeVerdict},
		}
		elems := [][]nftables.SetElement{nil, nil, nil, nil}
		for a := range d.EIPs {
			if a.Is4() == v4 {
				elems[0] = append(elems[0], nftables.SetElement{Key: a.AsSlice()})
			}
		}
		for a := range d.Masq {
			if a.Is4() == v4 {
				elems[1] = append(elems[1], nftables.SetElement{Key: a.AsSlice()})
			}
		}
		for a := range d.Hairpin {
			if a.Is4() == v4 {
				elems[2] = append(elems[2], nftables.SetElement{Key: append(a.AsSlice(), a.AsSlice()...)})
			}
		}
		for k := range d.Forwards {
			if k.EIP.Is4() == v4 {
				key := append(k.EIP.AsSlice(), byte(k.Proto), 0, 0, 0, byte(k.Port>>8), byte(k.Port), 0, 0)
				elems[3] = append(elems[3], nftables.SetElement{Key: key,
					VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: "fw/" + k.String()}})
			}
		}
		for i, s := range sets {
			if err := c.AddSet(s, nil); err != nil {
				t.Fatal(err)
			}
			if len(elems[i]) > 0 && i < 3 {
				if err := c.SetAddElements(s, elems[i]); err != nil {
					t.Fatal(err)
				}
			}
		}
		if len(elems[3]) > 0 {
			gotos = append(gotos, func() error { return c.SetAddElements(sets[3], elems[3]) })
		}
	}
	eps := map[netip.AddrPort]bool{}
	for _, fw := range d.Forwards {
		for _, e := range fw.Endpoints {
			eps[e.AddrPort()] = true
		}
	}
	for ap := range eps {
		ch := c.AddChain(&nftables.Chain{Table: tbl, Name: "ep/" + ap.String()})
		family := uint32(unix.NFPROTO_IPV6)
		if ap.Addr().Is4() {
			family = unix.NFPROTO_IPV4
		}
		c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{
			&expr.Immediate{Register: unix.NFT_REG_1, Data: ap.Addr().AsSlice()},
			&expr.Immediate{Register: unix.NFT_REG_2, Data: []byte{byte(ap.Port() >> 8), byte(ap.Port())}},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: family, RegAddrMin: unix.NFT_REG_1, RegProtoMin: unix.NFT_REG_2},
		}})
	}
	for k, fw := range d.Forwards {
		ch := c.AddChain(&nftables.Chain{Table: tbl, Name: "fw/" + k.String()})
		set := &nftables.Set{Table: tbl, Anonymous: true, Constant: true, IsMap: true, KeyType: nftables.TypeInteger, DataType: nftables.TypeVerdict}
		var el []nftables.SetElement
		for i, e := range fw.Endpoints {
			el = append(el, nftables.SetElement{Key: binaryutil.NativeEndian.PutUint32(uint32(i)),
				VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: "ep/" + e.AddrPort().String()}})
		}
		if err := c.AddSet(set, el); err != nil {
			t.Fatal(err)
		}
		c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{
			&expr.Immediate{Register: unix.NFT_REG_1, Data: label},
			&expr.Ct{Register: unix.NFT_REG_1, SourceRegister: true, Key: expr.CtKeyLABELS},
			&expr.Numgen{Register: unix.NFT_REG_1, Modulus: uint32(len(fw.Endpoints)), Type: unix.NFT_NG_RANDOM},
			&expr.Lookup{SourceRegister: unix.NFT_REG_1, SetName: set.Name, SetID: set.ID, DestRegister: unix.NFT_REG_VERDICT, IsDestRegSet: true},
		}})
	}
	for _, add := range gotos {
		if err := add(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatalf("v1 objects: %v", err)
	}
	f, err := os.CreateTemp(t.TempDir(), "v1-*.nft")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(v1Base); err != nil {
		t.Fatal(err)
	}
	f.Close()
	must(t, lb.node1, "nft", "-f", f.Name())
}

// v1Base: the base chains of the v1 layout and their rules.
const v1Base = `table inet eiplb {
  chain prerouting {
    type nat hook prerouting priority -110;
    meta nfproto ipv4 ip daddr . meta l4proto . th dport vmap @fwd4 comment "eiplb:v1:fwd4"
    meta nfproto ipv6 ip6 daddr . meta l4proto . th dport vmap @fwd6 comment "eiplb:v1:fwd6"
  }
  chain output {
    type nat hook output priority -110;
    meta nfproto ipv4 ip daddr . meta l4proto . th dport vmap @fwd4 comment "eiplb:v1:fwd4"
    meta nfproto ipv6 ip6 daddr . meta l4proto . th dport vmap @fwd6 comment "eiplb:v1:fwd6"
  }
  chain postrouting {
    type nat hook postrouting priority 110;
    ct label 100 meta nfproto ipv4 ip daddr @masq4 masquerade comment "eiplb:v1:masq4"
    ct label 100 meta nfproto ipv4 ip saddr . ip daddr @hairpin4 masquerade comment "eiplb:v1:hairpin4"
    ct label 100 meta nfproto ipv6 ip6 daddr @masq6 masquerade comment "eiplb:v1:masq6"
    ct label 100 meta nfproto ipv6 ip6 saddr . ip6 daddr @hairpin6 masquerade comment "eiplb:v1:hairpin6"
  }
  chain forward {
    type filter hook forward priority -10;
    meta nfproto ipv4 ip daddr @eips4 meta l4proto tcp reject with tcp reset comment "eiplb:v1:reset4"
    meta nfproto ipv4 ip daddr @eips4 reject with icmpx port-unreachable comment "eiplb:v1:unreach4"
    meta nfproto ipv6 ip6 daddr @eips6 meta l4proto tcp reject with tcp reset comment "eiplb:v1:reset6"
    meta nfproto ipv6 ip6 daddr @eips6 reject with icmpx port-unreachable comment "eiplb:v1:unreach6"
  }
  chain out-filter {
    type filter hook output priority -10;
    meta nfproto ipv4 ip daddr @eips4 meta l4proto tcp reject with tcp reset comment "eiplb:v1:reset4"
    meta nfproto ipv4 ip daddr @eips4 reject with icmpx port-unreachable comment "eiplb:v1:unreach4"
    meta nfproto ipv6 ip6 daddr @eips6 meta l4proto tcp reject with tcp reset comment "eiplb:v1:reset6"
    meta nfproto ipv6 ip6 daddr @eips6 reject with icmpx port-unreachable comment "eiplb:v1:unreach6"
  }
}
`

// TestKubeProxyModePackets: with --dataplane=kube-proxy, kube-proxy does the
// DNAT (stood in for by one nft rule in a table of its own, as kube-proxy's
// nftables mode would); eiplb only protects the EIPs: the served port works
// through kube-proxy's rule, an unserved one is refused on the node instead
// of looping back to the client side.
func TestKubeProxyModePackets(t *testing.T) {
	lb := setup(t)
	must(t, lb.node1, "nft", "add table ip kp")
	must(t, lb.node1, "nft", "add chain ip kp pre { type nat hook prerouting priority -100; }")
	must(t, lb.node1, "nft", "add rule ip kp pre ip daddr "+eipCluster+" tcp dport 80 dnat to 10.1.1.2:8080")

	w, err := nft.New(nft.Options{Mode: dataplane.ModeKubeProxy, NetNS: lb.fd})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	if err := w.Load(); err != nil {
		t.Fatal(err)
	}
	d := dataplane.NewTable(dataplane.ModeKubeProxy)
	d.Set(clusterSvc)
	if err := w.Sync(d); err != nil {
		t.Fatal(err)
	}
	if pod, saw, err := ask(lb.client, eipCluster+":80"); err != nil || pod != "pod1" || saw != "192.168.1.2" {
		t.Fatalf("served port through kube-proxy's rule: %s %s %v, want pod1 seeing the client", pod, saw, err)
	}
	start := time.Now()
	if _, _, err := ask(lb.client, eipCluster+":81"); !errors.Is(err, syscall.ECONNREFUSED) || time.Since(start) > time.Second {
		t.Fatalf("unserved port: %v after %v, want connection refused at once", err, time.Since(start))
	}
	if out := ruleset(t, lb.node1); strings.Contains(out, "dnat ip to ip daddr") {
		t.Fatalf("eiplb DNATs in kube-proxy mode:\n%s", out)
	}
}

// duringRequests sends n requests from the client one after the other (to
// addr(i)) and runs action once 50 have gone; every request must succeed.
func duringRequests(t *testing.T, client *netlab.NS, n int, addr func(i int) string, action func(), what string) {
	t.Helper()
	var (
		wg       sync.WaitGroup
		failures []error
		answers  int
	)
	half := make(chan struct{})
	wg.Go(func() {
		for i := range n {
			if i == 50 {
				close(half)
			}
			if _, _, err := ask(client, addr(i)); err != nil {
				failures = append(failures, err)
			} else {
				answers++
			}
		}
	})
	<-half
	action()
	wg.Wait()
	if len(failures) != 0 || answers != n {
		t.Errorf("%d of %d requests failed during %s: %v", len(failures), n, what, failures)
	}
}
