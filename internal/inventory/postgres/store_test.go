package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/inventory/postgres"
	"github.com/onsale-dev/onsale/internal/inventory/storetest"
	"github.com/onsale-dev/onsale/internal/platform/logging"
	"github.com/onsale-dev/onsale/internal/platform/problem"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

func TestStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) inventory.Store {
		pool := testenv.Postgres(t)
		if err := postgres.Migrate(context.Background(), pool, logging.Discard()); err != nil {
			t.Fatalf("migrate: %v", err)
		}
		return postgres.NewStore(pool)
	})
}

// TestStorePgBouncer: the store's suite through PgBouncer in transaction pooling (each
// transaction may get another server session), migrated through a direct connection.
func TestStorePgBouncer(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) inventory.Store {
		pool, direct := testenv.PgBouncer(t)
		if err := postgres.Migrate(context.Background(), direct, logging.Discard()); err != nil {
			t.Fatalf("migrate: %v", err)
		}
		return postgres.NewStore(pool)
	})
}

// TestMigrateIdempotent runs the migrations twice and then uses the schema: a replica starting
// against an up-to-date database must neither fail nor change anything.
func TestMigrateIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testenv.Postgres(t)
	for i := range 3 {
		if err := postgres.Migrate(ctx, pool, logging.Discard()); err != nil {
			t.Fatalf("migrate, run %d: %v", i+1, err)
		}
	}
	var versions int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM inventory.goose_db_version WHERE version_id > 0`).Scan(&versions); err != nil {
		t.Fatalf("read migration versions: %v", err)
	}
	files, err := filepath.Glob("migrations/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("migration files: %v, %v", files, err)
	}
	if versions != len(files) {
		t.Fatalf("%d migrations recorded after three runs, want %d", versions, len(files))
	}
	var tables int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = $1
		AND table_name IN ('events', 'ticket_types', 'tickets', 'waiting_rooms')`, postgres.Schema).Scan(&tables); err != nil || tables != 4 {
		t.Fatalf("inventory tables: %d, %v", tables, err)
	}
}

// BenchmarkCommit measures one batch of sales on one ticket type, the unit of work the committer
// serializes: its time bounds how fast a hot ticket type can sell.
func BenchmarkCommit(b *testing.B) {
	ctx := context.Background()
	pool := testenv.Postgres(b)
	if err := postgres.Migrate(ctx, pool, logging.Discard()); err != nil {
		b.Fatalf("migrate: %v", err)
	}
	s := postgres.NewStore(pool)
	now := time.Now().UTC().Truncate(time.Microsecond)
	e := inventory.Event{ID: uuid.New(), OrganizerID: uuid.New(), Name: "bench", Venue: "hall", StartsAt: now.Add(24 * time.Hour),
		Version: 1, CreatedAt: now, UpdatedAt: now}
	if err := s.CreateEvent(ctx, e); err != nil {
		b.Fatalf("create event: %v", err)
	}
	for _, size := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			tt := inventory.TicketType{ID: uuid.New(), EventID: e.ID, Name: "bench", PriceCents: 100, Currency: "EUR",
				Capacity: 10_000_000, MaxPerOrder: 1, CreatedAt: now, UpdatedAt: now}
			if err := s.CreateTicketType(ctx, tt); err != nil {
				b.Fatalf("create ticket type: %v", err)
			}
			reqs := make([]inventory.CommitRequest, size)
			for b.Loop() {
				for i := range reqs {
					reqs[i] = inventory.CommitRequest{OrderID: uuid.New(), Now: now, Hold: inventory.Hold{
						ID: inventory.NewHoldID(tt.ID), TicketTypeID: tt.ID, CustomerID: uuid.New(), Quantity: 1}}
				}
				for _, r := range s.Commit(ctx, reqs) {
					if r.Err != nil {
						b.Fatalf("commit: %v", r.Err)
					}
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "sales/s")
		})
	}
}

// TestTextTheDatabaseCannotStore: a NUL that got past validation is the client's error (a 422
// problem), never an outage (PostgreSQL answers it with SQLSTATE 22021).
func TestTextTheDatabaseCannotStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testenv.Postgres(t)
	if err := postgres.Migrate(ctx, pool, logging.Discard()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	s := postgres.NewStore(pool)
	now := time.Now().UTC()
	ev := inventory.Event{ID: uuid.New(), OrganizerID: uuid.New(), Name: "a\x00b", Venue: "Hall", StartsAt: now.Add(time.Hour),
		Version: 1, CreatedAt: now, UpdatedAt: now}
	if err := s.CreateEvent(ctx, ev); !errors.Is(err, problem.ErrValidation) {
		t.Fatalf("create an event with a NUL in its name: %v; want a validation problem", err)
	}
	ev.Name = "Fine"
	if err := s.CreateEvent(ctx, ev); err != nil {
		t.Fatal(err)
	}
	_, err := s.UpdateEvent(ctx, ev.ID, func(e *inventory.Event) error { e.Venue = "\x00"; return nil })
	if !errors.Is(err, problem.ErrValidation) {
		t.Fatalf("update with a NUL: %v; want a validation problem", err)
	}
	tt := inventory.TicketType{ID: uuid.New(), EventID: ev.ID, Name: "GA\x00", PriceCents: 100, Currency: "EUR", Capacity: 1,
		MaxPerOrder: 1, CreatedAt: now, UpdatedAt: now}
	if err := s.CreateTicketType(ctx, tt); !errors.Is(err, problem.ErrValidation) {
		t.Fatalf("create a ticket type with a NUL: %v; want a validation problem", err)
	}
}
