//go:build privileged

package cluster

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/eiplb/eiplb/test/netlab"
)

// The lab's addresses. Node i (1-based) is 192.168.100.1i and
// fd00:100::1i on the router's bridge; pod j (0-based) of node i is
// 10.244.i.(4j+2)/30 and fd00:244:i::(4j+2)/126 on a veth from the node; the
// client is 192.168.200.2 and fd00:200::2 on the router's other side.
const (
	RouterIP  = "192.168.100.1"
	ClientIP  = "192.168.200.2"
	ClientIP6 = "fd00:200::2"
	// BackendPort is where every pod answers HTTP.
	BackendPort = 8080
)

// NodeName is the Node object and namespace label of node i.
func NodeName(i int) string { return fmt.Sprintf("node%d", i) }

// NodeIP is node i's IPv4 address on the bridge.
func NodeIP(i int) string { return fmt.Sprintf("192.168.100.%d", 10+i) }

// NodeIP6 is node i's IPv6 address on the bridge.
func NodeIP6(i int) string { return fmt.Sprintf("fd00:100::%d", 10+i) }

// PodIP is the IPv4 address of pod j on node i.
func PodIP(i, j int) string { return fmt.Sprintf("10.244.%d.%d", i, 4*j+2) }

// PodIP6 is the IPv6 address of pod j on node i.
func PodIP6(i, j int) string { return fmt.Sprintf("fd00:244:%d::%d", i, 4*j+2) }

// PodName is the name pod j of node i answers with.
func PodName(i, j int) string { return fmt.Sprintf("pod%d%d", i, j) }

// LabOptions shape a Lab; zero values give the default lab.
type LabOptions struct {
	Nodes       int // default 3
	PodsPerNode int // default 2
	// ManagerArgs and AgentArgs are added to the deploy manifests' flags.
	ManagerArgs, AgentArgs []string
	// KubeProxy, when set, is the mode of the kube-proxy Up starts on
	// every node: "nftables" or "iptables".
	KubeProxy string
	// RealNodes: no pod namespaces; the cluster lab (NewCluster) runs
	// real nodes whose pods get their networks from CNI.
	RealNodes bool
}

// Lab is the whole system on one machine: a router namespace ("rtr") with a
// bridge to the node namespaces and a link to a client namespace, pod
// namespaces behind each node answering HTTP with "<pod> <client address>",
// and eiplb's managers and agents started as processes in the node
// namespaces against the API server. Everything it starts lives as long as
// its owner T (a test or a netlab.Program).
type Lab struct {
	T      netlab.T
	API    *API
	Net    *netlab.Lab
	Rtr    *netlab.NS
	Client *netlab.NS
	Nodes  []*netlab.NS
	Pods   [][]*netlab.NS // Pods[i-1][j] is pod j of node i
	FRR    *netlab.FRR

	// Managers[i-1], Agents[i-1] and KubeProxies[i-1] are the processes
	// of node i (nil when not running).
	Managers    []*Process
	Agents      []*Process
	KubeProxies []*Process

	opts    LabOptions
	http    *http.Client
	servers map[*netlab.NS]*http.Server // each pod namespace's HTTP server
}

// NewLab builds the topology (no router, no eiplb processes yet).
func NewLab(t netlab.T, api *API, opts LabOptions) *Lab {
	t.Helper()
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.PodsPerNode == 0 && !opts.RealNodes {
		opts.PodsPerNode = 2
	}
	net_ := netlab.New(t)
	l := &Lab{T: t, API: api, Net: net_, opts: opts, servers: map[*netlab.NS]*http.Server{},
		Rtr: net_.Namespace("rtr"), Client: net_.Namespace("client"),
		Managers: make([]*Process, opts.Nodes), Agents: make([]*Process, opts.Nodes), KubeProxies: make([]*Process, opts.Nodes)}
	net_.Bridge(l.Rtr, "br0", RouterIP+"/24", "fd00:100::1/64")
	net_.Link(l.Rtr, "192.168.200.1/24", l.Client, ClientIP+"/24")
	l.Exec(l.Client, "ip", "addr", "add", ClientIP6+"/64", "dev", l.Client.DevTo(l.Rtr))
	l.Exec(l.Rtr, "ip", "addr", "add", "fd00:200::1/64", "dev", l.Rtr.DevTo(l.Client))
	l.Exec(l.Client, "ip", "route", "add", "default", "via", "192.168.200.1")
	l.Exec(l.Client, "ip", "-6", "route", "add", "default", "via", "fd00:200::1")
	// Spread flows over the ECMP next hops by port too.
	l.Exec(l.Rtr, "sysctl", "-q", "-w", "net.ipv4.fib_multipath_hash_policy=1")
	l.Exec(l.Rtr, "sysctl", "-q", "-w", "net.ipv6.fib_multipath_hash_policy=1")
	for i := 1; i <= opts.Nodes; i++ {
		n := net_.Namespace(NodeName(i))
		net_.LinkToBridge(n, []string{NodeIP(i) + "/24", NodeIP6(i) + "/64"}, l.Rtr, "br0")
		var pods []*netlab.NS
		for j := 0; j < opts.PodsPerNode; j++ {
			p := net_.Namespace(PodName(i, j))
			net_.Link(n, fmt.Sprintf("10.244.%d.%d/30", i, 4*j+1), p, PodIP(i, j)+"/30")
			l.Exec(n, "ip", "addr", "add", fmt.Sprintf("fd00:244:%d::%d/126", i, 4*j+1), "dev", n.DevTo(p))
			l.Exec(p, "ip", "addr", "add", PodIP6(i, j)+"/126", "dev", p.DevTo(n))
			l.Exec(p, "ip", "route", "add", "default", "via", fmt.Sprintf("10.244.%d.%d", i, 4*j+1))
			l.Exec(p, "ip", "-6", "route", "add", "default", "via", fmt.Sprintf("fd00:244:%d::%d", i, 4*j+1))
			l.serve(p, PodName(i, j))
			pods = append(pods, p)
		}
		l.Pods = append(l.Pods, pods)
		l.Nodes = append(l.Nodes, n)
	}
	for i := 1; i <= opts.Nodes; i++ {
		l.nodeRoutes(i)
	}
	l.http = &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true, // a new connection per request: each one goes through DNAT
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return l.Client.Dial(ctx, network, addr)
			},
		},
	}
	return l
}

// Exec runs a command in ns and fails the owner when it fails.
func (l *Lab) Exec(ns *netlab.NS, args ...string) string {
	l.T.Helper()
	out, err := ns.Exec(context.Background(), args...)
	if err != nil {
		l.T.Fatalf("%s in %s: %v: %s", strings.Join(args, " "), ns.Name, err, out)
	}
	return out
}

// nodeRoutes gives node i its routes over the bridge: the default routes
// via the router and the other nodes' pod networks (what a CNI does).
// They go when the link goes down; LinkUp puts them back.
func (l *Lab) nodeRoutes(i int) {
	n := l.Nodes[i-1]
	l.Exec(n, "ip", "route", "replace", "default", "via", RouterIP)
	l.Exec(n, "ip", "-6", "route", "replace", "default", "via", "fd00:100::1")
	for k := 1; k <= len(l.Nodes); k++ {
		if k != i {
			l.Exec(n, "ip", "route", "replace", fmt.Sprintf("10.244.%d.0/24", k), "via", NodeIP(k))
			l.Exec(n, "ip", "-6", "route", "replace", fmt.Sprintf("fd00:244:%d::/64", k), "via", NodeIP6(k))
		}
	}
}

// LinkDown cuts node i from the bridge.
func (l *Lab) LinkDown(i int) {
	l.Exec(l.Nodes[i-1], "ip", "link", "set", l.Nodes[i-1].DevTo(l.Rtr), "down")
}

// LinkUp reconnects node i and restores its routes.
func (l *Lab) LinkUp(i int) {
	l.Exec(l.Nodes[i-1], "ip", "link", "set", l.Nodes[i-1].DevTo(l.Rtr), "up")
	l.nodeRoutes(i)
}

// serve answers HTTP on BackendPort (IPv4 and IPv6) in a pod namespace
// with "name client-address".
func (l *Lab) serve(pod *netlab.NS, name string) {
	ln, err := pod.Listen("tcp", fmt.Sprintf(":%d", BackendPort))
	if err != nil {
		l.T.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprintf(w, "%s %s", name, host)
	}), ReadHeaderTimeout: 5 * time.Second}
	l.servers[pod] = srv
	go func() { _ = srv.Serve(ln) }()
	l.T.Cleanup(func() { _ = srv.Close() })
}

// StopServing shuts pod j of node i's HTTP server down gracefully, as a
// container does on SIGTERM: new connections are refused, requests in
// flight are answered first (for up to 5 s).
func (l *Lab) StopServing(i, j int) {
	l.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.servers[l.Pods[i-1][j]].Shutdown(ctx); err != nil {
		l.T.Fatalf("stopping %s: %v", PodName(i, j), err)
	}
}

// StartServing starts pod j of node i's HTTP server again after
// StopServing.
func (l *Lab) StartServing(i, j int) {
	l.T.Helper()
	l.serve(l.Pods[i-1][j], PodName(i, j))
}

// StartFRR starts the router with config (see FRRConfig).
func (l *Lab) StartFRR(config string) *netlab.FRR {
	l.T.Helper()
	l.FRR = l.Net.StartFRR(l.Rtr, config)
	return l.FRR
}

// ManagerIPs are the addresses of nodes 1..n, where the managers run.
func ManagerIPs(n int) []string {
	var ips []string
	for i := 1; i <= n; i++ {
		ips = append(ips, NodeIP(i))
	}
	return ips
}

// StartManager runs a manager replica on node i with the deploy manifest's
// flags (agents required on port 9474), the lab's ManagerArgs and args.
func (l *Lab) StartManager(i int, args ...string) *Process {
	l.T.Helper()
	all := append([]string{"--agent-port=9474", "--metrics-bind-address=:9472", "--health-probe-bind-address=:9473"}, l.opts.ManagerArgs...)
	l.Managers[i-1] = l.API.StartManager(l.T, l.Nodes[i-1], NodeName(i), NodeIP(i), append(all, args...)...)
	return l.Managers[i-1]
}

// StartAgent runs the agent of node i with the deploy manifest's flags,
// the lab's AgentArgs and args.
func (l *Lab) StartAgent(i int, args ...string) *Process {
	l.T.Helper()
	// --cluster-cidr: the lab's Nodes have no podCIDRs (no IPAM of pod
	// addresses runs); the pods' addresses are in these.
	all := append([]string{"--link-port=9474", "--metrics-bind-address=:9475", "--health-probe-bind-address=:9476",
		"--cluster-cidr=10.244.0.0/16,fd00:244::/48"}, l.opts.AgentArgs...)
	l.Agents[i-1] = l.API.StartAgent(l.T, l.Nodes[i-1], NodeName(i), append(all, args...)...)
	return l.Agents[i-1]
}

// Kill sends SIGKILL to p and waits for it to exit.
func (l *Lab) Kill(p *Process) {
	l.T.Helper()
	p.Signal(syscall.SIGKILL)
	if !p.Wait(10 * time.Second) {
		l.T.Fatalf("process (log %s) did not exit after SIGKILL", p.Log)
	}
}

// Endpoints gives the Service every pod of the given nodes as endpoints
// (see EndpointPods).
func (l *Lab) Endpoints(t netlab.T, svc *corev1.Service, nodes ...int) []*corev1.Pod {
	t.Helper()
	var pods [][2]int
	for _, i := range nodes {
		for j := 0; j < l.opts.PodsPerNode; j++ {
			pods = append(pods, [2]int{i, j})
		}
	}
	return l.EndpointPods(t, svc, pods...)
}

// EndpointPods gives the Service the given pods ({node, pod}) as endpoints
// the way a cluster does: the lab plays the kubelet (API.RunPod: a Pod on
// the node, with the Service's labels, Running and Ready with the pod
// namespace's addresses) and kube-controller-manager's EndpointSlice
// controller writes the Service's EndpointSlices. It returns the Pods once
// every one is a ready endpoint of each family of the Service; they are
// force-deleted when t ends.
func (l *Lab) EndpointPods(t netlab.T, svc *corev1.Service, pods ...[2]int) []*corev1.Pod {
	t.Helper()
	if err := l.API.StartControllers(); err != nil {
		t.Fatal(err)
	}
	var out []*corev1.Pod
	want := map[*corev1.Pod]string{}
	for _, p := range pods {
		pod := l.API.RunPod(t, svc, p[0], p[1])
		out = append(out, pod)
		want[pod] = Ready
	}
	l.API.WaitEndpoints(t, svc, want)
	return out
}

// HandMadeSlices writes the Service's EndpointSlices itself (see
// EndpointSlices), as no cluster does: for tests of the agent's reading of
// slices alone, and benchmarks that must not measure the EndpointSlice
// controller. They are deleted when t ends.
func (l *Lab) HandMadeSlices(t netlab.T, svc *corev1.Service, pods ...[2]int) {
	t.Helper()
	for _, es := range EndpointSlices(svc, pods...) {
		l.API.Create(t, es)
	}
}

// EndpointSlices are hand-made slices like those the EndpointSlice
// controller makes for svc with the given pods ({node, pod}) behind it: one
// slice per family of the Service, every endpoint ready, on BackendPort
// under each of the Service's port names. The lab's Services get theirs
// from the real controller (EndpointPods); these are for benchmarks and
// tests of the agent alone.
func EndpointSlices(svc *corev1.Service, pods ...[2]int) []*discoveryv1.EndpointSlice {
	var out []*discoveryv1.EndpointSlice
	families := svc.Spec.IPFamilies
	if len(families) == 0 {
		families = []corev1.IPFamily{corev1.IPv4Protocol}
	}
	for _, fam := range families {
		es := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: svc.Namespace, Name: svc.Name + "-" + strings.ToLower(string(fam)),
				Labels: map[string]string{discoveryv1.LabelServiceName: svc.Name}},
			AddressType: discoveryv1.AddressTypeIPv4,
		}
		if fam == corev1.IPv6Protocol {
			es.AddressType = discoveryv1.AddressTypeIPv6
		}
		for _, p := range svc.Spec.Ports {
			proto := p.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			es.Ports = append(es.Ports, discoveryv1.EndpointPort{Name: ptr.To(p.Name), Protocol: ptr.To(proto), Port: ptr.To[int32](BackendPort)})
		}
		for _, p := range pods {
			addr := PodIP(p[0], p[1])
			if fam == corev1.IPv6Protocol {
				addr = PodIP6(p[0], p[1])
			}
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
				Addresses: []string{addr}, NodeName: ptr.To(NodeName(p[0])),
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			})
		}
		out = append(out, es)
	}
	return out
}

// Devices are node i's interfaces: to the bridge and to its pods.
func (l *Lab) Devices(i int) []string {
	devs := []string{l.Nodes[i-1].DevTo(l.Rtr)}
	for _, p := range l.Pods[i-1] {
		devs = append(devs, l.Nodes[i-1].DevTo(p))
	}
	return devs
}

// Get requests http://ip:port/ from the client and returns "pod client-ip".
func (l *Lab) Get(ip string, port int) (string, error) {
	resp, err := l.http.Get("http://" + net.JoinHostPort(ip, fmt.Sprint(port)) + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// Via matches a route whose next hops are exactly the given nodes, by the
// family of the route.
func Via(v6 bool, nodes ...int) func(netlab.Route, bool) bool {
	var gws []string
	for _, i := range nodes {
		if v6 {
			gws = append(gws, NodeIP6(i))
		} else {
			gws = append(gws, NodeIP(i))
		}
	}
	return netlab.Via(gws...)
}

// Loop sends requests to one address from the client until stopped, one
// every 10 ms at most, and records when each failed request started.
type Loop struct {
	mu       sync.Mutex
	ok       int
	failures []Failure
	stop     chan struct{}
	done     chan struct{}
}

// Failure is a failed request of a Loop.
type Failure struct {
	At  time.Time // when the request started
	Err error
}

// Steady starts a Loop from the client against ip:port.
func (l *Lab) Steady(ip string, port int) *Loop {
	return l.steady(func() error { _, err := l.Get(ip, port); return err })
}

// SteadyFrom starts a Loop from namespace ns (a pod's, a node's) against
// ip:port.
func (l *Lab) SteadyFrom(ns *netlab.NS, ip string, port int) *Loop {
	return l.steady(func() error { _, err := GetFrom(ns, ip, port); return err })
}

func (l *Lab) steady(get func() error) *Loop {
	lp := &Loop{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(lp.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-lp.stop:
				return
			case <-tick.C:
			}
			start := time.Now()
			err := get()
			lp.mu.Lock()
			if err != nil {
				lp.failures = append(lp.failures, Failure{At: start, Err: err})
			} else {
				lp.ok++
			}
			lp.mu.Unlock()
		}
	}()
	return lp
}

// GetFrom requests http://ip:port/ from namespace ns over a new connection
// and returns the answer ("pod client-ip").
func GetFrom(ns *netlab.NS, ip string, port int) (string, error) {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return ns.Dial(ctx, network, addr)
		},
	}}
	resp, err := c.Get("http://" + net.JoinHostPort(ip, fmt.Sprint(port)) + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// Finish stops the loop and returns the number of successful requests and
// the failures.
func (lp *Loop) Finish() (ok int, failures []Failure) {
	close(lp.stop)
	<-lp.done
	lp.mu.Lock()
	defer lp.mu.Unlock()
	return lp.ok, lp.failures
}

// Summary describes failures briefly (count, first few).
func Summary(failures []Failure) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d failed", len(failures))
	for i, f := range failures {
		if i == 3 {
			b.WriteString("; ...")
			break
		}
		fmt.Fprintf(&b, "; %s %v", f.At.Format("15:04:05.000"), f.Err)
	}
	return b.String()
}

// Up brings up the default lab, as `make demo` shows it: deploy/eiplb.yaml
// installed (its RBAC is what the processes may do: they authenticate as
// its ServiceAccounts), the Node objects, config/samples' pools, BGP peer
// (MD5, BFD, graceful restart) and advertisement, FRR configured as the
// sample peer expects, two manager replicas on node1 and node2, an agent
// on every node and, with LabOptions.KubeProxy, kube-proxy on every node
// (kube-controller-manager starts with the first EndpointPods: benchmarks
// that write their slices by hand don't run it). It returns once the
// router has established both sessions.
func (l *Lab) Up() {
	l.T.Helper()
	l.API.Install(l.T)
	l.API.UseServiceAccounts(l.T)
	l.API.Nodes(l.T, len(l.Nodes))
	for _, f := range []string{"eippool.yaml", "bgp.yaml"} {
		l.API.Apply(l.T, filepath.Join(Root(), "config", "samples", f))
	}
	l.StartFRR(FRRConfig(ManagerIPs(2), "password "+SamplePassword, "bfd profile eiplb"))
	for i := 1; i <= 2; i++ {
		l.StartManager(i)
	}
	for i := 1; i <= len(l.Nodes); i++ {
		l.StartAgent(i)
	}
	if l.opts.KubeProxy != "" {
		for i := 1; i <= len(l.Nodes); i++ {
			l.StartKubeProxy(i, l.opts.KubeProxy)
		}
	}
	l.WaitSessions(2, 30*time.Second)
}

// Sessions is the number of BGP sessions the router has established, with
// their BFD session up where it has one (BFD is what tells the router in
// time that a node died).
func (l *Lab) Sessions() (int, error) {
	var sum struct {
		IPv4Unicast struct {
			Peers map[string]struct {
				State string `json:"state"`
			} `json:"peers"`
		} `json:"ipv4Unicast"`
	}
	if err := l.FRR.VtyshJSON("show bgp summary json", &sum); err != nil {
		return 0, err
	}
	var bfd []struct {
		Peer   string `json:"peer"`
		Status string `json:"status"`
	}
	if err := l.FRR.VtyshJSON("show bfd peers json", &bfd); err != nil {
		return 0, err
	}
	bfdUp := map[string]bool{}
	for _, b := range bfd {
		bfdUp[b.Peer] = bfdUp[b.Peer] || b.Status == "up"
	}
	n := 0
	for addr, p := range sum.IPv4Unicast.Peers {
		if up, ok := bfdUp[addr]; p.State == "Established" && (!ok || up) {
			n++
		}
	}
	return n, nil
}

// WaitSessions waits until the router has n sessions established (see
// Sessions).
func (l *Lab) WaitSessions(n int, timeout time.Duration) {
	l.T.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got, err := l.Sessions()
		if err == nil && got == n {
			return
		}
		if time.Now().After(deadline) {
			l.T.Fatalf("router has %d BGP sessions established after %v, want %d (err %v)", got, timeout, n, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
