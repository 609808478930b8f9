package paymenttest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/payment"
)

// InventoryFixture makes what the Inventory contract needs through the inventory module itself,
// never through the port under test.
type InventoryFixture interface {
	// TicketType makes a ticket type with capacity tickets, up to 4 per order.
	TicketType(t *testing.T, capacity int) uuid.UUID
	// Hold holds quantity tickets of a ticket type for a new customer.
	Hold(t *testing.T, ticketType uuid.UUID, quantity int) inventory.Hold
}

// InventoryContract is the contract of payment's Inventory port. It runs against the inventory
// module in process and against the client of another process's internal API, so payment cannot
// tell them apart: the same answers, the same errors (errors.Is works on both sides of the wire).
func InventoryContract(t *testing.T, newPort func(t *testing.T) (payment.Inventory, InventoryFixture)) {
	port, fx := newPort(t)
	ctx := context.Background()
	wantErr := func(t *testing.T, err, want error, what string) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Fatalf("%s: got %v, want %v", what, err, want)
		}
	}

	t.Run("GetHold", func(t *testing.T) {
		tt := fx.TicketType(t, 10)
		h := fx.Hold(t, tt, 2)
		got, err := port.GetHold(ctx, h.ID)
		if err != nil {
			t.Fatalf("get hold: %v", err)
		}
		if got.ID != h.ID || got.TicketTypeID != tt || got.CustomerID != h.CustomerID || got.Quantity != 2 ||
			got.UnitPriceCents != h.UnitPriceCents || got.Currency != h.Currency || got.Status != inventory.HoldActive ||
			!got.ExpiresAt.Equal(h.ExpiresAt) || got.OrderID != uuid.Nil {
			t.Fatalf("got %+v, want %+v", got, h)
		}
		_, err = port.GetHold(ctx, inventory.NewHoldID(tt))
		wantErr(t, err, inventory.ErrHoldNotFound, "an unknown hold")
		_, err = port.GetHold(ctx, "not-a-hold-id")
		wantErr(t, err, inventory.ErrHoldNotFound, "a malformed hold id")
	})

	t.Run("EventStockOfAnUnknownEvent", func(t *testing.T) {
		_, err := port.EventStock(ctx, uuid.New())
		wantErr(t, err, inventory.ErrEventNotFound, "an unknown event")
	})

	t.Run("CheckoutHold", func(t *testing.T) {
		tt := fx.TicketType(t, 10)
		h := fx.Hold(t, tt, 1)
		order := uuid.New()
		until := time.Now().Add(10 * time.Minute).Truncate(time.Millisecond)
		got, err := port.CheckoutHold(ctx, h.ID, order, until)
		if err != nil || got.OrderID != order || !got.ExpiresAt.Equal(until) {
			t.Fatalf("checkout: %+v, %v; want order %s until %s", got, err, order, until)
		}
		if _, err := port.CheckoutHold(ctx, h.ID, order, until); err != nil {
			t.Fatalf("checkout again for the same order: %v", err)
		}
		_, err = port.CheckoutHold(ctx, h.ID, uuid.New(), until.Add(time.Hour))
		wantErr(t, err, inventory.ErrHoldOrdered, "checkout for another order")
		_, err = port.CheckoutHold(ctx, inventory.NewHoldID(tt), order, until)
		wantErr(t, err, inventory.ErrHoldNotFound, "checkout of an unknown hold")
		if err := port.ReleaseHold(ctx, h.ID); err != nil {
			t.Fatalf("release: %v", err)
		}
		other := fx.Hold(t, tt, 1)
		if err := port.ReleaseHold(ctx, other.ID); err != nil {
			t.Fatalf("release: %v", err)
		}
		_, err = port.CheckoutHold(ctx, other.ID, uuid.New(), until)
		wantErr(t, err, inventory.ErrHoldNotLive, "checkout of a released hold")
	})

	t.Run("CommitHoldOnce", func(t *testing.T) {
		tt := fx.TicketType(t, 10)
		h := fx.Hold(t, tt, 3)
		order := uuid.New()
		if _, err := port.CheckoutHold(ctx, h.ID, order, time.Now().Add(10*time.Minute)); err != nil {
			t.Fatalf("checkout: %v", err)
		}
		if sold, err := port.SoldTickets(ctx, h.ID); err != nil || len(sold) != 0 {
			t.Fatalf("tickets of an unsold hold: %v, %v", sold, err)
		}
		tickets, err := port.CommitHold(ctx, h, order)
		if err != nil || len(tickets) != 3 {
			t.Fatalf("commit: %d tickets, %v", len(tickets), err)
		}
		seen := map[uuid.UUID]bool{}
		for i, tk := range tickets {
			if tk.HoldID != h.ID || tk.OrderID != order || tk.TicketTypeID != tt || tk.CustomerID != h.CustomerID || tk.Seq != i+1 || seen[tk.ID] {
				t.Fatalf("ticket %d: %+v", i, tk)
			}
			seen[tk.ID] = true
		}
		again, err := port.CommitHold(ctx, h, order)
		if err != nil || len(again) != 3 {
			t.Fatalf("commit again: %d tickets, %v", len(again), err)
		}
		for _, tk := range again {
			if !seen[tk.ID] {
				t.Fatalf("the repeated commit made a new ticket %s", tk.ID)
			}
		}
		sold, err := port.SoldTickets(ctx, h.ID)
		if err != nil || len(sold) != 3 || !seen[sold[0].ID] {
			t.Fatalf("sold tickets: %+v, %v", sold, err)
		}
		if got, err := port.GetHold(ctx, h.ID); err != nil || got.Status != inventory.HoldCommitted {
			t.Fatalf("the hold after its sale: %+v, %v", got, err)
		}
	})

	t.Run("CommitLapsedHoldWhenSoldOut", func(t *testing.T) {
		tt := fx.TicketType(t, 2)
		lapsed := fx.Hold(t, tt, 2)
		if err := port.ReleaseHold(ctx, lapsed.ID); err != nil {
			t.Fatalf("release: %v", err)
		}
		if err := port.ReleaseHold(ctx, lapsed.ID); err != nil {
			t.Fatalf("release twice: %v", err)
		}
		if got, err := port.GetHold(ctx, lapsed.ID); err != nil || got.Status != inventory.HoldReleased {
			t.Fatalf("a released hold: %+v, %v", got, err)
		}
		fx.Hold(t, tt, 2) // someone else takes the tickets
		_, err := port.CommitHold(ctx, lapsed, uuid.New())
		wantErr(t, err, inventory.ErrSoldOut, "commit of a lapsed hold whose tickets are gone")
	})
}
