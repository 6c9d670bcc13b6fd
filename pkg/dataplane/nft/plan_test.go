package nft

import (
	"encoding/hex"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/eiplb/eiplb/pkg/dataplane"
)

// The planner's transactions, compared with golden files without root
// (the privileged tests in this package and test/e2e/dataplane check that
// the kernel takes them and forwards traffic). Run with -update to rewrite
// testdata/*.golden after an intended change, and read the diff: it is
// exactly what the agent will send to the kernel differently.
var update = flag.Bool("update", false, "rewrite the golden transactions in testdata")

// node is the node the golden Services are computed for; its endpoints are
// local, the others remote.
const node = "n1"

// podCIDR makes the prerouting chain send this node's pods to the internal
// forwards (dataplane.Key.Internal).
var podCIDR = netip.MustParsePrefix("10.1.0.0/24")

type gEndpoint struct{ addr, node string }

// gService is a LoadBalancer Service ns/name with one port, its EIPs and
// its endpoints (one EndpointSlice per family).
type gService struct {
	name      string
	local     bool
	eips      []string
	proto     corev1.Protocol
	port      int32
	target    int32
	endpoints []gEndpoint
	sources   []string
	sticky    bool
}

func (g gService) compute() dataplane.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: g.name},
		Spec: corev1.ServiceSpec{
			Type:                     corev1.ServiceTypeLoadBalancer,
			Ports:                    []corev1.ServicePort{{Name: "p", Protocol: g.proto, Port: g.port}},
			LoadBalancerSourceRanges: g.sources,
		},
	}
	if g.local {
		svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
	if g.sticky {
		svc.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	}
	var eips []netip.Addr
	for _, ip := range g.eips {
		eips = append(eips, netip.MustParseAddr(ip))
	}
	var slices []*discoveryv1.EndpointSlice
	for _, family := range []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6} {
		s := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: g.name + "-" + string(family)},
			AddressType: family,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("p"), Protocol: ptr.To(g.proto), Port: ptr.To(g.target)}},
		}
		for _, e := range g.endpoints {
			if netip.MustParseAddr(e.addr).Is4() == (family == discoveryv1.AddressTypeIPv4) {
				s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{e.addr}, NodeName: ptr.To(e.node),
					Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
			}
		}
		slices = append(slices, s)
	}
	return dataplane.Compute(svc, eips, slices, node, dataplane.ModeNftables)
}

var (
	web = gService{name: "web", eips: []string{"192.0.2.10"}, proto: corev1.ProtocolTCP, port: 80, target: 8080,
		endpoints: []gEndpoint{{"10.1.0.2", node}, {"10.2.0.2", "n2"}}}
	api = gService{name: "api", local: true, eips: []string{"192.0.2.11"}, proto: corev1.ProtocolTCP, port: 443, target: 8443,
		endpoints: []gEndpoint{{"10.1.0.3", node}, {"10.2.0.3", "n2"}, {"10.3.0.3", "n3"}}}
	dns = gService{name: "dns", eips: []string{"192.0.2.12"}, proto: corev1.ProtocolUDP, port: 53, target: 5353,
		endpoints: []gEndpoint{{"10.1.0.4", node}}, sources: []string{"198.51.100.7/32", "203.0.113.0/24"}}
	shop = gService{name: "shop", eips: []string{"192.0.2.13"}, proto: corev1.ProtocolTCP, port: 80, target: 8080,
		endpoints: []gEndpoint{{"10.1.0.5", node}, {"10.2.0.5", "n2"}}, sticky: true}
	dual = gService{name: "dual", eips: []string{"192.0.2.14", "2001:db8::14"}, proto: corev1.ProtocolTCP, port: 80, target: 8080,
		endpoints: []gEndpoint{{"10.1.0.6", node}, {"fd00:1::6", node}, {"fd00:2::6", "n2"}},
		sources:   []string{"2001:db8:ff::/48"}}
)

// step is one change of the desired table the agent makes (a Service set or
// deleted), planned as an Apply.
type step struct {
	desc   string
	change func(d *dataplane.Table) dataplane.Touched
}

func setStep(g gService) step {
	return step{"set ns/" + g.name, func(d *dataplane.Table) dataplane.Touched { return d.Set(g.compute()) }}
}

func delStep(g gService) step {
	return step{"delete ns/" + g.name, func(d *dataplane.Table) dataplane.Touched { return d.Delete("ns/" + g.name) }}
}

// TestPlanGolden plans, from a table the agent synced empty at start, the
// transactions of a sequence of Service changes, and compares each with
// testdata/<name>.golden. After every step the mirror records the
// transaction as the kernel would have taken it, and a full Sync must then
// find nothing to change: Apply and Sync agree.
func TestPlanGolden(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		// Every endpoint; the remote one masqueraded, the local one hairpinned.
		{"cluster", []step{setStep(web)}},
		// Outside clients: the local endpoint only; in-cluster clients
		// (internal forward, icount4/idnat4): every endpoint.
		{"local", []step{setStep(api)}},
		// loadBalancerSourceRanges: fw4 and one allow4 interval per range.
		{"source-ranges", []step{setStep(dns)}},
		// sessionAffinity ClientIP: a sticky spread chain (jhash of the source).
		{"session-affinity", []step{setStep(shop)}},
		// Dual-stack: v6 forward, endpoints, masquerade and ranges.
		{"ipv6", []step{setStep(dual)}},
		// A second Service with the same endpoint count adds elements only;
		// removing Services deletes their elements, and the spread chains
		// and dispatch rules nothing uses any more.
		{"remove", []step{setStep(web), setStep(dns), setStep(api), delStep(web), delStep(dns), delStep(api)}},
		// An endpoint change rewrites one dnat element and the counts.
		{"endpoints-change", []step{setStep(web), setStep(gService{name: "web", eips: web.eips, proto: web.proto, port: web.port, target: web.target,
			endpoints: []gEndpoint{{"10.1.0.2", node}, {"10.2.0.9", "n2"}, {"10.3.0.9", "n3"}}})}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pl := newPlanner(dataplane.ModeNftables)
			d := dataplane.NewTable(dataplane.ModeNftables)
			pl.planSync(d).record(pl.m) // the agent's first Sync, its own golden
			var b strings.Builder
			for _, s := range tc.steps {
				touched := s.change(d)
				fmt.Fprintf(&b, "# %s\n", s.desc)
				tx := pl.planApply(d, touched)
				b.WriteString(render(tx))
				tx.record(pl.m)
				if again := pl.planSync(d).ops(); len(again) != 0 {
					t.Errorf("after %s, a full Sync still changes:\n%s", s.desc, renderOps(again))
				}
			}
			golden(t, tc.name+".golden", b.String())
		})
	}
}

// TestPlanGoldenSync: the first Sync of an empty table (the base chains and
// sets, in both modes), and a Sync of a mirror that has every Service
// written but is desired empty (the agent started with no Services left).
func TestPlanGoldenSync(t *testing.T) {
	for _, mode := range []dataplane.Mode{dataplane.ModeNftables, dataplane.ModeKubeProxy} {
		pl := newPlanner(mode)
		golden(t, "sync-empty-"+string(mode)+".golden", render(pl.planSync(dataplane.NewTable(mode))))
	}
	pl := newPlanner(dataplane.ModeNftables)
	d := dataplane.NewTable(dataplane.ModeNftables)
	for _, g := range []gService{web, api, dns, shop, dual} {
		d.Set(g.compute())
	}
	pl.planSync(d).record(pl.m)
	golden(t, "sync-remove-all.golden", render(pl.planSync(dataplane.NewTable(dataplane.ModeNftables))))
}

// TestPlanNothingToDo: planning the same table twice sends nothing the
// second time.
func TestPlanNothingToDo(t *testing.T) {
	pl := newPlanner(dataplane.ModeNftables)
	d := dataplane.NewTable(dataplane.ModeNftables)
	d.Set(web.compute())
	pl.planSync(d).record(pl.m)
	if ops := pl.planApply(d, d.All()).ops(); len(ops) != 0 {
		t.Errorf("second plan of the same table:\n%s", renderOps(ops))
	}
}

func newPlanner(mode dataplane.Mode) *planner {
	opts, err := Options{Mode: mode, PodCIDRs: []netip.Prefix{podCIDR}}.withDefaults()
	if err != nil {
		panic(err)
	}
	return &planner{opts: opts, table: &nftables.Table{Name: opts.Table, Family: nftables.TableFamilyINet}, m: newMirror()}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if string(want) != got {
		t.Errorf("transaction differs from %s (rerun with -update if intended):\n--- got\n%s--- want\n%s", path, got, want)
	}
}

// render writes a transaction one change per line, in the order send
// queues them, with the changes it counts for.
func render(t *txn) string {
	return fmt.Sprintf("%d changes\n%s", t.count(), renderOps(t.ops()))
}

// renderOps renders ops in a canonical order: the kernel order of the
// stages, and within a stage (whose ops may go in any order, and come from
// map iterations) sorted, as are the elements of one message.
func renderOps(ops []op) string {
	var b strings.Builder
	for len(ops) > 0 {
		n := 1
		for n < len(ops) && ops[n].stage == ops[0].stage {
			n++
		}
		blocks := make([]string, n)
		for i, o := range ops[:n] {
			blocks[i] = renderOp(o)
		}
		slices.Sort(blocks)
		b.WriteString(strings.Join(blocks, ""))
		ops = ops[n:]
	}
	return b.String()
}

func renderOp(o op) string {
	var b strings.Builder
	switch o.kind {
	case opAddTable:
		fmt.Fprintf(&b, "add table inet %s\n", o.table.Name)
	case opAddSet:
		fmt.Fprintf(&b, "add %s\n", renderSet(o.set))
	case opDelSet:
		fmt.Fprintf(&b, "delete set %s\n", o.set.Name)
	case opWriteChain:
		if o.exists {
			fmt.Fprintf(&b, "flush chain %s\n", o.chain.Name)
		} else {
			fmt.Fprintf(&b, "add %s\n", renderChain(o.chain))
		}
		for _, r := range o.rules {
			fmt.Fprintf(&b, "add rule %s comment %q\n", r.Chain.Name, commentOf(r.UserData))
			for _, e := range r.Exprs {
				s := fmt.Sprintf("%+v", e)
				fmt.Fprintf(&b, "\t%s %s\n", strings.TrimPrefix(fmt.Sprintf("%T", e), "*expr."), strings.TrimPrefix(s, "&"))
			}
		}
	case opFlushChain:
		fmt.Fprintf(&b, "flush chain %s\n", o.chain.Name)
	case opDelChain:
		fmt.Fprintf(&b, "delete chain %s\n", o.chain.Name)
	case opAddElems, opDelElems:
		verb := "add"
		if o.kind == opDelElems {
			verb = "delete"
		}
		lines := make([]string, len(o.elems))
		for i, e := range o.elems {
			decoded, raw := renderElem(o.set.Name, e)
			lines[i] = fmt.Sprintf("%s element %s { %s } [%s]\n", verb, o.set.Name, decoded, raw)
		}
		slices.Sort(lines)
		b.WriteString(strings.Join(lines, ""))
	default:
		fmt.Fprintf(&b, "unknown op %d\n", o.kind)
	}
	return b.String()
}

func renderSet(s *nftables.Set) string {
	kind := "set"
	if s.IsMap {
		kind = "map"
	}
	out := fmt.Sprintf("%s %s { type %s", kind, s.Name, s.KeyType.Name)
	if s.IsMap {
		out += " : " + s.DataType.Name
	}
	if s.Interval {
		out += "; flags interval"
	}
	if s.Concatenation {
		out += "; concat"
	}
	return out + " }"
}

func renderChain(c *nftables.Chain) string {
	if c.Hooknum == nil {
		return "chain " + c.Name
	}
	prio := "none"
	if c.Priority != nil {
		prio = fmt.Sprint(*c.Priority)
	}
	return fmt.Sprintf("chain %s { type %s hook %d priority %s }", c.Name, c.Type, *c.Hooknum, prio)
}

// renderElem decodes an element as nft would list it, and gives its bytes:
// a change of encoding shows in the golden files even where the decoders
// would hide it.
func renderElem(set string, e nftables.SetElement) (decoded, raw string) {
	switch set {
	case setEIPs4, setEIPs6, setMasq4, setMasq6:
		a, _ := parseAddrKey(e.Key)
		decoded = a.String()
	case setHairpin4, setHairpin6:
		a, _ := parseHairpinKey(e.Key)
		decoded = a.String() + " . " + a.String()
	case mapCount4, mapCount6, mapICount4, mapICount6:
		k, _ := parseFwdKey(e.Key)
		decoded = fwdString(k)
		if e.Val != nil {
			decoded += fmt.Sprintf(" : %d", parseCount(e.Val))
		}
	case mapDNAT4, mapDNAT6, mapIDNAT4, mapIDNAT6:
		k, slot, _ := parseSlotKey(e.Key)
		decoded = fmt.Sprintf("%s . slot %d", fwdString(k), slot)
		if e.Val != nil {
			decoded += " : " + parseDest(e.Val).String()
		}
	case setFw4, setFw6:
		k, _ := parseFwdKey(e.Key)
		decoded = fwdString(k)
	case setAllow4, setAllow6:
		k, p, _ := parseAllow(e.Key, e.KeyEnd)
		decoded = fwdString(k) + " . " + p.String()
	default:
		decoded = "?"
	}
	raw = "key " + hex.EncodeToString(e.Key)
	if e.KeyEnd != nil {
		raw += " end " + hex.EncodeToString(e.KeyEnd)
	}
	if e.Val != nil {
		raw += " val " + hex.EncodeToString(e.Val)
	}
	return decoded, raw
}

func fwdString(k dataplane.Key) string {
	return fmt.Sprintf("%s . %s . %d", k.EIP, k.Proto, k.Port)
}
