//go:build privileged

// Package cluster runs eiplb as on a real cluster, inside a netlab: a real
// API server (envtest), one router namespace and node namespaces on a shared
// bridge, Node objects the test plays kubelet for, and the eiplb-manager
// binary started as a process in a node namespace (hostNetwork), reaching
// the API server through a proxy on the node's loopback.
package cluster

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/eiplb/eiplb/pkg/apis"
	"github.com/eiplb/eiplb/test/netlab"
)

// API is a running API server shared by the tests of a package.
type API struct {
	Env        *envtest.Environment
	Client     client.Client
	Kubeconfig []byte // system:masters, server on the host's loopback
	// ManagerKubeconfig and AgentKubeconfig, when set (see
	// UseServiceAccounts), are the credentials the eiplb processes start
	// with; otherwise they get Kubeconfig.
	ManagerKubeconfig, AgentKubeconfig []byte
	host                               string // 127.0.0.1:port of the API server
	bin                                string // folder with the built eiplb binaries

	kcmMu sync.Mutex
	kcm   *kcm // kube-controller-manager, once StartControllers ran

	pki   *clusterPKI // the cluster lab's CA and keys (StartClusterAPI)
	sched *scheduler  // kube-scheduler, once StartScheduler ran
}

// StartAPI starts the API server with eiplb's CRDs and builds the eiplb
// binaries; call Stop when the tests are done.
func StartAPI() (*API, error) { return startAPI(nil) }

// startAPI is StartAPI; configure, when set, adjusts the environment before
// it starts.
func startAPI(configure func(*envtest.Environment) error) (*API, error) {
	root := Root()
	bin, err := os.MkdirTemp("", "eiplb-bin-")
	if err != nil {
		return nil, err
	}
	for _, b := range []string{"manager", "agent"} {
		build := exec.Command("go", "build", "-o", filepath.Join(bin, "eiplb-"+b), "./cmd/"+b)
		build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return nil, fmt.Errorf("building the %s: %w", b, err)
		}
	}
	env := &envtest.Environment{CRDDirectoryPaths: []string{filepath.Join(root, "config", "crd", "bases")}, ErrorIfCRDPathMissing: true}
	env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", "10.96.0.0/16,fd00:96::/108")
	if configure != nil {
		if err := configure(env); err != nil {
			return nil, err
		}
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, err
	}
	user, err := env.AddUser(envtest.User{Name: "eiplb-e2e", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return nil, err
	}
	scheme, _ := apis.NewScheme()
	// The tests play kubelet and the endpoint controller, and the
	// benchmark creates thousands of objects: client-go's default rate
	// limit (QPS 5) would be what they measure.
	cfg.QPS, cfg.Burst = 2000, 4000
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	u, err := clientcmd.Load(kc)
	if err != nil {
		return nil, err
	}
	host := ""
	for _, cl := range u.Clusters {
		host = cl.Server
	}
	api := &API{Env: env, Client: c, Kubeconfig: kc, bin: bin}
	if api.host, err = hostPort(host); err != nil {
		return nil, err
	}
	if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "eiplb-system"}}); err != nil {
		return nil, err
	}
	return api, nil
}

func hostPort(server string) (string, error) {
	const prefix = "https://"
	if len(server) <= len(prefix) {
		return "", fmt.Errorf("unexpected API server URL %q", server)
	}
	return server[len(prefix):], nil
}

// Stop stops kube-controller-manager and the API server and removes the
// binaries.
func (a *API) Stop() {
	a.stopControllers()
	a.stopScheduler()
	_ = a.Env.Stop()
	_ = os.RemoveAll(a.bin)
}

// Manager returns the path of the built eiplb-manager.
func (a *API) Manager() string { return filepath.Join(a.bin, "eiplb-manager") }

// Agent returns the path of the built eiplb-agent.
func (a *API) Agent() string { return filepath.Join(a.bin, "eiplb-agent") }

// APIProxy forwards a node namespace's loopback port to the API server on
// the host's loopback. Cut makes the API server unreachable from the node
// (open connections reset, new ones refused) until Restore.
type APIProxy struct {
	mu   sync.Mutex
	cut  bool
	open map[net.Conn]struct{}
}

// Cut makes the API server unreachable through the proxy.
func (p *APIProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.open {
		_ = c.Close()
	}
	p.open = map[net.Conn]struct{}{}
}

// Restore lets connections through again.
func (p *APIProxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

func (p *APIProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return false
	}
	for _, c := range cs {
		p.open[c] = struct{}{}
	}
	return true
}

// KubeconfigIn gives a node namespace access to the API server: a proxy
// listening on the namespace's loopback forwards to the host's. It returns
// the path of a kubeconfig that points there, and the proxy; everything
// stops with the test.
func (a *API) KubeconfigIn(t netlab.T, ns *netlab.NS) (string, *APIProxy) {
	t.Helper()
	return a.kubeconfigIn(t, ns, a.Kubeconfig, ns.Name+".kubeconfig")
}

// kubeconfigIn is KubeconfigIn with the credentials of kc, written to file
// in the lab's folder.
func (a *API) kubeconfigIn(t netlab.T, ns *netlab.NS, kc []byte, file string) (string, *APIProxy) {
	t.Helper()
	proxy, addr := a.forward(t, ns, "127.0.0.1:0")
	u, err := clientcmd.Load(kc)
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range u.Clusters {
		cl.Server = "https://" + addr
	}
	path := filepath.Join(ns.Lab().Dir(), file)
	if err := clientcmd.WriteToFile(*u, path); err != nil {
		t.Fatal(err)
	}
	return path, proxy
}

// forward listens on addr in namespace ns and forwards every connection to
// the API server on the host's loopback until the owner ends; it returns
// the proxy and the address it listens on.
func (a *API) forward(t netlab.T, ns *netlab.NS, addr string) (*APIProxy, string) {
	t.Helper()
	l, err := ns.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	proxy := &APIProxy{open: map[net.Conn]struct{}{}}
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.DialTimeout("tcp", a.host, 5*time.Second) // the host's namespace
			if err != nil {
				_ = c.Close()
				continue
			}
			if !proxy.track(c, up) {
				_ = c.Close()
				_ = up.Close()
				continue
			}
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(up, c); _ = up.(*net.TCPConn).CloseWrite() }()
			go func() { defer wg.Done(); _, _ = io.Copy(c, up); _ = c.(*net.TCPConn).CloseWrite() }()
		}
	}()
	t.Cleanup(func() { _ = l.Close(); proxy.Cut(); wg.Wait() })
	return proxy, l.Addr().String()
}

// Process is an eiplb process started in a namespace.
type Process struct {
	cmd  *exec.Cmd
	Log  string
	done chan struct{}
	// API is the process's way to the API server; Cut it to make the API
	// server unreachable for this process alone.
	API *APIProxy
}

// StartManager runs eiplb-manager in the node's namespace as node name,
// with the flags the deploy manifest uses plus args; it is killed when the
// test ends. Agents are not required (--agent-port=0) unless args ask for
// them with --agent-port.
func (a *API) StartManager(t netlab.T, node *netlab.NS, name, routerID string, args ...string) *Process {
	t.Helper()
	return a.start(t, node, "manager-"+name, a.ManagerKubeconfig, append([]string{a.Manager(),
		"--node-name=" + name, "--router-id=" + routerID,
		"--metrics-bind-address=0", "--health-probe-bind-address=0",
		"--leader-election-namespace=eiplb-system", "--peer-status-interval=200ms", "--agent-port=0"}, args...))
}

// StartAgent runs eiplb-agent in the node's namespace as node name, with
// args; it is killed when the test ends (its rules stay, as they would).
func (a *API) StartAgent(t netlab.T, node *netlab.NS, name string, args ...string) *Process {
	t.Helper()
	return a.start(t, node, "agent-"+name, a.AgentKubeconfig, append([]string{a.Agent(),
		"--node-name=" + name, "--metrics-bind-address=0", "--health-probe-bind-address=0"}, args...))
}

func (a *API) start(t netlab.T, node *netlab.NS, name string, creds []byte, argv []string) *Process {
	t.Helper()
	if creds == nil {
		creds = a.Kubeconfig
	}
	kc, proxy := a.kubeconfigIn(t, node, creds, node.Name+"-"+name+".kubeconfig")
	logPath := filepath.Join(node.Lab().Dir(), fmt.Sprintf("%s-%d.log", name, time.Now().UnixNano()))
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	full := append([]string{"netns", "exec", node.Name, argv[0], "--kubeconfig=" + kc}, argv[1:]...)
	cmd := exec.Command("ip", full...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Process{cmd: cmd, Log: logPath, done: make(chan struct{}), API: proxy}
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.Signal(syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("%s log (last 4 KiB):\n%s", name, tail(b, 4096))
			}
		}
	})
	return p
}

// Signal sends sig to the process group (the ip wrapper and the manager).
func (p *Process) Signal(sig syscall.Signal) {
	if p.cmd.Process != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	}
}

// Pid is the process id (ip netns exec replaces itself with the program).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits for the process to exit.
func (p *Process) Wait(timeout time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Node creates a Node object named name with InternalIPs ips, Ready.
func (a *API) Node(t netlab.T, name string, ips ...string) *corev1.Node {
	t.Helper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}}}
	ctx := context.Background()
	if err := a.Client.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Client.Delete(context.Background(), n) })
	a.SetNodeReady(t, n, true, ips...)
	return n
}

// SetNodeReady plays the kubelet: sets the node's Ready condition, and its
// addresses when ips are given.
func (a *API) SetNodeReady(t netlab.T, n *corev1.Node, ready bool, ips ...string) {
	t.Helper()
	ctx := context.Background()
	if err := a.Client.Get(ctx, client.ObjectKeyFromObject(n), n); err != nil {
		t.Fatal(err)
	}
	st := corev1.ConditionTrue
	if !ready {
		st = corev1.ConditionFalse
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st, LastHeartbeatTime: metav1.Now()}}
	if len(ips) > 0 {
		n.Status.Addresses = nil
		for _, ip := range ips {
			n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip})
		}
	}
	if err := a.Client.Status().Update(ctx, n); err != nil {
		t.Fatal(err)
	}
}
