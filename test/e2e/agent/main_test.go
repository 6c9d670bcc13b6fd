//go:build privileged

// Package agent_test proves the node agent with everything real: a router
// (FRR) in a namespace, three node namespaces each running eiplb-agent (and
// two of them eiplb-manager) against a real API server, "pod" namespaces
// behind the nodes answering HTTP, and a client namespace beyond the router.
// Assertions are on the router's kernel FIB and on real requests.
package agent_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/eiplb/eiplb/test/e2e/cluster"
	"github.com/eiplb/eiplb/test/netlab"
)

var api *cluster.API

func TestMain(m *testing.M) { cluster.Main(m, "agent", func(a *cluster.API) { api = a }) }

const (
	podsPerNode = 2
	grace       = 2 * time.Second
)

// topo is the lab: client — rtr — bridge — node1..3 — pods.
type topo struct {
	// t is the test that owns the lab: processes live as long as it, not
	// as the subtest that starts them.
	t      *testing.T
	lab    *netlab.Lab
	rtr    *netlab.NS
	client *netlab.NS
	nodes  []*netlab.NS
	// pods[i][j] is pod j on node i+1, at podIP(i+1, j).
	pods  [][]*netlab.NS
	agent []*cluster.Process
	http  *http.Client
}

func nodeIP(i int) string     { return fmt.Sprintf("192.168.100.%d", 10+i) }
func podIP(i, j int) string   { return fmt.Sprintf("10.244.%d.%d", i, 4*j+2) }
func podName(i, j int) string { return fmt.Sprintf("pod%d%d", i, j) }

const clientIP = "192.168.200.2"

func newTopo(t *testing.T) *topo {
	lab := netlab.New(t)
	tp := &topo{t: t, lab: lab, rtr: lab.Namespace("rtr"), client: lab.Namespace("client")}
	ctx := context.Background()
	lab.Bridge(tp.rtr, "br0", "192.168.100.1/24")
	lab.Link(tp.rtr, "192.168.200.1/24", tp.client, clientIP+"/24")
	mustExec(t, tp.client, "ip", "route", "add", "default", "via", "192.168.200.1")
	// Spread flows over the ECMP next hops by port too.
	mustExec(t, tp.rtr, "sysctl", "-q", "-w", "net.ipv4.fib_multipath_hash_policy=1")
	for i := 1; i <= 3; i++ {
		n := lab.Namespace(fmt.Sprintf("node%d", i))
		lab.LinkToBridge(n, []string{nodeIP(i) + "/24"}, tp.rtr, "br0")
		var pods []*netlab.NS
		for j := 0; j < podsPerNode; j++ {
			p := lab.Namespace(podName(i, j))
			lab.Link(n, fmt.Sprintf("10.244.%d.%d/30", i, 4*j+1), p, podIP(i, j)+"/30")
			mustExec(t, p, "ip", "route", "add", "default", "via", fmt.Sprintf("10.244.%d.%d", i, 4*j+1))
			serve(t, p, podName(i, j))
			pods = append(pods, p)
		}
		tp.pods = append(tp.pods, pods)
		tp.nodes = append(tp.nodes, n)
	}
	for i := 1; i <= 3; i++ {
		tp.nodeRoutes(t, i)
	}
	_ = ctx
	tp.http = &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true, // a new connection per request: each one goes through DNAT
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return tp.client.Dial(ctx, network, addr)
			},
		},
	}
	return tp
}

// nodeRoutes gives node i its routes over the bridge: the default route
// via the router, and the other nodes' pod networks (what a CNI does).
// They go when the link goes down; linkUp puts them back.
func (tp *topo) nodeRoutes(t *testing.T, i int) {
	t.Helper()
	n := tp.nodes[i-1]
	mustExec(t, n, "ip", "route", "replace", "default", "via", "192.168.100.1")
	for k := 1; k <= 3; k++ {
		if k != i {
			mustExec(t, n, "ip", "route", "replace", fmt.Sprintf("10.244.%d.0/24", k), "via", nodeIP(k))
		}
	}
}

// linkDown cuts node i from the bridge; linkUp restores it with its routes.
func (tp *topo) linkDown(t *testing.T, i int) {
	t.Helper()
	mustExec(t, tp.nodes[i-1], "ip", "link", "set", tp.nodes[i-1].DevTo(tp.rtr), "down")
}

func (tp *topo) linkUp(t *testing.T, i int) {
	t.Helper()
	mustExec(t, tp.nodes[i-1], "ip", "link", "set", tp.nodes[i-1].DevTo(tp.rtr), "up")
	tp.nodeRoutes(t, i)
}

func mustExec(t *testing.T, ns *netlab.NS, args ...string) {
	t.Helper()
	if out, err := ns.Exec(context.Background(), args...); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// serve answers HTTP on :8080 in a pod namespace with "name client-ip".
func serve(t *testing.T, pod *netlab.NS, name string) {
	t.Helper()
	ln, err := pod.Listen("tcp", ":8080")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprintf(w, "%s %s", name, host)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
}

// get requests http://ip/ from the client and returns "pod client-ip".
func (tp *topo) get(ip string) (string, error) {
	resp, err := tp.http.Get("http://" + net.JoinHostPort(ip, "80") + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// startAgent runs the agent of node i until the lab's test ends.
func (tp *topo) startAgent(i int) {
	tp.t.Helper()
	for len(tp.agent) < 3 {
		tp.agent = append(tp.agent, nil)
	}
	tp.agent[i-1] = api.StartAgent(tp.t, tp.nodes[i-1], fmt.Sprintf("node%d", i), "--heartbeat=50ms",
		"--metrics-bind-address=127.0.0.1:9475")
}

func (tp *topo) startManagers() {
	tp.t.Helper()
	for i := 1; i <= 2; i++ {
		api.StartManager(tp.t, tp.nodes[i-1], fmt.Sprintf("node%d", i), nodeIP(i),
			"--agent-port=9474", "--agent-grace="+grace.String())
	}
}

// endpoints plays the endpoint controller: the Service's pods on the
// given nodes, all ready.
func endpoints(t *testing.T, svc *corev1.Service, nodes ...int) {
	t.Helper()
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: svc.Namespace, Name: svc.Name + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: svc.Name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(""), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](8080)}},
	}
	for _, i := range nodes {
		for j := 0; j < podsPerNode; j++ {
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
				Addresses: []string{podIP(i, j)}, NodeName: ptr.To(fmt.Sprintf("node%d", i)),
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			})
		}
	}
	api.Create(t, es)
}

// loop sends requests to ip from the client until stopped, at most
// every 10 ms, and counts failures.
type loop struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	stop       chan struct{}
	done       chan struct{}
}

func (tp *topo) steady(ip string) *loop {
	l := &loop{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			if _, err := tp.get(ip); err != nil {
				l.failed.Add(1)
				l.mu.Lock()
				if len(l.errs) < 5 {
					l.errs = append(l.errs, time.Now().Format("15:04:05.000")+" "+err.Error())
				}
				l.mu.Unlock()
			} else {
				l.ok.Add(1)
			}
		}
	}()
	return l
}

func (l *loop) finish() (ok, failed int64, errs []string) {
	close(l.stop)
	<-l.done
	return l.ok.Load(), l.failed.Load(), l.errs
}

func via(nodes ...int) func(netlab.Route, bool) bool {
	var gws []string
	for _, i := range nodes {
		gws = append(gws, nodeIP(i))
	}
	return netlab.Via(gws...)
}
