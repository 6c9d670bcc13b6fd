package announce

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

const (
	labelPeer = "peer"
	labelStep = "step"
)

// Steps of the session status writer (label step).
const (
	stepSpeaker = "speaker" // reading the sessions from the speaker
	stepList    = "list"    // listing the BGPPeers
	stepWrite   = "write"   // writing a BGPPeer's status
)

var (
	sessionUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "eiplb_bgp_session_up",
		Help: "1 when this replica's BGP session with the peer is established.",
	}, []string{labelPeer})
	bfdUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "eiplb_bgp_bfd_up",
		Help: "1 when BFD with the peer is up (absent without BFD).",
	}, []string{labelPeer})
	prefixesSent = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "eiplb_bgp_prefixes_sent",
		Help: "Paths this replica advertised to the peer.",
	}, []string{labelPeer})
	pathsAnnounced = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "eiplb_bgp_paths",
		Help: "Paths (prefix and next hop) this replica announces.",
	})
	pathUpdates = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "eiplb_bgp_path_updates_total",
		Help: "Paths handed to the BGP speaker, by operation (announce, withdraw).",
	}, []string{"operation"})
	announceLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "eiplb_announce_latency_seconds",
		Help:    "Time from a Service, EndpointSlice or Node change being seen to its paths being handed to the BGP speaker.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	})
	statusWriteErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "eiplb_bgp_status_write_errors_total",
		Help: "Failures of this replica's BGP session status writer, by step (speaker, list, write); it retries every interval.",
	}, []string{labelStep})
	agentUnprogrammed = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "eiplb_agent_unprogrammed_services",
		Help: "Services with addresses that a node's up agent has not programmed (the node is not their next hop), as of this replica's last EIPNode write; 0 while the agent is not up.",
	}, []string{"node"})
)

func init() {
	metrics.Registry.MustRegister(sessionUp, bfdUp, prefixesSent, pathsAnnounced, pathUpdates, announceLatency, statusWriteErrors, agentUnprogrammed)
}
