// Package postgres holds the auth module's PostgreSQL adapter: accounts in the module's own
// schema (auth), created by the migrations embedded here.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/onsale-dev/onsale/internal/auth"
	"github.com/onsale-dev/onsale/internal/platform/pgpool"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Schema is the module's PostgreSQL schema.
const Schema = "auth"

// Migrate brings the auth schema up to date.
func Migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	return pgpool.Migrate(ctx, pool, Schema, migrations, log)
}

// Users is a UserStore on PostgreSQL.
type Users struct{ pool *pgxpool.Pool }

var _ auth.UserStore = (*Users)(nil)

// NewUsers returns a store on pool; run Migrate first.
func NewUsers(pool *pgxpool.Pool) *Users { return &Users{pool: pool} }

// Create implements auth.UserStore.
func (s *Users) Create(ctx context.Context, u auth.User) error {
	_, err := s.pool.Exec(ctx,
		`INSERT INTO auth.users (id, email, name, role, password_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
		u.ID, u.Email, u.Name, string(u.Role), u.PasswordHash, u.CreatedAt)
	if pgpool.IsUniqueViolation(err, "users_email_key") {
		return auth.ErrEmailTaken
	}
	if err != nil {
		return fmt.Errorf("create user: %w", pgpool.DataError(err))
	}
	return nil
}

const userColumns = `id, email, name, role, password_hash, created_at`

func scanUser(row pgx.Row) (auth.User, error) {
	var u auth.User
	var role string
	err := row.Scan(&u.ID, &u.Email, &u.Name, &role, &u.PasswordHash, &u.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return auth.User{}, auth.ErrUserNotFound
	}
	if err != nil {
		return auth.User{}, fmt.Errorf("read user: %w", pgpool.DataError(err))
	}
	u.Role = auth.Role(role)
	return u, nil
}

// ByEmail implements auth.UserStore.
func (s *Users) ByEmail(ctx context.Context, email string) (auth.User, error) {
	return scanUser(s.pool.QueryRow(ctx, `SELECT `+userColumns+` FROM auth.users WHERE lower(email) = lower($1)`, email))
}

// ByID implements auth.UserStore.
func (s *Users) ByID(ctx context.Context, id uuid.UUID) (auth.User, error) {
	return scanUser(s.pool.QueryRow(ctx, `SELECT `+userColumns+` FROM auth.users WHERE id = $1`, id))
}

// SetPasswordHash implements auth.UserStore.
func (s *Users) SetPasswordHash(ctx context.Context, id uuid.UUID, hash string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE auth.users SET password_hash = $2, updated_at = now() WHERE id = $1`, id, hash)
	if err != nil {
		return fmt.Errorf("set password hash: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return auth.ErrUserNotFound
	}
	return nil
}
