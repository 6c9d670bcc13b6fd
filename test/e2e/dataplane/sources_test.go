//go:build privileged

package dataplane_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/eiplb/eiplb/pkg/dataplane"
	"github.com/eiplb/eiplb/test/netlab"
)

// restrict returns s with every forward restricted to srcs (none: no one).
func restrict(s dataplane.Service, srcs ...string) dataplane.Service {
	out := s
	out.Forwards = nil
	for _, fw := range s.Forwards {
		fw.Restricted, fw.Sources = true, nil
		for _, p := range srcs {
			if pp := netip.MustParsePrefix(p); pp.Addr().Is4() == fw.EIP.Is4() {
				fw.Sources = append(fw.Sources, pp)
			}
		}
		out.Forwards = append(out.Forwards, fw)
	}
	return out
}

// dropped: a connection from ns to addr gets no answer at all (the SYN is
// dropped: no reset, no ICMP, no reply), as kube-proxy's firewall drops.
func dropped(t *testing.T, ns *netlab.NS, addr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	c, err := ns.Dial(ctx, "tcp", addr)
	if err == nil {
		c.Close()
		t.Errorf("%s to %s: connected, want dropped", ns.Name, addr)
		return
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("%s to %s: %v, want no answer (timeout)", ns.Name, addr, err)
	}
}

func answered(t *testing.T, ns *netlab.NS, addr string) {
	t.Helper()
	if pod, _, err := ask(ns, addr); err != nil || pod == "" {
		t.Errorf("%s to %s: %q %v, want an answer", ns.Name, addr, pod, err)
	}
}

// TestSourceRanges sends packets through forwards restricted to source
// ranges (loadBalancerSourceRanges) from the client beyond the router,
// from a pod on the node and from the node itself, over IPv4 and IPv6, and
// changes, empties and removes the ranges; a restarted writer finds what it
// wrote.
func TestSourceRanges(t *testing.T) {
	lb := setup(t)
	d := desired()
	w := writer(t, lb.fd)
	if err := w.Sync(d); err != nil {
		t.Fatal(err)
	}
	apply := func(svcs ...dataplane.Service) {
		t.Helper()
		var tc dataplane.Touched
		for _, s := range svcs {
			tc.Merge(d.Set(s))
		}
		if err := w.Apply(d, tc); err != nil {
			t.Fatal(err)
		}
	}
	client, pod, node := lb.client, lb.pods["pod2"], lb.node1
	v4, v6 := eipCluster+":80", "["+eip6+"]:80"

	// The client only (and a range that holds nobody here), both families.
	apply(restrict(clusterSvc, "192.168.1.2/32", "198.51.100.0/24"), restrict(v6Svc, "fd00:1::/64"))
	answered(t, client, v4)
	answered(t, client, v6)
	dropped(t, pod, v4)
	dropped(t, node, v4)
	// Other Services stay open.
	answered(t, pod, eipLocal+":80")

	// Pods of node1 and the node itself, not the client: the ranges are
	// replaced in one transaction (the kernel refuses overlapping ranges,
	// and 10.1.0.0/16 holds the old 10.1.2.0/24).
	apply(restrict(clusterSvc, "10.1.2.0/24", "192.168.1.1/32"), restrict(v6Svc, "2001:db8:ff::/48"))
	dropped(t, client, v4)
	dropped(t, client, v6)
	answered(t, pod, v4)
	answered(t, node, v4)
	apply(restrict(clusterSvc, "10.1.0.0/16", "192.168.1.1/32"))
	answered(t, pod, v4)
	dropped(t, client, v4)

	// A restarted agent's writer reads the ranges back: nothing to change.
	w2 := writer(t, lb.fd)
	before := w2.Changes()
	if err := w2.Sync(d); err != nil {
		t.Fatal(err)
	}
	if n := w2.Changes() - before; n != 0 {
		t.Errorf("sync after load changed %d things, want none:\n%s", n, ruleset(t, node))
	}

	// Restricted to no one (only invalid ranges): nobody.
	apply(restrict(clusterSvc))
	dropped(t, pod, v4)
	dropped(t, client, v4)

	// Ranges removed: open again.
	apply(clusterSvc, v6Svc)
	answered(t, client, v4)
	answered(t, client, v6)
	answered(t, pod, v4)
	if len(d.Firewall) != 0 {
		t.Fatalf("table still restricts %v", d.Firewall)
	}
}
