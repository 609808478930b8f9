package inventory_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/inventory/memory"
	"github.com/onsale-dev/onsale/internal/inventory/postgres"
	invredis "github.com/onsale-dev/onsale/internal/inventory/redis"
	"github.com/onsale-dev/onsale/internal/platform/clock"
	"github.com/onsale-dev/onsale/internal/platform/logging"
	"github.com/onsale-dev/onsale/internal/platform/pgpool"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

// testConfig is the module's default configuration, except that availability is not reused
// (tests look at live figures unless they test the cache).
func testConfig() inventory.Config {
	return inventory.Config{
		HoldTTL: 2 * time.Minute, MaxHoldsPerType: 4, MaxHolds: 8, AvailabilityTTL: 0, ClaimTTL: 30 * time.Second,
		CommitBatchMax: 256, HoldRecordKeep: 10 * time.Minute, CatalogCacheTTL: time.Hour, MaxCapacity: 1_000_000,
		QueueTick: 100 * time.Millisecond, QueuePerAddress: 3,
	}
}

// env is one assembled inventory module with its adapters.
type env struct {
	backend string
	cfg     inventory.Config
	mod     *inventory.Module
	store   inventory.Store
	holds   inventory.HoldStore
	queue   inventory.QueueStore
	clk     *clock.Fake
	// flush forgets every hold and cached catalogue, as a Redis restart without persistence.
	flush func()
}

// backends are the adapter sets the module runs on.
var backends = []struct {
	name string
	new  func(t *testing.T, cfg inventory.Config) *env
}{
	{"memory", newMemoryEnv},
	{"redis+postgres", newRealEnv},
}

// forEachBackend runs fn, in parallel, against every backend with cfg changed by tweak (nil keeps
// testConfig). With the services absent the Redis/PostgreSQL run is skipped or fails per
// ONSALE_TEST_REQUIRE_SERVICES.
func forEachBackend(t *testing.T, tweak func(*inventory.Config), fn func(t *testing.T, e *env)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig()
			if tweak != nil {
				tweak(&cfg)
			}
			fn(t, b.new(t, cfg))
		})
	}
}

// startClock is a realistic start for the fake clock, in whole milliseconds as Redis keeps time.
func startClock() *clock.Fake {
	return clock.NewFake(time.Now().UTC().Truncate(time.Millisecond))
}

func assemble(t *testing.T, e *env, d inventory.Deps) {
	t.Helper()
	if err := e.cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	d.Clock, d.Log, d.Meter = e.clk, logging.Discard(), noop.NewMeterProvider().Meter("inventory-test")
	mod, err := inventory.New(e.cfg, d)
	if err != nil {
		t.Fatalf("new module: %v", err)
	}
	e.mod, e.store, e.holds, e.queue = mod, d.Store, d.Holds, d.Queue
}

func newMemoryEnv(t *testing.T, cfg inventory.Config) *env {
	t.Helper()
	holds := memory.NewHolds(cfg.HoldRecordKeep)
	e := &env{backend: "memory", cfg: cfg, clk: startClock(), flush: holds.Flush}
	assemble(t, e, inventory.Deps{Store: memory.NewStore(), Holds: holds, Customers: memory.NewCustomerHolds(), Queue: memory.NewQueue()})
	return e
}

// migratedStore migrates the database at url and returns a store on it.
func migratedStore(t *testing.T, url string) *postgres.Store {
	t.Helper()
	pool := openPool(t, url)
	if err := postgres.Migrate(context.Background(), pool, logging.Discard()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return postgres.NewStore(pool)
}

func newRealEnv(t *testing.T, cfg inventory.Config) *env {
	t.Helper()
	c, prefix := testenv.Redis(t)
	store := migratedStore(t, testenv.PostgresURL(t))
	e := &env{backend: "redis+postgres", cfg: cfg, clk: startClock()}
	e.flush = func() { testenv.DeleteRedisKeys(c, "*"+prefix+"*") }
	assemble(t, e, inventory.Deps{
		Store: store, Holds: invredis.NewHolds(c, prefix, cfg.HoldRecordKeep),
		Customers: invredis.NewCustomerHolds(c, prefix),
		Catalog:   invredis.NewCatalog(c, prefix, cfg.CatalogCacheTTL),
		Queue:     invredis.NewQueue(c, prefix),
	})
	return e
}

// ---- shortcuts ----

func (e *env) event(t *testing.T, organizer uuid.UUID) inventory.Event {
	t.Helper()
	ev, err := e.mod.CreateEvent(context.Background(), organizer, inventory.EventInput{
		Name: "Night at the Opera", Venue: "Royal Albert Hall", StartsAt: e.clk.Now().Add(30 * 24 * time.Hour),
	})
	if err != nil {
		t.Fatalf("create event: %v", err)
	}
	return ev
}

func (e *env) ticketType(t *testing.T, organizer, eventID uuid.UUID, capacity int) inventory.TicketType {
	t.Helper()
	tt, err := e.mod.CreateTicketType(context.Background(), organizer, eventID, inventory.TicketTypeInput{
		Name: "Stalls", PriceCents: 8900, Currency: "GBP", Capacity: capacity, MaxPerOrder: 4,
	})
	if err != nil {
		t.Fatalf("create ticket type: %v", err)
	}
	return tt
}

// sale is an event with one ticket type.
func (e *env) sale(t *testing.T, capacity int) (organizer uuid.UUID, ev inventory.Event, tt inventory.TicketType) {
	t.Helper()
	organizer = uuid.New()
	ev = e.event(t, organizer)
	return organizer, ev, e.ticketType(t, organizer, ev.ID, capacity)
}

func (e *env) hold(t *testing.T, tt uuid.UUID, qty int) inventory.Hold {
	t.Helper()
	h, created, err := e.mod.Hold(context.Background(), uuid.New(), tt, qty, "")
	if err != nil || !created {
		t.Fatalf("hold %d: created %v, %v", qty, created, err)
	}
	return h
}

// stock reads a ticket type's figures the way the availability endpoint does.
func (e *env) stock(t *testing.T, eventID, tt uuid.UUID) inventory.Stock {
	t.Helper()
	ctx := context.Background()
	c, err := e.mod.Catalogue(ctx, eventID)
	if err != nil {
		t.Fatalf("catalogue: %v", err)
	}
	st, err := e.mod.Stock(ctx, c)
	if err != nil {
		t.Fatalf("stock: %v", err)
	}
	for _, s := range st {
		if s.TicketTypeID == tt {
			return s
		}
	}
	t.Fatalf("no stock for %s in %+v", tt, st)
	return inventory.Stock{}
}

func (e *env) wantStock(t *testing.T, eventID, tt uuid.UUID, capacity, sold, held int) {
	t.Helper()
	st := e.stock(t, eventID, tt)
	if st.Capacity != capacity || st.Sold != sold || st.Held != held {
		t.Fatalf("%s: stock capacity %d sold %d held %d; want %d %d %d", e.backend, st.Capacity, st.Sold, st.Held, capacity, sold, held)
	}
}

// storeTicketType reads the truth.
func (e *env) storeTicketType(t *testing.T, id uuid.UUID) inventory.TicketType {
	t.Helper()
	tt, err := e.store.TicketType(context.Background(), id)
	if err != nil {
		t.Fatalf("store ticket type: %v", err)
	}
	return tt
}

func openPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgpool.Open(context.Background(), url, 32)
	if err != nil {
		t.Fatalf("open database: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}
