package inventory_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/platform/problem"
)

func wantErr(t *testing.T, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

// wantInvalid checks a 422 validation problem naming field.
func wantInvalid(t *testing.T, err error, field, what string) {
	t.Helper()
	wantErr(t, err, inventory.ErrInvalid, what)
	pe := problem.As(err)
	if pe.Kind.Status() != 422 || len(pe.Fields) == 0 || pe.Fields[0].Field != field {
		t.Fatalf("%s: problem %+v, want a 422 naming %q", what, pe, field)
	}
}

func ticketIDs(ts []inventory.Ticket) []uuid.UUID {
	out := make([]uuid.UUID, len(ts))
	for i, tk := range ts {
		out[i] = tk.ID
	}
	return out
}

func TestEventValidation(t *testing.T) {
	t.Parallel()
	forEachBackend(t, nil, func(t *testing.T, e *env) {
		ctx := context.Background()
		org := uuid.New()
		future := e.clk.Now().Add(24 * time.Hour)
		valid := inventory.EventInput{Name: "  Night at the Opera ", Venue: "Royal Albert Hall", StartsAt: future}
		bad := []struct {
			field string
			in    func(*inventory.EventInput)
		}{
			{"name", func(in *inventory.EventInput) { in.Name = "" }},
			{"name", func(in *inventory.EventInput) { in.Name = "   " }},
			{"name", func(in *inventory.EventInput) { in.Name = strings.Repeat("n", 201) }},
			{"venue", func(in *inventory.EventInput) { in.Venue = "" }},
			{"venue", func(in *inventory.EventInput) { in.Venue = strings.Repeat("v", 201) }},
			{"description", func(in *inventory.EventInput) { in.Description = strings.Repeat("d", 5001) }},
			{"starts_at", func(in *inventory.EventInput) { in.StartsAt = e.clk.Now().Add(-time.Minute) }},
			{"starts_at", func(in *inventory.EventInput) { in.StartsAt = e.clk.Now() }},
			{"starts_at", func(in *inventory.EventInput) { in.StartsAt = time.Time{} }},
		}
		for _, c := range bad {
			in := valid
			c.in(&in)
			_, err := e.mod.CreateEvent(ctx, org, in)
			wantInvalid(t, err, c.field, "create event with a bad "+c.field)
		}
		if events, _, err := e.mod.ListEvents(ctx, "", 100); err != nil || len(events) != 0 {
			t.Fatalf("refused events were created: %d, %v", len(events), err)
		}

		// 200 characters (not bytes) are fine.
		long := valid
		long.Name = strings.Repeat("é", 200)
		if _, err := e.mod.CreateEvent(ctx, org, long); err != nil {
			t.Fatalf("a 200-character name: %v", err)
		}
		ev, err := e.mod.CreateEvent(ctx, org, valid)
		if err != nil || ev.Name != "Night at the Opera" || ev.OrganizerID != org || ev.Version != 1 || !ev.StartsAt.Equal(future) {
			t.Fatalf("create event: %+v, %v", ev, err)
		}

		// Updates: the same rules, and only the owner.
		empty, past, long201 := "", e.clk.Now().Add(-time.Second), strings.Repeat("x", 201)
		for _, c := range []struct {
			field string
			p     inventory.EventPatch
		}{
			{"name", inventory.EventPatch{Name: &empty}},
			{"name", inventory.EventPatch{Name: &long201}},
			{"venue", inventory.EventPatch{Venue: &empty}},
			{"starts_at", inventory.EventPatch{StartsAt: &past}},
		} {
			_, err := e.mod.UpdateEvent(ctx, org, ev.ID, c.p)
			wantInvalid(t, err, c.field, "update event with a bad "+c.field)
		}
		name := "A Night at the Opera"
		_, err = e.mod.UpdateEvent(ctx, uuid.New(), ev.ID, inventory.EventPatch{Name: &name})
		wantErr(t, err, inventory.ErrNotOwner, "update someone else's event")
		_, err = e.mod.UpdateEvent(ctx, org, uuid.New(), inventory.EventPatch{Name: &name})
		wantErr(t, err, inventory.ErrEventNotFound, "update an unknown event")
		c, err := e.mod.Catalogue(ctx, ev.ID)
		if err != nil || c.Event.Name != "Night at the Opera" || c.Event.Version != 1 {
			t.Fatalf("refused updates changed the event: %+v, %v", c.Event, err)
		}

		up, err := e.mod.UpdateEvent(ctx, org, ev.ID, inventory.EventPatch{Name: &name})
		if err != nil || up.Name != name || up.Version != 2 || up.Venue != ev.Venue {
			t.Fatalf("update event: %+v, %v", up, err)
		}
		if c, err := e.mod.Catalogue(ctx, ev.ID); err != nil || c.Event.Name != name {
			t.Fatalf("catalogue after the update: %+v, %v", c.Event, err)
		}
		if _, err := e.mod.Catalogue(ctx, uuid.New()); !errors.Is(err, inventory.ErrEventNotFound) {
			t.Fatalf("catalogue of an unknown event: %v", err)
		}
	})
}

func TestListEventsPages(t *testing.T) {
	t.Parallel()
	forEachBackend(t, nil, func(t *testing.T, e *env) {
		ctx := context.Background()
		org := uuid.New()
		var made []uuid.UUID
		for i := range 7 {
			ev, err := e.mod.CreateEvent(ctx, org, inventory.EventInput{Name: "Show", Venue: "Hall",
				StartsAt: e.clk.Now().Add(time.Duration(24+i%3) * time.Hour)})
			if err != nil {
				t.Fatalf("create event: %v", err)
			}
			made = append(made, ev.ID)
		}
		var seen []uuid.UUID
		cursor := ""
		for page := 0; ; page++ {
			events, next, err := e.mod.ListEvents(ctx, cursor, 3)
			if err != nil {
				t.Fatalf("page %d: %v", page, err)
			}
			for _, ev := range events {
				seen = append(seen, ev.ID)
			}
			if next == "" {
				break
			}
			if len(events) != 3 || page > 5 {
				t.Fatalf("page %d has %d events and a next cursor", page, len(events))
			}
			cursor = next
		}
		slices.SortFunc(seen, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
		slices.SortFunc(made, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
		if !slices.Equal(seen, made) {
			t.Fatalf("pages listed %d events, made %d", len(seen), len(made))
		}
		for _, bad := range []string{"!!", "bm90LWEtY3Vyc29y", "MTIzfG5vdC1hLXV1aWQ"} {
			_, _, err := e.mod.ListEvents(ctx, bad, 3)
			wantErr(t, err, problem.ErrBadRequest, "cursor "+bad)
		}
	})
}

func TestTicketTypeValidation(t *testing.T) {
	t.Parallel()
	forEachBackend(t, nil, func(t *testing.T, e *env) {
		ctx := context.Background()
		org := uuid.New()
		ev := e.event(t, org)
		start := e.clk.Now().Add(time.Hour)
		valid := inventory.TicketTypeInput{Name: "Stalls", PriceCents: 8900, Currency: "EUR", Capacity: 100, MaxPerOrder: 4}
		for _, c := range []struct {
			field string
			in    func(*inventory.TicketTypeInput)
		}{
			{"name", func(in *inventory.TicketTypeInput) { in.Name = " " }},
			{"price_cents", func(in *inventory.TicketTypeInput) { in.PriceCents = -1 }},
			{"price_cents", func(in *inventory.TicketTypeInput) { in.PriceCents = 100_000_001 }},
			{"capacity", func(in *inventory.TicketTypeInput) { in.Capacity = 0 }},
			{"capacity", func(in *inventory.TicketTypeInput) { in.Capacity = -5 }},
			{"capacity", func(in *inventory.TicketTypeInput) { in.Capacity = 1_000_001 }},
			{"max_per_order", func(in *inventory.TicketTypeInput) { in.MaxPerOrder = 0 }},
			{"max_per_order", func(in *inventory.TicketTypeInput) { in.MaxPerOrder = 51 }},
			{"currency", func(in *inventory.TicketTypeInput) { in.Currency = "EURO" }},
			{"currency", func(in *inventory.TicketTypeInput) { in.Currency = "XXY" }},
			{"currency", func(in *inventory.TicketTypeInput) { in.Currency = "eur" }},
			{"currency", func(in *inventory.TicketTypeInput) { in.Currency = "" }},
			{"sales_end", func(in *inventory.TicketTypeInput) { in.SalesStart, in.SalesEnd = start, start.Add(-time.Second) }},
			{"sales_end", func(in *inventory.TicketTypeInput) { in.SalesStart, in.SalesEnd = start, start }},
		} {
			in := valid
			c.in(&in)
			_, err := e.mod.CreateTicketType(ctx, org, ev.ID, in)
			wantInvalid(t, err, c.field, "ticket type with a bad "+c.field)
		}
		_, err := e.mod.CreateTicketType(ctx, uuid.New(), ev.ID, valid)
		wantErr(t, err, inventory.ErrNotOwner, "ticket type on someone else's event")
		_, err = e.mod.CreateTicketType(ctx, org, uuid.New(), valid)
		wantErr(t, err, inventory.ErrEventNotFound, "ticket type on an unknown event")
		c, err := e.mod.Catalogue(ctx, ev.ID)
		if err != nil || len(c.TicketTypes) != 0 || c.Event.Version != 1 {
			t.Fatalf("refused ticket types were created: %+v, %v", c, err)
		}

		// Limits themselves are fine.
		edge := valid
		edge.PriceCents, edge.Capacity, edge.MaxPerOrder, edge.Currency = 0, 1, 50, "JPY"
		edge.SalesStart, edge.SalesEnd = start, start.Add(time.Millisecond)
		tt, err := e.mod.CreateTicketType(ctx, org, ev.ID, edge)
		if err != nil {
			t.Fatalf("ticket type at the limits: %v", err)
		}
		c, err = e.mod.Catalogue(ctx, ev.ID)
		if err != nil || len(c.TicketTypes) != 1 || c.TicketTypes[0].ID != tt.ID || c.Event.Version != 2 {
			t.Fatalf("catalogue after a new ticket type: %+v, %v", c, err)
		}
		e.wantStock(t, ev.ID, tt.ID, 1, 0, 0)
		// Outside its sales window it cannot be held.
		_, _, err = e.mod.Hold(ctx, uuid.New(), tt.ID, 1, "")
		wantErr(t, err, inventory.ErrSalesClosed, "hold before sales start")
	})
}

func TestHoldThroughService(t *testing.T) {
	t.Parallel()
	forEachBackend(t, nil, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, ev, tt := e.sale(t, 10)
		cust := uuid.New()
		for _, q := range []int{0, -1} {
			_, _, err := e.mod.Hold(ctx, cust, tt.ID, q, "")
			wantInvalid(t, err, "quantity", "hold a quantity below 1")
		}
		_, _, err := e.mod.Hold(ctx, cust, tt.ID, 5, "")
		wantErr(t, err, inventory.ErrOverOrderLimit, "hold above max per order")
		_, _, err = e.mod.Hold(ctx, cust, uuid.New(), 1, "")
		wantErr(t, err, inventory.ErrTicketTypeNotFound, "hold an unknown ticket type")
		e.wantStock(t, ev.ID, tt.ID, 10, 0, 0)

		h, created, err := e.mod.Hold(ctx, cust, tt.ID, 2, "key-1")
		if err != nil || !created || h.ExpiresAt.Sub(e.clk.Now()) != e.cfg.HoldTTL || h.UnitPriceCents != 8900 || h.Currency != "GBP" {
			t.Fatalf("hold: %+v created %v, %v", h, created, err)
		}
		again, created, err := e.mod.Hold(ctx, cust, tt.ID, 2, "key-1")
		if err != nil || created || again.ID != h.ID {
			t.Fatalf("replay: %+v created %v, %v", again, created, err)
		}
		_, _, err = e.mod.Hold(ctx, cust, tt.ID, 3, "key-1")
		wantErr(t, err, inventory.ErrIdempotencyMismatch, "same key, other quantity")
		// The key is bound to the whole request: another ticket type is refused too, not made
		// into a second hold.
		tt2 := e.ticketType(t, ev.OrganizerID, ev.ID, 10)
		_, _, err = e.mod.Hold(ctx, cust, tt2.ID, 2, "key-1")
		wantErr(t, err, inventory.ErrIdempotencyMismatch, "same key, other ticket type")
		e.wantStock(t, ev.ID, tt2.ID, 10, 0, 0)
		// The key is the customer's: another customer's key-1 is another hold.
		other, created, err := e.mod.Hold(ctx, uuid.New(), tt.ID, 1, "key-1")
		if err != nil || !created || other.ID == h.ID {
			t.Fatalf("another customer's key: %+v created %v, %v", other, created, err)
		}
		e.wantStock(t, ev.ID, tt.ID, 10, 0, 3)

		if _, err := e.mod.HoldFor(ctx, uuid.New(), h.ID); !errors.Is(err, inventory.ErrHoldNotFound) {
			t.Fatalf("someone else's hold: %v", err)
		}
		wantErr(t, e.mod.ReleaseFor(ctx, uuid.New(), h.ID), inventory.ErrHoldNotFound, "release someone else's hold")
		e.wantStock(t, ev.ID, tt.ID, 10, 0, 3)

		// A hold of its own the customer may give back; a checked-out one only its order may.
		mine, _, err := e.mod.Hold(ctx, cust, tt.ID, 1, "")
		if err != nil {
			t.Fatalf("hold: %v", err)
		}
		if err := e.mod.ReleaseFor(ctx, cust, mine.ID); err != nil {
			t.Fatalf("release: %v", err)
		}
		e.wantStock(t, ev.ID, tt.ID, 10, 0, 3)
		order := uuid.New()
		ext, err := e.mod.CheckoutHold(ctx, h.ID, order, e.clk.Now().Add(10*time.Minute))
		if err != nil || !ext.ExpiresAt.Equal(e.clk.Now().Add(10*time.Minute)) || ext.OrderID != order {
			t.Fatalf("checkout: %+v, %v", ext, err)
		}
		_, err = e.mod.CheckoutHold(ctx, h.ID, uuid.New(), e.clk.Now().Add(time.Hour))
		wantErr(t, err, inventory.ErrHoldOrdered, "check out for a second order")
		wantErr(t, e.mod.ReleaseFor(ctx, cust, h.ID), inventory.ErrHoldOrdered, "the customer releases a checked-out hold")
		e.wantStock(t, ev.ID, tt.ID, 10, 0, 3)
		if err := e.mod.ReleaseHold(ctx, h.ID); err != nil {
			t.Fatalf("release by the order: %v", err)
		}
		e.wantStock(t, ev.ID, tt.ID, 10, 0, 1)
		if g, err := e.mod.HoldFor(ctx, cust, h.ID); err != nil || g.Status != inventory.HoldReleased {
			t.Fatalf("released hold: %+v, %v", g, err)
		}
		_, err = e.mod.CheckoutHold(ctx, h.ID, order, e.clk.Now().Add(time.Hour))
		wantErr(t, err, inventory.ErrHoldNotLive, "check out a released hold")
	})
}

func TestCustomerCapAcrossTicketTypes(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(c *inventory.Config) { c.MaxHolds, c.MaxHoldsPerType = 3, 2 }, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, ev, a := e.sale(t, 10)
		b := e.ticketType(t, ev.OrganizerID, ev.ID, 10)
		c := e.ticketType(t, ev.OrganizerID, ev.ID, 10)
		cust := uuid.New()
		var first inventory.Hold
		for i, tt := range []uuid.UUID{a.ID, a.ID, b.ID} {
			h, _, err := e.mod.Hold(ctx, cust, tt, 1, "")
			if err != nil {
				t.Fatalf("hold %d of 3: %v", i+1, err)
			}
			if i == 0 {
				first = h
			}
		}
		// The per-type cap still holds on its own.
		_, _, err := e.mod.Hold(ctx, cust, a.ID, 1, "")
		wantErr(t, err, inventory.ErrTooManyHolds, "a third hold on one ticket type")
		// A fourth on another ticket type is over the cap in all; its tickets go back at once.
		_, _, err = e.mod.Hold(ctx, cust, c.ID, 2, "")
		wantErr(t, err, inventory.ErrTooManyHolds, "a fourth hold in all")
		if pe := problem.As(err); pe.RetryAfter <= 0 || pe.RetryAfter > e.cfg.HoldTTL {
			t.Fatalf("Retry-After %s", pe.RetryAfter)
		}
		e.wantStock(t, ev.ID, c.ID, 10, 0, 0)
		// Others are not limited by this customer's holds.
		if _, _, err := e.mod.Hold(ctx, uuid.New(), c.ID, 1, ""); err != nil {
			t.Fatalf("another customer: %v", err)
		}
		// Releasing one, or a sale, frees a place.
		if err := e.mod.ReleaseFor(ctx, cust, first.ID); err != nil {
			t.Fatalf("release: %v", err)
		}
		h, _, err := e.mod.Hold(ctx, cust, c.ID, 1, "")
		if err != nil {
			t.Fatalf("hold after a release: %v", err)
		}
		if _, err := e.mod.CommitHold(ctx, h, uuid.New()); err != nil {
			t.Fatalf("commit: %v", err)
		}
		if _, _, err := e.mod.Hold(ctx, cust, c.ID, 1, ""); err != nil {
			t.Fatalf("hold after a sale: %v", err)
		}
		// Holds that ended stop counting.
		e.clk.Advance(e.cfg.HoldTTL)
		for i := range 3 {
			if _, _, err := e.mod.Hold(ctx, cust, []uuid.UUID{a.ID, b.ID, c.ID}[i], 1, ""); err != nil {
				t.Fatalf("hold %d after the others expired: %v", i+1, err)
			}
		}
	})
}

func TestCapacityChanges(t *testing.T) {
	t.Parallel()
	forEachBackend(t, nil, func(t *testing.T, e *env) {
		ctx := context.Background()
		org, ev, tt := e.sale(t, 10)
		sold := e.hold(t, tt.ID, 2)
		if _, err := e.mod.CommitHold(ctx, sold, uuid.New()); err != nil {
			t.Fatalf("commit: %v", err)
		}
		e.hold(t, tt.ID, 3)
		e.wantStock(t, ev.ID, tt.ID, 10, 2, 3)

		capacity := func(n int) *int { return &n }
		_, err := e.mod.UpdateTicketType(ctx, org, ev.ID, tt.ID, inventory.TicketTypePatch{Capacity: capacity(4)})
		wantErr(t, err, inventory.ErrCapacityBelowCommitted, "capacity below sold plus held")
		if got := e.storeTicketType(t, tt.ID); got.Capacity != 10 || got.Sold != 2 {
			t.Fatalf("store after a refused change: %+v", got)
		}
		e.wantStock(t, ev.ID, tt.ID, 10, 2, 3)
		_, err = e.mod.UpdateTicketType(ctx, org, ev.ID, tt.ID, inventory.TicketTypePatch{Capacity: capacity(1)})
		wantErr(t, err, inventory.ErrCapacityBelowCommitted, "capacity below sold")
		e.wantStock(t, ev.ID, tt.ID, 10, 2, 3)
		_, err = e.mod.UpdateTicketType(ctx, org, ev.ID, tt.ID, inventory.TicketTypePatch{Capacity: capacity(0)})
		wantInvalid(t, err, "capacity", "capacity 0")
		_, err = e.mod.UpdateTicketType(ctx, uuid.New(), ev.ID, tt.ID, inventory.TicketTypePatch{Capacity: capacity(50)})
		wantErr(t, err, inventory.ErrNotOwner, "someone else's ticket type")
		other := e.event(t, org)
		_, err = e.mod.UpdateTicketType(ctx, org, other.ID, tt.ID, inventory.TicketTypePatch{Capacity: capacity(50)})
		wantErr(t, err, inventory.ErrTicketTypeNotFound, "a ticket type under another event")
		e.wantStock(t, ev.ID, tt.ID, 10, 2, 3)

		up, err := e.mod.UpdateTicketType(ctx, org, ev.ID, tt.ID, inventory.TicketTypePatch{Capacity: capacity(5)})
		if err != nil || up.Capacity != 5 {
			t.Fatalf("capacity down to sold plus held: %+v, %v", up, err)
		}
		if got := e.storeTicketType(t, tt.ID); got.Capacity != 5 {
			t.Fatalf("store capacity %d", got.Capacity)
		}
		e.wantStock(t, ev.ID, tt.ID, 5, 2, 3)
		_, _, err = e.mod.Hold(ctx, uuid.New(), tt.ID, 1, "")
		wantErr(t, err, inventory.ErrSoldOut, "hold with nothing left")

		price, maxPer := int64(100), 2
		up, err = e.mod.UpdateTicketType(ctx, org, ev.ID, tt.ID, inventory.TicketTypePatch{Capacity: capacity(50), PriceCents: &price, MaxPerOrder: &maxPer})
		if err != nil || up.Capacity != 50 || up.PriceCents != 100 || up.MaxPerOrder != 2 {
			t.Fatalf("raise capacity: %+v, %v", up, err)
		}
		e.wantStock(t, ev.ID, tt.ID, 50, 2, 3)
		// The new rules apply to new holds at once.
		_, _, err = e.mod.Hold(ctx, uuid.New(), tt.ID, 3, "")
		wantErr(t, err, inventory.ErrOverOrderLimit, "hold above the new max per order")
		if h := e.hold(t, tt.ID, 2); h.UnitPriceCents != 100 {
			t.Fatalf("hold after a price change costs %d", h.UnitPriceCents)
		}
		if c, err := e.mod.Catalogue(ctx, ev.ID); err != nil || c.TicketTypes[0].Capacity != 50 || c.TicketTypes[0].PriceCents != 100 {
			t.Fatalf("catalogue after the change: %+v, %v", c.TicketTypes, err)
		}
	})
}

func TestCommitHold(t *testing.T) {
	t.Parallel()
	forEachBackend(t, nil, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, ev, tt := e.sale(t, 10)
		h := e.hold(t, tt.ID, 3)
		order := uuid.New()
		ts, err := e.mod.CommitHold(ctx, h, order)
		if err != nil || len(ts) != 3 {
			t.Fatalf("commit: %d tickets, %v", len(ts), err)
		}
		for i, tk := range ts {
			if tk.Seq != i+1 || tk.HoldID != h.ID || tk.OrderID != order || tk.CustomerID != h.CustomerID ||
				tk.TicketTypeID != tt.ID || tk.EventID != ev.ID {
				t.Fatalf("ticket %d: %+v", i, tk)
			}
		}
		e.wantStock(t, ev.ID, tt.ID, 10, 3, 0)
		if got := e.storeTicketType(t, tt.ID); got.Sold != 3 {
			t.Fatalf("store sold %d", got.Sold)
		}
		if g, err := e.mod.GetHold(ctx, h.ID); err != nil || g.Status != inventory.HoldCommitted {
			t.Fatalf("hold after commit: %+v, %v", g, err)
		}
		// A repeat returns the same tickets and sells nothing more, even after the hold's time.
		e.clk.Advance(e.cfg.HoldTTL)
		again, err := e.mod.CommitHold(ctx, h, order)
		if err != nil || !slices.Equal(ticketIDs(again), ticketIDs(ts)) {
			t.Fatalf("repeated commit: %v, %v", ticketIDs(again), err)
		}
		e.wantStock(t, ev.ID, tt.ID, 10, 3, 0)
		if got := e.storeTicketType(t, tt.ID); got.Sold != 3 {
			t.Fatalf("store sold %d after a repeat", got.Sold)
		}
		// Releasing a sold hold changes nothing.
		if err := e.mod.ReleaseHold(ctx, h.ID); err != nil {
			t.Fatalf("release a committed hold: %v", err)
		}
		e.wantStock(t, ev.ID, tt.ID, 10, 3, 0)

		// A hold that lapsed while its tickets were still free is sold anyway.
		lapsed := e.hold(t, tt.ID, 2)
		e.clk.Advance(e.cfg.HoldTTL + time.Second)
		e.wantStock(t, ev.ID, tt.ID, 10, 3, 0)
		if ts, err := e.mod.CommitHold(ctx, lapsed, uuid.New()); err != nil || len(ts) != 2 {
			t.Fatalf("commit a lapsed hold with tickets free: %d, %v", len(ts), err)
		}
		e.wantStock(t, ev.ID, tt.ID, 10, 5, 0)

		// A hold that lapsed while others took its tickets is sold out, and nothing is sold.
		gone := e.hold(t, tt.ID, 4)
		e.clk.Advance(e.cfg.HoldTTL)
		taker := e.hold(t, tt.ID, 4)
		e.hold(t, tt.ID, 1)
		_, err = e.mod.CommitHold(ctx, gone, uuid.New())
		wantErr(t, err, inventory.ErrSoldOut, "commit a lapsed hold whose tickets are gone")
		e.wantStock(t, ev.ID, tt.ID, 10, 5, 5)
		if got := e.storeTicketType(t, tt.ID); got.Sold != 5 {
			t.Fatalf("store sold %d after a refused commit", got.Sold)
		}
		if ts, err := e.store.Tickets(ctx, gone.ID); err != nil || len(ts) != 0 {
			t.Fatalf("a refused commit has tickets: %v, %v", ts, err)
		}
		if _, err := e.mod.CommitHold(ctx, taker, uuid.New()); err != nil {
			t.Fatalf("commit the taker's hold: %v", err)
		}
		e.wantStock(t, ev.ID, tt.ID, 10, 9, 1)
	})
}

// TestFlush loses every hold and the sold mirror (a Redis restart without persistence): the
// figures come back from the store, and a rush of holds right after cannot oversell.
func TestFlush(t *testing.T) {
	t.Parallel()
	forEachBackend(t, nil, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, ev, tt := e.sale(t, 20)
		committed := e.hold(t, tt.ID, 3)
		first, err := e.mod.CommitHold(ctx, committed, uuid.New())
		if err != nil {
			t.Fatalf("commit: %v", err)
		}
		if _, err := e.mod.CommitHold(ctx, e.hold(t, tt.ID, 2), uuid.New()); err != nil {
			t.Fatalf("commit: %v", err)
		}
		e.hold(t, tt.ID, 4) // lost with the flush
		e.wantStock(t, ev.ID, tt.ID, 20, 5, 4)

		e.flush()
		// A rush before anything else reads the ticket type: whoever comes first reloads the
		// rules and the sold count from the store; nobody sells what is sold.
		won := rush(t, e, tt.ID, 40)
		if won != 15 {
			t.Fatalf("after the flush %d holds of 1 won, want 20 - 5 sold = 15", won)
		}
		e.wantStock(t, ev.ID, tt.ID, 20, 5, 15)

		e.flush()
		e.wantStock(t, ev.ID, tt.ID, 20, 5, 0) // availability is right again at once
		won = rush(t, e, tt.ID, 40)
		if won != 15 {
			t.Fatalf("after the second flush %d holds of 1 won, want 15", won)
		}

		// A repeated commit of a hold sold before the flush still returns its tickets, although
		// the hold store forgot it and nothing is left to reserve.
		again, err := e.mod.CommitHold(ctx, committed, uuid.New())
		if err != nil || !slices.Equal(ticketIDs(again), ticketIDs(first)) {
			t.Fatalf("repeat a commit made before the flush: %v, %v", ticketIDs(again), err)
		}
		e.wantStock(t, ev.ID, tt.ID, 20, 5, 15)
		if got := e.storeTicketType(t, tt.ID); got.Sold != 5 {
			t.Fatalf("store sold %d", got.Sold)
		}
	})
}

// rush holds one ticket each for n customers at once and returns how many won.
func rush(t *testing.T, e *env, tt uuid.UUID, n int) int {
	t.Helper()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		won  int
		errs []error
	)
	gate := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			_, _, err := e.mod.Hold(context.Background(), uuid.New(), tt, 1, "")
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case !errors.Is(err, inventory.ErrSoldOut):
				errs = append(errs, err)
			}
		}()
	}
	close(gate)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d holds failed other than sold out, first: %v", len(errs), errs[0])
	}
	return won
}

func TestConcurrentCommitHolds(t *testing.T) {
	t.Parallel()
	// Once selling out, once with room to spare: a sold-out run would hide sales counted twice
	// behind the capacity.
	for _, capacity := range []int{300, 600} {
		t.Run(fmt.Sprint(capacity), func(t *testing.T) { concurrentCommits(t, capacity) })
	}
}

func concurrentCommits(t *testing.T, capacity int) {
	forEachBackend(t, nil, func(t *testing.T, e *env) {
		ctx := context.Background()
		const n = 300
		_, ev, tt := e.sale(t, capacity)
		holds := make([]inventory.Hold, n)
		for i := range holds {
			holds[i] = e.hold(t, tt.ID, 1)
		}
		// Commits are batched into one transaction per ticket type; while their Finalize calls
		// trickle in, the hold store must never show held + sold above capacity.
		done := make(chan struct{})
		var watcher sync.WaitGroup
		over := 0
		watcher.Add(1)
		go func() {
			defer watcher.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				st, err := e.holds.Stock(ctx, []uuid.UUID{tt.ID}, e.clk.Now())
				if err == nil && len(st) == 1 {
					over = max(over, st[0].Held+st[0].Sold-st[0].Capacity)
				}
			}
		}()
		var wg sync.WaitGroup
		results := make([][]inventory.Ticket, n)
		errs := make([]error, n)
		gate := make(chan struct{})
		for i := range holds {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				results[i], errs[i] = e.mod.CommitHold(ctx, holds[i], uuid.New())
			}()
		}
		close(gate)
		wg.Wait()
		close(done)
		watcher.Wait()
		if over > 0 {
			t.Fatalf("during the commits held + sold went %d over capacity", over)
		}
		ids := map[uuid.UUID]bool{}
		for i := range holds {
			if errs[i] != nil || len(results[i]) != 1 || results[i][0].HoldID != holds[i].ID {
				t.Fatalf("commit %d: %v, %v", i, results[i], errs[i])
			}
			ids[results[i][0].ID] = true
		}
		if len(ids) != n {
			t.Fatalf("%d distinct tickets for %d commits", len(ids), n)
		}
		if got := e.storeTicketType(t, tt.ID); got.Sold != n {
			t.Fatalf("store sold %d, want %d", got.Sold, n)
		}
		e.wantStock(t, ev.ID, tt.ID, capacity, n, 0)
	})
}
