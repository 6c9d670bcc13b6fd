//go:build privileged

package cluster

// The parts of Kubernetes the lab runs besides the API server, built by
// hack/k8s-binaries.sh next to kube-apiserver: kube-controller-manager with
// the EndpointSlice controllers (one per API server), and kube-proxy in every
// node's namespace. The lab plays the kubelet only: it creates the Pods on
// their nodes and writes their status.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/eiplb/eiplb/test/netlab"
)

// PodCIDRs are the lab's pod networks (every node's pods are in them), as
// kube-proxy's --cluster-cidr.
const PodCIDRs = "10.244.0.0/16,fd00:244::/48"

// k8sBinary is the path of a Kubernetes binary built by hack/k8s-binaries.sh.
func k8sBinary(name string) (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		return "", errors.New("KUBEBUILDER_ASSETS is not set: run through make, or KUBEBUILDER_ASSETS=$(hack/k8s-binaries.sh)")
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s is missing (%v): run hack/k8s-binaries.sh, which builds it", name, err)
	}
	return p, nil
}

// kcm is the running kube-controller-manager of an API.
type kcm struct {
	cmd  *exec.Cmd
	dir  string // its kubeconfig and log
	log  string
	done chan struct{}
}

// StartControllers starts kube-controller-manager with the EndpointSlice
// controllers (endpointslice, endpointslicemirroring) against the API
// server, once per API; Stop stops it. From then on a Service's
// EndpointSlices are the controller's, made from the Pods it selects (see
// Lab.EndpointPods).
func (a *API) StartControllers() error {
	a.kcmMu.Lock()
	defer a.kcmMu.Unlock()
	if a.kcm != nil {
		select {
		case <-a.kcm.done:
			return fmt.Errorf("kube-controller-manager exited; its log: %s", a.kcm.log)
		default:
			return nil
		}
	}
	bin, err := k8sBinary("kube-controller-manager")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "eiplb-kcm-")
	if err != nil {
		return err
	}
	kc := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kc, a.Kubeconfig, 0o600); err != nil {
		return err
	}
	k := &kcm{dir: dir, log: filepath.Join(dir, "kube-controller-manager.log"), done: make(chan struct{})}
	logf, err := os.Create(k.log)
	if err != nil {
		return err
	}
	args := []string{"--kubeconfig=" + kc,
		"--controllers=endpointslice,endpointslicemirroring", "--leader-elect=false", "--secure-port=0",
		// A rolling update of a few pods must not wait on client-go's
		// default rate limit (20/s).
		"--kube-api-qps=200", "--kube-api-burst=400"}
	if a.pki != nil {
		// The cluster lab: every default controller (Deployments,
		// ReplicaSets, DaemonSets, the ServiceAccount token's root CA
		// ConfigMap, node lifecycle, garbage collection, ...).
		args[1] = "--controllers=*"
		args = append(args, "--root-ca-file="+a.pki.caFile,
			"--service-account-private-key-file="+a.pki.saKeyFile,
			"--flex-volume-plugin-dir="+filepath.Join(dir, "flexvolume"),
			"--node-monitor-grace-period=20s")
	}
	k.cmd = exec.Command(bin, args...)
	k.cmd.Stdout, k.cmd.Stderr = logf, logf
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := k.cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("starting kube-controller-manager: %w", err)
	}
	go func() { _ = k.cmd.Wait(); _ = logf.Close(); close(k.done) }()
	a.kcm = k
	return nil
}

// stopControllers stops kube-controller-manager, if it runs.
func (a *API) stopControllers() {
	a.kcmMu.Lock()
	defer a.kcmMu.Unlock()
	if a.kcm == nil {
		return
	}
	_ = syscall.Kill(-a.kcm.cmd.Process.Pid, syscall.SIGKILL)
	<-a.kcm.done
	_ = os.RemoveAll(a.kcm.dir)
	a.kcm = nil
}

// controllersLog is the end of kube-controller-manager's log, for failures.
func (a *API) controllersLog() string {
	a.kcmMu.Lock()
	defer a.kcmMu.Unlock()
	if a.kcm == nil {
		return "(kube-controller-manager not started)"
	}
	b, err := os.ReadFile(a.kcm.log)
	if err != nil {
		return err.Error()
	}
	return tail(b, 2048)
}

// ensureServiceAccount creates the namespace's default ServiceAccount, which
// Pods need (ServiceAccount admission) and no controller makes in the lab.
func (a *API) ensureServiceAccount(ns, name string) error {
	err := a.Client.Create(context.Background(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// RunPod plays the kubelet for pod namespace j of node i behind svc: it
// creates a Pod on node i with the labels svc selects (the name is svc's,
// the pod namespace's and a suffix) and writes its status as a kubelet does
// once the container runs and is ready: phase Running, the pod namespace's
// IPv4 and IPv6 addresses, Ready. It returns the Pod; ForceDelete or the end
// of t deletes it.
func (a *API) RunPod(t netlab.T, svc *corev1.Service, i, j int) *corev1.Pod {
	t.Helper()
	if len(svc.Spec.Selector) == 0 {
		t.Fatalf("Service %s/%s has no selector: no Pod would be its endpoint", svc.Namespace, svc.Name)
	}
	if err := a.ensureServiceAccount(svc.Namespace, "default"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: svc.Namespace, GenerateName: svc.Name + "-" + PodName(i, j) + "-",
			Labels: map[string]string{}},
		Spec: corev1.PodSpec{
			NodeName:                     NodeName(i),
			AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{Name: "http", Image: "eiplb-lab/http",
				Ports: []corev1.ContainerPort{{ContainerPort: BackendPort}}}},
		},
	}
	for k, v := range svc.Spec.Selector {
		pod.Labels[k] = v
	}
	if err := a.Client.Create(ctx, pod); err != nil {
		t.Fatalf("creating a Pod for %s on %s: %v", svc.Name, NodeName(i), err)
	}
	t.Cleanup(func() { _ = a.Client.Delete(context.Background(), pod, client.GracePeriodSeconds(0)) })
	now := metav1.Now()
	pod.Status = corev1.PodStatus{
		Phase:     corev1.PodRunning,
		HostIP:    NodeIP(i),
		HostIPs:   []corev1.HostIP{{IP: NodeIP(i)}, {IP: NodeIP6(i)}},
		PodIP:     PodIP(i, j),
		PodIPs:    []corev1.PodIP{{IP: PodIP(i, j)}, {IP: PodIP6(i, j)}},
		StartTime: &now,
	}
	for _, c := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: c, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	if err := a.Client.Status().Update(ctx, pod); err != nil {
		t.Fatalf("setting the status of Pod %s: %v", pod.Name, err)
	}
	return pod
}

// Endpoint states of a Pod in a Service's EndpointSlices, for WaitEndpoints.
const (
	Ready       = "ready"       // ready (and serving)
	Terminating = "terminating" // not ready, serving, terminating
	Gone        = "gone"        // not in any slice
)

// WaitEndpoints waits (bounded) until the Service's EndpointSlices of every
// family of the Service show each Pod of want (by name) in its state, with
// the pod namespace's address of that family.
func (a *API) WaitEndpoints(t netlab.T, svc *corev1.Service, want map[*corev1.Pod]string) {
	t.Helper()
	if len(want) == 0 {
		return
	}
	families := svc.Spec.IPFamilies
	if len(families) == 0 {
		families = []corev1.IPFamily{corev1.IPv4Protocol}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		msg := a.endpointsDiffer(svc, families, want)
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("EndpointSlices of %s/%s after 30 s: %s\nkube-controller-manager log (end):\n%s", svc.Namespace, svc.Name, msg, a.controllersLog())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// endpointsDiffer says how the Service's slices differ from want ("" when
// they don't).
func (a *API) endpointsDiffer(svc *corev1.Service, families []corev1.IPFamily, want map[*corev1.Pod]string) string {
	var list discoveryv1.EndpointSliceList
	if err := a.Client.List(context.Background(), &list, client.InNamespace(svc.Namespace),
		client.MatchingLabels{discoveryv1.LabelServiceName: svc.Name}); err != nil {
		return err.Error()
	}
	var diffs []string
	for _, fam := range families {
		at := discoveryv1.AddressTypeIPv4
		if fam == corev1.IPv6Protocol {
			at = discoveryv1.AddressTypeIPv6
		}
		got := map[string]discoveryv1.Endpoint{}
		for _, es := range list.Items {
			if es.AddressType != at {
				continue
			}
			for _, ep := range es.Endpoints {
				if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" {
					got[ep.TargetRef.Name] = ep
				}
			}
		}
		for pod, state := range want {
			ep, ok := got[pod.Name]
			if state == Gone {
				if ok {
					diffs = append(diffs, fmt.Sprintf("%s %s still there", at, pod.Name))
				}
				continue
			}
			if !ok {
				diffs = append(diffs, fmt.Sprintf("%s %s missing", at, pod.Name))
				continue
			}
			addr := pod.Status.PodIPs[0].IP
			if fam == corev1.IPv6Protocol {
				addr = pod.Status.PodIPs[1].IP
			}
			c := ep.Conditions
			ready, serving, term := ptr.Deref(c.Ready, false), ptr.Deref(c.Serving, false), ptr.Deref(c.Terminating, false)
			ok = len(ep.Addresses) == 1 && ep.Addresses[0] == addr
			switch state {
			case Ready:
				ok = ok && ready && serving && !term
			case Terminating:
				ok = ok && !ready && serving && term
			}
			if !ok {
				diffs = append(diffs, fmt.Sprintf("%s %s %v ready=%v serving=%v terminating=%v, want %s", at, pod.Name, ep.Addresses, ready, serving, term, state))
			}
		}
	}
	sort.Strings(diffs)
	return strings.Join(diffs, "; ")
}

// TerminatePod deletes the Pod as `kubectl delete pod` does, with its grace
// period. With no kubelet to stop its container it stays Terminating, its
// endpoint serving and terminating, until ForcePod; TerminatePod waits until
// the Service's slices say so.
func (a *API) TerminatePod(t netlab.T, svc *corev1.Service, pod *corev1.Pod) {
	t.Helper()
	if err := a.Client.Delete(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	a.WaitEndpoints(t, svc, map[*corev1.Pod]string{pod: Terminating})
}

// ForcePod deletes the Pod at once (grace period 0), as the kubelet does
// once its containers have stopped, and waits until it has left the
// Service's slices.
func (a *API) ForcePod(t netlab.T, svc *corev1.Service, pod *corev1.Pod) {
	t.Helper()
	if err := a.Client.Delete(context.Background(), pod, client.GracePeriodSeconds(0)); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	a.WaitEndpoints(t, svc, map[*corev1.Pod]string{pod: Gone})
}

// kubeProxyKubeconfig is the credentials kube-proxy starts with: the
// ServiceAccount kube-system/kube-proxy bound to the ClusterRole
// system:node-proxier, as kubeadm sets it up.
func (a *API) kubeProxyKubeconfig() ([]byte, error) {
	ctx := context.Background()
	if err := a.ensureServiceAccount("kube-system", "kube-proxy"); err != nil {
		return nil, err
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "eiplb-lab:kube-proxy"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:node-proxier"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "kube-system", Name: "kube-proxy"}},
	}
	if err := a.Client.Create(ctx, crb); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	return a.ServiceAccountKubeconfig("kube-system", "kube-proxy")
}

// StartKubeProxy runs kube-proxy in node i's namespace (hostNetwork, as its
// DaemonSet does) in mode "nftables" or "iptables", as the ServiceAccount
// kube-system/kube-proxy with system:node-proxier, and waits until it has
// synced its rules (its /healthz answers 200). It is killed when the owner
// ends (its rules stay, as they would).
func (l *Lab) StartKubeProxy(i int, mode string) *Process {
	l.T.Helper()
	bin, err := k8sBinary("kube-proxy")
	if err != nil {
		l.T.Fatal(err)
	}
	kc, err := l.API.kubeProxyKubeconfig()
	if err != nil {
		l.T.Fatal(err)
	}
	p := l.API.start(l.T, l.Nodes[i-1], "kube-proxy-"+NodeName(i), kc, []string{bin,
		"--hostname-override=" + NodeName(i), "--proxy-mode=" + mode, "--cluster-cidr=" + PodCIDRs,
		// The host's conntrack table size is not the lab's to change.
		"--conntrack-max-per-core=0",
		"--metrics-bind-address=127.0.0.1:10249", "--healthz-bind-address=127.0.0.1:10256"})
	l.KubeProxies[i-1] = p
	l.waitKubeProxy(i, p)
	return p
}

// waitKubeProxy waits until node i's kube-proxy answers 200 on /healthz
// (it has programmed its rules recently).
func (l *Lab) waitKubeProxy(i int, p *Process) {
	l.T.Helper()
	ns := l.Nodes[i-1]
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return ns.Dial(ctx, network, addr)
		},
	}}
	deadline := time.Now().Add(60 * time.Second)
	last := ""
	for {
		resp, err := c.Get("http://127.0.0.1:10256/healthz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if p.Exited() {
			l.T.Fatalf("kube-proxy on %s exited; its log: %s", NodeName(i), p.Log)
		}
		if time.Now().After(deadline) {
			l.T.Fatalf("kube-proxy on %s not healthy after 60 s (%s); its log: %s", NodeName(i), last, p.Log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
