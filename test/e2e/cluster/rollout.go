//go:build privileged

package cluster

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/eiplb/eiplb/test/netlab"
)

// PreStop is how long a terminating pod keeps serving before its container
// exits in RollOut: the preStop delay a Deployment behind any load balancer
// needs, so that every node has stopped sending it new connections first.
const PreStop = time.Second

// Rollout is what a RollOut saw.
type Rollout struct {
	OK     int       // requests from the client beyond the router answered
	Failed []Failure // and failed
	// InOK and InFailed: the same from inside the cluster (the host of the
	// last node, whose connections take the internal path of a Local
	// Service).
	InOK     int
	InFailed []Failure
	Took     time.Duration
	Steps    []string // per pod: "pod10→pod11 1.2s"
	// HopChanges are the moments the router's next hops or their weights
	// for the EIP changed (read from its FIB every 2 ms).
	HopChanges []time.Time
}

// InFlight reports whether a request that started at at was in flight when
// the router's next hops changed: the kernel's multipath hash is not
// resilient, so any change of next hops or weights (a Local node's weight
// follows its ready endpoints, so a rolling update changes it) also moves
// flows between the nodes that stay, and a connection moved to a node that
// never saw it is reset. That is the router's doing at every change; only
// such requests are forgiven (a request takes a few ms; 100 ms before the
// change to 50 ms after it).
func (r Rollout) InFlight(at time.Time) bool {
	for _, c := range r.HopChanges {
		if at.After(c.Add(-100*time.Millisecond)) && at.Before(c.Add(50*time.Millisecond)) {
			return true
		}
	}
	return false
}

// Unexplained are the failures from outside not InFlight, and every
// failure from inside (its connections never cross the router).
func (r Rollout) Unexplained() []Failure {
	out := slices.Clone(r.InFailed)
	for _, f := range r.Failed {
		if !r.InFlight(f.At) {
			out = append(out, f)
		}
	}
	return out
}

func (r Rollout) String() string {
	return fmt.Sprintf("rolled %d pods in %v (%s); from outside %d requests, %s; from inside %d requests, %s; next hops changed %d times, %d failures not in flight at a change",
		len(r.Steps), r.Took.Round(time.Millisecond), strings.Join(r.Steps, ", "), r.OK+len(r.Failed), Summary(r.Failed),
		r.InOK+len(r.InFailed), Summary(r.InFailed), len(r.HopChanges), len(r.Unexplained()))
}

// RollOut replaces the Service's pods old (pod 0 of nodes 1, 2, 3, in that
// order) one at a time, as a Deployment's rolling update with maxSurge 1
// does, under steady loops of new connections to ip from the client and
// from the host of the last node: the
// new pod (the node's pod 1, so a new address) is created and Ready; the
// old one is deleted (terminating, still serving) and, after PreStop, its
// server shuts down gracefully and the pod is force-deleted as the kubelet
// does. The old pods' servers are started again before it returns.
func (l *Lab) RollOut(t netlab.T, svc *corev1.Service, ip string, old []*corev1.Pod) Rollout {
	t.Helper()
	defer func() {
		for i := 1; i <= len(old); i++ {
			l.StartServing(i, 0)
		}
	}()
	fib := OpenFIB(t, l.Rtr)
	watchDone, watched := make(chan struct{}), make(chan []time.Time)
	go func() {
		var changes []time.Time
		last, _ := fib.Weighted(ip)
		for {
			select {
			case <-watchDone:
				watched <- changes
				return
			case <-time.After(2 * time.Millisecond):
			}
			if now, err := fib.Weighted(ip); err == nil && !slices.Equal(now, last) {
				changes = append(changes, time.Now())
				last = now
			}
		}
	}()
	loop := l.Steady(ip, 80)
	inside := l.SteadyFrom(l.Nodes[len(l.Nodes)-1], ip, 80)
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	var r Rollout
	for k := range old {
		i := k + 1
		s := time.Now()
		l.EndpointPods(t, svc, [2]int{i, 1}) // returns once it is a ready endpoint
		l.API.TerminatePod(t, svc, old[k])   // returns once it is terminating in the slices
		time.Sleep(PreStop)
		l.StopServing(i, 0)
		l.API.ForcePod(t, svc, old[k])
		r.Steps = append(r.Steps, fmt.Sprintf("%s→%s %v", PodName(i, 0), PodName(i, 1), time.Since(s).Round(time.Millisecond)))
	}
	r.Took = time.Since(start)
	time.Sleep(300 * time.Millisecond)
	r.OK, r.Failed = loop.Finish()
	r.InOK, r.InFailed = inside.Finish()
	close(watchDone)
	r.HopChanges = <-watched
	return r
}

// Matches returns the first line of an nft or iptables-save listing that
// matches traffic to ip ("" if none): a set or map element, a rule. A DNAT
// target is not one: the lab's EIPs come from the sample pool
// 192.0.2.0/24, in which the host's own address may lie, and the API
// server advertises that address as the endpoint of default/kubernetes.
func Matches(listing, ip string) string {
	re := regexp.MustCompile(`(^|[^0-9.])` + regexp.QuoteMeta(ip) + `([^0-9]|$)`)
	for _, line := range strings.Split(listing, "\n") {
		if re.MatchString(line) && !strings.Contains(line, "dnat to "+ip+":") && !strings.Contains(line, "--to-destination "+ip+":") {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// WaitProgrammed waits until every node's table of the data plane in
// charge of EIP traffic holds ip: eiplb's (inet eiplb) or, with
// kubeProxy, kube-proxy's (ip kube-proxy).
func (l *Lab) WaitProgrammed(t netlab.T, ip string, kubeProxy bool) {
	t.Helper()
	family, table := "inet", "eiplb"
	if kubeProxy {
		family, table = "ip", "kube-proxy"
	}
	for i, n := range l.Nodes {
		deadline := time.Now().Add(15 * time.Second)
		for {
			out, err := n.Exec(context.Background(), "nft", "list", "table", family, table)
			if err == nil && Matches(out, ip) != "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node%d's table %s %s never held %s: %v", i+1, family, table, ip, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
