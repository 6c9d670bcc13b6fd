package release_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", path))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// appVersion is the release version: appVersion of the chart.
func appVersion(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^appVersion:\s*"?([^"\s]+)"?\s*$`).FindStringSubmatch(read(t, "deploy/helm/eiplb/Chart.yaml"))
	if m == nil {
		t.Fatal("no appVersion in deploy/helm/eiplb/Chart.yaml")
	}
	return m[1]
}

// TestManifestsPinnedToVersion: deploy/eiplb.yaml pulls the images of the
// chart's appVersion ("v" + appVersion, the tag config/default sets and the
// chart's default), and nothing under deploy/ or config/ pulls :latest.
// (TestHelmChart in test/e2e/install holds the chart's default render equal
// to deploy/eiplb.yaml, so the chart pins the same tag.)
func TestManifestsPinnedToVersion(t *testing.T) {
	v := "v" + appVersion(t)
	manifest := read(t, "deploy/eiplb.yaml")
	for _, img := range []string{"eiplb-manager", "eiplb-agent"} {
		want := "image: ghcr.io/eiplb/" + img + ":" + v + "\n"
		if !strings.Contains(manifest, want) {
			t.Errorf("deploy/eiplb.yaml does not pull %s:%s (config/default/kustomization.yaml's newTag, then make manifests)", img, v)
		}
	}
	if n := strings.Count(read(t, "config/default/kustomization.yaml"), "newTag: "+v+"\n"); n != 2 {
		t.Errorf("config/default/kustomization.yaml sets newTag %s %d times, want 2 (manager, agent)", v, n)
	}
	for _, dir := range []string{"deploy", "config"} {
		err := filepath.WalkDir(filepath.Join("..", "..", dir), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !(strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".tpl")) {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if regexp.MustCompile(`image:.*:latest|tag:\s*"?latest`).Match(b) {
				t.Errorf("%s pulls :latest", path)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(read(t, "deploy/helm/eiplb/templates/manager.yaml"), `default (printf "v%s" .Chart.AppVersion)`) ||
		!strings.Contains(read(t, "deploy/helm/eiplb/templates/agent.yaml"), `default (printf "v%s" .Chart.AppVersion)`) {
		t.Error("the chart's image tags do not default to v + appVersion")
	}
}
