package install

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/pkg/manager"
	"github.com/eiplb/eiplb/pkg/testenv"
)

const managerUser = "system:serviceaccount:eiplb-system:eiplb-manager"

var managerGroups = []string{"system:serviceaccounts", "system:serviceaccounts:eiplb-system", "system:authenticated"}

// installManagerRBAC creates, for real, the manager's ServiceAccount and
// roles of deploy/eiplb.yaml (the namespace stays: envtest can't finish
// deleting one).
func installManagerRBAC(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(), "deploy", "eiplb.yaml"))
	testenv.Must(t, err)
	n := 0
	for _, u := range decode(t, b) {
		switch u.GetKind() {
		case "Namespace":
			testenv.Must(t, client.IgnoreAlreadyExists(env.Client.Create(t.Context(), u)))
			continue
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
		default:
			continue
		}
		if !strings.HasPrefix(u.GetName(), "eiplb-manager") {
			continue
		}
		testenv.Must(t, env.Client.Create(t.Context(), u))
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), u) })
		n++
	}
	if n < 5 {
		t.Fatalf("deploy/eiplb.yaml has %d of the manager's ServiceAccount, ClusterRole, ClusterRoleBinding, Role and RoleBinding", n)
	}
}

// TestManagerRBAC applies the manager's RBAC of deploy/eiplb.yaml to the
// API server and checks, as the manager's ServiceAccount, what the manager
// does in its own namespace: the requests are allowed, and a manager with
// leader election, run with those rights, gets its leader-election Event
// written (client-go records it with the core Event API in the Lease's
// namespace; without the right it is refused and only logged).
func TestManagerRBAC(t *testing.T) {
	installManagerRBAC(t)

	for _, ra := range []authzv1.ResourceAttributes{
		{Namespace: "eiplb-system", Group: "", Resource: "events", Verb: "create"},
		{Namespace: "eiplb-system", Group: "", Resource: "events", Verb: "patch"},
		{Namespace: "eiplb-system", Group: "coordination.k8s.io", Resource: "leases", Verb: "create"},
		{Namespace: "eiplb-system", Group: "coordination.k8s.io", Resource: "leases", Verb: "update"},
		{Namespace: "eiplb-system", Group: "", Resource: "secrets", Verb: "get"},
		// Events on cluster-scoped objects (BGPPeer, EIPPool) go to default.
		{Namespace: "default", Group: "events.k8s.io", Resource: "events", Verb: "create"},
	} {
		sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{User: managerUser, Groups: managerGroups, ResourceAttributes: &ra}}
		testenv.Must(t, env.Client.Create(t.Context(), sar))
		if !sar.Status.Allowed {
			what := ra.Resource
			if ra.Group != "" {
				what += "." + ra.Group
			} else {
				what = "core " + what
			}
			t.Errorf("the manager may not %s %s in %s", ra.Verb, what, ra.Namespace)
		}
	}
	// And not more than that: core Events elsewhere are not the manager's.
	sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{User: managerUser, Groups: managerGroups,
		ResourceAttributes: &authzv1.ResourceAttributes{Namespace: "default", Resource: "events", Verb: "create"}}}
	testenv.Must(t, env.Client.Create(t.Context(), sar))
	if sar.Status.Allowed {
		t.Errorf("the manager may create core Events in default; it needs them only in eiplb-system")
	}

	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: managerUser, Groups: managerGroups}
	ctx, cancel := context.WithCancel(context.Background())
	id := "eiplb-rbac-test"
	mgr, err := manager.New(ctx, cfg, manager.Options{
		MetricsAddr: "0", SeveralPerProcess: true,
		LeaderElection: true, LeaderElectionNamespace: "eiplb-system", LeaderElectionID: id,
	})
	testenv.Must(t, err)
	done := make(chan struct{})
	go func() { defer close(done); _ = mgr.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testenv.Eventually(t, 30*time.Second, func() string {
		var list corev1.EventList
		testenv.Must(t, env.Client.List(ctx, &list, client.InNamespace("eiplb-system")))
		for _, e := range list.Items {
			if e.InvolvedObject.Kind == "Lease" && e.InvolvedObject.Name == id && e.Reason == "LeaderElection" && strings.Contains(e.Message, "became leader") {
				return ""
			}
		}
		return "no LeaderElection Event of the manager in eiplb-system"
	})
}
