package ipam

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
)

// Holder is a Service holding an address.
type Holder struct {
	UID       string
	Namespace string
	Name      string
}

func (h Holder) String() string { return h.Namespace + "/" + h.Name }

// Allocation is one recorded address and who holds it.
type Allocation struct {
	Addr       netip.Addr
	Pool       string
	SharingKey string
	Holders    []Holder
}

// Failure says why a family of a request could not be served. Reason is one
// of the v1alpha1.Reason* constants. Messages quote user input only through
// Quote and name at most a few Services or pools, so they stay short.
type Failure struct {
	Family  Family
	Reason  string
	Message string
}

func (f Failure) Error() string { return f.Reason + ": " + f.Message }

// Failure reasons (the same strings as the API's condition reasons).
const (
	ReasonNoMatchingPool       = "NoMatchingPool"
	ReasonPoolExhausted        = "PoolExhausted"
	ReasonRequestedIPNotInPool = "RequestedIPNotInPool"
	ReasonRequestedIPInUse     = "RequestedIPInUse"
	ReasonSharingConflict      = "SharingConflict"
	ReasonPoolNotReady         = "PoolNotReady"
)

// MaxHolders is the most Services one address can have: the API's limit on
// an EIPAllocation's spec.services (its MaxItems). A Service beyond it gets
// a SharingConflict instead of a write the API server refuses.
const MaxHolders = 256

// State says what the controller must do to make an Assignment durable.
type State int

const (
	// Held: already recorded for this Service; nothing to do.
	Held State = iota
	// Join: recorded for other Services with the same sharing key; add this
	// Service as a holder.
	Join
	// New: reserved in memory; create the record, then Commit or Unreserve.
	New
)

// Assignment is one address a Service should hold.
type Assignment struct {
	Addr       netip.Addr
	Pool       string
	SharingKey string
	State      State
}

// Result is the allocator's answer to a Request.
type Result struct {
	// Assignments, in the order of the request's families.
	Assignments []Assignment
	// Release lists addresses the Service holds but should no longer.
	Release []netip.Addr
	// Failures per family that could not be served.
	Failures []Failure
}

// JoinCheck decides whether the requesting Service may join an address
// already held by other Services with the same sharing key (ports and
// traffic policy). It returns a human-readable reason when not.
type JoinCheck func(Allocation) error

// Allocator is the in-memory index of allocations recorded in the API
// server, plus addresses reserved by creates in flight. It is safe for
// concurrent use. Being an index, it may lag the API server; the API
// server's refusal of duplicate allocation names is the real guard.
type Allocator struct {
	mu       sync.Mutex
	byAddr   map[netip.Addr]*Allocation
	byHolder map[string][]netip.Addr
	byName   map[string][]netip.Addr // "namespace/name" of holders
	byKey    map[string][]netip.Addr
	byPool   map[string]map[netip.Addr]struct{}
	reserved map[netip.Addr]string // address → UID of the reserving Service
	cursor   map[cursorKey]netip.Addr
}

type cursorKey struct {
	pool   string
	family Family
}

// NewAllocator returns an empty allocator.
func NewAllocator() *Allocator {
	return &Allocator{
		byAddr:   map[netip.Addr]*Allocation{},
		byHolder: map[string][]netip.Addr{},
		byName:   map[string][]netip.Addr{},
		byKey:    map[string][]netip.Addr{},
		byPool:   map[string]map[netip.Addr]struct{}{},
		reserved: map[netip.Addr]string{},
		cursor:   map[cursorKey]netip.Addr{},
	}
}

// Set records an allocation (from the API server, or after a successful
// write), replacing what was recorded for its address.
func (a *Allocator) Set(al Allocation) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.deleteLocked(al.Addr)
	c := al
	c.Holders = slices.Clone(al.Holders)
	a.byAddr[al.Addr] = &c
	for _, h := range c.Holders {
		a.byHolder[h.UID] = append(a.byHolder[h.UID], al.Addr)
		a.byName[h.String()] = append(a.byName[h.String()], al.Addr)
	}
	if c.SharingKey != "" {
		a.byKey[c.SharingKey] = append(a.byKey[c.SharingKey], al.Addr)
	}
	if a.byPool[c.Pool] == nil {
		a.byPool[c.Pool] = map[netip.Addr]struct{}{}
	}
	a.byPool[c.Pool][al.Addr] = struct{}{}
}

// Delete forgets the allocation of an address.
func (a *Allocator) Delete(addr netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.deleteLocked(addr)
}

func (a *Allocator) deleteLocked(addr netip.Addr) {
	old, ok := a.byAddr[addr]
	if !ok {
		return
	}
	delete(a.byAddr, addr)
	for _, h := range old.Holders {
		a.byHolder[h.UID] = removeAddr(a.byHolder[h.UID], addr)
		if len(a.byHolder[h.UID]) == 0 {
			delete(a.byHolder, h.UID)
		}
		a.byName[h.String()] = removeAddr(a.byName[h.String()], addr)
		if len(a.byName[h.String()]) == 0 {
			delete(a.byName, h.String())
		}
	}
	if old.SharingKey != "" {
		a.byKey[old.SharingKey] = removeAddr(a.byKey[old.SharingKey], addr)
		if len(a.byKey[old.SharingKey]) == 0 {
			delete(a.byKey, old.SharingKey)
		}
	}
	delete(a.byPool[old.Pool], addr)
	if len(a.byPool[old.Pool]) == 0 {
		delete(a.byPool, old.Pool)
	}
}

func removeAddr(s []netip.Addr, addr netip.Addr) []netip.Addr {
	return slices.DeleteFunc(s, func(x netip.Addr) bool { return x == addr })
}

// Get returns the allocation of an address.
func (a *Allocator) Get(addr netip.Addr) (Allocation, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	al, ok := a.byAddr[addr]
	if !ok {
		return Allocation{}, false
	}
	return cloneAlloc(al), true
}

func cloneAlloc(al *Allocation) Allocation {
	c := *al
	c.Holders = slices.Clone(al.Holders)
	return c
}

// HeldBy returns the allocations a Service holds, by address order.
func (a *Allocator) HeldBy(uid string) []Allocation {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []Allocation
	for _, addr := range a.byHolder[uid] {
		out = append(out, cloneAlloc(a.byAddr[addr]))
	}
	slices.SortFunc(out, func(x, y Allocation) int { return x.Addr.Compare(y.Addr) })
	return out
}

// HeldByName returns the allocations held by Services named
// namespace/name, whatever their UID (a deleted Service's, or an older
// incarnation's), by address order.
func (a *Allocator) HeldByName(namespace, name string) []Allocation {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []Allocation
	for _, addr := range a.byName[namespace+"/"+name] {
		out = append(out, cloneAlloc(a.byAddr[addr]))
	}
	slices.SortFunc(out, func(x, y Allocation) int { return x.Addr.Compare(y.Addr) })
	return out
}

// Unreserve drops an in-memory reservation made by Allocate. Call it after
// the create of a New assignment, whether it succeeded (after Set) or not.
func (a *Allocator) Unreserve(addr netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.reserved, addr)
}

// Usage is a pool's usage by family.
type Usage struct {
	Allocated map[Family]uint64
	// Orphaned counts allocations recorded against the pool whose address
	// the pool no longer contains.
	Orphaned uint64
}

// Usage counts the allocations recorded against a pool. p may be nil for a
// pool that no longer exists (everything is then orphaned).
func (a *Allocator) Usage(name string, p *Pool) Usage {
	a.mu.Lock()
	defer a.mu.Unlock()
	u := Usage{Allocated: map[Family]uint64{}}
	for addr := range a.byPool[name] {
		if p == nil || !p.Contains(addr) {
			u.Orphaned++
			continue
		}
		u.Allocated[FamilyOf(addr)]++
	}
	return u
}

// Pools returns the names of the pools that have allocations recorded.
func (a *Allocator) Pools() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.byPool))
	for name := range a.byPool {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// Allocate decides which addresses the Service of req should hold, given the
// current pools. Addresses already held are kept unless the request now asks
// for a different address, pool or sharing key: an address never changes
// under a running Service otherwise, not even when its pool shrinks or goes
// away. New addresses are reserved in memory; the caller makes them durable
// and then calls Unreserve. pools need not be sorted.
func (a *Allocator) Allocate(req Request, pools []*Pool, join JoinCheck) Result {
	a.mu.Lock()
	defer a.mu.Unlock()

	byName := make(map[string]*Pool, len(pools))
	for _, p := range pools {
		byName[p.Name] = p
	}
	var res Result
	keep := map[netip.Addr]bool{}
	var reservedNow []netip.Addr
	// keepHeld keeps what the Service already holds of a family, so a
	// request it can't satisfy never takes a working address away.
	keepHeld := func(fam Family) {
		for _, addr := range a.byHolder[req.UID] {
			if FamilyOf(addr) == fam {
				keep[addr] = true
				al := a.byAddr[addr]
				res.Assignments = append(res.Assignments, Assignment{Addr: addr, Pool: al.Pool, SharingKey: al.SharingKey, State: Held})
				return
			}
		}
	}
	for _, fam := range req.Families {
		asg, fail := a.allocateFamily(req, fam, pools, byName, join)
		if fail != nil {
			res.Failures = append(res.Failures, *fail)
			keepHeld(fam)
			continue
		}
		keep[asg.Addr] = true
		if asg.State == New {
			a.reserved[asg.Addr] = req.UID
			reservedNow = append(reservedNow, asg.Addr)
		}
		res.Assignments = append(res.Assignments, asg)
	}
	if req.RequireAll && len(res.Failures) > 0 {
		// All or nothing for new addresses; held ones stay.
		for _, addr := range reservedNow {
			delete(a.reserved, addr)
		}
		var dropped []Family
		res.Assignments = slices.DeleteFunc(res.Assignments, func(x Assignment) bool {
			if x.State != Held {
				delete(keep, x.Addr)
				dropped = append(dropped, FamilyOf(x.Addr))
				return true
			}
			return false
		})
		// A family whose new address was dropped keeps what it held.
		for _, fam := range dropped {
			keepHeld(fam)
		}
	}
	slices.SortStableFunc(res.Assignments, func(x, y Assignment) int {
		return slices.Index(req.Families, FamilyOf(x.Addr)) - slices.Index(req.Families, FamilyOf(y.Addr))
	})
	for _, addr := range a.byHolder[req.UID] {
		if !keep[addr] {
			res.Release = append(res.Release, addr)
		}
	}
	slices.SortFunc(res.Release, netip.Addr.Compare)
	return res
}

func (a *Allocator) allocateFamily(req Request, fam Family, pools []*Pool, byName map[string]*Pool, join JoinCheck) (Assignment, *Failure) {
	var requested netip.Addr
	for _, ip := range req.IPs {
		if FamilyOf(ip) == fam {
			requested = ip
		}
	}
	// Keep what is held when it still fits the request.
	for _, addr := range a.byHolder[req.UID] {
		al := a.byAddr[addr]
		if FamilyOf(addr) != fam || al.SharingKey != req.SharingKey {
			continue
		}
		if requested.IsValid() && addr != requested {
			continue
		}
		if req.Pool != "" && al.Pool != req.Pool {
			continue
		}
		return Assignment{Addr: addr, Pool: al.Pool, SharingKey: al.SharingKey, State: Held}, nil
	}

	candidates, fail := a.candidates(req, fam, pools, byName, requested.IsValid())
	if fail != nil {
		return Assignment{}, fail
	}

	if requested.IsValid() {
		var pool *Pool
		for _, p := range candidates {
			if p.Usable(requested) {
				pool = p
				break
			}
		}
		if pool == nil {
			return Assignment{}, &Failure{fam, ReasonRequestedIPNotInPool,
				fmt.Sprintf("%s is not a usable address of %s", requested, describePools(candidates))}
		}
		if al, ok := a.byAddr[requested]; ok {
			return a.join(req, fam, al, join, ReasonRequestedIPInUse)
		}
		if uid, ok := a.reserved[requested]; ok && uid != req.UID {
			return Assignment{}, &Failure{fam, ReasonRequestedIPInUse,
				fmt.Sprintf("%s is being allocated to another Service", requested)}
		}
		return Assignment{Addr: requested, Pool: pool.Name, SharingKey: req.SharingKey, State: New}, nil
	}

	if cur := req.current(fam); cur.IsValid() && !req.Sharing() {
		// Adopt the address the Service already shows (written before its
		// record existed, or by an earlier eiplb whose records are gone)
		// when it is free and fits the request.
		if _, used := a.byAddr[cur]; !used {
			if _, resv := a.reserved[cur]; !resv {
				if adopt, _ := a.candidates(req, fam, pools, byName, true); adopt != nil {
					for _, p := range adopt {
						if p.Usable(cur) {
							return Assignment{Addr: cur, Pool: p.Name, State: New}, nil
						}
					}
				}
			}
		}
	}

	if req.SharingKey != "" {
		for _, addr := range a.byKey[req.SharingKey] {
			if FamilyOf(addr) != fam {
				continue
			}
			al := a.byAddr[addr]
			if req.Pool != "" && al.Pool != req.Pool {
				return Assignment{}, &Failure{fam, ReasonSharingConflict,
					fmt.Sprintf("sharing key %q is in use with %s from pool %s, not pool %s", keyName(req.SharingKey), addr, al.Pool, req.Pool)}
			}
			return a.join(req, fam, al, join, ReasonSharingConflict)
		}
	}

	for _, p := range candidates {
		if addr, ok := a.nextFree(p, fam); ok {
			return Assignment{Addr: addr, Pool: p.Name, SharingKey: req.SharingKey, State: New}, nil
		}
	}
	return Assignment{}, &Failure{fam, ReasonPoolExhausted,
		fmt.Sprintf("no free %s address in %s", fam, describePools(candidates))}
}

func keyName(k string) string {
	_, name, _ := strings.Cut(k, "/")
	return name
}

func (a *Allocator) join(req Request, fam Family, al *Allocation, join JoinCheck, inUse string) (Assignment, *Failure) {
	if al.SharingKey == "" || al.SharingKey != req.SharingKey {
		return Assignment{}, &Failure{fam, inUse,
			fmt.Sprintf("%s is held by %s", al.Addr, describeHolders(al.Holders))}
	}
	if len(al.Holders) >= MaxHolders {
		return Assignment{}, &Failure{fam, ReasonSharingConflict,
			fmt.Sprintf("%s already has %d Services with sharing key %s, the most one address can have (%d); use another key for more",
				al.Addr, len(al.Holders), Quote(keyName(req.SharingKey)), MaxHolders)}
	}
	if join != nil {
		if err := join(cloneAlloc(al)); err != nil {
			return Assignment{}, &Failure{fam, ReasonSharingConflict,
				fmt.Sprintf("can't share %s with %s: %v", al.Addr, describeHolders(al.Holders), err)}
		}
	}
	return Assignment{Addr: al.Addr, Pool: al.Pool, SharingKey: al.SharingKey, State: Join}, nil
}

// maxNamed is how many Services or pools a message names before it says
// "and N more": a shared address can have 256 holders, and an Event note
// has at most 1024 characters.
const maxNamed = 3

func describeHolders(hs []Holder) string {
	if len(hs) == 0 {
		return "another Service"
	}
	names := make([]string, 0, len(hs))
	for _, h := range hs {
		names = append(names, h.String())
	}
	return "Service " + joinSome(names)
}

// joinSome joins the first maxNamed names and counts the rest.
func joinSome(names []string) string {
	if len(names) <= maxNamed {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:maxNamed], ", "), len(names)-maxNamed)
}

func describePools(ps []*Pool) string {
	if len(ps) == 1 {
		return "pool " + ps[0].Name
	}
	names := make([]string, 0, len(ps))
	for _, p := range ps {
		names = append(names, p.Name)
	}
	return "pools " + joinSome(names)
}

// candidates returns the pools that may serve family fam of req, in the
// order they are tried: the annotated pool alone; otherwise, for automatic
// allocation, pools whose selectors match first, then the other auto-assign
// pools, each group by priority then name. For a requested address, every
// enabled pool admitting the Service counts, auto-assign or not.
func (a *Allocator) candidates(req Request, fam Family, pools []*Pool, byName map[string]*Pool, specific bool) ([]*Pool, *Failure) {
	if req.Pool != "" {
		p, ok := byName[req.Pool]
		switch {
		case !ok:
			return nil, &Failure{fam, ReasonNoMatchingPool, fmt.Sprintf("pool %s does not exist", req.Pool)}
		case p.Problem != nil:
			return nil, &Failure{fam, ReasonPoolNotReady, fmt.Sprintf("pool %s is not used for new addresses (%s): %s", req.Pool, p.Problem.Reason, p.Problem.Message)}
		case p.Disabled:
			return nil, &Failure{fam, ReasonPoolNotReady, fmt.Sprintf("pool %s is disabled: no new addresses are given from it", req.Pool)}
		case !p.Admits(req.NamespaceLabels, req.Labels):
			return nil, &Failure{fam, ReasonNoMatchingPool, fmt.Sprintf("pool %s does not serve this Service (its selectors don't match)", req.Pool)}
		case !p.HasFamily(fam):
			return nil, &Failure{fam, ReasonNoMatchingPool, fmt.Sprintf("pool %s has no %s addresses", req.Pool, fam)}
		case p.Capacity(fam) == 0:
			return nil, &Failure{fam, ReasonNoMatchingPool, fmt.Sprintf("pool %s has no usable %s addresses (it holds only %s)", req.Pool, fam, strings.Join(p.Skipped(fam), ", "))}
		}
		return []*Pool{p}, nil
	}
	var selected, general []*Pool
	for _, p := range pools {
		if p.Problem != nil || p.Disabled || !p.HasFamily(fam) || !p.Admits(req.NamespaceLabels, req.Labels) {
			continue
		}
		if !specific && !p.AutoAssign {
			continue
		}
		if p.HasSelector() {
			selected = append(selected, p)
		} else {
			general = append(general, p)
		}
	}
	SortPools(selected)
	SortPools(general)
	out := append(selected, general...)
	if len(out) == 0 {
		return nil, &Failure{fam, ReasonNoMatchingPool,
			fmt.Sprintf("no enabled %s pool serves this Service automatically; name one with the eiplb.io/pool annotation or add one", fam)}
	}
	return out, nil
}

// nextFree returns the next usable, unallocated, unreserved address of the
// pool after the pool's cursor, wrapping around. It looks at no more
// usable addresses than are taken plus one, so a large IPv6 range costs no
// more than a small one; special blocks are not walked at all, and the
// other skipped addresses are sparse.
func (a *Allocator) nextFree(p *Pool, fam Family) (netip.Addr, bool) {
	ranges := p.pieces(fam)
	if len(ranges) == 0 {
		return netip.Addr{}, false
	}
	capacity := p.Capacity(fam)
	budget := uint64(len(a.byAddr)+len(a.reserved)) + 1
	if capacity < budget {
		budget = capacity
	}
	key := cursorKey{p.Name, fam}
	addr, ri := a.start(ranges, a.cursor[key])
	for i := uint64(0); i < budget; {
		if !p.skip(addr) {
			i++
			_, used := a.byAddr[addr]
			_, resv := a.reserved[addr]
			if !used && !resv {
				a.cursor[key] = addr
				return addr, true
			}
		}
		addr, ri = step(ranges, addr, ri)
	}
	return netip.Addr{}, false
}

// start returns the address after cur within ranges (wrapping), and the
// index of its range. An invalid or foreign cursor starts at the beginning.
func (a *Allocator) start(ranges []Range, cur netip.Addr) (netip.Addr, int) {
	if cur.IsValid() {
		for i, r := range ranges {
			if r.Contains(cur) {
				return step(ranges, cur, i)
			}
		}
	}
	return ranges[0].First, 0
}

func step(ranges []Range, addr netip.Addr, ri int) (netip.Addr, int) {
	if addr != ranges[ri].Last {
		return addr.Next(), ri
	}
	ri = (ri + 1) % len(ranges)
	return ranges[ri].First, ri
}
