package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// EIPPoolSpec is the set of addresses an admin hands to eiplb, and the rules
// for which Services may take them.
type EIPPoolSpec struct {
	// Addresses are the pool's addresses: CIDRs ("192.0.2.0/24",
	// "2001:db8::/120"), inclusive ranges ("192.0.2.10-192.0.2.20") or single
	// addresses, IPv4 and IPv6 mixed. Each entry is validated by the API
	// server.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=100
	// +kubebuilder:validation:items:XValidation:rule="isCIDR(self) || isIP(self) || (self.split('-').size() == 2 && isIP(self.split('-')[0]) && isIP(self.split('-')[1]) && ip(self.split('-')[0]).family() == ip(self.split('-')[1]).family())",message="each address must be a CIDR, an IP, or a range 'first-last' of one family"
	// +listType=atomic
	Addresses []string `json:"addresses"`

	// AutoAssign lets Services that name no pool and match no selector take
	// addresses from this pool. Defaults to true.
	// +optional
	// +kubebuilder:default=true
	AutoAssign *bool `json:"autoAssign,omitempty"`

	// AvoidBuggyIPs skips IPv4 addresses ending in .0 or .255, which some
	// old client stacks mistake for network or broadcast addresses.
	// +optional
	AvoidBuggyIPs bool `json:"avoidBuggyIPs,omitempty"`

	// Priority orders pools when several could serve a Service: lower values
	// are tried first, ties are broken by name. Defaults to 0.
	// +optional
	// +kubebuilder:validation:Minimum=-1000
	// +kubebuilder:validation:Maximum=1000
	Priority int32 `json:"priority,omitempty"`

	// NamespaceSelector restricts the pool to Services in namespaces whose
	// labels match. A pool with a selector is preferred for the Services it
	// matches over pools without one; it serves no other Service.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// ServiceSelector restricts the pool to Services whose labels match, with
	// the same preference as NamespaceSelector. When both are set, both must
	// match.
	// +optional
	ServiceSelector *metav1.LabelSelector `json:"serviceSelector,omitempty"`

	// Disabled stops new allocations from this pool. Services that already
	// hold one of its addresses keep it.
	// +optional
	Disabled bool `json:"disabled,omitempty"`
}

// EIPPoolStatus is the pool's usage, written by the manager at a bounded rate.
type EIPPoolStatus struct {
	// Capacity is the number of usable IPv4 addresses plus IPv6 addresses
	// (saturating at 2^63-1 for large IPv6 ranges).
	// +optional
	Capacity int64 `json:"capacity"`
	// Allocated is the number of the pool's addresses held by Services.
	// +optional
	Allocated int64 `json:"allocated"`
	// Free is Capacity minus Allocated.
	// +optional
	Free int64 `json:"free"`
	// Orphaned counts addresses still held by Services that the pool no
	// longer contains (after a shrink). They are kept until the Service
	// releases them.
	// +optional
	Orphaned int64 `json:"orphaned"`
	// IPv4 and IPv6 split the counts above by family.
	// +optional
	IPv4 *FamilyUsage `json:"ipv4,omitempty"`
	// +optional
	IPv6 *FamilyUsage `json:"ipv6,omitempty"`
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready (usable for new allocations) with reasons Ready,
	// Overlap, Disabled, Exhausted.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// FamilyUsage is the usage of one address family of a pool.
type FamilyUsage struct {
	// +optional
	Capacity int64 `json:"capacity"`
	// +optional
	Allocated int64 `json:"allocated"`
	// +optional
	Free int64 `json:"free"`
}

// Pool condition types and reasons.
const (
	PoolConditionReady = "Ready"

	PoolReasonReady     = "Ready"
	PoolReasonOverlap   = "Overlap"
	PoolReasonDisabled  = "Disabled"
	PoolReasonExhausted = "Exhausted"
)

// EIPPool is a set of external addresses that eiplb allocates to Services of
// type LoadBalancer.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=eippool;eipp,categories=eiplb
// +kubebuilder:printcolumn:name="Capacity",type=integer,JSONPath=`.status.capacity`
// +kubebuilder:printcolumn:name="Allocated",type=integer,JSONPath=`.status.allocated`
// +kubebuilder:printcolumn:name="Free",type=integer,JSONPath=`.status.free`
// +kubebuilder:printcolumn:name="Auto",type=boolean,JSONPath=`.spec.autoAssign`
// +kubebuilder:printcolumn:name="Priority",type=integer,JSONPath=`.spec.priority`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type EIPPool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec EIPPoolSpec `json:"spec"`
	// +optional
	Status EIPPoolStatus `json:"status,omitempty"`
}

// EIPPoolList is a list of EIPPools.
//
// +kubebuilder:object:root=true
type EIPPoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []EIPPool `json:"items"`
}

func init() {
	SchemeBuilder.Register(&EIPPool{}, &EIPPoolList{})
}
