package announce

import (
	"maps"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// TestGatherCountsReadyEndpointsOnly: a Local Service's next hops are the
// nodes with ready endpoints; a node left with terminating ones only (still
// serving, so its agent keeps forwarding to them) is withdrawn, also when a
// hand-made slice leaves Ready unset on a terminating endpoint.
func TestGatherCountsReadyEndpointsOnly(t *testing.T) {
	sch := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(sch); err != nil {
		t.Fatal(err)
	}
	endpoint := func(addr, node string, c discoveryv1.EndpointConditions) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{addr}, NodeName: ptr.To(node), Conditions: c}
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{
			endpoint("10.0.1.1", "n1", discoveryv1.EndpointConditions{Ready: ptr.To(true)}),
			endpoint("10.0.1.2", "n1", discoveryv1.EndpointConditions{}),
			endpoint("10.0.2.1", "n2", discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)}),
			endpoint("10.0.3.1", "n3", discoveryv1.EndpointConditions{Terminating: ptr.To(true)}),
		},
	}
	c := fake.NewClientBuilder().WithScheme(sch).WithObjects(slice).Build()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"},
		Spec: corev1.ServiceSpec{ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal}}
	got, err := gather(t.Context(), c, svc, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"n1": 2}; !maps.Equal(got.Endpoints, want) {
		t.Errorf("endpoints per node %v, want %v", got.Endpoints, want)
	}
}
