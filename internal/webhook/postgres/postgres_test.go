package postgres_test

import (
	"context"
	"testing"

	"github.com/onsale-dev/onsale/internal/platform/logging"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
	"github.com/onsale-dev/onsale/internal/webhook"
	"github.com/onsale-dev/onsale/internal/webhook/postgres"
	"github.com/onsale-dev/onsale/internal/webhook/webhooktest"
)

func TestStore(t *testing.T) {
	t.Parallel()
	// A database per subtest: a claim takes every due delivery of its store.
	webhooktest.RunStore(t, func(t *testing.T) webhook.Store {
		pool := testenv.Postgres(t)
		ctx := context.Background()
		if err := postgres.Migrate(ctx, pool, logging.Discard()); err != nil {
			t.Fatalf("migrate: %v", err)
		}
		// Migrating again (another replica starting, a restart) is a no-op.
		if err := postgres.Migrate(ctx, pool, logging.Discard()); err != nil {
			t.Fatalf("migrate twice: %v", err)
		}
		return postgres.NewStore(pool)
	})
}
