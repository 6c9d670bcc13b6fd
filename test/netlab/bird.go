//go:build privileged

package netlab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// BIRD is a BIRD 2 daemon running in a namespace of a lab.
type BIRD struct {
	// NS is the namespace BIRD runs in.
	NS *NS
	// Dir holds bird.conf, bird.log, the pid file and the control socket; it
	// is removed by the lab's cleanup.
	Dir string
	// Socket is BIRD's control socket (birdc -s Socket).
	Socket string

	p *proc
}

// StartBIRD writes config to a folder of the lab (adding "log stderr all;",
// so BIRD logs to <folder>/bird.log), checks it with `bird -p`, starts
// `bird -f -c <config> -s <socket>` in the namespace and waits until birdc
// answers. It skips the test when BIRD is not installed and fails it when
// BIRD does not come up within 20 s. The lab's cleanup stops it.
func (l *Lab) StartBIRD(ns *NS, config string) *BIRD {
	l.t.Helper()
	for _, bin := range []string{"bird", "birdc"} {
		if _, err := exec.LookPath(bin); err != nil {
			l.t.Skipf("netlab: BIRD 2 is not installed (%v); apt-get install bird2", err)
		}
	}
	seq := strconv.Itoa(l.nextSeq())
	b := &BIRD{NS: ns, Dir: filepath.Join(l.dir, "bird-"+ns.label+"-"+seq)}
	b.Socket = filepath.Join(b.Dir, "bird.ctl")
	if err := os.Mkdir(b.Dir, 0o755); err != nil {
		l.t.Fatalf("netlab: %v", err)
	}
	conf := filepath.Join(b.Dir, "bird.conf")
	if err := os.WriteFile(conf, []byte(config+"\n# added by netlab\nlog stderr all;\n"), 0o644); err != nil {
		l.t.Fatalf("netlab: %v", err)
	}
	if out, err := run(context.Background(), "bird", "-p", "-c", conf); err != nil {
		l.t.Fatalf("netlab: BIRD configuration for %s is invalid: %v\n%s", ns.Name, err, numbered(config))
	} else if strings.TrimSpace(out) != "" {
		l.t.Logf("netlab: bird -p: %s", out)
	}

	pidFile := filepath.Join(b.Dir, "bird.pid")
	p, err := l.startProc(ns, "bird", filepath.Join(b.Dir, "bird.log"), pidFile,
		"bird", "-f", "-c", conf, "-s", b.Socket, "-P", pidFile)
	if err != nil {
		l.t.Fatalf("netlab: %v", err)
	}
	b.p = p
	l.mu.Lock()
	l.diags = append(l.diags, b.diagnose)
	l.mu.Unlock()
	err = waitFor(20*time.Second, []*proc{p}, func() error {
		if err := fileExists(b.Socket)(); err != nil {
			return err
		}
		out, err := b.Birdc("show", "status")
		if err != nil {
			return err
		}
		if !strings.Contains(out, "Daemon is up and running") {
			return fmt.Errorf("birdc show status: %s", out)
		}
		return nil
	})
	if err != nil {
		l.t.Fatalf("netlab: BIRD in %s: %v", ns.Name, err)
	}
	return b
}

// Birdc runs `birdc -s <socket> args...` (bounded by 20 s), e.g.
// Birdc("show", "route", "all") or Birdc("disable", "n1"), and returns its
// output without birdc's "BIRD x.y.z ready." banner.
func (b *BIRD) Birdc(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := run(ctx, "birdc", append([]string{"-s", b.Socket}, args...)...)
	if first, rest, ok := strings.Cut(out, "\n"); ok && strings.HasPrefix(first, "BIRD ") && strings.HasSuffix(first, " ready.") {
		out = rest
	}
	return out, err
}

func (b *BIRD) diagnose() {
	t := b.NS.lab.t
	t.Logf("netlab: %s, last log lines:\n%s", b.p.name, b.p.tail(30))
	out, err := b.Birdc("show", "protocols")
	t.Logf("netlab: BIRD in %s:\n%s%v", b.NS.Name, out, errOrEmpty(err))
}
