// Command demo brings up eiplb on an embedded default: a real kube-apiserver
// and etcd (envtest binaries), the CRDs, the sample pools, a manager process
// built from this tree, and a sample Service; then shows what happened with
// kubectl. With -keep it runs until interrupted, printing the kubeconfig to
// use; otherwise it tears everything down and exits.
//
// The routers, nodes and data plane of the full lab join this as they are
// built; today it shows the IPAM part.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/eiplb/eiplb/pkg/manager"
)

func main() {
	keep := flag.Bool("keep", false, "keep running until interrupted")
	dir := flag.String("dir", ".lab", "folder for the kubeconfig and logs")
	bin := flag.String("manager", "bin/eiplb-manager", "manager binary")
	kubectl := flag.String("kubectl", "", "kubectl binary (default: from KUBEBUILDER_ASSETS)")
	flag.Parse()
	if err := run(*keep, *dir, *bin, *kubectl); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(keep bool, dir, bin, kubectl string) error {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		return errors.New("KUBEBUILDER_ASSETS is not set; run `make demo`")
	}
	if kubectl == "" {
		kubectl = filepath.Join(assets, "kubectl")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	dir, _ = filepath.Abs(dir)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	step("Starting kube-apiserver and etcd")
	env := &envtest.Environment{CRDDirectoryPaths: []string{"config/crd/bases"}, ErrorIfCRDPathMissing: true}
	env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", "10.96.0.0/16,fd00:96::/108")
	cfg, err := env.Start()
	if err != nil {
		return err
	}
	defer func() { step("Stopping"); _ = env.Stop() }()
	user, err := env.AddUser(envtest.User{Name: "demo", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		return err
	}
	scheme, _ := manager.NewScheme()
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "eiplb-system"}}); err != nil {
		return err
	}

	step("Starting two eiplb-manager replicas (leader-elected IPAM)")
	for i := range 2 {
		logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("manager-%d.log", i)))
		if err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, bin, "--kubeconfig="+kubeconfig, "--leader-elect=true",
			"--leader-election-namespace=eiplb-system", "--metrics-bind-address=0", "--health-probe-bind-address=0",
			"--announce=false") // no router in this demo yet
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("starting %s (run `make build`): %w", bin, err)
		}
		defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait(); _ = logf.Close() }()
	}

	step("Applying config/samples (pools and a Service)")
	for _, f := range []string{"config/samples/eippool.yaml", "config/samples/service.yaml"} {
		if err := apply(ctx, c, f); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		svc := &corev1.Service{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "web"}, svc); err == nil && len(svc.Status.LoadBalancer.Ingress) > 0 {
			fmt.Printf("\nService default/web got %s\n", svc.Status.LoadBalancer.Ingress[0].IP)
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return errors.New("the sample Service got no address in 30s; see " + dir + "/manager-*.log")
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(1200 * time.Millisecond) // pool status is written at most once a second

	for _, args := range [][]string{
		{"get", "eippools"},
		{"get", "services", "-A"},
		{"get", "eipallocations"},
	} {
		step("kubectl " + strings.Join(args, " "))
		cmd := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig=" + kubeconfig}, args...)...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("kubectl: %w", err)
		}
	}
	if keep {
		step("Running; use: kubectl --kubeconfig=" + kubeconfig + " ...  (Ctrl-C stops everything)")
		<-ctx.Done()
	}
	return nil
}

func apply(ctx context.Context, c client.Client, file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	dec := yaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("%s: %w", file, err)
		}
		if len(u.Object) == 0 {
			continue
		}
		if err := c.Create(ctx, u); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
	}
}

func step(s string) { fmt.Printf("\n== %s\n", s) }
