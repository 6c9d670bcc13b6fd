package announce

import (
	"context"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/eiplb/eiplb/pkg/agentlink"
	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
)

// +kubebuilder:rbac:groups=eiplb.io,resources=eipnodes,verbs=get;list;watch;create
// +kubebuilder:rbac:groups=eiplb.io,resources=eipnodes/status,verbs=get;update;patch

// nodeStatusWriter publishes this replica's view of every node's agent in
// the node's EIPNode: the link phase, and which Services the agent has not
// programmed yet (for which the node is not a next hop). It is what lets
// kubectl-eiplb tell, without reaching the nodes, whether each node has
// programmed a Service.
//
// API writes are bounded: a phase change is written at the next tick; a
// change of counts only, when the entry was last written longer ago than
// countsEvery(nodes), which keeps a replica at about countsPerSecond entry
// writes a second however many nodes and Services churn.
type nodeStatusWriter struct {
	client   client.Client
	tracker  *agentlink.Tracker
	services *ServiceReconciler
	opts     Options
	interval time.Duration

	served        map[string][]netip.Addr
	servedVersion uint64
	agentsVersion uint64
	deferred      bool // an entry differs from the written one and waits for its turn
	last          map[string]writtenNode
	// noKindUntil: the EIPNode CRD is not installed (managers upgraded
	// before the CRDs); said once, tried again after it.
	noKindUntil time.Time
	noKindSaid  bool
}

type writtenNode struct {
	entry v1alpha1.EIPNodeAgent
	at    time.Time
}

// countsPerSecond is the budget of count-only entry writes per replica.
const countsPerSecond = 10

func (w *nodeStatusWriter) countsEvery(nodes int) time.Duration {
	return max(w.interval, time.Duration(nodes)*time.Second/countsPerSecond)
}

// Start runs until ctx ends, then removes this replica's entries.
func (w *nodeStatusWriter) Start(ctx context.Context) error {
	select {
	case <-w.tracker.Settled():
	case <-ctx.Done():
		return nil
	}
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		w.write(ctx, time.Now())
		select {
		case <-ctx.Done():
			cleanup, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			for node := range w.last {
				_ = w.apply(cleanup, node, nil)
			}
			summarizeNodes(cleanup, w.client, w.opts.NodeName)
			cancel()
			return nil
		case <-t.C:
		}
	}
}

// NeedLeaderElection: every replica reports its own view.
func (w *nodeStatusWriter) NeedLeaderElection() bool { return false }

// write computes every node's entry and writes those that are due.
func (w *nodeStatusWriter) write(ctx context.Context, now time.Time) {
	if now.Before(w.noKindUntil) {
		return
	}
	summarizeNodes(ctx, w.client, "")
	served, sv, servedChanged := w.services.servedSince(w.servedVersion)
	if servedChanged {
		w.served, w.servedVersion = served, sv
	}
	av := w.tracker.Version()
	if !servedChanged && av == w.agentsVersion && !w.deferred {
		return
	}
	w.agentsVersion = av
	w.deferred = false
	nodes := w.tracker.Status()
	every := w.countsEvery(len(nodes))
	seen := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		seen[n.Node] = true
		entry := v1alpha1.EIPNodeAgent{Manager: w.opts.NodeName, Phase: string(n.Phase), Boot: n.Boot, Programmed: int32(n.Programmed)}
		if !n.Since.IsZero() {
			entry.Since = ptr.To(metav1.NewTime(n.Since.Truncate(time.Second)))
		}
		prev, written := w.last[n.Node]
		if written && samePhase(prev.entry, entry) && now.Sub(prev.at) < every {
			// Only counts can differ, and this entry was written
			// recently: look again at a later tick (the comparison
			// itself walks every Service, about 1 ms per 10,000).
			w.deferred = true
			continue
		}
		if n.Phase == agentlink.PhaseUp || n.Phase == agentlink.PhaseAgentDown || n.Phase == agentlink.PhaseDraining {
			count, some := w.tracker.Unprogrammed(n.Node, w.served, v1alpha1.MaxUnprogrammedListed)
			entry.Unprogrammed, entry.UnprogrammedServices = int32(count), some
		}
		agentUnprogrammed.WithLabelValues(n.Node).Set(float64(entry.Unprogrammed))
		if written && sameNodeEntry(prev.entry, entry) {
			continue
		}
		entry.UpdatedAt = ptr.To(metav1.NewTime(now))
		if !written {
			if err := w.ensure(ctx, n.Node); err != nil {
				w.deferred = true
				if apimeta.IsNoMatchError(err) {
					if !w.noKindSaid {
						log.FromContext(ctx).Info("The EIPNode CRD is not installed: apply this version's CRDs (deploy/eiplb.yaml); until then what each node has programmed is not published", "error", err.Error())
						w.noKindSaid = true
					}
					w.noKindUntil = now.Add(time.Minute)
					return
				}
				log.FromContext(ctx).Error(err, "Creating the node's EIPNode", "node", n.Node)
				continue
			}
		}
		if err := w.apply(ctx, n.Node, &entry); err != nil {
			if apierrors.IsNotFound(err) {
				delete(w.last, n.Node) // recreated at the next tick
			} else {
				log.FromContext(ctx).Error(err, "Writing the node's EIPNode status", "node", n.Node)
			}
			w.deferred = true
			continue
		}
		w.last[n.Node] = writtenNode{entry: entry, at: now}
	}
	for node := range w.last {
		if !seen[node] {
			// No longer tracked (the Node is gone, or has no InternalIP):
			// drop this replica's entry; a deleted Node takes its EIPNode
			// with it through the owner reference.
			if err := w.apply(ctx, node, nil); err != nil && !apierrors.IsNotFound(err) {
				w.deferred = true
				continue
			}
			delete(w.last, node)
			agentUnprogrammed.DeleteLabelValues(node)
		}
	}
}

func samePhase(a, b v1alpha1.EIPNodeAgent) bool {
	return a.Phase == b.Phase && a.Boot == b.Boot && a.Since.Equal(b.Since)
}

func sameNodeEntry(a, b v1alpha1.EIPNodeAgent) bool {
	return samePhase(a, b) && a.Programmed == b.Programmed && a.Unprogrammed == b.Unprogrammed &&
		slices.Equal(a.UnprogrammedServices, b.UnprogrammedServices)
}

// ensure creates the node's EIPNode, owned by the Node, if it is missing.
func (w *nodeStatusWriter) ensure(ctx context.Context, node string) error {
	n := &corev1.Node{}
	if err := w.client.Get(ctx, client.ObjectKey{Name: node}, n); err != nil {
		return err
	}
	obj := &v1alpha1.EIPNode{ObjectMeta: metav1.ObjectMeta{
		Name:            node,
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: n.Name, UID: n.UID}},
	}}
	if err := w.client.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// apply writes this replica's entry in the node's EIPNode (nil removes it).
func (w *nodeStatusWriter) apply(ctx context.Context, node string, entry *v1alpha1.EIPNodeAgent) error {
	var entries []v1alpha1.EIPNodeAgent
	if entry != nil {
		entries = append(entries, *entry)
	}
	return applyStatusList(ctx, w.client, w.opts.NodeName, "EIPNode", node, "agents", entries)
}
