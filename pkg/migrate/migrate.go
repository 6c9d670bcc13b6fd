// Package migrate converts a MetalLB or OpenELB configuration, read as
// unstructured objects (their Go modules are not dependencies), into eiplb
// objects and the Service edits that keep every Service's address. It is a
// pure function of its input: kubectl eiplb migrate reads the objects from
// the cluster or from files and prints the result. Everything that can't be
// carried is named, in a comment next to the object and in Warnings.
// docs/migrate.md has the field mapping and the cut-over steps.
package migrate

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/ipam"
)

// Object is one object read from the cluster or a file.
type Object = *unstructured.Unstructured

// Sources.
const (
	FromMetalLB = "metallb"
	FromOpenELB = "openelb"
)

// Labels put on converted objects so that advertisements can select them
// by their old names (eiplb selects pools and peers by label).
const (
	LabelPool = "migrate.eiplb.io/pool"
	LabelPeer = "migrate.eiplb.io/peer"
	// OrphanPool holds addresses that Services show but no converted pool
	// contains, so those Services keep them.
	OrphanPool = "migrated-orphans"
)

// Options of a conversion.
type Options struct {
	From string
	// SecretNamespace is the eiplb manager's namespace, where password
	// Secrets must be.
	SecretNamespace string
}

// CheckSource validates --from.
func CheckSource(from string) error {
	switch from {
	case FromMetalLB, FromOpenELB:
		return nil
	case "":
		return fmt.Errorf("--from is required: metallb or openelb")
	}
	return fmt.Errorf("--from %q: want metallb or openelb", from)
}

// Item is one object of the output with the comments printed above it.
type Item struct {
	Comments []string
	Object   map[string]any
}

// Result is the conversion.
type Result struct {
	From string
	// ManagerFlags are the eiplb manager flags the Services need (their
	// loadBalancerClass can't change).
	ManagerFlags []string
	Items        []Item
	// Warnings name everything that was not carried over, or needs a hand.
	Warnings []string
}

// Write prints the result as a YAML stream: a header with the manager flags
// and warnings, then each object with its comments.
func (r Result) Write(w io.Writer) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# eiplb objects and Service edits converted from %s by kubectl eiplb migrate.\n", r.From)
	b.WriteString("# Cut-over steps (keep every Service's address): docs/migrate.md.\n")
	if len(r.ManagerFlags) > 0 {
		fmt.Fprintf(&b, "# Run the eiplb manager with: %s\n", strings.Join(r.ManagerFlags, " "))
	}
	if len(r.Warnings) == 0 {
		b.WriteString("# Everything was carried over.\n")
	} else {
		b.WriteString("# Not carried over, or needs a hand:\n")
		for _, wn := range r.Warnings {
			fmt.Fprintf(&b, "#   - %s\n", wn)
		}
	}
	for _, it := range r.Items {
		b.WriteString("---\n")
		for _, c := range it.Comments {
			fmt.Fprintf(&b, "# %s\n", c)
		}
		y, err := yaml.Marshal(it.Object)
		if err != nil {
			return err
		}
		b.Write(y)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// Convert converts objs (any mix of the source's kinds and Services;
// others are ignored) from o.From.
func Convert(objs []Object, o Options) (Result, error) {
	if err := CheckSource(o.From); err != nil {
		return Result{}, err
	}
	if o.SecretNamespace == "" {
		o.SecretNamespace = "eiplb-system"
	}
	sorted := slices.Clone(objs)
	slices.SortStableFunc(sorted, func(a, b Object) int {
		return strings.Compare(a.GetKind()+"/"+a.GetNamespace()+"/"+a.GetName(), b.GetKind()+"/"+b.GetNamespace()+"/"+b.GetName())
	})
	c := &conv{opts: o, res: Result{From: o.From}}
	var err error
	switch o.From {
	case FromMetalLB:
		err = c.metallb(sorted)
	case FromOpenELB:
		err = c.openelb(sorted)
	}
	if err != nil {
		return Result{}, err
	}
	// Secrets first (peers refer to them), Services last (their
	// annotations name pools).
	order := []string{"Secret", "EIPPool", "BGPPeer", "BGPAdvertisement", "Service"}
	slices.SortStableFunc(c.res.Items, func(a, b Item) int {
		return slices.Index(order, a.Object["kind"].(string)) - slices.Index(order, b.Object["kind"].(string))
	})
	return c.res, nil
}

// conv accumulates the output of one conversion.
type conv struct {
	opts  Options
	res   Result
	pools []*v1alpha1.EIPPool
	// poolComments are printed above each pool.
	poolComments map[string][]string
	peers        map[string]bool // names of converted peers
}

func (c *conv) warn(f string, args ...any) string {
	s := fmt.Sprintf(f, args...)
	c.res.Warnings = append(c.res.Warnings, s)
	return s
}

// emit adds a typed object to the output, without status and server fields.
func (c *conv) emit(obj runtime.Object, gvk string, comments []string) error {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return err
	}
	delete(m, "status")
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
	}
	apiVersion, kind, _ := strings.Cut(gvk, " ")
	m["apiVersion"], m["kind"] = apiVersion, kind
	c.res.Items = append(c.res.Items, Item{Comments: comments, Object: m})
	return nil
}

func (c *conv) emitPool(p *v1alpha1.EIPPool, comments []string) error {
	return c.emit(p, v1alpha1.GroupVersion.String()+" EIPPool", comments)
}

func (c *conv) emitPeer(p *v1alpha1.BGPPeer, comments []string) error {
	c.peers[p.Name] = true
	return c.emit(p, v1alpha1.GroupVersion.String()+" BGPPeer", comments)
}

func (c *conv) emitAdvertisement(a *v1alpha1.BGPAdvertisement, comments []string) error {
	return c.emit(a, v1alpha1.GroupVersion.String()+" BGPAdvertisement", comments)
}

// passwordSecret emits a Secret holding a password that the source kept in
// plain text in its peer object, and returns the reference to it.
func (c *conv) passwordSecret(peer, password, source string) (*v1alpha1.SecretKeyRef, error) {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "eiplb-bgp-" + peer, Namespace: c.opts.SecretNamespace},
		Type:       corev1.SecretTypeOpaque,
		StringData: map[string]string{"password": password},
	}
	if err := c.emit(s, "v1 Secret", []string{"The TCP MD5 password of BGPPeer " + peer + ", kept in plain text in " + source + "."}); err != nil {
		return nil, err
	}
	return &v1alpha1.SecretKeyRef{Name: s.Name, Key: "password"}, nil
}

// selectorIn is a selector of objects whose label key has one of values.
func selectorIn(key string, values []string) *metav1.LabelSelector {
	v := slices.Clone(values)
	slices.Sort(v)
	v = slices.Compact(v)
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: metav1.LabelSelectorOpIn, Values: v}}}
}

// mergeOr turns a list of selectors that match when any of them does (the
// source's form) into eiplb's one selector. That is exact when there is at
// most one, or when each is "key = value" or "key in (...)" on the same key;
// otherwise ok is false.
func mergeOr(sels []metav1.LabelSelector) (sel *metav1.LabelSelector, ok bool) {
	switch len(sels) {
	case 0:
		return nil, true
	case 1:
		s := sels[0]
		if len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0 {
			return nil, true // matches everything
		}
		return &s, true
	}
	key := ""
	var values []string
	for _, s := range sels {
		var k string
		var v []string
		switch {
		case len(s.MatchLabels) == 1 && len(s.MatchExpressions) == 0:
			for lk, lv := range s.MatchLabels {
				k, v = lk, []string{lv}
			}
		case len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 1 && s.MatchExpressions[0].Operator == metav1.LabelSelectorOpIn:
			k, v = s.MatchExpressions[0].Key, s.MatchExpressions[0].Values
		default:
			return nil, false
		}
		if key != "" && k != key {
			return nil, false
		}
		key, values = k, append(values, v...)
	}
	return selectorIn(key, values), true
}

func selectorText(sels []metav1.LabelSelector) string {
	var parts []string
	for i := range sels {
		s, err := metav1.LabelSelectorAsSelector(&sels[i])
		if err != nil {
			parts = append(parts, fmt.Sprintf("%v", sels[i]))
			continue
		}
		parts = append(parts, "("+s.String()+")")
	}
	return strings.Join(parts, " or ")
}

// normalizeAddress turns a source's pool entry into eiplb's syntax: CIDRs
// with host bits cleared (the sources mask them too), "a - b" ranges
// without spaces.
func normalizeAddress(s string) (string, error) {
	s = strings.TrimSpace(s)
	if first, last, ok := strings.Cut(s, "-"); ok {
		a, err1 := netip.ParseAddr(strings.TrimSpace(first))
		b, err2 := netip.ParseAddr(strings.TrimSpace(last))
		if err1 != nil || err2 != nil || a.Is4() != b.Is4() {
			return "", fmt.Errorf("%q is not a range of one family", s)
		}
		return a.String() + "-" + b.String(), nil
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return "", fmt.Errorf("%q is not a CIDR", s)
		}
		return p.Masked().String(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", fmt.Errorf("%q is not an address", s)
	}
	return a.String(), nil
}

// contains reports whether a pool entry (normalized) holds a.
func contains(entry string, a netip.Addr) bool {
	if first, last, ok := strings.Cut(entry, "-"); ok {
		f, _ := netip.ParseAddr(first)
		l, _ := netip.ParseAddr(last)
		return f.BitLen() == a.BitLen() && f.Compare(a) <= 0 && a.Compare(l) <= 0
	}
	if strings.Contains(entry, "/") {
		p, _ := netip.ParsePrefix(entry)
		return p.Contains(a)
	}
	e, _ := netip.ParseAddr(entry)
	return e == a
}

// svcIn is what the conversion of Services needs from the source.
type svcIn struct {
	svc *corev1.Service
	// Pool the Service names (source annotation), converted.
	Pool string
	// Requested addresses by annotation (used when the Service has none yet).
	Requested []string
	// SharingKey from the source's annotation, when it has one.
	SharingKey string
	// Was lists the source annotations read, for the comment.
	Was []string
}

// services writes the Service edits: each Service asks for the addresses it
// holds (eiplb.io/ip), names its pool, and Services holding one address
// get one sharing key. Addresses that no converted pool contains go into
// the orphan pool.
func (c *conv) services(in []svcIn) error {
	byAddr := map[netip.Addr][]int{}
	classes := map[string]int{}
	noClass := 0
	for i, s := range in {
		if cls := s.svc.Spec.LoadBalancerClass; cls != nil {
			classes[*cls]++
		} else {
			noClass++
		}
		for _, ing := range s.svc.Status.LoadBalancer.Ingress {
			if a, err := netip.ParseAddr(ing.IP); err == nil {
				byAddr[a] = append(byAddr[a], i)
			}
		}
	}
	if noClass > 0 {
		c.res.ManagerFlags = append(c.res.ManagerFlags, "--serve-services-without-class")
	}
	for _, cls := range sortedKeys(classes) {
		if len(c.res.ManagerFlags) > 0 && strings.HasPrefix(c.res.ManagerFlags[len(c.res.ManagerFlags)-1], "--class=") {
			c.warn("Services use loadBalancerClass %q too; one manager serves one class (and, with --serve-services-without-class, Services without one): run a second eiplb installation or recreate those Services", cls)
			continue
		}
		c.res.ManagerFlags = append(c.res.ManagerFlags, "--class="+cls)
	}
	slices.Sort(c.res.ManagerFlags)

	// Sharing: every Service holding an address with others gets one key.
	keys := make([]string, len(in))
	pinned := make([]map[netip.Addr]bool, len(in))
	for i := range in {
		keys[i] = in[i].SharingKey
		pinned[i] = map[netip.Addr]bool{}
	}
	addrs := sortedAddrs(byAddr)
	for _, a := range addrs {
		hs := byAddr[a]
		for _, i := range hs {
			pinned[i][a] = true
		}
		if len(hs) < 2 {
			continue
		}
		// eiplb shares an address only among Services of one namespace:
		// the namespace with the most holders (then the first by name)
		// keeps it.
		count := map[string]int{}
		for _, i := range hs {
			count[in[i].svc.Namespace]++
		}
		ns := ""
		for _, n := range sortedKeys(count) {
			if ns == "" || count[n] > count[ns] {
				ns = n
			}
		}
		var others []string
		for _, i := range hs {
			if in[i].svc.Namespace != ns {
				pinned[i][a] = false
				others = append(others, in[i].svc.Namespace+"/"+in[i].svc.Name)
			}
		}
		if len(others) > 0 {
			c.warn("address %s is shared by Services of several namespaces; eiplb shares an address only within one namespace: the Services of %s keep it, %s will get a new address", a, ns, strings.Join(others, ", "))
		}
		key := ""
		for _, i := range hs {
			if in[i].svc.Namespace == ns && keys[i] != "" {
				key = keys[i]
				break
			}
		}
		if key == "" {
			key = "ip-" + strings.NewReplacer(".", "-", ":", "-").Replace(a.String())
		}
		for _, i := range hs {
			if in[i].svc.Namespace != ns {
				continue
			}
			if keys[i] != "" && keys[i] != key {
				c.warn("Service %s/%s has sharing key %q but shares %s with Services of key %q; it gets %q", ns, in[i].svc.Name, keys[i], a, key, key)
			}
			keys[i] = key
		}
	}

	// Addresses in no converted pool: an orphan pool keeps them.
	var orphans []string
	for _, a := range addrs {
		found := false
		for _, p := range c.pools {
			if slices.ContainsFunc(p.Spec.Addresses, func(e string) bool { return contains(e, a) }) {
				found = true
				break
			}
		}
		if !found {
			orphans = append(orphans, a.String())
		}
	}
	if len(orphans) > 0 {
		c.warn("addresses %s are held by Services but in no converted pool: pool %s (autoAssign false) keeps them; move them into a real pool when you can", strings.Join(orphans, ", "), OrphanPool)
		p := &v1alpha1.EIPPool{
			ObjectMeta: metav1.ObjectMeta{Name: OrphanPool, Labels: map[string]string{LabelPool: OrphanPool}},
			Spec:       v1alpha1.EIPPoolSpec{Addresses: orphans, AutoAssign: ptrBool(false)},
		}
		c.pools = append(c.pools, p)
		c.poolComments[OrphanPool] = []string{"Addresses Services hold that no " + c.res.From + " pool contains."}
	}
	for _, p := range c.pools {
		if err := c.emitPool(p, c.poolComments[p.Name]); err != nil {
			return err
		}
	}

	for i, s := range in {
		ann := map[string]string{}
		comments := []string{}
		if len(s.Was) > 0 {
			comments = append(comments, "From "+strings.Join(s.Was, ", ")+".")
		}
		var ips []string
		var current []netip.Addr
		for _, ing := range s.svc.Status.LoadBalancer.Ingress {
			a, err := netip.ParseAddr(ing.IP)
			if err != nil {
				continue
			}
			current = append(current, a)
			if pinned[i][a] {
				ips = append(ips, a.String())
			}
		}
		if len(current) == 0 && len(s.Requested) > 0 {
			ips = s.Requested
		}
		if len(ips) > 0 {
			ann[v1alpha1.AnnotationIP] = strings.Join(ips, ",")
			if len(current) > 0 {
				comments = append(comments, "eiplb.io/ip pins the addresses the Service holds now.")
			}
		}
		if s.Pool != "" {
			inOrphans := slices.ContainsFunc(current, func(a netip.Addr) bool { return slices.Contains(orphans, a.String()) })
			switch {
			case inOrphans:
				comments = append(comments, "Pool "+s.Pool+" not named: the Service's address is in "+OrphanPool+".")
			case !slices.ContainsFunc(c.pools, func(p *v1alpha1.EIPPool) bool { return p.Name == s.Pool }):
				c.warn("Service %s/%s names pool %q, which was not converted; the annotation is not carried", s.svc.Namespace, s.svc.Name, s.Pool)
			default:
				ann[v1alpha1.AnnotationPool] = s.Pool
			}
		}
		if keys[i] != "" {
			if _, err := ipam.ParseSharingKey(s.svc.Namespace, keys[i]); err != nil {
				c.warn("Service %s/%s: %v; not carried", s.svc.Namespace, s.svc.Name, err)
			} else {
				ann[v1alpha1.AnnotationSharingKey] = keys[i]
			}
		}
		if len(ann) == 0 {
			continue
		}
		annAny := map[string]any{}
		for k, v := range ann {
			annAny[k] = v
		}
		c.res.Items = append(c.res.Items, Item{Comments: comments, Object: map[string]any{
			"apiVersion": "v1", "kind": "Service",
			"metadata": map[string]any{"name": s.svc.Name, "namespace": s.svc.Namespace, "annotations": annAny},
		}})
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortedAddrs[V any](m map[netip.Addr]V) []netip.Addr {
	out := make([]netip.Addr, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

func ptrBool(b bool) *bool { return &b }

// from converts the object's content into a typed mirror of the fields
// read.
func from(o Object, into any) error {
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, into); err != nil {
		return fmt.Errorf("%s %s: %w", o.GetKind(), name(o), err)
	}
	return nil
}

func name(o Object) string {
	if o.GetNamespace() != "" {
		return o.GetNamespace() + "/" + o.GetName()
	}
	return o.GetName()
}

func service(o Object) (*corev1.Service, error) {
	s := &corev1.Service{}
	return s, from(o, s)
}

// notServedClassless lists LoadBalancer Services without a class that the
// source did not serve: eiplb with --serve-services-without-class would
// take them too.
func (c *conv) notServedClassless(names []string) {
	if len(names) > 0 && slices.Contains(c.res.ManagerFlags, "--serve-services-without-class") {
		c.warn("with --serve-services-without-class eiplb also serves these LoadBalancer Services without a class that %s did not: %s", c.res.From, strings.Join(names, ", "))
	}
}
