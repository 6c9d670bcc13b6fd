package install

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/pkg/testenv"
)

func root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

func helm(t *testing.T) string {
	if p := os.Getenv("HELM"); p != "" {
		return p
	}
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	t.Skip("helm not found: run `make test` (it builds helm with hack/helm.sh), or set HELM")
	return ""
}

func decode(t *testing.T, b []byte) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return out
			}
			t.Fatal(err)
		}
		if len(u.Object) != 0 {
			out = append(out, u)
		}
	}
}

func key(u *unstructured.Unstructured) string {
	return u.GetKind() + " " + u.GetNamespace() + "/" + u.GetName()
}

// render runs helm template on the chart with args.
func render(t *testing.T, args ...string) []*unstructured.Unstructured {
	t.Helper()
	return renderNS(t, "eiplb-system", args...)
}

// renderNS runs helm template on the chart with args, for namespace ns.
func renderNS(t *testing.T, ns string, args ...string) []*unstructured.Unstructured {
	t.Helper()
	all := append([]string{"template", "eiplb", filepath.Join(root(), "deploy", "helm", "eiplb"), "--namespace", ns, "--include-crds"}, args...)
	out, err := exec.Command(helm(t), all...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("helm template: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	return decode(t, out)
}

// validate sends every object to the API server as a dry run.
func validate(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, u := range objs {
		if u.GetKind() == "CustomResourceDefinition" {
			continue
		}
		// A copy: the answer (with the server's defaults) is written back.
		if err := env.Client.Create(t.Context(), u.DeepCopy(), client.DryRunAll); err != nil {
			t.Errorf("%s: %v", key(u), err)
		}
	}
}

// TestHelmChart: the chart lints, its objects pass the API server's
// validation, with the default values it renders what deploy/eiplb.yaml
// holds (object for object, namespace aside: `helm install
// --create-namespace` makes it), and its values change the flags.
func TestHelmChart(t *testing.T) {
	h := helm(t)
	if out, err := exec.Command(h, "lint", "--strict", filepath.Join(root(), "deploy", "helm", "eiplb")).CombinedOutput(); err != nil {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}
	chart := render(t)
	testenv.Must(t, client.IgnoreAlreadyExists(env.Client.Create(t.Context(), &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "eiplb-system"}}})))
	validate(t, chart)

	b, err := os.ReadFile(filepath.Join(root(), "deploy", "eiplb.yaml"))
	testenv.Must(t, err)
	byKey := map[string]*unstructured.Unstructured{}
	for _, u := range chart {
		byKey[key(u)] = u
	}
	for _, want := range decode(t, b) {
		if want.GetKind() == "Namespace" {
			continue
		}
		got := byKey[key(want)]
		if got == nil {
			t.Errorf("the chart has no %s", key(want))
			continue
		}
		delete(byKey, key(want))
		wj, _ := json.Marshal(want.Object)
		gj, _ := json.Marshal(got.Object)
		if !bytes.Equal(wj, gj) {
			t.Errorf("%s differs between deploy/eiplb.yaml and the chart:\nmanifest: %s\nchart:    %s", key(want), wj, gj)
		}
	}
	for k := range byKey {
		t.Errorf("the chart has %s, deploy/eiplb.yaml does not", k)
	}

	t.Run("values", func(t *testing.T) {
		objs := render(t, "--set", "defaultClass=true,agent.dataplane=kube-proxy,manager.ipMode=VIP,logLevel=debug,metrics.secure=false,manager.replicas=3",
			"--set", "manager.extraArgs={--bgp-asn=64999}", "--set", "manager.nodeSelector.role=edge",
			"--set", "image.manager.tag=v9.9.9")
		validate(t, objs)
		args := func(kind string) []string {
			for _, u := range objs {
				if u.GetKind() == kind {
					cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
					var out []string
					for _, a := range cs[0].(map[string]any)["args"].([]any) {
						out = append(out, a.(string))
					}
					return out
				}
			}
			t.Fatalf("no %s rendered", kind)
			return nil
		}
		m, a := args("Deployment"), args("DaemonSet")
		for _, want := range []string{"--serve-services-without-class=true", "--ip-mode=VIP", "--zap-log-level=debug", "--metrics-insecure=true", "--bgp-asn=64999"} {
			if !slices.Contains(m, want) {
				t.Errorf("manager args %v lack %s", m, want)
			}
		}
		for _, want := range []string{"--serve-services-without-class=true", "--dataplane=kube-proxy", "--zap-log-level=debug", "--metrics-insecure=true"} {
			if !slices.Contains(a, want) {
				t.Errorf("agent args %v lack %s", a, want)
			}
		}
		for _, u := range objs {
			if u.GetKind() != "Deployment" {
				continue
			}
			r, _, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", "replicas")
			sel, _, _ := unstructured.NestedStringMap(u.Object, "spec", "template", "spec", "nodeSelector")
			cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
			img := cs[0].(map[string]any)["image"].(string)
			if fmt.Sprint(r) != "3" || sel["role"] != "edge" || !strings.HasSuffix(img, ":v9.9.9") {
				t.Errorf("replicas %v, nodeSelector %v, image %s: values not applied", r, sel, img)
			}
		}
	})
}
