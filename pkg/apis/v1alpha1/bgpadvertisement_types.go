package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BGPAdvertisementSpec says which allocated addresses are announced and with
// which attributes. An address is announced when at least one
// BGPAdvertisement selects its pool; with several, the one with the lowest
// name gives the attributes.
type BGPAdvertisementSpec struct {
	// PoolSelector selects EIPPools by label. Empty: every pool.
	// +optional
	PoolSelector *metav1.LabelSelector `json:"poolSelector,omitempty"`

	// PeerSelector selects the BGPPeers (by label) the addresses are
	// announced to. Empty: every peer. A selector that matches no peer
	// announces to none.
	// +optional
	PeerSelector *metav1.LabelSelector `json:"peerSelector,omitempty"`

	// NodeSelector limits the next hops to matching nodes. Empty: every
	// eligible node.
	// +optional
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`

	// Communities (RFC 1997) attached to the paths: "ASN:VALUE" with 16-bit
	// parts, or no-export, no-advertise, no-peer, blackhole.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=12
	// +kubebuilder:validation:items:Pattern=`^(([0-9]{1,5}:[0-9]{1,5})|no-export|no-advertise|no-peer|blackhole)$`
	// +kubebuilder:validation:items:XValidation:rule="!self.contains(':') || (int(self.split(':')[0]) <= 65535 && int(self.split(':')[1]) <= 65535)",message="community parts must be at most 65535"
	Communities []string `json:"communities,omitempty"`

	// LargeCommunities (RFC 8092): "GLOBAL:LOCAL1:LOCAL2", 32-bit parts.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=32
	// +kubebuilder:validation:items:Pattern=`^[0-9]{1,10}:[0-9]{1,10}:[0-9]{1,10}$`
	// +kubebuilder:validation:items:XValidation:rule="self.split(':').all(p, int(p) <= 4294967295)",message="large community parts must be at most 4294967295"
	LargeCommunities []string `json:"largeCommunities,omitempty"`

	// LocalPref is sent on iBGP sessions.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=4294967295
	LocalPref *int64 `json:"localPref,omitempty"`

	// AggregationLength announces the covering prefix of this length
	// instead of each IPv4 /32 (for example 24). Defaults to 32.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=32
	AggregationLength *int32 `json:"aggregationLength,omitempty"`

	// AggregationLengthV6 is the same for IPv6. Defaults to 128.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=128
	AggregationLengthV6 *int32 `json:"aggregationLengthV6,omitempty"`
}

// BGPAdvertisement announces the addresses of selected pools.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=bgpadv,categories=eiplb
// +kubebuilder:printcolumn:name="Communities",type=string,JSONPath=`.spec.communities`
// +kubebuilder:printcolumn:name="LocalPref",type=integer,JSONPath=`.spec.localPref`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BGPAdvertisement struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec BGPAdvertisementSpec `json:"spec"`
}

// BGPAdvertisementList is a list of BGPAdvertisements.
//
// +kubebuilder:object:root=true
type BGPAdvertisementList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BGPAdvertisement `json:"items"`
}

func init() {
	SchemeBuilder.Register(&BGPAdvertisement{}, &BGPAdvertisementList{})
}
