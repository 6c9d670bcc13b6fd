package announce

import (
	"context"
	"net/netip"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/eiplb/eiplb/pkg/agentlink"
)

const agentNodesKey = "agent-nodes"

// setupAgentNodes keeps the tracker's list of agents (one per Node, at its
// InternalIP) in step with the Nodes.
func setupAgentNodes(mgr ctrl.Manager, tracker *agentlink.Tracker) error {
	one := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: agentNodesKey}}}
	})
	addrChanged := predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		o, n := e.ObjectOld.(*corev1.Node), e.ObjectNew.(*corev1.Node)
		return agentAddr(o) != agentAddr(n)
	}}
	return ctrl.NewControllerManagedBy(mgr).
		Named("announce-agent-nodes").
		Watches(&corev1.Node{}, one, builder.WithPredicates(addrChanged)).
		WithOptions(controller.Options{NeedLeaderElection: ptr.To(false)}).
		Complete(reconcile.Func(func(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
			var list corev1.NodeList
			if err := mgr.GetClient().List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
				return reconcile.Result{}, err
			}
			addrs := make(map[string]netip.Addr, len(list.Items))
			for i := range list.Items {
				addrs[list.Items[i].Name] = agentAddr(&list.Items[i])
			}
			tracker.SetNodes(addrs)
			return reconcile.Result{}, nil
		}))
}

// agentAddr is the address of a node's agent: its first InternalIP.
func agentAddr(n *corev1.Node) netip.Addr {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				return ip
			}
		}
	}
	return netip.Addr{}
}

// withdrawnFrom reports whether no Service this replica announces uses
// node as a next hop (a drain is acknowledged then).
func (r *ServiceReconciler) withdrawnFrom(node string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, hops := range r.announced {
		if slices.Contains(strings.Split(hops, ","), node) {
			return false
		}
	}
	return true
}

// agentCollector exports the tracker's view at scrape time.
type agentCollector struct{ t *agentlink.Tracker }

var (
	agentPhaseDesc = prometheus.NewDesc("eiplb_agent_link_phase",
		"State of each node's agent as this manager replica sees it (1 for the current phase).", []string{"node", "phase"}, nil)
	agentProgrammedDesc = prometheus.NewDesc("eiplb_agent_programmed_services",
		"Services a node's agent reports programmed.", []string{"node"}, nil)
)

func (c agentCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- agentPhaseDesc
	ch <- agentProgrammedDesc
}

func (c agentCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.t.Status() {
		for _, p := range agentlink.Phases {
			v := 0.0
			if p == s.Phase {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(agentPhaseDesc, prometheus.GaugeValue, v, s.Node, string(p))
		}
		ch <- prometheus.MustNewConstMetric(agentProgrammedDesc, prometheus.GaugeValue, float64(s.Programmed), s.Node)
	}
}
