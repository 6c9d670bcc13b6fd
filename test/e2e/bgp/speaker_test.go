//go:build privileged

package bgp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"

	"k8s.io/apimachinery/pkg/util/yaml"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/bgp"
	"github.com/eiplb/eiplb/pkg/bgp/route"
	"github.com/eiplb/eiplb/pkg/controller/announce"
	"github.com/eiplb/eiplb/test/e2e/cluster"
	"github.com/eiplb/eiplb/test/netlab"
)

// speakerEnv, when set, makes the test binary a bare pkg/bgp speaker (see
// runSpeaker) instead of running tests: the tests start it in a node
// namespace, so that a crash (SIGKILL) is a real one: no NOTIFICATION, the
// kernel closes the TCP session.
const speakerEnv = "EIPLB_TEST_SPEAKER"

// speakerSpec is what a speaker process announces, to whom.
type speakerSpec struct {
	RouterID netip.Addr
	ASN      uint32
	Peers    []route.Peer
	Paths    []route.Path
}

// runSpeaker runs a speaker as spec (JSON) says until SIGTERM, when it
// stops cleanly; SIGKILL is a crash.
func runSpeaker(spec string) int {
	var c speakerSpec
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	log := funcr.New(func(prefix, args string) {
		fmt.Fprintln(os.Stderr, time.Now().Format("15:04:05.000"), prefix, args)
	}, funcr.Options{Verbosity: 1})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	s, err := bgp.New(ctx, bgp.Config{RouterID: c.RouterID, ASN: c.ASN, Logger: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := s.SetPaths("test", c.Paths); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := s.SetPeers(ctx, c.Peers); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	<-ctx.Done()
	s.Stop(context.Background())
	return 0
}

// speakerProc is a speaker process started by startSpeakerProc.
type speakerProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string // its log file (stderr and stdout)
}

// signal sends sig to the speaker's process group.
func (p *speakerProc) signal(sig syscall.Signal) { _ = syscall.Kill(-p.cmd.Process.Pid, sig) }

// kill kills the speaker at once (SIGKILL: a crash) and waits for it.
func (p *speakerProc) kill() {
	p.signal(syscall.SIGKILL)
	<-p.done
}

// startSpeaker runs a speaker process in ns; it is killed when the test
// ends. The returned function kills it at once (SIGKILL: a crash).
func startSpeaker(t *testing.T, ns *netlab.NS, spec speakerSpec) (kill func()) {
	t.Helper()
	return startSpeakerProc(t, ns, spec).kill
}

// startSpeakerProc runs a speaker process in ns; it is killed when the
// test ends.
func startSpeakerProc(t *testing.T, ns *netlab.NS, spec speakerSpec) *speakerProc {
	t.Helper()
	b, err := json.Marshal(spec)
	must(t, err)
	exe, err := os.Executable()
	must(t, err)
	logPath := filepath.Join(ns.Lab().Dir(), fmt.Sprintf("speaker-%s-%d.log", ns.Name, time.Now().UnixNano()))
	logf, err := os.Create(logPath)
	must(t, err)
	cmd := exec.Command("ip", "netns", "exec", ns.Name, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), speakerEnv+"="+string(b))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	must(t, cmd.Start())
	p := &speakerProc{cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("speaker log (%s):\n%s", logPath, tail(b, 4096))
			}
		}
	})
	return p
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// grPeer is the router as a graceful-restart peer of a speaker in node1.
func grPeer() route.Peer {
	return route.Peer{
		Address: netip.MustParseAddr("192.168.100.1"), ASN: 65000, LocalASN: 65001, Port: 179,
		ConnectTime: time.Second, GracefulRestart: true, RestartTime: 120 * time.Second,
		AddPathSendMax: 64, IPv4: true, IPv6: true,
	}
}

// nodePaths: each prefix through the three nodes.
func nodePaths(prefixes ...string) []route.Path {
	var out []route.Path
	for _, p := range prefixes {
		for _, nh := range []string{"192.168.100.11", "192.168.100.12", "192.168.100.13"} {
			out = append(out, route.Path{Prefix: netip.MustParsePrefix(p), NextHop: netip.MustParseAddr(nh)})
		}
	}
	return out
}

// TestFRRGracefulRestartStalePaths: a speaker with graceful restart
// announcing two prefixes crashes (SIGKILL: no NOTIFICATION), and a new one
// announces only one of them, as a manager restarted after a Service was
// deleted. The router keeps the first prefix in its FIB the whole time and
// drops the other within seconds of the new session, not after its
// stale-path timer (FRR: 360 s).
func TestFRRGracefulRestartStalePaths(t *testing.T) {
	tp := newTopo(t)
	frr := tp.lab.StartFRR(tp.rtr, frrConfig([]string{"192.168.100.11"}))
	kept, gone := "172.30.0.10/32", "172.30.0.11/32"
	spec := speakerSpec{RouterID: netip.MustParseAddr("192.168.100.11"), ASN: 65001, Peers: []route.Peer{grPeer()}}
	spec.Paths = nodePaths(kept, gone)
	kill := startSpeaker(t, tp.nodes[0], spec)
	all := netlab.Via("192.168.100.11", "192.168.100.12", "192.168.100.13")
	tp.rtr.WaitRoute(t, kept, 20*time.Second, all)
	tp.rtr.WaitRoute(t, gone, 5*time.Second, all)

	kill()
	crashed := time.Now()
	spec.Paths = nodePaths(kept)
	startSpeaker(t, tp.nodes[0], spec)
	var goneAt time.Duration
	for time.Since(crashed) < 20*time.Second {
		r, found, err := tp.rtr.Route(kept)
		must(t, err)
		if !all(r, found) {
			t.Fatalf("%s changed %s after the crash: %v (found %v)", kept, time.Since(crashed).Round(time.Millisecond), r, found)
		}
		if goneAt == 0 {
			if _, found, err := tp.rtr.Route(gone); err == nil && !found {
				goneAt = time.Since(crashed)
				t.Logf("%s left the FIB %s after the crash", gone, goneAt.Round(time.Millisecond))
			}
		} else if time.Since(crashed) > goneAt+2*time.Second {
			break // kept watched for a while after
		}
		time.Sleep(5 * time.Millisecond)
	}
	if goneAt == 0 {
		out, _ := frr.Vtysh("show bgp ipv4 unicast "+gone, "show bgp ipv4 neighbors 192.168.100.11 graceful-restart")
		t.Fatalf("%s still in the FIB 20 s after the crash; FRR:\n%s", gone, out)
	}
	// Nothing is left stale: the kept paths were refreshed.
	eventually(t, 5*time.Second, func() string {
		out, err := frr.Vtysh("show bgp ipv4 unicast " + kept + " json")
		if err != nil || !strings.Contains(out, `"paths"`) || strings.Contains(out, `"stale"`) {
			return "FRR paths: " + out
		}
		return ""
	})
}

// sampleBFD is the BFD of config/samples/bgp.yaml's BGPPeer, with the
// announcer's defaults for what it leaves out.
func sampleBFD(t *testing.T) *route.BFD {
	b, err := os.ReadFile(filepath.Join(cluster.Root(), "config", "samples", "bgp.yaml"))
	must(t, err)
	for _, doc := range strings.Split(string(b), "\n---\n") {
		var p v1alpha1.BGPPeer
		if err := yaml.Unmarshal([]byte(doc), &p); err != nil || p.Kind != "BGPPeer" {
			continue
		}
		if p.Spec.BFD == nil || !p.Spec.BFD.Enabled {
			t.Fatal("config/samples/bgp.yaml: the BGPPeer has no BFD")
		}
		out := &route.BFD{MinTx: announce.DefaultBFDInterval, MinRx: announce.DefaultBFDInterval, Multiplier: announce.DefaultBFDMultiplier}
		if d := p.Spec.BFD.MinTxInterval; d != nil {
			out.MinTx = d.Duration
		}
		if d := p.Spec.BFD.MinRxInterval; d != nil {
			out.MinRx = d.Duration
		}
		if m := p.Spec.BFD.Multiplier; m != nil {
			out.Multiplier = uint8(*m)
		}
		return out
	}
	t.Fatal("config/samples/bgp.yaml has no BGPPeer")
	return nil
}

// TestFRRBFDSurvivesStall: with the sample's BFD timers on both sides, a
// speaker frozen three times for 0.35 s (what a loaded node does: 97 ms
// was the longest scheduling stall measured on the lab's 2-core machine at
// load 10-13, where 100 ms x 3 reset the lab's sessions) keeps its session,
// and one frozen for good loses its route through BFD, not the hold timer.
func TestFRRBFDSurvivesStall(t *testing.T) {
	b := sampleBFD(t)
	detect := time.Duration(b.Multiplier) * max(b.MinTx, b.MinRx)
	if detect >= time.Second {
		t.Fatalf("sample BFD detection time %v, want under a second", detect)
	}
	tp := newTopo(t)
	frr := tp.lab.StartFRR(tp.rtr, frrConfig([]string{"192.168.100.11"}, "bfd profile eiplb"))
	peer := grPeer()
	peer.BFD = b
	prefix := "172.30.0.10/32"
	spec := speakerSpec{RouterID: netip.MustParseAddr("192.168.100.11"), ASN: 65001, Peers: []route.Peer{peer}, Paths: nodePaths(prefix)}
	sp := startSpeakerProc(t, tp.nodes[0], spec)
	all := netlab.Via("192.168.100.11", "192.168.100.12", "192.168.100.13")
	tp.rtr.WaitRoute(t, prefix, 20*time.Second, all)
	bfdUpFRR := func() string {
		if out, _ := frr.Vtysh("show bfd peers brief"); !strings.Contains(out, "192.168.100.11") || !strings.Contains(out, "up") {
			return "FRR BFD: " + out
		}
		return ""
	}
	eventually(t, 15*time.Second, bfdUpFRR)
	before := frrSession(t, frr)

	// Well over the longest stall measured at load 10-13 (see above), just
	// under what 100 ms x 5 tolerates: the sample's timers must ride it
	// out, on both sides.
	const stall = 350 * time.Millisecond
	for range 3 {
		sp.signal(syscall.SIGSTOP)
		time.Sleep(stall) // the stall itself, not a wait for something
		sp.signal(syscall.SIGCONT)
		eventually(t, 5*time.Second, bfdUpFRR)
	}
	if after := frrSession(t, frr); after.State != "Established" || after.Dropped != before.Dropped || after.Established != before.Established {
		t.Fatalf("a %v stall reset the session (BFD %v x %d): before %+v, after %+v", stall, b.MinTx, b.Multiplier, before, after)
	}
	t.Logf("three %v stalls survived with BFD %v x %d", stall, b.MinTx, b.Multiplier)

	// The router must run the profile of docs/routers/frr.conf, not bfdd's
	// defaults (300 ms x 3: an "exit" before the bfd block once kept bfdd
	// from reading it, and a frozen speaker took 1.5 s to detect).
	if out, err := frr.Vtysh("show bfd peers"); err != nil || strings.Contains(out, "interval: 300ms") ||
		strings.Count(out, fmt.Sprintf("Detect-multiplier: %d", b.Multiplier)) != 2 {
		t.Errorf("FRR's BFD peer does not use the sample's timers on both sides (%v):\n%s", err, out)
	}
	sp.signal(syscall.SIGSTOP)
	defer sp.signal(syscall.SIGCONT)
	start := time.Now()
	tp.rtr.WaitRoute(t, prefix, 5*time.Second, netlab.Absent)
	took := time.Since(start)
	t.Logf("route withdrawn %v after the speaker froze (detection time %v)", took.Round(time.Millisecond), detect)
	// BFD, not the hold timer (9 s at the least: FRR's datacenter
	// defaults), took the route away. How fast is a measurement
	// (docs/bgp.md), not an assertion: on a loaded machine
	// the router's own bfdd and zebra are late too (2.1 s seen with
	// make test running beside it).
	if took > 4500*time.Millisecond {
		t.Errorf("route withdrawn %v after the speaker froze, want well under the 9 s hold time (BFD's detection, not the hold timer's)", took.Round(time.Millisecond))
	}
}
