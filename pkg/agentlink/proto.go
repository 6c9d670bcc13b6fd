// Package agentlink is the link between a node's agent and the managers:
// each manager replica holds one TCP connection to the agent of every node
// (the agent's address is the Node's InternalIP), over which the agent
// streams which Services it has programmed and a heartbeat. Nothing of it
// goes through the API server.
//
// The connection tells apart what the announcer must treat differently:
//   - heartbeats arrive: the agent is alive, its programmed set is current;
//   - the connection closes or is refused: the node's kernel answered, so the
//     host is up and only the agent process is gone; its rules stay in the
//     kernel and keep forwarding, so the node stays a next hop for a grace
//     period (an agent restart withdraws nothing);
//   - heartbeats stop, or a dial gets no answer: the node is unreachable
//     (host down, link cut): its next hops are withdrawn at once;
//   - the agent says it is draining: withdrawn at once, and the manager
//     acknowledges once its paths no longer use the node, so the agent can
//     exit knowing the router has moved away.
//
// Wire format: one JSON object per line, both directions.
package agentlink

import (
	"net/netip"
	"slices"
	"time"
)

// DefaultPort is the agent's link port.
const DefaultPort = 9474

// Defaults of the timing; see Options.
const (
	DefaultHeartbeat = 100 * time.Millisecond
	DefaultDeadAfter = 400 * time.Millisecond
	DefaultGrace     = 5 * time.Second
)

// Programmed is what an agent has programmed for one Service.
type Programmed struct {
	// Generation of the Service the rules were computed from.
	Generation int64 `json:"gen"`
	// Addrs are the EIPs the node forwards for the Service.
	Addrs []netip.Addr `json:"addrs"`
}

// Covers reports whether p covers every address of addrs.
func (p Programmed) Covers(addrs []netip.Addr) bool {
	for _, a := range addrs {
		if !slices.Contains(p.Addrs, a) {
			return false
		}
	}
	return true
}

// equal reports whether p and o are the same record.
func (p Programmed) equal(o Programmed) bool {
	return p.Generation == o.Generation && slices.Equal(p.Addrs, o.Addrs)
}

// agentMsg goes from the agent to a manager. An empty one is a heartbeat.
type agentMsg struct {
	Node string `json:"node,omitempty"`
	// Boot identifies the agent process; a new one means a restart.
	Boot string `json:"boot,omitempty"`
	// Full: Set is the whole programmed set (the first message).
	Full     bool                  `json:"full,omitempty"`
	Set      map[string]Programmed `json:"set,omitempty"`
	Del      []string              `json:"del,omitempty"`
	Draining bool                  `json:"draining,omitempty"`
}

// managerMsg goes from a manager to the agent.
type managerMsg struct {
	Manager string `json:"manager,omitempty"`
	// Drained acknowledges a drain: no path of this manager uses the node.
	Drained bool `json:"drained,omitempty"`
}
