package main

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
)

type baselineResult struct {
	rate        float64   // plain status writes per second, both rounds
	rounds      []float64 // per round
	patternRate float64   // EIPAllocation create + status update, writes per second
	cpu         cpuUsage  // during the status-write rounds
	patternCPU  cpuUsage  // during the write pattern
	// eventsRate is the write pattern again while one goroutine posts an
	// events.k8s.io Event per Service, as the manager's event broadcaster
	// does (writes per second, Events not counted).
	eventsRate float64
	eventsCPU  cpuUsage
}

// baseline creates Services of a class eiplb does not serve and measures
// how fast workers (as many as the manager's) write their status: two
// rounds of one write per Service (addresses 10.200.x.y). With pattern, it
// then does what the manager does per Service, without a manager: create an
// EIPAllocation (for an address outside every pool, 10.201.x.y) and write
// the status. Everything is deleted afterwards.
func (b *bench) baseline(ctx context.Context, prefix string, pattern bool) (baselineResult, error) {
	var res baselineResult
	svcs, _, err := b.createServices(ctx, b.c, baselineNamespace, prefix, foreignClass, b.o.baseline, b.o.creators)
	if err != nil {
		return res, err
	}
	// Each worker owns the objects it is handed; Update refreshes their
	// resourceVersion, so no read is needed between writes.
	cpu0 := b.sampleCPU()
	var total time.Duration
	for r := 0; r < 2; r++ {
		t := time.Now()
		err := parallel(ctx, len(svcs), b.o.workers, func(ctx context.Context, i int) error {
			s := svcs[i]
			setIP(s, fmt.Sprintf("10.200.%d.%d", r*4+i/256, i%256))
			if err := b.c.Status().Update(ctx, s); err != nil {
				return fmt.Errorf("status of %s: %w", s.Name, err)
			}
			return nil
		})
		if err != nil {
			return res, err
		}
		d := time.Since(t)
		total += d
		res.rounds = append(res.rounds, float64(len(svcs))/d.Seconds())
	}
	res.cpu = usage(cpu0, b.sampleCPU())
	res.rate = float64(2*len(svcs)) / total.Seconds()

	var allocs []*v1alpha1.EIPAllocation
	if pattern {
		allocs = make([]*v1alpha1.EIPAllocation, len(svcs))
		cpu1 := b.sampleCPU()
		t := time.Now()
		err := parallel(ctx, len(svcs), b.o.workers, func(ctx context.Context, i int) error {
			ea, err := b.writePattern(ctx, svcs[i], fmt.Sprintf("10.201.%d.%d", i/256, i%256))
			allocs[i] = ea
			return err
		})
		if err != nil {
			return res, err
		}
		res.patternRate = float64(2*len(svcs)) / time.Since(t).Seconds()
		res.patternCPU = usage(cpu1, b.sampleCPU())

		// Again with Events, on the second half of the 10.201/16 range.
		events := make(chan *corev1.Service, len(svcs))
		posted := make(chan error, 1)
		go func() {
			var first error
			for s := range events {
				ev := &eventsv1.Event{
					ObjectMeta:          metav1.ObjectMeta{Namespace: s.Namespace, Name: fmt.Sprintf("%s.%x", s.Name, time.Now().UnixNano())},
					EventTime:           metav1.NewMicroTime(time.Now()),
					ReportingController: "bench", ReportingInstance: "bench",
					Action: "AllocateIP", Reason: v1alpha1.ReasonAllocated, Type: corev1.EventTypeNormal,
					Regarding: corev1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: s.Namespace, Name: s.Name, UID: s.UID},
					Note:      "Assigned " + s.Status.LoadBalancer.Ingress[0].IP + " from pool bench",
				}
				if err := b.c.Create(ctx, ev); err != nil && first == nil {
					first = err
				}
			}
			posted <- first
		}()
		allocs2 := make([]*v1alpha1.EIPAllocation, len(svcs))
		cpu2 := b.sampleCPU()
		t = time.Now()
		err = parallel(ctx, len(svcs), b.o.workers, func(ctx context.Context, i int) error {
			ea, err := b.writePattern(ctx, svcs[i], fmt.Sprintf("10.201.%d.%d", 128+i/256, i%256))
			allocs2[i] = ea
			if err != nil {
				return err
			}
			events <- svcs[i].DeepCopy()
			return nil
		})
		close(events)
		if err != nil {
			return res, err
		}
		res.eventsRate = float64(2*len(svcs)) / time.Since(t).Seconds()
		if err := <-posted; err != nil {
			return res, fmt.Errorf("posting an Event: %w", err)
		}
		res.eventsCPU = usage(cpu2, b.sampleCPU())
		allocs = append(allocs, allocs2...)
	}

	err = parallel(ctx, len(svcs), b.o.creators, func(ctx context.Context, i int) error {
		if err := b.c.Delete(ctx, svcs[i]); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		return nil
	})
	if err == nil {
		err = parallel(ctx, len(allocs), b.o.creators, func(ctx context.Context, i int) error {
			if allocs[i] == nil {
				return nil
			}
			if err := b.c.Delete(ctx, allocs[i]); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
			return nil
		})
	}
	if err != nil {
		return res, fmt.Errorf("deleting the baseline objects: %w", err)
	}
	return res, nil
}

// writePattern does what the manager does for one allocation: create the
// EIPAllocation record, then write the Service status.
func (b *bench) writePattern(ctx context.Context, s *corev1.Service, ip string) (*v1alpha1.EIPAllocation, error) {
	ea := &v1alpha1.EIPAllocation{
		ObjectMeta: metav1.ObjectMeta{Name: ip},
		Spec: v1alpha1.EIPAllocationSpec{Address: ip, Pool: "bench-baseline", Services: []v1alpha1.ServiceReference{
			{Namespace: s.Namespace, Name: s.Name, UID: string(s.UID)},
		}},
	}
	if err := b.c.Create(ctx, ea); err != nil {
		return nil, fmt.Errorf("creating EIPAllocation %s: %w", ip, err)
	}
	setIP(s, ip)
	if err := b.c.Status().Update(ctx, s); err != nil {
		return ea, fmt.Errorf("status of %s: %w", s.Name, err)
	}
	return ea, nil
}

// setIP sets a Service's status to one address, as the manager writes it.
func setIP(s *corev1.Service, ip string) {
	mode := corev1.LoadBalancerIPModeProxy
	s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip, IPMode: &mode}}
}
