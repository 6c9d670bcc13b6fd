package agent

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// PodCIDRs are the addresses whose connections to an EIP are in-cluster
// traffic (they reach every endpoint of a Local Service, as with
// kube-proxy): the comma-separated --cluster-cidr when given, otherwise
// the Node's spec.podCIDRs (empty when the CNI assigns addresses without
// them; then only the node's own connections count as in-cluster).
func PodCIDRs(ctx context.Context, cfg *rest.Config, node, flag string) ([]netip.Prefix, error) {
	if strings.TrimSpace(flag) != "" {
		return parseCIDRs(strings.Split(flag, ","))
	}
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return nil, err
	}
	var n corev1.Node
	if err := c.Get(ctx, client.ObjectKey{Name: node}, &n); err != nil {
		if apierrors.IsNotFound(err) {
			// No Node (yet): no pod CIDRs, as a Node without them.
			return nil, nil
		}
		return nil, fmt.Errorf("reading Node %s for its podCIDRs: %w", node, err)
	}
	return parseCIDRs(n.Spec.PodCIDRs)
}

func parseCIDRs(ss []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range ss {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("pod CIDR %q: %w", s, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
