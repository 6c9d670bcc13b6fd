package ipam_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	ipamctrl "github.com/eiplb/eiplb/pkg/controller/ipam"
	"github.com/eiplb/eiplb/pkg/manager"
	"github.com/eiplb/eiplb/pkg/testenv"
)

var (
	cfg *rest.Config
	k8s client.Client
	seq atomic.Int64
)

func TestMain(m *testing.M) {
	testenv.Main(m, func(e *testenv.Env) { cfg, k8s = e.Config, e.Client })
}

// startManager runs a manager until the test ends or stop is called.
func startManager(t *testing.T, opts manager.Options) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if opts.IPAM.PoolStatusInterval == 0 {
		opts.IPAM.PoolStatusInterval = 50 * time.Millisecond
	}
	mgr, err := manager.New(ctx, cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	var once atomic.Bool
	stop = func() {
		if once.CompareAndSwap(false, true) {
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return stop
}

func unique(prefix string) string { return fmt.Sprintf("%s-%d", prefix, seq.Add(1)) }

func newNamespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: unique("ns"), Labels: labels}}
	must(t, k8s.Create(context.Background(), ns))
	return ns.Name
}

func newPool(t *testing.T, name string, spec v1alpha1.EIPPoolSpec) *v1alpha1.EIPPool {
	t.Helper()
	p := &v1alpha1.EIPPool{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
	must(t, k8s.Create(context.Background(), p))
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), p) })
	return p
}

type svcOpt func(*corev1.Service)

func withAnnotation(k, v string) svcOpt {
	return func(s *corev1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[k] = v
	}
}

func withPorts(ports ...int32) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.Ports = nil
		for _, p := range ports {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: fmt.Sprintf("p%d", p), Port: p, TargetPort: intstr.FromInt32(p), Protocol: corev1.ProtocolTCP})
		}
	}
}

func withFamilies(policy corev1.IPFamilyPolicy, fams ...corev1.IPFamily) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.IPFamilyPolicy = &policy
		s.Spec.IPFamilies = fams
	}
}

func newService(t *testing.T, ns, name string, opts ...svcOpt) *corev1.Service {
	t.Helper()
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type:              corev1.ServiceTypeLoadBalancer,
			LoadBalancerClass: ptr.To(v1alpha1.LoadBalancerClass),
			Selector:          map[string]string{"app": name},
		},
	}
	withPorts(80)(s)
	for _, o := range opts {
		o(s)
	}
	must(t, k8s.Create(context.Background(), s))
	return s
}

func getService(t *testing.T, ns, name string) *corev1.Service {
	t.Helper()
	s := &corev1.Service{}
	must(t, k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, s))
	return s
}

func ips(s *corev1.Service) []string {
	var out []string
	for _, i := range s.Status.LoadBalancer.Ingress {
		out = append(out, i.IP)
	}
	return out
}

// waitIPs waits until the Service shows n addresses with a True condition.
func waitIPs(t *testing.T, ns, name string, n int) []string {
	t.Helper()
	var got []string
	eventually(t, 10*time.Second, func() string {
		s := getService(t, ns, name)
		got = ips(s)
		c := meta.FindStatusCondition(s.Status.Conditions, v1alpha1.ConditionIPAllocated)
		if len(got) != n || c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Sprintf("%s/%s: ips %v, condition %+v", ns, name, got, c)
		}
		return ""
	})
	return got
}

// waitReason waits until the Service's condition is False with reason.
func waitReason(t *testing.T, ns, name, reason string) *metav1.Condition {
	t.Helper()
	var c *metav1.Condition
	eventually(t, 10*time.Second, func() string {
		c = meta.FindStatusCondition(getService(t, ns, name).Status.Conditions, v1alpha1.ConditionIPAllocated)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != reason {
			return fmt.Sprintf("%s/%s: condition %+v, want False/%s", ns, name, c, reason)
		}
		return ""
	})
	return c
}

func defaultOpts() manager.Options {
	return manager.Options{IPAM: ipamctrl.Options{}, SeveralPerProcess: true}
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

var must = testenv.Must
var eventually = testenv.Eventually
