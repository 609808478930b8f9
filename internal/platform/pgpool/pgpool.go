// Package pgpool opens the PostgreSQL connection pool and applies each module's migrations, which
// are embedded in the binary, under an advisory lock so that replicas starting together take
// turns.
package pgpool

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/onsale-dev/onsale/internal/platform/config"
	"github.com/onsale-dev/onsale/internal/platform/problem"
)

// Options shape a pool.
type Options struct {
	// MaxConns is the most connections the pool opens.
	MaxConns int
	// MinIdleConns is how many connections the pool keeps open when idle (at most MaxConns);
	// Open keeps 2.
	MinIdleConns int
	// QueryExecMode is how queries are sent (see ParseQueryExecMode); empty: cache_statement,
	// pgx's default.
	QueryExecMode string
}

// QueryExecModes are the names ParseQueryExecMode accepts, pgx's own.
var QueryExecModes = []string{"cache_statement", "cache_describe", "describe_exec", "exec", "simple_protocol"}

// ParseQueryExecMode turns a mode's name into pgx's QueryExecMode:
//   - cache_statement prepares every statement once per connection under a name (fastest, but
//     named prepared statements live in a server session: not through a PgBouncer in
//     transaction pooling before 1.21, which may hand the next transaction another session);
//   - cache_describe keeps statement descriptions in the client and sends each query in one
//     round trip through the unnamed statement: safe through transaction pooling;
//   - describe_exec describes then executes in two round trips: not safe through transaction
//     pooling (the second may reach another session);
//   - exec and simple_protocol prepare nothing: safe everywhere, types guessed from Go values.
func ParseQueryExecMode(name string) (pgx.QueryExecMode, error) {
	switch name {
	case "", "cache_statement":
		return pgx.QueryExecModeCacheStatement, nil
	case "cache_describe":
		return pgx.QueryExecModeCacheDescribe, nil
	case "describe_exec":
		return pgx.QueryExecModeDescribeExec, nil
	case "exec":
		return pgx.QueryExecModeExec, nil
	case "simple_protocol":
		return pgx.QueryExecModeSimpleProtocol, nil
	}
	return 0, fmt.Errorf("unknown query exec mode %q, want one of %s", name, strings.Join(QueryExecModes, ", "))
}

// Open connects a pool to url with at most maxConns connections and checks it answers. url's
// credentials never reach the errors it returns.
func Open(ctx context.Context, url string, maxConns int) (*pgxpool.Pool, error) {
	return OpenWith(ctx, url, Options{MaxConns: maxConns, MinIdleConns: 2})
}

// OpenWith is Open with every option.
func OpenWith(ctx context.Context, url string, o Options) (*pgxpool.Pool, error) {
	pool, err := open(ctx, url, o)
	if err != nil {
		return nil, config.RedactError(err, url)
	}
	return pool, nil
}

func open(ctx context.Context, url string, o Options) (*pgxpool.Pool, error) {
	mode, err := ParseQueryExecMode(o.QueryExecMode)
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url %s: %w", config.RedactURL(url), err)
	}
	cfg.MaxConns = int32(o.MaxConns)
	cfg.MinIdleConns = int32(min(o.MaxConns, o.MinIdleConns))
	cfg.MaxConnIdleTime = 5 * time.Minute
	cfg.HealthCheckPeriod = 15 * time.Second
	cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	cfg.ConnConfig.DefaultQueryExecMode = mode
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database pool: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("ping database: %w", err)
	}
	return pool, nil
}

// migrationLockID is the advisory lock every replica takes while migrating ("onsale" in ASCII).
const migrationLockID = 0x6f6e73616c65

// Migrate brings a module's schema up to date. pool must reach PostgreSQL directly, or through
// a pooler in session mode: the advisory lock is a session's, and through transaction pooling
// it would stay behind on whichever server session took it (and the unlock would reach another).
// fsys holds goose SQL files in a migrations
// folder, as a module embeds them (//go:embed migrations/*.sql); the module's schema and its own
// version table (schema.goose_db_version) are created first, so modules never share migration
// history.
func Migrate(ctx context.Context, pool *pgxpool.Pool, schema string, fsys fs.FS, log *slog.Logger) error {
	fsys, err := fs.Sub(fsys, "migrations")
	if err != nil {
		return fmt.Errorf("migrate %s: %w", schema, err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate %s: acquire: %w", schema, err)
	}
	defer conn.Release()
	// A session lock on this connection: other replicas block here until we are done.
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(migrationLockID)); err != nil {
		return fmt.Errorf("migrate %s: lock: %w", schema, err)
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(migrationLockID))
	}()
	if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()); err != nil {
		return fmt.Errorf("migrate %s: create schema: %w", schema, err)
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithTableName(schema+".goose_db_version"),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", schema, err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", schema, err)
	}
	for _, r := range results {
		log.Info("migration applied", "schema", schema, "version", r.Source.Version, "file", r.Source.Path)
	}
	return nil
}

// IsUniqueViolation tells whether err is a unique constraint violation, optionally of a named
// constraint.
func IsUniqueViolation(err error, constraint string) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "23505" {
		return false
	}
	return constraint == "" || pe.ConstraintName == constraint
}

// Check is a readiness check for the pool.
func Check(pool *pgxpool.Pool) func(context.Context) error {
	return func(ctx context.Context) error { return pool.Ping(ctx) }
}

// DataError turns a PostgreSQL data exception (SQLSTATE class 22: a NUL in text, a number out of
// range, an invalid encoding) into a validation problem: the request held a value the database
// cannot store, which is for the client to fix and never an outage. Adapters pass their write
// errors through it as a backstop behind the modules' own validation. Other errors are returned
// unchanged.
func DataError(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && strings.HasPrefix(pe.Code, "22") {
		return problem.ErrValidation.WithDetail("the request holds a value that cannot be stored").Wrap(err)
	}
	return err
}
