//go:build privileged

package netlab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Route is a route of a namespace's kernel FIB (main table) that has at
// least one gateway.
type Route struct {
	// Prefix in canonical CIDR form: "172.30.0.10/32", "fd00:30::/64",
	// "0.0.0.0/0" (ip prints host routes without the length and "default").
	Prefix string
	// NextHops sorted by gateway; one entry (weight 1) for a single-path route.
	NextHops []NextHop
	// Protocol as ip prints it ("bgp", "static", "kernel", "boot", ...).
	Protocol string
	// Metric is the route's priority; the kernel uses the lowest.
	Metric int
}

// NextHop is one gateway of a route. Weight is the kernel's ECMP weight
// (1 to 256); 1 for a single-path route.
type NextHop struct {
	Gateway string
	Weight  int
}

// Gateways returns the gateways of the route, sorted.
func (r Route) Gateways() []string {
	var g []string
	for _, nh := range r.NextHops {
		g = append(g, nh.Gateway)
	}
	return g
}

func (r Route) String() string {
	var b strings.Builder
	b.WriteString(r.Prefix)
	if r.Protocol != "" {
		b.WriteString(" proto " + r.Protocol)
	}
	for _, nh := range r.NextHops {
		fmt.Fprintf(&b, " via %s weight %d", nh.Gateway, nh.Weight)
	}
	return b.String()
}

// Routes returns the routes with gateways of the namespace's main table for
// family 4 or 6, parsed from `ip -j route show` / `ip -j -6 route show`.
// Routes without a gateway (connected, blackhole, ...) are left out.
func (ns *NS) Routes(family int) ([]Route, error) {
	return ns.routes(context.Background(), family, "")
}

// Route returns the active route (lowest metric) for prefix in the
// namespace's main table, if it has gateways. prefix may be given with or
// without its length for host routes ("172.30.0.10" means "172.30.0.10/32").
func (ns *NS) Route(prefix string) (Route, bool, error) {
	return ns.route(context.Background(), prefix)
}

func (ns *NS) route(ctx context.Context, prefix string) (Route, bool, error) {
	p, err := parsePrefix(prefix)
	if err != nil {
		return Route{}, false, err
	}
	family := 4
	if p.Addr().Is6() {
		family = 6
	}
	rs, err := ns.routes(ctx, family, p.String())
	if err != nil {
		return Route{}, false, err
	}
	var best *Route
	for i := range rs {
		if rs[i].Prefix == p.String() && (best == nil || rs[i].Metric < best.Metric) {
			best = &rs[i]
		}
	}
	if best == nil {
		return Route{}, false, nil
	}
	return *best, true, nil
}

func (ns *NS) routes(ctx context.Context, family int, exact string) ([]Route, error) {
	var args []string
	switch family {
	case 4:
		args = []string{"-n", ns.Name, "-j", "-4", "route", "show"}
	case 6:
		args = []string{"-n", ns.Name, "-j", "-6", "route", "show"}
	default:
		return nil, fmt.Errorf("netlab: family %d, want 4 or 6", family)
	}
	if exact != "" {
		args = append(args, "exact", exact)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := run(ctx, "ip", args...)
	if err != nil {
		return nil, err
	}
	return parseRoutes([]byte(out), family)
}

type ipVia struct {
	Family string `json:"family"`
	Host   string `json:"host"`
}

type ipNextHop struct {
	Gateway string `json:"gateway"`
	Via     *ipVia `json:"via"`
	Dev     string `json:"dev"`
	Weight  int    `json:"weight"`
}

type ipRoute struct {
	Type     string      `json:"type"`
	Dst      string      `json:"dst"`
	Gateway  string      `json:"gateway"`
	Via      *ipVia      `json:"via"`
	Dev      string      `json:"dev"`
	Protocol string      `json:"protocol"`
	Metric   int         `json:"metric"`
	Nexthops []ipNextHop `json:"nexthops"`
}

func gateway(gw string, via *ipVia) string {
	if gw != "" {
		return gw
	}
	if via != nil {
		return via.Host // IPv4 route via an IPv6 next hop (RFC 5549)
	}
	return ""
}

// parseRoutes parses the output of `ip -j route show`. Entries for the same
// prefix, protocol and metric are merged (older kernels list the paths of an
// IPv6 multipath route one by one).
func parseRoutes(b []byte, family int) ([]Route, error) {
	var raw []ipRoute
	if len(strings.TrimSpace(string(b))) == 0 {
		return nil, nil
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("netlab: parse ip -j route: %w: %.200s", err, b)
	}
	var rs []Route
	for _, r := range raw {
		if r.Type != "" && r.Type != "unicast" {
			continue
		}
		var nhs []NextHop
		if gw := gateway(r.Gateway, r.Via); gw != "" {
			nhs = append(nhs, NextHop{Gateway: canonAddr(gw), Weight: 1})
		}
		for _, nh := range r.Nexthops {
			if gw := gateway(nh.Gateway, nh.Via); gw != "" {
				w := nh.Weight
				if w == 0 {
					w = 1
				}
				nhs = append(nhs, NextHop{Gateway: canonAddr(gw), Weight: w})
			}
		}
		if len(nhs) == 0 {
			continue
		}
		p, err := dstPrefix(r.Dst, family)
		if err != nil {
			return nil, err
		}
		i := slices.IndexFunc(rs, func(x Route) bool {
			return x.Prefix == p && x.Protocol == r.Protocol && x.Metric == r.Metric
		})
		if i < 0 {
			rs = append(rs, Route{Prefix: p, Protocol: r.Protocol, Metric: r.Metric})
			i = len(rs) - 1
		}
		rs[i].NextHops = append(rs[i].NextHops, nhs...)
	}
	for i := range rs {
		slices.SortFunc(rs[i].NextHops, func(a, b NextHop) int { return strings.Compare(a.Gateway, b.Gateway) })
	}
	return rs, nil
}

func dstPrefix(dst string, family int) (string, error) {
	if dst == "default" || dst == "" {
		if family == 6 {
			return "::/0", nil
		}
		return "0.0.0.0/0", nil
	}
	p, err := parsePrefix(dst)
	if err != nil {
		return "", err
	}
	return p.String(), nil
}

// parsePrefix accepts "a.b.c.d/n", "a.b.c.d" (a /32), IPv6 likewise, and
// returns the masked prefix.
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("netlab: bad prefix %q: %w", s, err)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("netlab: bad prefix %q: %w", s, err)
	}
	return p.Masked(), nil
}

// WaitRoute polls the namespace's route for prefix every 5 ms until ok
// returns true and returns the route it accepted. ok gets the route and
// whether there is one (see Route); nil means "there is a route". On timeout
// it fails the test (t.Fatalf) with the last state seen and the namespace's
// routing table.
func (ns *NS) WaitRoute(t T, prefix string, timeout time.Duration, ok func(Route, bool) bool) Route {
	t.Helper()
	if ok == nil {
		ok = func(_ Route, found bool) bool { return found }
	}
	if _, err := parsePrefix(prefix); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	deadline := start.Add(timeout)
	var (
		last    Route
		found   bool
		lastErr error
		polls   int
	)
	for {
		ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(2*time.Second))
		r, f, err := ns.route(ctx, prefix)
		cancel()
		polls++
		if err != nil {
			lastErr = err
		} else {
			last, found, lastErr = r, f, nil
			if ok(r, f) {
				return r
			}
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	state := "no route"
	if found {
		state = last.String()
	}
	if lastErr != nil {
		state += fmt.Sprintf(" (last poll failed: %v)", lastErr)
	}
	table, _ := run(context.Background(), "sh", "-c", "ip -n "+ns.Name+" route; ip -n "+ns.Name+" -6 route")
	t.Fatalf("netlab: WaitRoute %s in %s: condition not met after %v (%d polls); last seen: %s\nrouting table:\n%s",
		prefix, ns.Name, time.Since(start).Round(time.Millisecond), polls, state, table)
	return Route{}
}

// Via is a WaitRoute condition: the route exists and its gateways are
// exactly gws (in any order), whatever their weights.
func Via(gws ...string) func(Route, bool) bool {
	want := make([]string, len(gws))
	for i, g := range gws {
		want[i] = canonAddr(g)
	}
	slices.Sort(want)
	return func(r Route, found bool) bool {
		return found && slices.Equal(r.Gateways(), want)
	}
}

// Absent is a WaitRoute condition: there is no route with a gateway.
func Absent(_ Route, found bool) bool { return !found }

// canonAddr writes an IP address in its canonical form ("fd00:100::11"); other
// strings are returned as they are.
func canonAddr(s string) string {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.String()
	}
	return s
}
