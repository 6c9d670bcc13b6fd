package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/cli"
	"github.com/eiplb/eiplb/pkg/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, func(e *testenv.Env) { env = e }) }

// TestBinary runs the plugin's own main path (kubeconfig, informer cache)
// against a real API server; pkg/cli tests what the commands say.
func TestBinary(t *testing.T) {
	cfg := env.Config
	kc := clientcmdapi.NewConfig()
	kc.Clusters["t"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["t"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts["t"] = &clientcmdapi.Context{Cluster: "t", AuthInfo: "t"}
	kc.Contexts["team"] = &clientcmdapi.Context{Cluster: "t", AuthInfo: "t", Namespace: "team"}
	kc.CurrentContext = "t"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	testenv.Must(t, clientcmd.WriteToFile(*kc, path))
	testenv.Must(t, env.Client.Create(t.Context(), &v1alpha1.EIPPool{ObjectMeta: metav1.ObjectMeta{Name: "b"}, Spec: v1alpha1.EIPPoolSpec{Addresses: []string{"192.0.2.0/24"}}}))
	testenv.Must(t, env.Client.Create(t.Context(), &v1alpha1.EIPPool{ObjectMeta: metav1.ObjectMeta{Name: "a"}, Spec: v1alpha1.EIPPoolSpec{Addresses: []string{"198.51.100.0/24"}}}))

	var b bytes.Buffer
	testenv.Must(t, run([]string{"--kubeconfig", path, "pools", "-o", "json"}, &b))
	var pools []cli.Pool
	testenv.Must(t, json.Unmarshal(b.Bytes(), &pools))
	if len(pools) != 2 || pools[0].Name != "a" || pools[1].Name != "b" {
		t.Fatalf("pools %+v, want a and b in order", pools)
	}
	b.Reset()
	testenv.Must(t, run([]string{"status", "--kubeconfig", path}, &b)) // flags after the command too
	if !strings.Contains(b.String(), "POOL") || !strings.Contains(b.String(), "SERVICE") {
		t.Fatalf("status:\n%s", b.String())
	}
	err := run([]string{"--kubeconfig", path, "explain", "svc", "default/missing"}, &b)
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("explain of a missing Service: %v", err)
	}
	if err := run([]string{"--kubeconfig", path}, &b); err == nil {
		t.Fatal("no command accepted")
	}

	// kubectl's way: NAME with -n, or the context's namespace.
	ctx := t.Context()
	testenv.Must(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}}))
	testenv.Must(t, env.Client.Create(ctx, testenv.LoadBalancer("team", "web")))
	for _, args := range [][]string{
		{"explain", "svc", "web", "-n", "team"},
		{"-n", "team", "explain", "service", "web"},
		{"explain", "svc", "team/web"},
		{"explain", "svc/web", "--namespace=team"},
		{"--context", "team", "explain", "svc", "web"}, // the context's namespace
	} {
		b.Reset()
		if err := run(append([]string{"--kubeconfig", path}, args...), &b); err != nil {
			t.Errorf("%v: %v", args, err)
		} else if !strings.Contains(b.String(), "Service team/web: no address") {
			t.Errorf("%v:\n%s", args, b.String())
		}
	}
	// -n limits status to a namespace's Services.
	b.Reset()
	testenv.Must(t, run([]string{"--kubeconfig", path, "status", "-n", "team"}, &b))
	if !strings.Contains(b.String(), "team/web") {
		t.Errorf("status -n team:\n%s", b.String())
	}
}

// TestErrors: arguments are checked before any kubeconfig is read, and every
// error is one line.
func TestErrors(t *testing.T) {
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "absent"))
	t.Setenv("HOME", t.TempDir())
	var b bytes.Buffer
	for _, tc := range []struct {
		args []string
		want string
	}{
		// Bad arguments: the missing kubeconfig is never reached.
		{[]string{"explain", "svc"}, "want explain svc NAME"},
		{[]string{"explain", "pod", "x"}, "want explain svc NAME"},
		{[]string{"explain", "svc", "a/b/c"}, "is invalid"},
		{[]string{"explain", "svc", "Web"}, "Service name \"Web\" is invalid"},
		{[]string{"-n", "x", "explain", "svc", "y/web"}, `names namespace "y" but -n says "x"`},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"pools", "extra"}, `unknown command "extra"`},
		{[]string{"pools", "-o", "xml"}, `unknown output format "xml"`},
		{[]string{"migrate"}, "--from is required"},
		{[]string{"migrate", "--from", "cilium"}, `--from "cilium"`},
		{[]string{"--bogus", "pools"}, "unknown flag: --bogus"},
		// Then the kubeconfig, in one line.
		{[]string{"pools"}, "no kubeconfig: pass --kubeconfig, set KUBECONFIG, or create ~/.kube/config"},
		{[]string{"--kubeconfig", "/nonexistent/kubeconfig", "pools"}, "/nonexistent/kubeconfig"},
		{[]string{"--context", "nope", "--server", "https://127.0.0.1:1", "pools"}, `context "nope" does not exist`},
	} {
		err := run(tc.args, &b)
		if err == nil {
			t.Errorf("%v: no error", tc.args)
			continue
		}
		msg := oneLine(err)
		if !strings.Contains(msg, tc.want) || strings.ContainsAny(msg, "\n\r") {
			t.Errorf("%v: error %q, want one line with %q", tc.args, msg, tc.want)
		}
	}
	b.Reset()
	testenv.Must(t, run([]string{"version"}, &b)) // needs no kubeconfig
	if !strings.HasPrefix(b.String(), "kubectl-eiplb ") {
		t.Errorf("version: %q", b.String())
	}
}

// TestKrewManifest checks the krew manifest template against the archives
// hack/plugin-release.sh builds: one platform per OS and architecture
// released, each archive named as the script names it, holding the binary.
func TestKrewManifest(t *testing.T) {
	b, err := os.ReadFile("../../deploy/krew/eiplb.yaml")
	testenv.Must(t, err)
	var m struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct{ Name string }
		Spec       struct {
			Version, ShortDescription string
			Platforms                 []struct {
				Selector         struct{ MatchLabels map[string]string }
				URI, Sha256, Bin string
				Files            []struct{ From, To string }
			}
		}
	}
	testenv.Must(t, yaml.Unmarshal(b, &m))
	if m.APIVersion != "krew.googlecontainertools.github.com/v1alpha2" || m.Kind != "Plugin" || m.Metadata.Name != "eiplb" || m.Spec.Version != "${VERSION}" || m.Spec.ShortDescription == "" {
		t.Fatalf("manifest header: %+v", m)
	}
	script, err := os.ReadFile("../../hack/plugin-release.sh")
	testenv.Must(t, err)
	if !strings.Contains(string(script), `kubectl-eiplb_${version}_${os}_${arch}.tar.gz`) {
		t.Fatal("hack/plugin-release.sh no longer names archives kubectl-eiplb_<version>_<os>_<arch>.tar.gz")
	}
	seen := map[string]bool{}
	for _, p := range m.Spec.Platforms {
		goos, arch := p.Selector.MatchLabels["os"], p.Selector.MatchLabels["arch"]
		seen[goos+"/"+arch] = true
		if want := "${RELEASE_URL}/kubectl-eiplb_${VERSION}_" + goos + "_" + arch + ".tar.gz"; p.URI != want {
			t.Errorf("%s/%s: uri %q, want %q", goos, arch, p.URI, want)
		}
		if p.Sha256 != "${SHA256_"+goos+"_"+arch+"}" || p.Bin != "kubectl-eiplb" || len(p.Files) != 2 || p.Files[0].From != "kubectl-eiplb" {
			t.Errorf("%s/%s: %+v", goos, arch, p)
		}
	}
	for _, want := range []string{"linux/amd64", "linux/arm64", "darwin/amd64", "darwin/arm64"} {
		if !seen[want] {
			t.Errorf("no platform %s", want)
		}
	}
}
