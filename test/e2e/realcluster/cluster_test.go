//go:build privileged

package realcluster_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eiplb/eiplb/test/e2e/cluster"
	"github.com/eiplb/eiplb/test/netlab"
)

func TestCluster(t *testing.T) {
	start := time.Now()
	c := cluster.NewCluster(t, api, 3, images)
	t.Logf("cluster lab: 3 nodes Ready with kube-proxy after %s", time.Since(start).Round(time.Second))
	c.Install()
	t.Logf("eiplb installed with helm and both sessions up after %s", time.Since(start).Round(time.Second))
	out, _ := c.Kubectl("get", "pods", "-A", "-o", "wide")
	t.Logf("pods:\n%s", out)

	checkSecurityContext(t, c)

	// Each scenario needs the ones before it to have left eiplb running.
	for _, sc := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"1-eip-over-every-node", func(t *testing.T) { eipOverEveryNode(t, c) }},
		{"2-rolling-update-local", func(t *testing.T) { rollingUpdate(t, c, true) }},
		{"3-rolling-update-cluster", func(t *testing.T) { rollingUpdate(t, c, false) }},
		{"4-helm-upgrade", func(t *testing.T) { helmUpgrade(t, c) }},
		{"5-drain-next-hop", func(t *testing.T) { drain(t, c) }},
		{"6-uninstall-cleanup", func(t *testing.T) { uninstall(t, c) }},
	} {
		if !t.Run(sc.name, sc.run) {
			return
		}
	}
}

func eipOverEveryNode(t *testing.T, c *cluster.Cluster) {
	ns := api.Namespace(t)
	d := c.Backend(ns, "web", 3)
	svc := api.Service(t, ns, "web", false)
	c.WaitDeployment(d, 2*time.Minute)
	ip := api.IPs(t, svc, 1)[0]
	c.Rtr.WaitRoute(t, ip+"/32", 60*time.Second, cluster.Via(false, 1, 2, 3))
	seen := map[string]bool{}
	ready := c.ReadyPods(d)
	var all []string
	for _, ps := range ready {
		all = append(all, ps...)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(seen) < 3 && time.Now().Before(deadline) {
		got, err := c.Get(ip, 80)
		if err != nil {
			t.Fatalf("GET %s: %v", ip, err)
		}
		pod := strings.Fields(got)[0]
		if !strings.Contains(strings.Join(all, " "), pod) {
			t.Fatalf("answer %q is not from a ready pod of the Deployment (%v)", got, all)
		}
		seen[pod] = true
	}
	if len(seen) < 3 {
		t.Fatalf("answers came from %v only, want all 3 pods %v", seen, all)
	}
	loop := c.Steady(ip, 80)
	time.Sleep(5 * time.Second) // the loop's length, not a synchronisation
	ok, failures := loop.Finish()
	if len(failures) > 0 || ok == 0 {
		t.Fatalf("steady loop: %d ok, %d failed: %s", ok, len(failures), cluster.Summary(failures))
	}
	t.Logf("EIP %s over node1..3 to pods %v; steady loop %d ok, 0 failed", ip, all, ok)
}

// steadyDuring runs a steady request loop against ip:80 from the client
// while do runs, plus settle afterwards, and fails on any failed request.
func steadyDuring(t *testing.T, c *cluster.Cluster, ip string, what string, settle time.Duration, do func()) {
	t.Helper()
	loop := c.Steady(ip, 80)
	do()
	time.Sleep(settle) // the loop's length after the change, not a synchronisation
	ok, failures := loop.Finish()
	if len(failures) > 0 || ok == 0 {
		t.Fatalf("%s: steady loop %d ok, %d failed: %s", what, ok, len(failures), cluster.Summary(failures))
	}
	t.Logf("%s: steady loop %d ok, 0 failed", what, ok)
}

// rollingUpdate: `kubectl rollout restart` of a backend Deployment (maxSurge
// 1, maxUnavailable 0, readiness probe, termination grace with a drain)
// under a steady loop, for Local and Cluster: no request fails.
func rollingUpdate(t *testing.T, c *cluster.Cluster, local bool) {
	ns := api.Namespace(t)
	d := c.Backend(ns, "web", 3)
	svc := api.Service(t, ns, "web", local)
	c.WaitDeployment(d, 2*time.Minute)
	ip := api.IPs(t, svc, 1)[0]
	c.Rtr.WaitRoute(t, ip+"/32", 60*time.Second, func(_ netlab.Route, found bool) bool { return found })
	waitAnswers(t, c, ip)
	steadyDuring(t, c, ip, "rolling update", 3*time.Second, func() {
		if out, err := c.Kubectl("-n", ns, "rollout", "restart", "deployment/web"); err != nil {
			t.Fatalf("rollout restart: %v: %s", err, out)
		}
		c.WaitDeployment(d, 3*time.Minute)
	})
}

// waitAnswers waits until the EIP answers from the client (bounded).
func waitAnswers(t *testing.T, c *cluster.Cluster, ip string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := c.Get(ip, 80)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not answer: %v", ip, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// helmUpgrade: `helm upgrade` to a new image tag of manager and agent under
// a steady loop: no request fails, both roll out completely, the managers
// stay on the peered nodes and run the new images.
func helmUpgrade(t *testing.T, c *cluster.Cluster) {
	ns := api.Namespace(t)
	d := c.Backend(ns, "web", 3)
	svc := api.Service(t, ns, "web", false)
	c.WaitDeployment(d, 2*time.Minute)
	ip := api.IPs(t, svc, 1)[0]
	c.Rtr.WaitRoute(t, ip+"/32", 60*time.Second, cluster.Via(false, 1, 2, 3))
	waitAnswers(t, c, ip)
	next := c.Images.Tag + "-next"
	for _, kn := range c.KNodes {
		for _, im := range []string{"eiplb-manager", "eiplb-agent"} {
			if out, err := kn.Ctr("images", "tag", "--force", c.Images.Ref(im, c.Images.Tag), c.Images.Ref(im, next)); err != nil {
				t.Fatalf("tagging %s on %s: %v: %s", im, kn.Name, err, out)
			}
		}
	}
	steadyDuring(t, c, ip, "helm upgrade", 3*time.Second, func() {
		args := append([]string{"upgrade", "eiplb", filepath.Join(cluster.Root(), "deploy", "helm", "eiplb"), "-n", "eiplb-system"}, c.HelmValues(next)...)
		if out, err := c.Helm(args...); err != nil {
			t.Fatalf("helm upgrade: %v: %s", err, out)
		}
		c.WaitRollout(3 * time.Minute)
		c.WaitSessions(2, 60*time.Second)
	})
	out, err := c.Kubectl("-n", "eiplb-system", "get", "pods", "-o", "jsonpath={range .items[*]}{.spec.nodeName} {.spec.containers[0].image}{\"\\n\"}{end}")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 || !strings.HasSuffix(f[1], ":"+next) {
			t.Errorf("pod not on the new tag: %q", line)
		}
		if strings.Contains(f[1], "eiplb-manager") && f[0] != cluster.NodeName(1) && f[0] != cluster.NodeName(2) {
			t.Errorf("manager on %s, not on a peered node", f[0])
		}
	}
}

// drain: `kubectl drain` of node3, a next hop hosting backends, under a
// steady loop of new connections: none fails; then uncordon.
func drain(t *testing.T, c *cluster.Cluster) {
	ns := api.Namespace(t)
	d := c.Backend(ns, "web", 3)
	svc := api.Service(t, ns, "web", false)
	c.WaitDeployment(d, 2*time.Minute)
	if len(c.ReadyPods(d)[cluster.NodeName(3)]) == 0 {
		t.Fatalf("no backend on node3: %v", c.ReadyPods(d))
	}
	ip := api.IPs(t, svc, 1)[0]
	c.Rtr.WaitRoute(t, ip+"/32", 60*time.Second, cluster.Via(false, 1, 2, 3))
	waitAnswers(t, c, ip)
	t.Cleanup(func() { _, _ = c.Kubectl("uncordon", cluster.NodeName(3)) })
	steadyDuring(t, c, ip, "drain node3", 3*time.Second, func() {
		if out, err := c.Kubectl("drain", cluster.NodeName(3), "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=3m"); err != nil {
			t.Fatalf("drain: %v: %s", err, out)
		}
		c.WaitDeployment(d, 2*time.Minute)
	})
	if out, err := c.Kubectl("uncordon", cluster.NodeName(3)); err != nil {
		t.Fatalf("uncordon: %v: %s", err, out)
	}
}

// uninstall: `helm uninstall`, then eiplb-agent --cleanup as a Job on every
// node (the image, the manifest's securityContext): no eiplb table is left
// in any node's nftables.
func uninstall(t *testing.T, c *cluster.Cluster) {
	if out, err := c.Helm("uninstall", "eiplb", "-n", "eiplb-system", "--wait", "--timeout=3m"); err != nil {
		t.Fatalf("helm uninstall: %v: %s", err, out)
	}
	var jobs []string
	for _, kn := range c.KNodes {
		name := "eiplb-cleanup-" + kn.Name
		job := fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata: {name: %s, namespace: eiplb-system}
spec:
  backoffLimit: 2
  template:
    spec:
      nodeName: %s
      hostNetwork: true
      restartPolicy: Never
      tolerations: [{operator: Exists}]
      containers:
      - name: cleanup
        image: %s
        imagePullPolicy: IfNotPresent
        args: ["--cleanup"]
        securityContext:
          runAsUser: 0
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: ["ALL"], add: ["NET_ADMIN"]}
`, name, kn.Name, c.Images.Ref("eiplb-agent", c.Images.Tag))
		f := filepath.Join(c.Net.Dir(), name+".yaml")
		if err := os.WriteFile(f, []byte(job), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := c.Kubectl("apply", "-f", f); err != nil {
			t.Fatalf("cleanup job: %v: %s", err, out)
		}
		jobs = append(jobs, "job/"+name)
	}
	if out, err := c.Kubectl(append([]string{"-n", "eiplb-system", "wait", "--for=condition=complete", "--timeout=2m"}, jobs...)...); err != nil {
		pods, _ := c.Kubectl("-n", "eiplb-system", "get", "pods", "-o", "wide")
		t.Fatalf("cleanup jobs: %v: %s\n%s", err, out, pods)
	}
	for i, kn := range c.KNodes {
		out := c.Exec(c.Nodes[i], "nft", "list", "tables")
		if strings.Contains(out, "eiplb") {
			t.Errorf("%s still has eiplb's nftables: %s", kn.Name, out)
		}
	}
}

// checkSecurityContext checks what the kernel says about the running eiplb
// containers (found by their cgroup under the lab's cgroup roots): the
// manager runs as 65532 with no capability, the agent as root with
// CAP_NET_ADMIN only (bit 12), both with no_new_privs, as the chart asks.
func checkSecurityContext(t *testing.T, c *cluster.Cluster) {
	t.Helper()
	want := map[string]struct{ uid, capEff string }{
		"/eiplb-manager": {"65532", "0000000000000000"},
		"/eiplb-agent":   {"0", "0000000000001000"},
	}
	found := map[string]int{}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		cmd, err := os.ReadFile(p + "/cmdline")
		if err != nil {
			continue
		}
		exe, _, _ := strings.Cut(string(cmd), "\x00")
		w, ok := want[exe]
		if !ok {
			continue
		}
		cg, _ := os.ReadFile(p + "/cgroup")
		lab := false
		for _, kn := range c.KNodes {
			lab = lab || strings.Contains(string(cg), "/"+kn.Cgroup+"/")
		}
		if !lab {
			continue
		}
		st, err := os.ReadFile(p + "/status")
		if err != nil {
			continue
		}
		fields := map[string]string{}
		for _, line := range strings.Split(string(st), "\n") {
			k, v, _ := strings.Cut(line, ":")
			fields[k] = strings.TrimSpace(v)
		}
		uids := strings.Fields(fields["Uid"])
		if len(uids) == 0 || uids[0] != w.uid || fields["CapEff"] != w.capEff || fields["NoNewPrivs"] != "1" {
			t.Errorf("%s (%s): Uid %s CapEff %s NoNewPrivs %s, want uid %s CapEff %s NoNewPrivs 1",
				exe, p, fields["Uid"], fields["CapEff"], fields["NoNewPrivs"], w.uid, w.capEff)
		}
		found[exe]++
	}
	if found["/eiplb-manager"] != 2 || found["/eiplb-agent"] != len(c.KNodes) {
		t.Fatalf("running eiplb containers: %v, want 2 managers and %d agents", found, len(c.KNodes))
	}
	t.Logf("security context as the chart asks: 2 managers uid 65532 CapEff 0, %d agents uid 0 CapEff NET_ADMIN only, no_new_privs", len(c.KNodes))
}
