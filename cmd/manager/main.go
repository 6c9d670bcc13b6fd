// Command eiplb-manager allocates external IPs to LoadBalancer Services.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/eiplb/eiplb/pkg/agentlink"
	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/manager"
	"github.com/eiplb/eiplb/pkg/preflight"
	"github.com/eiplb/eiplb/pkg/version"
)

func main() {
	var opts manager.Options
	var ipMode string
	flag.StringVar(&opts.MetricsAddr, "metrics-bind-address", ":8080", "Address of the metrics endpoint; 0 disables it.")
	flag.BoolVar(&opts.MetricsInsecure, "metrics-insecure", false, "Serve /metrics over plain HTTP without authentication (default: HTTPS, and the scraper's token must be allowed to get /metrics).")
	flag.StringVar(&opts.ProbeAddr, "health-probe-bind-address", ":8081", "Address of /healthz and /readyz; 0 disables it.")
	flag.StringVar(&opts.PprofAddr, "pprof-bind-address", "0", "Address of Go's /debug/pprof endpoints (for profiling; unauthenticated, bind to 127.0.0.1); 0 disables it.")
	flag.BoolVar(&opts.LeaderElection, "leader-elect", true, "Elect one allocating replica through a Lease.")
	flag.StringVar(&opts.LeaderElectionNamespace, "leader-election-namespace", "eiplb-system", "Namespace of the leader-election Lease.")
	flag.DurationVar(&opts.LeaseDuration, "lease-duration", 2*time.Second, "Leader lease duration: the longest allocation pauses when the leader dies.")
	flag.DurationVar(&opts.RenewDeadline, "renew-deadline", 1500*time.Millisecond, "Leader renew deadline.")
	flag.DurationVar(&opts.RetryPeriod, "retry-period", 250*time.Millisecond, "Leader election retry period.")
	flag.StringVar(&opts.IPAM.Class, "class", v1alpha1.LoadBalancerClass, "spec.loadBalancerClass served.")
	flag.BoolVar(&opts.IPAM.ServeNoClass, "serve-services-without-class", false, "Also serve LoadBalancer Services that set no loadBalancerClass (eiplb as the cluster's default).")
	flag.StringVar(&ipMode, "ip-mode", string(corev1.LoadBalancerIPModeProxy), "ipMode written to status.loadBalancer.ingress: Proxy (eiplb's data plane) or VIP (kube-proxy's).")
	flag.IntVar(&opts.IPAM.Workers, "ipam-workers", 8, "Services allocated in parallel (API-latency bound: 8 gave 23 % more allocations per second than 4 on a 2-core control plane).")
	flag.DurationVar(&opts.IPAM.PoolStatusInterval, "pool-status-interval", time.Second, "Minimum time between two status writes of one pool.")
	announce := manager.AnnounceOptions{}
	var enableAnnounce bool
	var routerID string
	var asn uint
	flag.BoolVar(&enableAnnounce, "announce", true, "Announce addresses over BGP; false runs IPAM only (nodes already peer with the routers, e.g. through Calico).")
	flag.StringVar(&announce.NodeName, "node-name", os.Getenv("NODE_NAME"), "Name of the node this replica runs on (default $NODE_NAME).")
	flag.StringVar(&routerID, "router-id", os.Getenv("ROUTER_ID"), "BGP router ID: an IPv4 address, or a comma-separated list of the node's addresses whose first IPv4 one is taken (default $ROUTER_ID, the node's status.hostIPs). Without an IPv4 address (IPv6-only nodes) it is derived from the node name.")
	flag.UintVar(&asn, "bgp-asn", 64512, "Default local AS; each BGPPeer sets its own localASN.")
	var listenPort int
	flag.IntVar(&listenPort, "bgp-listen-port", -1, "Port for incoming BGP sessions; -1 only dials out.")
	flag.DurationVar(&announce.StatusInterval, "peer-status-interval", 2*time.Second, "Minimum time between BGPPeer status writes.")
	var agents agentlink.TrackerOptions
	flag.IntVar(&agents.Port, "agent-port", agentlink.DefaultPort, "Port of the node agents; a node is a next hop for a Service only while its agent is alive and has programmed it. 0 turns this off (every Ready node is a next hop).")
	flag.DurationVar(&agents.Grace, "agent-grace", agentlink.DefaultGrace, "How long a node whose agent process is gone (its host still answering) stays a next hop: its rules keep forwarding, so an agent restart withdraws nothing.")
	flag.DurationVar(&agents.DeadAfter, "agent-dead-after", agentlink.DefaultDeadAfter, "Silence from a node's agent (host down, link cut) that withdraws the node at once.")
	showVersion := flag.Bool("version", false, "Print the version and exit.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	if *showVersion {
		fmt.Println("eiplb-manager", version.String())
		return
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	ctrl.Log.Info("Starting eiplb-manager", "version", version.String())

	switch corev1.LoadBalancerIPMode(ipMode) {
	case corev1.LoadBalancerIPModeProxy, corev1.LoadBalancerIPModeVIP:
		opts.IPAM.IPMode = corev1.LoadBalancerIPMode(ipMode)
	default:
		fmt.Fprintf(os.Stderr, "eiplb-manager: --ip-mode must be Proxy or VIP, not %q\n", ipMode)
		os.Exit(2)
	}
	if enableAnnounce {
		id, derived, err := manager.RouterID(routerID, announce.NodeName)
		if err != nil {
			fmt.Fprintf(os.Stderr, "eiplb-manager: --router-id: %v\n", err)
			os.Exit(2)
		}
		if derived {
			ctrl.Log.Info("No IPv4 address for the BGP router ID, derived it from the node name (set --router-id to choose it)", "routerID", id, "node", announce.NodeName, "addresses", routerID)
		}
		idResult := preflight.RouterID(id.String(), routerID, announce.NodeName, derived)
		for _, r := range preflight.Manager(preflight.Bind, listenPort, &idResult) {
			if r.Status == preflight.Fail {
				ctrl.Log.Error(nil, "Preflight "+r.String())
			} else {
				ctrl.Log.Info("Preflight " + r.String())
			}
		}
		announce.RouterID, announce.ASN, announce.ListenPort = id, uint32(asn), int32(listenPort)
		if agents.Port > 0 {
			announce.Agents = &agents
		}
		opts.Announce = &announce
	}
	ctx := ctrl.SetupSignalHandler()
	cfg, err := ctrl.GetConfig()
	if err != nil {
		fmt.Fprintf(os.Stderr, "eiplb-manager: %v\n", err)
		os.Exit(1)
	}
	mgr, err := manager.New(ctx, cfg, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "eiplb-manager: %v\n", err)
		os.Exit(1)
	}
	if err := mgr.Start(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "eiplb-manager: %v\n", err)
		os.Exit(1)
	}
}
