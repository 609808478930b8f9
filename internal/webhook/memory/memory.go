// Package memory holds the webhook module's in-memory Store, for embedded mode and tests. It
// behaves as the PostgreSQL store does (one conformance suite runs against both) within one
// process.
package memory

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/webhook"
)

// Store is a webhook.Store in memory.
type Store struct {
	mu         sync.Mutex
	endpoints  map[uuid.UUID]webhook.Endpoint
	deliveries map[uuid.UUID]*webhook.Delivery
	seq        int64
}

var _ webhook.Store = (*Store)(nil)

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{endpoints: map[uuid.UUID]webhook.Endpoint{}, deliveries: map[uuid.UUID]*webhook.Delivery{}}
}

// CreateEndpoint implements webhook.Store.
func (s *Store) CreateEndpoint(_ context.Context, e webhook.Endpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e.EventTypes = slices.Clone(e.EventTypes)
	s.endpoints[e.ID] = e
	return nil
}

// newestFirst orders endpoints by creation, newest first, then by id.
func newestFirst(a, b webhook.Endpoint) int {
	if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
		return c
	}
	return cmp.Compare(b.ID.String(), a.ID.String())
}

// Endpoints implements webhook.Store.
func (s *Store) Endpoints(_ context.Context, organizer uuid.UUID, after *webhook.Cursor, limit int) ([]webhook.Endpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []webhook.Endpoint
	for _, e := range s.endpoints {
		if e.OrganizerID != organizer {
			continue
		}
		if after != nil && newestFirst(e, webhook.Endpoint{CreatedAt: after.CreatedAt, ID: after.ID}) <= 0 {
			continue
		}
		e.EventTypes = slices.Clone(e.EventTypes)
		out = append(out, e)
	}
	slices.SortFunc(out, newestFirst)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Endpoint implements webhook.Store.
func (s *Store) Endpoint(_ context.Context, id uuid.UUID) (webhook.Endpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.endpoints[id]
	if !ok {
		return webhook.Endpoint{}, webhook.ErrEndpointNotFound
	}
	e.EventTypes = slices.Clone(e.EventTypes)
	return e, nil
}

// DeleteEndpoint implements webhook.Store.
func (s *Store) DeleteEndpoint(_ context.Context, id uuid.UUID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.endpoints[id]; !ok {
		return webhook.ErrEndpointNotFound
	}
	delete(s.endpoints, id)
	for did, d := range s.deliveries {
		if d.EndpointID == id {
			delete(s.deliveries, did)
		}
	}
	return nil
}

// UpdateEndpoint implements webhook.Store.
func (s *Store) UpdateEndpoint(_ context.Context, id uuid.UUID, p webhook.EndpointPatch) (webhook.Endpoint, error) {
	return s.change(id, func(e *webhook.Endpoint) {
		if p.URL != nil {
			e.URL = *p.URL
		}
		if p.EventTypes != nil {
			e.EventTypes = slices.Clone(p.EventTypes)
		}
		if p.Description != nil {
			e.Description = *p.Description
		}
		if p.Disabled != nil {
			e.Disabled = *p.Disabled
		}
	})
}

// RotateSecret implements webhook.Store.
func (s *Store) RotateSecret(_ context.Context, id uuid.UUID, secret string, previousUntil time.Time) (webhook.Endpoint, error) {
	return s.change(id, func(e *webhook.Endpoint) {
		e.PreviousSecret, e.PreviousSecretUntil, e.Secret = e.Secret, previousUntil, secret
	})
}

// change applies f to an endpoint under the lock and returns a copy of the result.
func (s *Store) change(id uuid.UUID, f func(*webhook.Endpoint)) (webhook.Endpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.endpoints[id]
	if !ok {
		return webhook.Endpoint{}, webhook.ErrEndpointNotFound
	}
	f(&e)
	s.endpoints[id] = e
	e.EventTypes = slices.Clone(e.EventTypes)
	return e, nil
}

// Enqueue implements webhook.Store.
func (s *Store) Enqueue(_ context.Context, ev webhook.Event, now time.Time) (int, error) {
	body, err := ev.Body()
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Endpoints in a fixed order, so deliveries of one event get their sequence numbers alike on
	// every run.
	var targets []webhook.Endpoint
	for _, e := range s.endpoints {
		if e.OrganizerID == ev.OrganizerID && e.Subscribed(ev.Type) {
			targets = append(targets, e)
		}
	}
	slices.SortFunc(targets, func(a, b webhook.Endpoint) int { return cmp.Compare(a.ID.String(), b.ID.String()) })
	created := 0
	for _, e := range targets {
		if s.has(e.ID, ev.ID) {
			continue
		}
		s.seq++
		d := &webhook.Delivery{ID: uuid.New(), EndpointID: e.ID, EventID: ev.ID, Type: ev.Type, OrderingKey: ev.OrderingKey,
			Payload: body, Status: webhook.StatusPending, NextAttemptAt: now, CreatedAt: now, Seq: s.seq}
		s.deliveries[d.ID] = d
		created++
	}
	return created, nil
}

func (s *Store) has(endpoint uuid.UUID, event string) bool {
	for _, d := range s.deliveries {
		if d.EndpointID == endpoint && d.EventID == event {
			return true
		}
	}
	return false
}

// blocked tells whether an earlier delivery with d's ordering key is still pending at d's endpoint.
func (s *Store) blocked(d *webhook.Delivery) bool {
	if d.OrderingKey == "" {
		return false
	}
	for _, o := range s.deliveries {
		if o.EndpointID == d.EndpointID && o.OrderingKey == d.OrderingKey && o.Status == webhook.StatusPending && o.Seq < d.Seq {
			return true
		}
	}
	return false
}

// Claim implements webhook.Store.
func (s *Store) Claim(_ context.Context, c webhook.Claim) ([]webhook.Due, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var due []*webhook.Delivery
	for _, d := range s.deliveries {
		e, ok := s.endpoints[d.EndpointID]
		if !ok || e.Disabled || d.Status != webhook.StatusPending || d.NextAttemptAt.After(c.Now) ||
			slices.Contains(c.Skip, d.EndpointID) || s.blocked(d) {
			continue
		}
		due = append(due, d)
	}
	slices.SortFunc(due, func(a, b *webhook.Delivery) int { return cmp.Compare(a.Seq, b.Seq) })
	per := map[uuid.UUID]int{}
	var out []webhook.Due
	for _, d := range due {
		if len(out) >= c.Limit {
			break
		}
		if c.PerEndpoint > 0 && per[d.EndpointID] >= c.PerEndpoint {
			continue
		}
		per[d.EndpointID]++
		d.NextAttemptAt = c.Now.Add(c.Lease)
		e := s.endpoints[d.EndpointID]
		due := webhook.Due{Delivery: copyOf(d), URL: e.URL, Secret: e.Secret}
		if e.PreviousSecretUntil.After(c.Now) {
			due.PreviousSecret = e.PreviousSecret
		}
		out = append(out, due)
	}
	return out, nil
}

// Record implements webhook.Store.
func (s *Store) Record(_ context.Context, id uuid.UUID, o webhook.Outcome) (webhook.Delivery, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.deliveries[id]
	if !ok {
		return webhook.Delivery{}, webhook.ErrDeliveryNotFound
	}
	a := o.Attempt
	a.DeliveryID = id
	d.History = append(d.History, a)
	if d.Status != webhook.StatusPending {
		return copyOf(d), nil
	}
	d.Attempts++
	d.LastAttemptAt = a.At
	switch {
	case o.Succeeded:
		d.Status = webhook.StatusSucceeded
	case o.Next.IsZero():
		d.Status = webhook.StatusDead
	default:
		d.NextAttemptAt = o.Next
	}
	return copyOf(d), nil
}

// Deliveries implements webhook.Store.
func (s *Store) Deliveries(_ context.Context, endpoint uuid.UUID, after *webhook.Cursor, limit int) ([]webhook.Delivery, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []webhook.Delivery
	for _, d := range s.deliveries {
		if d.EndpointID == endpoint && (after == nil || d.Seq < after.Seq) {
			out = append(out, copyOf(d))
		}
	}
	slices.SortFunc(out, func(a, b webhook.Delivery) int { return cmp.Compare(b.Seq, a.Seq) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Delivery implements webhook.Store.
func (s *Store) Delivery(_ context.Context, id uuid.UUID) (webhook.Delivery, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.deliveries[id]
	if !ok {
		return webhook.Delivery{}, webhook.ErrDeliveryNotFound
	}
	return copyOf(d), nil
}

// Resend implements webhook.Store.
func (s *Store) Resend(_ context.Context, id uuid.UUID, now time.Time) (webhook.Delivery, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.deliveries[id]
	if !ok {
		return webhook.Delivery{}, webhook.ErrDeliveryNotFound
	}
	d.Status, d.Attempts, d.NextAttemptAt = webhook.StatusPending, 0, now
	return copyOf(d), nil
}

// copyOf returns a copy that shares nothing mutable with the store.
func copyOf(d *webhook.Delivery) webhook.Delivery {
	c := *d
	c.Payload = slices.Clone(d.Payload)
	c.History = slices.Clone(d.History)
	return c
}
