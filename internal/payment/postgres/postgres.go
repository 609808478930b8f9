// Package postgres holds the payment module's PostgreSQL adapter: orders, idempotency keys, the
// outbox, issued tickets and check-ins, in the module's own schema (payment).
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/onsale-dev/onsale/internal/payment"
	"github.com/onsale-dev/onsale/internal/platform/batch"
	"github.com/onsale-dev/onsale/internal/platform/pgpool"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Schema is the module's PostgreSQL schema.
const Schema = "payment"

// Migrate brings the payment schema up to date.
func Migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	return pgpool.Migrate(ctx, pool, Schema, migrations, log)
}

// Store is a payment.OrderStore on PostgreSQL. The calls every order makes — creating it, reading
// it, confirming it — are combined across concurrent orders: one statement creates, reads or
// confirms a whole batch, so during an on-sale the pool's connections and the disk's flushes serve
// many orders each instead of one.
type Store struct {
	pool     *pgxpool.Pool
	gets     *batch.Combiner[uuid.UUID, orderResult]
	confirms *batch.Combiner[confirmRequest, orderResult]
	creates  *batch.Combiner[createRequest, createResult]
}

type orderResult struct {
	o       payment.Order
	changed bool
	err     error
}

type confirmRequest struct {
	id      uuid.UUID
	charge  string
	tickets []payment.Ticket
}

var _ payment.OrderStore = (*Store)(nil)

// NewStore returns a store on pool; run Migrate first.
func NewStore(pool *pgxpool.Pool) *Store {
	s := &Store{pool: pool}
	s.gets = batch.New(512, 4, 15*time.Second, s.getBatch)
	s.confirms = batch.New(512, 2, 15*time.Second, s.confirmBatch)
	s.creates = batch.New(256, 2, 15*time.Second, s.createBatch)
	return s
}

// maxTicketsPerOrder bounds the tickets of one order: a hold has at most 50 (the API's and the
// inventory schema's bound on max_per_order).
const maxTicketsPerOrder = 50

// insertColumns are the columns a new order is written with; orderColumns those it is read with.
const insertColumns = `id, customer_id, hold_id, ticket_type_id, quantity, unit_price_cents, hold_created_at,
	amount_cents, currency, status, status_detail, version, charge_id, created_at, updated_at`

const orderColumns = `id, customer_id, hold_id, ticket_type_id, quantity, unit_price_cents, hold_created_at,
	amount_cents, currency, status, status_detail, version, charge_id, created_at, updated_at, voided, refunded_cents`

func scanOrder(row pgx.Row) (payment.Order, error) {
	var o payment.Order
	var status string
	err := row.Scan(&o.ID, &o.CustomerID, &o.Hold.ID, &o.Hold.TicketTypeID, &o.Hold.Quantity, &o.Hold.UnitPriceCents,
		&o.Hold.CreatedAt, &o.AmountCents, &o.Currency, &status, &o.StatusDetail, &o.Version, &o.ChargeID, &o.CreatedAt, &o.UpdatedAt,
		&o.Voided, &o.RefundedCents)
	if errors.Is(err, pgx.ErrNoRows) {
		return payment.Order{}, payment.ErrOrderNotFound
	}
	if err != nil {
		return payment.Order{}, fmt.Errorf("read order: %w", err)
	}
	o.Status = payment.Status(status)
	o.Hold.CustomerID, o.Hold.Currency = o.CustomerID, o.Currency
	o.Hold.CreatedAt, o.CreatedAt, o.UpdatedAt = o.Hold.CreatedAt.UTC(), o.CreatedAt.UTC(), o.UpdatedAt.UTC()
	return o, nil
}

// Create implements payment.OrderStore: the key, the order and its outbox row in one statement,
// and concurrent creations share one statement (and one durable commit).
func (s *Store) Create(ctx context.Context, o payment.Order, idem payment.IdempotencyRecord) (payment.OutboxMessage, error) {
	r, err := s.creates.Do(ctx, createRequest{o: o, idem: idem})
	if err != nil {
		return payment.OutboxMessage{}, err
	}
	return r.msg, r.err
}

type createRequest struct {
	o    payment.Order
	idem payment.IdempotencyRecord
}

type createResult struct {
	msg payment.OutboxMessage
	err error
}

// createBatch writes many orders in one statement. A key already in use (and not expired by the
// order's creation time) makes its order absent from the answer; anything that fails the whole
// statement — a hold already ordered, one key twice in the batch — sends each request through
// createOne to get its own answer.
func (s *Store) createBatch(ctx context.Context, reqs []createRequest) []createResult {
	out := make([]createResult, len(reqs))
	if len(reqs) > 1 {
		if made, err := s.createMany(ctx, reqs); err == nil {
			for i, r := range reqs {
				if id, ok := made[r.o.ID]; ok {
					out[i].msg = payment.OutboxMessage{ID: id, OrderID: r.o.ID, CreatedAt: r.o.CreatedAt}
				} else {
					out[i].err = payment.ErrDuplicateKey
				}
			}
			return out
		}
	}
	for i, r := range reqs {
		out[i].msg, out[i].err = s.createOne(ctx, r.o, r.idem)
	}
	return out
}

func (s *Store) createMany(ctx context.Context, reqs []createRequest) (map[uuid.UUID]int64, error) {
	n := len(reqs)
	customers, orderIDs, types := make([]uuid.UUID, n), make([]uuid.UUID, n), make([]uuid.UUID, n)
	keys, hashes, holds, currencies, statuses := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	expires, holdCreated, created := make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
	qtys := make([]int32, n)
	units, amounts := make([]int64, n), make([]int64, n)
	for i, r := range reqs {
		o := r.o
		customers[i], keys[i], hashes[i], orderIDs[i], expires[i] = r.idem.CustomerID, r.idem.Key, r.idem.RequestHash, o.ID, r.idem.ExpiresAt
		holds[i], types[i], qtys[i], units[i], holdCreated[i] = o.Hold.ID, o.Hold.TicketTypeID, int32(o.Hold.Quantity), o.Hold.UnitPriceCents, o.Hold.CreatedAt
		amounts[i], currencies[i], statuses[i], created[i] = o.AmountCents, o.Currency, string(o.Status), o.CreatedAt
	}
	rows, err := s.pool.Query(ctx, `
		WITH req AS (
			SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::timestamptz[], $6::text[], $7::uuid[],
			  $8::int[], $9::bigint[], $10::timestamptz[], $11::bigint[], $12::text[], $13::text[], $14::timestamptz[])
			  AS r(customer, key, hash, id, expires, hold, tt, qty, unit, hold_created, amount, currency, status, created)
		), key AS (
			INSERT INTO payment.idempotency_keys (customer_id, key, request_hash, order_id, expires_at)
			SELECT customer, key, hash, id, expires FROM req
			ON CONFLICT (customer_id, key) DO UPDATE SET request_hash = EXCLUDED.request_hash,
			  order_id = EXCLUDED.order_id, expires_at = EXCLUDED.expires_at
			  WHERE payment.idempotency_keys.expires_at <=
			    (SELECT created FROM req WHERE req.customer = EXCLUDED.customer_id AND req.key = EXCLUDED.key)
			RETURNING order_id
		), ord AS (
			INSERT INTO payment.orders (`+insertColumns+`)
			SELECT id, customer, hold, tt, qty, unit, hold_created, amount, currency, status, '', 1, '', created, created
			FROM req WHERE id IN (SELECT order_id FROM key)
			RETURNING id, created_at
		), box AS (
			INSERT INTO payment.outbox (order_id, created_at) SELECT id, created_at FROM ord RETURNING id, order_id
		)
		SELECT order_id, id FROM box`,
		customers, keys, hashes, orderIDs, expires, holds, types, qtys, units, holdCreated, amounts, currencies, statuses, created)
	if err != nil {
		return nil, err
	}
	made := make(map[uuid.UUID]int64, n)
	for rows.Next() {
		var order uuid.UUID
		var id int64
		if err := rows.Scan(&order, &id); err != nil {
			rows.Close()
			return nil, err
		}
		made[order] = id
	}
	return made, rows.Err()
}

// createOne writes one order; an expired key may be taken again.
func (s *Store) createOne(ctx context.Context, o payment.Order, idem payment.IdempotencyRecord) (payment.OutboxMessage, error) {
	msg := payment.OutboxMessage{OrderID: o.ID, CreatedAt: o.CreatedAt}
	var keyTaken bool
	var outboxID *int64
	err := s.pool.QueryRow(ctx, `
		WITH key AS (
			INSERT INTO payment.idempotency_keys (customer_id, key, request_hash, order_id, expires_at)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (customer_id, key) DO UPDATE SET request_hash = EXCLUDED.request_hash,
			  order_id = EXCLUDED.order_id, expires_at = EXCLUDED.expires_at
			  WHERE payment.idempotency_keys.expires_at <= $17
			RETURNING 1
		), ord AS (
			INSERT INTO payment.orders (`+insertColumns+`)
			SELECT $4, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, '', $17, $17 WHERE EXISTS (SELECT 1 FROM key)
			RETURNING id
		), box AS (
			INSERT INTO payment.outbox (order_id, created_at) SELECT id, $17 FROM ord RETURNING id
		)
		SELECT NOT EXISTS (SELECT 1 FROM key), (SELECT id FROM box)`,
		idem.CustomerID, idem.Key, idem.RequestHash, o.ID, idem.ExpiresAt,
		o.CustomerID, o.Hold.ID, o.Hold.TicketTypeID, o.Hold.Quantity, o.Hold.UnitPriceCents, o.Hold.CreatedAt,
		o.AmountCents, o.Currency, string(o.Status), o.StatusDetail, o.Version, o.CreatedAt,
	).Scan(&keyTaken, &outboxID)
	switch {
	case pgpool.IsUniqueViolation(err, "orders_hold_key"):
		return payment.OutboxMessage{}, payment.ErrHoldAlreadyOrdered
	case err != nil:
		return payment.OutboxMessage{}, fmt.Errorf("create order: %w", err)
	case keyTaken || outboxID == nil:
		return payment.OutboxMessage{}, payment.ErrDuplicateKey
	}
	msg.ID = *outboxID
	return msg, nil
}

func problemOf(err error) bool {
	return errors.Is(err, payment.ErrDuplicateKey) || errors.Is(err, payment.ErrHoldAlreadyOrdered) ||
		errors.Is(err, payment.ErrOrderNotFound) || errors.Is(err, payment.ErrOrderTerminal)
}

// ByIdempotencyKey implements payment.OrderStore.
func (s *Store) ByIdempotencyKey(ctx context.Context, customer uuid.UUID, key string, now time.Time) (payment.IdempotencyRecord, error) {
	r := payment.IdempotencyRecord{CustomerID: customer, Key: key}
	err := s.pool.QueryRow(ctx, `SELECT request_hash, order_id, expires_at FROM payment.idempotency_keys
		WHERE customer_id = $1 AND key = $2 AND expires_at > $3`, customer, key, now).Scan(&r.RequestHash, &r.OrderID, &r.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return payment.IdempotencyRecord{}, payment.ErrOrderNotFound
	}
	if err != nil {
		return payment.IdempotencyRecord{}, fmt.Errorf("read idempotency key: %w", err)
	}
	return r, nil
}

func (s *Store) tickets(ctx context.Context, q pgx.Tx, orderID uuid.UUID) ([]payment.Ticket, error) {
	var rows pgx.Rows
	var err error
	const query = `SELECT ticket_id, order_id, ticket_type_id, event_id, seq FROM payment.order_tickets WHERE order_id = $1 ORDER BY seq`
	if q != nil {
		rows, err = q.Query(ctx, query, orderID)
	} else {
		rows, err = s.pool.Query(ctx, query, orderID)
	}
	if err != nil {
		return nil, fmt.Errorf("read tickets: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (payment.Ticket, error) {
		var t payment.Ticket
		err := r.Scan(&t.ID, &t.OrderID, &t.TicketTypeID, &t.EventID, &t.Seq)
		return t, err
	})
}

// Get implements payment.OrderStore.
func (s *Store) Get(ctx context.Context, id uuid.UUID) (payment.Order, error) {
	r, err := s.gets.Do(ctx, id)
	if err != nil {
		return payment.Order{}, err
	}
	return r.o, r.err
}

// getBatch reads orders (and the tickets of confirmed ones) in two round trips, whatever their
// number.
func (s *Store) getBatch(ctx context.Context, ids []uuid.UUID) []orderResult {
	found, err := s.readOrders(ctx, ids)
	out := make([]orderResult, len(ids))
	for i, id := range ids {
		switch o, ok := found[id]; {
		case err != nil:
			out[i].err = err
		case !ok:
			out[i].err = payment.ErrOrderNotFound
		default:
			out[i].o = o
		}
	}
	return out
}

// Statuses implements payment.OrderStore: one statement, whatever the number of orders.
func (s *Store) Statuses(ctx context.Context, ids []uuid.UUID) ([]payment.StatusEvent, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, customer_id, status, status_detail, version, updated_at
		FROM payment.orders WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("read order statuses: %w", err)
	}
	evs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (payment.StatusEvent, error) {
		var ev payment.StatusEvent
		var status string
		err := r.Scan(&ev.OrderID, &ev.CustomerID, &status, &ev.StatusDetail, &ev.Version, &ev.At)
		ev.Status, ev.At = payment.Status(status), ev.At.UTC()
		return ev, err
	})
	if err != nil {
		return nil, fmt.Errorf("read order statuses: %w", err)
	}
	return evs, nil
}

func (s *Store) readOrders(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]payment.Order, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+orderColumns+` FROM payment.orders WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("read orders: %w", err)
	}
	found := make(map[uuid.UUID]payment.Order, len(ids))
	var confirmed []uuid.UUID
	for rows.Next() {
		o, err := scanOrder(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		found[o.ID] = o
		if o.Status.Paid() {
			confirmed = append(confirmed, o.ID)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read orders: %w", err)
	}
	if err := s.readRefunds(ctx, found); err != nil {
		return nil, err
	}
	if len(confirmed) == 0 {
		return found, nil
	}
	// Order by order on the (order_id, seq) index: with order_id = ANY($1) the planner scans the
	// whole table whenever its statistics lag behind a table that an on-sale fills in minutes. The
	// limit keeps the subquery from being flattened into such a join.
	trows, err := s.pool.Query(ctx, `SELECT t.* FROM unnest($1::uuid[]) AS o(id) CROSS JOIN LATERAL (
			SELECT ticket_id, order_id, ticket_type_id, event_id, seq FROM payment.order_tickets
			WHERE order_id = o.id ORDER BY seq LIMIT $2) t
		ORDER BY t.order_id, t.seq`, confirmed, maxTicketsPerOrder)
	if err != nil {
		return nil, fmt.Errorf("read tickets: %w", err)
	}
	tickets, err := pgx.CollectRows(trows, func(r pgx.CollectableRow) (payment.Ticket, error) {
		var t payment.Ticket
		err := r.Scan(&t.ID, &t.OrderID, &t.TicketTypeID, &t.EventID, &t.Seq)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("read tickets: %w", err)
	}
	for _, t := range tickets {
		o := found[t.OrderID]
		o.Tickets = append(o.Tickets, t)
		found[t.OrderID] = o
	}
	return found, nil
}

// List implements payment.OrderStore.
func (s *Store) List(ctx context.Context, customer uuid.UUID, after *payment.OrderCursor, limit int) ([]payment.Order, error) {
	var rows pgx.Rows
	var err error
	if after == nil {
		rows, err = s.pool.Query(ctx, `SELECT `+orderColumns+` FROM payment.orders WHERE customer_id = $1
			ORDER BY created_at DESC, id DESC LIMIT $2`, customer, limit)
	} else {
		rows, err = s.pool.Query(ctx, `SELECT `+orderColumns+` FROM payment.orders WHERE customer_id = $1
			AND (created_at, id) < ($2, $3) ORDER BY created_at DESC, id DESC LIMIT $4`, customer, after.CreatedAt, after.ID, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("list orders: %w", err)
	}
	defer rows.Close()
	var out []payment.Order
	for rows.Next() {
		o, err := scanOrder(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list orders: %w", err)
	}
	for i := range out {
		if out[i].Status.Paid() {
			if out[i].Tickets, err = s.tickets(ctx, nil, out[i].ID); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// change runs a conditional status update and reports whether it changed anything; when it did
// not, the current order is read so the caller can tell why.
func (s *Store) change(ctx context.Context, id uuid.UUID, update func(tx pgx.Tx) (pgx.Row, error),
	check func(o payment.Order) error, after func(tx pgx.Tx) error) (payment.Order, bool, error) {
	var out payment.Order
	changed := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		row, err := update(tx)
		if err != nil {
			return err
		}
		o, err := scanOrder(row)
		if err == nil {
			out, changed = o, true
			if after != nil {
				if err := after(tx); err != nil {
					return err
				}
			}
		} else if errors.Is(err, payment.ErrOrderNotFound) {
			if out, err = scanOrder(tx.QueryRow(ctx, `SELECT `+orderColumns+` FROM payment.orders WHERE id = $1`, id)); err != nil {
				return err
			}
			if err := check(out); err != nil {
				return err
			}
		} else {
			return err
		}
		if out.Status.Paid() {
			out.Tickets, err = s.tickets(ctx, tx, id)
		}
		return err
	})
	if err != nil {
		if problemOf(err) {
			return payment.Order{}, false, err
		}
		return payment.Order{}, false, fmt.Errorf("update order %s: %w", id, err)
	}
	return out, changed, nil
}

// SetDetail implements payment.OrderStore.
func (s *Store) SetDetail(ctx context.Context, id uuid.UUID, detail string) (payment.Order, bool, error) {
	return s.change(ctx, id, func(tx pgx.Tx) (pgx.Row, error) {
		return tx.QueryRow(ctx, `UPDATE payment.orders SET status_detail = $2, version = version + 1, updated_at = now()
			WHERE id = $1 AND status = 'pending' AND status_detail <> $2 RETURNING `+orderColumns, id, detail), nil
	}, func(payment.Order) error { return nil }, nil)
}

// Confirm implements payment.OrderStore. Concurrent confirmations share one statement (and one
// durable commit).
func (s *Store) Confirm(ctx context.Context, id uuid.UUID, chargeID string, tickets []payment.Ticket) (payment.Order, bool, error) {
	r, err := s.confirms.Do(ctx, confirmRequest{id: id, charge: chargeID, tickets: tickets})
	if err != nil {
		return payment.Order{}, false, err
	}
	return r.o, r.changed, r.err
}

// confirmBatch confirms pending orders and records their tickets in one statement, then reads
// every order back (two more round trips) to answer each caller.
func (s *Store) confirmBatch(ctx context.Context, reqs []confirmRequest) []orderResult {
	out := make([]orderResult, len(reqs))
	var (
		ids, tids, torders, ttypes, tevents []uuid.UUID
		charges                             []string
		seqs                                []int32
	)
	for _, r := range reqs {
		ids, charges = append(ids, r.id), append(charges, r.charge)
		for _, t := range r.tickets {
			tids, torders, ttypes, tevents, seqs = append(tids, t.ID), append(torders, r.id), append(ttypes, t.TicketTypeID),
				append(tevents, t.EventID), append(seqs, int32(t.Seq))
		}
	}
	rows, err := s.pool.Query(ctx, `
		WITH req AS (
			SELECT DISTINCT ON (id) id, charge FROM unnest($1::uuid[], $2::text[]) AS r(id, charge)
		), upd AS (
			UPDATE payment.orders o SET status = 'confirmed', status_detail = '', charge_id = req.charge,
			  version = o.version + 1, updated_at = now()
			FROM req WHERE o.id = req.id AND o.status = 'pending'
			RETURNING o.id
		), ins AS (
			INSERT INTO payment.order_tickets (ticket_id, order_id, ticket_type_id, event_id, seq)
			SELECT t.id, t.order_id, t.tt, t.ev, t.seq
			FROM unnest($3::uuid[], $4::uuid[], $5::uuid[], $6::uuid[], $7::int[]) AS t(id, order_id, tt, ev, seq)
			WHERE t.order_id IN (SELECT id FROM upd)
			ON CONFLICT (ticket_id) DO NOTHING
		)
		SELECT id FROM upd`, ids, charges, tids, torders, ttypes, tevents, seqs)
	if err == nil {
		var changed []uuid.UUID
		changed, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		if err == nil {
			var found map[uuid.UUID]payment.Order
			found, err = s.readOrders(ctx, ids)
			if err == nil {
				fresh := make(map[uuid.UUID]bool, len(changed))
				for _, id := range changed {
					fresh[id] = true
				}
				for i, r := range reqs {
					o, ok := found[r.id]
					switch {
					case !ok:
						out[i].err = payment.ErrOrderNotFound
					case o.Status == payment.StatusFailed:
						out[i].err = payment.ErrOrderTerminal.WithDetail("the order had failed")
					default:
						// A repeat of the same order in one batch counts as changed once.
						out[i] = orderResult{o: o, changed: fresh[r.id]}
						delete(fresh, r.id)
					}
				}
				return out
			}
		}
	}
	for i, r := range reqs {
		out[i].err = fmt.Errorf("confirm order %s: %w", r.id, err)
	}
	return out
}

// Fail implements payment.OrderStore.
func (s *Store) Fail(ctx context.Context, id uuid.UUID, reason string) (payment.Order, bool, error) {
	return s.change(ctx, id, func(tx pgx.Tx) (pgx.Row, error) {
		return tx.QueryRow(ctx, `UPDATE payment.orders SET status = 'failed', status_detail = $2, version = version + 1,
			updated_at = now() WHERE id = $1 AND status = 'pending' RETURNING `+orderColumns, id, reason), nil
	}, func(o payment.Order) error {
		if o.Status.Paid() {
			return payment.ErrOrderTerminal.WithDetail("the order was confirmed")
		}
		return nil
	}, nil)
}

// FailRefunded implements payment.OrderStore.
func (s *Store) FailRefunded(ctx context.Context, id uuid.UUID, reason string, r payment.Refund) (payment.Order, bool, error) {
	o, changed, err := s.change(ctx, id, func(tx pgx.Tx) (pgx.Row, error) {
		return tx.QueryRow(ctx, `UPDATE payment.orders SET status = 'failed', status_detail = $2, refunded_cents = $3,
			version = version + 1, updated_at = now() WHERE id = $1 AND status = 'pending' RETURNING `+orderColumns, id, reason, r.AmountCents), nil
	}, func(o payment.Order) error {
		if o.Status.Paid() {
			return payment.ErrOrderTerminal.WithDetail("the order was confirmed")
		}
		return nil
	}, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO payment.refunds (id, order_id, key, amount_cents, reason, status, provider_refund_id, created_at, completed_at)
			VALUES ($1, $2, $3, $4, $5, 'succeeded', $6, $7, $8) ON CONFLICT (order_id, key) DO NOTHING`,
			r.ID, id, r.Key, r.AmountCents, r.Reason, r.ProviderRefundID, r.CreatedAt, r.CompletedAt)
		return err
	})
	if err != nil || !changed {
		return o, changed, err
	}
	r.OrderID, r.Status = id, payment.RefundSucceeded
	o.Refunds = append(o.Refunds, r)
	return o, true, nil
}

// Unpublished implements payment.OrderStore.
func (s *Store) Unpublished(ctx context.Context, before time.Time, limit int) ([]payment.OutboxMessage, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, order_id, created_at FROM payment.outbox WHERE created_at < $1 ORDER BY id LIMIT $2`, before, limit)
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (payment.OutboxMessage, error) {
		var m payment.OutboxMessage
		err := r.Scan(&m.ID, &m.OrderID, &m.CreatedAt)
		return m, err
	})
}

// Published implements payment.OrderStore.
func (s *Store) Published(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM payment.outbox WHERE id = ANY($1)`, ids); err != nil {
		return fmt.Errorf("clear outbox: %w", err)
	}
	return nil
}

// StalePending implements payment.OrderStore.
func (s *Store) StalePending(ctx context.Context, before time.Time, limit int) ([]uuid.UUID, error) {
	rows, err := s.pool.Query(ctx, `SELECT id FROM payment.orders o
		WHERE status IN ('pending', 'refund_pending') AND coalesce(attempted_at, created_at) < $1
		  AND NOT EXISTS (SELECT 1 FROM payment.outbox b WHERE b.order_id = o.id)
		ORDER BY created_at LIMIT $2`, before, limit)
	if err != nil {
		return nil, fmt.Errorf("find stale orders: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
}

// Touch implements payment.OrderStore.
func (s *Store) Touch(ctx context.Context, ids []uuid.UUID, at time.Time) error {
	if _, err := s.pool.Exec(ctx, `UPDATE payment.orders SET attempted_at = $2 WHERE id = ANY($1)`, ids, at); err != nil {
		return fmt.Errorf("touch orders: %w", err)
	}
	return nil
}

// PurgeIdempotency implements payment.OrderStore.
func (s *Store) PurgeIdempotency(ctx context.Context, now time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM payment.idempotency_keys WHERE expires_at <= $1`, now)
	if err != nil {
		return 0, fmt.Errorf("purge idempotency keys: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// Ticket implements payment.OrderStore.
func (s *Store) Ticket(ctx context.Context, id uuid.UUID) (payment.Ticket, error) {
	var t payment.Ticket
	err := s.pool.QueryRow(ctx, `SELECT ticket_id, order_id, ticket_type_id, event_id, seq FROM payment.order_tickets WHERE ticket_id = $1`,
		id).Scan(&t.ID, &t.OrderID, &t.TicketTypeID, &t.EventID, &t.Seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return payment.Ticket{}, payment.ErrTicketNotFound
	}
	if err != nil {
		return payment.Ticket{}, fmt.Errorf("read ticket: %w", err)
	}
	return t, nil
}

// CheckIn implements payment.OrderStore.
func (s *Store) CheckIn(ctx context.Context, ticketID, staff uuid.UUID, at time.Time) (payment.CheckIn, bool, error) {
	t, err := s.Ticket(ctx, ticketID)
	if err != nil {
		return payment.CheckIn{}, false, err
	}
	c := payment.CheckIn{Ticket: t}
	// The insert is the decision: of two scanners racing, exactly one inserts, and none once the
	// order is void.
	tag, err := s.pool.Exec(ctx, `INSERT INTO payment.checkins (ticket_id, staff_id, checked_in_at)
		SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM payment.orders WHERE id = $4 AND voided)
		ON CONFLICT (ticket_id) DO NOTHING`, ticketID, staff, at, t.OrderID)
	if err != nil {
		return payment.CheckIn{}, false, fmt.Errorf("check in: %w", err)
	}
	first := tag.RowsAffected() == 1
	err = s.pool.QueryRow(ctx, `SELECT staff_id, checked_in_at FROM payment.checkins WHERE ticket_id = $1`,
		ticketID).Scan(&c.StaffID, &c.CheckedInAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return payment.CheckIn{}, false, payment.ErrTicketVoid
	}
	if err != nil {
		return payment.CheckIn{}, false, fmt.Errorf("read check-in: %w", err)
	}
	c.CheckedInAt = c.CheckedInAt.UTC()
	return c, first, nil
}

// TicketTypeOrders implements payment.OrderStore.
func (s *Store) TicketTypeOrders(ctx context.Context, ticketTypes []uuid.UUID, status payment.Status, after *payment.OrderCursor, limit int) ([]payment.Order, error) {
	where := `ticket_type_id = ANY($1)`
	args := []any{ticketTypes}
	switch status {
	case "":
	case payment.StatusDelayed:
		args = append(args, payment.DetailDelayed)
		where += fmt.Sprintf(` AND status = 'pending' AND status_detail = $%d`, len(args))
	default:
		args = append(args, string(status))
		where += fmt.Sprintf(` AND status = $%d`, len(args))
	}
	if after != nil {
		args = append(args, after.CreatedAt, after.ID)
		where += fmt.Sprintf(` AND (created_at, id) < ($%d, $%d)`, len(args)-1, len(args))
	}
	args = append(args, limit)
	rows, err := s.pool.Query(ctx, `SELECT `+orderColumns+` FROM payment.orders WHERE `+where+
		fmt.Sprintf(` ORDER BY created_at DESC, id DESC LIMIT $%d`, len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("list ticket type orders: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (payment.Order, error) { return scanOrder(r) })
	if err != nil {
		return nil, fmt.Errorf("list ticket type orders: %w", err)
	}
	for i := range out {
		if out[i].Status.Paid() {
			if out[i].Tickets, err = s.tickets(ctx, nil, out[i].ID); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// Sales implements payment.OrderStore.
func (s *Store) Sales(ctx context.Context, ticketTypes []uuid.UUID) ([]payment.Sales, error) {
	by := map[uuid.UUID]*payment.Sales{}
	get := func(tt uuid.UUID) *payment.Sales {
		if by[tt] == nil {
			by[tt] = &payment.Sales{TicketTypeID: tt}
		}
		return by[tt]
	}
	rows, err := s.pool.Query(ctx, `SELECT ticket_type_id,
			count(*) FILTER (WHERE status = 'pending'),
			count(*) FILTER (WHERE status = 'pending' AND status_detail = $2),
			count(*) FILTER (WHERE status = 'confirmed'),
			count(*) FILTER (WHERE status = 'failed'),
			coalesce(sum(quantity) FILTER (WHERE status = 'confirmed'), 0),
			coalesce(sum(amount_cents) FILTER (WHERE status = 'confirmed'), 0),
			count(*) FILTER (WHERE status = 'refund_pending'),
			count(*) FILTER (WHERE status IN ('refunded', 'cancelled'))
		FROM payment.orders WHERE ticket_type_id = ANY($1) GROUP BY ticket_type_id`, ticketTypes, payment.DetailDelayed)
	if err != nil {
		return nil, fmt.Errorf("sum orders: %w", err)
	}
	var (
		tt                                  uuid.UUID
		pending, delayed, confirmed, failed int
		tickets, refunding, refunded        int
		revenue                             int64
	)
	_, err = pgx.ForEachRow(rows, []any{&tt, &pending, &delayed, &confirmed, &failed, &tickets, &revenue, &refunding, &refunded}, func() error {
		*get(tt) = payment.Sales{TicketTypeID: tt, Pending: pending, Delayed: delayed, Confirmed: confirmed,
			Failed: failed, Tickets: tickets, RevenueCents: revenue, Refunding: refunding, Refunded: refunded}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sum orders: %w", err)
	}
	rows, err = s.pool.Query(ctx, `SELECT t.ticket_type_id, count(*) FROM payment.order_tickets t
		JOIN payment.checkins c ON c.ticket_id = t.ticket_id
		WHERE t.ticket_type_id = ANY($1) GROUP BY t.ticket_type_id`, ticketTypes)
	if err != nil {
		return nil, fmt.Errorf("count check-ins: %w", err)
	}
	var n int
	_, err = pgx.ForEachRow(rows, []any{&tt, &n}, func() error {
		get(tt).CheckedIn = n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count check-ins: %w", err)
	}
	out := make([]payment.Sales, 0, len(by))
	for _, sl := range by {
		out = append(out, *sl)
	}
	slices.SortFunc(out, func(a, b payment.Sales) int { return slices.Compare(a.TicketTypeID[:], b.TicketTypeID[:]) })
	return out, nil
}

// CheckedIn implements payment.OrderStore.
func (s *Store) CheckedIn(ctx context.Context, ticketIDs []uuid.UUID) (map[uuid.UUID]time.Time, error) {
	rows, err := s.pool.Query(ctx, `SELECT ticket_id, checked_in_at FROM payment.checkins WHERE ticket_id = ANY($1)`, ticketIDs)
	if err != nil {
		return nil, fmt.Errorf("read check-ins: %w", err)
	}
	out := map[uuid.UUID]time.Time{}
	var id uuid.UUID
	var at time.Time
	_, err = pgx.ForEachRow(rows, []any{&id, &at}, func() error {
		out[id] = at
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read check-ins: %w", err)
	}
	return out, nil
}

const refundColumns = `id, order_id, key, amount_cents, reason, status, provider_refund_id, created_at, completed_at`

func scanRefund(row pgx.Row) (payment.Refund, error) {
	var (
		r         payment.Refund
		status    string
		completed *time.Time
	)
	err := row.Scan(&r.ID, &r.OrderID, &r.Key, &r.AmountCents, &r.Reason, &status, &r.ProviderRefundID, &r.CreatedAt, &completed)
	if errors.Is(err, pgx.ErrNoRows) {
		return payment.Refund{}, payment.ErrRefundNotFound
	}
	if err != nil {
		return payment.Refund{}, fmt.Errorf("read refund: %w", err)
	}
	r.Status, r.CreatedAt = payment.RefundStatus(status), r.CreatedAt.UTC()
	if completed != nil {
		r.CompletedAt = completed.UTC()
	}
	return r, nil
}

// readRefunds adds their refunds to the orders that have any.
func (s *Store) readRefunds(ctx context.Context, orders map[uuid.UUID]payment.Order) error {
	var ids []uuid.UUID
	for id, o := range orders {
		if (o.Status.Paid() && o.Status != payment.StatusConfirmed) || o.RefundedCents > 0 {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	rows, err := s.pool.Query(ctx, `SELECT `+refundColumns+` FROM payment.refunds WHERE order_id = ANY($1) ORDER BY created_at, id`, ids)
	if err != nil {
		return fmt.Errorf("read refunds: %w", err)
	}
	refunds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (payment.Refund, error) { return scanRefund(r) })
	if err != nil {
		return fmt.Errorf("read refunds: %w", err)
	}
	for _, r := range refunds {
		o := orders[r.OrderID]
		o.Refunds = append(o.Refunds, r)
		orders[r.OrderID] = o
	}
	return nil
}

// RequestRefund implements payment.OrderStore: the order is locked while its refunds are summed,
// so two requests can never give back more than was paid between them.
func (s *Store) RequestRefund(ctx context.Context, req payment.RefundRequest) (payment.RefundResult, error) {
	var res payment.RefundResult
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		o, err := scanOrder(tx.QueryRow(ctx, `SELECT `+orderColumns+` FROM payment.orders WHERE id = $1 FOR UPDATE`, req.OrderID))
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT `+refundColumns+` FROM payment.refunds WHERE order_id = $1 ORDER BY created_at, id`, o.ID)
		if err != nil {
			return fmt.Errorf("read refunds: %w", err)
		}
		if o.Refunds, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (payment.Refund, error) { return scanRefund(r) }); err != nil {
			return fmt.Errorf("read refunds: %w", err)
		}
		for _, r := range o.Refunds {
			if r.Key == req.Key {
				res = payment.RefundResult{Order: o, Refund: r}
				return nil
			}
		}
		if (o.Status != payment.StatusConfirmed && o.Status != payment.StatusRefundPending) || o.Voided {
			return payment.ErrNotRefundable.WithDetail("the order is %s", o.Status)
		}
		left := o.RefundableCents()
		amount := req.AmountCents
		if amount == 0 {
			amount = left
		}
		if amount > left {
			return payment.ErrRefundTooLarge.WithDetail("%d cents are left to refund", left)
		}
		at := req.At.UTC()
		status := payment.StatusRefundPending
		if amount == 0 {
			status = payment.StatusCancelled
			if o.RefundedCents > 0 {
				status = payment.StatusRefunded
			}
		}
		voided, prior := o.Voided || req.Cancel, o.Refunds
		if o, err = scanOrder(tx.QueryRow(ctx, `UPDATE payment.orders SET status = $2, voided = $3, version = version + 1,
			updated_at = $4 WHERE id = $1 RETURNING `+orderColumns, o.ID, string(status), voided, at)); err != nil {
			return err
		}
		res = payment.RefundResult{Order: o, Created: true}
		if amount > 0 {
			r := payment.Refund{ID: uuid.New(), OrderID: o.ID, Key: req.Key, AmountCents: amount, Reason: req.Reason,
				Status: payment.RefundPending, CreatedAt: at}
			if _, err := tx.Exec(ctx, `INSERT INTO payment.refunds (id, order_id, key, amount_cents, reason, status, created_at)
				VALUES ($1, $2, $3, $4, $5, 'pending', $6)`, r.ID, r.OrderID, r.Key, r.AmountCents, r.Reason, at); err != nil {
				return fmt.Errorf("insert refund: %w", err)
			}
			res.Refund = r
			res.Message = payment.OutboxMessage{OrderID: o.ID, CreatedAt: at}
			if err := tx.QueryRow(ctx, `INSERT INTO payment.outbox (order_id, created_at) VALUES ($1, $2) RETURNING id`,
				o.ID, at).Scan(&res.Message.ID); err != nil {
				return fmt.Errorf("insert outbox: %w", err)
			}
		}
		res.Order.Refunds = prior
		if amount > 0 {
			res.Order.Refunds = append(prior, res.Refund)
		}
		res.Order.Tickets, err = s.tickets(ctx, tx, o.ID)
		return err
	})
	if err != nil {
		if problemOf(err) {
			return payment.RefundResult{}, err
		}
		return payment.RefundResult{}, fmt.Errorf("refund order %s: %w", req.OrderID, err)
	}
	return res, nil
}

// CompleteRefund implements payment.OrderStore.
func (s *Store) CompleteRefund(ctx context.Context, refundID uuid.UUID, providerRefundID string, at time.Time) (payment.Order, bool, error) {
	var orderID uuid.UUID
	changed := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var amount int64
		err := tx.QueryRow(ctx, `UPDATE payment.refunds SET status = 'succeeded', provider_refund_id = $2, completed_at = $3
			WHERE id = $1 AND status = 'pending' RETURNING order_id, amount_cents`, refundID, providerRefundID, at).Scan(&orderID, &amount)
		if errors.Is(err, pgx.ErrNoRows) {
			err = tx.QueryRow(ctx, `SELECT order_id FROM payment.refunds WHERE id = $1`, refundID).Scan(&orderID)
			if errors.Is(err, pgx.ErrNoRows) {
				return payment.ErrRefundNotFound
			}
			return err
		}
		if err != nil {
			return err
		}
		changed = true
		_, err = tx.Exec(ctx, `UPDATE payment.orders SET refunded_cents = refunded_cents + $2, version = version + 1, updated_at = $3,
			status = CASE WHEN EXISTS (SELECT 1 FROM payment.refunds WHERE order_id = $1 AND status = 'pending') THEN status
				WHEN voided THEN 'refunded' ELSE 'confirmed' END
			WHERE id = $1`, orderID, amount, at)
		return err
	})
	if err != nil {
		if problemOf(err) {
			return payment.Order{}, false, err
		}
		return payment.Order{}, false, fmt.Errorf("complete refund %s: %w", refundID, err)
	}
	found, err := s.readOrders(ctx, []uuid.UUID{orderID})
	if err != nil {
		return payment.Order{}, false, err
	}
	return found[orderID], changed, nil
}

const cancellationColumns = `event_id, organizer_id, ticket_type_ids, reason, created_at, finished_at`

func scanCancellation(row pgx.Row) (payment.EventCancellation, error) {
	var (
		c        payment.EventCancellation
		finished *time.Time
	)
	err := row.Scan(&c.EventID, &c.OrganizerID, &c.TicketTypes, &c.Reason, &c.CreatedAt, &finished)
	if errors.Is(err, pgx.ErrNoRows) {
		return payment.EventCancellation{}, payment.ErrCancellationNotFound
	}
	if err != nil {
		return payment.EventCancellation{}, fmt.Errorf("read event cancellation: %w", err)
	}
	c.CreatedAt = c.CreatedAt.UTC()
	if finished != nil {
		c.FinishedAt = finished.UTC()
	}
	return c, nil
}

// CancelEvent implements payment.OrderStore.
func (s *Store) CancelEvent(ctx context.Context, c payment.EventCancellation) (payment.EventCancellation, bool, error) {
	if c.TicketTypes == nil {
		c.TicketTypes = []uuid.UUID{}
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO payment.event_cancellations (event_id, organizer_id, ticket_type_ids, reason, created_at)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING`, c.EventID, c.OrganizerID, c.TicketTypes, c.Reason, c.CreatedAt)
	if err != nil {
		return payment.EventCancellation{}, false, fmt.Errorf("cancel event %s: %w", c.EventID, err)
	}
	first, err := s.EventCancellation(ctx, c.EventID)
	return first, tag.RowsAffected() == 1, err
}

// EventCancellation implements payment.OrderStore.
func (s *Store) EventCancellation(ctx context.Context, eventID uuid.UUID) (payment.EventCancellation, error) {
	return scanCancellation(s.pool.QueryRow(ctx, `SELECT `+cancellationColumns+` FROM payment.event_cancellations WHERE event_id = $1`, eventID))
}

// OpenCancellations implements payment.OrderStore.
func (s *Store) OpenCancellations(ctx context.Context, limit int) ([]payment.EventCancellation, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+cancellationColumns+` FROM payment.event_cancellations
		WHERE finished_at IS NULL ORDER BY created_at LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("read open cancellations: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (payment.EventCancellation, error) { return scanCancellation(r) })
}

// FinishCancellation implements payment.OrderStore.
func (s *Store) FinishCancellation(ctx context.Context, eventID uuid.UUID, at time.Time) error {
	tag, err := s.pool.Exec(ctx, `UPDATE payment.event_cancellations SET finished_at = coalesce(finished_at, $2) WHERE event_id = $1`, eventID, at)
	if err != nil {
		return fmt.Errorf("finish cancellation of %s: %w", eventID, err)
	}
	if tag.RowsAffected() == 0 {
		return payment.ErrCancellationNotFound
	}
	return nil
}
