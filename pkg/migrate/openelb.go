package migrate

import (
	"net/netip"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
)

// OpenELB's API group (Eip, BgpPeer, BgpConf: v1alpha2, cluster-scoped) and
// Service annotations.
const (
	openelbGroup = "network.kubesphere.io"

	openelbServe      = "lb.kubesphere.io/v1alpha1" // "openelb": served
	openelbProtocol   = "protocol.openelb.kubesphere.io/v1alpha1"
	openelbEIP        = "eip.openelb.kubesphere.io/v1alpha2" // the Eip's name
	openelbIP         = "eip.openelb.kubesphere.io/v1alpha1" // a requested address
	openelbDefaultEIP = "eip.openelb.kubesphere.io/is-default-eip"
)

// OpenELBKinds are the kinds read from the cluster, with their versions.
var OpenELBKinds = []string{"v1alpha2 Eip", "v1alpha2 BgpPeer", "v1alpha2 BgpConf"}

type oelbEip struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Address           string            `json:"address"`
		Protocol          string            `json:"protocol"`
		Disable           bool              `json:"disable"`
		UsingKnownIPs     bool              `json:"usingKnownIPs"`
		Priority          int               `json:"priority"`
		Namespaces        []string          `json:"namespaces"`
		NamespaceSelector map[string]string `json:"namespaceSelector"`
	} `json:"spec"`
}

type oelbGR struct {
	Enabled     bool  `json:"enabled"`
	RestartTime int64 `json:"restartTime"`
}

type oelbConf struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		AS               int64            `json:"as"`
		ASPerRack        map[string]int64 `json:"asPerRack"`
		RouterID         string           `json:"routerId"`
		ListenPort       int32            `json:"listenPort"`
		ListenAddresses  []string         `json:"listenAddresses"`
		UseMultiplePaths bool             `json:"useMultiplePaths"`
		GracefulRestart  *oelbGR          `json:"gracefulRestart"`
		Policy           string           `json:"policy"`
	} `json:"spec"`
}

type oelbPeer struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Conf *struct {
			AuthPassword      string `json:"authPassword"`
			LocalAs           int64  `json:"localAs"`
			NeighborAddress   string `json:"neighborAddress"`
			PeerAs            int64  `json:"peerAs"`
			NeighborInterface string `json:"neighborInterface"`
			Vrf               string `json:"vrf"`
			AdminDown         bool   `json:"adminDown"`
		} `json:"conf"`
		EbgpMultihop *struct {
			Enabled     bool  `json:"enabled"`
			MultihopTtl int32 `json:"multihopTtl"`
		} `json:"ebgpMultihop"`
		Timers *struct {
			Config *struct {
				ConnectRetry      string `json:"connectRetry"`
				HoldTime          string `json:"holdTime"`
				KeepaliveInterval string `json:"keepaliveInterval"`
			} `json:"config"`
		} `json:"timers"`
		Transport *struct {
			PassiveMode bool  `json:"passiveMode"`
			RemotePort  int32 `json:"remotePort"`
		} `json:"transport"`
		GracefulRestart *oelbGR `json:"gracefulRestart"`
		AfiSafis        []*struct {
			Config *struct {
				Family *struct {
					Afi string `json:"afi"`
				} `json:"family"`
				Enabled bool `json:"enabled"`
			} `json:"config"`
			AddPaths *struct {
				Config *struct {
					SendMax int32 `json:"sendMax"`
				} `json:"config"`
			} `json:"addPaths"`
		} `json:"afiSafis"`
		NodeSelector *metav1.LabelSelector `json:"nodeSelector"`
	} `json:"spec"`
}

func (c *conv) openelb(objs []Object) error {
	c.poolComments, c.peers = map[string][]string{}, map[string]bool{}
	var eips []oelbEip
	var peers []oelbPeer
	var conf *oelbConf
	var svcs []svcIn
	var classless []string
	skipped := map[string]string{} // Eip → protocol, not carried
	for _, o := range objs {
		gv := o.GroupVersionKind()
		if gv.Group == "" && gv.Kind == "Service" {
			s, err := service(o)
			if err != nil {
				return err
			}
			if s.Spec.Type != corev1.ServiceTypeLoadBalancer || s.Spec.LoadBalancerClass != nil {
				continue
			}
			if s.Annotations[openelbServe] != "openelb" {
				classless = append(classless, name(o))
				continue
			}
			if p := s.Annotations[openelbProtocol]; p != "" && p != "bgp" {
				c.warn("Service %s announced by OpenELB in %s mode; eiplb announces over BGP only: not carried", name(o), p)
				classless = append(classless, name(o))
				continue
			}
			in := svcIn{svc: s, Was: []string{openelbServe + ": openelb"}}
			if p := s.Annotations[openelbProtocol]; p != "" {
				in.Was = append(in.Was, openelbProtocol+": "+p)
			}
			if v := s.Annotations[openelbEIP]; v != "" {
				in.Pool, in.Was = v, append(in.Was, openelbEIP+": "+v)
			}
			if v := s.Annotations[openelbIP]; v != "" {
				in.Requested, in.Was = strings.Split(strings.ReplaceAll(v, " ", ""), ","), append(in.Was, openelbIP+": "+v)
			}
			svcs = append(svcs, in)
			continue
		}
		if gv.Group != openelbGroup {
			continue
		}
		var err error
		switch gv.Kind {
		case "Eip":
			var e oelbEip
			err = from(o, &e)
			eips = append(eips, e)
		case "BgpPeer":
			var p oelbPeer
			err = from(o, &p)
			peers = append(peers, p)
		case "BgpConf":
			var cf oelbConf
			err = from(o, &cf)
			if conf != nil {
				c.warn("BgpConf %s: more than one BgpConf; %s is used", cf.Name, conf.Name)
			} else {
				conf = &cf
			}
		default:
			c.warn("%s %s: kind not carried", gv.Kind, name(o))
		}
		if err != nil {
			return err
		}
	}

	for _, e := range eips {
		src := "Eip " + e.Name
		if p := e.Spec.Protocol; p != "" && p != "bgp" {
			c.warn("%s is announced in %s mode; eiplb announces over BGP only: not carried", src, p)
			skipped[e.Name] = p
			continue
		}
		addr, err := normalizeAddress(e.Spec.Address)
		if err != nil {
			c.warn("%s: %v; not carried", src, err)
			continue
		}
		ep := &v1alpha1.EIPPool{ObjectMeta: metav1.ObjectMeta{Name: e.Name, Labels: withLabel(e.Labels, LabelPool, e.Name)},
			Spec: v1alpha1.EIPPoolSpec{Addresses: []string{addr}, Disabled: e.Spec.Disable}}
		comments := []string{"From " + src + "."}
		var sels []metav1.LabelSelector
		if len(e.Spec.Namespaces) > 0 {
			sels = append(sels, *selectorIn(corev1.LabelMetadataName, e.Spec.Namespaces))
		}
		if len(e.Spec.NamespaceSelector) > 0 {
			sels = append(sels, metav1.LabelSelector{MatchLabels: e.Spec.NamespaceSelector})
		}
		if sel, ok := mergeOr(sels); ok {
			ep.Spec.NamespaceSelector = sel
		} else {
			comments = append(comments, c.warn("%s: namespaces %s is more than one label selector can say; not carried (the pool serves every namespace)", src, selectorText(sels)))
		}
		// OpenELB assigns automatically from the Eips of a Service's
		// namespace, else from the default Eip; any other only by name or
		// address.
		isDefault := e.Annotations[openelbDefaultEIP] == "true"
		ep.Spec.AutoAssign = ptrBool(isDefault || len(sels) > 0)
		if isDefault {
			comments = append(comments, "autoAssign: the default Eip.")
		}
		ep.Spec.Priority = int32(min(max(e.Spec.Priority, -1000), 1000))
		if int(ep.Spec.Priority) != e.Spec.Priority {
			comments = append(comments, c.warn("%s: priority %d is outside eiplb's -1000..1000; %d", src, e.Spec.Priority, ep.Spec.Priority))
		}
		if e.Spec.UsingKnownIPs {
			comments = append(comments, c.warn("%s: usingKnownIPs is not carried (eiplb hands out only free addresses)", src))
		}
		c.pools = append(c.pools, ep)
		c.poolComments[ep.Name] = comments
	}

	localASN := int64(0)
	var gr *v1alpha1.GracefulRestart
	if conf != nil {
		s := conf.Spec
		src := "BgpConf " + conf.Name
		localASN = s.AS
		if s.RouterID != "" {
			c.warn("%s: routerId %s is not carried: eiplb's router ID is per manager replica (manager flag --router-id, by default the node's IPv4 address)", src, s.RouterID)
		}
		if len(s.ASPerRack) > 0 {
			c.warn("%s: asPerRack is not carried: eiplb's local ASN is per BGPPeer (split peers by rack with nodeSelector)", src)
		}
		if s.ListenPort > 0 || len(s.ListenAddresses) > 0 {
			c.warn("%s: listenPort/listenAddresses are not carried: eiplb dials the routers (manager flag --bgp-listen-port, default none); configure the routers to accept the managers' sessions", src)
		}
		if s.Policy != "" {
			c.warn("%s: policy %s is not carried", src, s.Policy)
		}
		if s.GracefulRestart != nil && s.GracefulRestart.Enabled {
			gr = &v1alpha1.GracefulRestart{Enabled: true}
			if s.GracefulRestart.RestartTime > 0 {
				gr.RestartTime = &metav1.Duration{Duration: time.Duration(s.GracefulRestart.RestartTime) * time.Second}
			}
		}
	} else if len(peers) > 0 {
		c.warn("no BgpConf: the local ASN is unknown; set localASN in each BGPPeer")
	}
	for _, p := range peers {
		if err := c.openelbPeer(p, localASN, gr); err != nil {
			return err
		}
	}
	if len(c.pools) > 0 && len(c.peers) > 0 {
		// OpenELB announces every BGP Eip's addresses to every peer.
		if err := c.emitAdvertisement(&v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "openelb"}},
			[]string{"OpenELB announces every BGP Eip to every peer."}); err != nil {
			return err
		}
	}
	for i := range svcs {
		if p, ok := skipped[svcs[i].Pool]; ok {
			c.warn("Service %s/%s names Eip %s (%s mode); not carried", svcs[i].svc.Namespace, svcs[i].svc.Name, svcs[i].Pool, p)
			svcs[i].Pool = ""
		}
	}
	if err := c.services(svcs); err != nil {
		return err
	}
	c.notServedClassless(classless)
	return nil
}

func (c *conv) openelbPeer(p oelbPeer, localASN int64, gr *v1alpha1.GracefulRestart) error {
	s := p.Spec
	src := "BgpPeer " + p.Name
	if s.Conf == nil || s.Conf.NeighborAddress == "" {
		if s.Conf != nil && s.Conf.NeighborInterface != "" {
			c.warn("%s peers over interface %s; eiplb needs a peer address: not carried", src, s.Conf.NeighborInterface)
		} else {
			c.warn("%s has no neighborAddress: not carried", src)
		}
		return nil
	}
	if s.Conf.Vrf != "" {
		c.warn("%s peers in VRF %s; eiplb peers in the default VRF only: not carried", src, s.Conf.Vrf)
		return nil
	}
	addr, err := netip.ParseAddr(s.Conf.NeighborAddress)
	if err != nil {
		c.warn("%s: neighborAddress %q is not an address: not carried", src, s.Conf.NeighborAddress)
		return nil
	}
	ep := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Labels: withLabel(p.Labels, LabelPeer, p.Name)}}
	comments := []string{"From " + src + "."}
	note := func(f string, args ...any) { comments = append(comments, c.warn(src+": "+f, args...)) }
	ep.Spec.PeerAddress, ep.Spec.PeerASN, ep.Spec.LocalASN = addr.String(), s.Conf.PeerAs, localASN
	if s.Conf.LocalAs != 0 {
		ep.Spec.LocalASN = s.Conf.LocalAs
	}
	if ep.Spec.LocalASN == 0 {
		note("no local ASN (BgpConf as); set localASN by hand")
	}
	if s.Conf.AdminDown {
		note("adminDown is not carried: eiplb peers with every BGPPeer; leave this one out to keep it down")
	}
	if s.Conf.AuthPassword != "" {
		ref, err := c.passwordSecret(p.Name, s.Conf.AuthPassword, src)
		if err != nil {
			return err
		}
		ep.Spec.PasswordSecretRef = ref
	}
	if t := s.Transport; t != nil {
		if t.RemotePort != 0 && t.RemotePort != 179 {
			ep.Spec.PeerPort = t.RemotePort
		}
		if t.PassiveMode {
			note("passiveMode is not carried: eiplb dials the router")
		}
	}
	if m := s.EbgpMultihop; m != nil && m.Enabled {
		ttl := m.MultihopTtl
		if ttl < 2 {
			ttl = 255
		}
		ep.Spec.EBGPMultihop = &ttl
	}
	if t := s.Timers; t != nil && t.Config != nil {
		sec := func(field, v string) *metav1.Duration {
			if v == "" {
				return nil
			}
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				note("timers %s %q is not a number of seconds; not carried", field, v)
				return nil
			}
			return &metav1.Duration{Duration: time.Duration(n * float64(time.Second))}
		}
		ep.Spec.HoldTime = sec("holdTime", t.Config.HoldTime)
		ep.Spec.KeepaliveTime = sec("keepaliveInterval", t.Config.KeepaliveInterval)
		ep.Spec.ConnectTime = sec("connectRetry", t.Config.ConnectRetry)
		if h, k := ep.Spec.HoldTime, ep.Spec.KeepaliveTime; h != nil && k != nil && h.Duration != 0 && 3*k.Duration > h.Duration {
			ep.Spec.KeepaliveTime = nil
			note("keepaliveInterval %s is more than a third of holdTime %s, which eiplb refuses; left to its default (a third)", k.Duration, h.Duration)
		}
	}
	ep.Spec.GracefulRestart = gr
	if s.GracefulRestart != nil && s.GracefulRestart.Enabled {
		ep.Spec.GracefulRestart = &v1alpha1.GracefulRestart{Enabled: true}
		if s.GracefulRestart.RestartTime > 0 {
			ep.Spec.GracefulRestart.RestartTime = &metav1.Duration{Duration: time.Duration(s.GracefulRestart.RestartTime) * time.Second}
		}
	}
	var fams []string
	for _, a := range s.AfiSafis {
		if a == nil {
			continue
		}
		if a.Config != nil && a.Config.Family != nil {
			switch a.Config.Family.Afi {
			case "AFI_IP", "ipv4", "IPv4":
				fams = append(fams, "IPv4")
			case "AFI_IP6", "ipv6", "IPv6":
				fams = append(fams, "IPv6")
			}
		}
		if a.AddPaths != nil && a.AddPaths.Config != nil && a.AddPaths.Config.SendMax > 0 {
			ep.Spec.AddPathSendMax = min(max(a.AddPaths.Config.SendMax, 1), 255)
		}
	}
	if len(fams) == 1 {
		ep.Spec.Families = fams
	}
	ep.Spec.NodeSelector = s.NodeSelector
	if ep.Spec.NodeSelector != nil && len(ep.Spec.NodeSelector.MatchLabels) == 0 && len(ep.Spec.NodeSelector.MatchExpressions) == 0 {
		ep.Spec.NodeSelector = nil
	}
	return c.emitPeer(ep, comments)
}
