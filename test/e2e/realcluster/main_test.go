//go:build privileged

// Package realcluster_test runs the scenarios only a real node can prove
// (make e2e-cluster) in the cluster lab: three node namespaces running
// containerd and a kubelet, pods in their own network namespaces (CNI
// bridge), kube-scheduler, kube-controller-manager with every default
// controller and kube-proxy (nftables) on every node, eiplb installed with
// `helm install` from deploy/helm/eiplb with the images of `make images`,
// FRR peered with the two managers, and backends that are real Deployments
// of the test backend image with readiness probes.
//
// The scenarios share one cluster and run in order.
package realcluster_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/eiplb/eiplb/test/e2e/cluster"
)

var (
	api    *cluster.API
	images cluster.Images
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("skipping: the cluster lab needs root (network namespaces, containerd, kubelet)")
		os.Exit(0)
	}
	ctrllog.SetLogger(logr.Discard())
	var err error
	if images, err = cluster.ImagesFromEnv(); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	if api, err = cluster.StartClusterAPI(); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	code := m.Run()
	api.Stop()
	os.Exit(code)
}
