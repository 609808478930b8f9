// Package holdstest is the conformance suite every inventory.HoldStore adapter runs (memory and
// Redis), so that they keep the same semantics. Time is injected: every HoldStore method takes
// `now`, so the suite drives its own clock and never sleeps.
package holdstest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/platform/clock"
	"github.com/onsale-dev/onsale/internal/platform/problem"
)

// ttl is the hold lifetime most cases use.
const ttl = 2 * time.Minute

// anOrder is the order cases check holds out for when the order does not matter.
var anOrder = uuid.MustParse("0b8e7c1e-2f4a-4c55-9d1e-6f0a3b2c1d00")

// start returns the instant a case's clock starts at: whole milliseconds (as Redis keeps time),
// and a day ahead of the real clock, because Redis expires keys by its own clock: records and
// customer sets must not vanish under a test whose injected time runs ahead of real time.
func start() time.Time {
	return time.Now().Add(24 * time.Hour).Truncate(time.Millisecond).UTC()
}

// fixture is one case's store, ticket type and clock.
type fixture struct {
	t     *testing.T
	s     inventory.HoldStore
	rules inventory.HoldRules
	clk   *clock.Fake
}

func newFixture(t *testing.T, newStore func(t *testing.T) inventory.HoldStore, capacity int) *fixture {
	t.Helper()
	f := &fixture{t: t, s: newStore(t), clk: clock.NewFake(start())}
	f.rules = inventory.HoldRules{
		TicketTypeID: uuid.New(), Capacity: capacity, MaxPerOrder: 4, PriceCents: 4250, Currency: "EUR",
	}
	f.configure(f.rules)
	return f
}

func (f *fixture) configure(r inventory.HoldRules) {
	f.t.Helper()
	if err := f.s.Configure(context.Background(), r); err != nil {
		f.t.Fatalf("configure %s: %v", r.TicketTypeID, err)
	}
}

func (f *fixture) now() time.Time { return f.clk.Now() }

// req is a hold request on the fixture's ticket type at the fixture's time.
func (f *fixture) req(customer uuid.UUID, qty int) inventory.HoldRequest {
	return inventory.HoldRequest{
		ID: inventory.NewHoldID(f.rules.TicketTypeID), TicketTypeID: f.rules.TicketTypeID, CustomerID: customer,
		Quantity: qty, Now: f.now(), TTL: ttl, MaxLive: 1000,
	}
}

// mustHold makes a new hold and fails the test unless it is created.
func (f *fixture) mustHold(customer uuid.UUID, qty int) inventory.Hold {
	f.t.Helper()
	return f.mustHoldReq(f.req(customer, qty))
}

func (f *fixture) mustHoldReq(req inventory.HoldRequest) inventory.Hold {
	f.t.Helper()
	h, created, err := f.s.Hold(context.Background(), req)
	if err != nil {
		f.t.Fatalf("hold %d for %s at %s: %v", req.Quantity, req.CustomerID, req.Now.Format(time.RFC3339Nano), err)
	}
	if !created {
		f.t.Fatalf("hold %s: created false for a new id", req.ID)
	}
	return h
}

func (f *fixture) stock() inventory.Stock {
	f.t.Helper()
	return stockOf(f.t, f.s, f.rules.TicketTypeID, f.now())
}

func stockOf(t *testing.T, s inventory.HoldStore, tt uuid.UUID, now time.Time) inventory.Stock {
	t.Helper()
	st, err := s.Stock(context.Background(), []uuid.UUID{tt}, now)
	if err != nil {
		t.Fatalf("stock: %v", err)
	}
	if len(st) != 1 || st[0].TicketTypeID != tt {
		t.Fatalf("stock of %s: got %+v", tt, st)
	}
	return st[0]
}

// wantStock checks capacity, sold and held.
func (f *fixture) wantStock(capacity, sold, held int) {
	f.t.Helper()
	st := f.stock()
	if st.Capacity != capacity || st.Sold != sold || st.Held != held {
		f.t.Fatalf("at %s stock is capacity %d sold %d held %d; want %d %d %d",
			f.now().Format(time.RFC3339Nano), st.Capacity, st.Sold, st.Held, capacity, sold, held)
	}
	if st.Available() != max(capacity-sold-held, 0) {
		f.t.Fatalf("available %d with %+v", st.Available(), st)
	}
}

func (f *fixture) get(id string) inventory.Hold {
	f.t.Helper()
	h, err := f.s.Get(context.Background(), id, f.now())
	if err != nil {
		f.t.Fatalf("get %s: %v", id, err)
	}
	return h
}

func (f *fixture) wantStatus(id string, want inventory.HoldStatus) {
	f.t.Helper()
	if got := f.get(id).Status; got != want {
		f.t.Fatalf("hold %s at %s: status %s, want %s", id, f.now().Format(time.RFC3339Nano), got, want)
	}
}

func wantErr(t *testing.T, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

// available is the "available" member a sold-out error carries.
func available(t *testing.T, err error) int {
	t.Helper()
	pe := problem.As(err)
	if pe == nil {
		t.Fatalf("sold out error %v is not a problem", err)
	}
	n, ok := pe.Extra["available"].(int)
	if !ok {
		t.Fatalf("sold out error has available %#v (%T)", pe.Extra["available"], pe.Extra["available"])
	}
	return n
}

func sameHold(t *testing.T, got, want inventory.Hold) {
	t.Helper()
	if got.ID != want.ID || got.TicketTypeID != want.TicketTypeID || got.CustomerID != want.CustomerID ||
		got.Quantity != want.Quantity || got.UnitPriceCents != want.UnitPriceCents || got.Currency != want.Currency ||
		got.Status != want.Status || !got.ExpiresAt.Equal(want.ExpiresAt) || !got.CreatedAt.Equal(want.CreatedAt) {
		t.Fatalf("hold differs:\n got %+v\nwant %+v", got, want)
	}
}

// Run runs the suite. newStore returns a store for one case; it may share state with other
// calls, as every case uses ticket types of its own (uuid.New()).
func Run(t *testing.T, newStore func(t *testing.T) inventory.HoldStore) {
	t.Run("ConfigureHoldGet", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		f := newFixture(t, newStore, 10)
		f.wantStock(10, 0, 0)
		cust := uuid.New()
		req := f.req(cust, 3)
		h := f.mustHoldReq(req)
		sameHold(t, h, inventory.Hold{
			ID: req.ID, TicketTypeID: f.rules.TicketTypeID, CustomerID: cust, Quantity: 3, UnitPriceCents: 4250,
			Currency: "EUR", Status: inventory.HoldActive, ExpiresAt: f.now().Add(ttl), CreatedAt: f.now(),
		})
		sameHold(t, f.get(h.ID), h)
		f.wantStock(10, 0, 3)
		if !h.Live(f.now()) {
			t.Fatalf("a new hold is not live: %+v", h)
		}

		// Unknown and malformed ids.
		for _, id := range []string{
			inventory.NewHoldID(f.rules.TicketTypeID), // right ticket type, never made
			inventory.NewHoldID(uuid.New()),           // ticket type the store never heard of
			"", "nope", h.ID[:42], h.ID + "A", "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
		} {
			_, err := f.s.Get(ctx, id, f.now())
			wantErr(t, err, inventory.ErrHoldNotFound, fmt.Sprintf("get %q", id))
		}

		// An unconfigured ticket type.
		other := uuid.New()
		_, _, err := f.s.Hold(ctx, inventory.HoldRequest{ID: inventory.NewHoldID(other), TicketTypeID: other,
			CustomerID: cust, Quantity: 1, Now: f.now(), TTL: ttl, MaxLive: 4})
		wantErr(t, err, inventory.ErrNotConfigured, "hold on an unconfigured ticket type")
		err = f.s.SetCapacity(ctx, other, 5, f.now())
		wantErr(t, err, inventory.ErrNotConfigured, "set capacity of an unconfigured ticket type")
		_, err = f.s.Claim(ctx, inventory.Hold{ID: inventory.NewHoldID(other), TicketTypeID: other, CustomerID: cust,
			Quantity: 1, Status: inventory.HoldActive, ExpiresAt: f.now().Add(ttl), CreatedAt: f.now()}, f.now(), time.Minute)
		wantErr(t, err, inventory.ErrNotConfigured, "claim on an unconfigured ticket type")
		st, err := f.s.Stock(ctx, []uuid.UUID{f.rules.TicketTypeID, other}, f.now())
		wantErr(t, err, inventory.ErrNotConfigured, "stock with an unconfigured ticket type")
		if len(st) != 1 || st[0].TicketTypeID != f.rules.TicketTypeID || st[0].Held != 3 {
			t.Fatalf("stock with an unconfigured ticket type still gives the others: got %+v", st)
		}

		// Several ticket types at once, in the order asked.
		second := f.rules
		second.TicketTypeID, second.Capacity = uuid.New(), 7
		f.configure(second)
		st, err = f.s.Stock(ctx, []uuid.UUID{second.TicketTypeID, f.rules.TicketTypeID}, f.now())
		if err != nil || len(st) != 2 || st[0].TicketTypeID != second.TicketTypeID || st[0].Capacity != 7 ||
			st[1].TicketTypeID != f.rules.TicketTypeID || st[1].Held != 3 {
			t.Fatalf("stock of two ticket types: %+v, %v", st, err)
		}

		// Configure again with new rules keeps the holds and changes the price for new holds.
		r := f.rules
		r.PriceCents, r.Currency = 5000, "USD"
		f.configure(r)
		f.wantStock(10, 0, 3)
		h2 := f.mustHold(cust, 1)
		if h2.UnitPriceCents != 5000 || h2.Currency != "USD" {
			t.Fatalf("hold after a price change: %+v", h2)
		}
		if got := f.get(h.ID); got.UnitPriceCents != 4250 || got.Currency != "EUR" {
			t.Fatalf("an existing hold's price changed: %+v", got)
		}
	})

	t.Run("RaceForTheLastTickets", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, newStore, 100)
		const buyers = 2000
		held, soldOut := raceHolds(t, f, buyers, func(int) int { return 1 })
		if held != 100 || soldOut != buyers-100 {
			t.Fatalf("%d buyers for 100 tickets: %d held, %d sold out", buyers, held, soldOut)
		}
		f.wantStock(100, 0, 100)
	})

	t.Run("RaceMixedQuantities", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, newStore, 100)
		const buyers = 2000
		held, _ := raceHolds(t, f, buyers, func(i int) int { return 1 + i%4 })
		st := f.stock()
		if held > 100 || held != 100-st.Available() || st.Held != held || st.Sold != 0 {
			t.Fatalf("held %d tickets in successful holds; stock %+v (available %d)", held, st, st.Available())
		}
		// Hundreds of one-ticket buyers are still waiting when the pool runs low: it drains.
		if st.Available() != 0 {
			t.Fatalf("%d tickets left unsold after the race", st.Available())
		}
	})

	t.Run("Expiry", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		f := newFixture(t, newStore, 10)
		t0 := f.now()
		a := f.mustHold(uuid.New(), 4)
		f.clk.Advance(10 * time.Second)
		b := f.mustHold(uuid.New(), 3)

		f.clk.Set(t0.Add(ttl - time.Millisecond))
		f.wantStock(10, 0, 7)
		f.wantStatus(a.ID, inventory.HoldActive)

		f.clk.Set(t0.Add(ttl))
		f.wantStock(10, 0, 3)
		f.wantStatus(a.ID, inventory.HoldExpired)
		f.wantStatus(b.ID, inventory.HoldActive)
		// The returned tickets can be held at once: 7 are free.
		_, _, err := f.s.Hold(ctx, f.req(uuid.New(), 4))
		if err != nil {
			t.Fatalf("hold after expiry: %v", err)
		}
		f.mustHold(uuid.New(), 3)
		f.wantStock(10, 0, 10)
		_, _, err = f.s.Hold(ctx, f.req(uuid.New(), 1))
		wantErr(t, err, inventory.ErrSoldOut, "hold with everything held")

		// Releasing an expired hold gives nothing back twice.
		if err := f.s.Release(ctx, a.ID, f.now()); err != nil {
			t.Fatalf("release an expired hold: %v", err)
		}
		f.wantStock(10, 0, 10)

		// An expired hold that no operation pruned yet still comes back exactly once, whether
		// Release or the next prune gets to it first.
		f.clk.Set(b.ExpiresAt)
		if err := f.s.Release(ctx, b.ID, f.now()); err != nil {
			t.Fatalf("release a hold at its expiry: %v", err)
		}
		f.wantStock(10, 0, 7)
		f.clk.Set(t0.Add(2 * ttl))
		f.wantStock(10, 0, 0)
	})

	t.Run("HoldsExpireWhileOthersBuy", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, newStore, 20)
		expireWhileBuying(t, f)
	})

	t.Run("IdempotentRetries", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		f := newFixture(t, newStore, 5)
		cust := uuid.New()
		req := f.req(cust, 3)
		first := f.mustHoldReq(req)
		f.clk.Advance(5 * time.Second)
		retry := req
		retry.Now = f.now() // a retry arrives later; it must not move anything
		again, created, err := f.s.Hold(ctx, retry)
		if err != nil || created {
			t.Fatalf("retry: created %v, err %v", created, err)
		}
		sameHold(t, again, first)
		f.wantStock(5, 0, 3)

		mismatch := retry
		mismatch.Quantity = 2
		_, _, err = f.s.Hold(ctx, mismatch)
		wantErr(t, err, inventory.ErrIdempotencyMismatch, "same id, other quantity")
		mismatch = retry
		mismatch.CustomerID = uuid.New()
		_, _, err = f.s.Hold(ctx, mismatch)
		wantErr(t, err, inventory.ErrIdempotencyMismatch, "same id, other customer")
		f.wantStock(5, 0, 3)

		// A retry succeeds even when the rest has sold out since: it reserves nothing new.
		f.mustHold(uuid.New(), 2)
		if _, created, err := f.s.Hold(ctx, retry); err != nil || created {
			t.Fatalf("retry when sold out: created %v, err %v", created, err)
		}
		f.wantStock(5, 0, 5)

		// A retry after the hold expired returns it as expired and reserves nothing.
		f.clk.Set(first.ExpiresAt)
		retry.Now = f.now()
		late, created, err := f.s.Hold(ctx, retry)
		if err != nil || created || late.Status != inventory.HoldExpired || late.ID != first.ID {
			t.Fatalf("retry after expiry: %+v created %v err %v", late, created, err)
		}
		f.wantStock(5, 0, 2)

		// Fifty concurrent retries of one new id: one creates, all get the same hold.
		f2 := newFixture(t, newStore, 100)
		req2 := f2.req(uuid.New(), 2)
		var (
			wg      sync.WaitGroup
			nCreate atomic.Int32
			mu      sync.Mutex
			got     []inventory.Hold
			errs    []error
		)
		gate := make(chan struct{})
		for range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				h, created, err := f2.s.Hold(ctx, req2)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				if created {
					nCreate.Add(1)
				}
				got = append(got, h)
			}()
		}
		close(gate)
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("concurrent retries failed: %v", errs[0])
		}
		if nCreate.Load() != 1 {
			t.Fatalf("50 concurrent retries of one id created %d holds", nCreate.Load())
		}
		for _, h := range got {
			sameHold(t, h, got[0])
		}
		f2.wantStock(100, 0, 2)
	})

	t.Run("ReleaseAndRehold", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		f := newFixture(t, newStore, 4)
		cust := uuid.New()
		h := f.mustHold(cust, 4)
		_, _, err := f.s.Hold(ctx, f.req(uuid.New(), 1))
		wantErr(t, err, inventory.ErrSoldOut, "hold when all are held")
		if n := available(t, err); n != 0 {
			t.Fatalf("sold out with available %d", n)
		}
		if err := f.s.Release(ctx, h.ID, f.now()); err != nil {
			t.Fatalf("release: %v", err)
		}
		f.wantStock(4, 0, 0)
		f.wantStatus(h.ID, inventory.HoldReleased)
		if err := f.s.Release(ctx, h.ID, f.now()); err != nil {
			t.Fatalf("second release: %v", err)
		}
		f.wantStock(4, 0, 0)
		f.wantStatus(h.ID, inventory.HoldReleased)
		for _, id := range []string{inventory.NewHoldID(f.rules.TicketTypeID), inventory.NewHoldID(uuid.New()), "bad"} {
			wantErr(t, f.s.Release(ctx, id, f.now()), inventory.ErrHoldNotFound, "release "+id)
		}
		_, err = f.s.Checkout(ctx, h.ID, anOrder, f.now().Add(time.Hour), f.now())
		wantErr(t, err, inventory.ErrHoldNotLive, "check out a released hold")

		// The same customer holds again at once, and so can others.
		again := f.mustHold(cust, 3)
		f.mustHold(uuid.New(), 1)
		f.wantStock(4, 0, 4)
		if err := f.s.Release(ctx, again.ID, f.now()); err != nil {
			t.Fatalf("release: %v", err)
		}
		f.wantStock(4, 0, 1)
		// Releasing after the hold's own expiry is harmless too.
		f.clk.Advance(ttl)
		if err := f.s.Release(ctx, again.ID, f.now()); err != nil {
			t.Fatalf("release an old hold: %v", err)
		}
		f.wantStock(4, 0, 0)
	})

	t.Run("PerCustomerLimit", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		f := newFixture(t, newStore, 100)
		cust := uuid.New()
		limited := func(c uuid.UUID, qty int) inventory.HoldRequest {
			r := f.req(c, qty)
			r.MaxLive = 4
			return r
		}
		var holds []inventory.Hold
		for range 4 {
			holds = append(holds, f.mustHoldReq(limited(cust, 1)))
			f.clk.Advance(time.Second)
		}
		_, _, err := f.s.Hold(ctx, limited(cust, 1))
		wantErr(t, err, inventory.ErrTooManyHolds, "fifth live hold")
		pe := problem.As(err)
		// The earliest of the four expires first: that is when a fifth becomes possible.
		if want := holds[0].ExpiresAt.Sub(f.now()); pe.RetryAfter <= 0 || pe.RetryAfter != want {
			t.Fatalf("retry after %s, want %s", pe.RetryAfter, want)
		}
		f.wantStock(100, 0, 4)

		// Others are not affected, nor is the customer on another ticket type.
		f.mustHoldReq(limited(uuid.New(), 1))
		other := f.rules
		other.TicketTypeID = uuid.New()
		f.configure(other)
		r := limited(cust, 1)
		r.TicketTypeID, r.ID = other.TicketTypeID, inventory.NewHoldID(other.TicketTypeID)
		f.mustHoldReq(r)

		// A release makes room.
		if err := f.s.Release(ctx, holds[1].ID, f.now()); err != nil {
			t.Fatalf("release: %v", err)
		}
		holds = append(holds, f.mustHoldReq(limited(cust, 1)))
		_, _, err = f.s.Hold(ctx, limited(cust, 1))
		wantErr(t, err, inventory.ErrTooManyHolds, "fifth live hold after a release and a new hold")

		// So does an expiry.
		f.clk.Set(holds[0].ExpiresAt.Add(-time.Millisecond))
		_, _, err = f.s.Hold(ctx, limited(cust, 1))
		wantErr(t, err, inventory.ErrTooManyHolds, "just before the first hold expires")
		if pe := problem.As(err); pe.RetryAfter != time.Millisecond {
			t.Fatalf("retry after %s just before expiry, want 1ms", pe.RetryAfter)
		}
		f.clk.Set(holds[0].ExpiresAt)
		f.mustHoldReq(limited(cust, 1))
		_, _, err = f.s.Hold(ctx, limited(cust, 1))
		wantErr(t, err, inventory.ErrTooManyHolds, "fifth live hold after an expiry and a new hold")

		// A committed hold stops counting.
		last := holds[len(holds)-1]
		if _, err := f.s.Claim(ctx, last, f.now(), time.Minute); err != nil {
			t.Fatalf("claim: %v", err)
		}
		if err := f.s.Finalize(ctx, last, 1, f.now()); err != nil {
			t.Fatalf("finalize: %v", err)
		}
		f.mustHoldReq(limited(cust, 1))
	})

	t.Run("Rules", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		f := newFixture(t, newStore, 100)
		_, _, err := f.s.Hold(ctx, f.req(uuid.New(), 5))
		wantErr(t, err, inventory.ErrOverOrderLimit, "quantity above max per order")
		f.mustHold(uuid.New(), 4)

		r := f.rules
		r.TicketTypeID = uuid.New()
		r.SalesStart = f.now().Add(time.Hour)
		r.SalesEnd = f.now().Add(2 * time.Hour)
		f.configure(r)
		try := func(at time.Time) error {
			req := inventory.HoldRequest{ID: inventory.NewHoldID(r.TicketTypeID), TicketTypeID: r.TicketTypeID,
				CustomerID: uuid.New(), Quantity: 1, Now: at, TTL: time.Hour, MaxLive: 4}
			_, _, err := f.s.Hold(ctx, req)
			return err
		}
		heldAt := func(at time.Time, want int) {
			t.Helper()
			if st := stockOf(t, f.s, r.TicketTypeID, at); st.Held != want {
				t.Fatalf("at %s held %d, want %d", at, st.Held, want)
			}
		}
		wantErr(t, try(f.now()), inventory.ErrSalesClosed, "before sales start")
		heldAt(f.now(), 0)
		wantErr(t, try(r.SalesStart.Add(-time.Millisecond)), inventory.ErrSalesClosed, "just before sales start")
		heldAt(r.SalesStart.Add(-time.Millisecond), 0)
		if err := try(r.SalesStart); err != nil {
			t.Fatalf("at sales start: %v", err)
		}
		heldAt(r.SalesStart, 1)
		if err := try(r.SalesEnd.Add(-time.Millisecond)); err != nil {
			t.Fatalf("just before sales end: %v", err)
		}
		heldAt(r.SalesEnd.Add(-time.Millisecond), 2)
		wantErr(t, try(r.SalesEnd), inventory.ErrSalesClosed, "at sales end")
		heldAt(r.SalesEnd, 1) // the first hold's hour ran out at sales end
		wantErr(t, try(r.SalesEnd.Add(time.Hour)), inventory.ErrSalesClosed, "after sales end")
		heldAt(r.SalesEnd.Add(time.Hour), 0)
		f.wantStock(100, 0, 4)
	})

	t.Run("WaitingRoomNeedsAPass", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		f := newFixture(t, newStore, 3)
		event, other := uuid.New(), uuid.New()
		r := f.rules
		r.Room = event
		f.configure(r)
		try := func(pass uuid.UUID, qty int) (inventory.Hold, bool, error) {
			req := f.req(uuid.New(), qty)
			req.Pass = pass
			return f.s.Hold(ctx, req)
		}
		_, _, err := try(uuid.Nil, 1)
		wantErr(t, err, inventory.ErrPassRequired, "hold without a pass")
		_, _, err = try(other, 1)
		wantErr(t, err, inventory.ErrPassInvalid, "hold with a pass for another event")
		// The pass is checked before anything else: no hint of stock or limits without one.
		_, _, err = try(uuid.Nil, 50)
		wantErr(t, err, inventory.ErrPassRequired, "hold over the order limit without a pass")
		f.wantStock(3, 0, 0)
		if _, created, err := try(event, 2); err != nil || !created {
			t.Fatalf("hold with the event's pass: created %v, %v", created, err)
		}
		_, _, err = try(event, 2)
		wantErr(t, err, inventory.ErrSoldOut, "hold with a pass beyond the stock")
		f.wantStock(3, 0, 2)

		// A retry of a hold made with a pass is answered even after the room guards no more.
		req := f.req(uuid.New(), 1)
		req.Pass = event
		first, _, err := f.s.Hold(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		r.Room = uuid.Nil
		f.configure(r)
		again, created, err := f.s.Hold(ctx, req)
		if err != nil || created || again.ID != first.ID {
			t.Fatalf("retry after the room closed: %+v created %v, %v", again, created, err)
		}
		// With the room closed, no pass is needed.
		_, _, err = try(uuid.Nil, 1)
		wantErr(t, err, inventory.ErrSoldOut, "hold without a pass once the room is closed")
	})

	t.Run("Extend", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		f := newFixture(t, newStore, 10)
		t0 := f.now()
		h := f.mustHold(uuid.New(), 2)
		got, err := f.s.Checkout(ctx, h.ID, anOrder, t0.Add(5*time.Minute), f.now())
		if err != nil || !got.ExpiresAt.Equal(t0.Add(5*time.Minute)) || got.Status != inventory.HoldActive {
			t.Fatalf("extend: %+v, %v", got, err)
		}
		// Never earlier.
		got, err = f.s.Checkout(ctx, h.ID, anOrder, t0.Add(time.Minute), f.now())
		if err != nil || !got.ExpiresAt.Equal(t0.Add(5*time.Minute)) {
			t.Fatalf("extend to an earlier time: %+v, %v", got, err)
		}
		// Live past its original expiry.
		f.clk.Set(h.ExpiresAt.Add(time.Second))
		f.wantStock(10, 0, 2)
		f.wantStatus(h.ID, inventory.HoldActive)
		if e := f.get(h.ID).ExpiresAt; !e.Equal(t0.Add(5 * time.Minute)) {
			t.Fatalf("expires at %s after extend", e)
		}
		f.clk.Set(t0.Add(5*time.Minute - time.Millisecond))
		f.wantStock(10, 0, 2)
		f.clk.Set(t0.Add(5 * time.Minute))
		f.wantStock(10, 0, 0)
		f.wantStatus(h.ID, inventory.HoldExpired)
		_, err = f.s.Checkout(ctx, h.ID, anOrder, f.now().Add(time.Hour), f.now())
		wantErr(t, err, inventory.ErrHoldNotLive, "extend an expired hold")
		f.wantStock(10, 0, 0)

		// An expired hold that nothing pruned yet cannot be extended either.
		h2 := f.mustHold(uuid.New(), 1)
		f.clk.Set(h2.ExpiresAt)
		_, err = f.s.Checkout(ctx, h2.ID, anOrder, f.now().Add(time.Hour), f.now())
		wantErr(t, err, inventory.ErrHoldNotLive, "extend a hold at its expiry")
		f.wantStock(10, 0, 0)

		_, err = f.s.Checkout(ctx, inventory.NewHoldID(f.rules.TicketTypeID), anOrder, f.now().Add(time.Hour), f.now())
		wantErr(t, err, inventory.ErrHoldNotFound, "extend an unknown hold")
		_, err = f.s.Checkout(ctx, "malformed", anOrder, f.now().Add(time.Hour), f.now())
		wantErr(t, err, inventory.ErrHoldNotFound, "extend a malformed id")
	})

	t.Run("CheckoutBindsTheHoldToItsOrder", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		f := newFixture(t, newStore, 10)
		t0 := f.now()
		order, other := uuid.New(), uuid.New()
		h := f.mustHold(uuid.New(), 2)
		if got := f.get(h.ID); got.OrderID != uuid.Nil {
			t.Fatalf("a fresh hold names order %s", got.OrderID)
		}
		got, err := f.s.Checkout(ctx, h.ID, order, t0.Add(10*time.Minute), f.now())
		if err != nil || got.OrderID != order || !got.ExpiresAt.Equal(t0.Add(10*time.Minute)) {
			t.Fatalf("checkout: %+v, %v", got, err)
		}
		if got := f.get(h.ID); got.OrderID != order {
			t.Fatalf("read back: order %s, want %s", got.OrderID, order)
		}
		// The same order again is harmless; another order is refused and changes nothing.
		if _, err := f.s.Checkout(ctx, h.ID, order, t0.Add(10*time.Minute), f.now()); err != nil {
			t.Fatalf("checkout again for the same order: %v", err)
		}
		_, err = f.s.Checkout(ctx, h.ID, other, t0.Add(time.Hour), f.now())
		wantErr(t, err, inventory.ErrHoldOrdered, "checkout for another order")
		if e := f.get(h.ID).ExpiresAt; !e.Equal(t0.Add(10 * time.Minute)) {
			t.Fatalf("a refused checkout moved the expiry to %s", e)
		}
		// The customer can no longer give it back; the order can.
		wantErr(t, f.s.Cancel(ctx, h.ID, f.now()), inventory.ErrHoldOrdered, "cancel a checked-out hold")
		f.wantStock(10, 0, 2)
		f.wantStatus(h.ID, inventory.HoldActive)
		if err := f.s.Release(ctx, h.ID, f.now()); err != nil {
			t.Fatalf("release by the order: %v", err)
		}
		f.wantStock(10, 0, 0)
		f.wantStatus(h.ID, inventory.HoldReleased)
		// Once released, cancelling is the harmless no-op it always was.
		if err := f.s.Cancel(ctx, h.ID, f.now()); err != nil {
			t.Fatalf("cancel a released hold: %v", err)
		}
	})

	t.Run("Cancel", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		f := newFixture(t, newStore, 4)
		h := f.mustHold(uuid.New(), 3)
		if err := f.s.Cancel(ctx, h.ID, f.now()); err != nil {
			t.Fatalf("cancel: %v", err)
		}
		f.wantStock(4, 0, 0)
		f.wantStatus(h.ID, inventory.HoldReleased)
		if err := f.s.Cancel(ctx, h.ID, f.now()); err != nil {
			t.Fatalf("cancel twice: %v", err)
		}
		wantErr(t, f.s.Cancel(ctx, inventory.NewHoldID(f.rules.TicketTypeID), f.now()), inventory.ErrHoldNotFound, "cancel an unknown hold")
		// A sold hold stays sold.
		sold := f.mustHold(uuid.New(), 1)
		if _, err := f.s.Claim(ctx, sold, f.now(), time.Minute); err != nil {
			t.Fatalf("claim: %v", err)
		}
		if err := f.s.Finalize(ctx, sold, 1, f.now()); err != nil {
			t.Fatalf("finalize: %v", err)
		}
		wantErr(t, f.s.Cancel(ctx, sold.ID, f.now()), inventory.ErrHoldOrdered, "cancel a sold hold")
		f.wantStatus(sold.ID, inventory.HoldCommitted)
		f.wantStock(4, 1, 0)
	})

	t.Run("SetCapacity", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		f := newFixture(t, newStore, 10)
		sold := f.mustHold(uuid.New(), 2)
		if _, err := f.s.Claim(ctx, sold, f.now(), time.Minute); err != nil {
			t.Fatalf("claim: %v", err)
		}
		if err := f.s.Finalize(ctx, sold, 2, f.now()); err != nil {
			t.Fatalf("finalize: %v", err)
		}
		held := f.mustHold(uuid.New(), 3)
		f.wantStock(10, 2, 3)

		if err := f.s.SetCapacity(ctx, f.rules.TicketTypeID, 20, f.now()); err != nil {
			t.Fatalf("raise capacity: %v", err)
		}
		f.wantStock(20, 2, 3)
		err := f.s.SetCapacity(ctx, f.rules.TicketTypeID, 4, f.now())
		wantErr(t, err, inventory.ErrCapacityBelowCommitted, "lower capacity below sold plus held")
		f.wantStock(20, 2, 3)
		if err := f.s.SetCapacity(ctx, f.rules.TicketTypeID, 5, f.now()); err != nil {
			t.Fatalf("lower capacity to sold plus held: %v", err)
		}
		f.wantStock(5, 2, 3)
		_, _, err = f.s.Hold(ctx, f.req(uuid.New(), 1))
		wantErr(t, err, inventory.ErrSoldOut, "hold after lowering capacity to what is taken")

		// Once the hold expires, capacity may go down to what is sold.
		f.clk.Set(held.ExpiresAt)
		if err := f.s.SetCapacity(ctx, f.rules.TicketTypeID, 2, f.now()); err != nil {
			t.Fatalf("lower capacity to sold after holds expired: %v", err)
		}
		f.wantStock(2, 2, 0)
		err = f.s.SetCapacity(ctx, f.rules.TicketTypeID, 1, f.now())
		wantErr(t, err, inventory.ErrCapacityBelowCommitted, "lower capacity below sold")
		f.wantStock(2, 2, 0)
	})

	t.Run("BatchedCommitFinalizes", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		f := newFixture(t, newStore, 10)
		// The store commits three holds in one transaction and reports sold 10 with each; their
		// Finalize calls arrive one by one. Held plus sold must stay within capacity throughout.
		a, b, c := f.mustHold(uuid.New(), 4), f.mustHold(uuid.New(), 4), f.mustHold(uuid.New(), 2)
		for _, h := range []inventory.Hold{a, b, c} {
			if _, err := f.s.Claim(ctx, h, f.now(), time.Minute); err != nil {
				t.Fatalf("claim: %v", err)
			}
		}
		f.wantStock(10, 0, 10)
		for i, step := range []struct {
			h          inventory.Hold
			sold, held int
		}{{a, 4, 6}, {c, 6, 4}, {b, 10, 0}, {a, 10, 0}} {
			if err := f.s.Finalize(ctx, step.h, 10, f.now()); err != nil {
				t.Fatalf("finalize %d: %v", i, err)
			}
			f.wantStock(10, step.sold, step.held)
		}
		// With room to spare, the same batch must end counted once: sold is the store's count,
		// not the store's count plus each hold again (which left tickets unsellable forever).
		roomy := newFixture(t, newStore, 100)
		x, y, z := roomy.mustHold(uuid.New(), 4), roomy.mustHold(uuid.New(), 4), roomy.mustHold(uuid.New(), 2)
		for _, h := range []inventory.Hold{x, y, z} {
			if _, err := roomy.s.Claim(ctx, h, roomy.now(), time.Minute); err != nil {
				t.Fatalf("claim: %v", err)
			}
			if err := roomy.s.Finalize(ctx, h, 10, roomy.now()); err != nil {
				t.Fatalf("finalize: %v", err)
			}
		}
		roomy.wantStock(100, 10, 0)

		// A commit whose hold had lapsed before its Finalize (its tickets went back to the pool)
		// takes the store's count as far as it fits.
		f2 := newFixture(t, newStore, 10)
		late := f2.mustHold(uuid.New(), 3)
		f2.clk.Set(late.ExpiresAt)
		other := f2.mustHold(uuid.New(), 4)
		f2.wantStock(10, 0, 4)
		if err := f2.s.Finalize(ctx, late, 3, f2.now()); err != nil {
			t.Fatalf("finalize a lapsed hold: %v", err)
		}
		f2.wantStock(10, 3, 4)
		_, _, err := f2.s.Hold(ctx, f2.req(uuid.New(), 4))
		wantErr(t, err, inventory.ErrSoldOut, "hold more than is left after a late finalize")
		if err := f2.s.Finalize(ctx, other, 7, f2.now()); err != nil {
			t.Fatalf("finalize: %v", err)
		}
		f2.wantStock(10, 7, 0)
	})

	t.Run("ClaimAndFinalize", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		f := newFixture(t, newStore, 10)
		cust := uuid.New()
		h := f.mustHold(cust, 2)

		// A live hold stays held and is protected for claimTTL.
		f.clk.Advance(10 * time.Second)
		c, err := f.s.Claim(ctx, h, f.now(), 3*time.Minute)
		if err != nil || c.Status != inventory.HoldClaimed || !c.ExpiresAt.Equal(f.now().Add(3*time.Minute)) {
			t.Fatalf("claim a live hold: %+v, %v", c, err)
		}
		f.wantStock(10, 0, 2)
		f.wantStatus(h.ID, inventory.HoldClaimed)
		// Claiming again with a shorter window never shortens it.
		c2, err := f.s.Claim(ctx, h, f.now(), time.Second)
		if err != nil || c2.Status != inventory.HoldClaimed || !c2.ExpiresAt.Equal(c.ExpiresAt) {
			t.Fatalf("second claim: %+v, %v", c2, err)
		}
		f.wantStock(10, 0, 2)
		f.clk.Set(h.ExpiresAt.Add(time.Millisecond)) // past the hold's own expiry
		f.wantStock(10, 0, 2)
		f.wantStatus(h.ID, inventory.HoldClaimed)

		// Finalize moves it from held to sold, once.
		if err := f.s.Finalize(ctx, h, 2, f.now()); err != nil {
			t.Fatalf("finalize: %v", err)
		}
		f.wantStock(10, 2, 0)
		f.wantStatus(h.ID, inventory.HoldCommitted)
		if err := f.s.Finalize(ctx, h, 2, f.now()); err != nil {
			t.Fatalf("finalize again: %v", err)
		}
		f.wantStock(10, 2, 0)
		c, err = f.s.Claim(ctx, h, f.now(), time.Minute)
		if err != nil || c.Status != inventory.HoldCommitted {
			t.Fatalf("claim after commit: %+v, %v", c, err)
		}
		f.wantStock(10, 2, 0)
		if err := f.s.Release(ctx, h.ID, f.now()); err != nil {
			t.Fatalf("release after commit: %v", err)
		}
		f.wantStock(10, 2, 0)
		f.wantStatus(h.ID, inventory.HoldCommitted)
		_, err = f.s.Checkout(ctx, h.ID, anOrder, f.now().Add(time.Hour), f.now())
		wantErr(t, err, inventory.ErrHoldNotLive, "extend a committed hold")

		// An expired hold whose tickets are still free is reserved again.
		e := f.mustHold(cust, 3)
		f.clk.Set(e.ExpiresAt.Add(time.Second))
		f.wantStock(10, 2, 0)
		c, err = f.s.Claim(ctx, e, f.now(), time.Minute)
		if err != nil || c.Status != inventory.HoldClaimed || !c.ExpiresAt.Equal(f.now().Add(time.Minute)) {
			t.Fatalf("claim an expired hold: %+v, %v", c, err)
		}
		f.wantStock(10, 2, 3)
		f.wantStatus(e.ID, inventory.HoldClaimed)
		if err := f.s.Finalize(ctx, e, 5, f.now()); err != nil {
			t.Fatalf("finalize: %v", err)
		}
		f.wantStock(10, 5, 0)

		// A released hold too (a payment that succeeded after the customer let go).
		r := f.mustHold(cust, 1)
		if err := f.s.Release(ctx, r.ID, f.now()); err != nil {
			t.Fatalf("release: %v", err)
		}
		if c, err := f.s.Claim(ctx, r, f.now(), time.Minute); err != nil || c.Status != inventory.HoldClaimed {
			t.Fatalf("claim a released hold: %+v, %v", c, err)
		}
		f.wantStock(10, 5, 1)
		if err := f.s.Release(ctx, r.ID, f.now()); err != nil {
			t.Fatalf("release: %v", err)
		}
		f.wantStock(10, 5, 0)

		// An expired hold whose tickets were taken by others is sold out, and takes nothing.
		x := f.mustHold(cust, 4)
		f.clk.Set(x.ExpiresAt)
		f.mustHold(uuid.New(), 3)
		f.mustHold(uuid.New(), 1)
		f.wantStock(10, 5, 4)
		_, err = f.s.Claim(ctx, x, f.now(), time.Minute)
		wantErr(t, err, inventory.ErrSoldOut, "claim an expired hold whose tickets are gone")
		if n := available(t, err); n != 1 {
			t.Fatalf("sold out claim says %d available, want 1", n)
		}
		f.wantStock(10, 5, 4)
		f.wantStatus(x.ID, inventory.HoldExpired)

		// A hold the store never saw (its records were lost with a Redis flush) is reserved.
		f.clk.Advance(ttl)
		f.wantStock(10, 5, 0)
		lost := inventory.Hold{
			ID: inventory.NewHoldID(f.rules.TicketTypeID), TicketTypeID: f.rules.TicketTypeID, CustomerID: cust,
			Quantity: 2, UnitPriceCents: 4250, Currency: "EUR", Status: inventory.HoldActive,
			ExpiresAt: f.now().Add(-time.Minute), CreatedAt: f.now().Add(-3 * time.Minute),
		}
		c, err = f.s.Claim(ctx, lost, f.now(), time.Minute)
		if err != nil || c.Status != inventory.HoldClaimed || c.Quantity != 2 || !c.ExpiresAt.Equal(f.now().Add(time.Minute)) {
			t.Fatalf("claim a hold the store never saw: %+v, %v", c, err)
		}
		f.wantStock(10, 5, 2)
		g := f.get(lost.ID)
		if g.Status != inventory.HoldClaimed || g.CustomerID != cust || g.Quantity != 2 || g.UnitPriceCents != 4250 || g.Currency != "EUR" {
			t.Fatalf("a re-reserved hold reads back as %+v", g)
		}
		if err := f.s.Finalize(ctx, lost, 7, f.now()); err != nil {
			t.Fatalf("finalize: %v", err)
		}
		f.wantStock(10, 7, 0)
		f.wantStatus(lost.ID, inventory.HoldCommitted)
		// ...unless its tickets are gone.
		lost2 := lost
		lost2.ID, lost2.Quantity = inventory.NewHoldID(f.rules.TicketTypeID), 4
		_, err = f.s.Claim(ctx, lost2, f.now(), time.Minute)
		wantErr(t, err, inventory.ErrSoldOut, "claim a lost hold with too few tickets left")
		f.wantStock(10, 7, 0)

		// Finalize never lowers sold: a repeat with a smaller figure changes nothing.
		small := f.mustHold(cust, 1)
		if err := f.s.Finalize(ctx, small, 8, f.now()); err != nil {
			t.Fatalf("finalize: %v", err)
		}
		f.wantStock(10, 8, 0)
		// A hold finalized without a claim (the store committed it) stops being held, too.
		f.wantStatus(small.ID, inventory.HoldCommitted)
		if err := f.s.Finalize(ctx, small, 1, f.now()); err != nil {
			t.Fatalf("finalize again with a smaller figure: %v", err)
		}
		f.wantStock(10, 8, 0)

		// Configure raises sold to the store's figure, never lowers it.
		r2 := f.rules
		r2.Sold = 9
		f.configure(r2)
		f.wantStock(10, 9, 0)
		r2.Sold = 1
		f.configure(r2)
		f.wantStock(10, 9, 0)

		// A commit of a hold the store lost between claim and commit is recorded in full: the
		// customer can still read their hold, with its price.
		ghost := inventory.Hold{
			ID: inventory.NewHoldID(f.rules.TicketTypeID), TicketTypeID: f.rules.TicketTypeID, CustomerID: cust,
			Quantity: 1, UnitPriceCents: 4250, Currency: "EUR", Status: inventory.HoldClaimed,
			ExpiresAt: f.now().Add(time.Minute), CreatedAt: f.now().Add(-time.Minute),
		}
		if err := f.s.Finalize(ctx, ghost, 10, f.now()); err != nil {
			t.Fatalf("finalize a hold the store never saw: %v", err)
		}
		f.wantStock(10, 10, 0)
		g = f.get(ghost.ID)
		want := ghost
		want.Status = inventory.HoldCommitted
		sameHold(t, g, want)
	})
}

// raceHolds starts buyers goroutines at once, each holding qty(i) for a customer of its own at
// the same instant, while a reader checks the stock. It checks every refusal is a sold out that
// was right to refuse, and returns the tickets held and the refusals.
func raceHolds(t *testing.T, f *fixture, buyers int, qty func(i int) int) (held, soldOut int) {
	t.Helper()
	ctx := context.Background()
	now := f.now()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []string
		holds    []inventory.Hold
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	gate := make(chan struct{})
	done := make(chan struct{})
	var reader sync.WaitGroup
	reader.Add(1)
	go func() { // nothing ever above capacity, at any instant
		defer reader.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			st, err := f.s.Stock(ctx, []uuid.UUID{f.rules.TicketTypeID}, now)
			if err != nil {
				fail("stock during the race: %v", err)
				return
			}
			if s := st[0]; s.Held+s.Sold > s.Capacity {
				fail("during the race held %d + sold %d > capacity %d", s.Held, s.Sold, s.Capacity)
			}
		}
	}()
	for i := range buyers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q := qty(i)
			req := inventory.HoldRequest{
				ID: inventory.NewHoldID(f.rules.TicketTypeID), TicketTypeID: f.rules.TicketTypeID, CustomerID: uuid.New(),
				Quantity: q, Now: now, TTL: ttl, MaxLive: 4,
			}
			<-gate
			h, created, err := f.s.Hold(ctx, req)
			switch {
			case err == nil && created:
				mu.Lock()
				holds = append(holds, h)
				held += q
				mu.Unlock()
			case err == nil:
				fail("buyer %d: created false for a new id", i)
			case errors.Is(err, inventory.ErrSoldOut):
				pe := problem.As(err)
				n, ok := pe.Extra["available"].(int)
				if !ok || n < 0 || n >= q {
					fail("buyer %d wanted %d and was refused with available %#v", i, q, pe.Extra["available"])
				}
				mu.Lock()
				soldOut++
				mu.Unlock()
			default:
				fail("buyer %d: %v", i, err)
			}
		}()
	}
	close(gate)
	wg.Wait()
	close(done)
	reader.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d failures, first: %s", len(failures), failures[0])
	}
	ids := map[string]bool{}
	for _, h := range holds {
		if ids[h.ID] {
			t.Fatalf("hold %s twice", h.ID)
		}
		ids[h.ID] = true
	}
	return held, soldOut
}

// expireWhileBuying interleaves holds, releases, extensions, claims and commits at increasing
// times with a short TTL, and checks after every step, against a model of its own, that held is
// exactly the quantity of the holds live at that instant and that held + sold never exceeds
// capacity.
func expireWhileBuying(t *testing.T, f *fixture) {
	ctx := context.Background()
	const (
		shortTTL = 60 * time.Millisecond
		claimTTL = 40 * time.Millisecond
		steps    = 400
	)
	rng := rand.New(rand.NewPCG(7, 11))
	capacity := f.rules.Capacity
	type liveHold struct {
		h   inventory.Hold
		exp time.Time
	}
	live := map[string]*liveHold{}
	var order []string // ids of live holds, in a stable order for picking
	var expired []string
	sold := 0
	customers := make([]uuid.UUID, 6)
	for i := range customers {
		customers[i] = uuid.New()
	}
	heldNow := func() int {
		n := 0
		for _, l := range live {
			n += l.h.Quantity
		}
		return n
	}
	drop := func(id string) {
		delete(live, id)
		order = slices.DeleteFunc(order, func(s string) bool { return s == id })
	}
	pick := func() *liveHold {
		if len(order) == 0 {
			return nil
		}
		return live[order[rng.IntN(len(order))]]
	}
	counts := map[string]int{}
	for step := range steps {
		f.clk.Advance(time.Duration(1+rng.IntN(12)) * time.Millisecond)
		now := f.now()
		for _, id := range slices.Clone(order) {
			if !now.Before(live[id].exp) {
				expired = append(expired, id)
				drop(id)
			}
		}
		switch op := rng.IntN(20); {
		case op < 12: // hold
			qty := 1 + rng.IntN(4)
			req := inventory.HoldRequest{ID: inventory.NewHoldID(f.rules.TicketTypeID), TicketTypeID: f.rules.TicketTypeID,
				CustomerID: customers[rng.IntN(len(customers))], Quantity: qty, Now: now, TTL: shortTTL, MaxLive: 1000}
			h, created, err := f.s.Hold(ctx, req)
			free := capacity - sold - heldNow()
			if qty <= free {
				if err != nil || !created || !h.ExpiresAt.Equal(now.Add(shortTTL)) {
					t.Fatalf("step %d: hold %d with %d free: %+v created %v err %v", step, qty, free, h, created, err)
				}
				live[h.ID] = &liveHold{h: h, exp: h.ExpiresAt}
				order = append(order, h.ID)
				counts["held"]++
			} else {
				wantErr(t, err, inventory.ErrSoldOut, fmt.Sprintf("step %d: hold %d with %d free", step, qty, free))
				if n := available(t, err); n != max(free, 0) {
					t.Fatalf("step %d: sold out says %d available, model says %d", step, n, free)
				}
				counts["soldout"]++
			}
		case op < 14: // release
			if l := pick(); l != nil {
				if err := f.s.Release(ctx, l.h.ID, now); err != nil {
					t.Fatalf("step %d: release: %v", step, err)
				}
				drop(l.h.ID)
				counts["released"]++
			}
		case op < 16: // extend
			if l := pick(); l != nil {
				until := now.Add(time.Duration(rng.IntN(100)) * time.Millisecond)
				h, err := f.s.Checkout(ctx, l.h.ID, anOrder, until, now)
				if until.After(l.exp) {
					l.exp = until
				}
				if err != nil || !h.ExpiresAt.Equal(l.exp) {
					t.Fatalf("step %d: extend to %s: %+v, %v; want expiry %s", step, until, h, err, l.exp)
				}
				counts["extended"]++
			}
		case op < 18: // claim and commit
			if l := pick(); l != nil {
				c, err := f.s.Claim(ctx, l.h, now, claimTTL)
				if err != nil || c.Status != inventory.HoldClaimed {
					t.Fatalf("step %d: claim: %+v, %v", step, c, err)
				}
				sold += l.h.Quantity
				if err := f.s.Finalize(ctx, l.h, sold, now); err != nil {
					t.Fatalf("step %d: finalize: %v", step, err)
				}
				drop(l.h.ID)
				counts["committed"]++
			}
		default: // claim only: protects the hold for claimTTL
			if l := pick(); l != nil {
				c, err := f.s.Claim(ctx, l.h, now, claimTTL)
				if until := now.Add(claimTTL); until.After(l.exp) {
					l.exp = until
				}
				if err != nil || c.Status != inventory.HoldClaimed || !c.ExpiresAt.Equal(l.exp) {
					t.Fatalf("step %d: claim: %+v, %v; want expiry %s", step, c, err, l.exp)
				}
				counts["claimed"]++
			}
		}
		st := f.stock()
		if st.Held != heldNow() || st.Sold != sold || st.Capacity != capacity || st.Held+st.Sold > st.Capacity {
			t.Fatalf("step %d: stock %+v; model held %d sold %d (%d live holds)", step, st, heldNow(), sold, len(live))
		}
		if len(expired) > 0 && step%10 == 0 {
			id := expired[rng.IntN(len(expired))]
			if got := f.get(id).Status; got != inventory.HoldExpired {
				t.Fatalf("step %d: hold %s expired in the model, status %s", step, id, got)
			}
		}
	}
	// The walk must have exercised every path, expiry included.
	for _, k := range []string{"held", "soldout", "released", "extended", "committed", "claimed"} {
		if counts[k] == 0 {
			t.Fatalf("the walk never did %q: %v", k, counts)
		}
	}
	if len(expired) == 0 {
		t.Fatalf("no hold expired during the walk: %v", counts)
	}
}
