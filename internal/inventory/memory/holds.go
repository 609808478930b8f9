// Package memory holds in-process adapters for the inventory module's ports, for embedded mode
// and tests. They keep the semantics of the Redis and PostgreSQL adapters (the suites in
// inventory/holdstest and inventory/storetest prove it) but live and die with the process.
package memory

import (
	"container/heap"
	"context"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/inventory"
)

type holdRecord struct {
	h      inventory.Hold
	expiry time.Time // after this the record is forgotten
}

// ticketType is one ticket type's state; it has its own lock, as a Redis hash slot would.
type ticketType struct {
	mu      sync.Mutex
	rules   inventory.HoldRules
	sold    int
	held    int
	live    map[string]time.Time // hold id → expiry
	holds   map[string]*holdRecord
	byOwner map[uuid.UUID]map[string]time.Time
	// liveByTime and recordsByTime order ids by deadline so pruning only looks at what is due.
	// Entries go stale when a deadline moves; they are checked against the maps when popped.
	liveByTime    deadlines
	recordsByTime deadlines
}

func newTicketType() *ticketType {
	return &ticketType{live: map[string]time.Time{}, holds: map[string]*holdRecord{}, byOwner: map[uuid.UUID]map[string]time.Time{}}
}

func (t *ticketType) setLive(id string, exp time.Time) {
	t.live[id] = exp
	if n := len(t.liveByTime); n >= 1024 && n > 4*len(t.live) {
		// Mostly stale entries of holds released or sold before their expiry: rebuilt from
		// the live holds, so a sale of many short-lived holds does not grow the heap without end.
		clear(t.liveByTime) // drops the stale ids
		t.liveByTime = t.liveByTime[:0]
		for id, exp := range t.live {
			t.liveByTime = append(t.liveByTime, deadline{id, exp})
		}
		heap.Init(&t.liveByTime)
		return
	}
	heap.Push(&t.liveByTime, deadline{id, exp})
}

func (t *ticketType) setRecord(id string, rec *holdRecord) {
	t.holds[id] = rec
	heap.Push(&t.recordsByTime, deadline{id, rec.expiry})
}

type deadline struct {
	id string
	at time.Time
}

// deadlines is a min-heap of deadlines.
type deadlines []deadline

func (d deadlines) Len() int           { return len(d) }
func (d deadlines) Less(i, j int) bool { return d[i].at.Before(d[j].at) }
func (d deadlines) Swap(i, j int)      { d[i], d[j] = d[j], d[i] }
func (d *deadlines) Push(x any)        { *d = append(*d, x.(deadline)) }
func (d *deadlines) Pop() any {
	old := *d
	x := old[len(old)-1]
	*d = old[:len(old)-1]
	return x
}

// Holds is a HoldStore in memory.
type Holds struct {
	keep   time.Duration
	mu     sync.RWMutex
	types  map[uuid.UUID]*ticketType
	Pruned func(n int) // told how many expired holds each operation returned to the pool
}

var _ inventory.HoldStore = (*Holds)(nil)

// NewHolds returns an empty store that keeps finished hold records readable for keep.
func NewHolds(keep time.Duration) *Holds {
	return &Holds{keep: keep, types: map[uuid.UUID]*ticketType{}}
}

func (s *Holds) get(id uuid.UUID) *ticketType {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.types[id]
}

// Flush forgets everything, as a Redis restart without persistence would.
func (s *Holds) Flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.types = map[uuid.UUID]*ticketType{}
}

// prune returns expired holds to the pool and forgets old records; the caller holds t.mu.
func (s *Holds) prune(t *ticketType, now time.Time) {
	n := 0
	for t.liveByTime.Len() > 0 && !now.Before(t.liveByTime[0].at) {
		d := heap.Pop(&t.liveByTime).(deadline)
		if exp, ok := t.live[d.id]; !ok || !exp.Equal(d.at) {
			continue // released, committed or extended since
		}
		if rec := t.holds[d.id]; rec != nil {
			t.held -= rec.h.Quantity
			if rec.h.Status.Live() {
				rec.h.Status = inventory.HoldExpired
			}
			delete(t.byOwner[rec.h.CustomerID], d.id)
		}
		delete(t.live, d.id)
		n++
	}
	for t.recordsByTime.Len() > 0 && !now.Before(t.recordsByTime[0].at) {
		d := heap.Pop(&t.recordsByTime).(deadline)
		if rec, ok := t.holds[d.id]; ok && rec.expiry.Equal(d.at) {
			delete(t.holds, d.id)
		}
	}
	if n > 0 && s.Pruned != nil {
		s.Pruned(n)
	}
}

// Configure implements inventory.HoldStore.
func (s *Holds) Configure(_ context.Context, r inventory.HoldRules) error {
	s.mu.Lock()
	t, ok := s.types[r.TicketTypeID]
	if !ok {
		t = newTicketType()
		s.types[r.TicketTypeID] = t
	}
	s.mu.Unlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rules = r
	t.sold = max(t.sold, r.Sold)
	return nil
}

// SetCapacity implements inventory.HoldStore.
func (s *Holds) SetCapacity(_ context.Context, id uuid.UUID, capacity int, now time.Time) error {
	t := s.get(id)
	if t == nil {
		return inventory.ErrNotConfigured
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s.prune(t, now)
	if capacity < t.sold+t.held {
		return inventory.ErrCapacityBelowCommitted.WithDetail("%d tickets are sold or held", t.sold+t.held)
	}
	t.rules.Capacity = capacity
	return nil
}

// Hold implements inventory.HoldStore.
func (s *Holds) Hold(_ context.Context, req inventory.HoldRequest) (inventory.Hold, bool, error) {
	t := s.get(req.TicketTypeID)
	if t == nil {
		return inventory.Hold{}, false, inventory.ErrNotConfigured
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := req.Now
	s.prune(t, now)
	if rec, ok := t.holds[req.ID]; ok {
		if rec.h.CustomerID != req.CustomerID || rec.h.Quantity != req.Quantity {
			return inventory.Hold{}, false, inventory.ErrIdempotencyMismatch.WithDetail("this Idempotency-Key was used for a different hold")
		}
		return viewAt(rec.h, now), false, nil
	}
	r := t.rules
	if r.Room != uuid.Nil && r.Room != req.Pass {
		return inventory.Hold{}, false, inventory.PassRefused(req.Pass)
	}
	if req.Quantity > r.MaxPerOrder {
		return inventory.Hold{}, false, inventory.ErrOverOrderLimit.WithDetail("at most %d tickets per order", r.MaxPerOrder)
	}
	if !r.SalesStart.IsZero() && now.Before(r.SalesStart) {
		return inventory.Hold{}, false, inventory.ErrSalesClosed.WithDetail("sales have not started yet")
	}
	if !r.SalesEnd.IsZero() && !now.Before(r.SalesEnd) {
		return inventory.Hold{}, false, inventory.ErrSalesClosed.WithDetail("sales have ended")
	}
	// Sold out is the commonest answer of an on-sale: decided before looking at the customer.
	if avail := r.Capacity - t.sold - t.held; req.Quantity > avail {
		return inventory.Hold{}, false, inventory.SoldOut(max(avail, 0))
	}
	owned := t.byOwner[req.CustomerID]
	earliest := time.Time{}
	for id, exp := range owned {
		if !now.Before(exp) {
			delete(owned, id)
		} else if earliest.IsZero() || exp.Before(earliest) {
			earliest = exp
		}
	}
	if len(owned) >= req.MaxLive {
		return inventory.Hold{}, false, inventory.ErrTooManyHolds.WithDetail("you already have %d live holds on this ticket type", req.MaxLive).
			WithRetryAfter(earliest.Sub(now))
	}
	// Redis keeps time in whole milliseconds; so does this store, to behave the same.
	exp := time.UnixMilli(now.Add(req.TTL).UnixMilli()).UTC()
	h := inventory.Hold{
		ID: req.ID, TicketTypeID: req.TicketTypeID, CustomerID: req.CustomerID, Quantity: req.Quantity,
		UnitPriceCents: r.PriceCents, Currency: r.Currency, Status: inventory.HoldActive,
		ExpiresAt: exp, CreatedAt: time.UnixMilli(now.UnixMilli()).UTC(),
	}
	t.setRecord(req.ID, &holdRecord{h: h, expiry: exp.Add(s.keep)})
	t.setLive(req.ID, exp)
	t.held += req.Quantity
	if owned == nil {
		owned = map[string]time.Time{}
		t.byOwner[req.CustomerID] = owned
	}
	owned[req.ID] = exp
	return h, true, nil
}

func viewAt(h inventory.Hold, now time.Time) inventory.Hold {
	if h.Status.Live() && !now.Before(h.ExpiresAt) {
		h.Status = inventory.HoldExpired
	}
	return h
}

func (s *Holds) record(id string, now time.Time) (*ticketType, *holdRecord) {
	tt, ok := inventory.ParseHoldID(id)
	if !ok {
		return nil, nil
	}
	t := s.get(tt)
	if t == nil {
		return nil, nil
	}
	t.mu.Lock()
	rec := t.holds[id]
	if rec != nil && !now.Before(rec.expiry) {
		delete(t.holds, id)
		rec = nil
	}
	return t, rec // t.mu stays locked for the caller
}

// Get implements inventory.HoldStore.
func (s *Holds) Get(_ context.Context, id string, now time.Time) (inventory.Hold, error) {
	t, rec := s.record(id, now)
	if t == nil {
		return inventory.Hold{}, inventory.ErrHoldNotFound
	}
	defer t.mu.Unlock()
	if rec == nil {
		return inventory.Hold{}, inventory.ErrHoldNotFound
	}
	return viewAt(rec.h, now), nil
}

// Checkout implements inventory.HoldStore.
func (s *Holds) Checkout(_ context.Context, id string, orderID uuid.UUID, until, now time.Time) (inventory.Hold, error) {
	t, rec := s.record(id, now)
	if t == nil {
		return inventory.Hold{}, inventory.ErrHoldNotFound
	}
	defer t.mu.Unlock()
	if rec == nil {
		return inventory.Hold{}, inventory.ErrHoldNotFound
	}
	if rec.h.OrderID != uuid.Nil && rec.h.OrderID != orderID {
		return inventory.Hold{}, inventory.ErrHoldOrdered.WithDetail("the hold is checked out by another order")
	}
	if !rec.h.Live(now) {
		return inventory.Hold{}, inventory.ErrHoldNotLive.WithDetail("the hold has %s", viewAt(rec.h, now).Status)
	}
	rec.h.OrderID = orderID
	until = time.UnixMilli(until.UnixMilli()).UTC()
	if until.After(rec.h.ExpiresAt) {
		rec.h.ExpiresAt = until
		rec.expiry = until.Add(s.keep)
		heap.Push(&t.recordsByTime, deadline{id, rec.expiry})
		t.setLive(id, until)
		if owned := t.byOwner[rec.h.CustomerID]; owned != nil {
			if _, ok := owned[id]; ok {
				owned[id] = until
			}
		}
	}
	return rec.h, nil
}

// Release implements inventory.HoldStore.
func (s *Holds) Release(_ context.Context, id string, now time.Time) error {
	return s.release(id, now, false)
}

// Cancel implements inventory.HoldStore.
func (s *Holds) Cancel(_ context.Context, id string, now time.Time) error {
	return s.release(id, now, true)
}

func (s *Holds) release(id string, now time.Time, cancel bool) error {
	t, rec := s.record(id, now)
	if t == nil {
		return inventory.ErrHoldNotFound
	}
	defer t.mu.Unlock()
	if rec == nil {
		return inventory.ErrHoldNotFound
	}
	if cancel && (rec.h.Status == inventory.HoldCommitted || (rec.h.OrderID != uuid.Nil && rec.h.Status.Live())) {
		return inventory.ErrHoldOrdered.WithDetail("the hold is checked out; its order gives the tickets back if the payment fails")
	}
	if rec.h.Status.Live() {
		if _, ok := t.live[id]; ok {
			delete(t.live, id)
			t.held -= rec.h.Quantity
		}
		delete(t.byOwner[rec.h.CustomerID], id)
		rec.h.Status = inventory.HoldReleased
	}
	return nil
}

// Claim implements inventory.HoldStore.
func (s *Holds) Claim(_ context.Context, h inventory.Hold, now time.Time, claimTTL time.Duration) (inventory.Hold, error) {
	t := s.get(h.TicketTypeID)
	if t == nil {
		return inventory.Hold{}, inventory.ErrNotConfigured
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s.prune(t, now)
	until := time.UnixMilli(now.Add(claimTTL).UnixMilli()).UTC()
	rec := t.holds[h.ID]
	if rec != nil {
		// Like the Redis store, answer with the caller's hold, its status and expiry updated.
		switch {
		case rec.h.Status == inventory.HoldCommitted:
			h.Status = inventory.HoldCommitted
			return h, nil
		case rec.h.Live(now):
			if until.After(rec.h.ExpiresAt) {
				rec.h.ExpiresAt = until
			}
			rec.h.Status = inventory.HoldClaimed
			rec.expiry = rec.h.ExpiresAt.Add(s.keep)
			heap.Push(&t.recordsByTime, deadline{h.ID, rec.expiry})
			t.setLive(h.ID, rec.h.ExpiresAt)
			h.Status, h.ExpiresAt = rec.h.Status, rec.h.ExpiresAt
			return h, nil
		}
	}
	if avail := t.rules.Capacity - t.sold - t.held; h.Quantity > avail {
		return inventory.Hold{}, inventory.SoldOut(max(avail, 0))
	}
	h.Status, h.ExpiresAt = inventory.HoldClaimed, until
	stored := h
	if rec != nil {
		stored.OrderID = rec.h.OrderID // Redis keeps the record's fields it does not set
	}
	t.setRecord(h.ID, &holdRecord{h: stored, expiry: until.Add(s.keep)})
	t.setLive(h.ID, until)
	t.held += h.Quantity
	return h, nil
}

// Finalize implements inventory.HoldStore.
func (s *Holds) Finalize(_ context.Context, h inventory.Hold, sold int, now time.Time) error {
	t := s.get(h.TicketTypeID)
	if t == nil {
		return nil // nothing to mirror into; the next Configure brings the sold figure
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	rec := t.holds[h.ID]
	if rec == nil || rec.h.Status != inventory.HoldCommitted {
		if _, ok := t.live[h.ID]; ok {
			delete(t.live, h.ID)
			t.held -= h.Quantity
		}
		delete(t.byOwner[h.CustomerID], h.ID)
		// As the Redis store does: a record it still has keeps what it recorded (the claim's
		// expiry, say); only a lost one is written from h.
		if rec == nil {
			rec = &holdRecord{h: h}
		}
		rec.h.Status, rec.h.Quantity, rec.h.CustomerID = inventory.HoldCommitted, h.Quantity, h.CustomerID
		rec.expiry = now.Add(s.keep)
		t.setRecord(h.ID, rec)
	}
	// The largest count reported wins, whatever order the commits finalize in.
	t.sold = max(t.sold, sold)
	return nil
}

// Stock implements inventory.HoldStore.
func (s *Holds) Stock(_ context.Context, ids []uuid.UUID, now time.Time) ([]inventory.Stock, error) {
	out := make([]inventory.Stock, 0, len(ids))
	var missing error
	for _, id := range ids {
		t := s.get(id)
		if t == nil {
			missing = inventory.ErrNotConfigured
			continue
		}
		t.mu.Lock()
		s.prune(t, now)
		// sold may already include holds of a commit batch still held until their own Finalize:
		// report it only as far as held plus sold fits the capacity.
		sold := max(0, min(t.sold, t.rules.Capacity-t.held))
		out = append(out, inventory.Stock{TicketTypeID: id, Capacity: t.rules.Capacity, Sold: sold, Held: t.held})
		t.mu.Unlock()
	}
	return out, missing
}
