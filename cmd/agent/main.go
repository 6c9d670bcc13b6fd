// Command eiplb-agent is the per-node data plane of eiplb: it programs the
// node's nftables so that traffic for an EIP reaches the Service's
// endpoints, and tells the managers what it has programmed.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/eiplb/eiplb/pkg/agent"
	"github.com/eiplb/eiplb/pkg/agentlink"
	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/dataplane"
	"github.com/eiplb/eiplb/pkg/dataplane/nft"
	"github.com/eiplb/eiplb/pkg/preflight"
	"github.com/eiplb/eiplb/pkg/version"
)

func main() {
	var opts agent.Options
	var mode, table, clusterCIDR string
	var cleanup, preflightOnly bool
	linkPort := agentlink.DefaultPort
	flag.StringVar(&opts.NodeName, "node-name", os.Getenv("NODE_NAME"), "Name of this node (default $NODE_NAME).")
	flag.StringVar(&opts.Class, "class", v1alpha1.LoadBalancerClass, "spec.loadBalancerClass served (as the manager's --class).")
	flag.BoolVar(&opts.ServeNoClass, "serve-services-without-class", false, "Also serve LoadBalancer Services without a class (as the manager's flag).")
	flag.StringVar(&mode, "dataplane", string(dataplane.ModeNftables), "nftables: DNAT EIP traffic to endpoints (managers with --ip-mode=Proxy); kube-proxy: leave DNAT to kube-proxy (--ip-mode=VIP), only stop loops.")
	flag.StringVar(&table, "table", "eiplb", "Name of the nftables table (family inet) the agent owns.")
	flag.IntVar(&linkPort, "link-port", linkPort, "Port the managers connect to (the managers' --agent-port).")
	flag.StringVar(&opts.LinkAddr, "link-bind-address", "", "Address the managers connect to; default every address of the node at --link-port.")
	flag.DurationVar(&opts.Heartbeat, "heartbeat", agentlink.DefaultHeartbeat, "Interval of heartbeats to the managers (keep well under their --agent-dead-after).")
	flag.DurationVar(&opts.ResyncPeriod, "resync-period", time.Minute, "How often to re-read the kernel's table and repair what something else changed (removals are also caught at once through nftables events); 0: events only.")
	flag.DurationVar(&opts.DrainTimeout, "drain-timeout", 10*time.Second, "On SIGTERM with the node cordoned: the longest wait for the managers to withdraw the node.")
	flag.StringVar(&opts.MetricsAddr, "metrics-bind-address", ":9475", "Address of the metrics endpoint; 0 disables it.")
	flag.BoolVar(&opts.MetricsInsecure, "metrics-insecure", false, "Serve /metrics over plain HTTP without authentication (default: HTTPS, and the scraper's token must be allowed to get /metrics).")
	flag.StringVar(&opts.PprofAddr, "pprof-bind-address", "0", "Address of Go's /debug/pprof endpoints (for profiling; unauthenticated, bind to 127.0.0.1); 0 disables it.")
	flag.StringVar(&opts.ProbeAddr, "health-probe-bind-address", ":9476", "Address of /healthz and /readyz (ready once the rules are in place); 0 disables it.")
	flag.StringVar(&clusterCIDR, "cluster-cidr", "", "Comma-separated CIDRs of the pods (as kube-proxy's --cluster-cidr): their connections to the EIP of a Local Service reach every endpoint, as the node's own do. Default: the Node's spec.podCIDRs.")
	flag.BoolVar(&cleanup, "cleanup", false, "Remove everything the agent installed (its nftables table) and exit.")
	flag.BoolVar(&preflightOnly, "preflight", false, "Check this node (sysctls, nftables features in a throwaway table, free ports), print one line per check and exit; exit status 1 when a required check fails (docs/prerequisites.md).")
	var memLimit int64
	flag.Int64Var(&memLimit, "memory-limit-mib", 0, "Soft memory limit of the Go runtime (the GC works harder near it). Ignored when GOMEMLIMIT is set (the DaemonSet sets it to the container's limit); 0: none. Keep it well above the live heap: below it the GC runs nonstop (32 MiB cost an agent a third of a core at 10,000 Services).")
	showVersion := flag.Bool("version", false, "Print the version and exit.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	if *showVersion {
		fmt.Println("eiplb-agent", version.String())
		return
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	ctrl.Log.Info("Starting eiplb-agent", "version", version.String())

	if memLimit > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memLimit << 20)
	}
	opts.Mode = dataplane.Mode(mode)
	if opts.Mode != dataplane.ModeNftables && opts.Mode != dataplane.ModeKubeProxy {
		fail(2, "--dataplane must be nftables or kube-proxy, not %q", mode)
	}
	nftOpts := nft.Options{Table: table, Mode: opts.Mode}
	if cleanup {
		if err := nft.Cleanup(nftOpts); err != nil {
			fail(1, "cleanup: %v", err)
		}
		fmt.Fprintf(os.Stderr, "eiplb-agent: removed table inet %s\n", table)
		return
	}
	if opts.LinkAddr == "" {
		opts.LinkAddr = net.JoinHostPort("", strconv.Itoa(linkPort))
	}
	if preflightOnly {
		os.Exit(runPreflight(opts))
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		fail(1, "%v", err)
	}
	if opts.Mode == dataplane.ModeNftables {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		nftOpts.PodCIDRs, err = agent.PodCIDRs(ctx, cfg, opts.NodeName, clusterCIDR)
		cancel()
		if err != nil {
			fail(1, "%v", err)
		}
	}
	w, err := nft.New(nftOpts)
	if err != nil {
		fail(1, "opening nftables: %v", err)
	}
	defer w.Close()
	a, err := agent.New(cfg, w, opts)
	if err != nil {
		fail(1, "%v", err)
	}
	if err := a.Run(ctrl.SetupSignalHandler()); err != nil {
		fail(1, "%v", err)
	}
}

// runPreflight prints the node's checks and returns the exit status.
func runPreflight(opts agent.Options) int {
	ports := []preflight.Port{{Network: "tcp", Addr: opts.LinkAddr, What: "agent link, the managers connect here", Required: true,
		Hint: "run the preflight before the agent starts on this node (a running agent holds it)"}}
	for _, p := range []struct{ addr, what string }{{opts.MetricsAddr, "metrics"}, {opts.ProbeAddr, "health probes"}} {
		if p.addr != "" && p.addr != "0" {
			ports = append(ports, preflight.Port{Network: "tcp", Addr: p.addr, What: p.what, Required: true})
		}
	}
	rs := preflight.Agent(preflight.Node{
		Proc: os.DirFS("/proc"),
		Bind: preflight.Bind,
		Probe: func() []preflight.Feature {
			var out []preflight.Feature
			for _, r := range nft.Probe(nft.Options{Mode: opts.Mode}) {
				out = append(out, preflight.Feature{Name: r.Feature, Err: r.Err})
			}
			return out
		},
		ForwardingRequired: opts.Mode == dataplane.ModeNftables,
		Ports:              ports,
	})
	for _, r := range rs {
		fmt.Println(r)
	}
	if n := preflight.Failed(rs); n > 0 {
		fmt.Fprintf(os.Stderr, "eiplb-agent: preflight: %d required check(s) failed (docs/prerequisites.md)\n", n)
		return 1
	}
	fmt.Fprintln(os.Stderr, "eiplb-agent: preflight: every required check passed")
	return 0
}

func fail(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "eiplb-agent: "+format+"\n", args...)
	os.Exit(code)
}
