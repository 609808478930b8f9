package postgres_test

import (
	"context"
	"testing"

	"github.com/onsale-dev/onsale/internal/payment"
	"github.com/onsale-dev/onsale/internal/payment/paymenttest"
	"github.com/onsale-dev/onsale/internal/payment/postgres"
	"github.com/onsale-dev/onsale/internal/platform/logging"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

func TestStore(t *testing.T) {
	t.Parallel()
	pool := testenv.Postgres(t)
	ctx := context.Background()
	if err := postgres.Migrate(ctx, pool, logging.Discard()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	// Migrating again (another replica starting, a restart) is a no-op.
	if err := postgres.Migrate(ctx, pool, logging.Discard()); err != nil {
		t.Fatalf("migrate twice: %v", err)
	}
	var tables int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = $1`, postgres.Schema).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables < 5 {
		t.Fatalf("schema %s has %d tables, want the module's 5 and its version table", postgres.Schema, tables)
	}
	s := postgres.NewStore(pool)
	paymenttest.RunOrderStore(t, func(*testing.T) payment.OrderStore { return s })
}

// TestStorePgBouncer: the order store's suite through PgBouncer in transaction pooling (each
// transaction may get another server session), migrated through a direct connection.
func TestStorePgBouncer(t *testing.T) {
	t.Parallel()
	pool, direct := testenv.PgBouncer(t)
	if err := postgres.Migrate(context.Background(), direct, logging.Discard()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	s := postgres.NewStore(pool)
	paymenttest.RunOrderStore(t, func(*testing.T) payment.OrderStore { return s })
}
