package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Agent phases as a manager replica sees a node's agent (pkg/agentlink).
const (
	AgentPhaseUnknown     = "Unknown"
	AgentPhaseUp          = "Up"
	AgentPhaseAgentDown   = "AgentDown"
	AgentPhaseGone        = "Gone"
	AgentPhaseUnreachable = "Unreachable"
	AgentPhaseDraining    = "Draining"
)

// MaxUnprogrammedListed bounds EIPNodeAgent.UnprogrammedServices; the count
// in Unprogrammed is always exact.
const MaxUnprogrammedListed = 50

// EIPNodeStatus is what the manager replicas know of one node's agent.
// Each replica owns its own entry (server-side apply), as in BGPPeer status.
type EIPNodeStatus struct {
	// Summary of the replicas' views for kubectl get: "2/2 Up, all
	// programmed", "1/2 Up, 3 unprogrammed" (the most any replica counts),
	// or "no managers". Written by the manager replicas from every
	// replica's entry in Agents.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Summary string `json:"summary,omitempty"`
	// Agents: one entry per manager replica, that replica's view of the
	// node's agent.
	// +optional
	// +listType=map
	// +listMapKey=manager
	Agents []EIPNodeAgent `json:"agents,omitempty"`
}

// EIPNodeAgent is one manager replica's view of a node's agent. A node is a
// next hop of a Service for that replica only while Phase is Up (or
// AgentDown, within the grace period) and the agent has programmed the
// Service.
type EIPNodeAgent struct {
	// Manager is the node name of the manager replica.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Manager string `json:"manager"`
	// Phase of the agent link: Unknown (no answer yet), Up (heartbeats
	// arriving), AgentDown (the host answers but the agent process is gone;
	// its rules keep forwarding during the grace period), Gone (no agent for
	// longer than the grace period), Unreachable (heartbeats stopped: host or
	// link down), Draining (the agent asked to be withdrawn).
	// +optional
	// +kubebuilder:validation:Enum=Unknown;Up;AgentDown;Gone;Unreachable;Draining
	Phase string `json:"phase,omitempty"`
	// Since is when the agent entered Phase.
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
	// Boot identifies the agent process; it changes when the agent restarts.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Boot string `json:"boot,omitempty"`
	// Programmed counts the Services the agent reports programmed.
	// +optional
	Programmed int32 `json:"programmed"`
	// Unprogrammed counts the Services with addresses that the agent has not
	// programmed (with every one of their addresses): for them the node is not
	// a next hop. Zero in a settled cluster; only meaningful while Phase is Up,
	// AgentDown or Draining.
	// +optional
	Unprogrammed int32 `json:"unprogrammed"`
	// UnprogrammedServices names the first of them ("namespace/name",
	// sorted), at most 50.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=50
	// +kubebuilder:validation:items:MaxLength=317
	UnprogrammedServices []string `json:"unprogrammedServices,omitempty"`
	// UpdatedAt is when the replica last wrote this entry. Counts are written
	// at a bounded rate (about 10 entries a second per replica), so they may
	// lag by a few seconds in a large cluster; a phase change is written at
	// once.
	// +optional
	UpdatedAt *metav1.Time `json:"updatedAt,omitempty"`
}

// EIPNode is eiplb's view of one Node: how each manager replica sees the
// node's agent and which Services it has programmed. It is named after the
// Node, owned by it (deleted with it) and written only by the managers; it
// has no spec.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=eipn,categories=eiplb
// +kubebuilder:printcolumn:name="Agents",type=string,JSONPath=`.status.summary`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type EIPNode struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Status EIPNodeStatus `json:"status,omitempty"`
}

// EIPNodeList is a list of EIPNodes.
//
// +kubebuilder:object:root=true
type EIPNodeList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []EIPNode `json:"items"`
}

func init() {
	SchemeBuilder.Register(&EIPNode{}, &EIPNodeList{})
}
