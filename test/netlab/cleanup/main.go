// Command cleanup removes what crashed netlab runs left behind: network
// namespaces named eiplbt-* and the processes running in them, the cluster
// lab's cgroup roots /sys/fs/cgroup/*/eiplbt-* and the processes in them
// (its pods' containers), FRR's
// /etc/frr/eiplbt-* and /var/run/frr/eiplbt-* folders and the lab folders
// in /run/eiplbt.
//
// A lab whose test process is still running is left alone (its owner file,
// /run/eiplbt/<lab id>/owner, names the process), unless -all is given.
//
//	sudo go run ./test/netlab/cleanup [-all] [-n]
//
// It must run as root. Keep the prefix and folders in step with package
// netlab (test/netlab/lab.go), which cannot be imported here because it only
// builds with the "privileged" tag.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	cgtree "github.com/eiplb/eiplb/test/netlab/cgroups"
)

const (
	prefix = "eiplbt-"
	runDir = "/run/eiplbt"
)

var (
	all    = flag.Bool("all", false, "also remove labs whose test process is still running")
	dryRun = flag.Bool("n", false, "only print what would be removed")
)

func main() {
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [-all] [-n]\n\nRemoves leftovers of crashed netlab runs (namespaces %s*, their processes, /etc/frr/%s*, /var/run/frr/%s*, %s/*).\n\n", os.Args[0], prefix, prefix, prefix, runDir)
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "cleanup: must run as root")
		os.Exit(1)
	}
	if err := cleanup(); err != nil {
		fmt.Fprintln(os.Stderr, "cleanup:", err)
		os.Exit(1)
	}
}

// lab collects what belongs to one lab id.
type lab struct {
	namespaces []string
	cgroups    []string // cgroup roots of the cluster lab's nodes
	paths      []string // folders to remove
}

func cleanup() error {
	labs := map[string]*lab{}
	get := func(id string) *lab {
		if labs[id] == nil {
			labs[id] = &lab{}
		}
		return labs[id]
	}

	out, err := run("ip", "netns", "list")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], prefix) {
			continue
		}
		l := get(labID(f[0]))
		l.namespaces = append(l.namespaces, f[0])
	}
	for _, pattern := range []string{"/etc/frr/" + prefix + "*", "/var/run/frr/" + prefix + "*"} {
		matches, _ := filepath.Glob(pattern)
		for _, m := range matches {
			l := get(labID(filepath.Base(m)))
			l.paths = append(l.paths, m)
		}
	}
	// The cluster lab's cgroup roots (test/e2e/cluster: <prefix><id>-nodeN
	// in every hierarchy).
	cgroups, _ := filepath.Glob("/sys/fs/cgroup/*/" + prefix + "*")
	v2, _ := filepath.Glob("/sys/fs/cgroup/" + prefix + "*")
	for _, m := range append(cgroups, v2...) {
		l := get(labID(filepath.Base(m)))
		l.cgroups = append(l.cgroups, m)
	}
	entries, _ := os.ReadDir(runDir)
	for _, e := range entries {
		l := get(e.Name())
		l.paths = append(l.paths, filepath.Join(runDir, e.Name()))
	}

	ids := make([]string, 0, len(labs))
	for id := range labs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var errs []error
	removed := 0
	for _, id := range ids {
		l := labs[id]
		if pid, ok := owner(id); ok && !*all {
			fmt.Printf("lab %s: in use by running process %d, left alone (use -all to remove it anyway)\n", id, pid)
			continue
		}
		for _, ns := range l.namespaces {
			fmt.Printf("lab %s: namespace %s\n", id, ns)
			if *dryRun {
				continue
			}
			if err := killNamespace(ns); err != nil {
				errs = append(errs, err)
			}
			if _, err := run("ip", "netns", "del", ns); err != nil {
				errs = append(errs, err)
			}
		}
		for _, cg := range l.cgroups {
			fmt.Printf("lab %s: cgroup %s\n", id, cg)
			if *dryRun {
				continue
			}
			if err := cgtree.Remove(cg); err != nil {
				errs = append(errs, err)
			}
		}
		// Processes that outlived their namespace but still name the lab.
		for _, pid := range pidsMentioning(filepath.Join(runDir, id) + "/") {
			fmt.Printf("lab %s: process %d\n", id, pid)
			if !*dryRun {
				kill([]int{pid})
			}
		}
		for _, p := range l.paths {
			fmt.Printf("lab %s: %s\n", id, p)
			if *dryRun {
				continue
			}
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, err)
			}
		}
		removed++
	}
	if len(ids) == 0 {
		fmt.Println("nothing to clean up")
	} else {
		fmt.Printf("%d of %d labs cleaned up\n", removed, len(ids))
	}
	return errors.Join(errs...)
}

// labID is the lab id in "eiplbt-<id>-<name>".
func labID(name string) string {
	rest := strings.TrimPrefix(name, prefix)
	id, _, _ := strings.Cut(rest, "-")
	return id
}

// owner returns the pid of the lab's test process if it still runs.
func owner(id string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(runDir, id, "owner"))
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, false
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 1 {
		return 0, false
	}
	state, start, err := procStat(pid)
	if err != nil || state == 'Z' || state == 'X' || strconv.FormatUint(start, 10) != f[1] {
		return 0, false
	}
	return pid, true
}

// killNamespace kills the processes living in the namespace: SIGTERM, then
// SIGKILL after 2 s.
func killNamespace(ns string) error {
	out, err := run("ip", "netns", "pids", ns)
	if err != nil {
		return err
	}
	var pids []int
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
			pids = append(pids, pid)
			fmt.Printf("  process %d (%s)\n", pid, comm(pid))
		}
	}
	if left := kill(pids); len(left) > 0 {
		return fmt.Errorf("processes %v in namespace %s do not die", left, ns)
	}
	return nil
}

// kill sends SIGTERM, waits up to 2 s, sends SIGKILL, waits up to 2 s, and
// returns the pids still alive.
func kill(pids []int) []int {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		for _, pid := range pids {
			_ = syscall.Kill(pid, sig)
		}
		deadline := time.Now().Add(2 * time.Second)
		for {
			var left []int
			for _, pid := range pids {
				if alive(pid) {
					left = append(left, pid)
				}
			}
			pids = left
			if len(pids) == 0 {
				return nil
			}
			if time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return pids
}

// pidsMentioning lists the processes whose command line contains s.
func pidsMentioning(s string) []int {
	var pids []int
	matches, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, m := range matches {
		b, err := os.ReadFile(m)
		if err != nil || !strings.Contains(string(b), s) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(m)))
		if err == nil && pid != os.Getpid() && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func alive(pid int) bool {
	state, _, err := procStat(pid)
	return err == nil && state != 'Z' && state != 'X'
}

// procStat returns the state and the start time (field 22) of a process.
func procStat(pid int) (byte, uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	return f[0][0], start, err
}

func comm(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return strings.TrimSpace(string(b))
}

// run runs a command bounded by 30 s and returns its combined output.
func run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
