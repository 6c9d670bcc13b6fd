// Package release_test checks what a release carries: the version stamped
// into the binaries by the Makefile.
package release_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBuildStampsVersion: `make build VERSION=...` stamps the version into
// the three binaries, which print it with --version (the manager and the
// agent) and `kubectl eiplb version` (the plugin, without a kubeconfig).
func TestBuildStampsVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the three binaries: not with -short")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	bin := t.TempDir()
	const v = "v0.0.0-stamp-test"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "make", "-C", "../..", "build", "VERSION="+v, "BINDIR="+bin).CombinedOutput()
	if err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	for _, tc := range [][]string{
		{"eiplb-manager", "--version"},
		{"eiplb-agent", "--version"},
		{"kubectl-eiplb", "version"},
	} {
		cmd := exec.CommandContext(ctx, filepath.Join(bin, tc[0]), tc[1:]...)
		cmd.Env = []string{"KUBECONFIG=/nonexistent", "HOME=" + bin} // no cluster needed
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%s: %v\n%s", strings.Join(tc, " "), err, out)
			continue
		}
		if got, want := strings.TrimSpace(string(out)), tc[0]+" "+v; got != want {
			t.Errorf("%s printed %q, want %q", strings.Join(tc, " "), got, want)
		}
	}
}
