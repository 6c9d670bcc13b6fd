package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// leaseAcquiredLine is what client-go's leader election logs (as
// "Successfully acquired lease" through logr, in lower case through klog);
// matched without case.
const leaseAcquiredLine = "successfully acquired lease"

// managerProc is one eiplb-manager process started by the bench.
type managerProc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	done    chan struct{} // closed when the process exited
	exitErr error         // valid after done
	killed  bool          // by the bench, on purpose
	metrics int           // port of /metrics on 127.0.0.1 (-manager-metrics), else 0

	// read by the log follower
	offset     int64
	acquiredAt time.Time // first leaseAcquiredLine seen
}

// startManagers starts n manager processes, each logging to its own file.
// A manager that exits on its own (not killed by the bench) is restarted
// after a second, as its Deployment would do, and the exit is reported.
func (b *bench) startManagers(n int) error {
	bin, err := filepath.Abs(b.o.managerBin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("manager binary: %w (build it with `go build -o bin/eiplb-manager ./cmd/manager`, or run `make bench-ipam`)", err)
	}
	b.mgrBin = bin
	for i := 0; i < n; i++ {
		if err := b.startManager(i, 0); err != nil {
			return err
		}
	}
	go b.followLogs()
	return nil
}

// startManager starts the manager of one slot; gen counts its restarts.
func (b *bench) startManager(slot, gen int) error {
	name := fmt.Sprintf("manager-%d", slot)
	if gen > 0 {
		name = fmt.Sprintf("manager-%d.%d", slot, gen)
	}
	p := &managerProc{name: name, done: make(chan struct{})}
	p.logPath = filepath.Join(b.dir, p.name+".log")
	var err error
	if p.logFile, err = os.Create(p.logPath); err != nil {
		return err
	}
	a := []string{
		"--kubeconfig=" + b.kubeconfig(),
		"--leader-elect=true",
		"--leader-election-namespace=" + leaseNamespace,
		"--health-probe-bind-address=0",
		"--ipam-workers=" + strconv.Itoa(b.o.workers),
	}
	if b.o.managerMetrics {
		if p.metrics, err = freePort(); err != nil {
			return err
		}
		a = append(a, fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", p.metrics))
	} else {
		a = append(a, "--metrics-bind-address=0")
	}
	if b.o.announce {
		a = append(a, fmt.Sprintf("--router-id=127.0.0.%d", slot+1), fmt.Sprintf("--node-name=bench-node-%d", slot), "--bgp-listen-port=-1")
	} else {
		a = append(a, "--announce=false")
	}
	a = append(a, b.o.extraMgrArgs...)
	p.cmd = exec.Command(b.mgrBin, a...)
	p.cmd.Stdout, p.cmd.Stderr = p.logFile, p.logFile
	// The managers die with the bench even when it is SIGKILLed.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	b.mgrMu.Lock()
	defer b.mgrMu.Unlock()
	if b.stopping {
		p.logFile.Close()
		return nil
	}
	if err := p.cmd.Start(); err != nil {
		p.logFile.Close()
		return fmt.Errorf("starting %s: %w", p.name, err)
	}
	b.mgrs = append(b.mgrs, p)
	go func() {
		err := p.cmd.Wait()
		p.logFile.Close()
		b.mgrMu.Lock()
		p.exitErr = err
		close(p.done)
		restart := !p.killed && !b.stopping
		if restart {
			b.mgrExits = append(b.mgrExits, fmt.Sprintf("%s exited (%v): %s", p.name, err, lastLine(p.logPath)))
		}
		b.mgrMu.Unlock()
		if !restart {
			return
		}
		b.logf("%s exited on its own (%v): %s; restarting it in 1s", p.name, err, lastLine(p.logPath))
		time.Sleep(time.Second)
		if err := b.startManager(slot, gen+1); err != nil {
			b.logf("restarting %s: %v", p.name, err)
		}
	}()
	b.logf("started %s (pid %d), log %s", p.name, p.cmd.Process.Pid, p.logPath)
	return nil
}

// lastLine is the last line of a file (a manager's last words).
func lastLine(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return truncate(lines[len(lines)-1], 300)
}

// followLogs notes when each manager logs that it acquired the lease.
func (b *bench) followLogs() {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for range tick.C {
		b.mgrMu.Lock()
		mgrs := append([]*managerProc(nil), b.mgrs...)
		stopping := b.stopping
		b.mgrMu.Unlock()
		if stopping {
			return
		}
		for _, p := range mgrs {
			b.mgrMu.Lock()
			pending := p.acquiredAt.IsZero()
			off := p.offset
			b.mgrMu.Unlock()
			if !pending {
				continue
			}
			f, err := os.Open(p.logPath)
			if err != nil {
				continue
			}
			if _, err := f.Seek(off, io.SeekStart); err == nil {
				data, _ := io.ReadAll(f)
				// Only whole lines: a line being written is read next time.
				if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
					data = data[:i+1]
					b.mgrMu.Lock()
					p.offset += int64(len(data))
					if bytes.Contains(bytes.ToLower(data), []byte(leaseAcquiredLine)) {
						p.acquiredAt = time.Now()
					}
					b.mgrMu.Unlock()
				}
			}
			f.Close()
		}
	}
}

// leader returns the running manager that acquired the lease last.
func (b *bench) leader() *managerProc {
	b.mgrMu.Lock()
	defer b.mgrMu.Unlock()
	var best *managerProc
	for _, p := range b.mgrs {
		if p.killed || p.acquiredAt.IsZero() {
			continue
		}
		select {
		case <-p.done:
			continue
		default:
		}
		if best == nil || p.acquiredAt.After(best.acquiredAt) {
			best = p
		}
	}
	return best
}

// acquiredAfter returns the manager that first acquired the lease after t
// and when (zero when none did yet).
func (b *bench) acquiredAfter(t time.Time) (string, time.Time) {
	b.mgrMu.Lock()
	defer b.mgrMu.Unlock()
	var name string
	var at time.Time
	for _, p := range b.mgrs {
		if !p.killed && p.acquiredAt.After(t) && (at.IsZero() || p.acquiredAt.Before(at)) {
			name, at = p.name, p.acquiredAt
		}
	}
	return name, at
}

// kill SIGKILLs one manager and waits for it to be gone.
func (b *bench) kill(p *managerProc) error {
	b.mgrMu.Lock()
	p.killed = true
	b.mgrMu.Unlock()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("killing %s: %w", p.name, err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) still running 10s after SIGKILL", p.name, p.cmd.Process.Pid)
	}
	return nil
}

// managersHealthy fails when the managers crash-loop.
func (b *bench) managersHealthy() error {
	b.mgrMu.Lock()
	defer b.mgrMu.Unlock()
	if n := len(b.mgrExits); n >= 10 {
		return fmt.Errorf("managers exited on their own %d times, the last: %s", n, b.mgrExits[n-1])
	}
	return nil
}

// killAllManagers SIGKILLs every manager still running (only the processes
// this bench started, by pid) and waits for them.
func (b *bench) killAllManagers() {
	b.mgrMu.Lock()
	b.stopping = true
	mgrs := append([]*managerProc(nil), b.mgrs...)
	b.mgrMu.Unlock()
	for _, p := range mgrs {
		select {
		case <-p.done:
			continue
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			b.logf("%s (pid %d) did not exit after SIGKILL", p.name, p.cmd.Process.Pid)
		}
	}
}

// logErrors counts the error lines in the managers' logs (zap JSON
// "level":"error" and klog E-lines) and returns a few distinct messages.
func (b *bench) logErrors() (int, []string) {
	b.mgrMu.Lock()
	mgrs := append([]*managerProc(nil), b.mgrs...)
	b.mgrMu.Unlock()
	n := 0
	seen := map[string]bool{}
	var samples []string
	for _, p := range mgrs {
		f, err := os.Open(p.logPath)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			isErr := strings.Contains(line, `"level":"error"`) || (len(line) > 5 && line[0] == 'E' && line[1] >= '0' && line[1] <= '9')
			if !isErr {
				continue
			}
			n++
			key := errorKey(line)
			if !seen[key] && len(samples) < 8 {
				seen[key] = true
				samples = append(samples, p.name+": "+truncate(line, 400))
			}
		}
		f.Close()
	}
	return n, samples
}

// errorKey groups log lines by their message.
func errorKey(line string) string {
	if i := strings.Index(line, `"msg":"`); i >= 0 {
		rest := line[i+7:]
		if j := strings.IndexByte(rest, '"'); j >= 0 {
			return rest[:j]
		}
	}
	if i := strings.Index(line, "] "); i >= 0 {
		return truncate(line[i+2:], 60)
	}
	return truncate(line, 60)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// printManagerTails prints the end of every manager log (after a failure).
func (b *bench) printManagerTails() {
	b.mgrMu.Lock()
	mgrs := append([]*managerProc(nil), b.mgrs...)
	b.mgrMu.Unlock()
	for _, p := range mgrs {
		data, err := os.ReadFile(p.logPath)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		fmt.Fprintf(os.Stderr, "---- last lines of %s (%s)\n", p.name, p.logPath)
		for _, l := range lines {
			fmt.Fprintln(os.Stderr, "  "+truncate(l, 400))
		}
	}
}
