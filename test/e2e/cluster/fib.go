//go:build privileged

package cluster

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/eiplb/eiplb/test/netlab"
)

// FIB reads a namespace's kernel FIB through netlink, without forking.
type FIB struct{ h *netlink.Handle }

// OpenFIB opens ns's FIB; it is closed when t ends.
func OpenFIB(t netlab.T, ns *netlab.NS) *FIB {
	nh, err := netns.GetFromPath(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(nh)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(); _ = nh.Close() })
	return &FIB{h}
}

// NextHops returns the number of next hops of every /32 route.
func (f *FIB) NextHops() (map[string]int, error) {
	routes, err := f.h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		if ones, _ := r.Dst.Mask.Size(); ones != 32 {
			continue
		}
		n := len(r.MultiPath)
		if n == 0 && r.Gw != nil {
			n = 1
		}
		out[r.Dst.IP.String()] = n
	}
	return out, nil
}

// Gateways returns the sorted gateways of the /32 route to ip (none
// without one). It asks the kernel for that one FIB entry (RTM_GETROUTE
// with RTM_F_FIB_MATCH, `ip route get fibmatch`), which costs the same
// however many routes the FIB holds; dumping the FIB instead took tens of
// milliseconds at 10,000 routes, at every poll.
func (f *FIB) Gateways(ip string) ([]string, error) {
	return f.hops(ip, false)
}

// Weighted is like Gateways, each gateway followed by its weight
// ("192.168.100.11*2"): a change of weight moves flows on the router too.
func (f *FIB) Weighted(ip string) ([]string, error) {
	return f.hops(ip, true)
}

func (f *FIB) hops(ip string, weights bool) ([]string, error) {
	addr := net.ParseIP(ip)
	if addr == nil {
		return nil, fmt.Errorf("fib: %q is not an IP address", ip)
	}
	routes, err := f.h.RouteGetWithOptions(addr, &netlink.RouteGetOptions{FIBMatch: true})
	if errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.EHOSTUNREACH) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range routes {
		if r.Dst == nil || !r.Dst.IP.Equal(addr) {
			continue // a covering route, not the /32
		}
		if ones, _ := r.Dst.Mask.Size(); ones != 32 {
			continue
		}
		if r.Gw != nil {
			out = append(out, r.Gw.String())
		}
		for _, nh := range r.MultiPath {
			hop := nh.Gw.String()
			if weights {
				hop += fmt.Sprintf("*%d", nh.Hops+1)
			}
			out = append(out, hop)
		}
	}
	slices.Sort(out)
	return out, nil
}

// fewRoutes: up to this many addresses, WaitAll and WaitGone ask for each
// route (Gateways) every millisecond instead of dumping the FIB.
const fewRoutes = 8

// WaitAll polls until every ip has want next hops, and returns when each
// got there. Up to fewRoutes addresses it reads each route every
// millisecond; for more it dumps the FIB, waiting 2 ms between dumps plus
// four times what the last one took, so that reading a large FIB takes at
// most a fifth of a core from the system it measures.
func (f *FIB) WaitAll(t netlab.T, ips []string, want int, timeout time.Duration) map[string]time.Time {
	done := map[string]time.Time{}
	deadline := time.Now().Add(timeout)
	for len(done) < len(ips) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d routes complete after %s", len(done), len(ips), timeout)
		}
		if len(ips) <= fewRoutes {
			for _, ip := range ips {
				if _, ok := done[ip]; ok {
					continue
				}
				gws, err := f.Gateways(ip)
				if err != nil {
					t.Fatal(err)
				}
				if len(gws) == want {
					done[ip] = time.Now()
				}
			}
			time.Sleep(time.Millisecond)
			continue
		}
		start := time.Now()
		nh, err := f.NextHops()
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		for _, ip := range ips {
			if _, ok := done[ip]; !ok && nh[ip] == want {
				done[ip] = now
			}
		}
		time.Sleep(2*time.Millisecond + 4*now.Sub(start))
	}
	return done
}

// WaitGone waits until ip has no route.
func (f *FIB) WaitGone(t netlab.T, ip string) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		gws, err := f.Gateways(ip)
		if err != nil {
			t.Fatal(err)
		}
		if len(gws) == 0 {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("route %s not withdrawn", ip)
}
