package v1alpha1

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
	ReasonInvalidAnnotation    = "InvalidAnnotation"
	ReasonOrphaned             = "AddressOutsidePools"
)
