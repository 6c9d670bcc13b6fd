package announce

import (
	"context"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/eiplb/eiplb/pkg/agentlink"
	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
)

// TestNodeStatusWithoutCRD: managers upgraded before the CRDs find no
// EIPNode kind; the writer says so once and tries again a minute later,
// instead of a failing write per node every interval. (The writer against
// a real API server is TestEIPNodeStatus.)
func TestNodeStatusWithoutCRD(t *testing.T) {
	creates := 0
	sch := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(sch); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(sch); err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(sch).
		WithObjects(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2"}}).
		WithInterceptorFuncs(interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if _, ok := obj.(*v1alpha1.EIPNode); ok {
				creates++
				return &apimeta.NoKindMatchError{GroupKind: schema.GroupKind{Group: "eiplb.io", Kind: "EIPNode"}}
			}
			return c.Create(ctx, obj, opts...)
		}}).Build()
	tr := agentlink.NewTracker(agentlink.TrackerOptions{})
	tr.SetNodes(map[string]netip.Addr{"n1": netip.MustParseAddr("127.0.0.1"), "n2": netip.MustParseAddr("127.0.0.2")})
	w := &nodeStatusWriter{client: c, tracker: tr, services: &ServiceReconciler{served: map[string][]netip.Addr{}},
		opts: Options{NodeName: "m1"}, interval: time.Second, last: map[string]writtenNode{}}
	now := time.Now()
	for _, at := range []time.Duration{0, 2 * time.Second, 30 * time.Second} {
		w.write(t.Context(), now.Add(at))
	}
	if creates != 1 {
		t.Fatalf("%d EIPNode creates within a minute without the kind; want 1", creates)
	}
	w.write(t.Context(), now.Add(61*time.Second))
	if creates != 2 {
		t.Fatalf("%d creates after a minute; want it tried again (2)", creates)
	}
}
