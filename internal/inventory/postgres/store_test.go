package postgres_test

import (
	"context"
	"testing"

	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/inventory/postgres"
	"github.com/onsale-dev/onsale/internal/inventory/storetest"
	"github.com/onsale-dev/onsale/internal/platform/logging"
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
	if versions != 1 {
		t.Fatalf("%d migrations recorded after three runs, want 1", versions)
	}
	var tables int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = $1
		AND table_name IN ('events', 'ticket_types', 'tickets')`, postgres.Schema).Scan(&tables); err != nil || tables != 3 {
		t.Fatalf("inventory tables: %d, %v", tables, err)
	}
}
