package inventory_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/inventory"
)

func ptr[T any](v T) *T { return &v }

// room turns on a waiting room for the event: rate a minute, open now.
func (e *env) room(t *testing.T, organizer, event uuid.UUID, rate int) inventory.RoomView {
	t.Helper()
	v, err := e.mod.SetRoom(context.Background(), organizer, event, inventory.RoomInput{RatePerMinute: ptr(rate)}, true)
	if err != nil {
		t.Fatalf("set room: %v", err)
	}
	return v
}

// tick advances the clock by one admission tick and admits.
func (e *env) tick(t *testing.T) {
	t.Helper()
	e.clk.Advance(e.cfg.QueueTick)
	if err := e.mod.Admit(context.Background()); err != nil {
		t.Fatalf("admit: %v", err)
	}
}

func (e *env) join(t *testing.T, customer, event uuid.UUID) inventory.QueueView {
	t.Helper()
	v, err := e.mod.JoinQueue(context.Background(), customer, event, "")
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	return v
}

// admitted ticks until the customer is admitted and returns their pass.
func (e *env) admitted(t *testing.T, customer, event uuid.UUID) string {
	t.Helper()
	for range 1000 {
		v, err := e.mod.QueueEntry(context.Background(), customer, event)
		if err != nil {
			t.Fatalf("queue entry: %v", err)
		}
		if v.Entry.Status == inventory.EntryAdmitted {
			if v.Pass == "" || v.Wait != 0 {
				t.Fatalf("admitted without a pass: %+v", v)
			}
			return v.Pass
		}
		e.tick(t)
	}
	t.Fatalf("customer never admitted")
	return ""
}

func TestWaitingRoomSettings(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, e *env) {
		ctx := context.Background()
		organizer, ev, _ := e.sale(t, 10)
		set := func(in inventory.RoomInput, replace bool) (inventory.RoomView, error) {
			return e.mod.SetRoom(ctx, organizer, ev.ID, in, replace)
		}
		_, err := set(inventory.RoomInput{RatePerMinute: ptr(60)}, false)
		wantErr(t, err, inventory.ErrRoomNotFound, "PATCH before the room exists")
		_, err = set(inventory.RoomInput{}, true)
		wantInvalid(t, err, "admission_rate_per_minute", "neither a rate nor a cap")
		_, err = set(inventory.RoomInput{RatePerMinute: ptr(-1)}, true)
		wantInvalid(t, err, "admission_rate_per_minute", "negative rate")
		_, err = set(inventory.RoomInput{MaxShoppers: ptr(-5)}, true)
		wantInvalid(t, err, "max_shoppers", "negative cap")
		_, err = set(inventory.RoomInput{RatePerMinute: ptr(60), PassLifetime: ptr(10 * time.Second)}, true)
		wantInvalid(t, err, "pass_lifetime_seconds", "a pass of ten seconds")
		_, err = set(inventory.RoomInput{RatePerMinute: ptr(60), PassLifetime: ptr(48 * time.Hour)}, true)
		wantInvalid(t, err, "pass_lifetime_seconds", "a pass of two days")
		_, err = e.mod.SetRoom(ctx, uuid.New(), ev.ID, inventory.RoomInput{RatePerMinute: ptr(60)}, true)
		wantErr(t, err, inventory.ErrNotOwner, "another organizer's event")
		_, err = e.mod.SetRoom(ctx, organizer, uuid.New(), inventory.RoomInput{RatePerMinute: ptr(60)}, true)
		wantErr(t, err, inventory.ErrEventNotFound, "an unknown event")

		v, err := set(inventory.RoomInput{RatePerMinute: ptr(120)}, true)
		if err != nil {
			t.Fatal(err)
		}
		r := v.Room
		if r.RatePerMinute != 120 || r.MaxShoppers != 0 || r.PassLifetime != 10*time.Minute || r.Paused || r.Closed ||
			r.OpensAt.After(e.clk.Now()) || len(r.Secret) != 32 {
			t.Fatalf("a new room with defaults: %+v", r)
		}
		// PATCH changes what it names; the secret stays.
		v, err = set(inventory.RoomInput{MaxShoppers: ptr(50), Paused: ptr(true)}, false)
		if err != nil || v.Room.RatePerMinute != 120 || v.Room.MaxShoppers != 50 || !v.Room.Paused || string(v.Room.Secret) != string(r.Secret) {
			t.Fatalf("patched room: %+v, %v", v.Room, err)
		}
		if v.DrainIn != -1 {
			t.Fatalf("a paused room estimates a drain of %s", v.DrainIn)
		}
		got, err := e.mod.RoomFor(ctx, organizer, ev.ID)
		if err != nil || got.Room.Version != v.Room.Version {
			t.Fatalf("room as read: %+v, %v", got.Room, err)
		}
		_, err = e.mod.RoomFor(ctx, uuid.New(), ev.ID)
		wantErr(t, err, inventory.ErrNotOwner, "another organizer reading the room")

		// Closing, then opening again: a new secret, so old passes are worthless.
		if err := e.mod.CloseRoom(ctx, organizer, ev.ID); err != nil {
			t.Fatal(err)
		}
		wantErr(t, e.mod.CloseRoom(ctx, organizer, ev.ID), inventory.ErrRoomNotFound, "closing a closed room")
		_, err = e.mod.RoomFor(ctx, organizer, ev.ID)
		wantErr(t, err, inventory.ErrRoomNotFound, "reading a closed room")
		_, err = set(inventory.RoomInput{RatePerMinute: ptr(60)}, false)
		wantErr(t, err, inventory.ErrRoomNotFound, "PATCH of a closed room")
		v, err = set(inventory.RoomInput{RatePerMinute: ptr(60)}, true)
		if err != nil || string(v.Room.Secret) == string(r.Secret) || v.Room.Paused || v.Room.MaxShoppers != 0 {
			t.Fatalf("reopened room: %+v, %v", v.Room, err)
		}
	})
}

func TestWaitingRoomGuardsHolds(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, e *env) {
		ctx := context.Background()
		organizer, ev, tt := e.sale(t, 20)
		otherOrganizer, other, otherTT := e.sale(t, 20)
		e.room(t, organizer, ev.ID, 600)
		alice, bob, carol := uuid.New(), uuid.New(), uuid.New()

		_, _, err := e.mod.Hold(ctx, alice, tt.ID, 1, "")
		wantErr(t, err, inventory.ErrPassRequired, "hold without a pass")
		_, err = e.mod.JoinQueue(ctx, alice, other.ID, "")
		wantErr(t, err, inventory.ErrRoomNotFound, "joining an event without a room")
		// A ticket type made after the room opened is guarded too.
		late := e.ticketType(t, organizer, ev.ID, 5)
		_, _, err = e.mod.Hold(ctx, alice, late.ID, 1, "")
		wantErr(t, err, inventory.ErrPassRequired, "hold on a ticket type added later")

		a := e.join(t, alice, ev.ID)
		b := e.join(t, bob, ev.ID)
		if a.Entry.Place != 1 || b.Entry.Place != 2 || a.Entry.Status != inventory.EntryWaiting {
			t.Fatalf("places: alice %+v, bob %+v", a.Entry, b.Entry)
		}
		if again := e.join(t, alice, ev.ID); again.Entry.Place != 1 || again.Entry.Created {
			t.Fatalf("alice asking again: %+v", again.Entry)
		}
		if b.Wait <= 0 {
			t.Fatalf("bob waits with no estimate: %+v", b)
		}
		pass := e.admitted(t, alice, ev.ID)
		bobPass := e.admitted(t, bob, ev.ID)

		h, created, err := e.mod.HoldWithPass(ctx, alice, tt.ID, 2, "", pass)
		if err != nil || !created {
			t.Fatalf("hold with a pass: %v", err)
		}
		_, _, err = e.mod.HoldWithPass(ctx, carol, tt.ID, 1, "", pass)
		wantErr(t, err, inventory.ErrPassInvalid, "alice's pass presented by carol")
		_, _, err = e.mod.HoldWithPass(ctx, alice, tt.ID, 1, "", "not.a.pass")
		wantErr(t, err, inventory.ErrPassInvalid, "garbage for a pass")
		_, _, err = e.mod.HoldWithPass(ctx, alice, tt.ID, 1, "", pass[:len(pass)-4]+"AAAA")
		wantErr(t, err, inventory.ErrPassInvalid, "a pass with another signature")
		forged := strings.Split(pass, ".")
		_, _, err = e.mod.HoldWithPass(ctx, alice, tt.ID, 1, "", forged[0]+"."+forged[1]+".")
		wantErr(t, err, inventory.ErrPassInvalid, "a pass without a signature")

		// Another event with a room of its own: alice's pass is for the first.
		e.room(t, otherOrganizer, other.ID, 600)
		_, _, err = e.mod.HoldWithPass(ctx, alice, otherTT.ID, 1, "", pass)
		wantErr(t, err, inventory.ErrPassInvalid, "a pass for another event")

		// Alice buys: her pass ends with the order.
		if _, err := e.mod.CheckoutHold(ctx, h.ID, uuid.New(), e.clk.Now().Add(10*time.Minute)); err != nil {
			t.Fatal(err)
		}
		if _, err := e.mod.CommitHold(ctx, h, uuid.New()); err != nil {
			t.Fatal(err)
		}
		_, _, err = e.mod.HoldWithPass(ctx, alice, tt.ID, 1, "", pass)
		wantErr(t, err, inventory.ErrPassExpired, "a pass after its order")
		if v := e.join(t, alice, ev.ID); v.Entry.Status != inventory.EntryDone || v.Pass != "" {
			t.Fatalf("alice after buying: %+v", v)
		}

		// Bob leaves: his pass ends at once.
		if err := e.mod.LeaveQueue(ctx, bob, ev.ID); err != nil {
			t.Fatal(err)
		}
		_, _, err = e.mod.HoldWithPass(ctx, bob, tt.ID, 1, "", bobPass)
		wantErr(t, err, inventory.ErrPassExpired, "a pass after leaving")

		// Carol's pass runs out with its lifetime.
		e.join(t, carol, ev.ID)
		carolPass := e.admitted(t, carol, ev.ID)
		e.clk.Advance(10*time.Minute + time.Second)
		_, _, err = e.mod.HoldWithPass(ctx, carol, tt.ID, 1, "", carolPass)
		wantErr(t, err, inventory.ErrPassExpired, "a pass past its lifetime")
		if v, err := e.mod.QueueEntry(ctx, carol, ev.ID); err != nil || v.Entry.Status != inventory.EntryExpired || v.Pass != "" {
			t.Fatalf("carol after her pass ran out: %+v, %v", v, err)
		}

		// The organizer closes the room: no pass needed, and a pass is no hindrance.
		if err := e.mod.CloseRoom(ctx, organizer, ev.ID); err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.mod.Hold(ctx, uuid.New(), tt.ID, 1, ""); err != nil {
			t.Fatalf("hold after the room closed: %v", err)
		}
		if _, _, err := e.mod.HoldWithPass(ctx, uuid.New(), tt.ID, 1, "", carolPass); err != nil {
			t.Fatalf("hold with a stale pass after the room closed: %v", err)
		}
		_, err = e.mod.QueueEntry(ctx, carol, ev.ID)
		wantErr(t, err, inventory.ErrRoomNotFound, "queue of a closed room")
	})
}

// TestWaitingRoomSurvivesFlush: when Redis loses everything, the room's settings (in the store)
// still guard the holds, and passes already given (signed) still buy; the queue starts again.
func TestWaitingRoomSurvivesFlush(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, e *env) {
		ctx := context.Background()
		organizer, ev, tt := e.sale(t, 20)
		e.room(t, organizer, ev.ID, 600)
		alice, bob := uuid.New(), uuid.New()
		e.join(t, alice, ev.ID)
		e.join(t, bob, ev.ID)
		pass := e.admitted(t, alice, ev.ID)
		e.flush()
		_, _, err := e.mod.Hold(ctx, bob, tt.ID, 1, "")
		wantErr(t, err, inventory.ErrPassRequired, "hold without a pass after a flush")
		if _, _, err := e.mod.HoldWithPass(ctx, alice, tt.ID, 1, "", pass); err != nil {
			t.Fatalf("hold with a pass given before the flush: %v", err)
		}
	})
}

func TestWaitingRoomAddressCap(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, e *env) {
		ctx := context.Background()
		organizer, ev, _ := e.sale(t, 20)
		e.room(t, organizer, ev.ID, 600)
		for i := range e.cfg.QueuePerAddress {
			if _, err := e.mod.JoinQueue(ctx, uuid.New(), ev.ID, "198.51.100.7"); err != nil {
				t.Fatalf("place %d from one address: %v", i+1, err)
			}
		}
		_, err := e.mod.JoinQueue(ctx, uuid.New(), ev.ID, "198.51.100.7")
		wantErr(t, err, inventory.ErrAddressPlaces, "one place too many from one address")
	})
}
