package inventory_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/inventory/memory"
	invredis "github.com/onsale-dev/onsale/internal/inventory/redis"
	"github.com/onsale-dev/onsale/internal/platform/clock"
	"github.com/onsale-dev/onsale/internal/platform/logging"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

// countingHolds counts the hold requests that reach the shared store.
type countingHolds struct {
	inventory.HoldStore
	holds atomic.Int64
}

func (c *countingHolds) Hold(ctx context.Context, req inventory.HoldRequest) (inventory.Hold, bool, error) {
	c.holds.Add(1)
	return c.HoldStore.Hold(ctx, req)
}

// soldOutReplica is one replica's module over the shared adapters, and what reached the store.
type soldOutReplica struct {
	mod   *inventory.Module
	store *countingHolds
}

// soldOutReplicas are two replicas on one set of shared adapters (memory, or Redis and
// PostgreSQL), on one fake clock, each remembering "sold out" for bound.
func soldOutReplicas(t *testing.T, backend string, bound time.Duration) ([2]soldOutReplica, *clock.Fake) {
	t.Helper()
	cfg := testConfig()
	cfg.SoldOutMemory = bound
	var d inventory.Deps
	switch backend {
	case "memory":
		d = inventory.Deps{Store: memory.NewStore(), Holds: memory.NewHolds(cfg.HoldRecordKeep), Customers: memory.NewCustomerHolds(), Queue: memory.NewQueue()}
	default:
		c, prefix := testenv.Redis(t)
		d = inventory.Deps{Store: migratedStore(t, testenv.PostgresURL(t)), Holds: invredis.NewHolds(c, prefix, cfg.HoldRecordKeep),
			Customers: invredis.NewCustomerHolds(c, prefix), Queue: invredis.NewQueue(c, prefix)}
	}
	clk := startClock()
	d.Clock, d.Log, d.Meter = clk, logging.Discard(), noop.NewMeterProvider().Meter("inventory-test")
	var rs [2]soldOutReplica
	for i := range rs {
		rd := d
		rs[i].store = &countingHolds{HoldStore: d.Holds}
		rd.Holds = rs[i].store
		mod, err := inventory.New(cfg, rd)
		if err != nil {
			t.Fatalf("new module: %v", err)
		}
		rs[i].mod = mod
	}
	return rs, clk
}

// TestSoldOutAnsweredLocally: once the store has said "none left", a replica answers "sold out"
// itself; tickets that come back through it are offered again at once, and tickets that come
// back through another replica or by a hold's expiry at most the bound later. Never a ticket
// twice: the memory only refuses.
func TestSoldOutAnsweredLocally(t *testing.T) {
	t.Parallel()
	const bound = 100 * time.Millisecond
	for _, backend := range []string{"memory", "redis+postgres"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			rs, clk := soldOutReplicas(t, backend, bound)
			a, b := rs[0], rs[1]
			ctx := context.Background()
			organizer := uuid.New()
			ev, err := a.mod.CreateEvent(ctx, organizer, inventory.EventInput{Name: "Sold Out Live", Venue: "Hall", StartsAt: clk.Now().Add(720 * time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			tt, err := a.mod.CreateTicketType(ctx, organizer, ev.ID, inventory.TicketTypeInput{Name: "GA", PriceCents: 100, Currency: "EUR", Capacity: 1, MaxPerOrder: 4})
			if err != nil {
				t.Fatal(err)
			}
			hold := func(r soldOutReplica, customer uuid.UUID, key string) (inventory.Hold, bool, error, int64) {
				t.Helper()
				before := r.store.holds.Load()
				h, created, err := r.mod.Hold(ctx, customer, tt.ID, 1, key)
				return h, created, err, r.store.holds.Load() - before
			}
			wantSoldOut := func(what string, r soldOutReplica, asked int64) {
				t.Helper()
				_, _, err, n := hold(r, uuid.New(), "")
				if !errors.Is(err, inventory.ErrSoldOut) {
					t.Fatalf("%s: %v, want sold out", what, err)
				}
				if n != asked {
					t.Fatalf("%s: the store was asked %d times, want %d", what, n, asked)
				}
			}
			wantHeld := func(what string, r soldOutReplica, customer uuid.UUID) inventory.Hold {
				t.Helper()
				h, created, err, _ := hold(r, customer, "")
				if err != nil || !created {
					t.Fatalf("%s: created %v, %v; want a hold", what, created, err)
				}
				return h
			}

			first := uuid.New()
			h1, created, err, _ := hold(a, first, "first-try")
			if err != nil || !created {
				t.Fatalf("the first hold: %v", err)
			}
			wantSoldOut("A learns from the store", a, 1)
			wantSoldOut("A answers itself", a, 0)
			wantSoldOut("B learns from the store", b, 1)
			wantSoldOut("B answers itself", b, 0)

			// A retry with an Idempotency-Key asks the store: it is the replay of a hold.
			if h, created, err, n := hold(a, first, "first-try"); err != nil || created || h.ID != h1.ID || n != 1 {
				t.Fatalf("replay while sold out: %s created %v %v asked %d; want the first hold again, from the store", h.ID, created, err, n)
			}

			// Released through A: A offers it at once; B within the bound.
			if err := a.mod.ReleaseFor(ctx, first, h1.ID); err != nil {
				t.Fatal(err)
			}
			again := uuid.New()
			h2 := wantHeld("A at once after its own release", a, again)
			wantSoldOut("B within the bound after A's release", b, 0)
			if err := a.mod.ReleaseFor(ctx, again, h2.ID); err != nil {
				t.Fatal(err)
			}
			clk.Advance(bound)
			second := wantHeld("B once the bound ran out", b, uuid.New())

			// Sold out again; the hold expires: at most the bound later it is offered again.
			wantSoldOut("A learns again", a, 1)
			clk.Set(second.ExpiresAt.Add(-bound / 2))
			wantSoldOut("A, just before the hold expires", a, 1)
			clk.Set(second.ExpiresAt.Add(bound / 4))
			wantSoldOut("A, just after the expiry, within the bound", a, 0)
			clk.Set(second.ExpiresAt.Add(bound / 2))
			wantHeld("A once the bound ran out", a, uuid.New())

			// More capacity through B: B offers it at once.
			wantSoldOut("B learns again", b, 1)
			two := 2
			if _, err := b.mod.UpdateTicketType(ctx, organizer, ev.ID, tt.ID, inventory.TicketTypePatch{Capacity: &two}); err != nil {
				t.Fatal(err)
			}
			wantHeld("B after raising the capacity", b, uuid.New())
			wantSoldOut("A after the second ticket went", a, 1)
		})
	}
}
