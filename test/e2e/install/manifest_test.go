// Package install checks the install manifest against a real API server.
package install

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/pkg/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, func(e *testenv.Env) { env = e }) }

// TestManifestValidates sends every object of deploy/eiplb.yaml to the API
// server (the namespace for real, the rest as a dry run), which validates
// each against its schema: a typo in the DaemonSet or the RBAC fails here,
// not on a user's cluster.
func TestManifestValidates(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "..", "deploy", "eiplb.yaml"))
	testenv.Must(t, err)
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	kinds := map[string]int{}
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatal(err)
		}
		if len(u.Object) == 0 {
			continue
		}
		kinds[u.GetKind()]++
		switch u.GetKind() {
		case "CustomResourceDefinition":
			continue // installed by the test environment from the same files
		case "Namespace":
			testenv.Must(t, client.IgnoreAlreadyExists(env.Client.Create(t.Context(), u)))
			continue
		}
		if err := env.Client.Create(t.Context(), u, client.DryRunAll); err != nil {
			t.Errorf("%s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
	for _, k := range []string{"Deployment", "DaemonSet", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"} {
		if kinds[k] == 0 {
			t.Errorf("the manifest has no %s (kinds: %v)", k, kinds)
		}
	}
}

// TestManagerRollsOneAtATime: the manager Deployment of deploy/eiplb.yaml
// (and so of the chart, TestHelmChart) replaces one replica at a time
// without a surge pod, which required anti-affinity and host ports would
// leave unschedulable on every node that may run a manager.
func TestManagerRollsOneAtATime(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "..", "deploy", "eiplb.yaml"))
	testenv.Must(t, err)
	for _, u := range decode(t, b) {
		if u.GetKind() != "Deployment" || u.GetName() != "eiplb-manager" {
			continue
		}
		s, _, _ := unstructured.NestedMap(u.Object, "spec", "strategy")
		if fmt.Sprint(s) != "map[rollingUpdate:map[maxSurge:0 maxUnavailable:1] type:RollingUpdate]" {
			t.Errorf("eiplb-manager strategy %v, want RollingUpdate with maxSurge 0, maxUnavailable 1", s)
		}
		return
	}
	t.Fatal("deploy/eiplb.yaml has no Deployment eiplb-manager")
}
