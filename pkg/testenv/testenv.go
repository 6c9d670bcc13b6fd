// Package testenv starts the real kube-apiserver and etcd of envtest for the
// controller tests, with eiplb's CRDs installed.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/eiplb/eiplb/pkg/apis"
	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
)

// Env is a running API server.
type Env struct {
	Config *rest.Config
	Client client.Client
	env    *envtest.Environment
}

// startTimeout bounds the start of etcd and of the API server, unless
// envtest's own variable startTimeoutEnv sets it.
const (
	startTimeout    = 2 * time.Minute
	startTimeoutEnv = "KUBEBUILDER_CONTROLPLANE_START_TIMEOUT"
)

// Start starts the API server (dual-stack Service ranges) with the CRDs of
// config/crd/bases. Logs of controllers go to stderr when EIPLB_TEST_LOG is
// set.
func Start() (*Env, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, errors.New("KUBEBUILDER_ASSETS is not set: run `make test` (it builds the API server with hack/k8s-binaries.sh)")
	}
	if os.Getenv("EIPLB_TEST_LOG") != "" {
		ctrl.SetLogger(zap.New(zap.UseDevMode(true)))
	}
	_, file, _, _ := runtime.Caller(0)
	e := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(filepath.Dir(file), "..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	e.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", "10.0.0.0/16,fd00:10::/108")
	if os.Getenv(startTimeoutEnv) == "" {
		// envtest gives etcd and the API server 20 s each to become
		// healthy, then kills and retries: on a busy machine, with other
		// test binaries starting theirs, that failed every retry.
		e.ControlPlaneStartTimeout = startTimeout
	}
	cfg, err := e.Start()
	if err != nil {
		return nil, fmt.Errorf("starting envtest: %w", err)
	}
	scheme, err := apis.NewScheme()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		_ = e.Stop()
		return nil, err
	}
	return &Env{Config: cfg, Client: c, env: e}, nil
}

// Stop stops the API server.
func (e *Env) Stop() error { return e.env.Stop() }

// Main runs a test binary's tests against a fresh API server; use it from
// TestMain.
func Main(m *testing.M, set func(*Env)) {
	e, err := Start()
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	set(e)
	code := m.Run()
	_ = e.Stop()
	os.Exit(code)
}

// Eventually polls cond every 20 ms until it returns "" and fails the test
// with its last answer when timeout passes.
func Eventually(t testing.TB, timeout time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		if last = cond(); last == "" {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out after %s: %s", timeout, last)
}

// Must fails the test on an error.
func Must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Gauge reads a gauge of controller-runtime's metrics registry whose labels
// include every pair of labels; -1 when there is none.
func Gauge(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := metrics.Registry.Gather()
	Must(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			match := true
			for k, v := range labels {
				match = match && have[k] == v
			}
			if match {
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

// LoadBalancer returns (without creating it) a Service of type
// LoadBalancer and eiplb's class, selecting app=name, port 80 → 8080/TCP.
func LoadBalancer(namespace, name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: ptr.To(v1alpha1.LoadBalancerClass),
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
		},
	}
}
