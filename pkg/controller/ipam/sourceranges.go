package ipam

import (
	"net/netip"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/eiplb/eiplb/pkg/dataplane"
	"github.com/eiplb/eiplb/pkg/ipam"
)

// rangeReports remembers the source-range problem last reported per
// Service, so each one is reported once (the agents, which enforce the
// ranges, run on every node and report nothing).
type rangeReports struct {
	mu   sync.Mutex
	last map[types.UID]string
}

// check returns the problem of svc's source ranges when it is new since
// the last check of svc, "" otherwise.
func (r *rangeReports) check(svc *corev1.Service) string {
	// The families of its addresses are the Service's families (decided
	// by the API server), known before any address is: the reconcile
	// after the status write is filtered out as the manager's own echo.
	var eips []netip.Addr
	for _, f := range svc.Spec.IPFamilies {
		switch f {
		case corev1.IPv4Protocol:
			eips = append(eips, netip.IPv4Unspecified())
		case corev1.IPv6Protocol:
			eips = append(eips, netip.IPv6Unspecified())
		}
	}
	msg := dataplane.SourceRanges(svc).Problems(eips, ipam.Quote)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last = map[types.UID]string{}
	}
	if r.last[svc.UID] == msg {
		return ""
	}
	if msg == "" {
		delete(r.last, svc.UID)
	} else {
		r.last[svc.UID] = msg
	}
	return msg
}

// forget drops what was reported for a Service that is gone or no longer
// served.
func (r *rangeReports) forget(uid types.UID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.last, uid)
}
