package announce

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
)

// status.summary of BGPPeer and EIPNode: one line over every replica's
// entry, the first column of kubectl get (a printer column over a list
// shows only its first item, which hid a down session on a second replica).
//
// Every replica computes it from the object in its cache at each status
// tick and writes it when it differs, under one field manager shared by all
// replicas, so the last write wins and all replicas converge on the value
// of the latest object; a replica that stops writes it without its own
// entry.

// summaryManager is the field manager of status.summary, shared by the
// replicas (each replica's entries have their own).
const summaryManager = "eiplb-manager-summary"

// peerSummary: "2/2 Established", with ", BFD 1/2 Up" when any session
// runs BFD; "no sessions" without entries. exclude drops a replica's entry.
func peerSummary(sessions []v1alpha1.BGPSession, exclude string) string {
	var n, up, bfd, bfdUp int
	for _, s := range sessions {
		if s.Manager == exclude {
			continue
		}
		n++
		if s.State == "Established" {
			up++
		}
		if s.BFDState != "" {
			bfd++
			if s.BFDState == "Up" {
				bfdUp++
			}
		}
	}
	if n == 0 {
		return "no sessions"
	}
	out := fmt.Sprintf("%d/%d Established", up, n)
	if bfd > 0 {
		out += fmt.Sprintf(", BFD %d/%d Up", bfdUp, bfd)
	}
	return out
}

// nodeSummary: "2/2 Up, all programmed" or "1/2 Up, 3 unprogrammed" (the
// highest count of any replica); "no managers" without entries.
func nodeSummary(agents []v1alpha1.EIPNodeAgent, exclude string) string {
	var n, up int
	var unprogrammed int32
	for _, a := range agents {
		if a.Manager == exclude {
			continue
		}
		n++
		if a.Phase == v1alpha1.AgentPhaseUp {
			up++
		}
		unprogrammed = max(unprogrammed, a.Unprogrammed)
	}
	switch {
	case n == 0:
		return "no managers"
	case unprogrammed > 0:
		return fmt.Sprintf("%d/%d Up, %d unprogrammed", up, n, unprogrammed)
	case up > 0:
		return fmt.Sprintf("%d/%d Up, all programmed", up, n)
	}
	return fmt.Sprintf("%d/%d Up", up, n)
}

// applySummary writes status.summary of a BGPPeer or EIPNode.
func applySummary(ctx context.Context, c client.Client, kind, name, summary string) error {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(),
		"kind":       kind,
		"metadata":   map[string]any{"name": name},
		"status":     map[string]any{"summary": summary},
	}}
	//nolint:staticcheck // as applyStatusList.
	return c.Status().Patch(ctx, u, client.Apply, client.FieldOwner(summaryManager), client.ForceOwnership)
}

// summarizePeers corrects the summary of each peer whose cached status
// disagrees with its sessions (exclude: see peerSummary).
func summarizePeers(ctx context.Context, c client.Client, peers []v1alpha1.BGPPeer, exclude string) {
	for i := range peers {
		p := &peers[i]
		if want := peerSummary(p.Status.Sessions, exclude); want != p.Status.Summary {
			if err := applySummary(ctx, c, "BGPPeer", p.Name, want); err != nil && ctx.Err() == nil {
				log.FromContext(ctx).Error(err, "Writing the BGPPeer's status summary", "peer", p.Name)
			}
		}
	}
}

// summarizeNodes does the same for EIPNodes.
func summarizeNodes(ctx context.Context, c client.Client, exclude string) {
	var list v1alpha1.EIPNodeList
	if err := c.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return
	}
	for i := range list.Items {
		n := &list.Items[i]
		if want := nodeSummary(n.Status.Agents, exclude); want != n.Status.Summary {
			if err := applySummary(ctx, c, "EIPNode", n.Name, want); err != nil && ctx.Err() == nil {
				log.FromContext(ctx).Error(err, "Writing the EIPNode's status summary", "node", n.Name)
			}
		}
	}
}
