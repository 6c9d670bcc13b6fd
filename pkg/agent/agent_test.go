package agent_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/pkg/agent"
	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/dataplane"
	"github.com/eiplb/eiplb/pkg/ipam"
	"github.com/eiplb/eiplb/pkg/testenv"
)

var (
	cfg *rest.Config
	k8s client.Client
	ctx = context.Background()
)

func TestMain(m *testing.M) {
	testenv.Main(m, func(e *testenv.Env) { cfg, k8s = e.Config, e.Client })
}

// recorder stands in for the kernel writer (proven with real nftables in
// pkg/dataplane/nft and test/e2e): it keeps the rendering of the last table
// written, and can be told to fail writes.
type recorder struct {
	mu      sync.Mutex
	kernel  string // what a successful write left
	fail    int    // writes to fail
	applies int
	syncs   int
}

func (r *recorder) Load() error { return nil }

func (r *recorder) write(t *dataplane.Table) error {
	if r.fail > 0 {
		r.fail--
		return errors.New("injected failure")
	}
	r.kernel = t.String()
	return nil
}

func (r *recorder) Sync(t *dataplane.Table) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.syncs++
	return r.write(t)
}

func (r *recorder) Apply(t *dataplane.Table, tc dataplane.Touched) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.applies++
	if tc.Empty() {
		return errors.New("Apply with nothing touched")
	}
	return r.write(t)
}

func (r *recorder) state() (kernel string, syncs, applies int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.kernel, r.syncs, r.applies
}

// service creates a Service holding ip as IPAM does: the EIPAllocation
// record, then the status.
func service(t *testing.T, ns, name, ip string) *corev1.Service {
	t.Helper()
	s := testenv.LoadBalancer(ns, name)
	testenv.Must(t, k8s.Create(ctx, s))
	record(t, s, ip)
	s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip}}
	testenv.Must(t, k8s.Status().Update(ctx, s))
	return s
}

// record writes the EIPAllocation record of ip, held by s.
func record(t *testing.T, s *corev1.Service, ip string) *v1alpha1.EIPAllocation {
	t.Helper()
	addr := netip.MustParseAddr(ip)
	rec := &v1alpha1.EIPAllocation{
		ObjectMeta: metav1.ObjectMeta{Name: ipam.AllocationName(addr)},
		Spec: v1alpha1.EIPAllocationSpec{Address: ip, Pool: "default", Services: []v1alpha1.ServiceReference{
			{Namespace: s.Namespace, Name: s.Name, UID: string(s.UID)},
		}},
	}
	// Left in place (a subtest's cleanup would take the address from the
	// Service for the later ones); the API server is the test's own.
	testenv.Must(t, k8s.Create(ctx, rec))
	return rec
}

func slice(t *testing.T, s *corev1.Service, addrs ...string) *discoveryv1.EndpointSlice {
	t.Helper()
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: s.Name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(""), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](8080)}},
	}
	for _, a := range addrs {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, NodeName: ptr.To("n1"),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	testenv.Must(t, k8s.Create(ctx, es))
	return es
}

// TestAgent: the initial sync writes every served Service at once before the
// link opens; a change is one Apply and is reported to the managers; a
// failed write is followed by a re-sync and nothing is reported before the
// rules are in; Services of another class are ignored.
func TestAgent(t *testing.T) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "agent-test"}}
	testenv.Must(t, k8s.Create(ctx, ns))
	web := service(t, ns.Name, "web", "192.0.2.10")
	slice(t, web, "10.1.0.5")
	other := testenv.LoadBalancer(ns.Name, "other")
	other.Spec.LoadBalancerClass = ptr.To("example.com/other")
	testenv.Must(t, k8s.Create(ctx, other))
	other.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.99"}}
	testenv.Must(t, k8s.Status().Update(ctx, other))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	testenv.Must(t, err)
	addr := ln.Addr().String()
	ln.Close()
	dp := &recorder{}
	a, err := agent.New(cfg, dp, agent.Options{NodeName: "n1", LinkAddr: addr, SeveralPerProcess: true})
	testenv.Must(t, err)
	c, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(c) }()
	t.Cleanup(func() { cancel(); <-done })

	testenv.Eventually(t, 10*time.Second, func() string {
		if _, ok := a.Link().Programmed()["agent-test/web"]; !ok {
			return "web not reported programmed"
		}
		return ""
	})
	kernel, syncs, _ := dp.state()
	if syncs != 1 || !strings.Contains(kernel, "192.0.2.10 . tcp . 80 . 0 : 10.1.0.5 . 8080") {
		t.Fatalf("initial sync: %d syncs, kernel:\n%s", syncs, kernel)
	}
	if strings.Contains(kernel, "192.0.2.99") {
		t.Fatalf("a Service of another class was programmed:\n%s", kernel)
	}
	// The link opens right after the initial sync, which reports web
	// programmed just before: wait (bounded) for the listener.
	testenv.Eventually(t, 10*time.Second, func() string {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			return fmt.Sprintf("link not open after the initial sync: %v", err)
		}
		conn.Close()
		return ""
	})

	t.Run("a new Service: one Apply, then reported", func(t *testing.T) {
		_, _, applies := dp.state()
		api := service(t, ns.Name, "api", "192.0.2.11")
		slice(t, api, "10.1.0.6", "10.1.0.7")
		// The record is programmed as soon as it exists, maybe before
		// the slice: wait for both.
		testenv.Eventually(t, 10*time.Second, func() string {
			p, ok := a.Link().Programmed()["agent-test/api"]
			if !ok || len(p.Addrs) != 1 || p.Addrs[0].String() != "192.0.2.11" {
				return fmt.Sprintf("api programmed: %+v", p)
			}
			if kernel, _, _ := dp.state(); !strings.Contains(kernel, "192.0.2.11 . tcp . 80 . 1 : 10.1.0.7 . 8080") {
				return "api's endpoints not in the kernel yet:\n" + kernel
			}
			return ""
		})
		if _, _, after := dp.state(); after <= applies {
			t.Fatalf("applies %d → %d: the new Service was not an Apply", applies, after)
		}
	})

	// Regression: the cache's transform dropped every spec field but the
	// ports and the traffic policy, so the ranges never reached the rules.
	t.Run("source ranges and session affinity reach the rules", func(t *testing.T) {
		api := &corev1.Service{}
		testenv.Must(t, k8s.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: "api"}, api))
		api.Spec.LoadBalancerSourceRanges = []string{"203.0.113.0/24"}
		api.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		testenv.Must(t, k8s.Update(ctx, api))
		testenv.Eventually(t, 10*time.Second, func() string {
			kernel, _, _ := dp.state()
			if !strings.Contains(kernel, "192.0.2.11 . tcp . 80 . 203.0.113.0/24") || !strings.Contains(kernel, "192.0.2.11 . tcp . 80 : 0x80000002") {
				return "no source range or affinity for api yet:\n" + kernel
			}
			return ""
		})
	})

	t.Run("a failed write is followed by a re-sync", func(t *testing.T) {
		dp.mu.Lock()
		dp.fail = 1
		dp.mu.Unlock()
		_, syncs, _ := dp.state()
		es := &discoveryv1.EndpointSlice{}
		testenv.Must(t, k8s.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: "web-1"}, es))
		es.Endpoints[0].Addresses = []string{"10.1.0.8"}
		testenv.Must(t, k8s.Update(ctx, es))
		testenv.Eventually(t, 10*time.Second, func() string {
			kernel, s, _ := dp.state()
			if s <= syncs || !strings.Contains(kernel, "10.1.0.8 . 8080") || strings.Contains(kernel, "10.1.0.5") {
				return "no re-sync with the new endpoint yet:\n" + kernel
			}
			return ""
		})
	})

	// The records are IPAM's truth, the status its report: a record is
	// programmed before any status shows it, an address the status alone
	// shows is not, and the record's removal removes the rules.
	t.Run("the record, not the status", func(t *testing.T) {
		early := testenv.LoadBalancer(ns.Name, "early")
		testenv.Must(t, k8s.Create(ctx, early))
		slice(t, early, "10.1.0.9")
		rec := record(t, early, "192.0.2.12")
		testenv.Eventually(t, 10*time.Second, func() string {
			p, ok := a.Link().Programmed()["agent-test/early"]
			kernel, _, _ := dp.state()
			if !ok || len(p.Addrs) != 1 || p.Addrs[0].String() != "192.0.2.12" || !strings.Contains(kernel, "192.0.2.12 . tcp . 80 . 0 : 10.1.0.9 . 8080") {
				return fmt.Sprintf("early (record, no status) programmed: %+v, kernel:\n%s", p, kernel)
			}
			return ""
		})
		early.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.13"}}
		testenv.Must(t, k8s.Status().Update(ctx, early))
		testenv.Must(t, k8s.Delete(ctx, rec))
		testenv.Eventually(t, 10*time.Second, func() string {
			kernel, _, _ := dp.state()
			if _, ok := a.Link().Programmed()["agent-test/early"]; ok || strings.Contains(kernel, "192.0.2.12") {
				return "early still programmed after its record went:\n" + kernel
			}
			return ""
		})
		if kernel, _, _ := dp.state(); strings.Contains(kernel, "192.0.2.13") {
			t.Fatalf("an address only the status shows was programmed:\n%s", kernel)
		}
	})

	t.Run("delete: rules and report removed", func(t *testing.T) {
		testenv.Must(t, k8s.Delete(ctx, web))
		testenv.Eventually(t, 10*time.Second, func() string {
			kernel, _, _ := dp.state()
			if _, ok := a.Link().Programmed()["agent-test/web"]; ok || strings.Contains(kernel, "192.0.2.10") {
				return "web still programmed:\n" + kernel
			}
			return ""
		})
	})
}
