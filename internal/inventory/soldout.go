package inventory

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/platform/problem"
)

// soldOutMemory lets a replica answer "sold out" without asking the hold store while a ticket
// type is known to have none left. After a flash sale's first seconds nearly every request is
// refused as sold out; each of those was a hold script on the one Redis thread that owns the
// ticket type, so a single hot ticket type capped the whole sale at what that thread could run.
//
// What this replica learns from the store's own "none left" answer it keeps for at most bound
// (ONSALE_SOLD_OUT_MEMORY). Whatever gives tickets back through this replica (a release, a
// cancelled hold, a failed sale, a new capacity or rules) forgets it at once. What gives tickets
// back elsewhere (another replica's release, a hold's expiry, which the store applies when it
// is next asked) is seen when the bound runs out: no buyer is told "sold out" more than bound
// after a ticket became available. The memory only ever refuses, so it cannot sell a ticket
// twice. The decision is local by design, with no pub/sub invalidation between replicas: the
// bound is small next to a hold's lifetime, and it keeps the answer free of any round trip.
type soldOutMemory struct {
	HoldStore
	bound    time.Duration
	types    sync.Map // uuid.UUID → *soldOutEntry
	answered atomic.Int64
}

type soldOutEntry struct {
	until atomic.Int64 // unix nanoseconds; sold out is known before this
	gen   atomic.Int64 // forgets so far: an answer the store gave before a forget is not kept
}

func newSoldOutMemory(store HoldStore, bound time.Duration) *soldOutMemory {
	return &soldOutMemory{HoldStore: store, bound: bound}
}

func (s *soldOutMemory) entry(tt uuid.UUID) *soldOutEntry {
	if e, ok := s.types.Load(tt); ok {
		return e.(*soldOutEntry)
	}
	e, _ := s.types.LoadOrStore(tt, new(soldOutEntry))
	return e.(*soldOutEntry)
}

// known reports whether tt is known to be sold out at now, and counts the answer.
func (s *soldOutMemory) known(tt uuid.UUID, now time.Time) bool {
	e, ok := s.types.Load(tt)
	if !ok || now.UnixNano() >= e.(*soldOutEntry).until.Load() {
		return false
	}
	s.answered.Add(1)
	return true
}

// forget drops what is known about tt: tickets may have come back.
func (s *soldOutMemory) forget(tt uuid.UUID) {
	e := s.entry(tt)
	e.gen.Add(1)
	e.until.Store(0)
}

// noneLeft reports whether err is the store's "sold out" with no ticket at all left.
func noneLeft(err error) bool {
	pe := problem.As(err)
	if pe == nil || pe.Code != ErrSoldOut.Code {
		return false
	}
	n, ok := pe.Extra["available"].(int)
	return ok && n == 0
}

// Hold asks the store and remembers a "none left" answer, unless tickets came back through
// this replica while the store was answering.
func (s *soldOutMemory) Hold(ctx context.Context, req HoldRequest) (Hold, bool, error) {
	e := s.entry(req.TicketTypeID)
	gen := e.gen.Load()
	h, created, err := s.HoldStore.Hold(ctx, req)
	if err != nil && noneLeft(err) && e.gen.Load() == gen {
		e.until.Store(req.Now.Add(s.bound).UnixNano())
		if e.gen.Load() != gen { // a forget raced the store: do not keep its answer
			e.until.Store(0)
		}
	}
	return h, created, err
}

// Configure forgets the ticket type: the rules may have changed what can be sold.
func (s *soldOutMemory) Configure(ctx context.Context, rules HoldRules) error {
	defer s.forget(rules.TicketTypeID)
	return s.HoldStore.Configure(ctx, rules)
}

// SetCapacity forgets the ticket type: a larger capacity puts tickets on sale.
func (s *soldOutMemory) SetCapacity(ctx context.Context, ticketTypeID uuid.UUID, capacity int, now time.Time) error {
	defer s.forget(ticketTypeID)
	return s.HoldStore.SetCapacity(ctx, ticketTypeID, capacity, now)
}

// Release forgets the hold's ticket type: its tickets are back.
func (s *soldOutMemory) Release(ctx context.Context, holdID string, now time.Time) error {
	defer s.forgetHold(holdID)
	return s.HoldStore.Release(ctx, holdID, now)
}

// Cancel forgets the hold's ticket type: its tickets are back.
func (s *soldOutMemory) Cancel(ctx context.Context, holdID string, now time.Time) error {
	defer s.forgetHold(holdID)
	return s.HoldStore.Cancel(ctx, holdID, now)
}

// Finalize forgets the hold's ticket type: a sale that did not go through gives tickets back.
func (s *soldOutMemory) Finalize(ctx context.Context, h Hold, sold int, now time.Time) error {
	defer s.forget(h.TicketTypeID)
	return s.HoldStore.Finalize(ctx, h, sold, now)
}

func (s *soldOutMemory) forgetHold(holdID string) {
	if tt, ok := ParseHoldID(holdID); ok {
		s.forget(tt)
	}
}
