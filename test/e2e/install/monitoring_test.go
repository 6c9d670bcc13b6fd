package install

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/eiplb/eiplb/pkg/testenv"
)

// installMonitoringCRDs creates testdata's minimal prometheus-operator CRDs
// and waits until the API server serves them.
func installMonitoringCRDs(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "monitoring-crds.yaml"))
	testenv.Must(t, err)
	crds := decode(t, b)
	for _, crd := range crds {
		testenv.Must(t, client.IgnoreAlreadyExists(env.Client.Create(t.Context(), crd.DeepCopy())))
	}
	testenv.Eventually(t, time.Minute, func() string {
		for _, crd := range crds {
			u := &unstructured.Unstructured{}
			u.SetGroupVersionKind(crd.GroupVersionKind())
			if err := env.Client.Get(t.Context(), client.ObjectKey{Name: crd.GetName()}, u); err != nil {
				return err.Error()
			}
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			established := false
			for _, c := range conds {
				c := c.(map[string]any)
				if c["type"] == "Established" && c["status"] == "True" {
					established = true
				}
			}
			if !established {
				return crd.GetName() + " not established"
			}
		}
		return ""
	})
}

// TestHelmMonitoring: the chart's prometheus-operator objects are off by
// default (the comparison with deploy/eiplb.yaml in TestHelmChart holds
// that); switched on, in any namespace, they are accepted by the API server
// with the monitoring CRDs installed (strict field validation), the
// monitors select the metrics Services and pods by the port they name, the
// scraper's token Secret and binding come with secure metrics and not
// without, and the PrometheusRule carries deploy/prometheus/alerts.yaml's
// rules in the release's namespace.
func TestHelmMonitoring(t *testing.T) {
	helm(t)
	installMonitoringCRDs(t)
	const ns = "monitoring-test"
	testenv.Must(t, client.IgnoreAlreadyExists(env.Client.Create(t.Context(), &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}}})))

	for _, kind := range []string{"ServiceMonitor", "PodMonitor", "PrometheusRule", "Secret"} {
		for _, u := range render(t) {
			if u.GetKind() == kind {
				t.Errorf("default values render a %s", key(u))
			}
		}
	}

	on := "monitoring.serviceMonitor.enabled=true,monitoring.podMonitor.enabled=true,monitoring.prometheusRule.enabled=true,monitoring.prometheusRule.labels.release=kps"
	for _, secure := range []bool{true, false} {
		objs := renderNS(t, ns, "--set", on, "--set", "metrics.secure="+map[bool]string{true: "true", false: "false"}[secure])
		byKind := map[string][]*unstructured.Unstructured{}
		for _, u := range objs {
			byKind[u.GetKind()] = append(byKind[u.GetKind()], u)
			if u.GetKind() == "CustomResourceDefinition" {
				continue
			}
			if err := env.Client.Create(t.Context(), u.DeepCopy(), client.DryRunAll, client.FieldValidation("Strict")); err != nil {
				t.Errorf("secure=%v: %s: %v", secure, key(u), err)
			}
			if u.GetNamespace() != "" && u.GetNamespace() != ns {
				t.Errorf("%s is not in the release's namespace %s", key(u), ns)
			}
		}
		if len(byKind["ServiceMonitor"]) != 2 || len(byKind["PodMonitor"]) != 2 || len(byKind["PrometheusRule"]) != 1 {
			t.Fatalf("secure=%v: want 2 ServiceMonitors, 2 PodMonitors, 1 PrometheusRule; got %d, %d, %d", secure,
				len(byKind["ServiceMonitor"]), len(byKind["PodMonitor"]), len(byKind["PrometheusRule"]))
		}
		hasToken := len(byKind["Secret"]) == 1 && byKind["Secret"][0].GetName() == "eiplb-metrics-scraper-token"
		if hasToken != secure {
			t.Errorf("secure=%v: scraper token Secret rendered: %v", secure, hasToken)
		}

		// Each ServiceMonitor selects a metrics Service by its labels and
		// port name; each PodMonitor the pods of a workload and a port
		// of their container.
		for _, sm := range byKind["ServiceMonitor"] {
			sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
			eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
			found := false
			for _, svc := range byKind["Service"] {
				if labelsMatch(sel, svc.GetLabels()) && servicePort(svc, eps[0].(map[string]any)["port"].(string)) {
					found = true
				}
			}
			if !found {
				t.Errorf("%s selects no metrics Service by %v and port %v", key(sm), sel, eps[0])
			}
			checkScheme(t, sm, eps[0].(map[string]any), secure)
		}
		for _, pm := range byKind["PodMonitor"] {
			sel, _, _ := unstructured.NestedStringMap(pm.Object, "spec", "selector", "matchLabels")
			eps, _, _ := unstructured.NestedSlice(pm.Object, "spec", "podMetricsEndpoints")
			found := false
			for _, w := range append(byKind["Deployment"], byKind["DaemonSet"]...) {
				labels, _, _ := unstructured.NestedStringMap(w.Object, "spec", "template", "metadata", "labels")
				if labelsMatch(sel, labels) && containerPort(w, eps[0].(map[string]any)["port"].(string)) {
					found = true
				}
			}
			if !found {
				t.Errorf("%s selects no pods by %v and port %v", key(pm), sel, eps[0])
			}
			checkScheme(t, pm, eps[0].(map[string]any), secure)
		}

		// The rule is the file's.
		b, err := os.ReadFile(filepath.Join(root(), "deploy", "prometheus", "alerts.yaml"))
		testenv.Must(t, err)
		var file map[string]any
		testenv.Must(t, yaml.Unmarshal(b, &file))
		pr := byKind["PrometheusRule"][0]
		gotJ, _ := json.Marshal(pr.Object["spec"])
		wantJ, _ := json.Marshal(file["spec"])
		var got, want any
		_ = json.Unmarshal(gotJ, &got)
		_ = json.Unmarshal(wantJ, &want)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("the chart's PrometheusRule differs from deploy/prometheus/alerts.yaml (make manifests copies it):\nchart: %s\nfile:  %s", gotJ, wantJ)
		}
		if pr.GetLabels()["release"] != "kps" {
			t.Errorf("prometheusRule.labels not applied: %v", pr.GetLabels())
		}
	}
}

func labelsMatch(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func servicePort(svc *unstructured.Unstructured, name string) bool {
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	for _, p := range ports {
		if p.(map[string]any)["name"] == name {
			return true
		}
	}
	return false
}

func containerPort(w *unstructured.Unstructured, name string) bool {
	cs, _, _ := unstructured.NestedSlice(w.Object, "spec", "template", "spec", "containers")
	for _, c := range cs {
		ports, _ := c.(map[string]any)["ports"].([]any)
		for _, p := range ports {
			if p.(map[string]any)["name"] == name {
				return true
			}
		}
	}
	return false
}

func checkScheme(t *testing.T, u *unstructured.Unstructured, ep map[string]any, secure bool) {
	t.Helper()
	want := "http"
	if secure {
		want = "https"
	}
	if ep["scheme"] != want {
		t.Errorf("%s: scheme %v, want %s", key(u), ep["scheme"], want)
	}
	auth, _ := ep["authorization"].(map[string]any)
	if secure != (auth != nil) {
		t.Errorf("%s: authorization %v with secure=%v", key(u), auth, secure)
	}
	if secure && !strings.Contains(toJSON(auth), "eiplb-metrics-scraper-token") {
		t.Errorf("%s: authorization %v does not use the scraper's token", key(u), auth)
	}
}

func toJSON(v any) string { b, _ := json.Marshal(v); return string(b) }
