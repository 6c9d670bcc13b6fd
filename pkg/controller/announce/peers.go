package announce

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/bgp/route"
)

// PeerReconciler keeps the speaker's sessions equal to the BGPPeers that
// select this replica's node. It reconciles one fixed key: any change to
// peers, their Secrets or this node recomputes the whole (small) set.
type PeerReconciler struct {
	client   client.Client
	speaker  Speaker
	recorder events.EventRecorder
	opts     Options

	mu       sync.Mutex
	problems map[string]string // peer name → why it is not configured
	selected map[string]bool   // peers that select this replica's node
	// settled, when set, is closed once every agent has answered once.
	settled <-chan struct{}
}

// Reconcile computes the desired sessions and applies them.
func (r *PeerReconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	// No session before the agents have answered once: a session that
	// came up first would get an End-of-RIB without the paths of nodes not
	// yet known to be programmed, and a router keeping our routes through
	// a graceful restart would drop them.
	if r.settled != nil {
		select {
		case <-r.settled:
		case <-ctx.Done():
			return ctrl.Result{}, ctx.Err()
		}
	}
	var list v1alpha1.BGPPeerList
	if err := r.client.List(ctx, &list); err != nil {
		return ctrl.Result{}, err
	}
	node := &corev1.Node{}
	if err := r.client.Get(ctx, client.ObjectKey{Name: r.opts.NodeName}, node); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	var selected []*v1alpha1.BGPPeer
	selectedNames := map[string]bool{}
	recheck := false
	for i := range list.Items {
		in := &list.Items[i]
		if in.Spec.NodeSelector != nil {
			sel, err := metav1.LabelSelectorAsSelector(in.Spec.NodeSelector)
			if err != nil || !sel.Matches(labels.Set(node.Labels)) {
				continue
			}
		}
		selected = append(selected, in)
		selectedNames[in.Name] = true
		recheck = recheck || in.Spec.SourceAddress != "" || in.Spec.SourceInterface != ""
	}
	var peers []route.Peer
	problems := map[string]string{}
	reasons := map[string]string{} // peer name → Event reason; InvalidPeer when absent
	owners := peerAddressOwners(selected)
	own := nodeAddresses(node)
	for _, in := range selected {
		if addr, err := netip.ParseAddr(in.Spec.PeerAddress); err == nil && own[addr.Unmap()] {
			problems[in.Name] = fmt.Sprintf("peerAddress %s is an address of this manager's node %s; no session is attempted", in.Spec.PeerAddress, r.opts.NodeName)
			reasons[in.Name] = reasonOwnAddress
			continue
		}
		if owner, ok := owners[in.Name]; ok {
			problems[in.Name] = fmt.Sprintf("peerAddress %s is already used by BGPPeer %s, which keeps the session (the oldest BGPPeer with an address wins); delete or change one of them", in.Spec.PeerAddress, owner)
			reasons[in.Name] = reasonDuplicateAddress
			continue
		}
		p, err := r.convert(ctx, in)
		if err != nil {
			problems[in.Name] = err.Error()
			continue
		}
		peers = append(peers, p)
	}
	r.reportProblems(ctx, &list, problems, reasons, selectedNames)
	if err := r.speaker.SetPeers(ctx, peers); err != nil {
		return ctrl.Result{}, err
	}
	if recheck {
		// The node's addresses are not watched: a source address that
		// appears, moves or goes is picked up here.
		return ctrl.Result{RequeueAfter: sourceRecheck}, nil
	}
	return ctrl.Result{}, nil
}

// sourceRecheck is how often the source addresses of peers are looked up
// again on the node.
const sourceRecheck = 30 * time.Second

// Reasons of the Warning Events on a BGPPeer this replica does not
// configure.
const (
	reasonInvalidPeer = "InvalidPeer"
	// reasonDuplicateAddress: another BGPPeer with the same peerAddress
	// keeps the session (see peerAddressOwners).
	reasonDuplicateAddress = "DuplicatePeerAddress"
	// reasonOwnAddress: the peerAddress is an address of the replica's own
	// node.
	reasonOwnAddress = "PeerIsOwnNode"
)

// reportProblems records why peers are not configured (the status writer
// shows it) and sends an Event for each new or changed reason, once.
// reasons holds the Event reason of a problem, InvalidPeer when absent;
// selected names the peers that select this replica's node.
func (r *PeerReconciler) reportProblems(ctx context.Context, list *v1alpha1.BGPPeerList, problems, reasons map[string]string, selected map[string]bool) {
	r.mu.Lock()
	old := r.problems
	r.problems, r.selected = problems, selected
	r.mu.Unlock()
	for i := range list.Items {
		in := &list.Items[i]
		if msg, bad := problems[in.Name]; bad && old[in.Name] != msg {
			reason := reasons[in.Name]
			if reason == "" {
				reason = reasonInvalidPeer
			}
			log.FromContext(ctx).Info("BGP peer not configured", "peer", in.Name, "reason", reason, "message", msg)
			r.recorder.Eventf(in, nil, corev1.EventTypeWarning, reason, "Configure", "%s: %s", r.opts.NodeName, msg)
		}
	}
}

// peerAddressOwners decides which of peers keeps a peer address that
// several of them name (one speaker has one session per address): the
// oldest by creationTimestamp, then the lowest name. It depends on nothing
// but the peers, so every replica that selects the same peers decides the
// same, and a BGPPeer added later never takes over a working session. The
// key is the address alone: port, ASNs and the rest of the spec don't make
// two sessions to one address possible. It returns, for each peer that
// loses, the name of the one that keeps the address; an unparseable
// address takes part in nothing (convert reports it).
func peerAddressOwners(peers []*v1alpha1.BGPPeer) map[string]string {
	oldest := map[netip.Addr]*v1alpha1.BGPPeer{}
	older := func(a, b *v1alpha1.BGPPeer) bool {
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return a.Name < b.Name
	}
	for _, p := range peers {
		addr, err := netip.ParseAddr(p.Spec.PeerAddress)
		if err != nil {
			continue
		}
		addr = addr.Unmap()
		if o, ok := oldest[addr]; !ok || older(p, o) {
			oldest[addr] = p
		}
	}
	out := map[string]string{}
	for _, p := range peers {
		addr, err := netip.ParseAddr(p.Spec.PeerAddress)
		if err != nil {
			continue
		}
		if o := oldest[addr.Unmap()]; o.Name != p.Name {
			out[p.Name] = o.Name
		}
	}
	return out
}

// nodeAddresses are the addresses of node's status (a manager can't peer
// with its own node).
func nodeAddresses(node *corev1.Node) map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	for _, a := range node.Status.Addresses {
		if addr, err := netip.ParseAddr(a.Address); err == nil {
			out[addr.Unmap()] = true
		}
	}
	return out
}

func (r *PeerReconciler) problem(name string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.problems[name]
}

// BFD defaults: 100 ms x 5 detects a dead manager (or its node) in 0.5 s,
// leaving half of the second for the router to act, and lets the session
// ride out a stall of the manager or the router up to about 0.4 s
// (docs/bgp.md, BFD and graceful restart).
const (
	DefaultBFDInterval   = 100 * time.Millisecond
	DefaultBFDMultiplier = 5
)

// selects reports whether the peer selected this replica's node when the
// peers were last reconciled.
func (r *PeerReconciler) selects(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.selected[name]
}

func dur(d *metav1.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.Duration
}

// convert maps a BGPPeer to the speaker's type, reading its password.
func (r *PeerReconciler) convert(ctx context.Context, in *v1alpha1.BGPPeer) (route.Peer, error) {
	addr, err := netip.ParseAddr(in.Spec.PeerAddress)
	if err != nil {
		return route.Peer{}, fmt.Errorf("peerAddress: %w", err)
	}
	p := route.Peer{
		Address: addr, ASN: uint32(in.Spec.PeerASN), LocalASN: uint32(in.Spec.LocalASN),
		Port:           uint16(in.Spec.PeerPort),
		HoldTime:       dur(in.Spec.HoldTime, 0),
		KeepaliveTime:  dur(in.Spec.KeepaliveTime, 0),
		ConnectTime:    dur(in.Spec.ConnectTime, 5*time.Second),
		AddPathSendMax: uint8(max(in.Spec.AddPathSendMax, 1)),
		IPv4:           len(in.Spec.Families) == 0 || slices.Contains(in.Spec.Families, "IPv4"),
		IPv6:           len(in.Spec.Families) == 0 || slices.Contains(in.Spec.Families, "IPv6"),
	}
	if in.Spec.PeerPort == 0 {
		p.Port = 179
	}
	if p.LocalAddress, err = r.source(in.Spec, addr); err != nil {
		return route.Peer{}, err
	}
	if in.Spec.AddPathSendMax == 0 {
		p.AddPathSendMax = 64
	}
	if in.Spec.EBGPMultihop != nil {
		p.EBGPMultihop = uint8(*in.Spec.EBGPMultihop)
	}
	if gr := in.Spec.GracefulRestart; gr != nil && gr.Enabled {
		p.GracefulRestart, p.RestartTime = true, dur(gr.RestartTime, 120*time.Second)
	}
	if b := in.Spec.BFD; b != nil && b.Enabled {
		mult := int32(DefaultBFDMultiplier)
		if b.Multiplier != nil {
			mult = *b.Multiplier
		}
		p.BFD = &route.BFD{MinTx: dur(b.MinTxInterval, DefaultBFDInterval), MinRx: dur(b.MinRxInterval, DefaultBFDInterval), Multiplier: uint8(mult)}
	}
	if ref := in.Spec.PasswordSecretRef; ref != nil {
		sec := &corev1.Secret{}
		if err := r.client.Get(ctx, client.ObjectKey{Namespace: r.opts.Namespace, Name: ref.Name}, sec); err != nil {
			if apierrors.IsNotFound(err) {
				return route.Peer{}, fmt.Errorf("password Secret %s/%s not found", r.opts.Namespace, ref.Name)
			}
			return route.Peer{}, err
		}
		pw, ok := sec.Data[ref.Key]
		if !ok || len(pw) == 0 {
			return route.Peer{}, fmt.Errorf("password Secret %s/%s has no key %q", r.opts.Namespace, ref.Name, ref.Key)
		}
		if len(pw) > 80 {
			return route.Peer{}, fmt.Errorf("password in Secret %s/%s is longer than TCP MD5 allows (80 bytes)", r.opts.Namespace, ref.Name)
		}
		p.Password = string(pw)
	}
	return p, nil
}

// source is the session's local address on this node: SourceAddress, if
// the node has it, or the first global unicast address of the peer's family
// on SourceInterface. Zero without either: the kernel chooses.
func (r *PeerReconciler) source(spec v1alpha1.BGPPeerSpec, peer netip.Addr) (netip.Addr, error) {
	localAddrs := r.opts.LocalAddrs
	if localAddrs == nil {
		localAddrs = hostAddrs
	}
	switch {
	case spec.SourceAddress != "":
		src, err := netip.ParseAddr(spec.SourceAddress)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("sourceAddress: %w", err)
		}
		if src.Is4() != peer.Is4() {
			return netip.Addr{}, fmt.Errorf("sourceAddress %s is not of the family of peerAddress %s", src, peer)
		}
		addrs, err := localAddrs("")
		if err != nil {
			return netip.Addr{}, fmt.Errorf("listing the addresses of node %s: %w", r.opts.NodeName, err)
		}
		if !slices.Contains(addrs, src) {
			return netip.Addr{}, fmt.Errorf("sourceAddress %s is not an address of node %s", src, r.opts.NodeName)
		}
		return src, nil
	case spec.SourceInterface != "":
		addrs, err := localAddrs(spec.SourceInterface)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("sourceInterface %s on node %s: %w", spec.SourceInterface, r.opts.NodeName, err)
		}
		for _, a := range addrs {
			if a.Is4() == peer.Is4() && a.IsGlobalUnicast() {
				return a, nil
			}
		}
		family := "IPv4"
		if !peer.Is4() {
			family = "IPv6"
		}
		return netip.Addr{}, fmt.Errorf("sourceInterface %s on node %s has no global %s address", spec.SourceInterface, r.opts.NodeName, family)
	}
	return netip.Addr{}, nil
}

// hostAddrs lists the addresses of an interface of this network namespace,
// or of all of them when iface is empty, in the kernel's order.
func hostAddrs(iface string) ([]netip.Addr, error) {
	var addrs []net.Addr
	var err error
	if iface == "" {
		addrs, err = net.InterfaceAddrs()
	} else {
		var ifi *net.Interface
		if ifi, err = net.InterfaceByName(iface); err == nil {
			addrs, err = ifi.Addrs()
		}
	}
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out, nil
}

// statusWriter writes this replica's session entries into BGPPeer status
// and the session metrics, every interval, only when they changed.
type statusWriter struct {
	client   client.Client
	speaker  Speaker
	peers    *PeerReconciler
	opts     Options
	interval time.Duration

	last map[string]v1alpha1.BGPSession
	// failing is the failure write logged last: a failure is logged when
	// it appears or changes, not on every tick, and counted every time.
	failing string
}

// failed counts a failure of write's step and logs it once.
func (w *statusWriter) failed(ctx context.Context, step, peer string, err error) {
	statusWriteErrors.WithLabelValues(step).Inc()
	if msg := step + "\x00" + peer + "\x00" + err.Error(); msg != w.failing {
		w.failing = msg
		log.FromContext(ctx).Error(err, "Writing BGP session status failed; retrying every interval", "step", step, "peer", peer)
	}
}

// Start runs until ctx ends, then removes this replica's entries.
func (w *statusWriter) Start(ctx context.Context) error {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			cleanup, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			w.removeAll(cleanup)
			cancel()
			return nil
		case <-t.C:
			w.write(ctx)
		}
	}
}

// NeedLeaderElection: every replica reports its own sessions.
func (w *statusWriter) NeedLeaderElection() bool { return false }

func (w *statusWriter) write(ctx context.Context) {
	states, err := w.speaker.PeerStates(ctx)
	if err != nil {
		w.failed(ctx, stepSpeaker, "", err)
		return
	}
	byAddr := map[netip.Addr]route.PeerState{}
	for _, s := range states {
		byAddr[s.Address] = s
		peer := s.Address.String()
		sessionUp.WithLabelValues(peer).Set(boolf(s.Established()))
		prefixesSent.WithLabelValues(peer).Set(float64(s.PrefixesSent))
		if s.BFDState != "" {
			bfdUp.WithLabelValues(peer).Set(boolf(s.BFDState == "Up"))
		}
	}
	var list v1alpha1.BGPPeerList
	if err := w.client.List(ctx, &list); err != nil {
		w.failed(ctx, stepList, "", err)
		return
	}
	ok := true
	seen := map[string]bool{}
	for i := range list.Items {
		in := &list.Items[i]
		addr, _ := netip.ParseAddr(in.Spec.PeerAddress)
		st, configured := byAddr[addr]
		// Per-node peers share an address: only the one selecting this
		// node has this replica's session.
		configured = configured && w.peers.selects(in.Name)
		problem := w.peers.problem(in.Name)
		if !configured && problem == "" {
			continue // not selected for this replica
		}
		seen[in.Name] = true
		entry := v1alpha1.BGPSession{Manager: w.opts.NodeName, State: st.State, PrefixesSent: int64(st.PrefixesSent), BFDState: st.BFDState, LastError: st.LastError}
		if problem != "" {
			// Not configured, even when another BGPPeer with the same
			// address has a session: that session is not this one's.
			st = route.PeerState{}
			entry = v1alpha1.BGPSession{Manager: w.opts.NodeName, State: "NotConfigured", LastError: problem}
		}
		if !st.Since.IsZero() {
			since := metav1.NewTime(st.Since.Truncate(time.Second))
			entry.Since = &since
		}
		if prev, ok := w.last[in.Name]; ok && sameSession(prev, entry) {
			continue
		}
		now := metav1.Now()
		entry.UpdatedAt = &now
		if err := w.apply(ctx, in.Name, []v1alpha1.BGPSession{entry}); err != nil {
			w.failed(ctx, stepWrite, in.Name, err)
			ok = false
			continue
		}
		w.last[in.Name] = entry
	}
	for name := range w.last {
		if !seen[name] {
			delete(w.last, name)
		}
	}
	if ok {
		w.failing = ""
	}
	summarizePeers(ctx, w.client, list.Items, "")
}

func sameSession(a, b v1alpha1.BGPSession) bool {
	return a.State == b.State && a.PrefixesSent == b.PrefixesSent && a.BFDState == b.BFDState && a.LastError == b.LastError &&
		a.Since.Equal(b.Since)
}

// apply writes this replica's sessions in the peer's status.
func (w *statusWriter) apply(ctx context.Context, peer string, sessions []v1alpha1.BGPSession) error {
	return applyStatusList(ctx, w.client, w.opts.NodeName, "BGPPeer", peer, "sessions", sessions)
}

func (w *statusWriter) removeAll(ctx context.Context) {
	for name := range w.last {
		_ = w.apply(ctx, name, nil)
	}
	var list v1alpha1.BGPPeerList
	if err := w.client.List(ctx, &list); err == nil {
		summarizePeers(ctx, w.client, list.Items, w.opts.NodeName)
	}
}

func boolf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
