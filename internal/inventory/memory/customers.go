package memory

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/inventory"
)

// customer is one customer's keys and counted holds.
type customer struct {
	keys  map[string]boundKey
	holds map[string]time.Time // hold id → end
}

type boundKey struct {
	fp      string
	expires time.Time
}

// CustomerHolds is a CustomerHolds in memory.
type CustomerHolds struct {
	mu        sync.Mutex
	customers map[uuid.UUID]*customer
}

var _ inventory.CustomerHolds = (*CustomerHolds)(nil)

// NewCustomerHolds returns an empty store.
func NewCustomerHolds() *CustomerHolds {
	return &CustomerHolds{customers: map[uuid.UUID]*customer{}}
}

// of returns the customer's record, dropping what ended by now; the caller holds s.mu.
func (s *CustomerHolds) of(id uuid.UUID, now time.Time) *customer {
	c := s.customers[id]
	if c == nil {
		c = &customer{keys: map[string]boundKey{}, holds: map[string]time.Time{}}
		s.customers[id] = c
	}
	for k, b := range c.keys {
		if !now.Before(b.expires) {
			delete(c.keys, k)
		}
	}
	for h, end := range c.holds {
		if !now.Before(end) {
			delete(c.holds, h)
		}
	}
	return c
}

// BindKey implements inventory.CustomerHolds.
func (s *CustomerHolds) BindKey(_ context.Context, id uuid.UUID, key, fp string, now time.Time, ttl time.Duration) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.of(id, now)
	if b, ok := c.keys[key]; ok {
		return b.fp, nil
	}
	// Whole milliseconds, as Redis keeps them.
	c.keys[key] = boundKey{fp: fp, expires: time.UnixMilli(now.Add(ttl).UnixMilli())}
	return fp, nil
}

// Add implements inventory.CustomerHolds.
func (s *CustomerHolds) Add(_ context.Context, id uuid.UUID, holdID string, expires, now time.Time, max int) (bool, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.of(id, now)
	expires = time.UnixMilli(expires.UnixMilli()).UTC()
	if _, ok := c.holds[holdID]; !ok && len(c.holds) >= max {
		var earliest time.Time
		for _, end := range c.holds {
			if earliest.IsZero() || end.Before(earliest) {
				earliest = end
			}
		}
		return false, earliest, nil
	}
	c.holds[holdID] = expires
	return true, time.Time{}, nil
}

// Remove implements inventory.CustomerHolds.
func (s *CustomerHolds) Remove(_ context.Context, id uuid.UUID, holdID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.customers[id]; c != nil {
		delete(c.holds, holdID)
	}
	return nil
}
