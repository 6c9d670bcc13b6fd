package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// EIPAllocationSpec records that one address is held by one Service, or by a
// group of Services sharing it. The object's name is derived from the address
// (see pkg/ipam.AllocationName), so the API server itself guarantees that no
// address is ever held twice: a second allocator's create fails with
// AlreadyExists. Written only by the manager.
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.sharingKey) || (has(self.sharingKey) && self.sharingKey == oldSelf.sharingKey)",message="sharingKey is immutable"
type EIPAllocationSpec struct {
	// Address is the allocated address in canonical form.
	// +required
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="address must be an IP address"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="address is immutable"
	Address string `json:"address"`

	// Pool is the EIPPool the address was taken from.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Pool string `json:"pool"`

	// SharingKey is "<namespace>/<key>" when the address may be shared by
	// Services of that namespace that carry the eiplb.io/sharing-key
	// annotation <key>; empty for an address held by one Service.
	// +optional
	// +kubebuilder:validation:MaxLength=317
	SharingKey string `json:"sharingKey,omitempty"`

	// Services holding the address.
	// +optional
	// +listType=map
	// +listMapKey=uid
	// +kubebuilder:validation:MaxItems=256
	Services []ServiceReference `json:"services,omitempty"`
}

// ServiceReference names a Service by namespace, name and UID.
type ServiceReference struct {
	// +required
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace"`
	// +required
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
	// +required
	// +kubebuilder:validation:MaxLength=36
	UID string `json:"uid"`
}

// EIPAllocation is the durable record of one allocated address.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=eipalloc,categories=eiplb
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.spec.address`
// +kubebuilder:printcolumn:name="Pool",type=string,JSONPath=`.spec.pool`
// +kubebuilder:printcolumn:name="Service",type=string,JSONPath=`.spec.services[0].name`
// +kubebuilder:printcolumn:name="Sharing",type=string,JSONPath=`.spec.sharingKey`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type EIPAllocation struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec EIPAllocationSpec `json:"spec"`
}

// EIPAllocationList is a list of EIPAllocations.
//
// +kubebuilder:object:root=true
type EIPAllocationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []EIPAllocation `json:"items"`
}

func init() {
	SchemeBuilder.Register(&EIPAllocation{}, &EIPAllocationList{})
}
