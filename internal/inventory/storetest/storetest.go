// Package storetest is the conformance suite every inventory.Store adapter runs (memory and
// PostgreSQL): the catalogue, the listing order, and the commit that must never oversell and must
// return the same tickets when repeated.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/inventory"
)

// base is an instant databases keep exactly (microseconds), in the future.
func base() time.Time {
	return time.Now().Add(30 * 24 * time.Hour).UTC().Truncate(time.Second)
}

func newEvent(startsAt time.Time) inventory.Event {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return inventory.Event{
		ID: uuid.New(), OrganizerID: uuid.New(), Name: "Night at the Opera", Venue: "Royal Albert Hall",
		Description: "Queen, live.", StartsAt: startsAt, Version: 1, CreatedAt: now, UpdatedAt: now,
	}
}

func newTicketType(eventID uuid.UUID, capacity int, createdAt time.Time) inventory.TicketType {
	return inventory.TicketType{
		ID: uuid.New(), EventID: eventID, Name: "Stalls", PriceCents: 8900, Currency: "GBP", Capacity: capacity,
		MaxPerOrder: 4, CreatedAt: createdAt, UpdatedAt: createdAt,
	}
}

func sameEvent(t *testing.T, got, want inventory.Event) {
	t.Helper()
	if got.ID != want.ID || got.OrganizerID != want.OrganizerID || got.Name != want.Name || got.Venue != want.Venue ||
		got.Description != want.Description || !got.StartsAt.Equal(want.StartsAt) || got.Version != want.Version ||
		!got.CreatedAt.Equal(want.CreatedAt) || !got.CancelledAt.Equal(want.CancelledAt) ||
		(got.CancelCutoffHours == nil) != (want.CancelCutoffHours == nil) ||
		(got.CancelCutoffHours != nil && *got.CancelCutoffHours != *want.CancelCutoffHours) {
		t.Fatalf("event differs:\n got %+v\nwant %+v", got, want)
	}
}

func sameTicketType(t *testing.T, got, want inventory.TicketType) {
	t.Helper()
	if got.ID != want.ID || got.EventID != want.EventID || got.Name != want.Name || got.PriceCents != want.PriceCents ||
		got.Currency != want.Currency || got.Capacity != want.Capacity || got.Sold != want.Sold ||
		got.MaxPerOrder != want.MaxPerOrder || !got.SalesStart.Equal(want.SalesStart) || !got.SalesEnd.Equal(want.SalesEnd) ||
		!got.CreatedAt.Equal(want.CreatedAt) {
		t.Fatalf("ticket type differs:\n got %+v\nwant %+v", got, want)
	}
}

func wantErr(t *testing.T, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

// fixture is an event with one ticket type.
type fixture struct {
	t  *testing.T
	s  inventory.Store
	e  inventory.Event
	tt inventory.TicketType
}

func newFixture(t *testing.T, s inventory.Store, capacity int) *fixture {
	t.Helper()
	ctx := context.Background()
	e := newEvent(base())
	if err := s.CreateEvent(ctx, e); err != nil {
		t.Fatalf("create event: %v", err)
	}
	tt := newTicketType(e.ID, capacity, e.CreatedAt)
	if err := s.CreateTicketType(ctx, tt); err != nil {
		t.Fatalf("create ticket type: %v", err)
	}
	return &fixture{t: t, s: s, e: e, tt: tt}
}

func (f *fixture) hold(qty int) inventory.Hold {
	return inventory.Hold{
		ID: inventory.NewHoldID(f.tt.ID), TicketTypeID: f.tt.ID, CustomerID: uuid.New(), Quantity: qty,
		UnitPriceCents: f.tt.PriceCents, Currency: f.tt.Currency, Status: inventory.HoldClaimed,
		ExpiresAt: time.Now().Add(time.Minute), CreatedAt: time.Now(),
	}
}

func commitReq(h inventory.Hold) inventory.CommitRequest {
	return inventory.CommitRequest{Hold: h, OrderID: uuid.New(), Now: time.Now().UTC().Truncate(time.Microsecond)}
}

func (f *fixture) sold() int {
	f.t.Helper()
	tt, err := f.s.TicketType(context.Background(), f.tt.ID)
	if err != nil {
		f.t.Fatalf("ticket type: %v", err)
	}
	return tt.Sold
}

// checkTickets checks a commit's tickets against its request.
func checkTickets(t *testing.T, f *fixture, r inventory.CommitRequest, ts []inventory.Ticket) {
	t.Helper()
	if len(ts) != r.Hold.Quantity {
		t.Fatalf("hold of %d made %d tickets", r.Hold.Quantity, len(ts))
	}
	ids := map[uuid.UUID]bool{}
	for i, tk := range ts {
		if tk.Seq != i+1 || tk.HoldID != r.Hold.ID || tk.TicketTypeID != f.tt.ID || tk.EventID != f.e.ID ||
			tk.OrderID != r.OrderID || tk.CustomerID != r.Hold.CustomerID || tk.ID == uuid.Nil || ids[tk.ID] {
			t.Fatalf("ticket %d of hold %s: %+v", i, r.Hold.ID, tk)
		}
		ids[tk.ID] = true
	}
}

func ticketIDs(ts []inventory.Ticket) []uuid.UUID {
	out := make([]uuid.UUID, len(ts))
	for i, tk := range ts {
		out[i] = tk.ID
	}
	return out
}

// Run runs the suite. newStore returns a store for one case; it may share state with other
// calls, except that ListEvents expects a store holding only the events the case made.
func Run(t *testing.T, newStore func(t *testing.T) inventory.Store) {
	t.Run("WaitingRooms", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := newStore(t)
		e := newEvent(base())
		if err := s.CreateEvent(ctx, e); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Room(ctx, e.ID); !errors.Is(err, inventory.ErrRoomNotFound) {
			t.Fatalf("room of an event without one: %v", err)
		}
		if _, err := s.SaveRoom(ctx, uuid.New(), func(*inventory.Room, bool) error { return nil }); !errors.Is(err, inventory.ErrEventNotFound) {
			t.Fatalf("room of an unknown event: %v", err)
		}
		opens := time.Now().UTC().Add(time.Hour).Truncate(time.Millisecond)
		secret := []byte("0123456789abcdef0123456789abcdef")
		first, err := s.SaveRoom(ctx, e.ID, func(r *inventory.Room, found bool) error {
			if found || r.EventID != e.ID {
				t.Errorf("first save: found %v, room %+v", found, r)
			}
			r.RatePerMinute, r.MaxShoppers, r.OpensAt, r.PassLifetime, r.Secret = 600, 50, opens, 10*time.Minute, secret
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Room(ctx, e.ID)
		if err != nil || got.RatePerMinute != 600 || got.MaxShoppers != 50 || !got.OpensAt.Equal(opens) ||
			got.PassLifetime != 10*time.Minute || string(got.Secret) != string(secret) || got.Paused || got.Closed ||
			got.Version != first.Version || got.Version < 1 {
			t.Fatalf("room as saved: %+v, %v", got, err)
		}
		refuse := errors.New("no")
		if _, err := s.SaveRoom(ctx, e.ID, func(r *inventory.Room, _ bool) error { r.RatePerMinute = 1; return refuse }); !errors.Is(err, refuse) {
			t.Fatalf("a refused change: %v", err)
		}
		second, err := s.SaveRoom(ctx, e.ID, func(r *inventory.Room, found bool) error {
			if !found || r.RatePerMinute != 600 {
				t.Errorf("second save sees found %v, %+v", found, r)
			}
			r.RatePerMinute, r.Paused = 6000, true
			return nil
		})
		if err != nil || second.RatePerMinute != 6000 || !second.Paused || second.MaxShoppers != 50 || second.Version <= first.Version {
			t.Fatalf("second save: %+v, %v", second, err)
		}
		open, err := s.OpenRooms(ctx)
		if err != nil || !hasRoom(open, e.ID) {
			t.Fatalf("open rooms: %v, %v", open, err)
		}
		if _, err := s.SaveRoom(ctx, e.ID, func(r *inventory.Room, _ bool) error { r.Closed = true; return nil }); err != nil {
			t.Fatal(err)
		}
		if open, err := s.OpenRooms(ctx); err != nil || hasRoom(open, e.ID) {
			t.Fatalf("a closed room is still open: %v, %v", open, err)
		}
		if got, err := s.Room(ctx, e.ID); err != nil || !got.Closed {
			t.Fatalf("a closed room reads as %+v, %v", got, err)
		}
	})

	t.Run("RequestKeys", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := newStore(t)
		owner := uuid.New()
		now := time.Now().UTC()
		e := newEvent(base())
		key := inventory.RequestKey{Owner: owner, Key: "ev-1", RequestHash: "h1", ResourceID: e.ID, ExpiresAt: now.Add(time.Hour)}
		if _, err := s.RequestKey(ctx, owner, "ev-1", now); !errors.Is(err, inventory.ErrRequestKeyNotFound) {
			t.Fatalf("unknown key: %v", err)
		}
		if err := s.CreateEventKeyed(ctx, e, key); err != nil {
			t.Fatalf("create keyed: %v", err)
		}
		got, err := s.RequestKey(ctx, owner, "ev-1", now)
		if err != nil || got.RequestHash != "h1" || got.ResourceID != e.ID || got.ExpiresAt.Sub(key.ExpiresAt).Abs() > time.Millisecond {
			t.Fatalf("read key: %+v, %v", got, err)
		}
		// A second create under the live key creates nothing.
		e2 := newEvent(base())
		wantErr(t, s.CreateEventKeyed(ctx, e2, inventory.RequestKey{Owner: owner, Key: "ev-1", RequestHash: "h2",
			ResourceID: e2.ID, ExpiresAt: now.Add(time.Hour)}), inventory.ErrRequestKeyTaken, "create under a taken key")
		if _, err := s.Event(ctx, e2.ID); !errors.Is(err, inventory.ErrEventNotFound) {
			t.Fatalf("the refused create made an event: %v", err)
		}
		// Keys belong to their owner.
		if err := s.CreateEventKeyed(ctx, e2, inventory.RequestKey{Owner: uuid.New(), Key: "ev-1", RequestHash: "h2",
			ResourceID: e2.ID, ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatalf("another owner's key: %v", err)
		}
		// Ticket types too; a refused one leaves the event's version alone.
		tt := newTicketType(e.ID, 5, base())
		if err := s.CreateTicketTypeKeyed(ctx, tt, inventory.RequestKey{Owner: owner, Key: "tt-1", RequestHash: "t1",
			ResourceID: tt.ID, ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatalf("create ticket type keyed: %v", err)
		}
		before, _ := s.Event(ctx, e.ID)
		tt2 := newTicketType(e.ID, 5, base())
		wantErr(t, s.CreateTicketTypeKeyed(ctx, tt2, inventory.RequestKey{Owner: owner, Key: "tt-1", RequestHash: "t2",
			ResourceID: tt2.ID, ExpiresAt: now.Add(time.Hour)}), inventory.ErrRequestKeyTaken, "ticket type under a taken key")
		if _, err := s.TicketType(ctx, tt2.ID); !errors.Is(err, inventory.ErrTicketTypeNotFound) {
			t.Fatalf("the refused create made a ticket type: %v", err)
		}
		if after, _ := s.Event(ctx, e.ID); after.Version != before.Version {
			t.Fatalf("a refused ticket type bumped the event's version from %d to %d", before.Version, after.Version)
		}
		// A ticket type for no event records no key.
		orphan := newTicketType(uuid.New(), 5, base())
		wantErr(t, s.CreateTicketTypeKeyed(ctx, orphan, inventory.RequestKey{Owner: owner, Key: "tt-2", RequestHash: "t3",
			ResourceID: orphan.ID, ExpiresAt: now.Add(time.Hour)}), inventory.ErrEventNotFound, "ticket type for no event")
		if _, err := s.RequestKey(ctx, owner, "tt-2", now); !errors.Is(err, inventory.ErrRequestKeyNotFound) {
			t.Fatalf("a failed create kept its key: %v", err)
		}
		// An expired key is free again.
		e3 := newEvent(base())
		if err := s.CreateEventKeyed(ctx, e3, inventory.RequestKey{Owner: owner, Key: "old", RequestHash: "o1",
			ResourceID: e3.ID, ExpiresAt: now.Add(-time.Second)}); err != nil {
			t.Fatalf("create under a key given as already expired: %v", err)
		}
		if _, err := s.RequestKey(ctx, owner, "old", now); !errors.Is(err, inventory.ErrRequestKeyNotFound) {
			t.Fatalf("an expired key is still found: %v", err)
		}
		e4 := newEvent(base())
		if err := s.CreateEventKeyed(ctx, e4, inventory.RequestKey{Owner: owner, Key: "old", RequestHash: "o2",
			ResourceID: e4.ID, ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatalf("reuse an expired key: %v", err)
		}
	})

	t.Run("Events", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := newStore(t)
		e := newEvent(base())
		if err := s.CreateEvent(ctx, e); err != nil {
			t.Fatalf("create event: %v", err)
		}
		got, err := s.Event(ctx, e.ID)
		if err != nil {
			t.Fatalf("event: %v", err)
		}
		sameEvent(t, got, e)

		cutoff, cancelled := 48, base().Add(time.Minute)
		up, err := s.UpdateEvent(ctx, e.ID, func(e *inventory.Event) error {
			e.Name, e.Venue, e.Description = "A Night at the Opera", "Wembley", ""
			e.StartsAt = e.StartsAt.Add(time.Hour)
			e.CancelCutoffHours, e.CancelledAt = &cutoff, cancelled
			return nil
		})
		if err != nil {
			t.Fatalf("update event: %v", err)
		}
		want := e
		want.Name, want.Venue, want.Description, want.StartsAt, want.Version = "A Night at the Opera", "Wembley", "", e.StartsAt.Add(time.Hour), 2
		want.CancelCutoffHours, want.CancelledAt = &cutoff, cancelled
		sameEvent(t, up, want)
		got, _ = s.Event(ctx, e.ID)
		sameEvent(t, got, want)
		if got.UpdatedAt.Before(e.UpdatedAt) {
			t.Fatalf("updated_at went back: %s < %s", got.UpdatedAt, e.UpdatedAt)
		}

		// A refusal inside the update changes nothing.
		refused := errors.New("refused")
		_, err = s.UpdateEvent(ctx, e.ID, func(e *inventory.Event) error { e.Name = "changed"; return refused })
		wantErr(t, err, refused, "update refused by fn")
		got, _ = s.Event(ctx, e.ID)
		sameEvent(t, got, want)

		// Ticket types bump the event's version too.
		tt := newTicketType(e.ID, 10, e.CreatedAt)
		if err := s.CreateTicketType(ctx, tt); err != nil {
			t.Fatalf("create ticket type: %v", err)
		}
		if got, _ := s.Event(ctx, e.ID); got.Version != 3 {
			t.Fatalf("version %d after a new ticket type, want 3", got.Version)
		}
		gtt, err := s.TicketType(ctx, tt.ID)
		if err != nil {
			t.Fatalf("ticket type: %v", err)
		}
		sameTicketType(t, gtt, tt)
		ut, err := s.UpdateTicketType(ctx, tt.ID, func(t *inventory.TicketType) error {
			t.Name, t.PriceCents, t.Capacity, t.MaxPerOrder = "Circle", 12000, 20, 6
			t.SalesStart, t.SalesEnd = base().Add(-time.Hour), base()
			t.Sold = 5 // only commits change sold; an update must ignore it
			return nil
		})
		if err != nil {
			t.Fatalf("update ticket type: %v", err)
		}
		wantTT := tt
		wantTT.Name, wantTT.PriceCents, wantTT.Capacity, wantTT.MaxPerOrder = "Circle", 12000, 20, 6
		wantTT.SalesStart, wantTT.SalesEnd = base().Add(-time.Hour), base()
		sameTicketType(t, ut, wantTT)
		gtt, _ = s.TicketType(ctx, tt.ID)
		sameTicketType(t, gtt, wantTT)
		if got, _ := s.Event(ctx, e.ID); got.Version != 4 {
			t.Fatalf("version %d after a ticket type update, want 4", got.Version)
		}
		// Clearing the sales window.
		ut, err = s.UpdateTicketType(ctx, tt.ID, func(t *inventory.TicketType) error {
			t.SalesStart, t.SalesEnd = time.Time{}, time.Time{}
			return nil
		})
		if err != nil || !ut.SalesStart.IsZero() || !ut.SalesEnd.IsZero() {
			t.Fatalf("clear the sales window: %+v, %v", ut, err)
		}

		// Unknown ids.
		_, err = s.Event(ctx, uuid.New())
		wantErr(t, err, inventory.ErrEventNotFound, "unknown event")
		_, err = s.UpdateEvent(ctx, uuid.New(), func(*inventory.Event) error { return nil })
		wantErr(t, err, inventory.ErrEventNotFound, "update an unknown event")
		_, err = s.TicketType(ctx, uuid.New())
		wantErr(t, err, inventory.ErrTicketTypeNotFound, "unknown ticket type")
		_, err = s.UpdateTicketType(ctx, uuid.New(), func(*inventory.TicketType) error { return nil })
		wantErr(t, err, inventory.ErrTicketTypeNotFound, "update an unknown ticket type")
		err = s.CreateTicketType(ctx, newTicketType(uuid.New(), 10, e.CreatedAt))
		wantErr(t, err, inventory.ErrEventNotFound, "ticket type for an unknown event")
		tts, err := s.TicketTypes(ctx, uuid.New())
		if err != nil || len(tts) != 0 {
			t.Fatalf("ticket types of an unknown event: %v, %v", tts, err)
		}
	})

	t.Run("ListEvents", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := newStore(t)
		b := base()
		var all []inventory.Event
		for i := range 25 {
			// Five start times, five events each: ties are broken by id.
			e := newEvent(b.Add(time.Duration(4-i%5) * time.Hour))
			if err := s.CreateEvent(ctx, e); err != nil {
				t.Fatalf("create event: %v", err)
			}
			all = append(all, e)
		}
		slices.SortFunc(all, func(a, b inventory.Event) int {
			if c := a.StartsAt.Compare(b.StartsAt); c != 0 {
				return c
			}
			return bytes.Compare(a.ID[:], b.ID[:])
		})
		for _, limit := range []int{1, 7, 25, 100} {
			var got []inventory.Event
			after := inventory.Cursor{StartsAt: time.Unix(0, 0).UTC()}
			for page := 0; ; page++ {
				if page > 30 {
					t.Fatalf("limit %d: the listing never ends", limit)
				}
				events, err := s.ListEvents(ctx, after, limit)
				if err != nil {
					t.Fatalf("list events: %v", err)
				}
				if len(events) > limit {
					t.Fatalf("limit %d gave %d events", limit, len(events))
				}
				got = append(got, events...)
				if len(events) < limit {
					break
				}
				last := events[len(events)-1]
				after = inventory.Cursor{StartsAt: last.StartsAt, ID: last.ID}
			}
			if len(got) != len(all) {
				t.Fatalf("limit %d: listed %d events, want %d", limit, len(got), len(all))
			}
			for i := range all {
				if got[i].ID != all[i].ID {
					t.Fatalf("limit %d: event %d is %s (starts %s), want %s (starts %s)", limit, i,
						got[i].ID, got[i].StartsAt, all[i].ID, all[i].StartsAt)
				}
				sameEvent(t, got[i], all[i])
			}
		}
		// A cursor in the middle of a group of equal start times.
		mid := all[12]
		events, err := s.ListEvents(ctx, inventory.Cursor{StartsAt: mid.StartsAt, ID: mid.ID}, 100)
		if err != nil || len(events) != 12 || events[0].ID != all[13].ID {
			t.Fatalf("after the 13th event: %d events, %v", len(events), err)
		}
	})

	t.Run("TicketTypesOrder", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := newStore(t)
		e := newEvent(base())
		if err := s.CreateEvent(ctx, e); err != nil {
			t.Fatalf("create event: %v", err)
		}
		if tts, err := s.TicketTypes(ctx, e.ID); err != nil || len(tts) != 0 {
			t.Fatalf("ticket types of a new event: %v, %v", tts, err)
		}
		b := time.Now().UTC().Truncate(time.Microsecond)
		// Created out of order; two share a creation time.
		made := []inventory.TicketType{
			newTicketType(e.ID, 1, b.Add(2*time.Second)),
			newTicketType(e.ID, 2, b),
			newTicketType(e.ID, 3, b.Add(time.Second)),
			newTicketType(e.ID, 4, b.Add(time.Second)),
		}
		for _, tt := range made {
			if err := s.CreateTicketType(ctx, tt); err != nil {
				t.Fatalf("create ticket type: %v", err)
			}
		}
		// Another event's ticket types are not listed.
		other := newEvent(base())
		_ = s.CreateEvent(ctx, other)
		_ = s.CreateTicketType(ctx, newTicketType(other.ID, 9, b))

		want := slices.Clone(made)
		slices.SortFunc(want, func(a, b inventory.TicketType) int {
			if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
				return c
			}
			return bytes.Compare(a.ID[:], b.ID[:])
		})
		got, err := s.TicketTypes(ctx, e.ID)
		if err != nil || len(got) != len(want) {
			t.Fatalf("ticket types: %d, %v", len(got), err)
		}
		for i := range want {
			sameTicketType(t, got[i], want[i])
		}
	})

	t.Run("CapacityBelowSold", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		f := newFixture(t, newStore(t), 10)
		res := f.s.Commit(ctx, []inventory.CommitRequest{commitReq(f.hold(3))})
		if res[0].Err != nil {
			t.Fatalf("commit: %v", res[0].Err)
		}
		_, err := f.s.UpdateTicketType(ctx, f.tt.ID, func(t *inventory.TicketType) error { t.Capacity = 2; return nil })
		wantErr(t, err, inventory.ErrCapacityBelowCommitted, "capacity below sold")
		if tt, _ := f.s.TicketType(ctx, f.tt.ID); tt.Capacity != 10 || tt.Sold != 3 {
			t.Fatalf("after a refused update: %+v", tt)
		}
		if tt, err := f.s.UpdateTicketType(ctx, f.tt.ID, func(t *inventory.TicketType) error { t.Capacity = 3; return nil }); err != nil || tt.Capacity != 3 || tt.Sold != 3 {
			t.Fatalf("capacity down to sold: %+v, %v", tt, err)
		}
	})

	t.Run("ReturnTickets", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		f := newFixture(t, newStore(t), 5)
		r := commitReq(f.hold(3))
		if res := f.s.Commit(ctx, []inventory.CommitRequest{r}); res[0].Err != nil {
			t.Fatal(res[0].Err)
		}
		if res := f.s.Commit(ctx, []inventory.CommitRequest{commitReq(f.hold(3))}); !errors.Is(res[0].Err, inventory.ErrSoldOut) {
			t.Fatalf("3 more of 5 with 3 sold: %v, want sold out", res[0].Err)
		}
		tt, n, err := f.s.ReturnTickets(ctx, r.Hold.ID, time.Now())
		if err != nil || n != 3 || tt.Sold != 3 || tt.Returned != 3 || tt.SoldNow() != 0 || tt.ID != f.tt.ID {
			t.Fatalf("return: %+v n=%d err=%v", tt, n, err)
		}
		// Once only.
		if tt, n, err := f.s.ReturnTickets(ctx, r.Hold.ID, time.Now()); err != nil || n != 0 || tt.Returned != 3 {
			t.Fatalf("return again: %+v n=%d err=%v", tt, n, err)
		}
		if got, _ := f.s.TicketType(ctx, f.tt.ID); got.Returned != 3 || got.Sold != 3 {
			t.Fatalf("stored: %+v", got)
		}
		_, _, err = f.s.ReturnTickets(ctx, inventory.NewHoldID(f.tt.ID), time.Now())
		wantErr(t, err, inventory.ErrHoldNotFound, "return a hold never sold")
		// The tickets given back sell again, up to the capacity.
		if res := f.s.Commit(ctx, []inventory.CommitRequest{commitReq(f.hold(5))}); res[0].Err != nil || res[0].Sold != 8 {
			t.Fatalf("sell the returned tickets again: %+v", res[0])
		}
		if res := f.s.Commit(ctx, []inventory.CommitRequest{commitReq(f.hold(1))}); !errors.Is(res[0].Err, inventory.ErrSoldOut) {
			t.Fatalf("one past the capacity: %v, want sold out", res[0].Err)
		}
		// Capacity goes down to what is sold now, not below.
		_, err = f.s.UpdateTicketType(ctx, f.tt.ID, func(t *inventory.TicketType) error { t.Capacity = 4; return nil })
		wantErr(t, err, inventory.ErrCapacityBelowCommitted, "capacity below sold now")
	})

	t.Run("Commit", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		f := newFixture(t, newStore(t), 10)
		r := commitReq(f.hold(3))
		res := f.s.Commit(ctx, []inventory.CommitRequest{r})
		if len(res) != 1 || res[0].Err != nil || res[0].Sold != 3 {
			t.Fatalf("commit: %+v", res)
		}
		checkTickets(t, f, r, res[0].Tickets)
		if f.sold() != 3 {
			t.Fatalf("sold %d after a commit of 3", f.sold())
		}
		first := ticketIDs(res[0].Tickets)

		// A repeat (a redelivered message, say: even with another order id) returns the same
		// tickets and sells nothing more.
		again := r
		again.OrderID = uuid.New()
		res = f.s.Commit(ctx, []inventory.CommitRequest{again})
		if res[0].Err != nil || res[0].Sold != 3 || !slices.Equal(ticketIDs(res[0].Tickets), first) {
			t.Fatalf("repeated commit: %+v", res)
		}
		checkTickets(t, f, r, res[0].Tickets)
		if f.sold() != 3 {
			t.Fatalf("sold %d after a repeated commit", f.sold())
		}
		ts, err := f.s.Tickets(ctx, r.Hold.ID)
		if err != nil || !slices.Equal(ticketIDs(ts), first) {
			t.Fatalf("tickets of the hold: %v, %v", ts, err)
		}
		checkTickets(t, f, r, ts)
		if ts, err := f.s.Tickets(ctx, inventory.NewHoldID(f.tt.ID)); err != nil || len(ts) != 0 {
			t.Fatalf("tickets of a hold never committed: %v, %v", ts, err)
		}

		// A batch with a hold already committed and a new one.
		r2 := commitReq(f.hold(2))
		res = f.s.Commit(ctx, []inventory.CommitRequest{r, r2})
		if res[0].Err != nil || !slices.Equal(ticketIDs(res[0].Tickets), first) || res[1].Err != nil {
			t.Fatalf("batch of a done and a new commit: %+v", res)
		}
		checkTickets(t, f, r2, res[1].Tickets)
		if f.sold() != 5 || res[1].Sold != 5 {
			t.Fatalf("sold %d (result says %d) after 3 + 2", f.sold(), res[1].Sold)
		}

		// A commit for a ticket type that does not exist.
		ghost := f.hold(1)
		ghost.TicketTypeID = uuid.New()
		res = f.s.Commit(ctx, []inventory.CommitRequest{commitReq(ghost)})
		wantErr(t, res[0].Err, inventory.ErrTicketTypeNotFound, "commit on an unknown ticket type")
	})

	t.Run("BatchOverCapacity", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		f := newFixture(t, newStore(t), 10)
		var reqs []inventory.CommitRequest
		for _, q := range []int{4, 4, 4, 1, 3, 1} {
			reqs = append(reqs, commitReq(f.hold(q)))
		}
		res := f.s.Commit(ctx, reqs)
		if len(res) != len(reqs) {
			t.Fatalf("%d results for %d requests", len(res), len(reqs))
		}
		sold := 0
		var refused []int
		for i, r := range res {
			switch {
			case r.Err == nil:
				checkTickets(t, f, reqs[i], r.Tickets)
				sold += reqs[i].Hold.Quantity
			case errors.Is(r.Err, inventory.ErrSoldOut):
				if len(r.Tickets) != 0 {
					t.Fatalf("a refused commit has tickets")
				}
				refused = append(refused, reqs[i].Hold.Quantity)
				if ts, _ := f.s.Tickets(ctx, reqs[i].Hold.ID); len(ts) != 0 {
					t.Fatalf("a refused commit left tickets")
				}
			default:
				t.Fatalf("commit %d: %v", i, r.Err)
			}
		}
		if sold > 10 || f.sold() != sold || len(refused) == 0 {
			t.Fatalf("sold %d in results, %d in the store, %d refused", sold, f.sold(), len(refused))
		}
		// Exactly what fits: nothing refused would have fitted in what is left.
		for _, q := range refused {
			if q <= 10-sold {
				t.Fatalf("refused %d with %d left", q, 10-sold)
			}
		}
		if sold != 10 { // 4 + 4 + 1 + 1 in order
			t.Fatalf("sold %d, want 10", sold)
		}
	})

	t.Run("BatchSameHoldTwice", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		f := newFixture(t, newStore(t), 10)
		r := commitReq(f.hold(3))
		other := commitReq(f.hold(1))
		res := f.s.Commit(ctx, []inventory.CommitRequest{r, other, r})
		for i, x := range res {
			if x.Err != nil {
				t.Fatalf("commit %d: %v", i, x.Err)
			}
		}
		if !slices.Equal(ticketIDs(res[0].Tickets), ticketIDs(res[2].Tickets)) {
			t.Fatalf("one hold twice in a batch made two sets of tickets")
		}
		checkTickets(t, f, r, res[0].Tickets)
		if f.sold() != 4 {
			t.Fatalf("sold %d, want 4", f.sold())
		}
		if ts, _ := f.s.Tickets(ctx, r.Hold.ID); len(ts) != 3 {
			t.Fatalf("the hold has %d tickets", len(ts))
		}
	})

	t.Run("ConcurrentCommitsOfOneHold", func(t *testing.T) {
		// Two replicas may commit one hold at once (a redelivered message racing the first): one
		// sale, and both answers name the same tickets.
		t.Parallel()
		ctx := context.Background()
		f := newFixture(t, newStore(t), 10)
		r := commitReq(f.hold(2))
		const n = 8
		results := make([]inventory.CommitResult, n)
		var wg sync.WaitGroup
		gate := make(chan struct{})
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				results[i] = f.s.Commit(ctx, []inventory.CommitRequest{r, commitReq(f.hold(1))})[0]
			}()
		}
		close(gate)
		wg.Wait()
		for i, res := range results {
			if res.Err != nil {
				t.Fatalf("commit %d: %v", i, res.Err)
			}
			checkTickets(t, f, r, res.Tickets)
			if !slices.Equal(ticketIDs(res.Tickets), ticketIDs(results[0].Tickets)) {
				t.Fatalf("commit %d returned other tickets than commit 0", i)
			}
		}
		if f.sold() != 2+n {
			t.Fatalf("sold %d, want %d (the hold once, and %d others)", f.sold(), 2+n, n)
		}
	})

	t.Run("ConcurrentCommits", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		f := newFixture(t, newStore(t), 30)
		const n = 50
		reqs := make([]inventory.CommitRequest, n)
		for i := range reqs {
			reqs[i] = commitReq(f.hold(1))
		}
		results := make([]inventory.CommitResult, n)
		var wg sync.WaitGroup
		gate := make(chan struct{})
		for i := range reqs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				results[i] = f.s.Commit(ctx, reqs[i:i+1])[0]
			}()
		}
		close(gate)
		wg.Wait()
		ok := 0
		for i, r := range results {
			switch {
			case r.Err == nil:
				ok++
				checkTickets(t, f, reqs[i], r.Tickets)
				ts, err := f.s.Tickets(ctx, reqs[i].Hold.ID)
				if err != nil || !slices.Equal(ticketIDs(ts), ticketIDs(r.Tickets)) {
					t.Fatalf("tickets of commit %d: %v, %v", i, ts, err)
				}
			case errors.Is(r.Err, inventory.ErrSoldOut):
				if ts, _ := f.s.Tickets(ctx, reqs[i].Hold.ID); len(ts) != 0 {
					t.Fatalf("a refused commit left tickets")
				}
			default:
				t.Fatalf("commit %d: %v", i, r.Err)
			}
		}
		if ok != 30 || f.sold() != 30 {
			t.Fatalf("%d concurrent commits on capacity 30: %d succeeded, sold %d", n, ok, f.sold())
		}
	})
}

func hasRoom(rs []inventory.Room, event uuid.UUID) bool {
	for _, r := range rs {
		if r.EventID == event {
			return true
		}
	}
	return false
}
