// Command kubectl-eiplb is a kubectl plugin (put it on the PATH, then
// `kubectl eiplb ...`) that shows what eiplb is doing, from the API server
// only:
//
//	kubectl eiplb status               pools, peers and sessions, nodes, Services
//	kubectl eiplb pools                pool usage
//	kubectl eiplb peers                BGP sessions per manager replica
//	kubectl eiplb nodes                each node's agent per manager replica, programmed Services
//	kubectl eiplb explain svc NS/NAME  why a Service has no address or is not announced
//	kubectl eiplb version              the plugin's version
//
// -o json|yaml prints the same for scripts.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/eiplb/eiplb/pkg/apis"
	"github.com/eiplb/eiplb/pkg/cli"
	"github.com/eiplb/eiplb/pkg/version"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kubectl-eiplb:", err)
		os.Exit(1)
	}
}

func run(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("kubectl-eiplb", flag.ContinueOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the API server")
	var o cli.Options
	fs.StringVar(&o.Output, "o", "", "output format: json or yaml (default: for people)")
	fs.StringVar(&o.Class, "class", "", "loadBalancerClass eiplb serves (default eiplb.io/bgp)")
	fs.BoolVar(&o.NoClass, "serve-services-without-class", false, "eiplb also serves Services without a class")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: kubectl eiplb [flags] status | pools | peers | nodes | explain svc NAMESPACE/NAME | version")
		fs.PrintDefaults()
	}
	// Flags may come before or after the command.
	var pos []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return err
		}
		args = fs.Args()
		if len(args) > 0 {
			pos, args = append(pos, args[0]), args[1:]
		}
	}
	if len(pos) == 0 {
		fs.Usage()
		return fmt.Errorf("no command")
	}
	if pos[0] == "version" { // needs no API server
		if len(pos) > 1 {
			return fmt.Errorf("version takes no arguments")
		}
		_, err := fmt.Fprintln(w, "kubectl-eiplb", version.String())
		return err
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = *kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return err
	}
	scheme, err := apis.NewScheme()
	if err != nil {
		return err
	}
	// An informer cache as the reader: each kind is listed once, however
	// many Services `status` looks at (it reads each Service's slices,
	// nodes, advertisements and records), instead of a request per read.
	c, err := cache.New(cfg, cache.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) { // returns once started; each kind syncs on first read
		return fmt.Errorf("the API server did not answer within --timeout %s", *timeout)
	}
	if err := cli.Run(ctx, c, w, pos, o); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w (no answer from the API server within --timeout %s)", err, *timeout)
		}
		return err
	}
	return nil
}
