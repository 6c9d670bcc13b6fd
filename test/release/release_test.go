package release_test

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMakeRelease: `make release` writes the versioned manifest (identical
// to deploy/eiplb.yaml), the alert rules, the packaged chart (its
// Chart.yaml and the values pinning no tag, so the images follow
// appVersion) and the plugin's archive, which holds the LICENSE and a
// binary that reports the release version; SHA256SUMS lists every file.
// The Go build runs with GOPROXY=off (offline). One platform, to keep the
// build short.
func TestMakeRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the plugin: not with -short")
	}
	helm := os.Getenv("HELM")
	if helm == "" {
		t.Skip("HELM is not set: run `make test` (hack/helm.sh builds helm)")
	}
	v := "v" + appVersion(t)
	dist := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "-C", "../..", "release", "DIST="+dist, "PLUGIN_PLATFORMS=linux/amd64")
	cmd.Env = append(os.Environ(), "HELM="+helm, "GOPROXY=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make release: %v\n%s", err, out)
	}

	if got, want := readFile(t, filepath.Join(dist, "eiplb-"+v+".yaml")), read(t, "deploy/eiplb.yaml"); got != want {
		t.Error("dist's manifest differs from deploy/eiplb.yaml")
	}
	if got, want := readFile(t, filepath.Join(dist, "eiplb-alerts-"+v+".yaml")), read(t, "deploy/prometheus/alerts.yaml"); got != want {
		t.Error("dist's alert rules differ from deploy/prometheus/alerts.yaml")
	}

	chart := untar(t, filepath.Join(dist, "eiplb-"+strings.TrimPrefix(v, "v")+".tgz"))
	if !strings.Contains(chart["eiplb/Chart.yaml"], "appVersion: "+strings.TrimPrefix(v, "v")) &&
		!strings.Contains(chart["eiplb/Chart.yaml"], `appVersion: "`+strings.TrimPrefix(v, "v")+`"`) {
		t.Errorf("packaged Chart.yaml has no appVersion %s:\n%s", v, chart["eiplb/Chart.yaml"])
	}
	for _, f := range []string{"eiplb/values.yaml", "eiplb/templates/manager.yaml", "eiplb/crds/eiplb.io_eippools.yaml", "eiplb/files/alerts.yaml"} {
		if chart[f] == "" {
			t.Errorf("the packaged chart lacks %s", f)
		}
	}

	archive := filepath.Join(dist, "kubectl-eiplb_"+v+"_linux_amd64.tar.gz")
	files := untar(t, archive)
	if files["LICENSE"] == "" || files["kubectl-eiplb"] == "" {
		t.Fatalf("%s holds %v, want kubectl-eiplb and LICENSE", archive, keys(files))
	}
	bin := filepath.Join(t.TempDir(), "kubectl-eiplb")
	if err := os.WriteFile(bin, []byte(files["kubectl-eiplb"]), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, bin, "version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "kubectl-eiplb "+v {
		t.Errorf("the archived plugin's version: %q, %v; want kubectl-eiplb %s", out, err, v)
	}

	sums := readFile(t, filepath.Join(dist, "SHA256SUMS"))
	entries, _ := os.ReadDir(dist)
	for _, e := range entries {
		if e.Name() != "SHA256SUMS" && !strings.Contains(sums, "  "+e.Name()+"\n") {
			t.Errorf("SHA256SUMS does not list %s:\n%s", e.Name(), sums)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// untar reads a .tar.gz into name → content.
func untar(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = string(b)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
