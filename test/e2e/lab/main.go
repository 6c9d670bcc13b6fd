//go:build privileged

// Command lab brings up the whole of eiplb on one machine with real parts
// and shows it working: a real kube-apiserver and etcd, FRR as the
// top-of-rack router, three node namespaces each running eiplb-agent (two
// of them an eiplb-manager replica), pods behind the nodes answering HTTP,
// and a client namespace beyond the router. It applies config/samples
// (pools, the BGP peer with MD5, BFD and graceful restart, a Service),
// plays the endpoint controller for the sample Service, and prints the
// EIP, the router's ECMP route, `kubectl get` of pools, peers and Services,
// and requests from the client answered by different pods.
//
// `make demo` runs it and tears everything down; `make lab-up` keeps it
// running in the background (-keep) and `make lab-down` stops it. It must
// run as root (network namespaces, nftables).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/pkg/cli"
	"github.com/eiplb/eiplb/test/e2e/cluster"
	"github.com/eiplb/eiplb/test/netlab"
)

func main() {
	keep := flag.Bool("keep", false, "keep the lab running until SIGINT or SIGTERM")
	dir := flag.String("dir", ".lab", "folder for the kubeconfig, the lab's log and the ready marker")
	kubectl := flag.String("kubectl", "", "kubectl binary (default: $KUBEBUILDER_ASSETS/kubectl)")
	flag.Parse()
	if err := preflight(kubectl); err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		os.Exit(1)
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		os.Exit(1)
	}
	abs, _ := filepath.Abs(*dir)
	logf, err := os.Create(filepath.Join(abs, "lab.log"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		os.Exit(1)
	}
	defer logf.Close()
	p := netlab.NewProgram(logf)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = p.Run(func() { run(ctx, p, abs, *kubectl, *keep) })
	if err != nil {
		fmt.Fprintf(os.Stderr, "lab: %v\n(the lab's log: %s)\n", err, logf.Name())
		os.Exit(1)
	}
}

// preflight says clearly what is missing before anything is created.
func preflight(kubectl *string) error {
	if os.Geteuid() != 0 {
		return errors.New("must run as root: the lab creates network namespaces and nftables rules (try: sudo make demo)")
	}
	for _, c := range []struct{ path, pkg string }{
		{"ip", "iproute2"}, {"nft", "nftables"}, {"vtysh", "frr"}, {"/usr/lib/frr/bgpd", "frr"}, {"/usr/lib/frr/zebra", "frr"}, {"/usr/lib/frr/bfdd", "frr"},
	} {
		if _, err := exec.LookPath(c.path); err != nil {
			return fmt.Errorf("%s is missing: install the Debian package %s (apt-get install %s)", c.path, c.pkg, c.pkg)
		}
	}
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		return errors.New("KUBEBUILDER_ASSETS is not set: run through `make demo` (it builds kube-apiserver, etcd and kubectl with hack/k8s-binaries.sh)")
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			return fmt.Errorf("%s is missing in %s: run `WITH_KUBECTL=1 hack/k8s-binaries.sh`", b, assets)
		}
	}
	if *kubectl == "" {
		*kubectl = filepath.Join(assets, "kubectl")
	}
	if _, err := os.Stat(*kubectl); err != nil {
		return fmt.Errorf("kubectl is missing (%v): run `WITH_KUBECTL=1 hack/k8s-binaries.sh`", err)
	}
	return nil
}

func run(ctx context.Context, p *netlab.Program, dir, kubectl string, keep bool) {
	step("Starting kube-apiserver and etcd, building eiplb-manager and eiplb-agent")
	api, err := cluster.StartAPI()
	if err != nil {
		p.Fatalf("starting the API server: %v", err)
	}
	p.Cleanup(api.Stop)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, api.Kubeconfig, 0o600); err != nil {
		p.Fatal(err)
	}

	step("Building the lab: router (FRR), 3 nodes with 2 pods each, a client")
	l := cluster.NewLab(p, api, cluster.LabOptions{KubeProxy: "nftables"})
	step("Installing deploy/eiplb.yaml; applying config/samples (pools, BGP peer with MD5/BFD/graceful restart); starting kube-controller-manager (EndpointSlice controllers), 2 managers and 3 agents as the manifest's ServiceAccounts, kube-proxy (nftables) on every node")
	l.Up()
	step("Applying config/samples/service.yaml; the lab plays the kubelet for two pods on every node (Running, Ready), kube-controller-manager writes the EndpointSlices")
	api.Apply(p, filepath.Join(cluster.Root(), "config", "samples", "service.yaml"))
	web := &corev1.Service{}
	if err := api.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "web"}, web); err != nil {
		p.Fatal(err)
	}
	l.Endpoints(p, web, 1, 2, 3)
	ip := api.IPs(p, web, 1)[0]
	fmt.Printf("\nService default/web got EIP %s\n", ip)
	l.Rtr.WaitRoute(p, ip, 30*time.Second, cluster.Via(false, 1, 2, 3))
	time.Sleep(1200 * time.Millisecond) // pool and peer status are written about once a second

	step("The router's kernel FIB: one ECMP route over every node (ip route show " + ip + ")")
	fmt.Print(l.Exec(l.Rtr, "ip", "route", "show", ip))
	step("The router's BGP paths: ADD-PATH, one per node from each manager (vtysh -c 'show bgp ipv4 unicast " + ip + "', abridged)")
	out, _ := l.FRR.Vtysh("show bgp ipv4 unicast " + ip)
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "Paths:") || strings.Contains(line, " from ") {
			fmt.Println(line)
		}
	}

	for _, args := range [][]string{
		{"get", "eippools"},
		{"get", "bgppeers", "-o", "wide"},
		{"get", "services", "-n", "default"},
	} {
		step("kubectl " + strings.Join(args, " "))
		cmd := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig=" + kubeconfig}, args...)...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
		if err := cmd.Run(); err != nil {
			p.Fatalf("kubectl: %v", err)
		}
	}

	step("kubectl eiplb status (the plugin, bin/kubectl-eiplb)")
	if err := cli.Run(ctx, api.Client, os.Stdout, []string{"status"}, cli.Options{}); err != nil {
		p.Fatalf("kubectl eiplb: %v", err)
	}

	step("12 requests from the client namespace to http://" + ip + "/ (each a new connection; answer: pod, address it saw)")
	for range 12 {
		out, err := l.Get(ip, 80)
		if err != nil {
			p.Fatalf("request to %s: %v", ip, err)
		}
		fmt.Println("  " + out)
	}

	if !keep {
		step("Tearing the lab down (make lab-up keeps it running)")
		return
	}
	ready := filepath.Join(dir, "ready")
	info := fmt.Sprintf(`
The lab is up (pid %d). Try:
  kubectl --kubeconfig=%s get eippools,bgppeers,services -A
  ip netns exec %s curl -s http://%s/
  vtysh --vty_socket %s -c 'show bgp summary'   # the router
  ip netns exec %s nft list table inet eiplb            # node1's rules
Logs of managers and agents: %s; lab log: %s
Stop it with: make lab-down
`, os.Getpid(), kubeconfig, l.Client.Name, ip, l.FRR.Dir, l.Nodes[0].Name, l.Net.Dir(), filepath.Join(dir, "lab.log"))
	fmt.Print(info)
	if err := os.WriteFile(ready, []byte(info), 0o644); err != nil {
		p.Fatal(err)
	}
	p.Cleanup(func() { _ = os.Remove(ready) })
	<-ctx.Done()
	step("Stopping the lab")
}

func step(s string) { fmt.Printf("\n== %s\n", s) }
