package nft

import (
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/eiplb/eiplb/pkg/dataplane"
)

// ProbeResult is the outcome of probing one kernel feature the writer needs.
type ProbeResult struct {
	// Feature names it ("interval sets with concatenated keys (pipapo)").
	Feature string
	// Err is nil when the kernel took it.
	Err error
}

// probeChain is the regular chain the probe's rules go into: no base chain
// jumps to it, so they never see a packet.
const probeChain = "probe"

// ProbeTable is the name Probe gives its throwaway table in this process.
func ProbeTable() string { return fmt.Sprintf("eiplb-preflight-%d", os.Getpid()) }

// Probe checks that the kernel takes what the writer creates in opts.Mode:
// it creates a throwaway table (opts.Table, ProbeTable() when empty) with
// the same kinds of base chains, sets and maps and one rule per kind of
// expression, each kind in its own transaction so that one missing feature
// does not hide the others, and deletes the table again. The rules sit in a
// chain no hook reaches; the base chains are empty: nothing touches a
// packet. The first result is the table itself; when it fails nothing else
// is tried. The last one is the table's deletion.
func Probe(opts Options) []ProbeResult {
	if opts.Table == "" {
		opts.Table = ProbeTable()
	}
	if opts.Mode == "" {
		opts.Mode = dataplane.ModeNftables
	}
	nat := opts.Mode == dataplane.ModeNftables
	conn, err := opts.conn()
	if err != nil {
		return []ProbeResult{{Feature: "nftables netlink socket", Err: err}}
	}
	t := &nftables.Table{Name: opts.Table, Family: nftables.TableFamilyINet}
	// A table of that name left by a crashed probe goes first.
	conn.DelTable(t)
	_ = conn.Flush()

	step := func(feature string, add func()) ProbeResult {
		add()
		err := conn.Flush()
		if err != nil {
			err = fmt.Errorf("the kernel refused it: %w", err)
		}
		return ProbeResult{Feature: feature, Err: err}
	}
	out := []ProbeResult{step("create table inet "+opts.Table, func() {
		conn.AddTable(t)
		conn.AddChain(&nftables.Chain{Table: t, Name: probeChain})
	})}
	if out[0].Err != nil {
		return out
	}

	// Base chains like the writer's, without rules.
	var bases []baseSpec
	for _, b := range baseSpecs {
		if b.nat && !nat {
			continue
		}
		bases = append(bases, b)
	}
	for _, typ := range []nftables.ChainType{nftables.ChainTypeNAT, nftables.ChainTypeFilter} {
		var names []string
		for _, b := range bases {
			if b.typ == typ {
				names = append(names, b.name)
			}
		}
		if len(names) == 0 {
			continue
		}
		out = append(out, step(fmt.Sprintf("inet %s base chains (%s)", typ, strings.Join(names, ", ")), func() {
			for _, b := range bases {
				if b.typ == typ {
					conn.AddChain(&nftables.Chain{Table: t, Name: b.name, Type: b.typ, Hooknum: b.hook,
						Priority: nftables.ChainPriorityRef(nftables.ChainPriority(b.prio))})
				}
			}
		}))
	}

	// Sets and maps, by kind.
	kinds := []struct {
		feature string
		match   func(setSpec) bool
	}{
		{"sets of addresses", func(s setSpec) bool { return !s.concat }},
		{"sets with concatenated keys", func(s setSpec) bool { return s.concat && !s.interval && s.data.Name == "" }},
		{"maps with concatenated keys and values", func(s setSpec) bool { return s.concat && s.data.Name != "" }},
		{"interval sets with concatenated keys (pipapo)", func(s setSpec) bool { return s.interval }},
	}
	for _, k := range kinds {
		var specs []setSpec
		for _, s := range setSpecs {
			if k.match(s) && (nat || !s.nat) {
				specs = append(specs, s)
			}
		}
		if len(specs) == 0 {
			continue
		}
		out = append(out, step(k.feature, func() {
			for _, s := range specs {
				set := s.set(t)
				var elems []nftables.SetElement
				if s.interval {
					// One range, as the writer adds for a source range.
					fwd := dataplane.Key{EIP: netip.MustParseAddr("192.0.2.1"), Proto: dataplane.TCP, Port: 80}
					if s.name == setAllow6 {
						fwd.EIP = netip.MustParseAddr("2001:db8::1")
					}
					pfx := netip.MustParsePrefix("198.51.100.0/24")
					if s.name == setAllow6 {
						pfx = netip.MustParsePrefix("2001:db8:1::/48")
					}
					key, end := allowKeys(fwd, pfx)
					elems = []nftables.SetElement{{Key: key, KeyEnd: end}}
				}
				_ = conn.AddSet(set, elems) // errors of the library's own checks surface in Flush
			}
		}))
	}

	// One rule per kind of expression (never reached by a packet).
	rule := func(e ...expr.Any) func() {
		return func() {
			conn.AddRule(&nftables.Rule{Table: t, Chain: &nftables.Chain{Table: t, Name: probeChain}, Exprs: e})
		}
	}
	type ruleProbe struct {
		feature string
		exprs   []expr.Any
		nat     bool
	}
	probes := []ruleProbe{
		{"lookup in a concatenated set", firewallExprs(true), true},
		{"reject with tcp reset", []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}}, false},
		{"reject with icmpx port unreachable", []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH}}, false},
		{"ct label (set and match)", append(setLabel(false), hasLabel()...), true},
		{"numgen random", []expr.Any{&expr.Numgen{Register: reg1, Modulus: 2, Type: unix.NFT_NG_RANDOM}}, true},
		{"jhash", []expr.Any{saddr(true, reg1), &expr.Hash{SourceRegister: reg1, DestRegister: reg1, Length: 4,
			Modulus: 2, Seed: dataplane.AffinitySeed, Type: expr.HashTypeJenkins}}, true},
		{"masquerade", []expr.Any{&expr.Masq{}}, true},
		{"dnat to address . port from a map (the agent's spread rule)", spreadExprs(dataplane.Spread{N: 2}), true},
	}
	for _, p := range probes {
		if p.nat && !nat {
			continue
		}
		out = append(out, step(p.feature, rule(p.exprs...)))
	}

	conn.DelTable(t)
	err = conn.Flush()
	if err != nil {
		err = fmt.Errorf("deleting it failed (remove it with nft delete table inet %s): %w", opts.Table, err)
	}
	return append(out, ProbeResult{Feature: "delete table inet " + opts.Table, Err: err})
}

// ProbeFailed reports whether any result failed.
func ProbeFailed(rs []ProbeResult) bool {
	for _, r := range rs {
		if r.Err != nil {
			return true
		}
	}
	return false
}
