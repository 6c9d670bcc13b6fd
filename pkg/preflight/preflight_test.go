package preflight

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
)

// node builds a /proc with the given sysctls ("net.ipv4.ip_forward": "1").
func node(sysctls map[string]string) fstest.MapFS {
	fsys := fstest.MapFS{}
	for k, v := range sysctls {
		fsys["sys/"+strings.ReplaceAll(k, ".", "/")] = &fstest.MapFile{Data: []byte(v + "\n")}
	}
	return fsys
}

// base is a healthy node with one uplink and one pod interface.
func base() map[string]string {
	return map[string]string{
		"net.ipv4.ip_forward":              "1",
		"net.ipv6.conf.all.forwarding":     "1",
		"net.ipv4.conf.all.rp_filter":      "0",
		"net.ipv4.conf.default.rp_filter":  "1",
		"net.ipv4.conf.lo.rp_filter":       "1",
		"net.ipv4.conf.eth0.rp_filter":     "2",
		"net.ipv4.conf.cali1234.rp_filter": "0",
	}
}

func with(m map[string]string, kv ...string) map[string]string {
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == "" {
			delete(m, kv[i])
		} else {
			m[kv[i]] = kv[i+1]
		}
	}
	return m
}

func TestSysctls(t *testing.T) {
	tests := []struct {
		name     string
		sysctls  map[string]string
		required bool
		// want: one line per check, status and a fragment of the line.
		want []string
	}{
		{"healthy node", base(), true, []string{
			"ok|net.ipv4.ip_forward = 1", "ok|net.ipv6.conf.all.forwarding = 1", "ok|no interface is strict"}},
		{"no IPv4 forwarding, nftables data plane", with(base(), "net.ipv4.ip_forward", "0"), true, []string{
			"FAIL|net.ipv4.ip_forward = 0: packets DNATed", "ok|forwarding = 1", "ok|rp_filter"}},
		{"no IPv4 forwarding, kube-proxy data plane", with(base(), "net.ipv4.ip_forward", "0"), false, []string{
			"warn|net.ipv4.ip_forward = 0", "ok|forwarding = 1", "ok|rp_filter"}},
		{"ip_forward unreadable", with(base(), "net.ipv4.ip_forward", ""), true, []string{
			"FAIL|net.ipv4.ip_forward: can't read it", "ok|forwarding", "ok|rp_filter"}},
		{"IPv6 forwarding off", with(base(), "net.ipv6.conf.all.forwarding", "0"), true, []string{
			"ok|ip_forward", "warn|net.ipv6.conf.all.forwarding = 0: IPv6 EIPs", "ok|rp_filter"}},
		{"IPv6 disabled", with(base(), "net.ipv6.conf.all.forwarding", ""), true, []string{
			"ok|ip_forward", "warn|IPv6 is off", "ok|rp_filter"}},
		{"strict on the uplink", with(base(), "net.ipv4.conf.eth0.rp_filter", "1"), true, []string{
			"ok|ip_forward", "ok|forwarding", "warn|strict (1, from the interfaces' own value) on eth0:"}},
		{"strict through all", with(base(), "net.ipv4.conf.all.rp_filter", "1"), true, []string{
			// eth0's 2 is higher than all's 1: loose; lo is ignored.
			"ok|ip_forward", "ok|forwarding", "warn|strict (1, from net.ipv4.conf.all.rp_filter = 1) on cali1234:"}},
		{"many strict interfaces", with(base(), "net.ipv4.conf.all.rp_filter", "1", "net.ipv4.conf.eth0.rp_filter", "1",
			"net.ipv4.conf.eth1.rp_filter", "1", "net.ipv4.conf.eth2.rp_filter", "1", "net.ipv4.conf.eth3.rp_filter", "1",
			"net.ipv4.conf.eth4.rp_filter", "1"), true, []string{
			"ok|ip_forward", "ok|forwarding", "warn|on cali1234, eth0, eth1, eth2, eth3 and 1 more:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Sysctls(node(tt.sysctls), tt.required)
			check(t, got, tt.want)
		})
	}
}

// check compares results with "status|fragment" lines, in order.
func check(t *testing.T, got []Result, want []string) {
	t.Helper()
	var lines []string
	for _, r := range got {
		lines = append(lines, r.String())
	}
	if len(got) != len(want) {
		t.Fatalf("got %d results, want %d:\n%s", len(got), len(want), strings.Join(lines, "\n"))
	}
	for i, w := range want {
		st, frag, _ := strings.Cut(w, "|")
		if string(got[i].Status) != st || !strings.Contains(lines[i], frag) {
			t.Errorf("result %d = %q, want status %s containing %q", i, lines[i], st, frag)
		}
		if strings.Contains(lines[i], "\n") {
			t.Errorf("result %d spans lines: %q", i, lines[i])
		}
	}
}

func TestPorts(t *testing.T) {
	inUse := &net.OpError{Op: "listen", Net: "tcp", Err: &osSyscallError{syscall.EADDRINUSE}}
	denied := &net.OpError{Op: "listen", Net: "tcp", Err: &osSyscallError{syscall.EACCES}}
	bind := func(network, addr string) error {
		switch addr {
		case ":9474":
			return inUse
		case ":179":
			return denied
		case ":9999":
			return errors.New("boom")
		}
		return nil
	}
	got := Ports(bind, []Port{
		{Network: "tcp", Addr: ":9475", What: "metrics", Required: true},
		{Network: "tcp", Addr: ":9474", What: "agent link", Required: true, Hint: "is an agent already running?"},
		{Network: "tcp", Addr: ":179", What: "BGP listener", Required: true},
		{Network: "udp", Addr: ":9999", What: "something optional"},
	})
	check(t, got, []string{
		"ok|port :9475/tcp (metrics): free",
		"FAIL|port :9474/tcp (agent link): in use by another process: listen tcp: address already in use; is an agent already running?",
		"FAIL|port :179/tcp (BGP listener): permission denied (a port below 1024 needs CAP_NET_BIND_SERVICE",
		"warn|port :9999/udp (something optional): can't bind it: boom",
	})
	if n := Failed(got); n != 2 {
		t.Errorf("Failed = %d, want 2", n)
	}
}

// osSyscallError wraps an errno the way os.SyscallError does, so that
// errors.Is finds it.
type osSyscallError struct{ errno syscall.Errno }

func (e *osSyscallError) Error() string { return e.errno.Error() }
func (e *osSyscallError) Unwrap() error { return e.errno }

// TestBindFindsHeldPorts: the real Binder sees a TCP and a UDP port another
// socket holds (UDP without SO_REUSEADDR, as a BFD daemon's would be).
func TestBindFindsHeldPorts(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := Bind("tcp", l.Addr().String()); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("Bind of a held TCP port: %v, want EADDRINUSE", err)
	}
	u, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if err := Bind("udp", u.LocalAddr().String()); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("Bind of a held UDP port: %v, want EADDRINUSE", err)
	}
	if err := Bind("tcp", "127.0.0.1:0"); err != nil {
		t.Errorf("Bind of a free port: %v", err)
	}
}

func TestKernel(t *testing.T) {
	got := Kernel([]Feature{{Name: "create table inet x"}, {Name: "interval sets with concatenated keys (pipapo)", Err: fmt.Errorf("the kernel refused it: %w", syscall.EOPNOTSUPP)}})
	check(t, got, []string{"ok|nftables: create table inet x", "FAIL|nftables: interval sets with concatenated keys (pipapo): the kernel refused it: operation not supported (docs/prerequisites.md"})
}

func TestRouterID(t *testing.T) {
	check(t, []Result{
		RouterID("192.168.100.11", "192.168.100.11", "node1", false),
		RouterID("192.168.100.11", "fd00::11,192.168.100.11", "node1", false),
		RouterID("37.4.1.9", "fd00::11", "node1", true),
	}, []string{
		"ok|BGP router ID 192.168.100.11: from --router-id",
		"ok|BGP router ID 192.168.100.11: the first IPv4 address of \"fd00::11,192.168.100.11\"",
		"warn|BGP router ID 37.4.1.9: derived from the node name \"node1\": no IPv4 address in \"fd00::11\"",
	})
}

func TestManager(t *testing.T) {
	held := map[string]error{}
	bind := func(network, addr string) error { return held[network+addr] }
	id := RouterID("192.168.100.11", "192.168.100.11", "node1", false)

	check(t, Manager(bind, -1, &id), []string{"ok|port :3784/udp (BFD): free", "ok|BGP router ID 192.168.100.11"})
	check(t, Manager(bind, -1, nil), []string{"ok|port :3784/udp (BFD): free"})

	held["udp:3784"] = &net.OpError{Op: "listen", Net: "udp", Err: &osSyscallError{syscall.EADDRINUSE}}
	held["tcp:179"] = &net.OpError{Op: "listen", Net: "tcp", Err: &osSyscallError{syscall.EACCES}}
	got := Manager(bind, 179, &id)
	check(t, got, []string{
		"warn|port :3784/udp (BFD): in use by another process: listen udp: address already in use; BGPPeers with bfd get no BFD",
		"FAIL|port :179/tcp (BGP listener, --bgp-listen-port): permission denied",
		"ok|BGP router ID",
	})
	if Failed(got) != 1 {
		t.Errorf("Failed = %d, want 1", Failed(got))
	}
}
