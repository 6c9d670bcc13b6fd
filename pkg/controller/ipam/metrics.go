package ipam

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Metric label names.
const (
	labelPool   = "pool"
	labelFamily = "family"
	labelReason = "reason"
)

var (
	poolAddresses = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "eiplb_pool_addresses",
		Help: "Usable addresses of a pool, by family.",
	}, []string{labelPool, labelFamily})
	poolAllocated = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "eiplb_pool_addresses_allocated",
		Help: "Addresses of a pool held by Services, by family.",
	}, []string{labelPool, labelFamily})
	allocationErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "eiplb_ipam_allocation_errors_total",
		Help: "Allocation attempts that left a Service without an address it asked for, by reason.",
	}, []string{labelReason})
	allocations = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "eiplb_ipam_allocations_total",
		Help: "Addresses newly recorded for Services.",
	})
)

func init() {
	metrics.Registry.MustRegister(poolAddresses, poolAllocated, allocationErrors, allocations)
}
