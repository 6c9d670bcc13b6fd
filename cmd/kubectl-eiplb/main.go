// Command kubectl-eiplb is a kubectl plugin (put it on the PATH, or install
// it with krew, then `kubectl eiplb ...`) that shows what eiplb is doing,
// from the API server only, and converts MetalLB and OpenELB
// configurations:
//
//	kubectl eiplb status                        pools, peers and sessions, nodes, Services
//	kubectl eiplb pools                         pool usage
//	kubectl eiplb peers                         BGP sessions per manager replica
//	kubectl eiplb nodes                         each node's agent per manager replica, programmed Services
//	kubectl eiplb explain svc NAME [-n NS]      why a Service has no address or is not announced (NS/NAME works too)
//	kubectl eiplb migrate --from metallb|openelb [-f FILE]  eiplb objects and Service edits, as YAML
//	kubectl eiplb version                       the plugin's version
//
// The kubectl flags (--kubeconfig, --context, -n/--namespace, --server,
// --token, --as, --request-timeout, ...) mean what they mean to kubectl.
// -o json|yaml prints the same for scripts.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/pkg/apis"
	"github.com/eiplb/eiplb/pkg/cli"
	"github.com/eiplb/eiplb/pkg/migrate"
	"github.com/eiplb/eiplb/pkg/version"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "error:", oneLine(err))
		os.Exit(1)
	}
}

// oneLine makes an error one line, as kubectl prints them: client-go's
// aggregated errors and kubeconfig errors span several.
func oneLine(err error) string {
	if clientcmd.IsEmptyConfig(err) {
		return errNoKubeconfig.Error()
	}
	lines := strings.FieldsFunc(err.Error(), func(r rune) bool { return r == '\n' || r == '\r' })
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, "; ")
}

// app holds the flags every command shares.
type app struct {
	kube    *genericclioptions.ConfigFlags
	opts    cli.Options
	timeout time.Duration
	out     io.Writer
}

func run(args []string, w io.Writer) error {
	a := &app{kube: genericclioptions.NewConfigFlags(false), out: w}
	root := &cobra.Command{
		Use:   "kubectl-eiplb",
		Short: "See what eiplb is doing, and move to it from MetalLB or OpenELB",
		Annotations: map[string]string{
			cobra.CommandDisplayNameAnnotation: "kubectl eiplb",
		},
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_ = cmd.Usage()
			return fmt.Errorf("no command; want status, pools, peers, nodes, explain, migrate or version")
		},
	}
	root.SetOut(w)
	root.SetErr(os.Stderr)
	root.SetArgs(args)
	pf := root.PersistentFlags()
	a.kube.AddFlags(pf)
	pf.StringVarP(&a.opts.Output, "output", "o", "", "output format: json or yaml (default: for people)")
	pf.StringVar(&a.opts.Class, "class", "", "loadBalancerClass eiplb serves (default eiplb.io/bgp)")
	pf.BoolVar(&a.opts.NoClass, "serve-services-without-class", false, "eiplb also serves Services without a class")
	pf.DurationVar(&a.timeout, "timeout", 30*time.Second, "how long the whole command may wait for the API server")

	read := func(name, short string, f func(ctx context.Context, c client.Reader) error) *cobra.Command {
		return &cobra.Command{
			Use: name, Short: short, Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if err := a.checkOutput(); err != nil {
					return err
				}
				ns := ""
				if cmd.Flags().Changed("namespace") {
					ns = *a.kube.Namespace
				}
				a.opts.Namespace = ns
				return a.withCache(ns, f)
			},
		}
	}
	simple := func(word string) func(ctx context.Context, c client.Reader) error {
		return func(ctx context.Context, c client.Reader) error { return cli.Run(ctx, c, w, []string{word}, a.opts) }
	}
	root.AddCommand(
		read("status", "Pools, peers and their sessions, nodes and Services (-n: only that namespace's Services)", simple("status")),
		read("pools", "Pool usage", simple("pools")),
		read("peers", "BGP sessions per manager replica", simple("peers")),
		read("nodes", "Each node's agent as each manager replica sees it", simple("nodes")),
		a.explainCmd(),
		a.migrateCmd(),
		&cobra.Command{
			Use: "version", Short: "The plugin's version", Args: cobra.NoArgs,
			RunE: func(*cobra.Command, []string) error { // needs no API server
				_, err := fmt.Fprintln(w, "kubectl-eiplb", version.String())
				return err
			},
		},
	)
	return root.Execute()
}

func (a *app) checkOutput() error {
	switch a.opts.Output {
	case "", "json", "yaml":
		return nil
	}
	return fmt.Errorf("unknown output format %q (want json or yaml)", a.opts.Output)
}

func (a *app) explainCmd() *cobra.Command {
	var ref cli.ServiceRef
	return &cobra.Command{
		Use:   "explain svc NAME [-n NAMESPACE] | explain svc NAMESPACE/NAME | explain svc/NAME",
		Short: "Why a Service has no address or is not announced",
		// Arguments are checked before any kubeconfig is read.
		Args: func(cmd *cobra.Command, args []string) error {
			var err error
			ns, nsSet := "", cmd.Flags().Changed("namespace")
			if nsSet {
				ns = *a.kube.Namespace
			}
			ref, err = cli.ParseServiceRef(args, ns, nsSet)
			if err != nil {
				return err
			}
			return a.checkOutput()
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ref.Namespace == "" {
				ns, _, err := a.kube.ToRawKubeConfigLoader().Namespace()
				if err != nil {
					return err
				}
				ref.Namespace = ns
			}
			return a.withCache(ref.Namespace, func(ctx context.Context, c client.Reader) error {
				return cli.Run(ctx, c, a.out, []string{"explain", "svc", ref.Namespace + "/" + ref.Name}, a.opts)
			})
		},
	}
}

func (a *app) migrateCmd() *cobra.Command {
	var o migrate.Options
	var files []string
	cmd := &cobra.Command{
		Use:   "migrate --from metallb|openelb [-f FILE]...",
		Short: "Print the eiplb objects and Service edits that carry a MetalLB or OpenELB configuration over (docs/migrate.md)",
		Long: `Reads MetalLB's or OpenELB's objects and the Services they serve, from the
cluster or from -f files (- for stdin), and prints, as YAML, the eiplb
objects (EIPPool, BGPPeer, BGPAdvertisement, Secrets for passwords) and the
Service edits that keep every Service's address. Every field that can't be
carried is named in a comment, and on stderr. Nothing is written to the cluster.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("migrate takes no arguments, got %q", strings.Join(args, " "))
			}
			if err := migrate.CheckSource(o.From); err != nil {
				return err
			}
			if a.opts.Output != "" && a.opts.Output != "yaml" {
				return fmt.Errorf("migrate prints YAML only (-o %q)", a.opts.Output)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			var objs []migrate.Object
			if len(files) > 0 {
				var err error
				if objs, err = migrate.ReadFiles(files, cmd.InOrStdin()); err != nil {
					return err
				}
			} else {
				cfg, err := a.restConfig()
				if err != nil {
					return err
				}
				c, err := client.New(cfg, client.Options{})
				if err != nil {
					return err
				}
				ctx, cancel := context.WithTimeout(cmd.Context(), a.timeout)
				defer cancel()
				ns := ""
				if cmd.Flags().Changed("namespace") {
					ns = *a.kube.Namespace
				}
				if objs, err = migrate.ReadCluster(ctx, c, o.From, ns); err != nil {
					return err
				}
			}
			res, err := migrate.Convert(objs, o)
			if err != nil {
				return err
			}
			for _, wn := range res.Warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", wn)
			}
			return res.Write(a.out)
		},
	}
	cmd.Flags().StringVar(&o.From, "from", "", "what to migrate from: metallb or openelb")
	cmd.Flags().StringSliceVarP(&files, "filename", "f", nil, "read the objects from these YAML/JSON files (- for stdin) instead of the cluster")
	cmd.Flags().StringVar(&o.SecretNamespace, "eiplb-namespace", "eiplb-system", "namespace of eiplb's manager, where BGP password Secrets must be")
	return cmd
}

// errNoKubeconfig replaces client-go's fallback to localhost:8080 (whose
// "connection refused" hides the cause).
var errNoKubeconfig = errors.New("no kubeconfig: pass --kubeconfig, set KUBECONFIG, or create ~/.kube/config")

func (a *app) restConfig() (*rest.Config, error) {
	raw, err := a.kube.ToRawKubeConfigLoader().RawConfig()
	if err != nil {
		return nil, err
	}
	if len(raw.Clusters) == 0 && *a.kube.APIServer == "" && os.Getenv("KUBERNETES_SERVICE_HOST") == "" {
		return nil, errNoKubeconfig
	}
	cfg, err := a.kube.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	cfg.UserAgent = "kubectl-eiplb/" + version.String()
	return cfg, nil
}

// withCache runs f with an informer cache as the reader: each kind is
// listed once, however many Services `status` looks at (it reads each
// Service's slices, nodes, advertisements and records), instead of a
// request per read. A namespace limits the namespaced kinds to it, so a
// user allowed only that namespace (and eiplb's cluster-scoped objects) can
// run explain.
func (a *app) withCache(ns string, f func(ctx context.Context, c client.Reader) error) error {
	cfg, err := a.restConfig()
	if err != nil {
		return err
	}
	scheme, err := apis.NewScheme()
	if err != nil {
		return err
	}
	opts := cache.Options{Scheme: scheme}
	if ns != "" {
		opts.DefaultNamespaces = map[string]cache.Config{ns: {}}
	}
	c, err := cache.New(cfg, opts)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) { // returns once started; each kind syncs on first read
		return fmt.Errorf("the API server did not answer within --timeout %s", a.timeout)
	}
	if err := f(ctx, c); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w (no answer from the API server within --timeout %s)", err, a.timeout)
		}
		if meta.IsNoMatchError(err) {
			return fmt.Errorf("%w (are eiplb's CRDs installed?)", err)
		}
		return err
	}
	return nil
}
