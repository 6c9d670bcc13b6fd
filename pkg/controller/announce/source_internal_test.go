package announce

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
)

func TestSource(t *testing.T) {
	a := netip.MustParseAddr
	addrs := map[string][]netip.Addr{
		"":     {a("127.0.0.1"), a("192.168.100.11"), a("10.10.0.11"), a("fd00:100::11"), a("::1")},
		"lo":   {a("127.0.0.1"), a("10.10.0.11"), a("10.10.0.12"), a("::1"), a("fd00:10::11")},
		"eth0": {a("fe80::1"), a("192.168.100.11")},
	}
	r := &PeerReconciler{opts: Options{NodeName: "n1", LocalAddrs: func(iface string) ([]netip.Addr, error) {
		if got, ok := addrs[iface]; ok {
			return got, nil
		}
		return nil, errors.New("no such network interface")
	}}}
	for _, tc := range []struct {
		name          string
		spec          v1alpha1.BGPPeerSpec
		want, wantErr string
	}{
		{name: "none", spec: v1alpha1.BGPPeerSpec{PeerAddress: "192.168.100.1"}},
		{name: "address of the node", spec: v1alpha1.BGPPeerSpec{PeerAddress: "10.0.0.1", SourceAddress: "10.10.0.11"}, want: "10.10.0.11"},
		{name: "address not on the node", spec: v1alpha1.BGPPeerSpec{PeerAddress: "10.0.0.1", SourceAddress: "10.10.0.13"},
			wantErr: "sourceAddress 10.10.0.13 is not an address of node n1"},
		{name: "address of another family", spec: v1alpha1.BGPPeerSpec{PeerAddress: "10.0.0.1", SourceAddress: "fd00:100::11"},
			wantErr: "sourceAddress fd00:100::11 is not of the family of peerAddress 10.0.0.1"},
		{name: "interface: first global IPv4", spec: v1alpha1.BGPPeerSpec{PeerAddress: "10.0.0.1", SourceInterface: "lo"}, want: "10.10.0.11"},
		{name: "interface: first global IPv6", spec: v1alpha1.BGPPeerSpec{PeerAddress: "fd00::1", SourceInterface: "lo"}, want: "fd00:10::11"},
		{name: "interface without a global IPv6", spec: v1alpha1.BGPPeerSpec{PeerAddress: "fd00::1", SourceInterface: "eth0"},
			wantErr: "sourceInterface eth0 on node n1 has no global IPv6 address"},
		{name: "no such interface", spec: v1alpha1.BGPPeerSpec{PeerAddress: "10.0.0.1", SourceInterface: "eth9"},
			wantErr: "sourceInterface eth9 on node n1: no such network interface"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.source(tc.spec, a(tc.spec.PeerAddress))
			switch {
			case tc.wantErr != "":
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("got %v, %v; want error %q", got, err, tc.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case tc.want == "" && got.IsValid(), tc.want != "" && got != a(tc.want):
				t.Fatalf("got %v, want %q", got, tc.want)
			}
		})
	}
}

// TestHostAddrs: the lookup of this namespace's interfaces finds the
// loopback's 127.0.0.1, by interface and among all.
func TestHostAddrs(t *testing.T) {
	lo, all := netip.MustParseAddr("127.0.0.1"), map[string]bool{}
	for _, iface := range []string{"lo", ""} {
		got, err := hostAddrs(iface)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range got {
			all[iface+" "+g.String()] = true
		}
		if !all[iface+" "+lo.String()] {
			t.Errorf("hostAddrs(%q) = %v, want 127.0.0.1 among them", iface, got)
		}
	}
	if _, err := hostAddrs("no-such-if0"); err == nil {
		t.Error("hostAddrs of a missing interface: no error")
	}
}
