package memory

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/inventory"
)

// Store is an inventory.Store in memory.
type Store struct {
	mu      sync.RWMutex
	events  map[uuid.UUID]inventory.Event
	types   map[uuid.UUID]inventory.TicketType
	tickets map[string][]inventory.Ticket // by hold id
	keys    map[ownerKey]inventory.RequestKey
	rooms   map[uuid.UUID]inventory.Room
	// returned marks the holds whose tickets were given back.
	returned map[string]bool
}

type ownerKey struct {
	owner uuid.UUID
	key   string
}

var _ inventory.Store = (*Store)(nil)

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{
		events:   map[uuid.UUID]inventory.Event{},
		types:    map[uuid.UUID]inventory.TicketType{},
		tickets:  map[string][]inventory.Ticket{},
		keys:     map[ownerKey]inventory.RequestKey{},
		rooms:    map[uuid.UUID]inventory.Room{},
		returned: map[string]bool{},
	}
}

// takeKey records key unless the owner's key is live; the caller holds s.mu.
func (s *Store) takeKey(k inventory.RequestKey) error {
	id := ownerKey{k.Owner, k.Key}
	if old, ok := s.keys[id]; ok && time.Now().Before(old.ExpiresAt) {
		return inventory.ErrRequestKeyTaken
	}
	s.keys[id] = k
	return nil
}

// CreateEventKeyed implements inventory.Store.
func (s *Store) CreateEventKeyed(_ context.Context, e inventory.Event, key inventory.RequestKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.takeKey(key); err != nil {
		return err
	}
	s.events[e.ID] = e
	return nil
}

// CreateTicketTypeKeyed implements inventory.Store.
func (s *Store) CreateTicketTypeKeyed(_ context.Context, t inventory.TicketType, key inventory.RequestKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.events[t.EventID]
	if !ok {
		return inventory.ErrEventNotFound
	}
	if err := s.takeKey(key); err != nil {
		return err
	}
	e.Version++
	s.events[e.ID] = e
	s.types[t.ID] = t
	return nil
}

// RequestKey implements inventory.Store.
func (s *Store) RequestKey(_ context.Context, owner uuid.UUID, key string, now time.Time) (inventory.RequestKey, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	k, ok := s.keys[ownerKey{owner, key}]
	if !ok || !now.Before(k.ExpiresAt) {
		return inventory.RequestKey{}, inventory.ErrRequestKeyNotFound
	}
	return k, nil
}

// CreateEvent implements inventory.Store.
func (s *Store) CreateEvent(_ context.Context, e inventory.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events[e.ID] = e
	return nil
}

// UpdateEvent implements inventory.Store.
func (s *Store) UpdateEvent(_ context.Context, id uuid.UUID, fn func(*inventory.Event) error) (inventory.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.events[id]
	if !ok {
		return inventory.Event{}, inventory.ErrEventNotFound
	}
	if err := fn(&e); err != nil {
		return inventory.Event{}, err
	}
	e.Version++
	e.UpdatedAt = time.Now().UTC()
	s.events[id] = e
	return e, nil
}

// Event implements inventory.Store.
func (s *Store) Event(_ context.Context, id uuid.UUID) (inventory.Event, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.events[id]
	if !ok {
		return inventory.Event{}, inventory.ErrEventNotFound
	}
	return e, nil
}

// ListEvents implements inventory.Store.
func (s *Store) ListEvents(_ context.Context, after inventory.Cursor, limit int) ([]inventory.Event, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []inventory.Event
	for _, e := range s.events {
		if e.StartsAt.After(after.StartsAt) || (e.StartsAt.Equal(after.StartsAt) && compareUUID(e.ID, after.ID) > 0) {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b inventory.Event) int {
		if c := a.StartsAt.Compare(b.StartsAt); c != 0 {
			return c
		}
		return compareUUID(a.ID, b.ID)
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// compareUUID orders UUIDs as PostgreSQL does (bytewise).
func compareUUID(a, b uuid.UUID) int {
	return slices.Compare(a[:], b[:])
}

// CreateTicketType implements inventory.Store.
func (s *Store) CreateTicketType(_ context.Context, t inventory.TicketType) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.events[t.EventID]
	if !ok {
		return inventory.ErrEventNotFound
	}
	e.Version++
	s.events[e.ID] = e
	s.types[t.ID] = t
	return nil
}

// UpdateTicketType implements inventory.Store.
func (s *Store) UpdateTicketType(_ context.Context, id uuid.UUID, fn func(*inventory.TicketType) error) (inventory.TicketType, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.types[id]
	if !ok {
		return inventory.TicketType{}, inventory.ErrTicketTypeNotFound
	}
	sold, returned := t.Sold, t.Returned
	if err := fn(&t); err != nil {
		return inventory.TicketType{}, err
	}
	t.Sold, t.Returned = sold, returned // only commits and returns change them
	if t.Capacity < t.SoldNow() {
		return inventory.TicketType{}, inventory.ErrCapacityBelowCommitted.WithDetail("%d tickets are sold", t.SoldNow())
	}
	t.UpdatedAt = time.Now().UTC()
	s.types[id] = t
	e := s.events[t.EventID]
	e.Version++
	s.events[e.ID] = e
	return t, nil
}

// TicketType implements inventory.Store.
func (s *Store) TicketType(_ context.Context, id uuid.UUID) (inventory.TicketType, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, ok := s.types[id]
	if !ok {
		return inventory.TicketType{}, inventory.ErrTicketTypeNotFound
	}
	return t, nil
}

// TicketTypes implements inventory.Store.
func (s *Store) TicketTypes(_ context.Context, eventID uuid.UUID) ([]inventory.TicketType, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []inventory.TicketType
	for _, t := range s.types {
		if t.EventID == eventID {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b inventory.TicketType) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return compareUUID(a.ID, b.ID)
	})
	return out, nil
}

// Tickets implements inventory.Store.
func (s *Store) Tickets(_ context.Context, holdID string) ([]inventory.Ticket, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.tickets[holdID]), nil
}

// Commit implements inventory.Store, one request at a time under the store's lock.
func (s *Store) Commit(_ context.Context, reqs []inventory.CommitRequest) []inventory.CommitResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]inventory.CommitResult, len(reqs))
	for i, r := range reqs {
		t, ok := s.types[r.Hold.TicketTypeID]
		if !ok {
			out[i].Err = inventory.ErrTicketTypeNotFound
			continue
		}
		if ts, done := s.tickets[r.Hold.ID]; done {
			out[i] = inventory.CommitResult{Tickets: slices.Clone(ts), Sold: t.Sold}
			continue
		}
		if t.SoldNow()+r.Hold.Quantity > t.Capacity {
			out[i].Err = inventory.SoldOut(t.Capacity - t.SoldNow())
			continue
		}
		t.Sold += r.Hold.Quantity
		s.types[t.ID] = t
		ts := make([]inventory.Ticket, r.Hold.Quantity)
		for q := range ts {
			ts[q] = inventory.Ticket{
				ID: uuid.New(), TicketTypeID: t.ID, EventID: t.EventID, HoldID: r.Hold.ID, OrderID: r.OrderID,
				CustomerID: r.Hold.CustomerID, Seq: q + 1, CreatedAt: r.Now.UTC(),
			}
		}
		s.tickets[r.Hold.ID] = ts
		out[i] = inventory.CommitResult{Tickets: slices.Clone(ts), Sold: t.Sold}
	}
	return out
}

// SaveRoom implements inventory.Store.
func (s *Store) SaveRoom(_ context.Context, eventID uuid.UUID, fn func(*inventory.Room, bool) error) (inventory.Room, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.events[eventID]; !ok {
		return inventory.Room{}, inventory.ErrEventNotFound
	}
	r, found := s.rooms[eventID]
	if !found {
		r = inventory.Room{EventID: eventID}
	}
	r.Secret = slices.Clone(r.Secret)
	if err := fn(&r, found); err != nil {
		return inventory.Room{}, err
	}
	now := time.Now().UTC()
	r.EventID, r.Version, r.UpdatedAt = eventID, r.Version+1, now
	r.OpensAt = r.OpensAt.UTC().Truncate(time.Microsecond) // as PostgreSQL keeps it
	r.PassLifetime = r.PassLifetime.Truncate(time.Second)
	if !found {
		r.CreatedAt = now
	}
	s.rooms[eventID] = r
	return r, nil
}

// Room implements inventory.Store.
func (s *Store) Room(_ context.Context, eventID uuid.UUID) (inventory.Room, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.rooms[eventID]
	if !ok {
		return inventory.Room{}, inventory.ErrRoomNotFound
	}
	return r, nil
}

// OpenRooms implements inventory.Store.
func (s *Store) OpenRooms(context.Context) ([]inventory.Room, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []inventory.Room
	for _, r := range s.rooms {
		if !r.Closed {
			out = append(out, r)
		}
	}
	return out, nil
}

// ReturnTickets implements inventory.Store.
func (s *Store) ReturnTickets(_ context.Context, holdID string, _ time.Time) (inventory.TicketType, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts, ok := s.tickets[holdID]
	if !ok || len(ts) == 0 {
		return inventory.TicketType{}, 0, inventory.ErrHoldNotFound.WithDetail("hold %s sold no tickets", holdID)
	}
	t := s.types[ts[0].TicketTypeID]
	if s.returned[holdID] {
		return t, 0, nil
	}
	s.returned[holdID] = true
	t.Returned += len(ts)
	t.UpdatedAt = time.Now().UTC()
	s.types[t.ID] = t
	if e, ok := s.events[t.EventID]; ok {
		e.Version++
		s.events[t.EventID] = e
	}
	return t, len(ts), nil
}
