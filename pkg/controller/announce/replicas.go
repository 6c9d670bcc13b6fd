package announce

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
)

// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch,namespace=eiplb-system

// Each manager replica writes its own entries into BGPPeer and EIPNode
// status and removes them when it stops. A replica that is killed and never
// comes back under its name (its pod moved to another node) would leave
// them forever: a session shown Established, a node shown programmed. So
// each replica keeps a Lease of its own alive, and the leader removes the
// entries of replicas whose Lease has run out.
const (
	replicaLabel        = "eiplb.io/manager-replica"
	replicaLeaseSeconds = 30
	replicaRenew        = 10 * time.Second
	// An entry is removed only when its replica's Lease ran out this long
	// ago and the entry itself is at least this old.
	replicaGone = 30 * time.Second
)

// replicaLeaseName is the replica's Lease: its node name, hashed when too
// long for an object name.
func replicaLeaseName(node string) string {
	const prefix = "eiplb-replica-"
	if len(prefix)+len(node) <= 253 {
		return prefix + node
	}
	h := sha256.Sum256([]byte(node))
	return prefix + hex.EncodeToString(h[:16])
}

// replicaLease renews this replica's Lease until ctx ends.
type replicaLease struct {
	client client.Client
	reader client.Reader // uncached: a Lease informer would watch every namespace
	opts   Options
}

func (r *replicaLease) NeedLeaderElection() bool { return false }

func (r *replicaLease) Start(ctx context.Context) error {
	t := time.NewTicker(replicaRenew)
	defer t.Stop()
	for {
		if err := r.renew(ctx); err != nil && ctx.Err() == nil {
			log.FromContext(ctx).Error(err, "Renewing this manager replica's Lease")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (r *replicaLease) renew(ctx context.Context) error {
	now := metav1.NewMicroTime(time.Now())
	l := &coordinationv1.Lease{}
	key := client.ObjectKey{Namespace: r.opts.Namespace, Name: replicaLeaseName(r.opts.NodeName)}
	err := r.reader.Get(ctx, key, l)
	if apierrors.IsNotFound(err) {
		l = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, Labels: map[string]string{replicaLabel: "true"}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(r.opts.NodeName), LeaseDurationSeconds: ptr.To[int32](replicaLeaseSeconds),
				AcquireTime: &now, RenewTime: &now},
		}
		return r.client.Create(ctx, l)
	}
	if err != nil {
		return err
	}
	l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.RenewTime = ptr.To(r.opts.NodeName), ptr.To[int32](replicaLeaseSeconds), &now
	return r.client.Update(ctx, l)
}

// replicaPruner (the leader only) removes the status entries of replicas
// whose Lease ran out.
type replicaPruner struct {
	client   client.Client
	reader   client.Reader // uncached: Leases and EIPNodes are read rarely
	opts     Options
	interval time.Duration
}

func (p *replicaPruner) NeedLeaderElection() bool { return true }

func (p *replicaPruner) Start(ctx context.Context) error {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := p.prune(ctx, time.Now()); err != nil && ctx.Err() == nil {
				log.FromContext(ctx).Error(err, "Removing status entries of gone manager replicas")
			}
		}
	}
}

// alive lists the replicas whose Lease has not run out for longer than
// replicaGone.
func (p *replicaPruner) alive(ctx context.Context, now time.Time) (map[string]bool, error) {
	var leases coordinationv1.LeaseList
	if err := p.reader.List(ctx, &leases, client.InNamespace(p.opts.Namespace), client.MatchingLabels{replicaLabel: "true"}); err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, l := range leases.Items {
		s := l.Spec
		if s.HolderIdentity == nil || s.RenewTime == nil || s.LeaseDurationSeconds == nil {
			continue
		}
		end := s.RenewTime.Add(time.Duration(*s.LeaseDurationSeconds) * time.Second)
		if now.Sub(end) < replicaGone {
			out[*s.HolderIdentity] = true
		}
	}
	return out, nil
}

func (p *replicaPruner) prune(ctx context.Context, now time.Time) error {
	alive, err := p.alive(ctx, now)
	if err != nil {
		return err
	}
	// Our own entries are never stale, whatever our Lease says.
	alive[p.opts.NodeName] = true
	gone := func(manager string, updated *metav1.Time) bool {
		return !alive[manager] && (updated == nil || now.Sub(updated.Time) >= replicaGone)
	}
	var peers v1alpha1.BGPPeerList
	if err := p.reader.List(ctx, &peers); err != nil {
		return err
	}
	for _, peer := range peers.Items {
		for _, s := range peer.Status.Sessions {
			if gone(s.Manager, s.UpdatedAt) {
				if err := p.remove(ctx, "BGPPeer", peer.Name, "sessions", s.Manager); err != nil {
					return err
				}
			}
		}
	}
	var nodes v1alpha1.EIPNodeList
	if err := p.reader.List(ctx, &nodes); err != nil {
		if apimeta.IsNoMatchError(err) {
			return nil // CRDs older than the managers: nothing to prune there
		}
		return err
	}
	for _, n := range nodes.Items {
		for _, a := range n.Status.Agents {
			if gone(a.Manager, a.UpdatedAt) {
				if err := p.remove(ctx, "EIPNode", n.Name, "agents", a.Manager); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// remove drops the entries a gone replica owns in one object's status list,
// by applying an empty list as that replica's field manager: server-side
// apply then removes exactly what it owned, and nothing of the others.
func (p *replicaPruner) remove(ctx context.Context, kind, name, list, manager string) error {
	log.FromContext(ctx).Info("Removing the status entry of a manager replica whose Lease ran out", "kind", kind, "name", name, "replica", manager)
	err := applyStatusList[struct{}](ctx, p.client, manager, kind, name, list, nil)
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// applyStatusList server-side-applies, as manager replica manager's field
// manager, the entries it owns in the status list of one eiplb.io object
// (none removes them all). Each replica owns only its own entries, so
// replicas never overwrite each other.
func applyStatusList[T any](ctx context.Context, c client.Client, manager, kind, name, list string, entries []T) error {
	items := make([]any, 0, len(entries))
	for i := range entries {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&entries[i])
		if err != nil {
			return err
		}
		items = append(items, m)
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(),
		"kind":       kind,
		"metadata":   map[string]any{"name": name},
		"status":     map[string]any{list: items},
	}}
	//nolint:staticcheck // Patch with Apply is the way to apply unstructured status in controller-runtime v0.25.
	return c.Status().Patch(ctx, u, client.Apply, client.FieldOwner("eiplb-manager-"+manager), client.ForceOwnership)
}
