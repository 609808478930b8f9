package paymenttest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/payment"
)

// RunOrderStore runs the OrderStore conformance suite. newStore may return a store shared with
// other calls: every subtest uses its own customers, holds and keys, and the times that decide
// expiry are set in a past of its own, so purges in one subtest never touch another's records.
func RunOrderStore(t *testing.T, newStore func(t *testing.T) payment.OrderStore) {
	ctx := context.Background()
	// Databases keep microseconds; times they can hold compare equal after a round trip.
	now := time.Now().UTC().Truncate(time.Microsecond)
	epoch := func(year int) time.Time { return time.Date(year, 6, 1, 12, 0, 0, 0, time.UTC) }

	runRefunds(t, newStore)

	t.Run("CreateWritesOrderKeyAndOutbox", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		o, idem := NewOrder(uuid.New(), now)
		msg, err := s.Create(ctx, o, idem)
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		if msg.ID == 0 || msg.OrderID != o.ID || !msg.CreatedAt.Equal(o.CreatedAt) {
			t.Fatalf("outbox message %+v, want one for order %s at %s", msg, o.ID, o.CreatedAt)
		}
		SameOrder(t, get(t, s, o.ID), o)
		rec, err := s.ByIdempotencyKey(ctx, o.CustomerID, idem.Key, now)
		if err != nil || rec.OrderID != o.ID || rec.RequestHash != idem.RequestHash || !rec.ExpiresAt.Equal(idem.ExpiresAt) {
			t.Fatalf("idempotency record: %+v, %v; want %+v", rec, err, idem)
		}
		// Unpublished returns it once it is older than the cutoff, and not before.
		if outboxHas(t, s, o.CreatedAt, msg.ID) {
			t.Fatal("a message created at the cutoff is returned as older than it")
		}
		if !outboxHas(t, s, o.CreatedAt.Add(time.Millisecond), msg.ID) {
			t.Fatal("Unpublished misses a message older than the cutoff")
		}
		if err := s.Published(ctx, []int64{msg.ID}); err != nil {
			t.Fatalf("published: %v", err)
		}
		if outboxHas(t, s, now.Add(time.Hour), msg.ID) {
			t.Fatal("a published message is still in the outbox")
		}
		if err := s.Published(ctx, []int64{msg.ID}); err != nil {
			t.Fatalf("published twice: %v", err)
		}
		if err := s.Published(ctx, nil); err != nil {
			t.Fatalf("published nothing: %v", err)
		}
	})

	t.Run("UnpublishedOldestFirst", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		var ids []int64
		for i := range 3 {
			o, idem := NewOrder(uuid.New(), now.Add(time.Duration(i)*time.Millisecond))
			msg, err := s.Create(ctx, o, idem)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, msg.ID)
		}
		msgs, err := s.Unpublished(ctx, now.Add(time.Hour), 100_000)
		if err != nil {
			t.Fatal(err)
		}
		var mine []int64
		for _, m := range msgs {
			if slices.Contains(ids, m.ID) {
				mine = append(mine, m.ID)
			}
		}
		if !slices.Equal(mine, ids) {
			t.Fatalf("outbox order: got %v, want %v", mine, ids)
		}
		if one, err := s.Unpublished(ctx, now.Add(time.Hour), 1); err != nil || len(one) != 1 {
			t.Fatalf("limit 1: %d messages, %v", len(one), err)
		}
		if err := s.Published(ctx, ids); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("DuplicateKey", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		customer := uuid.New()
		o1, idem := NewOrder(customer, now)
		mustCreate(t, s, o1, idem)
		o2, idem2 := NewOrder(customer, now.Add(time.Second))
		idem2.Key = idem.Key
		if _, err := s.Create(ctx, o2, idem2); !errors.Is(err, payment.ErrDuplicateKey) {
			t.Fatalf("create with a used key: want ErrDuplicateKey, got %v", err)
		}
		if _, err := s.Get(ctx, o2.ID); !errors.Is(err, payment.ErrOrderNotFound) {
			t.Fatalf("the refused order was stored: %v", err)
		}
		if rec, err := s.ByIdempotencyKey(ctx, customer, idem.Key, now); err != nil || rec.OrderID != o1.ID {
			t.Fatalf("the key now names %v (%v), want %s", rec.OrderID, err, o1.ID)
		}
		// Keys belong to their customer.
		o3, idem3 := NewOrder(uuid.New(), now)
		idem3.Key = idem.Key
		mustCreate(t, s, o3, idem3)
	})

	t.Run("ExpiredKeyReused", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		base := epoch(2005)
		customer := uuid.New()
		o1, idem := NewOrder(customer, base)
		idem.ExpiresAt = base.Add(time.Minute)
		mustCreate(t, s, o1, idem)
		// Still live a moment before it expires.
		o2, idem2 := NewOrder(customer, base.Add(time.Minute-time.Microsecond))
		idem2.Key = idem.Key
		if _, err := s.Create(ctx, o2, idem2); !errors.Is(err, payment.ErrDuplicateKey) {
			t.Fatalf("create with a live key: want ErrDuplicateKey, got %v", err)
		}
		o3, idem3 := NewOrder(customer, base.Add(2*time.Minute))
		idem3.Key, idem3.RequestHash = idem.Key, "another-request"
		mustCreate(t, s, o3, idem3)
		rec, err := s.ByIdempotencyKey(ctx, customer, idem.Key, o3.CreatedAt)
		if err != nil || rec.OrderID != o3.ID || rec.RequestHash != "another-request" {
			t.Fatalf("the reused key: %+v, %v; want order %s", rec, err, o3.ID)
		}
		SameOrder(t, get(t, s, o1.ID), o1)
	})

	t.Run("HoldAlreadyOrdered", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		customer := uuid.New()
		o1, idem := NewOrder(customer, now)
		mustCreate(t, s, o1, idem)
		o2, idem2 := NewOrder(customer, now.Add(time.Second))
		o2.Hold = o1.Hold
		if _, err := s.Create(ctx, o2, idem2); !errors.Is(err, payment.ErrHoldAlreadyOrdered) {
			t.Fatalf("order a hold twice: want ErrHoldAlreadyOrdered, got %v", err)
		}
		if _, err := s.Get(ctx, o2.ID); !errors.Is(err, payment.ErrOrderNotFound) {
			t.Fatalf("the refused order was stored: %v", err)
		}
		// Nothing of the refused order remains: its key is free.
		if _, err := s.ByIdempotencyKey(ctx, customer, idem2.Key, now); !errors.Is(err, payment.ErrOrderNotFound) {
			t.Fatalf("the refused order's key was kept: %v", err)
		}
		o3, idem3 := NewOrder(customer, now.Add(2*time.Second))
		idem3.Key = idem2.Key
		mustCreate(t, s, o3, idem3)
	})

	t.Run("ByIdempotencyKey", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		base := epoch(2006)
		customer := uuid.New()
		o, idem := NewOrder(customer, base)
		idem.ExpiresAt = base.Add(time.Hour)
		mustCreate(t, s, o, idem)
		for _, at := range []time.Time{base, base.Add(time.Hour - time.Microsecond)} {
			if rec, err := s.ByIdempotencyKey(ctx, customer, idem.Key, at); err != nil || rec.OrderID != o.ID ||
				rec.CustomerID != customer || rec.Key != idem.Key {
				t.Fatalf("at %s: %+v, %v", at, rec, err)
			}
		}
		for _, at := range []time.Time{base.Add(time.Hour), base.Add(2 * time.Hour)} {
			if _, err := s.ByIdempotencyKey(ctx, customer, idem.Key, at); !errors.Is(err, payment.ErrOrderNotFound) {
				t.Fatalf("an expired key at %s: want ErrOrderNotFound, got %v", at, err)
			}
		}
		if _, err := s.ByIdempotencyKey(ctx, uuid.New(), idem.Key, base); !errors.Is(err, payment.ErrOrderNotFound) {
			t.Fatalf("another customer's key: want ErrOrderNotFound, got %v", err)
		}
		if _, err := s.ByIdempotencyKey(ctx, customer, "never-used", base); !errors.Is(err, payment.ErrOrderNotFound) {
			t.Fatalf("an unknown key: want ErrOrderNotFound, got %v", err)
		}
	})

	t.Run("GetAndListNewestFirst", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		if _, err := s.Get(ctx, uuid.New()); !errors.Is(err, payment.ErrOrderNotFound) {
			t.Fatalf("unknown order: want ErrOrderNotFound, got %v", err)
		}
		customer, other := uuid.New(), uuid.New()
		var want []payment.Order
		for i := range 5 {
			// Two orders share a creation time: the id breaks the tie.
			o, idem := NewOrder(customer, now.Add(time.Duration(min(i, 3))*time.Second))
			mustCreate(t, s, o, idem)
			want = append(want, o)
		}
		o, idem := NewOrder(other, now.Add(time.Minute))
		mustCreate(t, s, o, idem)
		slices.SortFunc(want, func(a, b payment.Order) int {
			if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
				return c
			}
			return slices.Compare(b.ID[:], a.ID[:])
		})
		all, err := s.List(ctx, customer, nil, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != len(want) {
			t.Fatalf("list: %d orders, want %d (another customer's included?)", len(all), len(want))
		}
		for i := range want {
			SameOrder(t, all[i], want[i])
		}
		// Pages of two, each strictly after the last of the one before.
		var paged []payment.Order
		var after *payment.OrderCursor
		for range 10 {
			page, err := s.List(ctx, customer, after, 2)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) > 2 {
				t.Fatalf("page of %d with limit 2", len(page))
			}
			if len(page) == 0 {
				break
			}
			paged = append(paged, page...)
			last := page[len(page)-1]
			after = &payment.OrderCursor{CreatedAt: last.CreatedAt, ID: last.ID}
		}
		if len(paged) != len(want) {
			t.Fatalf("paging gave %d orders, want %d", len(paged), len(want))
		}
		for i := range want {
			if paged[i].ID != want[i].ID {
				t.Fatalf("page order differs at %d: %s, want %s", i, paged[i].ID, want[i].ID)
			}
		}
		if none, err := s.List(ctx, uuid.New(), nil, 10); err != nil || len(none) != 0 {
			t.Fatalf("a customer without orders: %d, %v", len(none), err)
		}
	})

	t.Run("SetDetail", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		if _, _, err := s.SetDetail(ctx, uuid.New(), payment.DetailDelayed); !errors.Is(err, payment.ErrOrderNotFound) {
			t.Fatalf("unknown order: want ErrOrderNotFound, got %v", err)
		}
		o := create(t, s)
		got, changed, err := s.SetDetail(ctx, o.ID, payment.DetailDelayed)
		if err != nil || !changed || got.StatusDetail != payment.DetailDelayed || got.Version != o.Version+1 ||
			got.Status != payment.StatusPending {
			t.Fatalf("set detail: %+v changed=%v err=%v", got, changed, err)
		}
		if got.UpdatedAt.Before(o.UpdatedAt) {
			t.Fatalf("updated_at went back: %s < %s", got.UpdatedAt, o.UpdatedAt)
		}
		again, changed, err := s.SetDetail(ctx, o.ID, payment.DetailDelayed)
		if err != nil || changed || again.Version != got.Version || again.StatusDetail != payment.DetailDelayed {
			t.Fatalf("same detail again: %+v changed=%v err=%v", again, changed, err)
		}
		if stored := get(t, s, o.ID); stored.Version != got.Version || stored.StatusDetail != payment.DetailDelayed {
			t.Fatalf("stored: version %d detail %q", stored.Version, stored.StatusDetail)
		}
		confirmed, _, err := s.Confirm(ctx, o.ID, "ch_1", Tickets(o, 1))
		if err != nil {
			t.Fatal(err)
		}
		if confirmed.StatusDetail != "" {
			t.Fatalf("a confirmed order keeps the detail %q", confirmed.StatusDetail)
		}
		after, changed, err := s.SetDetail(ctx, o.ID, payment.DetailDelayed)
		if err != nil || changed || after.Status != payment.StatusConfirmed || after.Version != confirmed.Version || after.StatusDetail != "" {
			t.Fatalf("set detail on a terminal order: %+v changed=%v err=%v", after, changed, err)
		}
		if len(after.Tickets) != 1 {
			t.Fatalf("a confirmed order read back by SetDetail has %d tickets", len(after.Tickets))
		}
	})

	t.Run("ConfirmIdempotent", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		if _, _, err := s.Confirm(ctx, uuid.New(), "ch", nil); !errors.Is(err, payment.ErrOrderNotFound) {
			t.Fatalf("unknown order: want ErrOrderNotFound, got %v", err)
		}
		o := create(t, s)
		tickets := Tickets(o, 2)
		got, changed, err := s.Confirm(ctx, o.ID, "ch_1", tickets)
		if err != nil || !changed {
			t.Fatalf("confirm: changed=%v err=%v", changed, err)
		}
		if got.Status != payment.StatusConfirmed || got.ChargeID != "ch_1" || got.Version != o.Version+1 {
			t.Fatalf("confirmed: %+v", got)
		}
		SameTickets(t, got.Tickets, tickets)
		SameTickets(t, get(t, s, o.ID).Tickets, tickets)
		// A repeat (a redelivery) changes nothing, whatever it carries.
		again, changed, err := s.Confirm(ctx, o.ID, "ch_2", Tickets(o, 2))
		if err != nil || changed {
			t.Fatalf("confirm again: changed=%v err=%v", changed, err)
		}
		if again.ChargeID != "ch_1" || again.Version != got.Version {
			t.Fatalf("confirm again changed the order: %+v", again)
		}
		SameTickets(t, again.Tickets, tickets)
		stored := get(t, s, o.ID)
		SameTickets(t, stored.Tickets, tickets)
		if stored.ChargeID != "ch_1" || stored.Version != got.Version {
			t.Fatalf("stored after a repeat: %+v", stored)
		}
		if _, _, err := s.Fail(ctx, o.ID, "too late"); !errors.Is(err, payment.ErrOrderTerminal) {
			t.Fatalf("fail a confirmed order: want ErrOrderTerminal, got %v", err)
		}
		if get(t, s, o.ID).Status != payment.StatusConfirmed {
			t.Fatal("failing a confirmed order changed it")
		}
		if list, err := s.List(ctx, o.CustomerID, nil, 10); err != nil || len(list) != 1 {
			t.Fatalf("list: %d, %v", len(list), err)
		} else {
			SameTickets(t, list[0].Tickets, tickets)
		}
	})

	t.Run("Statuses", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		if evs, err := s.Statuses(ctx, nil); err != nil || len(evs) != 0 {
			t.Fatalf("no orders: %v, %v", evs, err)
		}
		pending, confirmed := create(t, s), create(t, s)
		after, _, err := s.Confirm(ctx, confirmed.ID, "ch_1", Tickets(confirmed, 1))
		if err != nil {
			t.Fatal(err)
		}
		evs, err := s.Statuses(ctx, []uuid.UUID{pending.ID, uuid.New(), confirmed.ID})
		if err != nil || len(evs) != 2 {
			t.Fatalf("statuses: %v, %v; want the two orders that exist", evs, err)
		}
		byID := map[uuid.UUID]payment.StatusEvent{}
		for _, ev := range evs {
			byID[ev.OrderID] = ev
		}
		for _, want := range []payment.StatusEvent{payment.EventOf(get(t, s, pending.ID)), payment.EventOf(after)} {
			got := byID[want.OrderID]
			if got.CustomerID != want.CustomerID || got.Status != want.Status || got.StatusDetail != want.StatusDetail ||
				got.Version != want.Version || !got.At.Equal(want.At) {
				t.Fatalf("status %+v, want %+v", got, want)
			}
		}
		if byID[confirmed.ID].Status != payment.StatusConfirmed || byID[pending.ID].Status != payment.StatusPending {
			t.Fatalf("statuses %+v", byID)
		}
	})

	t.Run("FailIdempotent", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		if _, _, err := s.Fail(ctx, uuid.New(), "x"); !errors.Is(err, payment.ErrOrderNotFound) {
			t.Fatalf("unknown order: want ErrOrderNotFound, got %v", err)
		}
		o := create(t, s)
		got, changed, err := s.Fail(ctx, o.ID, payment.DetailDeclined)
		if err != nil || !changed || got.Status != payment.StatusFailed || got.StatusDetail != payment.DetailDeclined ||
			got.Version != o.Version+1 {
			t.Fatalf("fail: %+v changed=%v err=%v", got, changed, err)
		}
		again, changed, err := s.Fail(ctx, o.ID, payment.DetailGaveUp)
		if err != nil || changed || again.StatusDetail != payment.DetailDeclined || again.Version != got.Version {
			t.Fatalf("fail again: %+v changed=%v err=%v", again, changed, err)
		}
		if _, _, err := s.Confirm(ctx, o.ID, "ch_1", Tickets(o, 1)); !errors.Is(err, payment.ErrOrderTerminal) {
			t.Fatalf("confirm a failed order: want ErrOrderTerminal, got %v", err)
		}
		stored := get(t, s, o.ID)
		if stored.Status != payment.StatusFailed || stored.ChargeID != "" || len(stored.Tickets) != 0 {
			t.Fatalf("confirming a failed order changed it: %+v", stored)
		}
		if _, changed, err := s.SetDetail(ctx, o.ID, payment.DetailDelayed); err != nil || changed {
			t.Fatalf("set detail on a failed order: changed=%v err=%v", changed, err)
		}
	})

	t.Run("TicketAndCheckIn", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		o := create(t, s)
		tickets := Tickets(o, 2)
		if _, err := s.Ticket(ctx, tickets[0].ID); !errors.Is(err, payment.ErrTicketNotFound) {
			t.Fatalf("a ticket before its order is confirmed: want ErrTicketNotFound, got %v", err)
		}
		if _, _, err := s.Confirm(ctx, o.ID, "ch_1", tickets); err != nil {
			t.Fatal(err)
		}
		for _, want := range tickets {
			got, err := s.Ticket(ctx, want.ID)
			if err != nil || got != want {
				t.Fatalf("ticket: %+v, %v; want %+v", got, err, want)
			}
		}
		if _, err := s.Ticket(ctx, uuid.New()); !errors.Is(err, payment.ErrTicketNotFound) {
			t.Fatalf("unknown ticket: want ErrTicketNotFound, got %v", err)
		}
		staff, staff2 := uuid.New(), uuid.New()
		at := now.Add(time.Minute)
		c, first, err := s.CheckIn(ctx, tickets[0].ID, staff, at)
		if err != nil || !first || c.Ticket != tickets[0] || c.StaffID != staff || !c.CheckedInAt.Equal(at) {
			t.Fatalf("first check-in: %+v first=%v err=%v", c, first, err)
		}
		c2, first, err := s.CheckIn(ctx, tickets[0].ID, staff2, at.Add(time.Minute))
		if err != nil || first || c2.Ticket != tickets[0] || c2.StaffID != staff || !c2.CheckedInAt.Equal(at) {
			t.Fatalf("second check-in: %+v first=%v err=%v; want the first admission", c2, first, err)
		}
		// The other ticket of the order is admitted separately.
		if _, first, err := s.CheckIn(ctx, tickets[1].ID, staff2, at); err != nil || !first {
			t.Fatalf("the order's other ticket: first=%v err=%v", first, err)
		}
		if _, _, err := s.CheckIn(ctx, uuid.New(), staff, at); !errors.Is(err, payment.ErrTicketNotFound) {
			t.Fatalf("check in an unknown ticket: want ErrTicketNotFound, got %v", err)
		}
	})

	t.Run("TicketTypeOrdersAndSales", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		tt := uuid.New()
		var orders []payment.Order
		for i := range 4 { // oldest first
			o, idem := NewOrder(uuid.New(), now.Add(time.Duration(i)*time.Second))
			o.Hold.TicketTypeID = tt
			o.Hold.ID = inventory.NewHoldID(tt)
			idem.RequestHash = "hash-" + o.Hold.ID
			mustCreate(t, s, o, idem)
			orders = append(orders, o)
		}
		create(t, s) // of another ticket type
		tickets := Tickets(orders[0], 2)
		if _, _, err := s.Confirm(ctx, orders[0].ID, "ch_1", tickets); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Fail(ctx, orders[1].ID, "declined"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.SetDetail(ctx, orders[2].ID, payment.DetailDelayed); err != nil {
			t.Fatal(err)
		}
		at := now.Add(time.Minute)
		if _, _, err := s.CheckIn(ctx, tickets[1].ID, uuid.New(), at); err != nil {
			t.Fatal(err)
		}
		ids := func(os []payment.Order) []uuid.UUID {
			out := make([]uuid.UUID, len(os))
			for i, o := range os {
				out[i] = o.ID
			}
			return out
		}
		list := func(status payment.Status, after *payment.OrderCursor, limit int) []uuid.UUID {
			t.Helper()
			got, err := s.TicketTypeOrders(ctx, []uuid.UUID{tt}, status, after, limit)
			if err != nil {
				t.Fatalf("TicketTypeOrders(%q): %v", status, err)
			}
			return ids(got)
		}
		want := []uuid.UUID{orders[3].ID, orders[2].ID, orders[1].ID, orders[0].ID}
		if got := list("", nil, 10); !slices.Equal(got, want) {
			t.Fatalf("all orders of the ticket type: %v, want %v newest first", got, want)
		}
		if got := list("", &payment.OrderCursor{CreatedAt: orders[2].CreatedAt, ID: orders[2].ID}, 1); !slices.Equal(got, want[2:3]) {
			t.Fatalf("after the second: %v, want %v", got, want[2:3])
		}
		if got := list(payment.StatusConfirmed, nil, 10); !slices.Equal(got, want[3:]) {
			t.Fatalf("confirmed: %v, want %v", got, want[3:])
		}
		if got := list(payment.StatusPending, nil, 10); !slices.Equal(got, want[:2]) {
			t.Fatalf("pending: %v, want %v", got, want[:2])
		}
		if got := list(payment.StatusDelayed, nil, 10); !slices.Equal(got, want[1:2]) {
			t.Fatalf("delayed: %v, want %v", got, want[1:2])
		}
		if got := list(payment.StatusFailed, nil, 10); !slices.Equal(got, want[2:3]) {
			t.Fatalf("failed: %v, want %v", got, want[2:3])
		}
		confirmed, err := s.TicketTypeOrders(ctx, []uuid.UUID{tt}, payment.StatusConfirmed, nil, 10)
		if err != nil || len(confirmed) != 1 {
			t.Fatalf("confirmed: %v %v", confirmed, err)
		}
		SameTickets(t, confirmed[0].Tickets, tickets)

		sales, err := s.Sales(ctx, []uuid.UUID{tt, uuid.New()})
		if err != nil {
			t.Fatal(err)
		}
		wantSales := []payment.Sales{{TicketTypeID: tt, Pending: 2, Delayed: 1, Confirmed: 1, Failed: 1, Tickets: 2, RevenueCents: 5000, CheckedIn: 1}}
		if !slices.Equal(sales, wantSales) {
			t.Fatalf("sales: %+v, want %+v", sales, wantSales)
		}
		in, err := s.CheckedIn(ctx, []uuid.UUID{tickets[0].ID, tickets[1].ID})
		if err != nil || len(in) != 1 || !in[tickets[1].ID].Equal(at) {
			t.Fatalf("checked in: %v %v, want only the second ticket at %v", in, err, at)
		}
	})

	t.Run("ConcurrentCheckIns", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		o := create(t, s)
		tk := Tickets(o, 1)[0]
		if _, _, err := s.Confirm(ctx, o.ID, "ch_1", []payment.Ticket{tk}); err != nil {
			t.Fatal(err)
		}
		const n = 20
		var (
			wg     sync.WaitGroup
			start  = make(chan struct{})
			firsts [n]bool
			times  [n]time.Time
			errs   [n]error
		)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				c, first, err := s.CheckIn(ctx, tk.ID, uuid.New(), now.Add(time.Duration(i)*time.Millisecond))
				firsts[i], times[i], errs[i] = first, c.CheckedInAt, err
			}()
		}
		close(start)
		wg.Wait()
		winners := 0
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("check-in %d: %v", i, errs[i])
			}
			if firsts[i] {
				winners++
			}
			if !times[i].Equal(times[0]) {
				t.Fatalf("check-ins disagree on the admission time: %s vs %s", times[i], times[0])
			}
		}
		if winners != 1 {
			t.Fatalf("%d of %d concurrent check-ins were first, want exactly 1", winners, n)
		}
	})

	t.Run("StalePendingAndTouch", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		// Times of the suite's own: no other subtest's orders are this old.
		base := epoch(1980)
		customer := uuid.New()
		// Keys that outlive every purge of the PurgeIdempotency subtest running alongside.
		far := epoch(2990)
		queued, qidem := NewOrder(customer, base)
		qidem.ExpiresAt = far
		mustCreate(t, s, queued, qidem)
		lost, lidem := NewOrder(customer, base.Add(time.Second))
		lidem.ExpiresAt = far
		lmsg := mustCreate(t, s, lost, lidem)
		done, didem := NewOrder(customer, base.Add(2*time.Second))
		didem.ExpiresAt = far
		dmsg := mustCreate(t, s, done, didem)
		if err := s.Published(ctx, []int64{lmsg.ID, dmsg.ID}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Fail(ctx, done.ID, "declined"); err != nil {
			t.Fatal(err)
		}
		stale := func(before time.Time) []uuid.UUID {
			t.Helper()
			ids, err := s.StalePending(ctx, before, 10)
			if err != nil {
				t.Fatal(err)
			}
			var mine []uuid.UUID
			for _, id := range ids {
				if id == queued.ID || id == lost.ID || id == done.ID {
					mine = append(mine, id)
				}
			}
			return mine
		}
		// Only the pending order whose message left the outbox is stale; one still in the outbox
		// is the sweeper's, and a finished one is nobody's.
		if got := stale(base.Add(time.Hour)); !slices.Equal(got, []uuid.UUID{lost.ID}) {
			t.Fatalf("stale %v, want only %s (queued %s, done %s)", got, lost.ID, queued.ID, done.ID)
		}
		if got := stale(base); len(got) != 0 {
			t.Fatalf("orders younger than the cutoff reported stale: %v", got)
		}
		// An attempt makes it fresh again until the cutoff passes its time.
		if err := s.Touch(ctx, []uuid.UUID{lost.ID}, base.Add(30*time.Minute)); err != nil {
			t.Fatal(err)
		}
		if got := stale(base.Add(20 * time.Minute)); len(got) != 0 {
			t.Fatalf("a touched order reported stale: %v", got)
		}
		if got := stale(base.Add(31 * time.Minute)); !slices.Equal(got, []uuid.UUID{lost.ID}) {
			t.Fatalf("stale after the touch aged: %v", got)
		}
	})

	t.Run("ConcurrentCreates", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		// Checkouts arriving together (adapters may combine them), with retries of one key and
		// second orders of one hold mixed in: each gets its own right answer.
		now := time.Now().UTC().Truncate(time.Microsecond)
		customer := uuid.New()
		type attempt struct {
			o    payment.Order
			idem payment.IdempotencyRecord
			want error
		}
		var attempts []attempt
		for range 50 {
			o, idem := NewOrder(customer, now)
			attempts = append(attempts, attempt{o, idem, nil})
		}
		for i := range 10 { // the same key again, for another order: refused
			o, idem := NewOrder(customer, now)
			idem.Key = attempts[i].idem.Key
			attempts = append(attempts, attempt{o, idem, payment.ErrDuplicateKey})
		}
		for i := 10; i < 15; i++ { // the same hold again, under a new key: refused
			o, idem := NewOrder(customer, now)
			o.Hold = attempts[i].o.Hold
			attempts = append(attempts, attempt{o, idem, payment.ErrHoldAlreadyOrdered})
		}
		// The first 50 go first (so the repeats find them), all at once.
		var wg sync.WaitGroup
		results := make([]error, len(attempts))
		run := func(from, to int) {
			for i := from; i < to; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, results[i] = s.Create(ctx, attempts[i].o, attempts[i].idem)
				}()
			}
			wg.Wait()
		}
		run(0, 50)
		run(50, len(attempts))
		for i, a := range attempts {
			if a.want == nil && results[i] != nil || a.want != nil && !errors.Is(results[i], a.want) {
				t.Fatalf("attempt %d: %v, want %v", i, results[i], a.want)
			}
		}
		mine, err := s.List(ctx, customer, nil, 100)
		if err != nil || len(mine) != 50 {
			t.Fatalf("%d orders created (%v), want 50", len(mine), err)
		}
	})

	t.Run("ConcurrentConfirmsAndReads", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		// Many payments finishing at once (adapters may combine them): every order is confirmed
		// with its own tickets, each exactly once however often it is confirmed, and reads see it.
		orders := make([]payment.Order, 100)
		tickets := make([][]payment.Ticket, len(orders))
		for i := range orders {
			orders[i] = create(t, s)
			tickets[i] = Tickets(orders[i], 1+i%3)
		}
		failed := create(t, s)
		if _, _, err := s.Fail(ctx, failed.ID, "declined"); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		changes := map[uuid.UUID]int{}
		for round := range 3 {
			for i, o := range orders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					got, changed, err := s.Confirm(ctx, o.ID, fmt.Sprintf("ch_%d", i), tickets[i])
					if err != nil {
						t.Errorf("confirm %d (round %d): %v", i, round, err)
						return
					}
					if got.Status != payment.StatusConfirmed || len(got.Tickets) != len(tickets[i]) {
						t.Errorf("confirm %d returned %+v", i, got)
					}
					if changed {
						mu.Lock()
						changes[o.ID]++
						mu.Unlock()
					}
					if r, err := s.Get(ctx, o.ID); err != nil || r.Status != payment.StatusConfirmed {
						t.Errorf("read %d after confirm: %+v, %v", i, r, err)
					}
				}()
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := s.Confirm(ctx, failed.ID, "ch_x", Tickets(failed, 1)); !errors.Is(err, payment.ErrOrderTerminal) {
				t.Errorf("confirm a failed order among others: %v", err)
			}
		}()
		wg.Wait()
		for i, o := range orders {
			if changes[o.ID] != 1 {
				t.Fatalf("order %d reported changed %d times", i, changes[o.ID])
			}
			got := get(t, s, o.ID)
			SameTickets(t, got.Tickets, tickets[i])
			if got.ChargeID != fmt.Sprintf("ch_%d", i) || got.Version != 2 {
				t.Fatalf("order %d: %+v", i, got)
			}
		}
		if _, err := s.Get(ctx, uuid.New()); !errors.Is(err, payment.ErrOrderNotFound) {
			t.Fatalf("unknown order among batched reads: %v", err)
		}
	})

	t.Run("PurgeIdempotency", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		// The earliest times of the suite: a purge at them touches no other subtest's keys.
		base := epoch(1990)
		customer := uuid.New()
		o1, idem1 := NewOrder(customer, base)
		idem1.ExpiresAt = base.Add(time.Minute)
		mustCreate(t, s, o1, idem1)
		o2, idem2 := NewOrder(customer, base)
		idem2.ExpiresAt = base.Add(time.Hour)
		mustCreate(t, s, o2, idem2)
		if _, err := s.PurgeIdempotency(ctx, base); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{idem1.Key, idem2.Key} {
			if _, err := s.ByIdempotencyKey(ctx, customer, k, base); err != nil {
				t.Fatalf("a live key was purged: %v", err)
			}
		}
		n, err := s.PurgeIdempotency(ctx, base.Add(2*time.Minute))
		if err != nil || n != 1 {
			t.Fatalf("purge: %d keys, %v; want 1", n, err)
		}
		if _, err := s.ByIdempotencyKey(ctx, customer, idem1.Key, base); !errors.Is(err, payment.ErrOrderNotFound) {
			t.Fatalf("the expired key survived the purge: %v", err)
		}
		if rec, err := s.ByIdempotencyKey(ctx, customer, idem2.Key, base); err != nil || rec.OrderID != o2.ID {
			t.Fatalf("the live key: %+v, %v", rec, err)
		}
		// The orders stay; only the keys go.
		SameOrder(t, get(t, s, o1.ID), o1)
		if n, err := s.PurgeIdempotency(ctx, base.Add(2*time.Minute)); err != nil || n != 0 {
			t.Fatalf("purge again: %d, %v", n, err)
		}
	})
}

// NewOrder returns a pending order of a fresh hold (2 tickets at 25.00 EUR) created at, and its
// idempotency record (a fresh key kept 24 hours).
func NewOrder(customer uuid.UUID, at time.Time) (payment.Order, payment.IdempotencyRecord) {
	tt := uuid.New()
	o := payment.Order{
		ID: uuid.New(), CustomerID: customer,
		Hold: inventory.Hold{ID: inventory.NewHoldID(tt), TicketTypeID: tt, CustomerID: customer, Quantity: 2,
			UnitPriceCents: 2500, Currency: "EUR", Status: inventory.HoldActive, ExpiresAt: at.Add(10 * time.Minute),
			CreatedAt: at.Add(-time.Minute)},
		AmountCents: 5000, Currency: "EUR", Status: payment.StatusPending, Version: 1, CreatedAt: at, UpdatedAt: at,
	}
	return o, payment.IdempotencyRecord{CustomerID: customer, Key: "key-" + uuid.NewString(), RequestHash: "hash-" + o.Hold.ID,
		OrderID: o.ID, ExpiresAt: at.Add(24 * time.Hour)}
}

// Tickets makes n tickets for an order.
func Tickets(o payment.Order, n int) []payment.Ticket {
	event := uuid.New()
	out := make([]payment.Ticket, n)
	for i := range out {
		out[i] = payment.Ticket{ID: uuid.New(), OrderID: o.ID, TicketTypeID: o.Hold.TicketTypeID, EventID: event, Seq: i + 1}
	}
	return out
}

// SameOrder fails unless got is want as the store keeps it (tickets aside).
func SameOrder(t testing.TB, got, want payment.Order) {
	t.Helper()
	h, wh := got.Hold, want.Hold
	if got.ID != want.ID || got.CustomerID != want.CustomerID || h.ID != wh.ID || h.TicketTypeID != wh.TicketTypeID ||
		h.Quantity != wh.Quantity || h.UnitPriceCents != wh.UnitPriceCents || !h.CreatedAt.Equal(wh.CreatedAt) ||
		got.AmountCents != want.AmountCents || got.Currency != want.Currency || got.Status != want.Status ||
		got.StatusDetail != want.StatusDetail || got.Version != want.Version || got.ChargeID != want.ChargeID ||
		!got.CreatedAt.Equal(want.CreatedAt) {
		t.Fatalf("order differs:\n got %+v\nwant %+v", got, want)
	}
}

// SameTickets fails unless the tickets are the same, in order.
func SameTickets(t testing.TB, got, want []payment.Ticket) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("tickets differ:\n got %+v\nwant %+v", got, want)
	}
}

func get(t testing.TB, s payment.OrderStore, id uuid.UUID) payment.Order {
	t.Helper()
	o, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return o
}

func mustCreate(t testing.TB, s payment.OrderStore, o payment.Order, idem payment.IdempotencyRecord) payment.OutboxMessage {
	t.Helper()
	msg, err := s.Create(context.Background(), o, idem)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return msg
}

func create(t testing.TB, s payment.OrderStore) payment.Order {
	t.Helper()
	o, idem := NewOrder(uuid.New(), time.Now().UTC().Truncate(time.Microsecond))
	mustCreate(t, s, o, idem)
	return o
}

func outboxHas(t testing.TB, s payment.OrderStore, before time.Time, id int64) bool {
	t.Helper()
	msgs, err := s.Unpublished(context.Background(), before, 100_000)
	if err != nil {
		t.Fatalf("unpublished: %v", err)
	}
	return slices.ContainsFunc(msgs, func(m payment.OutboxMessage) bool { return m.ID == id })
}
