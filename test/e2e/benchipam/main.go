// Command benchipam is the IPAM scale scenario of eiplb (make bench-ipam).
//
// It starts a real kube-apiserver and etcd (envtest), measures the API
// server's plain Service status-write rate as a baseline, creates N Services
// of class eiplb.io/bgp, starts three eiplb-manager processes with leader
// election, SIGKILLs the leader when half of the Services have an address,
// and measures how long it takes until every Service has one, the gap in
// allocations around the kill, and the write rate achieved against the
// baseline. It then checks that no address is held twice, none leaked and
// every Service without an address says why, creates a burst of Services
// with the two surviving managers and measures the lag until the last one
// has its address. The results are printed as a table and written as JSON.
//
// Run it from the repository root, with KUBEBUILDER_ASSETS pointing at the
// envtest binaries (hack/k8s-binaries.sh) and bin/eiplb-manager built:
//
//	make bench-ipam BENCH_ARGS='-services 500 -burst 200'
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

type options struct {
	services       int
	burst          int
	baseline       int
	workers        int
	creators       int
	burstCreators  int
	burstMode      string
	managers       int
	timeout        time.Duration
	settle         time.Duration
	out            string
	managerBin     string
	crdDir         string
	keepLogs       bool
	strict         bool
	remeasure      bool
	announce       bool
	managerMetrics bool
	extraMgrArgs   stringList
	profileDir     string
	profileSeconds int
}

type stringList []string

func (s *stringList) String() string     { return fmt.Sprint(*s) }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	var o options
	flag.IntVar(&o.services, "services", 5000, "Services allocated while the leader is killed.")
	flag.IntVar(&o.burst, "burst", 1000, "Services created as fast as possible after the kill (0 skips the burst).")
	flag.IntVar(&o.baseline, "baseline-services", 500, "Services of a foreign class used to measure the plain status-write rate.")
	flag.IntVar(&o.workers, "workers", 8, "Concurrent status writers of the baseline and --ipam-workers of the managers.")
	flag.IntVar(&o.creators, "creators", 8, "Concurrent creators of the initial Services (client QPS 500, burst 1000).")
	flag.IntVar(&o.burstCreators, "burst-creators", 16, "Concurrent creators of the burst (no client-side rate limit).")
	flag.StringVar(&o.burstMode, "burst-mode", "create", "create: the burst creates Services; convert: it turns pre-created ClusterIP Services into LoadBalancers (arrivals faster than the API server creates Services).")
	flag.IntVar(&o.managers, "managers", 3, "Manager processes started.")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Minute, "Bound of the whole run; every wait ends with it.")
	flag.DurationVar(&o.settle, "settle", time.Second, "Pause after all Services are assigned, before the checks and the burst.")
	flag.StringVar(&o.out, "out", "bin/bench-ipam.json", "JSON result file.")
	flag.StringVar(&o.managerBin, "manager", "bin/eiplb-manager", "eiplb-manager binary.")
	flag.StringVar(&o.crdDir, "crds", "config/crd/bases", "CRDs installed: folders or files, comma-separated.")
	flag.BoolVar(&o.keepLogs, "keep-logs", false, "Keep the manager logs and kubeconfig even when every check passes.")
	flag.BoolVar(&o.announce, "announce", false, "Run the managers with the BGP announcer too (router IDs 127.0.0.x, no peers); by default --announce=false, IPAM only.")
	flag.BoolVar(&o.managerMetrics, "manager-metrics", false, "Serve the managers' /metrics on free 127.0.0.1 ports and report the leaders' reconcile and API request latencies.")
	flag.BoolVar(&o.remeasure, "remeasure", true, "Measure the baseline again at the end (the machine may be shared; a big change means the load changed).")
	flag.BoolVar(&o.strict, "strict", false, "Also exit non-zero when a performance target is missed.")
	flag.StringVar(&o.profileDir, "profile-dir", "", "When set, write a CPU profile of the kube-apiserver taken from the managers' start into this folder.")
	flag.IntVar(&o.profileSeconds, "profile-seconds", 10, "Length of the -profile-dir profile.")
	flag.Var(&o.extraMgrArgs, "manager-arg", "Extra flag for every manager process (repeatable), e.g. -manager-arg=--zap-log-level=debug.")
	flag.Parse()
	if o.services < 2 || o.burst < 0 || o.baseline < 1 || o.workers < 1 || o.creators < 1 || o.burstCreators < 1 || o.managers < 2 {
		fmt.Fprintln(os.Stderr, "benchipam: need -services >= 2, -managers >= 2 and positive counts")
		os.Exit(2)
	}
	if o.burstMode != "create" && o.burstMode != "convert" {
		fmt.Fprintln(os.Stderr, "benchipam: -burst-mode is create or convert")
		os.Exit(2)
	}
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "benchipam: KUBEBUILDER_ASSETS is not set: run `make bench-ipam` (it builds the API server with hack/k8s-binaries.sh)")
		os.Exit(2)
	}

	// controller-runtime's own messages (envtest, clients) go to stderr.
	ctrllog.SetLogger(zap.New(zap.WriteTo(os.Stderr)))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	code := run(ctx, o)
	cancel()
	stop()
	os.Exit(code)
}

// run returns the exit code; every resource it starts is released by its
// defers, also when ctx is cancelled by a signal or the timeout.
func run(ctx context.Context, o options) int {
	b := &bench{o: o, start: time.Now()}
	defer b.cleanup()
	res, err := b.run(ctx)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("%w (the -timeout of %s passed)", err, o.timeout)
		} else if ctx.Err() != nil {
			err = fmt.Errorf("%w (interrupted)", err)
		}
		b.logf("FAILED: %v", err)
		b.keepLogs = true
		b.printManagerTails()
		return 1
	}
	printTable(os.Stdout, res)
	if err := writeJSON(o.out, res); err != nil {
		b.logf("writing %s: %v", o.out, err)
		return 1
	}
	b.logf("wrote %s", o.out)
	code := 0
	if !res.Correct {
		b.logf("FAILED: correctness checks failed (see above)")
		code = 1
	}
	if o.strict && !res.TargetsMet {
		b.logf("FAILED: a performance target was missed (-strict)")
		code = 1
	}
	if code != 0 {
		b.keepLogs = true
	}
	return code
}
