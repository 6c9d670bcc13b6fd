// Package alerts tests deploy/prometheus/alerts.yaml with Prometheus' own
// rule checker and unit-test runner (promtool, built from the Go module
// proxy by hack/promtool.sh; `make test` sets PROMTOOL): every expression
// parses, and every alert fires on a constructed series (alerts_test.yaml).
package alerts

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func promtool(t *testing.T) string {
	if p := os.Getenv("PROMTOOL"); p != "" {
		return p
	}
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	t.Skip("promtool not found: run `make test` (it builds promtool with hack/promtool.sh), or set PROMTOOL")
	return ""
}

// rules writes the rule groups of the PrometheusRule to dir/rules.yaml.
func rules(t *testing.T, dir string) string {
	b, err := os.ReadFile("../../deploy/prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var pr struct {
		Kind string         `json:"kind"`
		Spec map[string]any `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &pr); err != nil {
		t.Fatal(err)
	}
	if pr.Kind != "PrometheusRule" || pr.Spec["groups"] == nil {
		t.Fatalf("alerts.yaml: want a PrometheusRule with spec.groups, got kind %q", pr.Kind)
	}
	out, err := yaml.Marshal(pr.Spec)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAlerts(t *testing.T) {
	tool := promtool(t)
	dir := t.TempDir()
	path := rules(t, dir)
	if out, err := exec.Command(tool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	tests, err := os.ReadFile("alerts_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts_test.yaml"), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tool, "test", "rules", filepath.Join(dir, "alerts_test.yaml")).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	t.Logf("%s", out)

	// Every alert of the file has a test, and reads metrics eiplb exports.
	b, _ := os.ReadFile(path)
	exported := exportedMetrics(t)
	for _, m := range metricRE.FindAllString(string(b), -1) {
		if m = strings.TrimSuffix(m, "_total"); !exported[m] {
			t.Errorf("alerts.yaml reads %s, which eiplb does not export", m)
		}
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, ok := strings.CutPrefix(strings.TrimSpace(line), "- alert: ")
		if !ok {
			name, ok = strings.CutPrefix(strings.TrimSpace(line), "alert: ")
		}
		if ok && !strings.Contains(string(tests), "alertname: "+name+"\n") {
			t.Errorf("alert %s has no test in alerts_test.yaml", name)
		}
	}
}

// labelRE finds the labels an annotation template reads.
var labelRE = regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)

// TestAlertsIndependentOfDeployment: the PrometheusRule names no namespace
// (it goes where it is applied, or where the chart puts it), and its
// summaries and descriptions read only labels every scrape has (instance)
// or that eiplb's metrics carry themselves, never pod, namespace or job,
// which depend on how Prometheus was configured.
func TestAlertsIndependentOfDeployment(t *testing.T) {
	b, err := os.ReadFile("../../deploy/prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var pr struct {
		Metadata map[string]any `json:"metadata"`
		Spec     struct {
			Groups []struct {
				Rules []struct {
					Alert       string            `json:"alert"`
					Expr        string            `json:"expr"`
					Annotations map[string]string `json:"annotations"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &pr); err != nil {
		t.Fatal(err)
	}
	if ns, ok := pr.Metadata["namespace"]; ok {
		t.Errorf("the PrometheusRule hard-codes namespace %v", ns)
	}
	allowed := map[string]bool{"instance": true, "pool": true, "family": true, "peer": true, "node": true, "reason": true}
	n := 0
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			n++
			for _, bad := range []string{"namespace=", "job=", "pod="} {
				if strings.Contains(r.Expr, bad) {
					t.Errorf("%s: the expression matches on %s, which depends on the scrape config", r.Alert, bad)
				}
			}
			for k, v := range r.Annotations {
				for _, m := range labelRE.FindAllStringSubmatch(v, -1) {
					if !allowed[m[1]] {
						t.Errorf("%s: %s reads label %q, which plain scraping does not set", r.Alert, k, m[1])
					}
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no rules read")
	}
}

// TestDashboard checks the Grafana dashboard's queries: each parses
// (promtool checks them as recording rules) and every eiplb_ metric it
// reads is one the code exports.
func TestDashboard(t *testing.T) {
	tool := promtool(t)
	b, err := os.ReadFile("../../deploy/grafana/eiplb-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := yaml.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	exported := exportedMetrics(t)
	var rules []map[string]string
	for i, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for j, tg := range p.Targets {
			rules = append(rules, map[string]string{"record": fmt.Sprintf("dashboard:panel%d_%d", i, j), "expr": tg.Expr})
			for _, m := range metricRE.FindAllString(tg.Expr, -1) {
				m = strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_total")
				if !exported[m] {
					t.Errorf("panel %q reads %s, which eiplb does not export", p.Title, m)
				}
			}
		}
	}
	out, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard.yaml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(tool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Fatalf("a dashboard query does not parse: %v\n%s", err, out)
	}
}

var metricRE = regexp.MustCompile(`eiplb_[a-z_]+`)

// exportedMetrics are the eiplb_ metric names declared in pkg/ (without
// _total), read from the source.
func exportedMetrics(t *testing.T) map[string]bool {
	names := map[string]bool{}
	decl := regexp.MustCompile(`"(eiplb_[a-z_]+)"`)
	err := filepath.WalkDir("../../pkg", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range decl.FindAllStringSubmatch(string(b), -1) {
			names[strings.TrimSuffix(m[1], "_total")] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(names) < 10 {
		t.Fatalf("found only %d eiplb_ metrics in pkg/: %v", len(names), names)
	}
	return names
}
