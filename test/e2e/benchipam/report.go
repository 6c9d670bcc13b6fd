package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
)

// result is what one run measured; it is printed as a table and written
// as JSON (-out).
type result struct {
	Services         int `json:"services"`
	Managers         int `json:"managers"`
	Workers          int `json:"workers"`
	BaselineServices int `json:"baselineServices"`

	BaselineWritesPerSec float64   `json:"baselineWritesPerSec"`
	BaselineRoundsPerSec []float64 `json:"baselineRoundsPerSec"`
	// PatternWritesPerSec is the manager's write pattern (EIPAllocation
	// create, then status update, per Service) done by the same number of
	// workers without a manager: what an allocator with no overhead gets.
	PatternWritesPerSec float64 `json:"patternWritesPerSec"`
	// PatternEventsWritesPerSec is the same with an Event posted per
	// Service by one more goroutine (as the manager's recorder does).
	PatternEventsWritesPerSec float64 `json:"patternEventsWritesPerSec"`
	// BaselineAgainWritesPerSec is the baseline measured again at the end.
	BaselineAgainWritesPerSec float64 `json:"baselineAgainWritesPerSec,omitempty"`
	CreateSec                 float64 `json:"createSec"`

	AllocationsCreated   int     `json:"allocationsCreated"`
	StatusUpdates        int     `json:"statusUpdates"`
	AchievedWritesPerSec float64 `json:"achievedWritesPerSec"`
	PercentOfBaseline    float64 `json:"percentOfBaseline"`
	ServicesPerSec       float64 `json:"servicesPerSec"`
	// SteadyWritesPerSec leaves out the start-up before the first address
	// and the kill gap.
	SteadyWritesPerSec float64 `json:"steadyWritesPerSec"`
	FirstAddressSec    float64 `json:"firstAddressSec"`
	TimeToAllSec       float64 `json:"timeToAllAssignedSec"`

	KilledAtAssigned    int     `json:"killedAtAssigned"`
	NewLeader           string  `json:"newLeader"`
	LeaseTakeoverSec    float64 `json:"leaseTakeoverSec"`
	LeaderKillGapSec    float64 `json:"leaderKillGapSec"`
	StragglersAfterKill int     `json:"stragglersAfterKill"`

	BurstSize      int     `json:"burstSize"`
	BurstMode      string  `json:"burstMode,omitempty"`
	BurstCreateSec float64 `json:"burstCreateSec"`
	BurstLagSec    float64 `json:"burstLagSec"`
	BurstTotalSec  float64 `json:"burstTotalSec"`

	Duplicates  int      `json:"duplicates"`
	Leaks       int      `json:"leaks"`
	Unexplained int      `json:"unexplained"`
	Unassigned  int      `json:"unassigned"`
	Problems    []string `json:"problems,omitempty"`
	Correct     bool     `json:"correct"`
	TargetsMet  bool     `json:"targetsMet"`

	// API server requests (apiserver_request_total) during the manager
	// phase and during the burst, by "VERB resource[/subresource]".
	APIRequests      map[string]float64 `json:"apiRequests"`
	BurstAPIRequests map[string]float64 `json:"burstApiRequests,omitempty"`

	// CPU used while the baseline writes ran, from the managers' start
	// until every Service had an address, and during the burst.
	BaselineCPU      cpuUsage `json:"baselineCpu"`
	PatternCPU       cpuUsage `json:"patternCpu"`
	PatternEventsCPU cpuUsage `json:"patternEventsCpu"`
	ManagerPhaseCPU  cpuUsage `json:"managerPhaseCpu"`
	BurstCPU         cpuUsage `json:"burstCpu,omitempty"`

	// With -manager-metrics: the leaders' reconcile and API latencies.
	FirstLeaderMetrics string `json:"firstLeaderMetrics,omitempty"`
	NewLeaderMetrics   string `json:"newLeaderMetrics,omitempty"`
	BurstLeaderMetrics string `json:"burstLeaderMetrics,omitempty"`

	// ManagerExits lists the managers that exited on their own (e.g.
	// "leader election lost"); each was restarted.
	ManagerExits []string `json:"managerExits,omitempty"`

	ManagerLogErrors       int      `json:"managerLogErrors"`
	ManagerLogErrorSamples []string `json:"managerLogErrorSamples,omitempty"`
}

func ok(b bool) string {
	if b {
		return "ok"
	}
	return "MISSED"
}

func fmtRates(r []float64) string {
	parts := make([]string, len(r))
	for i, v := range r {
		parts[i] = fmt.Sprintf("%.0f/s", v)
	}
	return strings.Join(parts, ", ")
}

// printTable prints the results as one fixed-width table.
func printTable(w io.Writer, r *result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(what, value, target, verdict string) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", what, value, target, verdict)
	}
	fmt.Fprintln(w)
	row("METRIC", "VALUE", "TARGET", "")
	row("services", fmt.Sprintf("%d (%d managers, %d workers)", r.Services, r.Managers, r.Workers), "", "")
	row("baseline writes/s", fmt.Sprintf("%.0f", r.BaselineWritesPerSec), "", "")
	row("achieved writes/s", fmt.Sprintf("%.0f", r.AchievedWritesPerSec), "", "")
	row("% of baseline", fmt.Sprintf("%.0f%%", r.PercentOfBaseline), ">= 80%", ok(r.PercentOfBaseline >= 80))
	row("services/s", fmt.Sprintf("%.0f", r.ServicesPerSec), "", "")
	row("time to all assigned", fmt.Sprintf("%.2fs", r.TimeToAllSec), "", "")
	row("leader-kill gap", fmt.Sprintf("%.2fs", r.LeaderKillGapSec), "< 2s", ok(r.LeaderKillGapSec < 2))
	if r.BurstSize > 0 {
		size := fmt.Sprintf("%d", r.BurstSize)
		if r.BurstMode != "create" {
			size += " (" + r.BurstMode + ")"
		}
		row("burst size", size, "", "")
		row("burst lag", fmt.Sprintf("%.3fs", r.BurstLagSec), "<= 1s", ok(r.BurstLagSec <= 1))
	} else {
		row("burst size", "0 (skipped)", "", "")
	}
	row("duplicates", fmt.Sprintf("%d", r.Duplicates), "0", ok(r.Duplicates == 0))
	row("leaks", fmt.Sprintf("%d", r.Leaks), "0", ok(r.Leaks == 0))
	row("unexplained", fmt.Sprintf("%d", r.Unexplained), "0", ok(r.Unexplained == 0))
	row("managers exited on their own", fmt.Sprintf("%d", len(r.ManagerExits)), "", "")
	tw.Flush()

	fmt.Fprintln(w)
	fmt.Fprintf(w, "details: baseline rounds %s", fmtRates(r.BaselineRoundsPerSec))
	if r.BaselineAgainWritesPerSec > 0 {
		fmt.Fprintf(w, ", again at the end %.0f/s", r.BaselineAgainWritesPerSec)
	}
	fmt.Fprintf(w, ";\n  the manager's write pattern without a manager %.0f writes/s (achieved = %.0f%% of it), with an Event per Service %.0f writes/s;\n",
		r.PatternWritesPerSec, 100*r.AchievedWritesPerSec/r.PatternWritesPerSec, r.PatternEventsWritesPerSec)
	fmt.Fprintf(w, "  %d Services created in %.1fs; first address %.2fs after the managers started;\n", r.Services, r.CreateSec, r.FirstAddressSec)
	fmt.Fprintf(w, "  %d EIPAllocations + %d status updates; %.0f writes/s outside start-up and the kill gap;\n",
		r.AllocationsCreated, r.StatusUpdates, r.SteadyWritesPerSec)
	fmt.Fprintf(w, "  leader killed at %d assigned; %s took the lease %.2fs after the kill; %d in-flight addresses landed after the kill;\n",
		r.KilledAtAssigned, r.NewLeader, r.LeaseTakeoverSec, r.StragglersAfterKill)
	if r.BurstSize > 0 {
		fmt.Fprintf(w, "  burst: %d %ss took %.2fs (%.0f/s), all assigned %.2fs after the first one;\n", r.BurstSize, r.BurstMode, r.BurstCreateSec, float64(r.BurstSize)/r.BurstCreateSec, r.BurstTotalSec)
	}
	fmt.Fprintf(w, "  Services left without an address: %d; manager log error lines: %d; managers that exited on their own: %d\n", r.Unassigned, r.ManagerLogErrors, len(r.ManagerExits))
	for _, e := range r.ManagerExits {
		fmt.Fprintf(w, "  exit: %s\n", e)
	}
	fmt.Fprintf(w, "CPU during the baseline: %s\n", r.BaselineCPU)
	fmt.Fprintf(w, "CPU during the write pattern: %s\n", r.PatternCPU)
	fmt.Fprintf(w, "CPU during the write pattern with Events: %s\n", r.PatternEventsCPU)
	fmt.Fprintf(w, "CPU during the manager phase: %s\n", r.ManagerPhaseCPU)
	if r.BurstSize > 0 {
		fmt.Fprintf(w, "CPU during the burst: %s\n", r.BurstCPU)
	}
	if r.FirstLeaderMetrics != "" {
		fmt.Fprintf(w, "first leader until the kill: %s\n", r.FirstLeaderMetrics)
		fmt.Fprintf(w, "new leader until all assigned: %s\n", r.NewLeaderMetrics)
		if r.BurstLeaderMetrics != "" {
			fmt.Fprintf(w, "leader during the burst: %s\n", r.BurstLeaderMetrics)
		}
	}
	bw := float64(2 * r.BaselineServices)
	mw := float64(r.AllocationsCreated + r.StatusUpdates)
	fmt.Fprintf(w, "writes per CPU-second of the bench's processes (API server, etcd, managers, bench; independent of other load): baseline %.0f, write pattern %.0f, with Events %.0f, managers %.0f (%.0f%% of the baseline)\n",
		perCPUSec(bw, r.BaselineCPU), perCPUSec(bw, r.PatternCPU), perCPUSec(bw, r.PatternEventsCPU), perCPUSec(mw, r.ManagerPhaseCPU),
		100*perCPUSec(mw, r.ManagerPhaseCPU)/perCPUSec(bw, r.BaselineCPU))
	printRequests(w, "API requests during the manager phase", r.APIRequests)
	if r.BurstSize > 0 {
		printRequests(w, "API requests during the burst", r.BurstAPIRequests)
	}
	for _, s := range r.ManagerLogErrorSamples {
		fmt.Fprintf(w, "  log: %s\n", s)
	}
}

func printRequests(w io.Writer, title string, m map[string]float64) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, m[k]))
	}
	fmt.Fprintf(w, "%s: %s\n", title, strings.Join(parts, ", "))
}

func writeJSON(path string, r *result) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}
