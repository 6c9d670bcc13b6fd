//go:build privileged

package netlab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// Prefix starts the name of every namespace, FRR path space and lab
	// folder netlab creates; test/netlab/cleanup removes what carries it.
	Prefix = "eiplbt-"
	// RunDir holds one folder per lab (named by the lab id) with the files of
	// its routers and an "owner" file naming the test process.
	RunDir = "/run/eiplbt"

	// cmdTimeout bounds every helper command that has no deadline of its own.
	cmdTimeout = 30 * time.Second
	// stopGrace is how long a daemon gets after SIGTERM before SIGKILL.
	stopGrace = 3 * time.Second
)

// Lab is a set of network namespaces created for one test; names are unique
// per run (Prefix + a short random lab id + the name given to Namespace), so
// parallel runs don't clash. Create it with New.
type Lab struct {
	t   T
	id  string
	dir string

	mu      sync.Mutex
	nss     []*NS
	byLabel map[string]*NS
	procs   []*proc
	diags   []func() // diagnostics dumped when the test failed
	dirs    []string // removed by cleanup, after the processes are gone
	seq     int
}

// NS is a network namespace of a Lab.
type NS struct {
	// Name is the real, unique name of the namespace (as in `ip netns list`).
	Name string

	lab   *Lab
	label string

	mu    sync.Mutex
	devs  map[string]bool  // device names in use in this namespace
	peers map[*NS][]string // devices in this namespace leading to a peer
}

// New creates an empty lab and registers a t.Cleanup that removes everything
// the lab made (processes, namespaces, files), also when the test fails. It
// skips the test when not running as root or when `ip netns` does not work.
func New(t T) *Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("netlab: needs root (creates network namespaces); run as root: sudo go test -tags privileged ...")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("netlab: the ip command (iproute2) is not installed")
	}
	if out, err := run(context.Background(), "ip", "netns", "list"); err != nil {
		t.Skipf("netlab: `ip netns` is unavailable: %v %s", err, out)
	}
	if _, err := os.Stat("/proc/thread-self/ns/net"); err != nil {
		t.Skipf("netlab: network namespaces are unavailable: %v", err)
	}

	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("netlab: random lab id: %v", err)
	}
	l := &Lab{t: t, id: hex.EncodeToString(b), byLabel: map[string]*NS{}}
	l.dir = filepath.Join(RunDir, l.id)
	t.Cleanup(l.cleanup)

	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		t.Fatalf("netlab: %v", err)
	}
	if err := os.Mkdir(l.dir, 0o755); err != nil {
		t.Fatalf("netlab: lab folder: %v", err)
	}
	l.addDir(l.dir)
	start, err := procStartTime(os.Getpid())
	if err != nil {
		t.Fatalf("netlab: %v", err)
	}
	owner := fmt.Sprintf("%d %d\n", os.Getpid(), start)
	if err := os.WriteFile(filepath.Join(l.dir, "owner"), []byte(owner), 0o644); err != nil {
		t.Fatalf("netlab: %v", err)
	}
	t.Logf("netlab: lab %s (namespaces %s%s-*, files in %s)", l.id, Prefix, l.id, l.dir)
	return l
}

// ID is the random id of the lab; every name the lab creates contains it.
func (l *Lab) ID() string { return l.id }

// Dir is the lab's folder (/run/eiplbt/<id>), removed by the cleanup.
func (l *Lab) Dir() string { return l.dir }

var labelRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// Namespace creates a network namespace with lo up, IPv4 and IPv6 forwarding
// on, IPv6 duplicate address detection off (addresses are usable at once)
// and IPv6 addresses kept when a link goes down (as IPv4 ones are), so a
// link cut and restored comes back with its addresses.
// name is a short label unique in the lab ("rtr", "node1"); NS.Name is the
// real name, Prefix + lab id + "-" + name.
func (l *Lab) Namespace(name string) *NS {
	l.t.Helper()
	if !labelRE.MatchString(name) || len(name) > 32 {
		l.t.Fatalf("netlab: bad namespace name %q (want [a-zA-Z0-9_.-], at most 32 characters)", name)
	}
	l.mu.Lock()
	if l.byLabel[name] != nil {
		l.mu.Unlock()
		l.t.Fatalf("netlab: namespace %q exists already in this lab", name)
	}
	ns := &NS{
		Name:  Prefix + l.id + "-" + name,
		lab:   l,
		label: name,
		devs:  map[string]bool{"lo": true},
		peers: map[*NS][]string{},
	}
	l.byLabel[name] = ns
	l.mu.Unlock()

	l.must("ip", "netns", "add", ns.Name)
	l.mu.Lock()
	l.nss = append(l.nss, ns)
	l.mu.Unlock()
	l.must("ip", "-n", ns.Name, "link", "set", "lo", "up")
	l.must("ip", "netns", "exec", ns.Name, "sysctl", "-q", "-w",
		"net.ipv4.ip_forward=1",
		"net.ipv6.conf.all.forwarding=1",
		"net.ipv6.conf.all.accept_dad=0",
		"net.ipv6.conf.default.accept_dad=0",
		"net.ipv6.conf.all.keep_addr_on_down=1",
		"net.ipv6.conf.default.keep_addr_on_down=1",
	)
	return ns
}

// Link creates a veth pair between two namespaces, gives each end its
// address (CIDR, IPv4 or IPv6, e.g. "192.168.100.1/24"; "" for none) and sets
// both ends up. The end in a is called "v" + b's name (see DevTo).
func (l *Lab) Link(a *NS, aAddr string, b *NS, bAddr string) {
	l.t.Helper()
	aDev, bDev := l.veth(a, b)
	l.addrs(a, aDev, aAddr)
	l.addrs(b, bDev, bAddr)
	l.must("ip", "-n", a.Name, "link", "set", aDev, "up")
	l.must("ip", "-n", b.Name, "link", "set", bDev, "up")
}

// Bridge creates a Linux bridge called name inside ns (STP and multicast
// snooping off), sets it up and gives it the addresses cidrs.
func (l *Lab) Bridge(ns *NS, name string, cidrs ...string) {
	l.t.Helper()
	if !ns.claimDev(name) {
		l.t.Fatalf("netlab: device %q exists already in %s", name, ns.Name)
	}
	l.must("ip", "-n", ns.Name, "link", "add", name, "type", "bridge",
		"stp_state", "0", "forward_delay", "0", "mcast_snooping", "0")
	l.must("ip", "-n", ns.Name, "link", "set", name, "up")
	l.addrs(ns, name, cidrs...)
}

// LinkToBridge connects ns to the bridge brName in namespace br with a veth
// pair: the end in ns (called "v" + br's name) gets the addresses addrs, the
// end in br (called "v" + ns's name) becomes a port of the bridge.
func (l *Lab) LinkToBridge(ns *NS, addrs []string, br *NS, brName string) {
	l.t.Helper()
	nsDev, brDev := l.veth(ns, br)
	l.must("ip", "-n", br.Name, "link", "set", brDev, "master", brName)
	l.must("ip", "-n", br.Name, "link", "set", brDev, "up")
	l.addrs(ns, nsDev, addrs...)
	l.must("ip", "-n", ns.Name, "link", "set", nsDev, "up")
}

// veth creates a veth pair with one end in a and one in b and returns the
// device names.
func (l *Lab) veth(a, b *NS) (string, string) {
	l.t.Helper()
	if a.lab != l || b.lab != l {
		l.t.Fatalf("netlab: namespaces of another lab")
	}
	if a == b {
		l.t.Fatalf("netlab: a veth pair needs two different namespaces")
	}
	aDev, bDev := a.newDev(b), b.newDev(a)
	l.must("ip", "-n", a.Name, "link", "add", aDev, "type", "veth", "peer", "name", bDev, "netns", b.Name)
	return aDev, bDev
}

func (l *Lab) addrs(ns *NS, dev string, cidrs ...string) {
	l.t.Helper()
	for _, c := range cidrs {
		if c == "" {
			continue
		}
		p, err := netip.ParsePrefix(c)
		if err != nil {
			l.t.Fatalf("netlab: address %q for %s in %s is not in CIDR notation: %v", c, dev, ns.Name, err)
		}
		args := []string{"-n", ns.Name, "addr", "add", c, "dev", dev}
		if p.Addr().Is6() {
			args = append(args, "nodad")
		}
		l.must("ip", args...)
	}
}

// DevTo returns the name of the (first) device in ns that leads to peer,
// made by Link or LinkToBridge, or "" if there is none. Use it to take a link
// down: ns.Exec(ctx, "ip", "link", "set", ns.DevTo(peer), "down").
func (ns *NS) DevTo(peer *NS) string {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if d := ns.peers[peer]; len(d) > 0 {
		return d[0]
	}
	return ""
}

// Path is the namespace's file, /var/run/netns/<Name>.
func (ns *NS) Path() string { return "/var/run/netns/" + ns.Name }

// Lab returns the lab the namespace belongs to.
func (ns *NS) Lab() *Lab { return ns.lab }

func (ns *NS) String() string { return ns.Name }

// newDev picks a free device name in ns for a link to peer: "v" + peer's
// name, shortened to the kernel's 15 characters, numbered when taken.
func (ns *NS) newDev(peer *NS) string {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	base := "v" + peer.label
	name := trunc(base, 15)
	for i := 2; ns.devs[name]; i++ {
		n := strconv.Itoa(i)
		name = trunc(base, 15-len(n)) + n
	}
	ns.devs[name] = true
	ns.peers[peer] = append(ns.peers[peer], name)
	return name
}

func (ns *NS) claimDev(name string) bool {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.devs[name] || len(name) > 15 || name == "" {
		return false
	}
	ns.devs[name] = true
	return true
}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Exec runs `ip netns exec <ns> args...` and returns its combined output.
// Without a deadline in ctx it is bounded by 30 s.
func (ns *NS) Exec(ctx context.Context, args ...string) (string, error) {
	if len(args) == 0 {
		return "", errors.New("netlab: Exec without a command")
	}
	return run(ctx, "ip", append([]string{"netns", "exec", ns.Name}, args...)...)
}

// must runs a command and fails the test when it fails.
func (l *Lab) must(name string, args ...string) string {
	l.t.Helper()
	out, err := run(context.Background(), name, args...)
	if err != nil {
		l.t.Fatalf("netlab: %v", err)
	}
	return out
}

func (l *Lab) addDir(dir string) {
	l.mu.Lock()
	l.dirs = append(l.dirs, dir)
	l.mu.Unlock()
}

func (l *Lab) nextSeq() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	return l.seq
}

// run runs a command bounded by ctx (30 s if ctx has no deadline) and returns
// its combined output; the error names the command and carries the output.
func run(ctx context.Context, name string, args ...string) (string, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cmdTimeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = time.Second // a grandchild holding the output pipe must not hang us
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", err, ctx.Err())
		}
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// cleanup runs after the test (t.Cleanup): diagnostics when the test failed,
// then the processes, the namespaces and the files.
func (l *Lab) cleanup() {
	l.mu.Lock()
	nss, procs, diags, dirs := l.nss, l.procs, l.diags, l.dirs
	l.mu.Unlock()

	if l.t.Failed() {
		for _, d := range diags {
			d()
		}
		for _, ns := range nss {
			out, _ := run(context.Background(), "sh", "-c",
				"ip -n "+ns.Name+" -br addr; ip -n "+ns.Name+" route; ip -n "+ns.Name+" -6 route")
			l.t.Logf("netlab: namespace %s:\n%s", ns.Name, out)
		}
	}

	// Our daemons first, gracefully, then whatever else runs in a namespace.
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop() }()
	}
	wg.Wait()
	for _, ns := range nss {
		if err := killNamespacePids(ns.Name); err != nil {
			l.t.Errorf("netlab: cleanup: %v", err)
		}
		if out, err := run(context.Background(), "ip", "netns", "del", ns.Name); err != nil {
			l.t.Errorf("netlab: cleanup: %v %s", err, out)
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.RemoveAll(dirs[i]); err != nil {
			l.t.Errorf("netlab: cleanup: %v", err)
		}
	}
}

// killNamespacePids kills every process living in the namespace (except this
// one) with SIGKILL and waits up to 5 s until they are gone.
func killNamespacePids(name string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := run(context.Background(), "ip", "netns", "pids", name)
		if err != nil {
			return err
		}
		var left []int
		for _, f := range strings.Fields(out) {
			pid, err := strconv.Atoi(f)
			if err != nil || pid == os.Getpid() || pid <= 1 || !alive(pid) {
				continue
			}
			left = append(left, pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v in namespace %s do not die", left, name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid is a running process (zombies count as dead).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	st := s[i+2]
	return st != 'Z' && st != 'X'
}

// procStartTime is field 22 of /proc/<pid>/stat, the start time in clock
// ticks since boot; with the pid it identifies a process across pid reuse.
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); field 22 is f[19].
	if len(f) < 20 {
		return 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}
