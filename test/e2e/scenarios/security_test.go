//go:build privileged

package scenarios_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/testenv"
	"github.com/eiplb/eiplb/test/e2e/cluster"
)

// security checks what must hold in the lab after the scenarios ran with
// the manifest's RBAC: who the processes are, what they may not do, that
// the BGP password appears nowhere it should not, which ports are open and
// that metrics need an authorized token.
func security(t *testing.T, l *cluster.Lab, web *corev1.Service) {
	ctx := t.Context()
	clientFor := func(kc []byte) (client.Client, *kubernetes.Clientset) {
		cfg, err := clientcmd.RESTConfigFromKubeConfig(kc)
		testenv.Must(t, err)
		c, err := client.New(cfg, client.Options{Scheme: api.Client.Scheme()})
		testenv.Must(t, err)
		cs, err := kubernetes.NewForConfig(cfg)
		testenv.Must(t, err)
		return c, cs
	}
	mgr, mgrCS := clientFor(api.ManagerKubeconfig)
	agent, agentCS := clientFor(api.AgentKubeconfig)

	t.Run("the processes run as the manifest's ServiceAccounts", func(t *testing.T) {
		for want, cs := range map[string]*kubernetes.Clientset{
			"system:serviceaccount:eiplb-system:eiplb-manager": mgrCS,
			"system:serviceaccount:eiplb-system:eiplb-agent":   agentCS,
		} {
			r, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
			testenv.Must(t, err)
			if r.Status.UserInfo.Username != want {
				t.Errorf("credentials are %q, want %q", r.Status.UserInfo.Username, want)
			}
		}
		// And those are the credentials they were started with.
		files, _ := filepath.Glob(filepath.Join(l.Net.Dir(), "*-manager-node1.kubeconfig"))
		if len(files) == 0 {
			t.Fatal("no kubeconfig of manager-node1 in the lab's folder")
		}
		b, err := os.ReadFile(files[0])
		testenv.Must(t, err)
		if !strings.Contains(string(b), "system:serviceaccount:eiplb-system:eiplb-manager") {
			t.Errorf("manager-node1 did not start with the ServiceAccount's kubeconfig:\n%s", b)
		}
	})

	t.Run("forbidden actions are forbidden", func(t *testing.T) {
		forbidden := func(what string, err error) {
			t.Helper()
			if !apierrors.IsForbidden(err) {
				t.Errorf("%s: want Forbidden, got %v", what, err)
			}
		}
		s := web.DeepCopy()
		testenv.Must(t, api.Client.Get(ctx, client.ObjectKeyFromObject(s), s))
		s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.99"}}
		forbidden("agent writes a Service's status", agent.Status().Update(ctx, s))
		forbidden("agent updates a Service", agent.Update(ctx, s))
		forbidden("agent creates an EIPPool", agent.Create(ctx, &v1alpha1.EIPPool{ObjectMeta: metav1.ObjectMeta{Name: "evil"}, Spec: v1alpha1.EIPPoolSpec{Addresses: []string{"203.0.113.0/24"}}}))
		forbidden("agent reads Secrets", agent.List(ctx, &corev1.SecretList{}, client.InNamespace("eiplb-system")))
		forbidden("agent reads BGPPeers", agent.List(ctx, &v1alpha1.BGPPeerList{}))
		forbidden("agent creates an EIPNode (only managers report agents)", agent.Create(ctx, &v1alpha1.EIPNode{ObjectMeta: metav1.ObjectMeta{Name: "evil"}}))
		forbidden("manager deletes an EIPNode", mgr.Delete(ctx, &v1alpha1.EIPNode{ObjectMeta: metav1.ObjectMeta{Name: cluster.NodeName(1)}}))
		forbidden("manager reads Secrets outside eiplb-system", mgr.List(ctx, &corev1.SecretList{}, client.InNamespace("default")))
		forbidden("manager deletes a Node", mgr.Delete(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: cluster.NodeName(3)}}))
		forbidden("manager creates a BGPPeer", mgr.Create(ctx, &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "evil"}, Spec: v1alpha1.BGPPeerSpec{PeerAddress: "192.0.2.1", PeerASN: 65000, LocalASN: 65001}}))
		forbidden("manager edits an EIPPool's spec", func() error {
			p := &v1alpha1.EIPPool{}
			testenv.Must(t, api.Client.Get(ctx, client.ObjectKey{Name: "default"}, p))
			p.Spec.Addresses = append(p.Spec.Addresses, "203.0.113.128/25")
			return mgr.Update(ctx, p)
		}())
	})

	t.Run("the BGP password is in no log, Event or status", func(t *testing.T) {
		secret := []byte(cluster.SamplePassword)
		logs, _ := filepath.Glob(filepath.Join(l.Net.Dir(), "*.log"))
		var read int
		for _, f := range logs {
			b, err := os.ReadFile(f)
			testenv.Must(t, err)
			read += len(b)
			if i := strings.Index(string(b), string(secret)); i >= 0 {
				t.Errorf("%s contains the password: %q", filepath.Base(f), b[max(0, i-200):min(len(b), i+50)])
			}
		}
		if len(logs) < 5 || read == 0 {
			t.Fatalf("read %d bytes of %d logs; expected the managers' and agents' logs", read, len(logs))
		}
		t.Logf("%d logs (%d KiB) of managers and agents, no password", len(logs), read/1024)
		var objs []any
		var events corev1.EventList
		testenv.Must(t, api.Client.List(ctx, &events))
		var peers v1alpha1.BGPPeerList
		testenv.Must(t, api.Client.List(ctx, &peers))
		var svcs corev1.ServiceList
		testenv.Must(t, api.Client.List(ctx, &svcs))
		objs = append(objs, events.Items, peers.Items, svcs.Items)
		b, err := json.Marshal(objs)
		testenv.Must(t, err)
		if strings.Contains(string(b), string(secret)) {
			t.Errorf("the password appears in Events, BGPPeers or Services")
		}
	})

	t.Run("only the documented ports are open; metrics need an authorized token", func(t *testing.T) {
		// node1 runs a manager and an agent.
		allowed := map[string]bool{
			"tcp 9472": true, "tcp 9473": true, // manager metrics, health
			"tcp 9474": true, "tcp 9475": true, "tcp 9476": true, // agent link, metrics, health
			"udp 3784": true, // BFD (single hop)
		}
		var open []string
		for _, proto := range []string{"t", "u"} {
			out := l.Exec(l.Nodes[0], "ss", "-H", "-ln"+proto+"p")
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				if !strings.Contains(line, "eiplb-") {
					continue // the lab's own API proxy lives there too
				}
				f := strings.Fields(line)
				port := f[3][strings.LastIndexByte(f[3], ':')+1:]
				name := map[string]string{"t": "tcp", "u": "udp"}[proto] + " " + port
				open = append(open, name)
				if !allowed[name] {
					t.Errorf("unexpected listening socket %s: %s", name, line)
				}
			}
		}
		slices.Sort(open)
		t.Logf("eiplb's listening sockets on node1: %v", open)
		if strings.Contains(strings.Join(open, ","), "50051") {
			t.Errorf("a gRPC port is open")
		}

		get := func(port int, token string) (int, string) {
			c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
				TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // self-signed serving certificate
				DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
					return l.Nodes[0].Dial(ctx, network, a)
				}}}
			req, _ := http.NewRequest("GET", fmt.Sprintf("https://127.0.0.1:%d/metrics", port), nil)
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := c.Do(req)
			testenv.Must(t, err)
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		token := func(name string, reader bool) string {
			sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}
			api.Create(t, sa)
			if reader {
				api.Create(t, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
					RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "eiplb-metrics-reader"},
					Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "default", Name: name}}})
			}
			cs, err := kubernetes.NewForConfig(api.Env.Config)
			testenv.Must(t, err)
			tr, err := cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, name, &authnv1.TokenRequest{}, metav1.CreateOptions{})
			testenv.Must(t, err)
			return tr.Status.Token
		}
		scraper, stranger := token("prometheus", true), token("stranger", false)
		metric := map[int]*regexp.Regexp{9472: regexp.MustCompile(`(?m)^eiplb_bgp_session_up`), 9475: regexp.MustCompile(`(?m)^eiplb_agent_services_programmed`)}
		for _, port := range []int{9472, 9475} {
			if code, _ := get(port, ""); code != http.StatusUnauthorized {
				t.Errorf(":%d without a token: %d, want 401", port, code)
			}
			if code, _ := get(port, "not-a-token"); code != http.StatusUnauthorized {
				t.Errorf(":%d with a bad token: %d, want 401", port, code)
			}
			if code, _ := get(port, stranger); code != http.StatusForbidden {
				t.Errorf(":%d with a token not allowed /metrics: %d, want 403", port, code)
			}
			code, body := get(port, scraper)
			if code != http.StatusOK || !metric[port].MatchString(body) {
				t.Errorf(":%d with the scraper's token: %d, %d bytes, want 200 with eiplb metrics", port, code, len(body))
			}
		}
	})
}
