package postgres_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/auth"
	"github.com/onsale-dev/onsale/internal/auth/authtest"
	authpostgres "github.com/onsale-dev/onsale/internal/auth/postgres"
	"github.com/onsale-dev/onsale/internal/platform/logging"
	"github.com/onsale-dev/onsale/internal/platform/problem"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

func TestUsers(t *testing.T) {
	t.Parallel()
	// One fresh database for the suite: its subtests use emails and ids of their own.
	pool := testenv.Postgres(t)
	if err := authpostgres.Migrate(context.Background(), pool, logging.Discard()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	authtest.UserStore(t, func(*testing.T) auth.UserStore { return authpostgres.NewUsers(pool) })
}

// TestUsersPgBouncer: the user store's suite through PgBouncer in transaction pooling,
// migrated through a direct connection.
func TestUsersPgBouncer(t *testing.T) {
	t.Parallel()
	pool, direct := testenv.PgBouncer(t)
	if err := authpostgres.Migrate(context.Background(), direct, logging.Discard()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	authtest.UserStore(t, func(*testing.T) auth.UserStore { return authpostgres.NewUsers(pool) })
}

func TestMigrateIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testenv.Postgres(t)
	for i := range 3 {
		if err := authpostgres.Migrate(ctx, pool, logging.Discard()); err != nil {
			t.Fatalf("migrate, run %d: %v", i+1, err)
		}
	}
	var versions int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM auth.goose_db_version WHERE version_id > 0`).Scan(&versions); err != nil {
		t.Fatal(err)
	}
	if versions != 1 {
		t.Fatalf("want each migration recorded once, got %d rows", versions)
	}
}

func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testenv.Postgres(t)
	// Three replicas starting at once.
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = authpostgres.Migrate(ctx, pool, logging.Discard())
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("migrate %d: %v", i, err)
		}
	}
	var versions int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM auth.goose_db_version WHERE version_id > 0`).Scan(&versions); err != nil {
		t.Fatal(err)
	}
	if versions != 1 {
		t.Fatalf("want each migration recorded once, got %d rows", versions)
	}
	// And the schema works.
	authtest.UserStore(t, func(*testing.T) auth.UserStore { return authpostgres.NewUsers(pool) })
}

// TestTextTheDatabaseCannotStore: a NUL that got past validation is the client's error (a 422
// problem), never an outage (PostgreSQL answers it with SQLSTATE 22021).
func TestTextTheDatabaseCannotStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testenv.Postgres(t)
	if err := authpostgres.Migrate(ctx, pool, logging.Discard()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	users := authpostgres.NewUsers(pool)
	err := users.Create(ctx, auth.User{ID: uuid.New(), Email: "nul@example.com", Name: "a\x00b", Role: auth.RoleCustomer,
		PasswordHash: "h", CreatedAt: time.Now()})
	if !errors.Is(err, problem.ErrValidation) || problem.KindOf(err) != problem.Unprocessable {
		t.Fatalf("create with a NUL in the name: %v; want a validation problem", err)
	}
	_, err = users.ByEmail(ctx, "nul\x00@example.com")
	if !errors.Is(err, problem.ErrValidation) {
		t.Fatalf("look up an email with a NUL: %v; want a validation problem", err)
	}
}
