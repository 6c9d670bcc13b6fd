//go:build privileged

package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/test/netlab"
)

// Images are the image archives of `make images` the cluster lab imports
// into every node's containerd.
type Images struct {
	Dir  string // IMAGES_DIR of make images (the *.tar archives)
	Repo string // IMAGE_REPO
	Tag  string // IMAGE_TAG
}

// ImagesFromEnv reads EIPLB_IMAGES_DIR, EIPLB_IMAGE_REPO and
// EIPLB_IMAGE_TAG (make e2e-cluster sets them after make images).
func ImagesFromEnv() (Images, error) {
	im := Images{Dir: os.Getenv("EIPLB_IMAGES_DIR"), Repo: os.Getenv("EIPLB_IMAGE_REPO"), Tag: os.Getenv("EIPLB_IMAGE_TAG")}
	if im.Dir == "" || im.Repo == "" || im.Tag == "" {
		return im, fmt.Errorf("EIPLB_IMAGES_DIR, EIPLB_IMAGE_REPO and EIPLB_IMAGE_TAG must be set (run through make e2e-cluster, which runs make images)")
	}
	return im, nil
}

// Ref is the reference of image name ("eiplb-manager") with tag.
func (im Images) Ref(name, tag string) string { return im.Repo + "/" + name + ":" + tag }

// PeerLabel marks the nodes the router peers with (node1, node2); the
// managers are pinned to them with the chart's manager.nodeSelector.
const PeerLabel = "eiplb.io/lab-peer"

// Cluster is the cluster lab: the Lab's topology with real nodes (KNodes)
// instead of pod namespaces, kube-scheduler, kube-controller-manager with
// every default controller and kube-proxy (nftables) on every node, and
// eiplb installed from its Helm chart.
type Cluster struct {
	*Lab
	KNodes     []*KNode
	Images     Images
	Kubeconfig string // the admin's, for helm and kubectl on the host
	helm       string
}

// NewCluster builds the cluster lab of n nodes and waits until every node
// is Ready and runs kube-proxy (eiplb not installed yet: Install).
func NewCluster(t netlab.T, api *API, n int, im Images) *Cluster {
	t.Helper()
	if api.pki == nil {
		t.Fatal("the cluster lab needs the API server of StartClusterAPI")
	}
	helm, err := exec.LookPath(os.Getenv("HELM"))
	if err != nil || os.Getenv("HELM") == "" {
		t.Fatal("HELM must name helm (make e2e-cluster sets it from hack/helm.sh)")
	}
	l := NewLab(t, api, LabOptions{Nodes: n, RealNodes: true})
	c := &Cluster{Lab: l, Images: im, helm: helm, Kubeconfig: filepath.Join(l.Net.Dir(), "admin.kubeconfig")}
	if err := os.WriteFile(c.Kubeconfig, api.Kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	l.apiForwarder()
	if err := api.StartScheduler(); err != nil {
		t.Fatal(err)
	}
	if err := api.StartControllers(); err != nil {
		t.Fatal(err)
	}
	var archives []string
	for _, a := range []string{"eiplb-manager", "eiplb-agent", "eiplb-test-backend", "eiplb-test-pause"} {
		archives = append(archives, filepath.Join(im.Dir, a+".tar"))
	}
	for i := 1; i <= n; i++ {
		kn := l.startKNode(i, im.Ref("eiplb-test-pause", im.Tag))
		kn.importImages(t, archives)
		c.KNodes = append(c.KNodes, kn)
	}
	c.waitNodesReady(3 * time.Minute)
	for i := 1; i <= n; i++ {
		l.StartKubeProxy(i, "nftables")
	}
	ctx := context.Background()
	for i := 1; i <= 2 && i <= n; i++ {
		node := &corev1.Node{}
		if err := api.Client.Get(ctx, client.ObjectKey{Name: NodeName(i)}, node); err != nil {
			t.Fatal(err)
		}
		node.Labels[PeerLabel] = "true"
		if err := api.Client.Update(ctx, node); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// waitNodesReady waits until every node's kubelet has registered its Node
// and reports it Ready.
func (c *Cluster) waitNodesReady(timeout time.Duration) {
	t := c.T
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		notReady := []string{}
		for _, kn := range c.KNodes {
			node := &corev1.Node{}
			err := c.API.Client.Get(context.Background(), client.ObjectKey{Name: kn.Name}, node)
			ready := false
			for _, cond := range node.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					ready = true
				}
			}
			if err != nil || !ready {
				notReady = append(notReady, kn.Name)
			}
			if kn.Kubelet.Exited() {
				t.Fatalf("the kubelet of %s exited; its log: %s", kn.Name, kn.Kubelet.Log)
			}
		}
		if len(notReady) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes %v not Ready after %s (kubelet logs in %s)", notReady, timeout, c.Net.Dir())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Helm runs helm against the cluster with args.
func (c *Cluster) Helm(args ...string) (string, error) {
	cmd := exec.Command(c.helm, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(c.Net.Dir(), "helm/cache"),
		"HELM_CONFIG_HOME="+filepath.Join(c.Net.Dir(), "helm/config"), "HELM_DATA_HOME="+filepath.Join(c.Net.Dir(), "helm/data"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Kubectl runs kubectl against the cluster with args.
func (c *Cluster) Kubectl(args ...string) (string, error) {
	bin, err := k8sBinary("kubectl")
	if err != nil {
		return "", err
	}
	out, err := exec.Command(bin, append([]string{"--kubeconfig", c.Kubeconfig, "--cache-dir", filepath.Join(c.Net.Dir(), "kubectl-cache")}, args...)...).CombinedOutput()
	return string(out), err
}

// HelmValues are the chart values the lab sets: its images, managers on
// the peered nodes.
func (c *Cluster) HelmValues(tag string) []string {
	return []string{
		"--set", "image.manager.repository=" + c.Images.Repo + "/eiplb-manager", "--set", "image.manager.tag=" + tag,
		"--set", "image.agent.repository=" + c.Images.Repo + "/eiplb-agent", "--set", "image.agent.tag=" + tag,
		"--set", "image.pullPolicy=IfNotPresent",
		"--set-string", "manager.nodeSelector." + strings.ReplaceAll(PeerLabel, ".", `\.`) + "=true",
	}
}

// Install installs eiplb as a user does, `helm install` from
// deploy/helm/eiplb with the lab's image tag, then the sample pools, BGP
// peer and advertisement, starts the router and waits until every agent
// and both managers are Ready and the router has established both
// sessions.
func (c *Cluster) Install() {
	t := c.T
	t.Helper()
	args := append([]string{"install", "eiplb", filepath.Join(Root(), "deploy", "helm", "eiplb"), "-n", "eiplb-system"}, c.HelmValues(c.Images.Tag)...)
	if out, err := c.Helm(args...); err != nil {
		t.Fatalf("helm install: %v: %s", err, out)
	}
	for _, f := range []string{"eippool.yaml", "bgp.yaml"} {
		c.API.Apply(t, filepath.Join(Root(), "config", "samples", f))
	}
	c.StartFRR(FRRConfig(ManagerIPs(2), "password "+SamplePassword, "bfd profile eiplb"))
	c.WaitRollout(3 * time.Minute)
	c.WaitSessions(2, 60*time.Second)
}

// WaitRollout waits until the manager Deployment and the agent DaemonSet
// have rolled out completely (every replica updated and available).
func (c *Cluster) WaitRollout(timeout time.Duration) {
	t := c.T
	t.Helper()
	for _, what := range []string{"deployment/eiplb-manager", "daemonset/eiplb-agent"} {
		out, err := c.Kubectl("-n", "eiplb-system", "rollout", "status", what, "--timeout="+timeout.String())
		if err != nil {
			pods, _ := c.Kubectl("-n", "eiplb-system", "get", "pods", "-o", "wide")
			ev, _ := c.Kubectl("-n", "eiplb-system", "get", "events", "--sort-by=.lastTimestamp")
			t.Fatalf("rollout of %s: %v: %s\npods:\n%s\nevents:\n%s", what, err, out, pods, tail([]byte(ev), 4096))
		}
	}
}

// Backend creates a Deployment of the test backend with replicas in
// namespace ns, named name, with a readiness probe, pods spread over the
// nodes, and returns it.
func (c *Cluster) Backend(ns, name string, replicas int32) *appsv1.Deployment {
	t := c.T
	t.Helper()
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{
				MaxSurge: ptr.To(intstr.FromInt32(1)), MaxUnavailable: ptr.To(intstr.FromInt32(0))}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](30),
					TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: "kubernetes.io/hostname",
						WhenUnsatisfiable: corev1.ScheduleAnyway, LabelSelector: &metav1.LabelSelector{MatchLabels: labels}}},
					Containers: []corev1.Container{{
						Name: "backend", Image: c.Images.Ref("eiplb-test-backend", c.Images.Tag), ImagePullPolicy: corev1.PullNever,
						Env: []corev1.EnvVar{{Name: "PORT", Value: fmt.Sprint(BackendPort)}, {Name: "DRAIN", Value: "8s"},
							{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
						Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: BackendPort}},
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(BackendPort)}},
							PeriodSeconds: 1, FailureThreshold: 1},
					}},
				},
			},
		},
	}
	if err := c.API.Client.Create(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	return d
}

// WaitDeployment waits until Deployment d has rolled out completely.
func (c *Cluster) WaitDeployment(d *appsv1.Deployment, timeout time.Duration) {
	t := c.T
	t.Helper()
	if out, err := c.Kubectl("-n", d.Namespace, "rollout", "status", "deployment/"+d.Name, "--timeout="+timeout.String()); err != nil {
		pods, _ := c.Kubectl("-n", d.Namespace, "get", "pods", "-o", "wide")
		t.Fatalf("rollout of %s: %v: %s\n%s", d.Name, err, out, pods)
	}
}

// ReadyPods are the names of d's pods that are Ready, by node.
func (c *Cluster) ReadyPods(d *appsv1.Deployment) map[string][]string {
	var pods corev1.PodList
	_ = c.API.Client.List(context.Background(), &pods, client.InNamespace(d.Namespace), client.MatchingLabels(d.Spec.Selector.MatchLabels))
	out := map[string][]string{}
	for _, p := range pods.Items {
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue && p.DeletionTimestamp == nil {
				out[p.Spec.NodeName] = append(out[p.Spec.NodeName], p.Name)
			}
		}
	}
	return out
}
