package v1alpha1

import corev1 "k8s.io/api/core/v1"

// Serves reports whether eiplb, serving class (and Services without a
// class when noClass), serves a Service: type LoadBalancer with that class.
func Serves(svc *corev1.Service, class string, noClass bool) bool {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return false
	}
	if svc.Spec.LoadBalancerClass == nil {
		return noClass
	}
	return *svc.Spec.LoadBalancerClass == class
}

// Service annotations and names eiplb reads.
const (
	// LoadBalancerClass is the spec.loadBalancerClass eiplb serves.
	LoadBalancerClass = "eiplb.io/bgp"

	// AnnotationPool names the EIPPool a Service takes its addresses from.
	AnnotationPool = "eiplb.io/pool"
	// AnnotationIP requests specific addresses: comma-separated, at most one
	// per family.
	AnnotationIP = "eiplb.io/ip"
	// AnnotationSharingKey lets Services of one namespace with the same key
	// and non-clashing ports share one address.
	AnnotationSharingKey = "eiplb.io/sharing-key"

	// ConditionIPAllocated is the Service condition that says whether the
	// Service has its addresses, and if not, why.
	ConditionIPAllocated = "eiplb.io/IPAllocated"
)

// Reasons of the ConditionIPAllocated condition and of IPAM Events.
const (
	ReasonAllocated            = "Allocated"
	ReasonNoMatchingPool       = "NoMatchingPool"
	ReasonPoolExhausted        = "PoolExhausted"
	ReasonRequestedIPNotInPool = "RequestedIPNotInPool"
	ReasonRequestedIPInUse     = "RequestedIPInUse"
	ReasonSharingConflict      = "SharingConflict"
	ReasonPoolNotReady         = "PoolNotReady"
	ReasonInvalidAnnotation    = "InvalidAnnotation"
	ReasonOrphaned             = "AddressOutsidePools"
	// ReasonSourceRangesIgnored: a Warning Event on a Service whose
	// loadBalancerSourceRanges hold entries that are not CIDRs, or nothing
	// for a family of its addresses (the agents then admit no client of
	// that family).
	ReasonSourceRangesIgnored = "SourceRangesIgnored"
)
