package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BGPPeerSpec is one BGP router that every selected manager replica peers
// with.
// +kubebuilder:validation:XValidation:rule="!has(self.keepaliveTime) || !has(self.holdTime) || duration(self.holdTime) == duration('0s') || duration(self.keepaliveTime).getMilliseconds() * 3 <= duration(self.holdTime).getMilliseconds()",message="keepaliveTime must be at most a third of holdTime"
// +kubebuilder:validation:XValidation:rule="!has(self.ebgpMultihop) || self.peerASN != self.localASN",message="ebgpMultihop applies to eBGP sessions only"
// +kubebuilder:validation:XValidation:rule="!has(self.sourceAddress) || !has(self.sourceInterface)",message="set sourceAddress or sourceInterface, not both"
// +kubebuilder:validation:XValidation:rule="!has(self.sourceAddress) || !isIP(self.sourceAddress) || !isIP(self.peerAddress) || ip(self.sourceAddress).family() == ip(self.peerAddress).family()",message="sourceAddress must be of the same family as peerAddress"
type BGPPeerSpec struct {
	// PeerAddress is the router's address.
	// +required
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="peerAddress must be an IP address"
	PeerAddress string `json:"peerAddress"`

	// PeerASN is the router's AS number.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4294967295
	PeerASN int64 `json:"peerASN"`

	// LocalASN is eiplb's AS number on this session.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4294967295
	LocalASN int64 `json:"localASN"`

	// PeerPort is the router's BGP port. Defaults to 179.
	// +optional
	// +kubebuilder:default=179
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	PeerPort int32 `json:"peerPort,omitempty"`

	// HoldTime of the session ("9s"; 0s disables keepalives, otherwise at
	// least 3s). Defaults to 90s.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) == duration('0s') || (duration(self) >= duration('3s') && duration(self) <= duration('65535s'))",message="holdTime must be 0s or between 3s and 65535s"
	HoldTime *metav1.Duration `json:"holdTime,omitempty"`

	// KeepaliveTime; defaults to a third of HoldTime.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('21845s')",message="keepaliveTime must be between 1s and 21845s"
	KeepaliveTime *metav1.Duration `json:"keepaliveTime,omitempty"`

	// ConnectTime is the time between connection attempts. Defaults to 5s.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('600s')",message="connectTime must be between 1s and 600s"
	ConnectTime *metav1.Duration `json:"connectTime,omitempty"`

	// EBGPMultihop is the TTL of eBGP packets for a router that is not on a
	// directly connected network.
	// +optional
	// +kubebuilder:validation:Minimum=2
	// +kubebuilder:validation:Maximum=255
	EBGPMultihop *int32 `json:"ebgpMultihop,omitempty"`

	// SourceAddress is the local address of the session (a loopback
	// address, say), of the family of PeerAddress. Every selected manager
	// replica must have it on its node, so it fits a peer whose
	// NodeSelector picks one node; for a peer of several replicas use
	// SourceInterface. Empty: the kernel picks the address of the route to
	// the router.
	// +optional
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="sourceAddress must be an IP address"
	SourceAddress string `json:"sourceAddress,omitempty"`

	// SourceInterface names a network interface of the nodes ("lo", say);
	// each selected manager replica uses its own node's first global
	// unicast address of PeerAddress's family on it as the session's local
	// address. One peer thus serves replicas with different loopback
	// addresses.
	// +optional
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:Pattern=`^[^\s/:]+$`
	SourceInterface string `json:"sourceInterface,omitempty"`

	// PasswordSecretRef names the Secret key that holds the TCP MD5
	// password. The Secret must be in the manager's namespace.
	// +optional
	PasswordSecretRef *SecretKeyRef `json:"passwordSecretRef,omitempty"`

	// GracefulRestart lets the router keep eiplb's routes while a manager
	// restarts.
	// +optional
	GracefulRestart *GracefulRestart `json:"gracefulRestart,omitempty"`

	// BFD detects a dead session in well under a second.
	// +optional
	BFD *BFD `json:"bfd,omitempty"`

	// AddPathSendMax is the number of paths (node next hops) per prefix sent
	// with ADD-PATH. Defaults to 64. 1 disables ADD-PATH (the router then
	// sees one next hop per prefix).
	// +optional
	// +kubebuilder:default=64
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=255
	AddPathSendMax int32 `json:"addPathSendMax,omitempty"`

	// NodeSelector chooses the nodes whose manager replicas peer with this
	// router. Empty: every replica.
	// +optional
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`

	// Families announced on the session. Defaults to both.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=2
	// +kubebuilder:validation:items:Enum=IPv4;IPv6
	Families []string `json:"families,omitempty"`
}

// SecretKeyRef names a key of a Secret in the manager's namespace.
type SecretKeyRef struct {
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key"`
}

// GracefulRestart settings (RFC 4724).
type GracefulRestart struct {
	// +required
	Enabled bool `json:"enabled"`
	// RestartTime the router keeps routes for. Defaults to 120s.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('4095s')",message="restartTime must be between 1s and 4095s"
	RestartTime *metav1.Duration `json:"restartTime,omitempty"`
}

// BFD settings (RFC 5880, single hop).
type BFD struct {
	// +required
	Enabled bool `json:"enabled"`
	// MinTxInterval; defaults to 100ms.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10ms') && duration(self) <= duration('60s')",message="minTxInterval must be between 10ms and 60s"
	MinTxInterval *metav1.Duration `json:"minTxInterval,omitempty"`
	// MinRxInterval; defaults to 100ms.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10ms') && duration(self) <= duration('60s')",message="minRxInterval must be between 10ms and 60s"
	MinRxInterval *metav1.Duration `json:"minRxInterval,omitempty"`
	// Multiplier of missed packets before the session is down; defaults to 5
	// (with 100ms: down after 0.5s, and stalls up to ~0.4s survived).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=255
	Multiplier *int32 `json:"multiplier,omitempty"`
}

// BGPPeerStatus reports the session of each manager replica. Each replica
// owns its own entry (server-side apply), so replicas never overwrite each
// other; an entry whose updatedAt is old belongs to a replica that is gone.
type BGPPeerStatus struct {
	// Summary of the sessions for kubectl get: "2/2 Established" (and
	// ", BFD 2/2 Up" when BFD runs), or "no sessions" when no manager
	// replica peers. Written by the manager replicas from every replica's
	// entry in Sessions.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Summary string `json:"summary,omitempty"`
	// Sessions, one per manager replica that peers with the router.
	// +optional
	// +listType=map
	// +listMapKey=manager
	Sessions []BGPSession `json:"sessions,omitempty"`
}

// BGPSession is one manager replica's session with the router.
type BGPSession struct {
	// Manager is the node name of the manager replica.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Manager string `json:"manager"`
	// State: Idle, Connect, Active, OpenSent, OpenConfirm, Established.
	// +optional
	State string `json:"state,omitempty"`
	// Since is when the session entered State.
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
	// PrefixesSent counts paths advertised on the session.
	// +optional
	PrefixesSent int64 `json:"prefixesSent"`
	// BFDState: Up, Down, Init, AdminDown, or empty without BFD.
	// +optional
	BFDState string `json:"bfdState,omitempty"`
	// LastError of the session, if any.
	// +optional
	LastError string `json:"lastError,omitempty"`
	// UpdatedAt is when the replica last wrote this entry.
	// +optional
	UpdatedAt *metav1.Time `json:"updatedAt,omitempty"`
}

// BGPPeer is a BGP router that eiplb announces addresses to.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=bgpp,categories=eiplb
// +kubebuilder:printcolumn:name="Sessions",type=string,JSONPath=`.status.summary`
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.spec.peerAddress`
// +kubebuilder:printcolumn:name="Peer ASN",type=integer,JSONPath=`.spec.peerASN`
// +kubebuilder:printcolumn:name="Local ASN",type=integer,JSONPath=`.spec.localASN`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BGPPeer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec BGPPeerSpec `json:"spec"`
	// +optional
	Status BGPPeerStatus `json:"status,omitempty"`
}

// BGPPeerList is a list of BGPPeers.
//
// +kubebuilder:object:root=true
type BGPPeerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BGPPeer `json:"items"`
}

func init() {
	SchemeBuilder.Register(&BGPPeer{}, &BGPPeerList{})
}
