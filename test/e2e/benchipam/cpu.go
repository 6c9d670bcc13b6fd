package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, 100 on every Linux the bench runs on.
const clockTicks = 100

// cpuSample is the CPU time used so far by the bench's processes and by
// the whole machine, to tell in the report whether the cores were saturated
// and by whom.
type cpuSample struct {
	at    time.Time
	procs map[string]float64 // seconds by process name
	busy  float64            // machine, seconds of all cores not idle
}

// cpuUsage is the CPU used between two samples.
type cpuUsage struct {
	WallSec     float64            `json:"wallSec"`
	Cores       int                `json:"cores"`
	MachineBusy float64            `json:"machineBusyPercent"`
	Processes   map[string]float64 `json:"processCpuSec"`
	OtherSec    float64            `json:"otherCpuSec"` // processes the bench did not start
}

func (b *bench) sampleCPU() cpuSample {
	s := cpuSample{at: time.Now(), procs: map[string]float64{}}
	if data, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(data), "\n")
		f := strings.Fields(line)
		for i := 1; i < len(f); i++ {
			v, _ := strconv.ParseFloat(f[i], 64)
			if i != 4 && i != 5 && i <= 8 { // not idle, not iowait; guest is inside user
				s.busy += v / clockTicks
			}
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.procs["bench"] = tv(ru.Utime) + tv(ru.Stime)
	}
	me := strconv.Itoa(os.Getpid())
	names := map[int]string{}
	b.mgrMu.Lock()
	for _, p := range b.mgrs {
		select {
		case <-p.done:
			if st := p.cmd.ProcessState; st != nil {
				s.procs[p.name] = (st.UserTime() + st.SystemTime()).Seconds()
			}
		default:
			names[p.cmd.Process.Pid] = p.name
		}
	}
	b.mgrMu.Unlock()
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range dirs {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		str := string(data)
		open, end := strings.IndexByte(str, '('), strings.LastIndexByte(str, ')')
		if open < 0 || end < 0 {
			continue
		}
		comm := str[open+1 : end]
		f := strings.Fields(str[end+1:]) // f[0] is the state (field 3)
		if len(f) < 13 || f[1] != me {
			continue
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(str[:open]))
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		name := comm
		if n, ok := names[pid]; ok {
			name = n
		}
		s.procs[name] += (ut + st) / clockTicks
	}
	return s
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

func usage(a, b cpuSample) cpuUsage {
	u := cpuUsage{WallSec: b.at.Sub(a.at).Seconds(), Cores: runtime.NumCPU(), Processes: map[string]float64{}}
	if u.WallSec <= 0 {
		return u
	}
	mine := 0.0
	for name, v := range b.procs {
		if d := v - a.procs[name]; d > 0.005 {
			u.Processes[name] = d
			mine += d
		}
	}
	busy := b.busy - a.busy
	u.MachineBusy = 100 * busy / (u.WallSec * float64(u.Cores))
	if o := busy - mine; o > 0 {
		u.OtherSec = o
	}
	return u
}

func (u cpuUsage) String() string {
	keys := make([]string, 0, len(u.Processes))
	for k := range u.Processes {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return u.Processes[keys[i]] > u.Processes[keys[j]] })
	parts := make([]string, 0, len(keys)+1)
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.1f", k, u.Processes[k]))
	}
	parts = append(parts, fmt.Sprintf("not started by the bench %.1f", u.OtherSec))
	return fmt.Sprintf("%.1fs wall on %d cores, machine %.0f%% busy; CPU-s: %s", u.WallSec, u.Cores, u.MachineBusy, strings.Join(parts, ", "))
}

// own is the CPU time of the processes the bench started (API server,
// etcd, managers) and of the bench itself.
func (u cpuUsage) own() float64 {
	t := 0.0
	for _, v := range u.Processes {
		t += v
	}
	return t
}

// perCPUSec is writes per CPU-second of the bench's own processes: unlike
// writes per second, it hardly depends on what else the machine runs.
func perCPUSec(writes float64, u cpuUsage) float64 {
	if c := u.own(); c > 0 {
		return writes / c
	}
	return 0
}
