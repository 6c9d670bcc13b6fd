//go:build privileged

package netlab

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a daemon started by the lab inside a namespace, in the foreground
// (so this process reaps it and sees when it dies), its output in a log file.
type proc struct {
	name    string // for messages: "bgpd in eiplbt-…-rtr"
	log     string
	pidFile string // written by the daemon itself, if it does
	cmd     *exec.Cmd
	done    chan struct{}
	err     error // exit status, valid once done is closed
}

// startProc runs `ip netns exec <ns> args...` in the background with stdout
// and stderr going to logPath, and registers it for the lab's cleanup.
// `ip netns exec` execs the command without forking, so the daemon keeps the
// pid of the started process.
func (l *Lab) startProc(ns *NS, name, logPath, pidFile string, args ...string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Same process group as the test on purpose: Ctrl-C in the terminal stops
	// the daemons too (the test dies without its cleanups; the namespaces are
	// then left for test/netlab/cleanup).
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name + " in " + ns.Name, log: logPath, pidFile: pidFile, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p, nil
}

// exited reports whether the daemon has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits a little, then SIGKILLs the daemon; it also kills
// the pid of the pid file, should the daemon have forked after all.
func (p *proc) stop() {
	pids := []int{p.cmd.Process.Pid}
	if p.pidFile != "" {
		if b, err := os.ReadFile(p.pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 && pid != p.cmd.Process.Pid && pid != os.Getpid() {
				pids = append(pids, pid)
			}
		}
	}
	signal := func(sig syscall.Signal) {
		for i, pid := range pids {
			if i == 0 {
				if !p.exited() {
					_ = p.cmd.Process.Signal(sig)
				}
			} else if alive(pid) {
				_ = syscall.Kill(pid, sig)
			}
		}
	}
	gone := func(d time.Duration) bool {
		deadline := time.Now().Add(d)
		for {
			ok := p.exited()
			for _, pid := range pids[1:] {
				ok = ok && !alive(pid)
			}
			if ok {
				return true
			}
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	signal(syscall.SIGTERM)
	if gone(stopGrace) {
		return
	}
	signal(syscall.SIGKILL)
	gone(2 * time.Second)
}

// tail returns the last n lines of the daemon's log, without the lines
// that contain one of skip.
func (p *proc) tail(n int, skip ...string) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return err.Error()
	}
	b = bytes.TrimRight(b, "\n")
	lines := bytes.Split(b, []byte("\n"))
	lines = slices.DeleteFunc(lines, func(l []byte) bool {
		for _, s := range skip {
			if bytes.Contains(l, []byte(s)) {
				return true
			}
		}
		return false
	})
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// waitFor polls cond every 10 ms until it returns nil, one of the daemons
// exits, or timeout passes; the error describes why it gave up.
func waitFor(timeout time.Duration, procs []*proc, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		for _, p := range procs {
			if p.exited() {
				return fmt.Errorf("%s exited (%v); its log:\n%s", p.name, p.err, p.tail(40))
			}
		}
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
