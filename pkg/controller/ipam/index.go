package ipam

import (
	"context"
	"fmt"
	"net/netip"

	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/ipam"
)

// allocationIndex keeps an ipam.Allocator in step with the EIPAllocation
// objects of the API server, through the manager's informer.
type allocationIndex struct {
	alloc *ipam.Allocator
	reg   toolscache.ResourceEventHandlerRegistration
	// changed is told the pool of every record the index took in, after the
	// index has it (informer handlers run in no set order, so a pool status
	// computed from a watch event of its own could miss the change).
	changed func(pool string)
}

// changed is called after a record of pool changed the allocator; freed
// after a deleted record freed its address (so that Services waiting for
// one retry only once the allocator knows it is free: the controller's own
// watch of the records can run their retry before this handler did).
func newAllocationIndex(ctx context.Context, c cache.Cache, alloc *ipam.Allocator, changed func(pool string), freed func()) (*allocationIndex, error) {
	inf, err := c.GetInformer(ctx, &v1alpha1.EIPAllocation{})
	if err != nil {
		return nil, fmt.Errorf("informer for EIPAllocations: %w", err)
	}
	idx := &allocationIndex{alloc: alloc, changed: changed}
	idx.reg, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { idx.set(obj) },
		UpdateFunc: func(_, obj any) { idx.set(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if ea, ok := obj.(*v1alpha1.EIPAllocation); ok {
				if addr, err := netip.ParseAddr(ea.Spec.Address); err == nil {
					alloc.Delete(addr)
					idx.changed(ea.Spec.Pool)
					freed()
				}
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("handler for EIPAllocations: %w", err)
	}
	return idx, nil
}

func (i *allocationIndex) set(obj any) {
	ea, ok := obj.(*v1alpha1.EIPAllocation)
	if !ok {
		return
	}
	if al, ok := fromAPI(ea); ok {
		i.alloc.Set(al)
		i.changed(al.Pool)
	}
}

// synced reports whether every object of the initial list reached the index.
func (i *allocationIndex) synced() bool { return i.reg.HasSynced() }

// fromAPI converts an EIPAllocation; an object whose name does not match its
// address (only possible when written by hand) is ignored.
func fromAPI(ea *v1alpha1.EIPAllocation) (ipam.Allocation, bool) {
	addr, err := netip.ParseAddr(ea.Spec.Address)
	if err != nil || ipam.AllocationName(addr) != ea.Name {
		return ipam.Allocation{}, false
	}
	al := ipam.Allocation{Addr: addr, Pool: ea.Spec.Pool, SharingKey: ea.Spec.SharingKey}
	for _, s := range ea.Spec.Services {
		al.Holders = append(al.Holders, ipam.Holder{UID: s.UID, Namespace: s.Namespace, Name: s.Name})
	}
	return al, true
}

func toAPI(al ipam.Allocation) *v1alpha1.EIPAllocation {
	ea := &v1alpha1.EIPAllocation{}
	ea.Name = ipam.AllocationName(al.Addr)
	ea.Spec = v1alpha1.EIPAllocationSpec{Address: al.Addr.String(), Pool: al.Pool, SharingKey: al.SharingKey}
	for _, h := range al.Holders {
		ea.Spec.Services = append(ea.Spec.Services, v1alpha1.ServiceReference{Namespace: h.Namespace, Name: h.Name, UID: h.UID})
	}
	return ea
}
