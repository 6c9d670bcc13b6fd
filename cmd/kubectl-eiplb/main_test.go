package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/cli"
	"github.com/eiplb/eiplb/pkg/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, func(e *testenv.Env) { env = e }) }

// TestBinary runs the plugin's own main path (kubeconfig, informer cache)
// against a real API server; pkg/cli tests what the commands say.
func TestBinary(t *testing.T) {
	cfg := env.Config
	kc := clientcmdapi.NewConfig()
	kc.Clusters["t"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["t"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts["t"] = &clientcmdapi.Context{Cluster: "t", AuthInfo: "t"}
	kc.CurrentContext = "t"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	testenv.Must(t, clientcmd.WriteToFile(*kc, path))
	testenv.Must(t, env.Client.Create(t.Context(), &v1alpha1.EIPPool{ObjectMeta: metav1.ObjectMeta{Name: "b"}, Spec: v1alpha1.EIPPoolSpec{Addresses: []string{"192.0.2.0/24"}}}))
	testenv.Must(t, env.Client.Create(t.Context(), &v1alpha1.EIPPool{ObjectMeta: metav1.ObjectMeta{Name: "a"}, Spec: v1alpha1.EIPPoolSpec{Addresses: []string{"198.51.100.0/24"}}}))

	var b bytes.Buffer
	testenv.Must(t, run([]string{"--kubeconfig", path, "pools", "-o", "json"}, &b))
	var pools []cli.Pool
	testenv.Must(t, json.Unmarshal(b.Bytes(), &pools))
	if len(pools) != 2 || pools[0].Name != "a" || pools[1].Name != "b" {
		t.Fatalf("pools %+v, want a and b in order", pools)
	}
	b.Reset()
	testenv.Must(t, run([]string{"status", "--kubeconfig", path}, &b)) // flags after the command too
	if !strings.Contains(b.String(), "POOL") || !strings.Contains(b.String(), "SERVICE") {
		t.Fatalf("status:\n%s", b.String())
	}
	err := run([]string{"--kubeconfig", path, "explain", "svc", "default/missing"}, &b)
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("explain of a missing Service: %v", err)
	}
	if err := run([]string{"--kubeconfig", path}, &b); err == nil {
		t.Fatal("no command accepted")
	}
}
