package migrate

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
)

// MetalLB's API group and the kinds read (IPAddressPool, BGPAdvertisement,
// BFDProfile, Community, L2Advertisement: v1beta1; BGPPeer: v1beta2, and
// v1beta1 with the same field names).
const metallbGroup = "metallb.io"

// MetalLBKinds are the kinds read from the cluster, with their versions.
var MetalLBKinds = []string{"v1beta1 IPAddressPool", "v1beta2,v1beta1 BGPPeer", "v1beta1 BGPAdvertisement", "v1beta1 BFDProfile", "v1beta1 Community", "v1beta1 L2Advertisement"}

// MetalLB's Service annotations, under both prefixes (metallb.io and the
// older metallb.universe.tf).
var metallbPrefixes = []string{"metallb.io/", "metallb.universe.tf/"}

// MetalLB defaults that eiplb's differ from: BFD 300 ms x 3.
const (
	metallbBFDInterval   = 300 * time.Millisecond
	metallbBFDMultiplier = 3
)

// Mirrors of the MetalLB fields read (field names from its API).
type mlbPool struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Addresses         []string `json:"addresses"`
		AutoAssign        *bool    `json:"autoAssign"`
		AvoidBuggyIPs     bool     `json:"avoidBuggyIPs"`
		ServiceAllocation *struct {
			Priority           int                    `json:"priority"`
			Namespaces         []string               `json:"namespaces"`
			NamespaceSelectors []metav1.LabelSelector `json:"namespaceSelectors"`
			ServiceSelectors   []metav1.LabelSelector `json:"serviceSelectors"`
		} `json:"serviceAllocation"`
	} `json:"spec"`
}

type mlbPeer struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		MyASN          int64                  `json:"myASN"`
		PeerASN        int64                  `json:"peerASN"`
		LocalASN       int64                  `json:"localASN"`
		DynamicASN     string                 `json:"dynamicASN"`
		PeerAddress    string                 `json:"peerAddress"`
		Interface      string                 `json:"interface"`
		SourceAddress  string                 `json:"sourceAddress"`
		PeerPort       int32                  `json:"peerPort"`
		HoldTime       *metav1.Duration       `json:"holdTime"`
		KeepaliveTime  *metav1.Duration       `json:"keepaliveTime"`
		ConnectTime    *metav1.Duration       `json:"connectTime"`
		RouterID       string                 `json:"routerID"`
		NodeSelectors  []metav1.LabelSelector `json:"nodeSelectors"`
		Password       string                 `json:"password"`
		PasswordSecret struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"passwordSecret"`
		BFDProfile             string `json:"bfdProfile"`
		EnableGracefulRestart  bool   `json:"enableGracefulRestart"`
		EBGPMultiHop           bool   `json:"ebgpMultiHop"`
		VRF                    string `json:"vrf"`
		DisableMP              bool   `json:"disableMP"`
		DualStackAddressFamily bool   `json:"dualStackAddressFamily"`
	} `json:"spec"`
}

type mlbBFD struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ReceiveInterval  *int64 `json:"receiveInterval"`
		TransmitInterval *int64 `json:"transmitInterval"`
		DetectMultiplier *int32 `json:"detectMultiplier"`
		EchoInterval     *int64 `json:"echoInterval"`
		EchoMode         *bool  `json:"echoMode"`
		PassiveMode      *bool  `json:"passiveMode"`
		MinimumTTL       *int64 `json:"minimumTtl"`
	} `json:"spec"`
}

type mlbAdvertisement struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		AggregationLength      *int32                 `json:"aggregationLength"`
		AggregationLengthV6    *int32                 `json:"aggregationLengthV6"`
		LocalPref              int64                  `json:"localPref"`
		Communities            []string               `json:"communities"`
		IPAddressPools         []string               `json:"ipAddressPools"`
		IPAddressPoolSelectors []metav1.LabelSelector `json:"ipAddressPoolSelectors"`
		NodeSelectors          []metav1.LabelSelector `json:"nodeSelectors"`
		Peers                  []string               `json:"peers"`
		ServiceSelectors       []metav1.LabelSelector `json:"serviceSelectors"`
	} `json:"spec"`
}

type mlbCommunity struct {
	Spec struct {
		Communities []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"communities"`
	} `json:"spec"`
}

func (c *conv) metallb(objs []Object) error {
	c.poolComments, c.peers = map[string][]string{}, map[string]bool{}
	var pools []mlbPool
	var peers []mlbPeer
	var ads []mlbAdvertisement
	bfd := map[string]mlbBFD{} // namespace/name
	aliases := map[string]string{}
	var l2 []string
	var svcs []svcIn
	var classless []string
	for _, o := range objs {
		gv := o.GroupVersionKind()
		if gv.Group == "" && gv.Kind == "Service" {
			s, err := service(o)
			if err != nil {
				return err
			}
			if s.Spec.Type != corev1.ServiceTypeLoadBalancer || (s.Spec.LoadBalancerClass != nil && *s.Spec.LoadBalancerClass == v1alpha1.LoadBalancerClass) {
				continue
			}
			in := svcIn{svc: s}
			for _, k := range sortedKeys(s.Annotations) {
				for _, pfx := range metallbPrefixes {
					suffix, ok := strings.CutPrefix(k, pfx)
					if !ok {
						continue
					}
					v := s.Annotations[k]
					switch suffix {
					case "address-pool":
						in.Pool = v
					case "loadBalancerIPs":
						in.Requested = strings.Split(strings.ReplaceAll(v, " ", ""), ",")
					case "allow-shared-ip":
						in.SharingKey = v
					case "ip-allocated-from-pool":
						continue // written by MetalLB, not a request
					default:
						c.warn("Service %s/%s: annotation %s is not carried", s.Namespace, s.Name, k)
						continue
					}
					in.Was = append(in.Was, k+": "+v)
				}
			}
			if len(s.Status.LoadBalancer.Ingress) == 0 && len(in.Was) == 0 && s.Spec.LoadBalancerIP == "" {
				if s.Spec.LoadBalancerClass == nil {
					classless = append(classless, name(o))
				}
				continue // nothing to keep, nothing asked
			}
			svcs = append(svcs, in)
			continue
		}
		if gv.Group != metallbGroup {
			continue
		}
		var err error
		switch gv.Kind {
		case "IPAddressPool":
			var p mlbPool
			err = from(o, &p)
			pools = append(pools, p)
		case "BGPPeer":
			var p mlbPeer
			err = from(o, &p)
			peers = append(peers, p)
		case "BGPAdvertisement":
			var a mlbAdvertisement
			err = from(o, &a)
			ads = append(ads, a)
		case "BFDProfile":
			var b mlbBFD
			err = from(o, &b)
			bfd[b.Namespace+"/"+b.Name] = b
		case "Community":
			var cm mlbCommunity
			err = from(o, &cm)
			for _, a := range cm.Spec.Communities {
				aliases[a.Name] = a.Value
			}
		case "L2Advertisement":
			l2 = append(l2, name(o))
		default:
			c.warn("%s %s: kind not carried", gv.Kind, name(o))
		}
		if err != nil {
			return err
		}
	}
	if len(l2) > 0 {
		c.warn("L2Advertisements %s: eiplb announces over BGP only; layer 2 announcements are not carried", strings.Join(l2, ", "))
	}

	// Pools.
	anyPriority := slices.ContainsFunc(pools, func(p mlbPool) bool {
		return p.Spec.ServiceAllocation != nil && p.Spec.ServiceAllocation.Priority != 0
	})
	for _, p := range pools {
		ep := &v1alpha1.EIPPool{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Labels: withLabel(p.Labels, LabelPool, p.Name)}}
		var comments []string
		for _, a := range p.Spec.Addresses {
			n, err := normalizeAddress(a)
			if err != nil {
				comments = append(comments, c.warn("IPAddressPool %s: address %s not carried", p.Name, err))
				continue
			}
			ep.Spec.Addresses = append(ep.Spec.Addresses, n)
		}
		if len(ep.Spec.Addresses) == 0 {
			c.warn("IPAddressPool %s has no address eiplb can read; not carried", p.Name)
			continue
		}
		ep.Spec.AutoAssign = ptrBool(p.Spec.AutoAssign == nil || *p.Spec.AutoAssign)
		ep.Spec.AvoidBuggyIPs = p.Spec.AvoidBuggyIPs
		if sa := p.Spec.ServiceAllocation; sa != nil {
			switch {
			case sa.Priority != 0:
				ep.Spec.Priority = int32(min(max(sa.Priority, -1000), 1000))
				if int(ep.Spec.Priority) != sa.Priority {
					comments = append(comments, c.warn("IPAddressPool %s: priority %d is outside eiplb's -1000..1000; %d", p.Name, sa.Priority, ep.Spec.Priority))
				}
			case anyPriority:
				// MetalLB tries pools without a priority after those with one.
				ep.Spec.Priority = 1000
				comments = append(comments, "priority 1000: MetalLB tries a pool without a priority after those with one.")
			}
			nsSels := slices.Clone(sa.NamespaceSelectors)
			if len(sa.Namespaces) > 0 {
				nsSels = append(nsSels, *selectorIn(corev1.LabelMetadataName, sa.Namespaces))
			}
			if sel, ok := mergeOr(nsSels); ok {
				ep.Spec.NamespaceSelector = sel
			} else {
				comments = append(comments, c.warn("IPAddressPool %s: namespaces %s is more than one label selector can say; not carried (the pool serves every namespace): split the pool or label the namespaces", p.Name, selectorText(nsSels)))
			}
			if sel, ok := mergeOr(sa.ServiceSelectors); ok {
				ep.Spec.ServiceSelector = sel
			} else {
				comments = append(comments, c.warn("IPAddressPool %s: serviceSelectors %s is more than one label selector can say; not carried (the pool serves every Service)", p.Name, selectorText(sa.ServiceSelectors)))
			}
		}
		c.pools = append(c.pools, ep)
		c.poolComments[ep.Name] = append([]string{"From IPAddressPool " + p.Namespace + "/" + p.Name + "."}, comments...)
	}

	// Peers.
	for _, p := range peers {
		if err := c.metallbPeer(p, bfd); err != nil {
			return err
		}
	}

	// Advertisements.
	poolLabels := map[string]labels.Set{}
	for _, p := range pools {
		poolLabels[p.Name] = labels.Set(p.Labels)
	}
	covered := map[string][]string{} // pool → advertisements
	for _, a := range ads {
		ea, selected, ok := c.metallbAdvertisement(a, poolLabels, aliases)
		if !ok {
			continue
		}
		for _, p := range selected {
			covered[p] = append(covered[p], a.Name)
		}
		if err := c.emitAdvertisement(ea, []string{"From BGPAdvertisement " + a.Namespace + "/" + a.Name + "."}); err != nil {
			return err
		}
	}
	for _, p := range sortedKeys(covered) {
		if len(covered[p]) > 1 {
			c.warn("pool %s is selected by BGPAdvertisements %s; MetalLB announces it once per advertisement, eiplb with the attributes of the lowest name only (%s): merge them if their communities, local preference, peers or nodes differ", p, strings.Join(covered[p], ", "), covered[p][0])
		}
	}
	for _, p := range pools {
		if _, ok := covered[p.Name]; !ok && len(ads) > 0 {
			c.warn("IPAddressPool %s is in no BGPAdvertisement: eiplb will not announce it either", p.Name)
		}
	}
	if len(ads) == 0 && len(pools) > 0 {
		c.warn("no BGPAdvertisement: MetalLB announced nothing over BGP, nor will eiplb until you add one")
	}
	if err := c.services(svcs); err != nil {
		return err
	}
	c.notServedClassless(classless)
	return nil
}

func withLabel(l map[string]string, k, v string) map[string]string {
	out := map[string]string{}
	for lk, lv := range l {
		out[lk] = lv
	}
	out[k] = v
	return out
}

func (c *conv) metallbPeer(p mlbPeer, bfd map[string]mlbBFD) error {
	s := p.Spec
	src := "BGPPeer " + p.Namespace + "/" + p.Name
	switch {
	case s.Interface != "":
		c.warn("%s peers over interface %s (unnumbered BGP); eiplb needs a peer address: not carried", src, s.Interface)
		return nil
	case s.VRF != "":
		c.warn("%s peers in VRF %s; eiplb peers in the default VRF only: not carried", src, s.VRF)
		return nil
	case s.PeerAddress == "":
		c.warn("%s has no peerAddress: not carried", src)
		return nil
	}
	addr, err := netip.ParseAddr(s.PeerAddress)
	if err != nil {
		c.warn("%s: peerAddress %q is not an address: not carried", src, s.PeerAddress)
		return nil
	}
	ep := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Labels: withLabel(p.Labels, LabelPeer, p.Name)}}
	comments := []string{"From " + src + "."}
	note := func(f string, args ...any) { comments = append(comments, c.warn(src+": "+f, args...)) }
	ep.Spec.PeerAddress = addr.String()
	ep.Spec.LocalASN = s.MyASN
	if s.LocalASN != 0 {
		ep.Spec.LocalASN = s.LocalASN // MetalLB's local-as for this session
	}
	switch {
	case s.PeerASN != 0:
		ep.Spec.PeerASN = s.PeerASN
	case s.DynamicASN == "internal":
		ep.Spec.PeerASN = ep.Spec.LocalASN
		comments = append(comments, "peerASN: dynamicASN internal is our own ASN.")
	default:
		c.warn("%s: dynamicASN %q: eiplb needs the router's ASN; not carried (add the peer by hand)", src, s.DynamicASN)
		return nil
	}
	if s.PeerPort != 0 && s.PeerPort != 179 {
		ep.Spec.PeerPort = s.PeerPort
	}
	ep.Spec.HoldTime, ep.Spec.KeepaliveTime, ep.Spec.ConnectTime = s.HoldTime, s.KeepaliveTime, s.ConnectTime
	if h, k := s.HoldTime, s.KeepaliveTime; h != nil && k != nil && h.Duration != 0 && 3*k.Duration > h.Duration {
		ep.Spec.KeepaliveTime = nil
		note("keepaliveTime %s is more than a third of holdTime %s, which eiplb refuses; left to its default (a third)", k.Duration, h.Duration)
	}
	if s.SourceAddress != "" {
		ep.Spec.SourceAddress = s.SourceAddress
		comments = append(comments, "sourceAddress: every manager replica this peer selects must have it (a peer of one node); see sourceInterface.")
	}
	if s.RouterID != "" {
		note("routerID %s is not carried: eiplb's router ID is per manager replica (manager flag --router-id, by default the node's IPv4 address)", s.RouterID)
	}
	if sel, ok := mergeOr(s.NodeSelectors); ok {
		ep.Spec.NodeSelector = sel
	} else {
		note("nodeSelectors %s is more than one label selector can say; not carried (every manager replica peers)", selectorText(s.NodeSelectors))
	}
	switch {
	case s.Password != "":
		ref, err := c.passwordSecret(p.Name, s.Password, src)
		if err != nil {
			return err
		}
		ep.Spec.PasswordSecretRef = ref
	case s.PasswordSecret.Name != "":
		ep.Spec.PasswordSecretRef = &v1alpha1.SecretKeyRef{Name: s.PasswordSecret.Name, Key: "password"}
		ns := orDefault(s.PasswordSecret.Namespace, p.Namespace)
		if ns != c.opts.SecretNamespace {
			note("password Secret %s/%s must be copied to %s (same name, key password)", ns, s.PasswordSecret.Name, c.opts.SecretNamespace)
		}
	}
	if s.BFDProfile != "" {
		b, ok := bfd[p.Namespace+"/"+s.BFDProfile]
		if !ok {
			note("BFD profile %s not found; BFD not carried", s.BFDProfile)
		} else {
			ep.Spec.BFD = c.metallbBFD(b, note)
			comments = append(comments, "bfd: from BFDProfile "+s.BFDProfile+", with MetalLB's defaults (300ms x 3) where it set none.")
		}
	}
	if s.EnableGracefulRestart {
		ep.Spec.GracefulRestart = &v1alpha1.GracefulRestart{Enabled: true}
	}
	if s.EBGPMultiHop {
		if ep.Spec.PeerASN == ep.Spec.LocalASN {
			note("ebgpMultiHop on an iBGP session has no meaning; not carried")
		} else {
			ep.Spec.EBGPMultihop = ptrInt32(255) // what FRR sets without a TTL
			comments = append(comments, "ebgpMultihop 255: MetalLB's ebgpMultiHop sets FRR's ebgp-multihop without a TTL (255).")
		}
	}
	if !s.DualStackAddressFamily {
		// MetalLB activates the session for the peer address's family only.
		ep.Spec.Families = []string{familyOf(addr)}
	}
	return c.emitPeer(ep, comments)
}

func (c *conv) metallbBFD(b mlbBFD, note func(string, ...any)) *v1alpha1.BFD {
	ms := func(v *int64) *metav1.Duration {
		d := metallbBFDInterval
		if v != nil {
			d = time.Duration(*v) * time.Millisecond
		}
		return &metav1.Duration{Duration: d}
	}
	out := &v1alpha1.BFD{Enabled: true, MinRxInterval: ms(b.Spec.ReceiveInterval), MinTxInterval: ms(b.Spec.TransmitInterval), Multiplier: ptrInt32(metallbBFDMultiplier)}
	if b.Spec.DetectMultiplier != nil {
		out.Multiplier = b.Spec.DetectMultiplier
	}
	if b.Spec.EchoMode != nil && *b.Spec.EchoMode {
		note("BFD profile %s: echo mode is not carried", b.Name)
	}
	if b.Spec.EchoInterval != nil {
		note("BFD profile %s: echoInterval is not carried", b.Name)
	}
	if b.Spec.PassiveMode != nil && *b.Spec.PassiveMode {
		note("BFD profile %s: passive mode is not carried (eiplb's BFD is active)", b.Name)
	}
	if b.Spec.MinimumTTL != nil {
		note("BFD profile %s: minimumTtl (multi-hop BFD) is not carried (eiplb's BFD is single hop)", b.Name)
	}
	return out
}

// metallbAdvertisement converts one advertisement; selected are the pools
// it selects, ok false when it converts to nothing.
func (c *conv) metallbAdvertisement(a mlbAdvertisement, poolLabels map[string]labels.Set, aliases map[string]string) (*v1alpha1.BGPAdvertisement, []string, bool) {
	s := a.Spec
	src := "BGPAdvertisement " + a.Namespace + "/" + a.Name
	ea := &v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: a.Name, Labels: a.Labels}}
	var selected []string
	if len(s.IPAddressPools) == 0 && len(s.IPAddressPoolSelectors) == 0 {
		selected = sortedKeys(poolLabels)
	} else {
		// Resolved now to names: MetalLB ORs names and selectors.
		for _, p := range s.IPAddressPools {
			if _, ok := poolLabels[p]; ok {
				selected = append(selected, p)
			} else {
				c.warn("%s names IPAddressPool %s, which does not exist", src, p)
			}
		}
		for i := range s.IPAddressPoolSelectors {
			sel, err := metav1.LabelSelectorAsSelector(&s.IPAddressPoolSelectors[i])
			if err != nil {
				c.warn("%s: pool selector: %v", src, err)
				continue
			}
			for _, p := range sortedKeys(poolLabels) {
				if sel.Matches(poolLabels[p]) {
					selected = append(selected, p)
				}
			}
		}
		if len(selected) == 0 {
			c.warn("%s selects no pool; not carried", src)
			return nil, nil, false
		}
		ea.Spec.PoolSelector = selectorIn(LabelPool, selected)
	}
	if len(s.Peers) > 0 {
		var names []string
		for _, p := range s.Peers {
			if c.peers[p] {
				names = append(names, p)
			} else {
				c.warn("%s names BGPPeer %s, which was not converted", src, p)
			}
		}
		if len(names) == 0 {
			c.warn("%s: none of its peers was converted; not carried", src)
			return nil, nil, false
		}
		ea.Spec.PeerSelector = selectorIn(LabelPeer, names)
	}
	if sel, ok := mergeOr(s.NodeSelectors); ok {
		ea.Spec.NodeSelector = sel
	} else {
		c.warn("%s: nodeSelectors %s is more than one label selector can say; not carried (every node is a next hop)", src, selectorText(s.NodeSelectors))
	}
	if len(s.ServiceSelectors) > 0 {
		c.warn("%s: serviceSelectors %s not carried: eiplb announces every Service of the selected pools", src, selectorText(s.ServiceSelectors))
	}
	for _, cm := range s.Communities {
		v := cm
		if alias, ok := aliases[cm]; ok {
			v = alias
		}
		if large, ok := strings.CutPrefix(v, "large:"); ok {
			ea.Spec.LargeCommunities = append(ea.Spec.LargeCommunities, large)
			continue
		}
		if standardCommunity(v) {
			ea.Spec.Communities = append(ea.Spec.Communities, v)
			continue
		}
		c.warn("%s: community %q is neither a value nor a known alias; not carried", src, cm)
	}
	if s.LocalPref != 0 {
		ea.Spec.LocalPref = &s.LocalPref
	}
	if s.AggregationLength != nil && *s.AggregationLength != 32 {
		ea.Spec.AggregationLength = s.AggregationLength
	}
	if s.AggregationLengthV6 != nil && *s.AggregationLengthV6 != 128 {
		ea.Spec.AggregationLengthV6 = s.AggregationLengthV6
	}
	return ea, selected, true
}

func standardCommunity(v string) bool {
	switch v {
	case "no-export", "no-advertise", "no-peer", "blackhole":
		return true
	}
	a, b, ok := strings.Cut(v, ":")
	if !ok {
		return false
	}
	_, err1 := strconv.ParseUint(a, 10, 16)
	_, err2 := strconv.ParseUint(b, 10, 16)
	return err1 == nil && err2 == nil
}

func familyOf(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

func ptrInt32(v int32) *int32 { return &v }

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
