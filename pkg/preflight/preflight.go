// Package preflight checks what a node must offer eiplb (sysctls, kernel
// features, free ports) and says what is missing in one line per check:
// `eiplb-agent --preflight` prints them, the manager logs its own at
// start-up. The checks are pure functions of what they are given (a file
// system rooted at /proc, a function that binds a port, the kernel probe's
// results), so tests hand them made-up nodes.
package preflight

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Status of a check.
type Status string

const (
	// OK: nothing to do.
	OK Status = "ok"
	// Warn: works, but something is off or missing for some uses.
	Warn Status = "warn"
	// Fail: eiplb can't work on this node until it is fixed.
	Fail Status = "FAIL"
)

// Result is the outcome of one check.
type Result struct {
	Status Status
	// Check names what was checked ("sysctl net.ipv4.ip_forward").
	Check string
	// Detail is what was found and, unless OK, what to do.
	Detail string
}

// String is the result's line: status, check and detail.
func (r Result) String() string {
	if r.Detail == "" {
		return fmt.Sprintf("%-5s %s", r.Status, r.Check)
	}
	return fmt.Sprintf("%-5s %s: %s", r.Status, r.Check, r.Detail)
}

// Failed counts the results that failed.
func Failed(rs []Result) int {
	n := 0
	for _, r := range rs {
		if r.Status == Fail {
			n++
		}
	}
	return n
}

// readSysctl reads a sysctl from proc (a file system rooted at /proc).
func readSysctl(proc fs.FS, name string) (string, error) {
	b, err := fs.ReadFile(proc, "sys/"+strings.ReplaceAll(name, ".", "/"))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// Sysctls checks forwarding and reverse-path filtering, read from proc (a
// file system rooted at /proc). forwardingRequired: IPv4 forwarding off
// fails (the agent's own data plane DNATs to endpoints that are forwarded
// to); otherwise it is a warning.
func Sysctls(proc fs.FS, forwardingRequired bool) []Result {
	var out []Result
	const fwd4 = "net.ipv4.ip_forward"
	switch v, err := readSysctl(proc, fwd4); {
	case err != nil:
		out = append(out, Result{Fail, "sysctl " + fwd4, fmt.Sprintf("can't read it: %v", err)})
	case v == "1":
		out = append(out, Result{OK, "sysctl " + fwd4 + " = 1", ""})
	default:
		st := Warn
		if forwardingRequired {
			st = Fail
		}
		out = append(out, Result{st, "sysctl " + fwd4 + " = " + v,
			"packets DNATed to endpoints (pods, other nodes) are not forwarded; set it to 1"})
	}

	const fwd6 = "net.ipv6.conf.all.forwarding"
	switch v, err := readSysctl(proc, fwd6); {
	case errors.Is(err, fs.ErrNotExist):
		out = append(out, Result{Warn, "sysctl " + fwd6, "IPv6 is off on this node: it can't serve IPv6 EIPs"})
	case err != nil:
		out = append(out, Result{Warn, "sysctl " + fwd6, fmt.Sprintf("can't read it: %v", err)})
	case v == "1":
		out = append(out, Result{OK, "sysctl " + fwd6 + " = 1", ""})
	default:
		out = append(out, Result{Warn, "sysctl " + fwd6 + " = " + v,
			"IPv6 EIPs are not forwarded to endpoints; set it to 1 for IPv6 Services"})
	}
	return append(out, rpFilter(proc))
}

// rpFilter reports the interfaces whose effective rp_filter (the higher of
// `all` and the interface's own) is strict.
func rpFilter(proc fs.FS) Result {
	const check = "sysctl net.ipv4.conf.*.rp_filter"
	all, err := readSysctl(proc, "net.ipv4.conf.all.rp_filter")
	if err != nil {
		return Result{Warn, check, fmt.Sprintf("can't read net.ipv4.conf.all.rp_filter: %v", err)}
	}
	entries, err := fs.ReadDir(proc, "sys/net/ipv4/conf")
	if err != nil {
		return Result{Warn, check, fmt.Sprintf("can't list the interfaces: %v", err)}
	}
	allV, _ := strconv.Atoi(all)
	var strict []string
	for _, e := range entries {
		name := e.Name()
		if name == "all" || name == "default" || name == "lo" {
			continue
		}
		v, err := readSysctl(proc, "net.ipv4.conf."+name+".rp_filter")
		if err != nil {
			continue
		}
		n, _ := strconv.Atoi(v)
		if max(n, allV) == 1 {
			strict = append(strict, name)
		}
	}
	if len(strict) == 0 {
		return Result{OK, check, "no interface is strict (1)"}
	}
	slices.Sort(strict)
	list := strings.Join(strict, ", ")
	if len(strict) > 5 {
		list = strings.Join(strict[:5], ", ") + fmt.Sprintf(" and %d more", len(strict)-5)
	}
	src := "the interfaces' own value"
	if allV == 1 {
		src = "net.ipv4.conf.all.rp_filter = 1"
	}
	return Result{Warn, check, fmt.Sprintf("strict (1, from %s) on %s: a packet for an EIP that arrives on an interface other than the node's route back to the client is dropped; set 2 (loose) on the interfaces facing the routers (docs/prerequisites.md)", src, list)}
}

// Port is a port a component binds.
type Port struct {
	// Network is tcp or udp.
	Network string
	// Addr is the bind address (":9474", "127.0.0.1:9476").
	Addr string
	// What it is for ("agent link").
	What string
	// Required: failing to bind it fails the check; otherwise a warning.
	Required bool
	// Hint is added to the detail when the port can't be bound.
	Hint string
}

// Binder binds a port and releases it again.
type Binder func(network, addr string) error

// Bind is the real Binder: it listens on the port (without SO_REUSEADDR,
// so a UDP port another socket holds is found too) and closes it.
func Bind(network, addr string) error {
	switch network {
	case "udp":
		c, err := net.ListenPacket(network, addr)
		if err != nil {
			return err
		}
		return c.Close()
	default:
		l, err := net.Listen(network, addr)
		if err != nil {
			return err
		}
		return l.Close()
	}
}

// Ports checks that each port can be bound.
func Ports(bind Binder, ports []Port) []Result {
	var out []Result
	for _, p := range ports {
		check := fmt.Sprintf("port %s/%s (%s)", p.Addr, p.Network, p.What)
		err := bind(p.Network, p.Addr)
		if err == nil {
			out = append(out, Result{OK, check, "free"})
			continue
		}
		st := Warn
		if p.Required {
			st = Fail
		}
		detail := "can't bind it: " + err.Error()
		switch {
		case errors.Is(err, syscall.EADDRINUSE):
			detail = "in use by another process: " + err.Error()
		case errors.Is(err, syscall.EACCES):
			detail = "permission denied (a port below 1024 needs CAP_NET_BIND_SERVICE or a lower net.ipv4.ip_unprivileged_port_start): " + err.Error()
		}
		if p.Hint != "" {
			detail += "; " + p.Hint
		}
		out = append(out, Result{st, check, detail})
	}
	return out
}

// Feature is one kernel feature probed by creating it (the agent's
// nft.Probe): Err is the kernel's refusal, nil when it took it.
type Feature struct {
	Name string
	Err  error
}

// Kernel turns the kernel probe's findings into results; every feature is
// required.
func Kernel(features []Feature) []Result {
	out := make([]Result, 0, len(features))
	for _, f := range features {
		if f.Err != nil {
			out = append(out, Result{Fail, "nftables: " + f.Name, f.Err.Error() + " (docs/prerequisites.md lists the kernel features)"})
			continue
		}
		out = append(out, Result{OK, "nftables: " + f.Name, ""})
	}
	return out
}

// RouterID reports where a manager replica's BGP router ID came from: the
// value of --router-id / $ROUTER_ID (source), and whether it was derived
// from the node name for lack of an IPv4 address.
func RouterID(id, source, node string, derived bool) Result {
	if derived {
		return Result{Warn, "BGP router ID " + id, fmt.Sprintf("derived from the node name %q: no IPv4 address in %q (--router-id / $ROUTER_ID); set --router-id when your network plan assigns identifiers", node, source)}
	}
	if source == id {
		return Result{OK, "BGP router ID " + id, "from --router-id / $ROUTER_ID"}
	}
	return Result{OK, "BGP router ID " + id, fmt.Sprintf("the first IPv4 address of %q (--router-id / $ROUTER_ID: the node's status.hostIPs)", source)}
}

// Node is what the agent's preflight looks at.
type Node struct {
	// Proc is a file system rooted at /proc.
	Proc fs.FS
	// Bind binds a port and releases it (Bind).
	Bind Binder
	// Probe creates each kernel feature the data plane needs in a
	// throwaway table and deletes it again (nft.Probe).
	Probe func() []Feature
	// ForwardingRequired: the agent's own data plane forwards (not
	// --dataplane=kube-proxy).
	ForwardingRequired bool
	// Ports the agent binds.
	Ports []Port
}

// Agent runs the agent's checks in order: sysctls, kernel features, ports.
func Agent(n Node) []Result {
	out := Sysctls(n.Proc, n.ForwardingRequired)
	out = append(out, Kernel(n.Probe())...)
	return append(out, Ports(n.Bind, n.Ports)...)
}

// BFDPort is the UDP port of single-hop BFD (RFC 5881), where the embedded
// GoBGP listens on every address.
const BFDPort = 3784

// Manager runs a manager replica's checks: the BFD port and, when it
// listens for BGP (bgpListenPort > 0), the BGP port, then where its router
// ID came from (announce only; routerID nil otherwise).
func Manager(bind Binder, bgpListenPort int, routerID *Result) []Result {
	ports := []Port{{Network: "udp", Addr: ":" + strconv.Itoa(BFDPort), What: "BFD",
		Hint: "BGPPeers with bfd get no BFD from this replica while another BFD daemon (an FRR bfdd, Calico's BIRD) holds it on this node"}}
	if bgpListenPort > 0 {
		ports = append(ports, Port{Network: "tcp", Addr: ":" + strconv.Itoa(bgpListenPort), What: "BGP listener, --bgp-listen-port", Required: true,
			Hint: "routers can't open sessions to this replica (another BGP speaker on this node? or leave --bgp-listen-port at -1: the manager dials out)"})
	}
	out := Ports(bind, ports)
	if routerID != nil {
		out = append(out, *routerID)
	}
	return out
}
