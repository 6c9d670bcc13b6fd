package agent

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	syncSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "eiplb_agent_sync_seconds",
		Help:    "Time to write rules to the kernel: the initial sync of every Service, or one Service's change.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"kind"})
	syncErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "eiplb_agent_sync_errors_total",
		Help: "Kernel writes that failed (each followed by a full re-sync).",
	})
	repairs = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "eiplb_agent_repairs_total",
		Help: "Times the agent found its kernel table changed by something else and rewrote it.",
	})
	servicesProgrammed = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "eiplb_agent_services_programmed",
		Help: "Services whose rules are in the kernel.",
	})
)

func init() {
	metrics.Registry.MustRegister(syncSeconds, syncErrors, repairs, servicesProgrammed)
}
