package migrate

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/pkg/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, func(e *testenv.Env) { env = e }) }

// TestGolden converts each testdata/<from>-*.in.yaml and compares the output
// with <name>.out.yaml; then it proves the output is valid eiplb input:
// every object passes the API server's validation (CRD schema and CEL,
// server-side dry run), and every Service edit applies to the Service.
func TestGolden(t *testing.T) {
	ins, err := filepath.Glob("testdata/*.in.yaml")
	testenv.Must(t, err)
	if len(ins) == 0 {
		t.Fatal("no testdata")
	}
	for _, in := range ins {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		t.Run(name, func(t *testing.T) {
			from, _, _ := strings.Cut(name, "-")
			from = strings.TrimSuffix(from, ".in.yaml")
			objs, err := ReadFiles([]string{in}, nil)
			testenv.Must(t, err)
			res, err := Convert(objs, Options{From: from})
			testenv.Must(t, err)
			var b bytes.Buffer
			testenv.Must(t, res.Write(&b))
			golden := strings.TrimSuffix(in, ".in.yaml") + ".out.yaml"
			if *update {
				testenv.Must(t, os.WriteFile(golden, b.Bytes(), 0o644))
			}
			want, err := os.ReadFile(golden)
			testenv.Must(t, err)
			if b.String() != string(want) {
				t.Errorf("output differs from %s (go test -update rewrites it):\n%s", golden, b.String())
			}
			applyOutput(t, objs, b.Bytes())
		})
	}
}

// applyOutput creates the input's Services, then applies the output: eiplb
// objects and Secrets in a server-side dry run, Service edits for real
// (server-side apply), and checks the annotations landed.
func applyOutput(t *testing.T, input []Object, output []byte) {
	t.Helper()
	ctx, c := t.Context(), env.Client
	ensureNamespace(t, "eiplb-system")
	for _, o := range input {
		if o.GetKind() != "Service" {
			continue
		}
		ensureNamespace(t, o.GetNamespace())
		svc := &corev1.Service{}
		testenv.Must(t, from(o, svc))
		svc.ResourceVersion, svc.Status = "", corev1.ServiceStatus{}
		testenv.Must(t, c.Create(ctx, svc))
		// t.Context() is done when cleanups run.
		t.Cleanup(func() { testenv.Must(t, c.Delete(context.Background(), svc)) })
	}
	out, err := decode(bytes.NewReader(output))
	testenv.Must(t, err)
	kinds := map[string]int{}
	for _, o := range out {
		kinds[o.GetKind()]++
		if o.GetKind() == "Service" {
			testenv.Must(t, c.Patch(ctx, o, client.Apply, client.FieldOwner("eiplb-migrate"), client.ForceOwnership))
			got := &corev1.Service{}
			testenv.Must(t, c.Get(ctx, client.ObjectKeyFromObject(o), got))
			for k, v := range o.GetAnnotations() {
				if got.Annotations[k] != v {
					t.Errorf("Service %s: annotation %s=%q after apply, want %q", o.GetName(), k, got.Annotations[k], v)
				}
			}
			continue
		}
		if err := c.Create(ctx, o, client.DryRunAll); err != nil {
			t.Errorf("%s %s is not valid: %v", o.GetKind(), o.GetName(), err)
		}
	}
	if kinds["EIPPool"] == 0 {
		t.Errorf("no EIPPool in the output: %v", kinds)
	}
}

func ensureNamespace(t *testing.T, ns string) {
	t.Helper()
	err := env.Client.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

func TestMergeOr(t *testing.T) {
	host := func(h string) metav1.LabelSelector {
		return metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/hostname": h}}
	}
	for _, tc := range []struct {
		name string
		in   []metav1.LabelSelector
		want string // "" nil, "!" not expressible
	}{
		{"none", nil, ""},
		{"empty selector matches all", []metav1.LabelSelector{{}}, ""},
		{"one", []metav1.LabelSelector{{MatchLabels: map[string]string{"a": "b", "c": "d"}}}, "a=b,c=d"},
		{"same key", []metav1.LabelSelector{host("n2"), host("n1"), {MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: "In", Values: []string{"n3", "n1"}}}}}, "kubernetes.io/hostname in (n1,n2,n3)"},
		{"two keys", []metav1.LabelSelector{host("n1"), {MatchLabels: map[string]string{"rack": "r1"}}}, "!"},
		{"NotIn", []metav1.LabelSelector{host("n1"), {MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: "NotIn", Values: []string{"n3"}}}}}, "!"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sel, ok := mergeOr(tc.in)
			got := "!"
			if ok {
				got = ""
				if sel != nil {
					s, err := metav1.LabelSelectorAsSelector(sel)
					testenv.Must(t, err)
					got = s.String()
				}
			}
			if got != tc.want {
				t.Errorf("mergeOr = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNormalizeAddress(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7/24":            "192.0.2.0/24",
		" 192.0.2.1 - 192.0.2.9 ": "192.0.2.1-192.0.2.9",
		"2001:db8::1/120":         "2001:db8::/120",
		"2001:db8::5":             "2001:db8::5",
		"192.0.2.1-2001:db8::1":   "!",
		"nonsense":                "!",
	} {
		got, err := normalizeAddress(in)
		if err != nil {
			got = "!"
		}
		if got != want {
			t.Errorf("normalizeAddress(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzNormalizeAddress: any input either fails or gives an entry that
// normalizes to itself and contains the addresses it names.
func FuzzNormalizeAddress(f *testing.F) {
	for _, s := range []string{"192.0.2.7/24", "192.0.2.1 - 192.0.2.9", "2001:db8::1/120", "::", "1.2.3.4-", "-", "a/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := normalizeAddress(s)
		if err != nil {
			return
		}
		again, err := normalizeAddress(n)
		if err != nil || again != n {
			t.Fatalf("%q → %q → %q, %v", s, n, again, err)
		}
	})
}
