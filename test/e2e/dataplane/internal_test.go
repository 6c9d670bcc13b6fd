//go:build privileged

package dataplane_test

import (
	"errors"
	"net/netip"
	"syscall"
	"testing"

	"github.com/eiplb/eiplb/pkg/dataplane"
	"github.com/eiplb/eiplb/pkg/dataplane/nft"
)

// podWriter is a loaded writer for node1 whose pods are 10.1.0.0/16 and
// fd00:11::/64.
func podWriter(t *testing.T, fd int) *nft.Writer {
	return writerWith(t, nft.Options{Mode: dataplane.ModeNftables, NetNS: fd,
		PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("fd00:11::/64")}})
}

// TestInClusterClientsOfLocal: a Local Service whose only endpoint runs on
// node2 is refused on node1 to clients from outside (node1 has no local
// endpoint) but served to node1's pods and to node1 itself, which reach
// the endpoint on node2 with their own address (no masquerade), as with
// kube-proxy; once node1 has a local endpoint, outside clients get only
// that one while in-cluster clients still reach both.
func TestInClusterClientsOfLocal(t *testing.T) {
	lb := setup(t)
	w := podWriter(t, lb.fd)
	key := dataplane.Key{EIP: netip.MustParseAddr(eipLocal), Proto: dataplane.TCP, Port: 80}
	in := key
	in.Internal = true
	remote := ep("10.2.1.2:8080", false)
	svc := service("local", []string{eipLocal},
		dataplane.Forward{Key: key},
		dataplane.Forward{Key: in, Endpoints: []dataplane.Endpoint{remote}})
	d := dataplane.NewTable(dataplane.ModeNftables)
	d.Set(svc)
	// The same pod is a remote endpoint of a Cluster Service too, so its
	// address is in masq4: connections to that Service are masqueraded (as
	// kube-proxy does for Cluster), the internal ones to the Local EIP not.
	d.Set(service("cluster", []string{eipCluster}, fwd(eipCluster, dataplane.TCP, 80, remote)))
	if err := w.Sync(d); err != nil {
		t.Fatal(err)
	}
	if pod, saw, err := ask(lb.pods["pod1"], eipCluster+":80"); err != nil || pod != "pod3" || saw != "192.168.12.1" {
		t.Errorf("pod1 to a Cluster EIP with a remote endpoint: %s saw %s (%v), want pod3 saw node1's 192.168.12.1 (masqueraded)", pod, saw, err)
	}
	addr := eipLocal + ":80"
	if _, _, err := ask(lb.client, addr); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("outside client on a node without a local endpoint: %v, want refused", err)
	}
	for _, c := range []struct {
		from, saw string
	}{{"pod1", "10.1.1.2"}, {"node1", "192.168.1.1"}} { // the node: its address toward the EIP
		ns := lb.pods[c.from]
		if c.from == "node1" {
			ns = lb.node1
		}
		pod, saw, err := ask(ns, addr)
		if err != nil || pod != "pod3" || saw != c.saw {
			t.Errorf("%s to a Local EIP without local endpoint: %s saw %s (%v), want pod3 saw %s", c.from, pod, saw, err, c.saw)
		}
	}

	// node1 gets a local endpoint (pod2).
	local := ep("10.1.2.2:8080", true)
	tc := d.Set(service("local", []string{eipLocal},
		dataplane.Forward{Key: key, Endpoints: []dataplane.Endpoint{local}},
		dataplane.Forward{Key: in, Endpoints: []dataplane.Endpoint{local, remote}}))
	if err := w.Apply(d, tc); err != nil {
		t.Fatal(err)
	}
	got := spread(t, lb.client, addr, 20, map[string]string{"pod2": "192.168.1.2"})
	if got["pod2"] != 20 {
		t.Errorf("outside client: answers %v, want pod2 only", got)
	}
	got = spread(t, lb.pods["pod1"], addr, 40, map[string]string{"pod2": "10.1.1.2", "pod3": "10.1.1.2"})
	if got["pod2"] == 0 || got["pod3"] == 0 {
		t.Errorf("in-cluster client: answers %v, want pod2 and pod3", got)
	}
	// A restarted writer finds the internal maps and chains as written.
	w2 := podWriter(t, lb.fd)
	if err := w2.Sync(d); err != nil || w2.Changes() != 0 {
		t.Errorf("sync after load: %v, %d changes, want none:\n%s", err, w2.Changes(), ruleset(t, lb.node1))
	}
}
