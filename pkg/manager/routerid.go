package manager

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"strings"
)

// RouterID chooses a replica's BGP identifier (a 32-bit number written as
// an IPv4 address). ids is --router-id: one address or a comma-separated
// list, as the downward API writes status.hostIPs. The first IPv4 address
// of the list is the identifier. A list without one (an IPv6-only node, or
// no --router-id at all) gives DerivedRouterID(nodeName), and derived
// reports it. An entry that is not an address is an error: a typo must not
// silently become a hash.
func RouterID(ids, nodeName string) (id netip.Addr, derived bool, err error) {
	var first4 netip.Addr
	for s := range strings.SplitSeq(ids, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Addr{}, false, fmt.Errorf("router ID %q is not an IP address", s)
		}
		if a = a.Unmap(); a.Is4() && !first4.IsValid() {
			first4 = a
		}
	}
	switch {
	case first4.IsValid() && first4.IsUnspecified():
		return netip.Addr{}, false, errors.New("router ID 0.0.0.0 is not a valid BGP identifier")
	case first4.IsValid():
		return first4, false, nil
	case nodeName == "":
		return netip.Addr{}, false, fmt.Errorf("router ID %q has no IPv4 address and there is no node name to derive one from", ids)
	}
	return DerivedRouterID(nodeName), true, nil
}

// DerivedRouterID is the identifier of a replica on a node without an IPv4
// address: the 32-bit FNV-1a hash of the node name, folded into
// 1.0.0.0–222.255.255.255 (never zero, never a class D or E value, which
// some routers refuse in an OPEN). It is stable across restarts and
// upgrades, and different for different nodes except by a chance of about
// 1 in 3.7e9 per pair.
func DerivedRouterID(nodeName string) netip.Addr {
	h := fnv.New32a()
	_, _ = h.Write([]byte(nodeName))
	const first, span = 1 << 24, 222 << 24 // first octet 1..222
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], first+h.Sum32()%span)
	return netip.AddrFrom4(b)
}
