//go:build privileged

// Package preflight_test runs `eiplb-agent --preflight` as an admin would,
// in a fresh network namespace: a node that lacks forwarding and whose
// link port is taken fails with one line naming each problem, a good one
// passes, and neither keeps the throwaway nftables table.
package preflight_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/eiplb/eiplb/test/netlab"
)

func agentBinary(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	bin := filepath.Join(t.TempDir(), "eiplb-agent")
	build := exec.Command("go", "build", "-o", bin, "./cmd/agent")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the agent: %v\n%s", err, out)
	}
	return bin
}

func TestAgentPreflight(t *testing.T) {
	bin := agentBinary(t)
	lab := netlab.New(t)

	t.Run("missing forwarding and a taken port", func(t *testing.T) {
		ns := lab.Namespace("bad")
		if out, err := ns.Exec(context.Background(), "sysctl", "-q", "-w", "net.ipv4.ip_forward=0", "net.ipv4.conf.all.rp_filter=1"); err != nil {
			t.Fatalf("sysctl: %v: %s", err, out)
		}
		l, err := ns.Listen("tcp", ":9474")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		out, err := ns.Exec(context.Background(), bin, "--preflight")
		if err == nil || !strings.Contains(err.Error(), "exit status 1") {
			t.Fatalf("preflight on a bad node: %v (want exit status 1), output:\n%s", err, out)
		}
		for _, want := range []string{
			"FAIL  sysctl net.ipv4.ip_forward = 0: packets DNATed",
			"FAIL  port :9474/tcp (agent link, the managers connect here): in use by another process",
			"ok    nftables: interval sets with concatenated keys (pipapo)",
			"ok    nftables: delete table inet eiplb-preflight-",
			"ok    port :9475/tcp (metrics): free",
			"eiplb-agent: preflight: 2 required check(s) failed",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("no line %q in:\n%s", want, out)
			}
		}
		// rp_filter: the namespace's interfaces (lo only) are skipped, so
		// all=1 alone names none.
		if tables, err := ns.Exec(context.Background(), "nft", "list", "tables"); err != nil || strings.TrimSpace(tables) != "" {
			t.Errorf("tables left after the preflight (%v):\n%s", err, tables)
		}
	})

	t.Run("good node", func(t *testing.T) {
		ns := lab.Namespace("good") // netlab turns forwarding on
		out, err := ns.Exec(context.Background(), bin, "--preflight")
		if err != nil {
			t.Fatalf("preflight on a good node: %v, output:\n%s", err, out)
		}
		if strings.Contains(out, "FAIL") || !strings.Contains(out, "ok    sysctl net.ipv4.ip_forward = 1") ||
			!strings.Contains(out, "every required check passed") {
			t.Errorf("unexpected output:\n%s", out)
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if !strings.HasPrefix(line, "ok ") && !strings.HasPrefix(line, "warn ") && !strings.HasPrefix(line, "eiplb-agent: ") && !strings.HasPrefix(line, "{") {
				t.Errorf("line neither a check nor the verdict: %q", line)
			}
		}
	})
}
