//go:build privileged

package nft

import (
	"strings"
	"testing"

	"github.com/eiplb/eiplb/pkg/dataplane"
)

// TestProbe runs the preflight's kernel probe in a fresh network namespace:
// every feature the writer uses is taken by this kernel, the throwaway
// table is gone afterwards, and the namespace holds no other table.
func TestProbe(t *testing.T) {
	for _, mode := range []dataplane.Mode{dataplane.ModeNftables, dataplane.ModeKubeProxy} {
		t.Run(string(mode), func(t *testing.T) {
			ns, fd := labNS(t)
			rs := Probe(Options{Mode: mode, NetNS: fd})
			var features []string
			for _, r := range rs {
				features = append(features, r.Feature)
				if r.Err != nil {
					t.Errorf("%s: %v", r.Feature, r.Err)
				}
			}
			joined := strings.Join(features, "\n")
			want := []string{"create table inet eiplb-preflight-", "delete table inet eiplb-preflight-", "inet filter base chains", "sets of addresses"}
			if mode == dataplane.ModeNftables {
				want = append(want, "inet nat base chains", "interval sets with concatenated keys (pipapo)",
					"maps with concatenated keys and values", "ct label", "numgen random", "jhash", "masquerade", "dnat to address . port")
			} else if strings.Contains(joined, "masquerade") || strings.Contains(joined, "pipapo") {
				t.Errorf("kube-proxy mode probed NAT features it does not use:\n%s", joined)
			}
			for _, w := range want {
				if !strings.Contains(joined, w) {
					t.Errorf("no probe of %q in:\n%s", w, joined)
				}
			}
			if ProbeFailed(rs) {
				t.Fatal("ProbeFailed is true")
			}
			if out := nft(t, ns, "list", "tables"); strings.TrimSpace(out) != "" {
				t.Errorf("tables left after the probe:\n%s", out)
			}
		})
	}
}

// TestProbeReportsRefusal: what the kernel refuses is reported as failed
// with its error (here the table itself, through a name longer than the
// kernel's limit), and nothing is tried after a table that can't be made.
func TestProbeReportsRefusal(t *testing.T) {
	_, fd := labNS(t)
	rs := Probe(Options{Mode: dataplane.ModeNftables, NetNS: fd, Table: strings.Repeat("x", 300)})
	if len(rs) != 1 || rs[0].Err == nil {
		t.Fatalf("a table name the kernel refuses: want one failed result, got %+v", rs)
	}
	if !ProbeFailed(rs) {
		t.Fatal("ProbeFailed is false")
	}
}
