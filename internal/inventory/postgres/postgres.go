// Package postgres holds the inventory module's PostgreSQL adapter: the catalogue and the truth
// about sales, in the module's own schema (inventory). A sale is one transaction with a
// conditional update (sold + n <= capacity) and the ticket rows keyed by hold id; the table's
// CHECK (sold <= capacity) stands behind it.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/platform/pgpool"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Schema is the module's PostgreSQL schema.
const Schema = "inventory"

// Migrate brings the inventory schema up to date.
func Migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	return pgpool.Migrate(ctx, pool, Schema, migrations, log)
}

// Store is an inventory.Store on PostgreSQL.
type Store struct{ pool *pgxpool.Pool }

var _ inventory.Store = (*Store)(nil)

// NewStore returns a store on pool; run Migrate first.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

const eventColumns = `id, organizer_id, name, venue, description, starts_at, version, created_at, updated_at, cancel_cutoff_hours, cancelled_at`

func scanEvent(row pgx.Row) (inventory.Event, error) {
	var e inventory.Event
	var cancelled pgtype.Timestamptz
	err := row.Scan(&e.ID, &e.OrganizerID, &e.Name, &e.Venue, &e.Description, &e.StartsAt, &e.Version, &e.CreatedAt, &e.UpdatedAt,
		&e.CancelCutoffHours, &cancelled)
	if cancelled.Valid {
		e.CancelledAt = cancelled.Time.UTC()
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return inventory.Event{}, inventory.ErrEventNotFound
	}
	if err != nil {
		return inventory.Event{}, fmt.Errorf("read event: %w", err)
	}
	e.StartsAt, e.CreatedAt, e.UpdatedAt = e.StartsAt.UTC(), e.CreatedAt.UTC(), e.UpdatedAt.UTC()
	return e, nil
}

// CreateEvent implements inventory.Store.
func (s *Store) CreateEvent(ctx context.Context, e inventory.Event) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO inventory.events (`+eventColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		e.ID, e.OrganizerID, e.Name, e.Venue, e.Description, e.StartsAt, e.Version, e.CreatedAt, e.UpdatedAt, e.CancelCutoffHours, nullTime(e.CancelledAt))
	if err != nil {
		return fmt.Errorf("create event: %w", pgpool.DataError(err))
	}
	return nil
}

// takeKey records key in tx unless the owner's key is live; an expired one is replaced.
func takeKey(ctx context.Context, tx pgx.Tx, k inventory.RequestKey) error {
	tag, err := tx.Exec(ctx, `INSERT INTO inventory.request_keys (owner_id, key, request_hash, resource_id, expires_at)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (owner_id, key) DO UPDATE SET request_hash = EXCLUDED.request_hash,
			resource_id = EXCLUDED.resource_id, expires_at = EXCLUDED.expires_at
		WHERE inventory.request_keys.expires_at <= now()`,
		k.Owner, k.Key, k.RequestHash, k.ResourceID, k.ExpiresAt)
	if err != nil {
		return fmt.Errorf("record request key: %w", pgpool.DataError(err))
	}
	if tag.RowsAffected() == 0 {
		return inventory.ErrRequestKeyTaken
	}
	return nil
}

// CreateEventKeyed implements inventory.Store.
func (s *Store) CreateEventKeyed(ctx context.Context, e inventory.Event, key inventory.RequestKey) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := takeKey(ctx, tx, key); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO inventory.events (`+eventColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
			e.ID, e.OrganizerID, e.Name, e.Venue, e.Description, e.StartsAt, e.Version, e.CreatedAt, e.UpdatedAt, e.CancelCutoffHours, nullTime(e.CancelledAt))
		if err != nil {
			return fmt.Errorf("create event: %w", pgpool.DataError(err))
		}
		return nil
	})
}

// RequestKey implements inventory.Store.
func (s *Store) RequestKey(ctx context.Context, owner uuid.UUID, key string, now time.Time) (inventory.RequestKey, error) {
	k := inventory.RequestKey{Owner: owner, Key: key}
	err := s.pool.QueryRow(ctx, `SELECT request_hash, resource_id, expires_at FROM inventory.request_keys
		WHERE owner_id = $1 AND key = $2 AND expires_at > $3`, owner, key, now).Scan(&k.RequestHash, &k.ResourceID, &k.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return inventory.RequestKey{}, inventory.ErrRequestKeyNotFound
	}
	if err != nil {
		return inventory.RequestKey{}, fmt.Errorf("read request key: %w", pgpool.DataError(err))
	}
	return k, nil
}

// UpdateEvent implements inventory.Store.
func (s *Store) UpdateEvent(ctx context.Context, id uuid.UUID, fn func(*inventory.Event) error) (inventory.Event, error) {
	var out inventory.Event
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		e, err := scanEvent(tx.QueryRow(ctx, `SELECT `+eventColumns+` FROM inventory.events WHERE id = $1 FOR UPDATE`, id))
		if err != nil {
			return err
		}
		if err := fn(&e); err != nil {
			return err
		}
		out, err = scanEvent(tx.QueryRow(ctx, `UPDATE inventory.events SET name = $2, venue = $3, description = $4, starts_at = $5,
			cancel_cutoff_hours = $6, cancelled_at = $7, version = version + 1, updated_at = now() WHERE id = $1 RETURNING `+eventColumns,
			id, e.Name, e.Venue, e.Description, e.StartsAt, e.CancelCutoffHours, nullTime(e.CancelledAt)))
		return pgpool.DataError(err)
	})
	return out, err
}

// Event implements inventory.Store.
func (s *Store) Event(ctx context.Context, id uuid.UUID) (inventory.Event, error) {
	return scanEvent(s.pool.QueryRow(ctx, `SELECT `+eventColumns+` FROM inventory.events WHERE id = $1`, id))
}

// ListEvents implements inventory.Store.
func (s *Store) ListEvents(ctx context.Context, after inventory.Cursor, limit int) ([]inventory.Event, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+eventColumns+` FROM inventory.events
		WHERE (starts_at, id) > ($1, $2) ORDER BY starts_at, id LIMIT $3`, after.StartsAt, after.ID, limit)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	defer rows.Close()
	var out []inventory.Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

const ticketTypeColumns = `id, event_id, name, price_cents, currency, capacity, sold, max_per_order, sales_start, sales_end, created_at, updated_at, returned`

func scanTicketType(row pgx.Row) (inventory.TicketType, error) {
	var t inventory.TicketType
	var start, end pgtype.Timestamptz
	err := row.Scan(&t.ID, &t.EventID, &t.Name, &t.PriceCents, &t.Currency, &t.Capacity, &t.Sold, &t.MaxPerOrder,
		&start, &end, &t.CreatedAt, &t.UpdatedAt, &t.Returned)
	if errors.Is(err, pgx.ErrNoRows) {
		return inventory.TicketType{}, inventory.ErrTicketTypeNotFound
	}
	if err != nil {
		return inventory.TicketType{}, fmt.Errorf("read ticket type: %w", err)
	}
	if start.Valid {
		t.SalesStart = start.Time.UTC()
	}
	if end.Valid {
		t.SalesEnd = end.Time.UTC()
	}
	t.CreatedAt, t.UpdatedAt = t.CreatedAt.UTC(), t.UpdatedAt.UTC()
	return t, nil
}

func nullTime(t time.Time) pgtype.Timestamptz {
	return pgtype.Timestamptz{Time: t, Valid: !t.IsZero()}
}

// CreateTicketType implements inventory.Store.
func (s *Store) CreateTicketType(ctx context.Context, t inventory.TicketType) error {
	return s.createTicketType(ctx, t, nil)
}

// CreateTicketTypeKeyed implements inventory.Store.
func (s *Store) CreateTicketTypeKeyed(ctx context.Context, t inventory.TicketType, key inventory.RequestKey) error {
	return s.createTicketType(ctx, t, &key)
}

func (s *Store) createTicketType(ctx context.Context, t inventory.TicketType, key *inventory.RequestKey) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if key != nil {
			if err := takeKey(ctx, tx, *key); err != nil {
				return err
			}
		}
		tag, err := tx.Exec(ctx, `UPDATE inventory.events SET version = version + 1, updated_at = now() WHERE id = $1`, t.EventID)
		if err != nil {
			return fmt.Errorf("create ticket type: %w", pgpool.DataError(err))
		}
		if tag.RowsAffected() == 0 {
			return inventory.ErrEventNotFound
		}
		_, err = tx.Exec(ctx, `INSERT INTO inventory.ticket_types (`+ticketTypeColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
			t.ID, t.EventID, t.Name, t.PriceCents, t.Currency, t.Capacity, t.Sold, t.MaxPerOrder,
			nullTime(t.SalesStart), nullTime(t.SalesEnd), t.CreatedAt, t.UpdatedAt, t.Returned)
		if err != nil {
			return fmt.Errorf("create ticket type: %w", pgpool.DataError(err))
		}
		return nil
	})
}

// UpdateTicketType implements inventory.Store.
func (s *Store) UpdateTicketType(ctx context.Context, id uuid.UUID, fn func(*inventory.TicketType) error) (inventory.TicketType, error) {
	var out inventory.TicketType
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		t, err := scanTicketType(tx.QueryRow(ctx, `SELECT `+ticketTypeColumns+` FROM inventory.ticket_types WHERE id = $1 FOR UPDATE`, id))
		if err != nil {
			return err
		}
		if err := fn(&t); err != nil {
			return err
		}
		if t.Capacity < t.SoldNow() {
			return inventory.ErrCapacityBelowCommitted.WithDetail("%d tickets are sold", t.SoldNow())
		}
		out, err = scanTicketType(tx.QueryRow(ctx, `UPDATE inventory.ticket_types SET name = $2, price_cents = $3, capacity = $4,
			max_per_order = $5, sales_start = $6, sales_end = $7, updated_at = now() WHERE id = $1 RETURNING `+ticketTypeColumns,
			id, t.Name, t.PriceCents, t.Capacity, t.MaxPerOrder, nullTime(t.SalesStart), nullTime(t.SalesEnd)))
		if err != nil {
			return pgpool.DataError(err)
		}
		_, err = tx.Exec(ctx, `UPDATE inventory.events SET version = version + 1, updated_at = now() WHERE id = $1`, t.EventID)
		return err
	})
	return out, err
}

// TicketType implements inventory.Store.
func (s *Store) TicketType(ctx context.Context, id uuid.UUID) (inventory.TicketType, error) {
	return scanTicketType(s.pool.QueryRow(ctx, `SELECT `+ticketTypeColumns+` FROM inventory.ticket_types WHERE id = $1`, id))
}

// TicketTypes implements inventory.Store.
func (s *Store) TicketTypes(ctx context.Context, eventID uuid.UUID) ([]inventory.TicketType, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+ticketTypeColumns+` FROM inventory.ticket_types WHERE event_id = $1 ORDER BY created_at, id`, eventID)
	if err != nil {
		return nil, fmt.Errorf("list ticket types: %w", err)
	}
	defer rows.Close()
	var out []inventory.TicketType
	for rows.Next() {
		t, err := scanTicketType(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

const ticketColumns = `id, ticket_type_id, event_id, hold_id, order_id, customer_id, seq, created_at`

func scanTickets(rows pgx.Rows) ([]inventory.Ticket, error) {
	defer rows.Close()
	var out []inventory.Ticket
	for rows.Next() {
		var t inventory.Ticket
		if err := rows.Scan(&t.ID, &t.TicketTypeID, &t.EventID, &t.HoldID, &t.OrderID, &t.CustomerID, &t.Seq, &t.CreatedAt); err != nil {
			return nil, fmt.Errorf("read ticket: %w", err)
		}
		t.CreatedAt = t.CreatedAt.UTC()
		out = append(out, t)
	}
	return out, rows.Err()
}

// Tickets implements inventory.Store.
func (s *Store) Tickets(ctx context.Context, holdID string) ([]inventory.Ticket, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+ticketColumns+` FROM inventory.tickets WHERE hold_id = $1 ORDER BY seq`, holdID)
	if err != nil {
		return nil, fmt.Errorf("read tickets: %w", err)
	}
	return scanTickets(rows)
}

// errDoesNotFit rolls back a batch whose total does not fit the remaining capacity.
var errDoesNotFit = errors.New("batch does not fit")

// maxTicketsPerHold bounds the tickets of one hold, as the CHECK on ticket_types.max_per_order
// does. The limit keeps the per-hold lookup a subquery the planner cannot flatten into a join that
// scans the whole table.
const maxTicketsPerHold = 50

// Commit implements inventory.Store. The whole batch is tried in one transaction; if it does
// not fit, or two commits of one hold raced, each request is retried on its own so that every one
// that fits still sells.
func (s *Store) Commit(ctx context.Context, reqs []inventory.CommitRequest) []inventory.CommitResult {
	results := make([]inventory.CommitResult, len(reqs))
	if len(reqs) == 1 {
		results[0] = s.commitOne(ctx, reqs[0])
		return results
	}
	err := s.commit(ctx, reqs, results)
	switch {
	case err == nil:
	case errors.Is(err, errDoesNotFit) || pgpool.IsUniqueViolation(err, ""):
		for i := range reqs {
			results[i] = s.commitOne(ctx, reqs[i])
		}
	default:
		for i := range results {
			results[i] = inventory.CommitResult{Err: s.commitErr(ctx, reqs[i], err)}
		}
	}
	return results
}

func (s *Store) commitOne(ctx context.Context, req inventory.CommitRequest) inventory.CommitResult {
	one := make([]inventory.CommitResult, 1)
	err := s.commit(ctx, []inventory.CommitRequest{req}, one)
	if pgpool.IsUniqueViolation(err, "") {
		// A concurrent commit of the same hold won; this attempt finds its tickets.
		err = s.commit(ctx, []inventory.CommitRequest{req}, one)
	}
	if err != nil {
		return inventory.CommitResult{Err: s.commitErr(ctx, req, err)}
	}
	return one[0]
}

func (s *Store) commitErr(ctx context.Context, req inventory.CommitRequest, err error) error {
	if !errors.Is(err, errDoesNotFit) {
		return fmt.Errorf("commit hold %s: %w", req.Hold.ID, err)
	}
	var capacity, sold int
	e := s.pool.QueryRow(ctx, `SELECT capacity, sold FROM inventory.ticket_types WHERE id = $1`,
		req.Hold.TicketTypeID).Scan(&capacity, &sold)
	if errors.Is(e, pgx.ErrNoRows) {
		// The conditional update found no row: the ticket type does not exist (as the memory
		// store says), which is not the same as sold out.
		return inventory.ErrTicketTypeNotFound
	}
	if e != nil {
		return inventory.SoldOut(0)
	}
	return inventory.SoldOut(max(capacity-sold, 0))
}

// commit sells reqs (all of one ticket type) and fills results. The common case, where none of
// the holds has been sold before, is one statement: the committer serializes a ticket type's
// batches, so every round trip spent holding the hot row delays the next batch. Anything else (a
// repeated commit, a batch that does not fit, a missing ticket type) takes the transaction that
// tells those cases apart.
func (s *Store) commit(ctx context.Context, reqs []inventory.CommitRequest, results []inventory.CommitResult) error {
	done, err := s.commitNew(ctx, reqs, results)
	if err != nil || done {
		return err
	}
	return s.commitTx(ctx, reqs, results)
}

// ticketRows are new ticket rows, column by column, for one multi-row insert.
type ticketRows struct {
	ids, orders, customers []uuid.UUID
	holds                  []string
	seqs                   []int32
	created                []time.Time
}

// add makes the tickets of r (without their event id, which the caller fills in) and appends
// their rows.
func (t *ticketRows) add(r inventory.CommitRequest) []inventory.Ticket {
	ts := make([]inventory.Ticket, r.Hold.Quantity)
	for q := range ts {
		ts[q] = inventory.Ticket{
			ID: uuid.New(), TicketTypeID: r.Hold.TicketTypeID, HoldID: r.Hold.ID, OrderID: r.OrderID,
			CustomerID: r.Hold.CustomerID, Seq: q + 1, CreatedAt: r.Now.UTC(),
		}
		t.ids, t.holds, t.orders = append(t.ids, ts[q].ID), append(t.holds, r.Hold.ID), append(t.orders, r.OrderID)
		t.customers, t.seqs, t.created = append(t.customers, r.Hold.CustomerID), append(t.seqs, int32(q+1)), append(t.created, ts[q].CreatedAt)
	}
	return ts
}

func setEvent(ts []inventory.Ticket, eventID uuid.UUID) {
	for i := range ts {
		ts[i].EventID = eventID
	}
}

// commitNew sells reqs in one statement if none of their holds has tickets yet and they all fit.
// It reports false, having changed nothing, when that is not so.
func (s *Store) commitNew(ctx context.Context, reqs []inventory.CommitRequest, results []inventory.CommitResult) (bool, error) {
	var rows ticketRows
	tickets := make([][]inventory.Ticket, len(reqs))
	for i, r := range reqs {
		tickets[i] = rows.add(r)
	}
	// The holds are looked up one by one on the (hold_id, seq) index: a plain hold_id = ANY($3)
	// makes the planner scan the whole table once its statistics lag behind a fast-growing
	// tickets table, which is just what an on-sale does to it.
	// The insert reads the update's row, so it adds nothing when the update changed nothing. A
	// commit of the same hold racing this one on another replica, unseen by NOT EXISTS, is stopped
	// by the (hold_id, seq) unique constraint.
	var sold int
	var eventID uuid.UUID
	err := s.pool.QueryRow(ctx, `WITH upd AS (
			UPDATE inventory.ticket_types SET sold = sold + $8, updated_at = now()
			WHERE id = $2 AND sold + $8 <= capacity
			  AND NOT EXISTS (SELECT 1 FROM unnest($3::text[]) AS h(id)
			    JOIN inventory.tickets t ON t.hold_id = h.id AND t.seq = 1)
			RETURNING sold, event_id
		), ins AS (
			INSERT INTO inventory.tickets (`+ticketColumns+`)
			SELECT u.id, $2, upd.event_id, u.hold_id, u.order_id, u.customer_id, u.seq, u.created_at
			FROM upd, unnest($1::uuid[], $3::text[], $4::uuid[], $5::uuid[], $6::int[], $7::timestamptz[])
			  AS u(id, hold_id, order_id, customer_id, seq, created_at)
		)
		SELECT sold, event_id FROM upd`,
		rows.ids, reqs[0].Hold.TicketTypeID, rows.holds, rows.orders, rows.customers, rows.seqs, rows.created,
		len(rows.ids)).Scan(&sold, &eventID)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for i := range reqs {
		setEvent(tickets[i], eventID)
		results[i] = inventory.CommitResult{Tickets: tickets[i], Sold: sold}
	}
	return true, nil
}

// commitTx runs one transaction for reqs that finds the tickets of holds already sold, sells the
// rest if they fit, and fills results.
func (s *Store) commitTx(ctx context.Context, reqs []inventory.CommitRequest, results []inventory.CommitResult) error {
	tt := reqs[0].Hold.TicketTypeID
	holdIDs := make([]string, len(reqs))
	for i, r := range reqs {
		holdIDs[i] = r.Hold.ID
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT t.* FROM unnest($1::text[]) AS h(id) CROSS JOIN LATERAL (
				SELECT `+ticketColumns+` FROM inventory.tickets WHERE hold_id = h.id ORDER BY seq LIMIT $2) t
			ORDER BY t.hold_id, t.seq`, holdIDs, maxTicketsPerHold)
		if err != nil {
			return err
		}
		existing, err := scanTickets(rows)
		if err != nil {
			return err
		}
		byHold := map[string][]inventory.Ticket{}
		for _, t := range existing {
			byHold[t.HoldID] = append(byHold[t.HoldID], t)
		}
		n := 0
		for _, r := range reqs {
			if _, done := byHold[r.Hold.ID]; !done {
				n += r.Hold.Quantity
			}
		}
		var sold int
		var eventID uuid.UUID
		if n > 0 {
			err = tx.QueryRow(ctx, `UPDATE inventory.ticket_types SET sold = sold + $2, updated_at = now()
				WHERE id = $1 AND sold - returned + $2 <= capacity RETURNING sold, event_id`, tt, n).Scan(&sold, &eventID)
			if errors.Is(err, pgx.ErrNoRows) {
				return errDoesNotFit
			}
		} else {
			err = tx.QueryRow(ctx, `SELECT sold, event_id FROM inventory.ticket_types WHERE id = $1`, tt).Scan(&sold, &eventID)
		}
		if err != nil {
			return err
		}
		var fresh ticketRows
		for i, r := range reqs {
			if ts, done := byHold[r.Hold.ID]; done {
				results[i] = inventory.CommitResult{Tickets: ts, Sold: sold}
				continue
			}
			ts := fresh.add(r)
			setEvent(ts, eventID)
			results[i] = inventory.CommitResult{Tickets: ts, Sold: sold}
		}
		if len(fresh.ids) == 0 {
			return nil
		}
		_, err = tx.Exec(ctx, `INSERT INTO inventory.tickets (`+ticketColumns+`)
			SELECT u.id, $2, $3, u.hold_id, u.order_id, u.customer_id, u.seq, u.created_at
			FROM unnest($1::uuid[], $4::text[], $5::uuid[], $6::uuid[], $7::int[], $8::timestamptz[])
			  AS u(id, hold_id, order_id, customer_id, seq, created_at)`,
			fresh.ids, tt, eventID, fresh.holds, fresh.orders, fresh.customers, fresh.seqs, fresh.created)
		return err
	})
}

const roomColumns = `event_id, rate_per_minute, max_shoppers, opens_at, pass_lifetime_s, paused, closed, secret, version, created_at, updated_at`

func scanRoom(row pgx.Row) (inventory.Room, error) {
	var r inventory.Room
	var lifetime int64
	err := row.Scan(&r.EventID, &r.RatePerMinute, &r.MaxShoppers, &r.OpensAt, &lifetime, &r.Paused, &r.Closed, &r.Secret,
		&r.Version, &r.CreatedAt, &r.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return inventory.Room{}, inventory.ErrRoomNotFound
	}
	if err != nil {
		return inventory.Room{}, fmt.Errorf("read waiting room: %w", err)
	}
	r.PassLifetime = time.Duration(lifetime) * time.Second
	r.OpensAt, r.CreatedAt, r.UpdatedAt = r.OpensAt.UTC(), r.CreatedAt.UTC(), r.UpdatedAt.UTC()
	return r, nil
}

// SaveRoom implements inventory.Store.
func (s *Store) SaveRoom(ctx context.Context, eventID uuid.UUID, fn func(*inventory.Room, bool) error) (inventory.Room, error) {
	var out inventory.Room
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Lock the event first: two first saves of one room then cannot both insert.
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM inventory.events WHERE id = $1 FOR UPDATE`, eventID).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return inventory.ErrEventNotFound
		}
		if err != nil {
			return fmt.Errorf("lock event %s: %w", eventID, err)
		}
		r, err := scanRoom(tx.QueryRow(ctx, `SELECT `+roomColumns+` FROM inventory.waiting_rooms WHERE event_id = $1`, eventID))
		found := err == nil
		if err != nil && !errors.Is(err, inventory.ErrRoomNotFound) {
			return err
		}
		if !found {
			r = inventory.Room{EventID: eventID}
		}
		if err := fn(&r, found); err != nil {
			return err
		}
		out, err = scanRoom(tx.QueryRow(ctx, `INSERT INTO inventory.waiting_rooms (event_id, rate_per_minute, max_shoppers,
			opens_at, pass_lifetime_s, paused, closed, secret) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (event_id) DO UPDATE SET rate_per_minute = $2, max_shoppers = $3, opens_at = $4, pass_lifetime_s = $5,
			paused = $6, closed = $7, secret = $8, version = waiting_rooms.version + 1, updated_at = now()
			RETURNING `+roomColumns,
			eventID, r.RatePerMinute, r.MaxShoppers, r.OpensAt, int64(r.PassLifetime/time.Second), r.Paused, r.Closed, r.Secret))
		return pgpool.DataError(err)
	})
	return out, err
}

// Room implements inventory.Store.
func (s *Store) Room(ctx context.Context, eventID uuid.UUID) (inventory.Room, error) {
	return scanRoom(s.pool.QueryRow(ctx, `SELECT `+roomColumns+` FROM inventory.waiting_rooms WHERE event_id = $1`, eventID))
}

// OpenRooms implements inventory.Store.
func (s *Store) OpenRooms(ctx context.Context) ([]inventory.Room, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+roomColumns+` FROM inventory.waiting_rooms WHERE NOT closed`)
	if err != nil {
		return nil, fmt.Errorf("list waiting rooms: %w", err)
	}
	defer rows.Close()
	var out []inventory.Room
	for rows.Next() {
		r, err := scanRoom(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// ReturnTickets implements inventory.Store.
func (s *Store) ReturnTickets(ctx context.Context, holdID string, at time.Time) (inventory.TicketType, int, error) {
	var (
		out inventory.TicketType
		n   int
	)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var tt uuid.UUID
		err := tx.QueryRow(ctx, `WITH r AS (
				UPDATE inventory.tickets SET returned_at = $2 WHERE hold_id = $1 AND returned_at IS NULL RETURNING ticket_type_id)
			SELECT count(*), coalesce((SELECT ticket_type_id FROM r LIMIT 1), (SELECT ticket_type_id FROM inventory.tickets WHERE hold_id = $1 LIMIT 1),
				'00000000-0000-0000-0000-000000000000'::uuid)
			FROM r`, holdID, at).Scan(&n, &tt)
		if err != nil {
			return err
		}
		if tt == uuid.Nil {
			return inventory.ErrHoldNotFound.WithDetail("hold %s sold no tickets", holdID)
		}
		if n > 0 {
			if _, err := tx.Exec(ctx, `UPDATE inventory.ticket_types SET returned = returned + $2, updated_at = now() WHERE id = $1`, tt, n); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE inventory.events SET version = version + 1, updated_at = now()
				WHERE id = (SELECT event_id FROM inventory.ticket_types WHERE id = $1)`, tt); err != nil {
				return err
			}
		}
		out, err = scanTicketType(tx.QueryRow(ctx, `SELECT `+ticketTypeColumns+` FROM inventory.ticket_types WHERE id = $1`, tt))
		return err
	})
	if err != nil {
		if errors.Is(err, inventory.ErrHoldNotFound) {
			return inventory.TicketType{}, 0, err
		}
		return inventory.TicketType{}, 0, fmt.Errorf("return tickets of %s: %w", holdID, err)
	}
	return out, n, nil
}
