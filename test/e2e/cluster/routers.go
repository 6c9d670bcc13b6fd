package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// SamplePassword is the TCP MD5 password of config/samples/bgp.yaml (and
// of docs/routers/*.conf).
const SamplePassword = "change-me"

// labFRRLines are the lab router's own lines, written after "frr defaults":
// its name, and its daemons' logs on stdout (the lab's <daemon>.log).
const labFRRLines = "hostname rtr\nlog stdout\n"

// RouterConfigFile is the path of docs/routers/<name>, the router
// configurations the docs give.
func RouterConfigFile(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "docs", "routers", name)
}

// FRRConfig is the router's FRR configuration: docs/routers/frr.conf (one
// source for the docs and the lab), with the lab's own lines (labFRRLines)
// after "frr defaults", for the managers at the given addresses. Each run
// of the file's lines about its first neighbor is written once per manager,
// the lines about its other neighbors are dropped; its per-neighbor options (password, bfd)
// give way to extra, lines for each neighbor after its remote-as ("bfd
// profile fast", "password x"). So FRRConfig of the file's two neighbors
// with "password "+SamplePassword and "bfd profile fast", as the lab's Up
// passes them, is the file itself (TestFRRConfigIsTheDocs).
func FRRConfig(managers []string, extra ...string) string {
	b, err := os.ReadFile(RouterConfigFile("frr.conf"))
	if err != nil {
		panic(fmt.Sprintf("cluster: the router configuration of the docs: %v", err))
	}
	c, err := frrConfig(string(b), managers, extra)
	if err != nil {
		panic(fmt.Sprintf("cluster: docs/routers/frr.conf: %v", err))
	}
	return c
}

// FRRConfigFile is docs/routers/<name> as the lab's router runs it: the
// file with the lab's own lines (labFRRLines) after "frr defaults", and
// nothing else changed (frr-dynamic.conf names no manager).
func FRRConfigFile(name string) string {
	b, err := os.ReadFile(RouterConfigFile(name))
	if err != nil {
		panic(fmt.Sprintf("cluster: the router configuration of the docs: %v", err))
	}
	var out strings.Builder
	defaults := false
	for _, line := range strings.SplitAfter(string(b), "\n") {
		out.WriteString(line)
		if f := strings.Fields(line); !defaults && len(f) >= 2 && f[0] == "frr" && f[1] == "defaults" {
			out.WriteString(labFRRLines)
			defaults = true
		}
	}
	if !defaults {
		panic(fmt.Sprintf("cluster: docs/routers/%s: no frr defaults line", name))
	}
	return out.String()
}

// frrConfig is FRRConfig of the configuration doc.
func frrConfig(doc string, managers, extra []string) (string, error) {
	var first string // the address of the file's first neighbor
	for _, line := range strings.Split(doc, "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "neighbor" && f[2] == "remote-as" {
			first = f[1]
			break
		}
	}
	if first == "" {
		return "", fmt.Errorf("no neighbor with a remote-as")
	}
	var b strings.Builder
	// block holds consecutive lines about the first neighbor, written
	// once per manager when the block ends.
	var block []string
	flush := func() {
		for _, m := range managers {
			for _, line := range block {
				b.WriteString(strings.Replace(line, first, m, 1))
				if f := strings.Fields(line); f[2] == "remote-as" {
					indent := line[:strings.Index(line, "neighbor")]
					for _, e := range extra {
						fmt.Fprintf(&b, "%sneighbor %s %s\n", indent, m, e)
					}
				}
			}
		}
		block = nil
	}
	defaults := false
	for _, line := range strings.SplitAfter(doc, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "neighbor" {
			switch {
			case f[1] != first: // another neighbor: the managers' lines replace them
			case f[2] == "password" || f[2] == "bfd": // optional: extra says
			default:
				block = append(block, line)
			}
			continue
		}
		flush()
		b.WriteString(line)
		if len(f) >= 2 && f[0] == "frr" && f[1] == "defaults" {
			b.WriteString(labFRRLines)
			defaults = true
		}
	}
	flush()
	if !defaults {
		return "", fmt.Errorf("no frr defaults line")
	}
	return b.String(), nil
}
