// Package postgres holds the webhook module's PostgreSQL adapter: endpoints, deliveries and their
// attempts, in the module's own schema (webhook). Several replicas claim deliveries from it at
// once without sending one twice: a claim locks the rows it takes (skipping those another
// claimer holds) and moves their next attempt a lease ahead.
package postgres

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/onsale-dev/onsale/internal/platform/pgpool"
	"github.com/onsale-dev/onsale/internal/webhook"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Schema is the module's PostgreSQL schema.
const Schema = "webhook"

// Migrate brings the webhook schema up to date.
func Migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	return pgpool.Migrate(ctx, pool, Schema, migrations, log)
}

// Store is a webhook.Store on PostgreSQL.
type Store struct {
	pool *pgxpool.Pool
}

var _ webhook.Store = (*Store)(nil)

// NewStore returns a store on pool; run Migrate first.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

const endpointColumns = `id, organizer_id, url, event_types, description, secret, disabled, created_at,
	previous_secret, previous_secret_until`

func scanEndpoint(row pgx.Row) (webhook.Endpoint, error) {
	var e webhook.Endpoint
	var until *time.Time
	err := row.Scan(&e.ID, &e.OrganizerID, &e.URL, &e.EventTypes, &e.Description, &e.Secret, &e.Disabled, &e.CreatedAt,
		&e.PreviousSecret, &until)
	e.CreatedAt = e.CreatedAt.UTC()
	if until != nil {
		e.PreviousSecretUntil = until.UTC()
	}
	return e, err
}

const deliveryColumns = `d.id, d.seq, d.endpoint_id, d.event_id, d.type, d.ordering_key, d.payload, d.status, d.attempts,
	d.next_attempt_at, d.last_attempt_at, d.created_at`

func scanDelivery(row pgx.Row, extra ...any) (webhook.Delivery, error) {
	var d webhook.Delivery
	var last *time.Time
	dest := append([]any{&d.ID, &d.Seq, &d.EndpointID, &d.EventID, &d.Type, &d.OrderingKey, &d.Payload, &d.Status, &d.Attempts,
		&d.NextAttemptAt, &last, &d.CreatedAt}, extra...)
	if err := row.Scan(dest...); err != nil {
		return d, err
	}
	if last != nil {
		d.LastAttemptAt = last.UTC()
	}
	d.NextAttemptAt, d.CreatedAt = d.NextAttemptAt.UTC(), d.CreatedAt.UTC()
	return d, nil
}

// CreateEndpoint implements webhook.Store.
func (s *Store) CreateEndpoint(ctx context.Context, e webhook.Endpoint) error {
	var until *time.Time
	if !e.PreviousSecretUntil.IsZero() {
		until = &e.PreviousSecretUntil
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO webhook.endpoints (`+endpointColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		e.ID, e.OrganizerID, e.URL, e.EventTypes, e.Description, e.Secret, e.Disabled, e.CreatedAt, e.PreviousSecret, until)
	if err != nil {
		return fmt.Errorf("insert webhook endpoint: %w", err)
	}
	return nil
}

// Endpoints implements webhook.Store.
func (s *Store) Endpoints(ctx context.Context, organizer uuid.UUID, after *webhook.Cursor, limit int) ([]webhook.Endpoint, error) {
	var rows pgx.Rows
	var err error
	if after == nil {
		rows, err = s.pool.Query(ctx, `SELECT `+endpointColumns+` FROM webhook.endpoints WHERE organizer_id = $1
			ORDER BY created_at DESC, id DESC LIMIT $2`, organizer, limit)
	} else {
		rows, err = s.pool.Query(ctx, `SELECT `+endpointColumns+` FROM webhook.endpoints WHERE organizer_id = $1
			AND (created_at, id) < ($2, $3) ORDER BY created_at DESC, id DESC LIMIT $4`, organizer, after.CreatedAt, after.ID, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("list webhook endpoints: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (webhook.Endpoint, error) { return scanEndpoint(r) })
	if err != nil {
		return nil, fmt.Errorf("list webhook endpoints: %w", err)
	}
	return out, nil
}

// Endpoint implements webhook.Store.
func (s *Store) Endpoint(ctx context.Context, id uuid.UUID) (webhook.Endpoint, error) {
	e, err := scanEndpoint(s.pool.QueryRow(ctx, `SELECT `+endpointColumns+` FROM webhook.endpoints WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return webhook.Endpoint{}, webhook.ErrEndpointNotFound
	}
	if err != nil {
		return webhook.Endpoint{}, fmt.Errorf("read webhook endpoint: %w", err)
	}
	return e, nil
}

// DeleteEndpoint implements webhook.Store; the deliveries and attempts go with it (ON DELETE
// CASCADE).
func (s *Store) DeleteEndpoint(ctx context.Context, id uuid.UUID) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM webhook.endpoints WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("delete webhook endpoint: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return webhook.ErrEndpointNotFound
	}
	return nil
}

// UpdateEndpoint implements webhook.Store: one statement, each column kept where the patch has
// no value for it.
func (s *Store) UpdateEndpoint(ctx context.Context, id uuid.UUID, p webhook.EndpointPatch) (webhook.Endpoint, error) {
	return s.updateEndpoint(ctx, "update webhook endpoint", `url = COALESCE($2, url), event_types = COALESCE($3, event_types),
		description = COALESCE($4, description), disabled = COALESCE($5, disabled)`,
		id, p.URL, p.EventTypes, p.Description, p.Disabled)
}

// RotateSecret implements webhook.Store: the right-hand sides of an UPDATE see the row as it
// was, so previous_secret takes the secret being replaced.
func (s *Store) RotateSecret(ctx context.Context, id uuid.UUID, secret string, previousUntil time.Time) (webhook.Endpoint, error) {
	return s.updateEndpoint(ctx, "rotate webhook secret", `previous_secret = secret, previous_secret_until = $3, secret = $2`,
		id, secret, previousUntil)
}

// updateEndpoint sets the columns of endpoint args[0] in one statement and returns the row.
func (s *Store) updateEndpoint(ctx context.Context, what, set string, args ...any) (webhook.Endpoint, error) {
	e, err := scanEndpoint(s.pool.QueryRow(ctx, `UPDATE webhook.endpoints SET `+set+` WHERE id = $1 RETURNING `+endpointColumns, args...))
	if errors.Is(err, pgx.ErrNoRows) {
		return webhook.Endpoint{}, webhook.ErrEndpointNotFound
	}
	if err != nil {
		return webhook.Endpoint{}, fmt.Errorf("%s %v: %w", what, args[0], err)
	}
	return e, nil
}

// Enqueue implements webhook.Store: one statement, so a repeat of the event finds the rows of
// the first (the unique (endpoint_id, event_id)) and adds nothing.
func (s *Store) Enqueue(ctx context.Context, ev webhook.Event, now time.Time) (int, error) {
	body, err := ev.Body()
	if err != nil {
		return 0, err
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO webhook.deliveries (id, endpoint_id, event_id, type, ordering_key, payload, status,
			next_attempt_at, created_at)
		SELECT gen_random_uuid(), e.id, $2, $3, $4, $5, 'pending', $6, $6
		FROM webhook.endpoints e
		WHERE e.organizer_id = $1 AND NOT e.disabled AND $3 = ANY(e.event_types)
		ORDER BY e.id
		ON CONFLICT (endpoint_id, event_id) DO NOTHING`,
		ev.OrganizerID, ev.ID, ev.Type, ev.OrderingKey, body, now)
	if err != nil {
		return 0, fmt.Errorf("enqueue webhook event %s: %w", ev.ID, err)
	}
	return int(tag.RowsAffected()), nil
}

// Claim implements webhook.Store. The candidates are the due deliveries that no earlier pending
// delivery of their key holds back, at most PerEndpoint of each endpoint; the rows are locked
// with SKIP LOCKED, and the lock re-checks that they are still due, so a row another claimer
// took a moment ago (its next attempt moved ahead) is not taken again.
func (s *Store) Claim(ctx context.Context, c webhook.Claim) ([]webhook.Due, error) {
	per := c.PerEndpoint
	if per <= 0 {
		per = math.MaxInt32
	}
	skip := c.Skip
	if skip == nil {
		skip = []uuid.UUID{}
	}
	rows, err := s.pool.Query(ctx, `WITH candidates AS (
			SELECT d.id, d.seq, row_number() OVER (PARTITION BY d.endpoint_id ORDER BY d.seq) AS n
			FROM webhook.deliveries d JOIN webhook.endpoints e ON e.id = d.endpoint_id
			WHERE d.status = 'pending' AND d.next_attempt_at <= $1 AND NOT e.disabled
				AND NOT (d.endpoint_id = ANY($2::uuid[]))
				AND (d.ordering_key = '' OR NOT EXISTS (
					SELECT 1 FROM webhook.deliveries p
					WHERE p.endpoint_id = d.endpoint_id AND p.ordering_key = d.ordering_key
						AND p.status = 'pending' AND p.seq < d.seq))
		), picked AS (
			SELECT d.id FROM webhook.deliveries d JOIN candidates c ON c.id = d.id
			WHERE c.n <= $3 AND d.status = 'pending' AND d.next_attempt_at <= $1
			ORDER BY c.seq LIMIT $4
			FOR UPDATE OF d SKIP LOCKED
		)
		UPDATE webhook.deliveries d SET next_attempt_at = $5
		FROM picked, webhook.endpoints e
		WHERE d.id = picked.id AND e.id = d.endpoint_id
		RETURNING `+deliveryColumns+`, e.url, e.secret,
			CASE WHEN e.previous_secret_until > $1 THEN e.previous_secret ELSE '' END`,
		c.Now, skip, per, c.Limit, c.Now.Add(c.Lease))
	if err != nil {
		return nil, fmt.Errorf("claim webhook deliveries: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (webhook.Due, error) {
		var due webhook.Due
		d, err := scanDelivery(r, &due.URL, &due.Secret, &due.PreviousSecret)
		due.Delivery = d
		return due, err
	})
	if err != nil {
		return nil, fmt.Errorf("claim webhook deliveries: %w", err)
	}
	// RETURNING keeps no order: oldest first, as the port says.
	slices.SortFunc(out, func(a, b webhook.Due) int { return cmp.Compare(a.Seq, b.Seq) })
	return out, nil
}

// Record implements webhook.Store: the attempt and the delivery's new state in one transaction.
func (s *Store) Record(ctx context.Context, id uuid.UUID, o webhook.Outcome) (webhook.Delivery, error) {
	var d webhook.Delivery
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		a := o.Attempt
		if _, err := tx.Exec(ctx, `INSERT INTO webhook.attempts (delivery_id, at, status_code, latency_micros, error)
			SELECT id, $2, $3, $4, $5 FROM webhook.deliveries WHERE id = $1`,
			id, a.At, a.StatusCode, a.Latency.Microseconds(), a.Error); err != nil {
			return fmt.Errorf("insert webhook attempt: %w", err)
		}
		status := webhook.StatusPending
		switch {
		case o.Succeeded:
			status = webhook.StatusSucceeded
		case o.Next.IsZero():
			status = webhook.StatusDead
		}
		var err error
		d, err = scanDelivery(tx.QueryRow(ctx, `UPDATE webhook.deliveries d SET attempts = attempts + 1, last_attempt_at = $2,
				status = $3, next_attempt_at = CASE WHEN $3 = 'pending' THEN $4 ELSE next_attempt_at END
			WHERE id = $1 AND status = 'pending' RETURNING `+deliveryColumns, id, a.At, status, o.Next))
		if errors.Is(err, pgx.ErrNoRows) {
			// Not pending (a late duplicate attempt), or gone.
			d, err = s.delivery(ctx, tx, id)
		}
		return err
	})
	if err != nil {
		return webhook.Delivery{}, err
	}
	return d, nil
}

func (s *Store) delivery(ctx context.Context, q pgx.Tx, id uuid.UUID) (webhook.Delivery, error) {
	d, err := scanDelivery(q.QueryRow(ctx, `SELECT `+deliveryColumns+` FROM webhook.deliveries d WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return webhook.Delivery{}, webhook.ErrDeliveryNotFound
	}
	if err != nil {
		return webhook.Delivery{}, fmt.Errorf("read webhook delivery: %w", err)
	}
	return d, nil
}

// Deliveries implements webhook.Store.
func (s *Store) Deliveries(ctx context.Context, endpoint uuid.UUID, after *webhook.Cursor, limit int) ([]webhook.Delivery, error) {
	before := int64(math.MaxInt64)
	if after != nil {
		before = after.Seq
	}
	rows, err := s.pool.Query(ctx, `SELECT `+deliveryColumns+` FROM webhook.deliveries d
		WHERE endpoint_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3`, endpoint, before, limit)
	if err != nil {
		return nil, fmt.Errorf("list webhook deliveries: %w", err)
	}
	ds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (webhook.Delivery, error) { return scanDelivery(r) })
	if err != nil {
		return nil, fmt.Errorf("list webhook deliveries: %w", err)
	}
	if err := s.history(ctx, ds); err != nil {
		return nil, err
	}
	return ds, nil
}

// history fills the deliveries' attempts, in one query.
func (s *Store) history(ctx context.Context, ds []webhook.Delivery) error {
	if len(ds) == 0 {
		return nil
	}
	ids := make([]uuid.UUID, len(ds))
	at := make(map[uuid.UUID]int, len(ds))
	for i, d := range ds {
		ids[i] = d.ID
		at[d.ID] = i
	}
	rows, err := s.pool.Query(ctx, `SELECT delivery_id, at, status_code, latency_micros, error FROM webhook.attempts
		WHERE delivery_id = ANY($1) ORDER BY delivery_id, id`, ids)
	if err != nil {
		return fmt.Errorf("read webhook attempts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var a webhook.Attempt
		var micros int64
		if err := rows.Scan(&a.DeliveryID, &a.At, &a.StatusCode, &micros, &a.Error); err != nil {
			return fmt.Errorf("read webhook attempts: %w", err)
		}
		a.At, a.Latency = a.At.UTC(), time.Duration(micros)*time.Microsecond
		i := at[a.DeliveryID]
		ds[i].History = append(ds[i].History, a)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read webhook attempts: %w", err)
	}
	return nil
}

// Delivery implements webhook.Store.
func (s *Store) Delivery(ctx context.Context, id uuid.UUID) (webhook.Delivery, error) {
	d, err := scanDelivery(s.pool.QueryRow(ctx, `SELECT `+deliveryColumns+` FROM webhook.deliveries d WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return webhook.Delivery{}, webhook.ErrDeliveryNotFound
	}
	if err != nil {
		return webhook.Delivery{}, fmt.Errorf("read webhook delivery: %w", err)
	}
	ds := []webhook.Delivery{d}
	if err := s.history(ctx, ds); err != nil {
		return webhook.Delivery{}, err
	}
	return ds[0], nil
}

// Resend implements webhook.Store.
func (s *Store) Resend(ctx context.Context, id uuid.UUID, now time.Time) (webhook.Delivery, error) {
	d, err := scanDelivery(s.pool.QueryRow(ctx, `UPDATE webhook.deliveries d SET status = 'pending', attempts = 0, next_attempt_at = $2
		WHERE id = $1 RETURNING `+deliveryColumns, id, now))
	if errors.Is(err, pgx.ErrNoRows) {
		return webhook.Delivery{}, webhook.ErrDeliveryNotFound
	}
	if err != nil {
		return webhook.Delivery{}, fmt.Errorf("resend webhook delivery: %w", err)
	}
	return d, nil
}
