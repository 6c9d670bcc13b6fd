//go:build privileged

package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/testenv"
	"github.com/eiplb/eiplb/test/netlab"
)

// Main runs the tests of an e2e package as root against one API server
// (set receives it before the tests run) and stops it afterwards; without
// root it skips them, saying why.
func Main(m *testing.M, what string, set func(*API)) {
	if os.Geteuid() != 0 {
		fmt.Printf("skipping: the %s e2e tests need root (network namespaces)\n", what)
		os.Exit(0)
	}
	// The tests' own clients log nothing worth reading (and without a
	// logger controller-runtime prints a stack trace instead).
	ctrllog.SetLogger(logr.Discard())
	api, err := StartAPI()
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	set(api)
	code := m.Run()
	api.Stop()
	os.Exit(code)
}

// unique names per test, since Nodes and pools are cluster-scoped.
func name(s string) string {
	return fmt.Sprintf("%s-%d", s, time.Now().UnixNano()%1e9)
}

// Basics creates three Ready nodes, a pool, an advertisement and a peer
// for the FRR router, and returns the node objects.
func (api *API) Basics(t netlab.T, mutatePeer ...func(*v1alpha1.BGPPeer)) []*corev1.Node {
	t.Helper()
	var nodes []*corev1.Node
	for i := 1; i <= 3; i++ {
		nodes = append(nodes, api.Node(t, fmt.Sprintf("node%d", i), fmt.Sprintf("192.168.100.%d", 10+i), fmt.Sprintf("fd00:100::%d", 10+i)))
	}
	api.Create(t, &v1alpha1.EIPPool{ObjectMeta: metav1.ObjectMeta{Name: "e2e"}, Spec: v1alpha1.EIPPoolSpec{Addresses: []string{"172.30.0.0/28", "fd00:30::/124"}}})
	api.Create(t, &v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "all"}})
	peer := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "rtr"}, Spec: v1alpha1.BGPPeerSpec{
		PeerAddress: "192.168.100.1", PeerASN: 65000, LocalASN: 65001,
		ConnectTime: &metav1.Duration{Duration: time.Second},
	}}
	for _, m := range mutatePeer {
		m(peer)
	}
	api.Create(t, peer)
	return nodes
}

// Create creates obj and deletes it when the test ends. A Service's
// EndpointSlices made by the EndpointSlice controller go after it (in a
// cluster the garbage collector deletes them, which the lab does not run).
func (api *API) Create(t netlab.T, obj client.Object) {
	t.Helper()
	if svc, ok := obj.(*corev1.Service); ok {
		ns, n := svc.Namespace, svc.Name
		t.Cleanup(func() {
			_ = api.Client.DeleteAllOf(context.Background(), &discoveryv1.EndpointSlice{}, client.InNamespace(ns),
				client.MatchingLabels{discoveryv1.LabelServiceName: n, discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"})
		})
	}
	if err := api.Client.Create(context.Background(), obj); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Client.Delete(context.Background(), obj) })
}

// Service creates a LoadBalancer Service of eiplb's class.
func (api *API) Service(t netlab.T, ns, n string, local bool, families ...corev1.IPFamily) *corev1.Service {
	t.Helper()
	s := testenv.LoadBalancer(ns, n)
	if local {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
	if len(families) > 1 {
		s.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyRequireDualStack)
	}
	s.Spec.IPFamilies = families
	api.Create(t, s)
	return s
}

// IPs waits for the Service's addresses.
func (api *API) IPs(t netlab.T, s *corev1.Service, n int) []string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if err := api.Client.Get(context.Background(), client.ObjectKeyFromObject(s), s); err != nil {
			t.Fatal(err)
		}
		if len(s.Status.LoadBalancer.Ingress) == n {
			var out []string
			for _, i := range s.Status.LoadBalancer.Ingress {
				out = append(out, i.IP)
			}
			return out
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s got no addresses: %+v", s.Name, s.Status)
	return nil
}

// Namespace creates a namespace with a unique name.
func (api *API) Namespace(t netlab.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name("e2e")}}
	api.Create(t, ns)
	return ns.Name
}

// Nodes creates the lab's n Node objects, Ready, with their IPv4 and IPv6
// InternalIPs (deleted when t ends).
func (api *API) Nodes(t netlab.T, n int) []*corev1.Node {
	t.Helper()
	var nodes []*corev1.Node
	for i := 1; i <= n; i++ {
		nodes = append(nodes, api.Node(t, NodeName(i), NodeIP(i), NodeIP6(i)))
	}
	return nodes
}

// Apply creates every object of a YAML file (several documents allowed),
// as `kubectl create -f` does, and deletes them when t ends.
func (api *API) Apply(t netlab.T, file string) {
	t.Helper()
	api.apply(t, file, func(*unstructured.Unstructured) bool { return false })
}

// apply is Apply; objects for which existing says so may exist already.
func (api *API) apply(t netlab.T, file string, existing func(*unstructured.Unstructured) bool) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return
			}
			t.Fatalf("%s: %v", file, err)
		}
		if len(u.Object) == 0 {
			continue
		}
		if existing(u) {
			if err := api.Client.Create(context.Background(), u); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatalf("%s: %s %s: %v", file, u.GetKind(), u.GetName(), err)
			}
			continue
		}
		api.Create(t, u)
	}
}

// Root is the repository's root folder.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// Install applies deploy/eiplb.yaml as an admin would (`kubectl apply -f`):
// the API server validates every object. The CRDs and the namespace, which
// StartAPI installed from the same sources, are left as they are. Nothing
// runs the Deployment's and DaemonSet's pods (there is no kubelet); the
// lab starts the binaries itself, with UseServiceAccounts' credentials.
func (api *API) Install(t netlab.T) {
	t.Helper()
	api.apply(t, filepath.Join(Root(), "deploy", "eiplb.yaml"), func(u *unstructured.Unstructured) bool {
		return u.GetKind() == "CustomResourceDefinition" || u.GetKind() == "Namespace"
	})
}

// UseServiceAccounts makes the eiplb processes started from now on
// authenticate as the ServiceAccounts of deploy/eiplb.yaml (eiplb-manager,
// eiplb-agent in eiplb-system), with tokens from the TokenRequest API, so
// the manifest's RBAC is what they are allowed to do.
func (api *API) UseServiceAccounts(t netlab.T) {
	t.Helper()
	var err error
	if api.ManagerKubeconfig, err = api.ServiceAccountKubeconfig("eiplb-system", "eiplb-manager"); err != nil {
		t.Fatal(err)
	}
	if api.AgentKubeconfig, err = api.ServiceAccountKubeconfig("eiplb-system", "eiplb-agent"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { api.ManagerKubeconfig, api.AgentKubeconfig = nil, nil })
}

// ServiceAccountKubeconfig is a kubeconfig for the ServiceAccount ns/name,
// with a token from the TokenRequest API valid for a day.
func (api *API) ServiceAccountKubeconfig(ns, name string) ([]byte, error) {
	cs, err := kubernetes.NewForConfig(api.Env.Config)
	if err != nil {
		return nil, err
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), name, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](86400)}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("TokenRequest for %s/%s: %w", ns, name, err)
	}
	u, err := clientcmd.Load(api.Kubeconfig)
	if err != nil {
		return nil, err
	}
	user := "system:serviceaccount:" + ns + ":" + name
	u.AuthInfos = map[string]*clientcmdapi.AuthInfo{user: {Token: tr.Status.Token}}
	for _, c := range u.Contexts {
		c.AuthInfo = user
	}
	return clientcmd.Write(*u)
}
