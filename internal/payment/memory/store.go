// Package memory holds an in-process OrderStore for embedded mode and tests, with the semantics
// of the PostgreSQL adapter (the suite in payment/paymenttest proves it).
package memory

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/payment"
)

type idemKey struct {
	customer uuid.UUID
	key      string
}

// Store is a payment.OrderStore in memory.
type Store struct {
	mu       sync.Mutex
	orders   map[uuid.UUID]*payment.Order
	byHold   map[string]uuid.UUID
	idem     map[idemKey]payment.IdempotencyRecord
	outbox   map[int64]payment.OutboxMessage
	nextID   int64
	tickets  map[uuid.UUID]payment.Ticket
	checkins map[uuid.UUID]payment.CheckIn
	tried    map[uuid.UUID]time.Time
	refunds  map[uuid.UUID]payment.Refund // by id
	cancels  map[uuid.UUID]payment.EventCancellation
}

var _ payment.OrderStore = (*Store)(nil)

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{
		orders: map[uuid.UUID]*payment.Order{}, byHold: map[string]uuid.UUID{},
		idem: map[idemKey]payment.IdempotencyRecord{}, outbox: map[int64]payment.OutboxMessage{},
		tickets: map[uuid.UUID]payment.Ticket{}, checkins: map[uuid.UUID]payment.CheckIn{},
		tried: map[uuid.UUID]time.Time{}, refunds: map[uuid.UUID]payment.Refund{},
		cancels: map[uuid.UUID]payment.EventCancellation{},
	}
}

func clone(o *payment.Order) payment.Order {
	c := *o
	c.Tickets = slices.Clone(o.Tickets)
	c.Refunds = slices.Clone(o.Refunds)
	return c
}

// listed is an order as lists show it: without its refunds.
func listed(o *payment.Order) payment.Order {
	c := clone(o)
	c.Refunds = nil
	return c
}

// Create implements payment.OrderStore.
func (s *Store) Create(_ context.Context, o payment.Order, idem payment.IdempotencyRecord) (payment.OutboxMessage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := idemKey{idem.CustomerID, idem.Key}
	if rec, ok := s.idem[k]; ok && o.CreatedAt.Before(rec.ExpiresAt) {
		return payment.OutboxMessage{}, payment.ErrDuplicateKey
	}
	if _, taken := s.byHold[o.Hold.ID]; taken {
		return payment.OutboxMessage{}, payment.ErrHoldAlreadyOrdered
	}
	c := o
	c.Tickets = nil
	s.orders[o.ID] = &c
	s.byHold[o.Hold.ID] = o.ID
	s.idem[k] = idem
	s.nextID++
	msg := payment.OutboxMessage{ID: s.nextID, OrderID: o.ID, CreatedAt: o.CreatedAt}
	s.outbox[msg.ID] = msg
	return msg, nil
}

// ByIdempotencyKey implements payment.OrderStore.
func (s *Store) ByIdempotencyKey(_ context.Context, customer uuid.UUID, key string, now time.Time) (payment.IdempotencyRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.idem[idemKey{customer, key}]
	if !ok || !now.Before(rec.ExpiresAt) {
		return payment.IdempotencyRecord{}, payment.ErrOrderNotFound
	}
	return rec, nil
}

// Get implements payment.OrderStore.
func (s *Store) Get(_ context.Context, id uuid.UUID) (payment.Order, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orders[id]
	if !ok {
		return payment.Order{}, payment.ErrOrderNotFound
	}
	return clone(o), nil
}

// Statuses implements payment.OrderStore.
func (s *Store) Statuses(_ context.Context, ids []uuid.UUID) ([]payment.StatusEvent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	evs := make([]payment.StatusEvent, 0, len(ids))
	for _, id := range ids {
		if o, ok := s.orders[id]; ok {
			evs = append(evs, payment.EventOf(*o))
		}
	}
	return evs, nil
}

func newer(a, b *payment.Order) bool {
	if !a.CreatedAt.Equal(b.CreatedAt) {
		return a.CreatedAt.After(b.CreatedAt)
	}
	return slices.Compare(a.ID[:], b.ID[:]) > 0
}

// List implements payment.OrderStore.
func (s *Store) List(_ context.Context, customer uuid.UUID, after *payment.OrderCursor, limit int) ([]payment.Order, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var mine []*payment.Order
	for _, o := range s.orders {
		if o.CustomerID != customer {
			continue
		}
		if after != nil && !newer(&payment.Order{CreatedAt: after.CreatedAt, ID: after.ID}, o) {
			continue
		}
		mine = append(mine, o)
	}
	slices.SortFunc(mine, func(a, b *payment.Order) int {
		if newer(a, b) {
			return -1
		}
		return 1
	})
	if len(mine) > limit {
		mine = mine[:limit]
	}
	out := make([]payment.Order, len(mine))
	for i, o := range mine {
		out[i] = listed(o)
	}
	return out, nil
}

func (s *Store) change(id uuid.UUID, fn func(o *payment.Order) (bool, error)) (payment.Order, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orders[id]
	if !ok {
		return payment.Order{}, false, payment.ErrOrderNotFound
	}
	changed, err := fn(o)
	if err != nil {
		return payment.Order{}, false, err
	}
	if changed {
		o.Version++
		o.UpdatedAt = time.Now().UTC()
	}
	return clone(o), changed, nil
}

// SetDetail implements payment.OrderStore.
func (s *Store) SetDetail(_ context.Context, id uuid.UUID, detail string) (payment.Order, bool, error) {
	return s.change(id, func(o *payment.Order) (bool, error) {
		if o.Status != payment.StatusPending || o.StatusDetail == detail {
			return false, nil
		}
		o.StatusDetail = detail
		return true, nil
	})
}

// FailRefunded implements payment.OrderStore.
func (s *Store) FailRefunded(_ context.Context, id uuid.UUID, reason string, r payment.Refund) (payment.Order, bool, error) {
	return s.change(id, func(o *payment.Order) (bool, error) {
		switch o.Status {
		case payment.StatusPending:
		case payment.StatusFailed:
			return false, nil
		default:
			return false, payment.ErrOrderTerminal.WithDetail("the order was confirmed")
		}
		r.OrderID, r.Status = o.ID, payment.RefundSucceeded
		o.Status, o.StatusDetail, o.RefundedCents = payment.StatusFailed, reason, r.AmountCents
		o.Refunds = append(o.Refunds, r)
		s.refunds[r.ID] = r
		return true, nil
	})
}

// Confirm implements payment.OrderStore.
func (s *Store) Confirm(_ context.Context, id uuid.UUID, chargeID string, tickets []payment.Ticket) (payment.Order, bool, error) {
	return s.change(id, func(o *payment.Order) (bool, error) {
		switch o.Status {
		case payment.StatusPending:
		case payment.StatusFailed:
			return false, payment.ErrOrderTerminal.WithDetail("the order had failed")
		default:
			return false, nil // confirmed, maybe refunded since
		}
		o.Status, o.StatusDetail, o.ChargeID = payment.StatusConfirmed, "", chargeID
		o.Tickets = slices.Clone(tickets)
		for _, t := range tickets {
			s.tickets[t.ID] = t
		}
		return true, nil
	})
}

// Fail implements payment.OrderStore.
func (s *Store) Fail(_ context.Context, id uuid.UUID, reason string) (payment.Order, bool, error) {
	return s.change(id, func(o *payment.Order) (bool, error) {
		switch o.Status {
		case payment.StatusPending:
		case payment.StatusFailed:
			return false, nil
		default:
			return false, payment.ErrOrderTerminal.WithDetail("the order was confirmed")
		}
		o.Status, o.StatusDetail = payment.StatusFailed, reason
		return true, nil
	})
}

// Unpublished implements payment.OrderStore.
func (s *Store) Unpublished(_ context.Context, before time.Time, limit int) ([]payment.OutboxMessage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []payment.OutboxMessage
	for _, m := range s.outbox {
		if m.CreatedAt.Before(before) {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b payment.OutboxMessage) int { return int(a.ID - b.ID) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Published implements payment.OrderStore.
func (s *Store) Published(_ context.Context, ids []int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		delete(s.outbox, id)
	}
	return nil
}

// StalePending implements payment.OrderStore.
func (s *Store) StalePending(_ context.Context, before time.Time, limit int) ([]uuid.UUID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	queued := map[uuid.UUID]bool{}
	for _, m := range s.outbox {
		queued[m.OrderID] = true
	}
	var stale []*payment.Order
	for _, o := range s.orders {
		last, ok := s.tried[o.ID]
		if !ok {
			last = o.CreatedAt
		}
		if (o.Status == payment.StatusPending || o.Status == payment.StatusRefundPending) && last.Before(before) && !queued[o.ID] {
			stale = append(stale, o)
		}
	}
	slices.SortFunc(stale, func(a, b *payment.Order) int { return a.CreatedAt.Compare(b.CreatedAt) })
	ids := make([]uuid.UUID, 0, min(len(stale), limit))
	for _, o := range stale[:min(len(stale), limit)] {
		ids = append(ids, o.ID)
	}
	return ids, nil
}

// Touch implements payment.OrderStore.
func (s *Store) Touch(_ context.Context, ids []uuid.UUID, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if _, ok := s.orders[id]; ok {
			s.tried[id] = at
		}
	}
	return nil
}

// PurgeIdempotency implements payment.OrderStore.
func (s *Store) PurgeIdempotency(_ context.Context, now time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, rec := range s.idem {
		if !now.Before(rec.ExpiresAt) {
			delete(s.idem, k)
			n++
		}
	}
	return n, nil
}

// Ticket implements payment.OrderStore.
func (s *Store) Ticket(_ context.Context, id uuid.UUID) (payment.Ticket, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tickets[id]
	if !ok {
		return payment.Ticket{}, payment.ErrTicketNotFound
	}
	return t, nil
}

// CheckIn implements payment.OrderStore.
func (s *Store) CheckIn(_ context.Context, ticketID, staff uuid.UUID, at time.Time) (payment.CheckIn, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tickets[ticketID]
	if !ok {
		return payment.CheckIn{}, false, payment.ErrTicketNotFound
	}
	if c, done := s.checkins[ticketID]; done {
		return c, false, nil
	}
	if o, ok := s.orders[t.OrderID]; ok && o.Voided {
		return payment.CheckIn{}, false, payment.ErrTicketVoid
	}
	c := payment.CheckIn{Ticket: t, StaffID: staff, CheckedInAt: at.UTC()}
	s.checkins[ticketID] = c
	return c, true, nil
}

// TicketTypeOrders implements payment.OrderStore.
func (s *Store) TicketTypeOrders(_ context.Context, ticketTypes []uuid.UUID, status payment.Status, after *payment.OrderCursor, limit int) ([]payment.Order, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var found []*payment.Order
	for _, o := range s.orders {
		if !slices.Contains(ticketTypes, o.Hold.TicketTypeID) || !statusMatches(o, status) {
			continue
		}
		if after != nil && !newer(&payment.Order{CreatedAt: after.CreatedAt, ID: after.ID}, o) {
			continue
		}
		found = append(found, o)
	}
	slices.SortFunc(found, func(a, b *payment.Order) int {
		if newer(a, b) {
			return -1
		}
		return 1
	})
	if len(found) > limit {
		found = found[:limit]
	}
	out := make([]payment.Order, len(found))
	for i, o := range found {
		out[i] = listed(o)
	}
	return out, nil
}

func statusMatches(o *payment.Order, status payment.Status) bool {
	switch status {
	case "":
		return true
	case payment.StatusDelayed:
		return o.Status == payment.StatusPending && o.StatusDetail == payment.DetailDelayed
	default:
		return o.Status == status
	}
}

// Sales implements payment.OrderStore.
func (s *Store) Sales(_ context.Context, ticketTypes []uuid.UUID) ([]payment.Sales, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	by := map[uuid.UUID]*payment.Sales{}
	get := func(tt uuid.UUID) *payment.Sales {
		if by[tt] == nil {
			by[tt] = &payment.Sales{TicketTypeID: tt}
		}
		return by[tt]
	}
	for _, o := range s.orders {
		if !slices.Contains(ticketTypes, o.Hold.TicketTypeID) {
			continue
		}
		sl := get(o.Hold.TicketTypeID)
		switch o.Status {
		case payment.StatusPending:
			sl.Pending++
			if o.StatusDetail == payment.DetailDelayed {
				sl.Delayed++
			}
		case payment.StatusConfirmed:
			sl.Confirmed++
			sl.Tickets += len(o.Tickets)
			sl.RevenueCents += o.AmountCents
		case payment.StatusFailed:
			sl.Failed++
		case payment.StatusRefundPending:
			sl.Refunding++
		case payment.StatusRefunded, payment.StatusCancelled:
			sl.Refunded++
		}
	}
	for id := range s.checkins {
		if t, ok := s.tickets[id]; ok && slices.Contains(ticketTypes, t.TicketTypeID) {
			get(t.TicketTypeID).CheckedIn++
		}
	}
	out := make([]payment.Sales, 0, len(by))
	for _, sl := range by {
		out = append(out, *sl)
	}
	slices.SortFunc(out, func(a, b payment.Sales) int { return slices.Compare(a.TicketTypeID[:], b.TicketTypeID[:]) })
	return out, nil
}

// CheckedIn implements payment.OrderStore.
func (s *Store) CheckedIn(_ context.Context, ticketIDs []uuid.UUID) (map[uuid.UUID]time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[uuid.UUID]time.Time{}
	for _, id := range ticketIDs {
		if c, ok := s.checkins[id]; ok {
			out[id] = c.CheckedInAt
		}
	}
	return out, nil
}

// RequestRefund implements payment.OrderStore.
func (s *Store) RequestRefund(_ context.Context, req payment.RefundRequest) (payment.RefundResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orders[req.OrderID]
	if !ok {
		return payment.RefundResult{}, payment.ErrOrderNotFound
	}
	for _, r := range o.Refunds {
		if r.Key == req.Key {
			return payment.RefundResult{Order: clone(o), Refund: r}, nil
		}
	}
	if (o.Status != payment.StatusConfirmed && o.Status != payment.StatusRefundPending) || o.Voided {
		return payment.RefundResult{}, payment.ErrNotRefundable.WithDetail("the order is %s", o.Status)
	}
	left := o.RefundableCents()
	amount := req.AmountCents
	if amount == 0 {
		amount = left
	}
	if amount > left {
		return payment.RefundResult{}, payment.ErrRefundTooLarge.WithDetail("%d cents are left to refund", left)
	}
	at := req.At.UTC()
	o.Voided = o.Voided || req.Cancel
	o.Version++
	o.UpdatedAt = at
	if amount == 0 {
		o.Status = payment.StatusCancelled
		if o.RefundedCents > 0 {
			o.Status = payment.StatusRefunded
		}
		return payment.RefundResult{Order: clone(o), Created: true}, nil
	}
	r := payment.Refund{ID: uuid.New(), OrderID: o.ID, Key: req.Key, AmountCents: amount, Reason: req.Reason,
		Status: payment.RefundPending, CreatedAt: at}
	o.Refunds = append(o.Refunds, r)
	o.Status = payment.StatusRefundPending
	s.refunds[r.ID] = r
	s.nextID++
	msg := payment.OutboxMessage{ID: s.nextID, OrderID: o.ID, CreatedAt: at}
	s.outbox[msg.ID] = msg
	return payment.RefundResult{Order: clone(o), Refund: r, Created: true, Message: msg}, nil
}

// CompleteRefund implements payment.OrderStore.
func (s *Store) CompleteRefund(_ context.Context, refundID uuid.UUID, providerRefundID string, at time.Time) (payment.Order, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.refunds[refundID]
	if !ok {
		return payment.Order{}, false, payment.ErrRefundNotFound
	}
	o := s.orders[r.OrderID]
	if r.Status == payment.RefundSucceeded {
		return clone(o), false, nil
	}
	r.Status, r.ProviderRefundID, r.CompletedAt = payment.RefundSucceeded, providerRefundID, at.UTC()
	s.refunds[r.ID] = r
	pending := false
	for i := range o.Refunds {
		if o.Refunds[i].ID == r.ID {
			o.Refunds[i] = r
		}
		pending = pending || o.Refunds[i].Status == payment.RefundPending
	}
	o.RefundedCents += r.AmountCents
	if !pending {
		o.Status = payment.StatusConfirmed
		if o.Voided {
			o.Status = payment.StatusRefunded
		}
	}
	o.Version++
	o.UpdatedAt = at.UTC()
	return clone(o), true, nil
}

// CancelEvent implements payment.OrderStore.
func (s *Store) CancelEvent(_ context.Context, c payment.EventCancellation) (payment.EventCancellation, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if first, ok := s.cancels[c.EventID]; ok {
		return first, false, nil
	}
	c.TicketTypes = slices.Clone(c.TicketTypes)
	c.CreatedAt = c.CreatedAt.UTC()
	s.cancels[c.EventID] = c
	return c, true, nil
}

// EventCancellation implements payment.OrderStore.
func (s *Store) EventCancellation(_ context.Context, eventID uuid.UUID) (payment.EventCancellation, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.cancels[eventID]
	if !ok {
		return payment.EventCancellation{}, payment.ErrCancellationNotFound
	}
	return c, nil
}

// OpenCancellations implements payment.OrderStore.
func (s *Store) OpenCancellations(_ context.Context, limit int) ([]payment.EventCancellation, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var open []payment.EventCancellation
	for _, c := range s.cancels {
		if c.FinishedAt.IsZero() {
			open = append(open, c)
		}
	}
	slices.SortFunc(open, func(a, b payment.EventCancellation) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return open[:min(len(open), limit)], nil
}

// FinishCancellation implements payment.OrderStore.
func (s *Store) FinishCancellation(_ context.Context, eventID uuid.UUID, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.cancels[eventID]
	if !ok {
		return payment.ErrCancellationNotFound
	}
	if c.FinishedAt.IsZero() {
		c.FinishedAt = at.UTC()
		s.cancels[eventID] = c
	}
	return nil
}
