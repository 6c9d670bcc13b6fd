package migrate

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/pkg/testenv"
)

// TestCluster installs CRDs with MetalLB's and OpenELB's groups, versions
// and kinds (schemas that keep every field) on a real API server, creates
// the testdata objects and their Services with their addresses, runs the
// migration against the cluster and checks it prints what it prints from
// the files (the golden output); then applies that output.
func TestCluster(t *testing.T) {
	ctx, c := t.Context(), env.Client
	installCRD(t, "metallb.io", "IPAddressPool", "ipaddresspools", true, "v1beta1")
	installCRD(t, "metallb.io", "BGPPeer", "bgppeers", true, "v1beta2", "v1beta1")
	installCRD(t, "metallb.io", "BGPAdvertisement", "bgpadvertisements", true, "v1beta1")
	installCRD(t, "metallb.io", "BFDProfile", "bfdprofiles", true, "v1beta1")
	installCRD(t, "metallb.io", "Community", "communities", true, "v1beta1")
	installCRD(t, "metallb.io", "L2Advertisement", "l2advertisements", true, "v1beta1")
	installCRD(t, "network.kubesphere.io", "Eip", "eips", false, "v1alpha2")
	installCRD(t, "network.kubesphere.io", "BgpPeer", "bgppeers", false, "v1alpha2")
	installCRD(t, "network.kubesphere.io", "BgpConf", "bgpconfs", false, "v1alpha2")

	for _, tc := range []struct {
		from, file string
		svc        [3]string // a shared Service: namespace, name, address
	}{
		{FromMetalLB, "testdata/metallb-full", [3]string{"shop", "http", "198.51.100.7"}},
		{FromOpenELB, "testdata/openelb", [3]string{"edge", "tcp-80", "198.51.100.9"}},
	} {
		t.Run(tc.from, func(t *testing.T) {
			objs, err := ReadFiles([]string{tc.file + ".in.yaml"}, nil)
			testenv.Must(t, err)
			for _, o := range objs {
				createWithStatus(t, o)
			}
			var got []Object
			testenv.Eventually(t, 20*time.Second, func() string { // the new CRDs' kinds reach the client's mapper
				got, err = ReadCluster(ctx, c, tc.from, "")
				if err != nil {
					return err.Error()
				}
				return ""
			})
			res, err := Convert(got, Options{From: tc.from})
			testenv.Must(t, err)
			var b bytes.Buffer
			testenv.Must(t, res.Write(&b))
			want, err := os.ReadFile(tc.file + ".out.yaml")
			testenv.Must(t, err)
			if b.String() != string(want) {
				t.Errorf("from the cluster the migration says (want %s.out.yaml, as from the file):\n%s", tc.file, b.String())
			}

			// Apply for real, as docs/migrate.md says.
			ensureNamespace(t, "eiplb-system")
			out, err := decode(&b)
			testenv.Must(t, err)
			for _, o := range out {
				testenv.Must(t, c.Patch(ctx, o, client.Apply, client.FieldOwner("eiplb-migrate"), client.ForceOwnership))
				t.Cleanup(func() {
					if o.GetKind() != "Service" {
						_ = c.Delete(context.Background(), o)
					}
				})
			}
			svc := &corev1.Service{}
			testenv.Must(t, c.Get(ctx, client.ObjectKey{Namespace: tc.svc[0], Name: tc.svc[1]}, svc))
			if svc.Annotations["eiplb.io/ip"] != tc.svc[2] || svc.Annotations["eiplb.io/sharing-key"] == "" ||
				svc.Status.LoadBalancer.Ingress[0].IP != tc.svc[2] {
				t.Errorf("%s/%s after the apply: annotations %v, status %v", tc.svc[0], tc.svc[1], svc.Annotations, svc.Status.LoadBalancer)
			}
		})
	}
}

func installCRD(t *testing.T, group, kind, plural string, namespaced bool, versions ...string) {
	t.Helper()
	scope := "Cluster"
	if namespaced {
		scope = "Namespaced"
	}
	var vs []any
	for i, v := range versions {
		vs = append(vs, map[string]any{
			"name": v, "served": true, "storage": i == 0,
			"schema": map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
		})
	}
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": plural + "." + group},
		"spec": map[string]any{
			"group": group, "scope": scope, "versions": vs,
			"names": map[string]any{"kind": kind, "plural": plural, "singular": strings.ToLower(kind), "listKind": kind + "List"},
		},
	}}
	if err := env.Client.Create(t.Context(), crd); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() string {
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(crd.GroupVersionKind())
		if err := env.Client.Get(t.Context(), client.ObjectKeyFromObject(crd), got); err != nil {
			return err.Error()
		}
		conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		for _, cd := range conds {
			if m, _ := cd.(map[string]any); m["type"] == "Established" && m["status"] == "True" {
				return ""
			}
		}
		return "CRD " + crd.GetName() + " not established"
	})
}

// createWithStatus creates an object of the source (or a Service, with its
// status: the addresses the source gave it).
func createWithStatus(t *testing.T, o Object) {
	t.Helper()
	ctx, c := t.Context(), env.Client
	if ns := o.GetNamespace(); ns != "" {
		ensureNamespace(t, ns)
	}
	o = o.DeepCopy()
	status, hasStatus := o.Object["status"]
	if o.GetKind() == "Service" {
		// The test API server is IPv4-only: the families don't matter to
		// the migration, the addresses in the status do.
		unstructured.RemoveNestedField(o.Object, "spec", "ipFamilyPolicy")
		unstructured.RemoveNestedField(o.Object, "spec", "ipFamilies")
	}
	testenv.Eventually(t, 20*time.Second, func() string { // a CRD just established may not be served yet
		if err := c.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			return err.Error()
		}
		return ""
	})
	t.Cleanup(func() { _ = c.Delete(context.Background(), o) })
	if hasStatus && o.GetKind() == "Service" {
		o.Object["status"] = status
		testenv.Must(t, c.Status().Update(ctx, o))
	}
}
