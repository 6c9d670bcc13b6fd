//go:build privileged

package netlab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FRRDir is where the FRR daemons are installed (Debian package frr).
const FRRDir = "/usr/lib/frr"

// FRR is an FRR instance (zebra, bgpd, bfdd) running in a namespace of a lab.
type FRR struct {
	// NS is the namespace FRR runs in.
	NS *NS
	// Dir holds frr.conf, the daemons' pid files, logs (<daemon>.log) and vty
	// sockets; it is removed by the lab's cleanup.
	Dir string
	// Pathspace is the -N argument of the daemons, unique per instance.
	Pathspace string

	procs []*proc
}

// StartFRR writes config (an integrated frr.conf, e.g. starting with
// "frr defaults datacenter") to a folder owned by frr:frr, checks it with
// `vtysh -C`, starts zebra, bgpd and bfdd in the namespace (each with
// -N <unique path space> -f <config> --vty_socket <folder>, in the
// foreground, log to <folder>/<daemon>.log) and waits until vtysh reaches all
// three. It skips the test when FRR is not installed and fails it when FRR
// does not come up within 20 s. The lab's cleanup stops the daemons and
// removes /etc/frr/<path space> and /var/run/frr/<path space>.
func (l *Lab) StartFRR(ns *NS, config string) *FRR {
	l.t.Helper()
	daemons := []string{"zebra", "bgpd", "bfdd"}
	for _, d := range daemons {
		if _, err := os.Stat(filepath.Join(FRRDir, d)); err != nil {
			l.t.Skipf("netlab: FRR is not installed (%v); apt-get install frr", err)
		}
	}
	if _, err := exec.LookPath("vtysh"); err != nil {
		l.t.Skipf("netlab: vtysh is not installed (%v); apt-get install frr", err)
	}
	uid, gid, err := lookupUser("frr")
	if err != nil {
		l.t.Fatalf("netlab: FRR user: %v", err)
	}

	seq := strconv.Itoa(l.nextSeq())
	f := &FRR{
		NS:        ns,
		Dir:       filepath.Join(l.dir, "frr-"+ns.label+"-"+seq),
		Pathspace: ns.Name + "-frr" + seq,
	}
	if err := os.Mkdir(f.Dir, 0o750); err != nil {
		l.t.Fatalf("netlab: %v", err)
	}
	conf := filepath.Join(f.Dir, "frr.conf")
	if err := os.WriteFile(conf, []byte(config), 0o640); err != nil {
		l.t.Fatalf("netlab: %v", err)
	}
	for _, p := range []string{f.Dir, conf} {
		if err := os.Chown(p, uid, gid); err != nil {
			l.t.Fatalf("netlab: %v", err)
		}
	}
	if out, err := run(context.Background(), "vtysh", "-C", "-f", conf); err != nil {
		l.t.Fatalf("netlab: FRR configuration for %s is invalid: %v\n%s", ns.Name, err, numbered(config))
	} else if strings.TrimSpace(out) != "" {
		l.t.Logf("netlab: vtysh -C: %s", out)
	}

	// The daemons keep their zserv socket, vty sockets and pid files in
	// f.Dir, but FRR still creates /var/run/frr/<path space>; vtysh -N wants
	// /etc/frr/<path space>/vtysh.conf (handy when debugging by hand).
	etc := filepath.Join("/etc/frr", f.Pathspace)
	l.addDir(etc)
	l.addDir(filepath.Join("/var/run/frr", f.Pathspace))
	if err := os.MkdirAll(etc, 0o750); err != nil {
		l.t.Fatalf("netlab: %v", err)
	}
	if err := os.WriteFile(filepath.Join(etc, "vtysh.conf"), nil, 0o640); err != nil {
		l.t.Fatalf("netlab: %v", err)
	}
	_ = os.Chown(etc, uid, gid)
	_ = os.Chown(filepath.Join(etc, "vtysh.conf"), uid, gid)

	l.mu.Lock()
	l.diags = append(l.diags, f.diagnose)
	l.mu.Unlock()

	zserv := filepath.Join(f.Dir, "zserv.api")
	for _, d := range daemons {
		p, err := f.startDaemon(d)
		if err != nil {
			l.t.Fatalf("netlab: %v", err)
		}
		f.procs = append(f.procs, p)
		if d == "zebra" {
			// bgpd and bfdd retry, but they come up faster with zebra there.
			if err := waitFor(10*time.Second, f.procs, fileExists(zserv)); err != nil {
				l.t.Fatalf("netlab: zebra in %s: %v", ns.Name, err)
			}
		}
	}
	err = waitFor(20*time.Second, f.procs, func() error {
		for _, d := range daemons {
			if err := fileExists(filepath.Join(f.Dir, d+".vty"))(); err != nil {
				return err
			}
		}
		out, err := f.Vtysh("show version")
		if err != nil {
			return err
		}
		if !strings.Contains(out, "FRRouting") {
			return fmt.Errorf("vtysh show version: %s", out)
		}
		return nil
	})
	if err != nil {
		l.t.Fatalf("netlab: FRR in %s: %v", ns.Name, err)
	}
	return f
}

// startDaemon starts one of FRR's daemons (zebra, bgpd, bfdd) in the
// foreground, with the instance's config, path space and sockets.
func (f *FRR) startDaemon(d string) (*proc, error) {
	args := []string{filepath.Join(FRRDir, d),
		"-N", f.Pathspace,
		"-f", filepath.Join(f.Dir, "frr.conf"),
		"-i", filepath.Join(f.Dir, d+".pid"),
		"--vty_socket", f.Dir,
		"-z", filepath.Join(f.Dir, "zserv.api"),
		"-P", "0", // no vty TCP port
		"--log", "stdout",
	}
	if d == "bfdd" {
		args = append(args, "--bfdctl", filepath.Join(f.Dir, "bfdd.sock"))
	}
	return f.NS.lab.startProc(f.NS, d, filepath.Join(f.Dir, d+".log"), filepath.Join(f.Dir, d+".pid"), args...)
}

// RestartDaemon stops one of FRR's daemons (say "bfdd", as a router whose
// BFD process restarts) and starts it again with the same configuration,
// waiting until vtysh reaches it.
func (f *FRR) RestartDaemon(d string) {
	t := f.NS.lab.t
	t.Helper()
	i := slices.IndexFunc(f.procs, func(p *proc) bool { return strings.HasPrefix(p.name, d+" ") })
	if i < 0 {
		t.Fatalf("netlab: no FRR daemon %q", d)
	}
	f.procs[i].stop()
	_ = os.Remove(filepath.Join(f.Dir, d+".vty"))
	p, err := f.startDaemon(d)
	if err != nil {
		t.Fatalf("netlab: %v", err)
	}
	f.procs[i] = p
	err = waitFor(20*time.Second, f.procs, func() error {
		if err := fileExists(filepath.Join(f.Dir, d+".vty"))(); err != nil {
			return err
		}
		_, err := f.Vtysh("show version")
		return err
	})
	if err != nil {
		t.Fatalf("netlab: %s restarted in %s: %v", d, f.NS.Name, err)
	}
}

// Vtysh runs `vtysh --vty_socket <dir> -c cmd1 -c cmd2 ...` (bounded by
// 20 s) and returns its output. Commands run in one session, so
// Vtysh("configure terminal", "router bgp 65000", "neighbor ...") works.
func (f *FRR) Vtysh(cmds ...string) (string, error) {
	if len(cmds) == 0 {
		return "", errors.New("netlab: Vtysh without a command")
	}
	args := []string{"--vty_socket", f.Dir}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return run(ctx, "vtysh", args...)
}

// VtyshJSON runs a show command with " json" appended (unless it ends with
// "json" already) and decodes its output into out.
func (f *FRR) VtyshJSON(cmd string, out any) error {
	cmd = strings.TrimSpace(cmd)
	if !strings.HasSuffix(cmd, " json") {
		cmd += " json"
	}
	s, err := f.Vtysh(cmd)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(s), out); err != nil {
		return fmt.Errorf("netlab: vtysh %q: %w: %.300s", cmd, err, s)
	}
	return nil
}

func (f *FRR) diagnose() {
	t := f.NS.lab.t
	for _, p := range f.procs {
		// Each daemon reads the whole integrated config and complains about
		// the other daemons' lines; vtysh -C checked the config already.
		t.Logf("netlab: %s, last log lines:\n%s", p.name, p.tail(30, "No such command on config line"))
	}
	out, err := f.Vtysh("show bgp summary", "show ip route", "show ipv6 route")
	t.Logf("netlab: FRR in %s:\n%s%v", f.NS.Name, out, errOrEmpty(err))
}

func fileExists(path string) func() error {
	return func() error {
		_, err := os.Stat(path)
		return err
	}
}

func lookupUser(name string) (uid, gid int, err error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, err
	}
	if uid, err = strconv.Atoi(u.Uid); err != nil {
		return 0, 0, err
	}
	if gid, err = strconv.Atoi(u.Gid); err != nil {
		return 0, 0, err
	}
	return uid, gid, nil
}

func numbered(s string) string {
	var b strings.Builder
	for i, line := range strings.Split(s, "\n") {
		fmt.Fprintf(&b, "%3d  %s\n", i+1, line)
	}
	return b.String()
}

func errOrEmpty(err error) any {
	if err == nil {
		return ""
	}
	return err
}
