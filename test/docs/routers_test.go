package docs_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// routersDir holds every router configuration the docs show; docs/bgp.md
// shows each one whole.
const routersDir = "../../docs/routers"

// parsers check the configurations whose router is installed here (FRR 8.4
// and BIRD 2, hack/install-deps.sh); the vendor ones are not machine-checked.
// Each must exist; every other file of docs/routers named like one of them
// (frr-dynamic.conf, bird-dynamic.conf) goes through the same parser.
var parsers = map[string][]string{
	"frr.conf":  {"vtysh", "--dryrun", "-f"},
	"bird.conf": {"bird", "-p", "-c"},
}

// parserFor is the parser of a file of docs/routers: that of frr.conf for
// frr*.conf, of bird.conf for bird*.conf, none for the others.
func parserFor(name string) []string {
	for base, argv := range parsers {
		kind := strings.TrimSuffix(base, ".conf")
		if name == base || strings.HasPrefix(name, kind+"-") && strings.HasSuffix(name, ".conf") {
			return argv
		}
	}
	return nil
}

// frrFiles are the files of docs/routers that FRR reads.
func frrFiles(t *testing.T) []string {
	files, err := os.ReadDir(routersDir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		if argv := parserFor(f.Name()); len(argv) > 0 && argv[0] == "vtysh" {
			out = append(out, f.Name())
		}
	}
	return out
}

// TestRouterConfigsParse feeds each router configuration of the docs to the
// router's own parser. Without the router installed it skips, unless
// EIPLB_REQUIRE_ROUTERS is set (`make test` sets it, so CI fails instead).
func TestRouterConfigsParse(t *testing.T) {
	files, err := os.ReadDir(routersDir)
	if err != nil {
		t.Fatal(err)
	}
	for name := range parsers {
		if _, err := os.Stat(filepath.Join(routersDir, name)); err != nil {
			t.Errorf("the parsers check docs/routers/%s: %v", name, err)
		}
	}
	for _, f := range files {
		name, argv := f.Name(), parserFor(f.Name())
		if argv == nil {
			continue
		}
		t.Run(name, func(t *testing.T) {
			file, err := filepath.Abs(filepath.Join(routersDir, name))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(file); err != nil {
				t.Fatal(err)
			}
			bin, err := exec.LookPath(argv[0])
			if err != nil {
				msg := argv[0] + " is not installed (sudo hack/install-deps.sh installs FRR and BIRD 2): cannot check docs/routers/" + name
				if os.Getenv("EIPLB_REQUIRE_ROUTERS") != "" {
					t.Fatal(msg)
				}
				t.Skip(msg)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, bin, append(argv[1:], file)...).CombinedOutput()
			if err != nil {
				t.Fatalf("%s rejects docs/routers/%s: %v\n%s", strings.Join(argv, " "), name, err, out)
			}
			// vtysh --dryrun exits 0 yet prints what a daemon would warn about.
			if s := strings.TrimSpace(string(out)); s != "" {
				t.Errorf("%s on docs/routers/%s: %s", strings.Join(argv, " "), name, s)
			}
		})
	}
}

// TestFRRConfigBGPDaemon: bgpd reads the integrated frr.conf line by line
// on its own, and a line it does not know (the bfd block, bfdd's) leaves
// it where it was: an "exit" there would take it out of configuration mode
// and lose `router bgp` (vtysh --dryrun, which knows every daemon, does
// not see that). `bgpd -C` must accept every line of the blocks that are
// bgpd's. bgpd -C needs root (it drops privileges to the frr user).
func TestFRRConfigBGPDaemon(t *testing.T) {
	const bgpd = "/usr/lib/frr/bgpd"
	if _, err := os.Stat(bgpd); err != nil {
		msg := "FRR is not installed (sudo hack/install-deps.sh): cannot check docs/routers/frr*.conf with bgpd -C"
		if os.Getenv("EIPLB_REQUIRE_ROUTERS") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if os.Geteuid() != 0 {
		t.Skip("bgpd -C needs root (it drops privileges to the frr user); vtysh --dryrun checked the syntax")
	}
	for _, name := range frrFiles(t) {
		t.Run(name, func(t *testing.T) { checkBGPDaemon(t, bgpd, name) })
	}
}

// checkBGPDaemon: bgpd -C accepts every line of the bgpd blocks of
// docs/routers/name (see TestFRRConfigBGPDaemon).
func checkBGPDaemon(t *testing.T, bgpd, name string) {
	file, err := filepath.Abs(filepath.Join(routersDir, name))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	// block[i] is the top-level command line i+1 belongs to.
	var block []string
	top := ""
	for _, line := range strings.Split(string(b), "\n") {
		if line != "" && line[0] != ' ' && line[0] != '!' {
			top = line
		}
		block = append(block, top)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bgpd, "-C", "-f", file).CombinedOutput()
	if err != nil {
		t.Fatalf("bgpd -C -f docs/routers/%s: %v\n%s", name, err, out)
	}
	bgp := 0
	for _, m := range regexp.MustCompile(`(?:No such command|Config Failed) on config line (\d+):(.*)`).FindAllStringSubmatch(string(out), -1) {
		n, _ := strconv.Atoi(m[1])
		if n < 1 || n > len(block) {
			t.Fatalf("bgpd names line %d of %d: %s", n, len(block), m[0])
		}
		if strings.HasPrefix(block[n-1], "router bgp") || strings.HasPrefix(block[n-1], "route-map") {
			t.Errorf("bgpd refuses line %d of docs/routers/%s (in %q):%s", n, name, block[n-1], m[2])
		}
	}
	for _, blk := range block {
		if strings.HasPrefix(blk, "router bgp") {
			bgp++
		}
	}
	if bgp == 0 {
		t.Errorf("docs/routers/%s has no router bgp", name)
	}
}

// TestRouterConfigsShownInDocs: every file of docs/routers is shown whole
// in docs/bgp.md, in a fenced block, and named there, so what people copy
// is what the parsers and the lab checked.
func TestRouterConfigsShownInDocs(t *testing.T) {
	md, err := os.ReadFile("../../docs/bgp.md")
	if err != nil {
		t.Fatal(err)
	}
	files, err := os.ReadDir(routersDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < len(parsers) {
		t.Fatalf("docs/routers has %d files", len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(routersDir, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(md), "\n```\n"+string(b)+"```\n") {
			t.Errorf("docs/bgp.md does not show docs/routers/%s whole in a fenced block", f.Name())
		}
		if !strings.Contains(string(md), "(routers/"+f.Name()+")") {
			t.Errorf("docs/bgp.md does not link docs/routers/%s", f.Name())
		}
	}
	// Comments on a command line are part of the command to FRR.
	for _, name := range frrFiles(t) {
		frr, err := os.ReadFile(filepath.Join(routersDir, name))
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(frr), "\n") {
			if l := strings.TrimSpace(line); !strings.HasPrefix(l, "!") && strings.Contains(l, "!") {
				t.Errorf("docs/routers/%s:%d: a comment after a command: %q", name, i+1, line)
			}
		}
	}
}

// TestRouterConfigsUseSamplePassword: each router configuration carries the
// MD5 password of config/samples/bgp.yaml's Secret, so the samples and a
// copied router configuration peer.
func TestRouterConfigsUseSamplePassword(t *testing.T) {
	b, err := os.ReadFile("../../config/samples/bgp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	password := ""
	for _, doc := range strings.Split(string(b), "\n---\n") {
		var o struct {
			Kind       string            `json:"kind"`
			StringData map[string]string `json:"stringData"`
		}
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatal(err)
		}
		if o.Kind == "Secret" {
			password = o.StringData["password"]
		}
	}
	if password == "" {
		t.Fatal("config/samples/bgp.yaml has no Secret with a password")
	}
	files, err := os.ReadDir(routersDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		c, err := os.ReadFile(filepath.Join(routersDir, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(c), password) {
			t.Errorf("docs/routers/%s does not use the sample Secret's password %q", f.Name(), password)
		}
	}
}
