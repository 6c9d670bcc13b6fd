//go:build privileged

package dataplane_test

import (
	"strings"
	"testing"

	"github.com/eiplb/eiplb/pkg/dataplane"
)

// TestClientIPAffinity: with sessionAffinity ClientIP every new connection
// of a client reaches the same endpoint (IPv4 and IPv6), different clients
// may reach different ones, and the table lists (nft can print jhash).
func TestClientIPAffinity(t *testing.T) {
	lb := setup(t)
	d := desired()
	w := writer(t, lb.fd)
	sticky := func(s dataplane.Service) dataplane.Service {
		out := s
		out.Forwards = nil
		for _, fw := range s.Forwards {
			fw.Sticky = true
			out.Forwards = append(out.Forwards, fw)
		}
		return out
	}
	// pod2 gets an IPv6 address too: a second IPv6 endpoint.
	p2 := lb.pods["pod2"]
	must(t, lb.node1, "ip", "addr", "add", "fd00:12::1/64", "dev", lb.node1.DevTo(p2), "nodad")
	must(t, p2, "ip", "addr", "add", "fd00:12::2/64", "dev", p2.DevTo(lb.node1), "nodad")
	must(t, p2, "ip", "-6", "route", "add", "default", "via", "fd00:12::1")
	d.Set(sticky(clusterSvc))
	v6 := sticky(v6Svc)
	v6.Forwards[0].Endpoints = append(v6.Forwards[0].Endpoints, ep("[fd00:12::2]:8080", true))
	d.Set(v6)
	if err := w.Sync(d); err != nil {
		t.Fatal(err)
	}
	rs := ruleset(t, lb.node1)
	if !strings.Contains(rs, "jhash ip saddr mod 3 seed 0x65697062") {
		t.Errorf("ruleset lacks the sticky spread:\n%s", rs)
	}
	for _, from := range []string{"client", "pod1", "pod2"} {
		ns := lb.pods[from]
		if from == "client" {
			ns = lb.client
		}
		got := spread(t, ns, eipCluster+":80", 30, nil)
		if len(got) != 1 {
			t.Errorf("%s: answers %v, want one pod for every connection", from, got)
		}
		t.Logf("%s: %v", from, got)
	}
	for _, from := range []string{"client", "pod1"} {
		ns := lb.pods[from]
		if from == "client" {
			ns = lb.client
		}
		if got := spread(t, ns, "["+eip6+"]:80", 20, nil); len(got) != 1 {
			t.Errorf("IPv6 %s: answers %v, want one pod for every connection", from, got)
		}
	}
	// Without affinity the same client is spread again.
	tc := d.Set(clusterSvc)
	if err := w.Apply(d, tc); err != nil {
		t.Fatal(err)
	}
	if got := spread(t, lb.client, eipCluster+":80", 40, nil); len(got) < 2 {
		t.Errorf("affinity removed: answers %v, want a spread", got)
	}
	w2 := writer(t, lb.fd)
	if err := w2.Sync(d); err != nil || w2.Changes() != 0 {
		t.Errorf("sync after load: %v, %d changes", err, w2.Changes())
	}
}
