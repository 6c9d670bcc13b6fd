//go:build privileged

package nft

import (
	"context"
	"net/netip"
	"os"
	"testing"

	"github.com/eiplb/eiplb/pkg/dataplane"
	"github.com/eiplb/eiplb/test/netlab"
)

// labNS creates a namespace and returns it with an open fd to it.
func labNS(t testing.TB) (*netlab.NS, int) {
	t.Helper()
	lab := netlab.New(t)
	ns := lab.Namespace("nft")
	f, err := os.Open(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return ns, int(f.Fd())
}

func nft(t testing.TB, ns *netlab.NS, args ...string) string {
	t.Helper()
	out, err := ns.Exec(context.Background(), append([]string{"nft"}, args...)...)
	if err != nil {
		t.Fatalf("nft %v: %v\n%s", args, err, out)
	}
	return out
}

func newWriter(t testing.TB, fd int, mode dataplane.Mode) *Writer {
	t.Helper()
	w, err := New(Options{Mode: mode, NetNS: fd})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func ep(s string, local bool) dataplane.Endpoint {
	ap := netip.MustParseAddrPort(s)
	return dataplane.Endpoint{Addr: ap.Addr(), Port: ap.Port(), Local: local}
}

func key(eip string, p dataplane.Proto, port uint16) dataplane.Key {
	return dataplane.Key{EIP: netip.MustParseAddr(eip), Proto: p, Port: port}
}

func svc(name string, eips []string, fws ...dataplane.Forward) dataplane.Service {
	s := dataplane.Service{Key: "default/" + name, Forwards: fws}
	for _, e := range eips {
		s.EIPs = append(s.EIPs, netip.MustParseAddr(e))
	}
	return s
}

// bigTable: n Services, each one EIP (10.x.y.z), one TCP port, two endpoints.
func bigTable(n int) *dataplane.Table {
	t := dataplane.NewTable(dataplane.ModeNftables)
	for i := range n {
		eip := bigEIP(i)
		a := netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)})
		b := netip.AddrFrom4([4]byte{172, 17, byte(i >> 8), byte(i)})
		k := dataplane.Key{EIP: eip, Proto: dataplane.TCP, Port: 80}
		t.Set(dataplane.Service{
			Key: "big/" + eip.String(), EIPs: []netip.Addr{eip},
			Forwards: []dataplane.Forward{{Key: k, Endpoints: []dataplane.Endpoint{
				{Addr: a, Port: 8080, Local: true}, {Addr: b, Port: 8080},
			}}},
		})
	}
	return t
}

// bigEIP is the EIP of bigTable's Service i.
func bigEIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(100 + i>>16), byte(i >> 8), byte(i)})
}
