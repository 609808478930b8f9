package inventory_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/rueidis"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/onsale-dev/onsale/internal/inventory"
	invredis "github.com/onsale-dev/onsale/internal/inventory/redis"
	"github.com/onsale-dev/onsale/internal/platform/clock"
	"github.com/onsale-dev/onsale/internal/platform/logging"
	"github.com/onsale-dev/onsale/internal/platform/redisclient"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

// replica is one server process's inventory module: its own Redis client (and so its own
// client-side cache), on the shared Redis and database.
type replica struct {
	mod   *inventory.Module
	redis rueidis.Client
}

func newReplicas(t *testing.T, n int) (replicas []replica, prefix string) {
	t.Helper()
	_, prefix = testenv.Redis(t) // skips or fails without Redis; deletes the prefix's keys at the end
	url := testenv.PostgresURL(t)
	migratedStore(t, url)
	cfg := testConfig()
	for range n {
		c, err := redisclient.Open(testenv.RedisURL())
		if err != nil {
			t.Fatalf("open redis: %v", err)
		}
		t.Cleanup(c.Close)
		mod, err := inventory.New(cfg, inventory.Deps{
			Store:   migratedStore(t, url), // idempotent: a replica starting on a migrated database
			Holds:   invredis.NewHolds(c, prefix, cfg.HoldRecordKeep),
			Catalog: invredis.NewCatalog(c, prefix, cfg.CatalogCacheTTL),
			Clock:   clock.System{}, Log: logging.Discard(), Meter: noop.NewMeterProvider().Meter("inventory-test"),
		})
		if err != nil {
			t.Fatalf("new module: %v", err)
		}
		replicas = append(replicas, replica{mod: mod, redis: c})
	}
	return replicas, prefix
}

// TestCatalogueCoherentAcrossReplicas: B has the catalogue in its process memory, A renames the
// event, and B shows the new name within 100 ms of A's write returning.
func TestCatalogueCoherentAcrossReplicas(t *testing.T) {
	t.Parallel()
	rs, prefix := newReplicas(t, 2)
	a, b := rs[0], rs[1]
	ctx := context.Background()
	org := uuid.New()
	ev, err := a.mod.CreateEvent(ctx, org, inventory.EventInput{Name: "Opening night", Venue: "Hall", StartsAt: time.Now().Add(24 * time.Hour)})
	if err != nil {
		t.Fatalf("create event: %v", err)
	}
	if _, err := a.mod.CreateTicketType(ctx, org, ev.ID, inventory.TicketTypeInput{
		Name: "Stalls", PriceCents: 100, Currency: "EUR", Capacity: 10, MaxPerOrder: 4}); err != nil {
		t.Fatalf("create ticket type: %v", err)
	}
	key := prefix + "inv:catalogue:{" + ev.ID.String() + "}"
	const budget = 100 * time.Millisecond
	var slowest time.Duration
	for i := range 10 {
		// B reads: the entry is then in B's process memory.
		for range 2 {
			if _, err := b.mod.Catalogue(ctx, ev.ID); err != nil {
				t.Fatalf("B reads: %v", err)
			}
		}
		if r := b.redis.DoCache(ctx, b.redis.B().Get().Key(key).Cache(), time.Hour); r.Error() != nil || !r.IsCacheHit() {
			t.Fatalf("round %d: B's copy is not in its client-side cache (err %v)", i, r.Error())
		}

		name := fmt.Sprintf("Opening night, take %d", i+1)
		if _, err := a.mod.UpdateEvent(ctx, org, ev.ID, inventory.EventPatch{Name: &name}); err != nil {
			t.Fatalf("A renames: %v", err)
		}
		took := seenWithin(t, budget, func() bool {
			c, err := b.mod.Catalogue(ctx, ev.ID)
			return err == nil && c.Event.Name == name
		}, fmt.Sprintf("round %d: the rename", i))
		slowest = max(slowest, took)
	}
	t.Logf("slowest rename seen by the other replica after %s", slowest)

	// A new ticket type reaches B the same way.
	tt, err := a.mod.CreateTicketType(ctx, org, ev.ID, inventory.TicketTypeInput{
		Name: "Circle", PriceCents: 200, Currency: "EUR", Capacity: 5, MaxPerOrder: 2})
	if err != nil {
		t.Fatalf("create ticket type: %v", err)
	}
	seenWithin(t, budget, func() bool {
		c, err := b.mod.Catalogue(ctx, ev.ID)
		return err == nil && len(c.TicketTypes) == 2 && c.TicketTypes[1].ID == tt.ID
	}, "the new ticket type")
}

// seenWithin polls seen from now (just after a write returned) and fails unless it holds within
// budget; it returns how long that took.
func seenWithin(t *testing.T, budget time.Duration, seen func() bool, what string) time.Duration {
	t.Helper()
	written := time.Now()
	var took time.Duration
	testenv.Eventually(t, budget, func() bool {
		ok := seen()
		took = time.Since(written)
		return ok
	}, "the other replica does not show %s after %s", what, budget)
	if took > budget {
		t.Fatalf("the other replica showed %s after %s, over %s", what, took, budget)
	}
	return took
}

// TestCatalogueReadsOwnWrites: the replica that made a change shows it on its very next read,
// although Redis's invalidation of its own local copy may still be on the way.
func TestCatalogueReadsOwnWrites(t *testing.T) {
	t.Parallel()
	rs, _ := newReplicas(t, 1)
	a := rs[0]
	ctx := context.Background()
	org := uuid.New()
	ev, err := a.mod.CreateEvent(ctx, org, inventory.EventInput{Name: "Show", Venue: "Hall", StartsAt: time.Now().Add(24 * time.Hour)})
	if err != nil {
		t.Fatalf("create event: %v", err)
	}
	for i := range 100 {
		if _, err := a.mod.Catalogue(ctx, ev.ID); err != nil { // warm the local copy
			t.Fatalf("read: %v", err)
		}
		name := fmt.Sprint("Show ", i)
		if _, err := a.mod.UpdateEvent(ctx, org, ev.ID, inventory.EventPatch{Name: &name}); err != nil {
			t.Fatalf("rename: %v", err)
		}
		c, err := a.mod.Catalogue(ctx, ev.ID)
		if err != nil || c.Event.Name != name {
			t.Fatalf("round %d: read after own rename shows %q, %v; want %q", i, c.Event.Name, err, name)
		}
	}
}
