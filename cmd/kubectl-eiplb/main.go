// Command kubectl-eiplb is a kubectl plugin (put it on the PATH, then
// `kubectl eiplb ...`) that shows what eiplb is doing, from the API server
// only:
//
//	kubectl eiplb status               pools, peers and sessions, Services
//	kubectl eiplb pools                pool usage
//	kubectl eiplb peers                BGP sessions per manager replica
//	kubectl eiplb explain svc NS/NAME  why a Service has no address or is not announced
//
// -o json|yaml prints the same for scripts.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/pkg/cli"
	"github.com/eiplb/eiplb/pkg/manager"
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
	var o cli.Options
	fs.StringVar(&o.Output, "o", "", "output format: json or yaml (default: for people)")
	fs.StringVar(&o.Class, "class", "", "loadBalancerClass eiplb serves (default eiplb.io/bgp)")
	fs.BoolVar(&o.NoClass, "serve-services-without-class", false, "eiplb also serves Services without a class")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: kubectl eiplb [flags] status | pools | peers | explain svc NAMESPACE/NAME")
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
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = *kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return err
	}
	scheme, err := manager.NewScheme()
	if err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	return cli.Run(context.Background(), c, w, pos, o)
}
