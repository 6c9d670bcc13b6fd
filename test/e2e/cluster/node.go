//go:build privileged

package cluster

// The cluster lab: the lab's node namespaces run real nodes — containerd
// and a kubelet each, pods in their own network namespaces through the CNI
// bridge plugin — and the control plane adds kube-scheduler and every
// default controller of kube-controller-manager (docs/lab.md, "The cluster
// lab"). How a node is set up is the recipe of ../shared LAB.md: one
// process per node holds a private mount namespace in the node's network
// namespace; containerd and the kubelet join both.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	certutil "k8s.io/client-go/util/cert"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/eiplb/eiplb/test/netlab"
	"github.com/eiplb/eiplb/test/netlab/cgroups"
)

// ClusterAPIIP is where nodes and pods reach the API server in the cluster
// lab: an address on the router's bridge, advertised by the API server (the
// endpoint of the kubernetes Service, which kube-proxy maps 10.96.0.1:443
// to), forwarded to the API server on the host's loopback.
const ClusterAPIIP = "192.168.100.2"

// KubernetesServiceIP is the ClusterIP of the kubernetes Service, which
// in-cluster clients dial.
const KubernetesServiceIP = "10.96.0.1"

// clusterPKI is the cluster lab API server's own serving certificate (the
// envtest one names only the loopback), its CA, and the ServiceAccount
// signing key kube-controller-manager needs too.
type clusterPKI struct {
	dir       string
	caPEM     []byte
	caFile    string
	saKeyFile string
}

// StartClusterAPI is StartAPI for the cluster lab: the API server's
// certificate also names ClusterAPIIP and KubernetesServiceIP, and it
// advertises ClusterAPIIP, so pods with in-cluster configuration reach it
// through the kubernetes Service.
func StartClusterAPI() (*API, error) {
	pki, err := newClusterPKI()
	if err != nil {
		return nil, err
	}
	api, err := startAPI(func(env *envtest.Environment) error {
		s := env.ControlPlane.GetAPIServer()
		s.CertDir = pki.dir
		s.SecureServing.CA = pki.caPEM
		s.Configure().Set("advertise-address", ClusterAPIIP)
		s.Configure().Set("kubelet-preferred-address-types", "InternalIP")
		// envtest disables the ServiceAccount admission plugin; pods of
		// real nodes need it (their token volume, in-cluster config).
		s.Configure().Disable("disable-admission-plugins")
		return nil
	})
	if err != nil {
		_ = os.RemoveAll(pki.dir)
		return nil, err
	}
	api.pki = pki
	return api, nil
}

func newClusterPKI() (*clusterPKI, error) {
	dir, err := os.MkdirTemp("", "eiplb-pki-")
	if err != nil {
		return nil, err
	}
	ips := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(ClusterAPIIP), net.ParseIP(KubernetesServiceIP)}
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("localhost", ips,
		[]string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"})
	if err != nil {
		return nil, err
	}
	// The certificate first, then the CA that signed it.
	var blocks [][]byte
	for rest := certPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		blocks = append(blocks, pem.EncodeToMemory(b))
	}
	if len(blocks) != 2 {
		return nil, fmt.Errorf("serving certificate: want certificate and CA, got %d blocks", len(blocks))
	}
	sa, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	if err != nil {
		return nil, err
	}
	p := &clusterPKI{dir: dir, caPEM: blocks[1], caFile: filepath.Join(dir, "ca.crt"), saKeyFile: filepath.Join(dir, "sa-signer.key")}
	for name, b := range map[string][]byte{
		"apiserver.crt": blocks[0], "apiserver.key": keyPEM, "ca.crt": blocks[1],
		// envtest's names for the ServiceAccount signing key pair.
		"sa-signer.key": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(sa)}),
		"sa-signer.crt": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// scheduler is the cluster lab's kube-scheduler.
type scheduler struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// StartScheduler starts kube-scheduler against the API server, once.
func (a *API) StartScheduler() error {
	a.kcmMu.Lock()
	defer a.kcmMu.Unlock()
	if a.sched != nil {
		return nil
	}
	bin, err := k8sBinary("kube-scheduler")
	if err != nil {
		return err
	}
	dir := a.pki.dir
	kc := filepath.Join(dir, "scheduler.kubeconfig")
	if err := os.WriteFile(kc, a.Kubeconfig, 0o600); err != nil {
		return err
	}
	s := &scheduler{log: filepath.Join(dir, "kube-scheduler.log"), done: make(chan struct{})}
	logf, err := os.Create(s.log)
	if err != nil {
		return err
	}
	s.cmd = exec.Command(bin, "--kubeconfig="+kc, "--authentication-kubeconfig="+kc, "--authorization-kubeconfig="+kc,
		"--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=0",
		"--kube-api-qps=200", "--kube-api-burst=400")
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("starting kube-scheduler: %w", err)
	}
	go func() { _ = s.cmd.Wait(); _ = logf.Close(); close(s.done) }()
	a.sched = s
	return nil
}

func (a *API) stopScheduler() {
	a.kcmMu.Lock()
	defer a.kcmMu.Unlock()
	if a.sched != nil {
		_ = syscall.Kill(-a.sched.cmd.Process.Pid, syscall.SIGKILL)
		<-a.sched.done
		a.sched = nil
	}
	if a.pki != nil {
		_ = os.RemoveAll(a.pki.dir)
	}
}

// CgroupPrefix starts the name of every cgroup root the cluster lab makes
// (netlab's prefix, so `make lab-down` finds those of crashed runs).
const CgroupPrefix = netlab.Prefix

// cgroupHierarchies are the cgroup (v1 and unified) mounts under
// /sys/fs/cgroup.
func cgroupHierarchies() []string {
	var out []string
	ents, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range ents {
		p := filepath.Join("/sys/fs/cgroup", e.Name())
		if _, err := os.Stat(filepath.Join(p, "cgroup.procs")); err == nil {
			out = append(out, p)
		}
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.procs"); err == nil {
		out = append(out, "/sys/fs/cgroup") // cgroup v2 only
	}
	return out
}

// makeCgroupRoot creates cgroup root name in every hierarchy (cpuset needs
// its cpus and mems copied from the parent before a task can join).
func makeCgroupRoot(name string) error {
	for _, h := range cgroupHierarchies() {
		d := filepath.Join(h, name)
		if err := os.Mkdir(d, 0o755); err != nil && !os.IsExist(err) {
			return err
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if b, err := os.ReadFile(filepath.Join(h, f)); err == nil {
				if err := os.WriteFile(filepath.Join(d, f), b, 0o644); err != nil {
					return fmt.Errorf("%s: %w", filepath.Join(d, f), err)
				}
			}
		}
	}
	return nil
}

// RemoveCgroupRoot kills every process in cgroup root name (the pods'
// containers, in their own network namespaces) and removes its cgroups,
// deepest first, in every hierarchy. `make lab-down` does the same for
// crashed runs (test/netlab/cleanup).
func RemoveCgroupRoot(name string) error {
	var errs []error
	for _, h := range cgroupHierarchies() {
		root := filepath.Join(h, name)
		if _, err := os.Stat(root); err != nil {
			continue
		}
		errs = append(errs, cgroups.Remove(root))
	}
	return errors.Join(errs...)
}

// nodeSysctls are the kernel settings the kubelet checks with
// protectKernelDefaults, with the values it wants; the node's mount
// namespace sees files with these values instead of the host's.
var nodeSysctls = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

// KNode is a real node of the cluster lab: the mount-namespace holder,
// containerd and the kubelet of a node namespace.
type KNode struct {
	I                   int
	Name                string
	NS                  *netlab.NS
	Dir                 string // the node's folder in the lab's
	Cgroup              string // the cgroup root of its pods
	holder              *Process
	Containerd, Kubelet *Process
}

// nsenter runs argv in the node's mount and network namespaces.
func (n *KNode) nsenter(argv ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"-t", strconv.Itoa(n.holder.Pid()), "-m", "-n", "--"}, argv...)...)
}

// Ctr runs ctr against the node's containerd in the k8s.io namespace.
func (n *KNode) Ctr(args ...string) (string, error) {
	out, err := n.nsenter(append([]string{"ctr", "-a", "/run/containerd/containerd.sock", "-n", "k8s.io"}, args...)...).CombinedOutput()
	return string(out), err
}

// PodCIDR is node i's pod network.
func PodCIDR(i int) string { return fmt.Sprintf("10.244.%d.0/24", i) }

// startKNode brings node i up as a real node: holder, containerd, kubelet.
// The Node object registers itself; the caller waits for it to be Ready.
func (l *Lab) startKNode(i int, sandboxImage string) *KNode {
	t := l.T
	t.Helper()
	ns := l.Nodes[i-1]
	n := &KNode{I: i, Name: NodeName(i), NS: ns, Dir: filepath.Join(l.Net.Dir(), NodeName(i)),
		Cgroup: CgroupPrefix + l.Net.ID() + "-" + NodeName(i)}
	for _, d := range []string{"log", "sysctl", "containerd", "cni/net.d", "volume-plugins", "pki"} {
		if err := os.MkdirAll(filepath.Join(n.Dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := makeCgroupRoot(n.Cgroup); err != nil {
		t.Fatal(err)
	}
	// After the node's processes are gone (netlab kills every process of
	// the namespace; this runs before, as cleanups run last-in first-out,
	// so kill them here): the pods' processes, then their cgroups.
	t.Cleanup(func() {
		for _, p := range []*Process{n.Kubelet, n.Containerd} {
			if p != nil {
				p.Signal(syscall.SIGKILL)
			}
		}
		killNamespace(ns.Name)
		if err := RemoveCgroupRoot(n.Cgroup); err != nil {
			t.Errorf("removing cgroup root %s: %v", n.Cgroup, err)
		}
	})

	var mounts strings.Builder
	// The lab's folder is under /run: keep it visible through the tmpfs
	// that hides the host's /run (its netns, containerd's state).
	fmt.Fprintf(&mounts, "mount -t tmpfs tmpfs /var/lib && mkdir -p /var/lib/lab /var/lib/kubelet /var/lib/cni && "+
		"mount --rbind %[1]s /var/lib/lab && mount -t tmpfs tmpfs /run && mkdir -p %[1]s && mount --rbind /var/lib/lab %[1]s && "+
		"mount --bind %[2]s/log /var/log", l.Net.Dir(), n.Dir)
	for k, v := range nodeSysctls {
		f := filepath.Join(n.Dir, "sysctl", strings.ReplaceAll(k, "/", "."))
		if err := os.WriteFile(f, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&mounts, " && mount --bind %s /proc/sys/%s", f, k)
	}
	ready := filepath.Join(n.Dir, "holder.ready")
	fmt.Fprintf(&mounts, " && touch %s && exec sleep infinity", ready)
	n.holder = l.startProc(n, "holder", exec.Command("unshare", "-m", "--propagation", "private",
		"nsenter", "--net="+ns.Path(), "sh", "-c", mounts.String()))
	l.waitFile(n.holder, ready)

	cni := filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "cni")
	sandbox := sandboxImage
	containerdConf := fmt.Sprintf(`version = 2
root = %q
state = "/run/containerd"
oom_score = 0
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
`, filepath.Join(n.Dir, "containerd"), sandbox, cni, filepath.Join(n.Dir, "cni/net.d"))
	if err := os.WriteFile(filepath.Join(n.Dir, "containerd.toml"), []byte(containerdConf), 0o644); err != nil {
		t.Fatal(err)
	}
	conflist := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "lab", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "/var/lib/cni/networks",
            "ranges": [[{"subnet": %q, "gateway": "10.244.%d.1"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
`, PodCIDR(i), i)
	if err := os.WriteFile(filepath.Join(n.Dir, "cni/net.d/10-lab.conflist"), []byte(conflist), 0o644); err != nil {
		t.Fatal(err)
	}
	n.Containerd = l.startProc(n, "containerd", n.nsenter("containerd", "--config", filepath.Join(n.Dir, "containerd.toml")))
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := n.Ctr("version"); err == nil {
			break
		}
		if n.Containerd.Exited() || time.Now().After(deadline) {
			t.Fatalf("containerd on %s did not start; its log: %s", n.Name, n.Containerd.Log)
		}
		time.Sleep(100 * time.Millisecond)
	}

	kc, _ := l.API.kubeconfigIn(t, ns, l.API.Kubeconfig, ns.Name+"-kubelet.kubeconfig")
	if err := os.WriteFile(filepath.Join(n.Dir, "resolv.conf"), []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	kubeletConf := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /%s
address: %s
readOnlyPort: 0
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
protectKernelDefaults: true
volumePluginDir: %s
resolvConf: %s
failSwapOn: false
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "1Mi", nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
nodeStatusUpdateFrequency: 2s
syncFrequency: 10s
shutdownGracePeriod: 0s
`, n.Cgroup, NodeIP(i), filepath.Join(n.Dir, "volume-plugins"), filepath.Join(n.Dir, "resolv.conf"))
	if err := os.WriteFile(filepath.Join(n.Dir, "kubelet.yaml"), []byte(kubeletConf), 0o644); err != nil {
		t.Fatal(err)
	}
	bin, err := k8sBinary("kubelet")
	if err != nil {
		t.Fatal(err)
	}
	n.Kubelet = l.startProc(n, "kubelet", n.nsenter(bin, "--config="+filepath.Join(n.Dir, "kubelet.yaml"),
		"--kubeconfig="+kc, "--cert-dir="+filepath.Join(n.Dir, "pki"),
		"--hostname-override="+n.Name, "--node-ip="+NodeIP(i), "-v=1"))
	return n
}

// startProc starts cmd as a process of node n (own process group, log in
// the node's folder), killed when the owner ends.
func (l *Lab) startProc(n *KNode, name string, cmd *exec.Cmd) *Process {
	t := l.T
	t.Helper()
	logPath := filepath.Join(n.Dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Process{cmd: cmd, Log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.Signal(syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("%s %s log (last 3 KiB):\n%s", n.Name, name, tail(b, 3072))
			}
		}
	})
	return p
}

// waitFile waits until p has written file (bounded).
func (l *Lab) waitFile(p *Process, file string) {
	l.T.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(file); err == nil {
			return
		}
		if p.Exited() || time.Now().After(deadline) {
			b, _ := os.ReadFile(p.Log)
			l.T.Fatalf("%s not written: %s", file, bytes.TrimSpace(b))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// apiForwarder makes the API server reachable at ClusterAPIIP on the
// router's bridge, on the API server's port (what it advertises).
func (l *Lab) apiForwarder() {
	t := l.T
	t.Helper()
	l.Exec(l.Rtr, "ip", "addr", "add", ClusterAPIIP+"/32", "dev", "br0")
	_, port, err := net.SplitHostPort(l.API.host)
	if err != nil {
		t.Fatal(err)
	}
	l.API.forward(t, l.Rtr, net.JoinHostPort(ClusterAPIIP, port))
}

// importImages imports the docker archives into node n's containerd.
func (n *KNode) importImages(t netlab.T, archives []string) {
	t.Helper()
	for _, a := range archives {
		if out, err := n.Ctr("images", "import", a); err != nil {
			t.Fatalf("importing %s on %s: %v: %s", a, n.Name, err, out)
		}
	}
}

// killNamespace kills every process in network namespace name (the
// containerd shims; netlab does the same later, this lets the pods'
// cgroups go first), bounded.
func killNamespace(name string) {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		out, err := exec.CommandContext(context.Background(), "ip", "netns", "pids", name).Output()
		if err != nil {
			return
		}
		left := 0
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				left++
			}
		}
		if left == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
