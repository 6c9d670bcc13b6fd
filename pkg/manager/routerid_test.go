package manager

import (
	"fmt"
	"net/netip"
	"testing"
)

func TestRouterID(t *testing.T) {
	node1 := DerivedRouterID("node1")
	for _, tc := range []struct {
		ids, node string
		want      netip.Addr
		derived   bool
		err       bool
	}{
		{ids: "192.168.100.11", node: "node1", want: netip.MustParseAddr("192.168.100.11")},
		// The downward API's status.hostIPs: the IPv4 address wins
		// whichever family is the node's primary.
		{ids: "fd00:100::11,192.168.100.11", node: "node1", want: netip.MustParseAddr("192.168.100.11")},
		{ids: "192.168.100.11,fd00:100::11", node: "node1", want: netip.MustParseAddr("192.168.100.11")},
		{ids: " 10.0.0.1 , 10.0.0.2 ", node: "node1", want: netip.MustParseAddr("10.0.0.1")},
		{ids: "::ffff:10.0.0.1", node: "node1", want: netip.MustParseAddr("10.0.0.1")},
		// IPv6-only nodes (status.hostIP is IPv6) and no router ID at all.
		{ids: "fd00:100::11", node: "node1", want: node1, derived: true},
		{ids: "fd00:100::11,2001:db8::11", node: "node1", want: node1, derived: true},
		{ids: "", node: "node1", want: node1, derived: true},
		{ids: "fd00:100::11", node: "", err: true},
		{ids: "", node: "", err: true},
		{ids: "192.168.100.311", node: "node1", err: true},
		{ids: "fd00:100::11,node1", node: "node1", err: true},
		{ids: "0.0.0.0", node: "node1", err: true},
	} {
		t.Run(fmt.Sprintf("%q/%q", tc.ids, tc.node), func(t *testing.T) {
			got, derived, err := RouterID(tc.ids, tc.node)
			if (err != nil) != tc.err {
				t.Fatalf("error %v, want error %v", err, tc.err)
			}
			if got != tc.want || derived != tc.derived {
				t.Fatalf("got %v (derived %v), want %v (derived %v)", got, derived, tc.want, tc.derived)
			}
		})
	}
}

// TestDerivedRouterID pins the derivation: a change would give every
// IPv6-only replica a new BGP identifier on upgrade.
func TestDerivedRouterID(t *testing.T) {
	for name, want := range map[string]string{"node1": "16.78.40.116", "worker-0.example": "172.249.174.50"} {
		if got := DerivedRouterID(name).String(); got != want {
			t.Errorf("DerivedRouterID(%q) = %s, want %s", name, got, want)
		}
	}
	seen := map[netip.Addr]string{}
	for i := range 5000 {
		name := fmt.Sprintf("node-%d", i)
		id := DerivedRouterID(name)
		if b := id.As4(); !id.Is4() || b[0] < 1 || b[0] > 222 {
			t.Fatalf("DerivedRouterID(%q) = %v, want first octet 1..222", name, id)
		}
		if other, ok := seen[id]; ok {
			t.Fatalf("%s and %s share router ID %v", name, other, id)
		}
		seen[id] = name
	}
}
