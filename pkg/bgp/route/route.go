// Package route holds eiplb's BGP vocabulary: the paths to announce, the
// peers to announce them to, and what the speaker reports of each session.
// It imports nothing from GoBGP, so the pure announcer (pkg/announce) and the
// kubectl plugin can use it; pkg/bgp translates it for the embedded GoBGP
// speaker.
package route

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Path is one route to announce: a prefix through one next hop. Several
// paths for one prefix with different next hops are sent with distinct
// ADD-PATH identifiers, so the router installs them all (ECMP).
type Path struct {
	Prefix  netip.Prefix
	NextHop netip.Addr
	Attrs   Attributes
	// Peers the prefix may be sent to; nil means every peer. A prefix goes
	// to the union of what its paths allow (nil in any path: every peer).
	Peers []netip.Addr
}

// Attributes of a path besides its prefix and next hop.
type Attributes struct {
	Communities      []uint32
	LargeCommunities []LargeCommunity
	// LocalPref is sent on iBGP sessions; 0 means unset.
	LocalPref uint32
	// LinkBandwidth, in bytes per second, is sent as the BGP link-bandwidth
	// extended community (0: none). Routers that support it weight ECMP by
	// it.
	LinkBandwidth float32
}

// LargeCommunity is an RFC 8092 community.
type LargeCommunity struct{ Global, Local1, Local2 uint32 }

func (l LargeCommunity) String() string { return fmt.Sprintf("%d:%d:%d", l.Global, l.Local1, l.Local2) }

// Well-known communities (RFC 1997, RFC 7999).
var wellKnown = map[string]uint32{
	"no-export":    0xFFFFFF01,
	"no-advertise": 0xFFFFFF02,
	"no-peer":      0xFFFFFF04,
	"blackhole":    0xFFFF029A,
}

// ParseCommunity parses "ASN:VALUE" (16-bit parts) or a well-known name.
func ParseCommunity(s string) (uint32, error) {
	if v, ok := wellKnown[s]; ok {
		return v, nil
	}
	a, b, ok := strings.Cut(s, ":")
	if !ok {
		return 0, fmt.Errorf("community %q is not ASN:VALUE", s)
	}
	x, err1 := strconv.ParseUint(a, 10, 16)
	y, err2 := strconv.ParseUint(b, 10, 16)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("community %q: parts must be numbers up to 65535", s)
	}
	return uint32(x)<<16 | uint32(y), nil
}

// ParseLargeCommunity parses "GLOBAL:LOCAL1:LOCAL2" with 32-bit parts.
func ParseLargeCommunity(s string) (LargeCommunity, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return LargeCommunity{}, fmt.Errorf("large community %q is not GLOBAL:LOCAL1:LOCAL2", s)
	}
	var v [3]uint32
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return LargeCommunity{}, fmt.Errorf("large community %q: parts must be numbers up to 4294967295", s)
		}
		v[i] = uint32(n)
	}
	return LargeCommunity{v[0], v[1], v[2]}, nil
}

// Equal reports whether two sets of attributes are the same.
func (a Attributes) Equal(b Attributes) bool {
	return a.LocalPref == b.LocalPref && a.LinkBandwidth == b.LinkBandwidth &&
		slices.Equal(a.Communities, b.Communities) && slices.Equal(a.LargeCommunities, b.LargeCommunities)
}

// Peer is one BGP neighbour.
type Peer struct {
	Address  netip.Addr
	ASN      uint32
	LocalASN uint32
	Port     uint16 // 0: 179
	// LocalAddress is the session's source address; zero: the kernel's
	// choice (the address of the route to the peer).
	LocalAddress netip.Addr
	// HoldTime, KeepaliveTime, ConnectTime; zero keeps GoBGP's defaults.
	HoldTime, KeepaliveTime, ConnectTime time.Duration
	// EBGPMultihop TTL; 0: directly connected.
	EBGPMultihop uint8
	// Password for TCP MD5; never logged.
	Password string
	// GracefulRestart: the router keeps our routes for RestartTime while we
	// restart.
	GracefulRestart bool
	RestartTime     time.Duration
	BFD             *BFD
	// AddPathSendMax paths per prefix; 0 or 1 disables ADD-PATH.
	AddPathSendMax uint8
	// IPv4 and IPv6 unicast enabled on the session.
	IPv4, IPv6 bool
}

// BFD settings for a peer.
type BFD struct {
	MinTx, MinRx time.Duration
	Multiplier   uint8
}

// String describes a peer without its password.
func (p Peer) String() string {
	return fmt.Sprintf("%s AS%d", p.Address, p.ASN)
}

// PeerState is what the speaker knows of a session.
type PeerState struct {
	Address      netip.Addr
	State        string // Idle, Connect, Active, OpenSent, OpenConfirm, Established
	Since        time.Time
	PrefixesSent uint64
	BFDState     string // Up, Down, Init, AdminDown, or empty
	LastError    string
}

// Established reports whether the session is up.
func (s PeerState) Established() bool { return s.State == "Established" }
