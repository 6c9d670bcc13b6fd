//go:build privileged

package netlab_test

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eiplb/eiplb/test/netlab"
)

// topology builds the lab's main topology: a router namespace "rtr" with
// bridge br0 (192.168.100.1/24, fd00:100::1/64) and n node namespaces
// "node1".."noden" at 192.168.100.1i/24 and fd00:100::1i/64.
func topology(t *testing.T, n int) (*netlab.Lab, *netlab.NS, []*netlab.NS) {
	t.Helper()
	lab := netlab.New(t)
	rtr := lab.Namespace("rtr")
	lab.Bridge(rtr, "br0", "192.168.100.1/24", "fd00:100::1/64")
	var nodes []*netlab.NS
	for i := 1; i <= n; i++ {
		node := lab.Namespace("node" + itoa(i))
		lab.LinkToBridge(node, []string{"192.168.100.1" + itoa(i) + "/24", "fd00:100::1" + itoa(i) + "/64"}, rtr, "br0")
		nodes = append(nodes, node)
	}
	return lab, rtr, nodes
}

func itoa(i int) string { return strconv.Itoa(i) }

const frrRouter = `frr defaults datacenter
hostname rtr
route-map PREFER-GLOBAL permit 10
 set ipv6 next-hop prefer-global
exit
router bgp 65000
 bgp router-id 192.168.100.1
 no bgp ebgp-requires-policy
 neighbor 192.168.100.11 remote-as 65001
 neighbor 192.168.100.11 timers connect 1
 neighbor 192.168.100.12 remote-as 65001
 neighbor 192.168.100.12 timers connect 1
 neighbor fd00:100::11 remote-as 65001
 neighbor fd00:100::11 timers connect 1
 address-family ipv4 unicast
  no neighbor fd00:100::11 activate
  maximum-paths 8
 exit-address-family
 address-family ipv6 unicast
  neighbor fd00:100::11 activate
  neighbor fd00:100::11 route-map PREFER-GLOBAL in
  maximum-paths 8
 exit-address-family
exit
`

const birdNode1 = `router id 192.168.100.11;
protocol device { }
protocol static s4 { ipv4; route 172.30.0.10/32 blackhole; }
protocol static s6 { ipv6; route fd00:30::10/128 blackhole; }
template bgp tor {
  connect delay time 1;
  connect retry time 1;
  error wait time 1, 5;
  hold time 9;
  keepalive time 3;
}
protocol bgp rtr4 from tor {
  local 192.168.100.11 as 65001;
  neighbor 192.168.100.1 as 65000;
  ipv4 { import none; export where proto = "s4"; next hop self; };
}
protocol bgp rtr6 from tor {
  local fd00:100::11 as 65001;
  neighbor fd00:100::1 as 65000;
  ipv6 { import none; export where proto = "s6"; next hop self; };
}
`

// TestFRRRouterLearnsFromBIRD: FRR is the router, BIRD in node1 announces
// 172.30.0.10/32 and fd00:30::10/128; the router's kernel FIB must get them
// via node1.
func TestFRRRouterLearnsFromBIRD(t *testing.T) {
	lab, rtr, nodes := topology(t, 2)
	frr := lab.StartFRR(rtr, frrRouter)
	lab.StartBIRD(nodes[0], birdNode1)

	r := rtr.WaitRoute(t, "172.30.0.10/32", 10*time.Second, netlab.Via("192.168.100.11"))
	t.Logf("router FIB: %v", r)
	if r.Protocol != "bgp" || len(r.NextHops) != 1 || r.NextHops[0].Weight != 1 {
		t.Errorf("route = %+v, want one bgp next hop with weight 1", r)
	}
	r6 := rtr.WaitRoute(t, "fd00:30::10", 10*time.Second, netlab.Via("fd00:100::11"))
	t.Logf("router FIB: %v", r6)

	var sum struct {
		IPv4Unicast struct {
			Peers map[string]struct {
				State string `json:"state"`
			} `json:"peers"`
		} `json:"ipv4Unicast"`
	}
	if err := frr.VtyshJSON("show bgp summary", &sum); err != nil {
		t.Fatal(err)
	}
	if got := sum.IPv4Unicast.Peers["192.168.100.11"].State; got != "Established" {
		t.Errorf("FRR peer 192.168.100.11 state %q, want Established", got)
	}
	if got := sum.IPv4Unicast.Peers["192.168.100.12"].State; got == "Established" {
		t.Errorf("FRR peer 192.168.100.12 is Established, but nothing runs there")
	}

	// The ground truth agrees with Routes.
	rs, err := rtr.Routes(4)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(rs, func(x netlab.Route) bool { return x.Prefix == "172.30.0.10/32" }) {
		t.Errorf("Routes(4) = %v, want 172.30.0.10/32 in it", rs)
	}

	// Shutting the session down removes the route from the FIB.
	if out, err := frr.Vtysh("configure terminal", "router bgp 65000", "neighbor 192.168.100.11 shutdown"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	rtr.WaitRoute(t, "172.30.0.10/32", 10*time.Second, netlab.Absent)
}

// TestNamespaceSockets: Run, Listen and Dial create their sockets in the
// namespace; two nodes talk through the router's bridge.
func TestNamespaceSockets(t *testing.T) {
	_, rtr, nodes := topology(t, 2)

	var names []string
	nodes[1].Run(t, func() {
		ifs, err := net.Interfaces()
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range ifs {
			names = append(names, i.Name)
		}
	})
	slices.Sort(names)
	if !slices.Equal(names, []string{"lo", "vrtr"}) {
		t.Errorf("interfaces seen in node2 = %v, want [lo vrtr]", names)
	}
	if d := rtr.DevTo(nodes[1]); d != "vnode2" {
		t.Errorf("rtr.DevTo(node2) = %q, want vnode2", d)
	}
	// The test's own thread is back in its namespace.
	if _, err := os.Stat("/proc/thread-self/ns/net"); err != nil {
		t.Fatal(err)
	}

	ln, err := nodes[1].Listen("tcp", "[fd00:100::12]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = c.Write([]byte("hello from " + c.LocalAddr().String()))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := nodes[0].Dial(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "fd00:100::12") {
		t.Errorf("got %q", b)
	}
	// The test's own namespace does not have the lab's addresses (no packet
	// is sent: binding fails locally).
	if l, err := net.Listen("tcp", "[fd00:100::12]:0"); err == nil {
		l.Close()
		t.Errorf("fd00:100::12 exists in the test's own namespace; the lab must be isolated")
	}

	// Go: a goroutine that lives in the namespace.
	var seen []string
	<-nodes[0].Go(t, func() {
		ifs, _ := net.Interfaces()
		for _, i := range ifs {
			seen = append(seen, i.Name)
		}
	})
	slices.Sort(seen)
	if !slices.Equal(seen, []string{"lo", "vrtr"}) {
		t.Errorf("interfaces seen by Go in node1 = %v, want [lo vrtr]", seen)
	}
}

const birdRouter = `router id 192.168.100.1;
protocol device { }
protocol kernel {
  ipv4 { import none; export all; };
  merge paths on;
}
template bgp node {
  local 192.168.100.1 as 65000;
  connect delay time 1;
  connect retry time 1;
  error wait time 1, 5;
  hold time 9;
  keepalive time 3;
  ipv4 { import all; export none; add paths rx; };
}
protocol bgp node1 from node { neighbor 192.168.100.11 as 65001; }
protocol bgp node2 from node { neighbor 192.168.100.12 as 65001; }
`

func frrNode(i int) string {
	return `frr defaults datacenter
router bgp 65001
 bgp router-id 192.168.100.1` + itoa(i) + `
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 192.168.100.1 remote-as 65000
 neighbor 192.168.100.1 timers connect 1
 address-family ipv4 unicast
  network 172.30.0.20/32
 exit-address-family
exit
`
}

// TestBIRDRouterLearnsFromFRR: BIRD is the router (merge paths on), FRR in
// both nodes announces 172.30.0.20/32: a two-way ECMP route in BIRD's FIB,
// one way after node2 withdraws.
func TestBIRDRouterLearnsFromFRR(t *testing.T) {
	lab, rtr, nodes := topology(t, 2)
	bird := lab.StartBIRD(rtr, birdRouter)
	lab.StartFRR(nodes[0], frrNode(1))
	frr2 := lab.StartFRR(nodes[1], frrNode(2))

	r := rtr.WaitRoute(t, "172.30.0.20", 10*time.Second, netlab.Via("192.168.100.11", "192.168.100.12"))
	t.Logf("router FIB: %v", r)
	if r.Protocol != "bird" {
		t.Errorf("protocol %q, want bird", r.Protocol)
	}
	if out, err := bird.Birdc("show", "route", "for", "172.30.0.20/32"); err != nil || !strings.Contains(out, "172.30.0.20/32") {
		t.Errorf("birdc show route: %v\n%s", err, out)
	}

	if out, err := frr2.Vtysh("configure terminal", "router bgp 65001", "address-family ipv4 unicast", "no network 172.30.0.20/32"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	r = rtr.WaitRoute(t, "172.30.0.20/32", 10*time.Second, netlab.Via("192.168.100.11"))
	t.Logf("router FIB after node2 withdrew: %v", r)
}

// TestCleanup: after a lab's test ends, its namespaces, daemons, stray
// processes and files are gone.
func TestCleanup(t *testing.T) {
	var (
		lab   *netlab.Lab
		names []string
		frr   *netlab.FRR
		stray *exec.Cmd
	)
	strayDone := make(chan struct{})
	t.Run("lab", func(t *testing.T) {
		var rtr *netlab.NS
		lab, rtr, _ = topology(t, 1)
		frr = lab.StartFRR(rtr, frrRouter)
		stray = exec.Command("ip", "netns", "exec", rtr.Name, "sleep", "300")
		if err := stray.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { _ = stray.Wait(); close(strayDone) }()
		out, err := exec.Command("ip", "netns", "list").CombinedOutput()
		if err != nil {
			t.Fatal(err, string(out))
		}
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.Contains(f[0], lab.ID()) {
				names = append(names, f[0])
			}
		}
		if len(names) != 2 {
			t.Fatalf("namespaces of the lab: %v, want 2", names)
		}
	})
	if lab == nil || frr == nil {
		t.Skip("the lab was not built (skipped or failed above)")
	}
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatal(err, string(out))
	}
	if strings.Contains(string(out), lab.ID()) {
		t.Errorf("namespaces left over:\n%s", out)
	}
	for _, dir := range []string{lab.Dir(), frr.Dir, "/etc/frr/" + frr.Pathspace, "/var/run/frr/" + frr.Pathspace} {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s left over (%v)", dir, err)
		}
	}
	select {
	case <-strayDone:
	case <-time.After(2 * time.Second):
		t.Errorf("stray process %d in the lab's namespace survived", stray.Process.Pid)
	}
	// No process mentions the lab any more (FRR's daemons had its id in their
	// arguments).
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		if strings.Contains(string(b), lab.ID()) {
			t.Errorf("process left over: %s: %q", p, b)
		}
	}
}
