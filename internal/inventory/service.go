package inventory

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"golang.org/x/sync/singleflight"
	"golang.org/x/text/currency"

	"github.com/onsale-dev/onsale/internal/platform/clock"
	"github.com/onsale-dev/onsale/internal/platform/problem"
	"github.com/onsale-dev/onsale/internal/platform/text"
)

// Deps are the module's ports and tools.
type Deps struct {
	Store     Store
	Holds     HoldStore
	Customers CustomerHolds
	Catalog   Catalog // nil: read the store directly (embedded mode, one process)
	// Replica serves catalogue reloads and event listings from a read replica, which may lag
	// (nil: Store). Nothing that decides what can be held or sold reads it: the hold store's
	// figures are loaded from Store, so a lagging replica never makes availability show more
	// tickets than exist.
	Replica CatalogueReader
	Queue   QueueStore
	Clock   clock.Clock
	Log     *slog.Logger
	Meter   metric.Meter
}

// Module is the inventory module: the operations payment needs of holds and sales (its
// Inventory port), plus what its HTTP API and internal API need.
type Module struct {
	cfg       Config
	d         Deps
	committer *committer
	stock     *stockCache    // nil: no reuse
	soldOut   *soldOutMemory // nil: every hold asks the store
	loads     singleflight.Group
	m         metrics
	rooms     *rooms
	ttEvents  sync.Map // ticket type → event, for ending queue passes
	// refreshing holds the events whose shared catalogue a refresh is scheduled for.
	refreshing sync.Map
}

type metrics struct {
	created, released, expired, hits, misses, commits, joined metric.Int64Counter
	batch                                                     metric.Int64Histogram
	// rejected counts refused holds by reason (code → *atomic.Int64). The counter of the same
	// name reads it when metrics are collected: a flash sale refuses almost every request, and a
	// measurement per refusal showed in profiles of the sold-out answer.
	rejected *sync.Map
}

// reject counts a refused hold by reason.
func (m metrics) reject(code string) {
	n, ok := m.rejected.Load(code)
	if !ok {
		n, _ = m.rejected.LoadOrStore(code, new(atomic.Int64))
	}
	n.(*atomic.Int64).Add(1)
}

func newMetrics(m metric.Meter) (metrics, error) {
	out := metrics{rejected: &sync.Map{}}
	var errs []error
	counter := func(name, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	out.created = counter("onsale.inventory.holds.created", "Holds created.")
	_, err := m.Int64ObservableCounter("onsale.inventory.holds.rejected", metric.WithDescription("Hold requests refused, by reason."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			out.rejected.Range(func(code, n any) bool {
				o.Observe(n.(*atomic.Int64).Load(), metric.WithAttributes(attribute.String("reason", code.(string))))
				return true
			})
			return nil
		}))
	errs = append(errs, err)
	out.released = counter("onsale.inventory.holds.released", "Holds released before expiry.")
	out.expired = counter("onsale.inventory.holds.expired", "Expired holds returned to the pool.")
	out.hits = counter("onsale.inventory.cache.hits", "Cache hits, by cache.")
	out.misses = counter("onsale.inventory.cache.misses", "Cache misses, by cache.")
	out.commits = counter("onsale.inventory.commits", "Hold commits, by result.")
	out.joined = counter("onsale.inventory.queue.joined", "Places given in waiting rooms' queues.")
	out.batch, err = m.Int64Histogram("onsale.inventory.commit.batch_size", metric.WithDescription("Sales committed per transaction."),
		metric.WithExplicitBucketBoundaries(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
	errs = append(errs, err)
	return out, errors.Join(errs...)
}

// New assembles the module.
func New(cfg Config, d Deps) (*Module, error) {
	m, err := newMetrics(d.Meter)
	if err != nil {
		return nil, err
	}
	if cfg.SoldOutMemory > 0 {
		so := newSoldOutMemory(d.Holds, cfg.SoldOutMemory)
		d.Holds = so
		_, err := d.Meter.Int64ObservableCounter("onsale.inventory.holds.sold_out_local",
			metric.WithDescription("Holds refused as sold out by this replica itself, without asking the hold store (also counted in onsale.inventory.holds.rejected)."),
			metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
				o.Observe(so.answered.Load())
				return nil
			}))
		if err != nil {
			return nil, err
		}
	}
	mod := &Module{cfg: cfg, d: d, m: m, rooms: newRooms()}
	if so, ok := d.Holds.(*soldOutMemory); ok {
		mod.soldOut = so
	}
	if cfg.AvailabilityTTL > 0 {
		mod.stock = newStockCache(cfg.AvailabilityTTL)
	}
	mod.committer = newCommitter(d.Store, cfg.CommitBatchMax, func(n int) {
		m.batch.Record(context.Background(), int64(n))
	})
	return mod, nil
}

// ExpiredHolds counts holds that expired; hold stores report to it.
func (m *Module) ExpiredHolds(n int) {
	m.m.expired.Add(context.Background(), int64(n))
}

// Config returns the module's settings.
func (m *Module) Config() Config { return m.cfg }

// ---- catalogue ----

// EventInput is a new event.
type EventInput struct {
	Name, Venue, Description string
	StartsAt                 time.Time
	// CancelCutoffHours lets customers cancel until this many hours before the start (nil: never).
	CancelCutoffHours *int
}

// EventPatch changes an event; nil fields stay.
type EventPatch struct {
	Name, Venue, Description *string
	StartsAt                 *time.Time
	// SetCancelCutoff replaces the cancellation cutoff with CancelCutoffHours (nil: no cancelling).
	SetCancelCutoff   bool
	CancelCutoffHours *int
}

// maxCancelCutoffHours is a year: a cutoff further ahead than that is a typing slip.
const maxCancelCutoffHours = 8760

func checkCutoff(h *int) error {
	if h != nil && (*h < 0 || *h > maxCancelCutoffHours) {
		return invalid("cancellation_cutoff_hours", fmt.Sprintf("must be from 0 to %d, or null for no cancelling", maxCancelCutoffHours))
	}
	return nil
}

func invalid(field, msg string) error {
	return ErrInvalid.WithDetail("the request body has invalid fields").WithFields(problem.FieldError{Field: field, Message: msg})
}

// checkText checks a one-line text field: its length without surrounding spaces, and no control
// characters (PostgreSQL cannot store a NUL, and the others would reach terminals and tickets).
func checkText(field, v string, minLen, maxLen int) error {
	return checkLength(field, v, minLen, maxLen, false)
}

// checkProse is checkText for multi-line fields, where tabs and line breaks are allowed.
func checkProse(field, v string, minLen, maxLen int) error {
	return checkLength(field, v, minLen, maxLen, true)
}

func checkLength(field, v string, minLen, maxLen int, multiline bool) error {
	if n := utf8.RuneCountInString(strings.TrimSpace(v)); n < minLen || n > maxLen {
		return invalid(field, fmt.Sprintf("must be %d to %d characters", minLen, maxLen))
	}
	if msg := text.Problem(v, multiline); msg != "" {
		return invalid(field, msg)
	}
	return nil
}

func (m *Module) checkStart(t time.Time) error {
	if !t.After(m.d.Clock.Now()) {
		return invalid("starts_at", "must be in the future")
	}
	return nil
}

// CreateEvent creates an event owned by organizer.
func (m *Module) CreateEvent(ctx context.Context, organizer uuid.UUID, in EventInput) (Event, error) {
	return m.createEvent(ctx, organizer, in, nil)
}

func (m *Module) createEvent(ctx context.Context, organizer uuid.UUID, in EventInput, key *RequestKey) (Event, error) {
	if err := errors.Join(checkText("name", in.Name, 1, 200), checkText("venue", in.Venue, 1, 200),
		checkProse("description", in.Description, 0, 5000), m.checkStart(in.StartsAt), checkCutoff(in.CancelCutoffHours)); err != nil {
		return Event{}, firstErr(err)
	}
	now := m.d.Clock.Now().UTC()
	e := Event{
		ID: uuid.New(), OrganizerID: organizer, Name: strings.TrimSpace(in.Name), Venue: strings.TrimSpace(in.Venue),
		Description: in.Description, StartsAt: in.StartsAt.UTC(), CancelCutoffHours: in.CancelCutoffHours,
		Version: 1, CreatedAt: now, UpdatedAt: now,
	}
	var err error
	if key != nil {
		key.ResourceID = e.ID
		err = m.d.Store.CreateEventKeyed(ctx, e, *key)
	} else {
		err = m.d.Store.CreateEvent(ctx, e)
	}
	if errors.Is(err, ErrRequestKeyTaken) {
		return Event{}, err
	}
	if err != nil {
		return Event{}, unavailable("create event", err)
	}
	return e, nil
}

// requestKeyTTL is how long an organizer's Idempotency-Key is remembered.
const requestKeyTTL = 24 * time.Hour

// requestHash fingerprints a request body, so a key can be bound to it.
func requestHash(parts ...any) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%q", parts)))
	return hex.EncodeToString(sum[:])
}

// keyed runs create under an organizer's Idempotency-Key: a key seen before with the same request
// returns what that request created (created false), with another request ErrIdempotencyMismatch.
// The key is stored in the same transaction as what create makes, so even a retry racing the first
// attempt cannot create twice.
func keyed[T any](ctx context.Context, m *Module, owner uuid.UUID, key, hash string, read func(uuid.UUID) (T, error),
	create func(RequestKey) (T, error)) (T, bool, error) {
	var zero T
	now := m.d.Clock.Now()
	for attempt := 0; ; attempt++ {
		rec, err := m.d.Store.RequestKey(ctx, owner, key, now)
		switch {
		case err == nil && rec.RequestHash != hash:
			return zero, false, ErrIdempotencyMismatch.WithDetail("this Idempotency-Key was used for a different request")
		case err == nil:
			v, err := read(rec.ResourceID)
			return v, false, err
		case !errors.Is(err, ErrRequestKeyNotFound):
			return zero, false, unavailable("read idempotency key", err)
		}
		v, err := create(RequestKey{Owner: owner, Key: key, RequestHash: hash, ExpiresAt: now.Add(requestKeyTTL)})
		if errors.Is(err, ErrRequestKeyTaken) {
			if attempt == 0 {
				continue // a concurrent request with the key won: answer as it did
			}
			err = unavailable("record idempotency key", err)
		}
		return v, err == nil, err
	}
}

// CreateEventOnce is CreateEvent under an Idempotency-Key (none when key is empty); created is
// false when the key's first request made the event.
func (m *Module) CreateEventOnce(ctx context.Context, organizer uuid.UUID, in EventInput, key string) (Event, bool, error) {
	if key == "" {
		e, err := m.CreateEvent(ctx, organizer, in)
		return e, err == nil, err
	}
	cutoff := -1
	if in.CancelCutoffHours != nil {
		cutoff = *in.CancelCutoffHours
	}
	hash := requestHash("event", in.Name, in.Venue, in.Description, in.StartsAt.UTC(), cutoff)
	return keyed(ctx, m, organizer, key, hash,
		func(id uuid.UUID) (Event, error) {
			e, err := m.d.Store.Event(ctx, id)
			return e, unavailableUnlessNil("read event", err)
		},
		func(k RequestKey) (Event, error) { return m.createEvent(ctx, organizer, in, &k) })
}

// unavailableUnlessNil is unavailable for a non-nil error.
func unavailableUnlessNil(what string, err error) error {
	if err == nil {
		return nil
	}
	return unavailable(what, err)
}

// firstErr returns the first of joined errors, so the client sees a problem, not a join.
func firstErr(err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok && len(j.Unwrap()) > 0 {
		return j.Unwrap()[0]
	}
	return err
}

// UpdateEvent changes an event its organizer owns.
func (m *Module) UpdateEvent(ctx context.Context, organizer, id uuid.UUID, p EventPatch) (Event, error) {
	var errs []error
	if p.Name != nil {
		errs = append(errs, checkText("name", *p.Name, 1, 200))
	}
	if p.Venue != nil {
		errs = append(errs, checkText("venue", *p.Venue, 1, 200))
	}
	if p.Description != nil {
		errs = append(errs, checkProse("description", *p.Description, 0, 5000))
	}
	if p.StartsAt != nil {
		errs = append(errs, m.checkStart(*p.StartsAt))
	}
	if p.SetCancelCutoff {
		errs = append(errs, checkCutoff(p.CancelCutoffHours))
	}
	if err := errors.Join(errs...); err != nil {
		return Event{}, firstErr(err)
	}
	e, err := m.d.Store.UpdateEvent(ctx, id, func(e *Event) error {
		if e.OrganizerID != organizer {
			return ErrNotOwner.WithDetail("only the event's organizer may change it")
		}
		if err := refuseCancelled(*e); err != nil {
			return err
		}
		if p.Name != nil {
			e.Name = strings.TrimSpace(*p.Name)
		}
		if p.Venue != nil {
			e.Venue = strings.TrimSpace(*p.Venue)
		}
		if p.Description != nil {
			e.Description = *p.Description
		}
		if p.StartsAt != nil {
			e.StartsAt = p.StartsAt.UTC()
		}
		if p.SetCancelCutoff {
			e.CancelCutoffHours = p.CancelCutoffHours
		}
		return nil
	})
	if err != nil {
		return Event{}, unavailable("update event", err)
	}
	m.publish(ctx, id)
	return e, nil
}

// ListEvents returns a page of events in start order, and the cursor of the next page ("" when
// this is the last).
func (m *Module) ListEvents(ctx context.Context, cursor string, limit int) ([]Event, string, error) {
	after, err := decodeCursor(cursor)
	if err != nil {
		return nil, "", err
	}
	events, err := m.reader().ListEvents(ctx, after, limit+1)
	if err != nil {
		return nil, "", unavailable("list events", err)
	}
	next := ""
	if len(events) > limit {
		events = events[:limit]
		last := events[limit-1]
		next = encodeCursor(Cursor{StartsAt: last.StartsAt, ID: last.ID})
	}
	return events, next, nil
}

var errBadCursor = problem.ErrBadRequest.WithDetail("the cursor is not one this server gave out").
	WithFields(problem.FieldError{Field: "query:cursor", Message: "invalid cursor"})

func encodeCursor(c Cursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.StartsAt.UnixNano(), 10) + "|" + c.ID.String()))
}

func decodeCursor(s string) (Cursor, error) {
	if s == "" {
		return Cursor{StartsAt: time.Unix(0, 0).UTC()}, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, errBadCursor
	}
	ns, id, ok := strings.Cut(string(raw), "|")
	n, nerr := strconv.ParseInt(ns, 10, 64)
	u, uerr := uuid.Parse(id)
	if !ok || nerr != nil || uerr != nil {
		return Cursor{}, errBadCursor
	}
	return Cursor{StartsAt: time.Unix(0, n).UTC(), ID: u}, nil
}

// Catalogue returns an event with its ticket types, through the cross-replica cache.
func (m *Module) Catalogue(ctx context.Context, id uuid.UUID) (Catalogue, error) {
	if m.d.Catalog != nil {
		c, ok, err := m.d.Catalog.Get(ctx, id)
		if err == nil && ok {
			m.m.hits.Add(ctx, 1, metric.WithAttributes(attribute.String("cache", "catalogue")))
			return c, nil
		}
		if err != nil {
			m.d.Log.WarnContext(ctx, "catalogue cache read failed; reading the store", "err", err)
		}
		m.m.misses.Add(ctx, 1, metric.WithAttributes(attribute.String("cache", "catalogue")))
	}
	v, err, _ := m.loads.Do("catalogue:"+id.String(), func() (any, error) {
		c, err := m.loadCatalogue(ctx, id, true)
		if err == nil && m.d.Catalog != nil {
			if perr := m.d.Catalog.Put(ctx, c); perr != nil {
				m.d.Log.WarnContext(ctx, "catalogue cache write failed", "err", perr)
			}
		}
		return c, err
	})
	if err != nil {
		return Catalogue{}, err
	}
	return v.(Catalogue), nil
}

// reader is where catalogue reads go: the read replica, if any, else the store.
func (m *Module) reader() CatalogueReader {
	if m.d.Replica != nil {
		return m.d.Replica
	}
	return m.d.Store
}

// loadCatalogue reads an event and its ticket types, from the read replica if fromReplica and
// there is one. When the replica fails, or does not have the event yet (it lags behind its
// creation), the store answers instead.
func (m *Module) loadCatalogue(ctx context.Context, id uuid.UUID, fromReplica bool) (Catalogue, error) {
	var r CatalogueReader = m.d.Store
	if fromReplica && m.d.Replica != nil {
		r = m.d.Replica
	}
	e, err := r.Event(ctx, id)
	var tts []TicketType
	if err == nil {
		tts, err = r.TicketTypes(ctx, id)
	}
	if err != nil && fromReplica && m.d.Replica != nil {
		return m.loadCatalogue(ctx, id, false)
	}
	if err != nil {
		return Catalogue{}, unavailable("read catalogue", err)
	}
	return Catalogue{Event: e, TicketTypes: tts}, nil
}

// publish refreshes the shared catalogue cache after a write, so every replica sees it.
func (m *Module) publish(ctx context.Context, eventID uuid.UUID) {
	if m.stock != nil {
		m.stock.remove(eventID)
	}
	if m.d.Catalog == nil {
		return
	}
	// From the store, never the replica: what was just written must be what replicas cache.
	c, err := m.loadCatalogue(ctx, eventID, false)
	if err == nil {
		err = m.d.Catalog.Put(ctx, c)
	}
	if err != nil {
		m.d.Log.WarnContext(ctx, "catalogue cache refresh failed; replicas catch up when it expires", "event", eventID, "err", err)
	}
}

// TicketTypeInput is a new ticket type.
type TicketTypeInput struct {
	Name                 string
	PriceCents           int64
	Currency             string
	Capacity             int
	MaxPerOrder          int
	SalesStart, SalesEnd time.Time
}

// TicketTypePatch changes a ticket type; nil fields stay. A zero time clears a sales bound.
type TicketTypePatch struct {
	Name                 *string
	PriceCents           *int64
	Capacity             *int
	MaxPerOrder          *int
	SalesStart, SalesEnd *time.Time
}

func (m *Module) checkTicketType(t TicketType) error {
	var errs []error
	errs = append(errs, checkText("name", t.Name, 1, 100))
	if t.PriceCents < 0 || t.PriceCents > 100_000_000 {
		errs = append(errs, invalid("price_cents", "must be from 0 to 100000000"))
	}
	if u, err := currency.ParseISO(t.Currency); err != nil || u.String() != t.Currency {
		errs = append(errs, invalid("currency", "must be an ISO 4217 code such as EUR"))
	}
	if t.Capacity < 1 || t.Capacity > m.cfg.MaxCapacity {
		errs = append(errs, invalid("capacity", fmt.Sprintf("must be from 1 to %d", m.cfg.MaxCapacity)))
	}
	if t.MaxPerOrder < 1 || t.MaxPerOrder > 50 {
		errs = append(errs, invalid("max_per_order", "must be from 1 to 50"))
	}
	if !t.SalesStart.IsZero() && !t.SalesEnd.IsZero() && !t.SalesEnd.After(t.SalesStart) {
		errs = append(errs, invalid("sales_end", "must be after sales_start"))
	}
	if err := errors.Join(errs...); err != nil {
		return firstErr(err)
	}
	return nil
}

func (m *Module) ownedEvent(ctx context.Context, organizer, eventID uuid.UUID) error {
	_, err := m.ownEvent(ctx, organizer, eventID)
	return err
}

func (m *Module) ownEvent(ctx context.Context, organizer, eventID uuid.UUID) (Event, error) {
	e, err := m.d.Store.Event(ctx, eventID)
	if err != nil {
		return Event{}, unavailable("read event", err)
	}
	if e.OrganizerID != organizer {
		return Event{}, ErrNotOwner.WithDetail("only the event's organizer may change it")
	}
	return e, nil
}

// ownedOpenEvent is ownedEvent for changes a cancelled event refuses.
func (m *Module) ownedOpenEvent(ctx context.Context, organizer, eventID uuid.UUID) error {
	e, err := m.ownEvent(ctx, organizer, eventID)
	if err != nil {
		return err
	}
	return refuseCancelled(e)
}

// CreateTicketTypeOnce is CreateTicketType under an Idempotency-Key (none when key is empty);
// created is false when the key's first request made the ticket type.
func (m *Module) CreateTicketTypeOnce(ctx context.Context, organizer, eventID uuid.UUID, in TicketTypeInput, key string) (TicketType, bool, error) {
	if key == "" {
		t, err := m.CreateTicketType(ctx, organizer, eventID, in)
		return t, err == nil, err
	}
	hash := requestHash("ticket-type", eventID, in.Name, in.PriceCents, in.Currency, in.Capacity, in.MaxPerOrder,
		in.SalesStart.UTC(), in.SalesEnd.UTC())
	return keyed(ctx, m, organizer, key, hash,
		func(id uuid.UUID) (TicketType, error) {
			t, err := m.d.Store.TicketType(ctx, id)
			return t, unavailableUnlessNil("read ticket type", err)
		},
		func(k RequestKey) (TicketType, error) { return m.createTicketType(ctx, organizer, eventID, in, &k) })
}

// CreateTicketType adds a ticket type to an event its organizer owns.
func (m *Module) CreateTicketType(ctx context.Context, organizer, eventID uuid.UUID, in TicketTypeInput) (TicketType, error) {
	return m.createTicketType(ctx, organizer, eventID, in, nil)
}

func (m *Module) createTicketType(ctx context.Context, organizer, eventID uuid.UUID, in TicketTypeInput, key *RequestKey) (TicketType, error) {
	now := m.d.Clock.Now().UTC()
	t := TicketType{
		ID: uuid.New(), EventID: eventID, Name: strings.TrimSpace(in.Name), PriceCents: in.PriceCents,
		Currency: in.Currency, Capacity: in.Capacity, MaxPerOrder: in.MaxPerOrder,
		SalesStart: in.SalesStart.UTC(), SalesEnd: in.SalesEnd.UTC(), CreatedAt: now, UpdatedAt: now,
	}
	if in.SalesStart.IsZero() {
		t.SalesStart = time.Time{}
	}
	if in.SalesEnd.IsZero() {
		t.SalesEnd = time.Time{}
	}
	if err := m.checkTicketType(t); err != nil {
		return TicketType{}, err
	}
	if err := m.ownedOpenEvent(ctx, organizer, eventID); err != nil {
		return TicketType{}, err
	}
	rules, err := m.rulesOf(ctx, t)
	if err != nil {
		return TicketType{}, err
	}
	// Configure the hold store first: a ticket type that exists in the store is then always
	// holdable, and a failure here leaves nothing half made.
	if err := m.d.Holds.Configure(ctx, rules); err != nil {
		return TicketType{}, unavailable("configure holds", err)
	}
	if key != nil {
		key.ResourceID = t.ID
		err = m.d.Store.CreateTicketTypeKeyed(ctx, t, *key)
	} else {
		err = m.d.Store.CreateTicketType(ctx, t)
	}
	if errors.Is(err, ErrRequestKeyTaken) {
		return TicketType{}, err
	}
	if err != nil {
		return TicketType{}, unavailable("create ticket type", err)
	}
	m.publish(ctx, eventID)
	return t, nil
}

// UpdateTicketType changes a ticket type. Capacity may be raised at any time and lowered only
// down to what is sold plus held.
func (m *Module) UpdateTicketType(ctx context.Context, organizer, eventID, id uuid.UUID, p TicketTypePatch) (TicketType, error) {
	if err := m.ownedOpenEvent(ctx, organizer, eventID); err != nil {
		return TicketType{}, err
	}
	cur, err := m.d.Store.TicketType(ctx, id)
	if err != nil {
		return TicketType{}, unavailable("read ticket type", err)
	}
	if cur.EventID != eventID {
		return TicketType{}, ErrTicketTypeNotFound
	}
	next := cur
	apply := func(t *TicketType) {
		if p.Name != nil {
			t.Name = strings.TrimSpace(*p.Name)
		}
		if p.PriceCents != nil {
			t.PriceCents = *p.PriceCents
		}
		if p.Capacity != nil {
			t.Capacity = *p.Capacity
		}
		if p.MaxPerOrder != nil {
			t.MaxPerOrder = *p.MaxPerOrder
		}
		if p.SalesStart != nil {
			t.SalesStart = p.SalesStart.UTC()
		}
		if p.SalesEnd != nil {
			t.SalesEnd = p.SalesEnd.UTC()
		}
	}
	apply(&next)
	if err := m.checkTicketType(next); err != nil {
		return TicketType{}, err
	}
	now := m.d.Clock.Now()
	lowering := next.Capacity < cur.Capacity
	if lowering {
		// Lower the hold store's capacity first, atomically against live holds; then new holds
		// cannot take what is about to disappear.
		if err := m.setCapacity(ctx, cur, next.Capacity+cur.Returned, now); err != nil {
			return TicketType{}, err
		}
	}
	updated, err := m.d.Store.UpdateTicketType(ctx, id, func(t *TicketType) error { apply(t); return nil })
	if err != nil {
		if lowering {
			if rerr := m.d.Holds.SetCapacity(ctx, id, cur.Capacity+cur.Returned, now); rerr != nil {
				m.d.Log.ErrorContext(ctx, "restoring hold capacity failed", "ticket_type", id, "err", rerr)
			}
		}
		return TicketType{}, unavailable("update ticket type", err)
	}
	rules, err := m.rulesOf(ctx, updated)
	if err != nil {
		return TicketType{}, err
	}
	if err := m.d.Holds.Configure(ctx, rules); err != nil {
		return TicketType{}, unavailable("configure holds", err)
	}
	m.publish(ctx, eventID)
	return updated, nil
}

func (m *Module) setCapacity(ctx context.Context, cur TicketType, capacity int, now time.Time) error {
	err := m.d.Holds.SetCapacity(ctx, cur.ID, capacity, now)
	if errors.Is(err, ErrNotConfigured) {
		if err = m.configure(ctx, cur.ID); err == nil {
			err = m.d.Holds.SetCapacity(ctx, cur.ID, capacity, now)
		}
	}
	if err != nil {
		return unavailable("set capacity", err)
	}
	return nil
}

// configure loads a ticket type's rules from the store into the hold store (after a Redis
// restart, say). Concurrent callers share one load.
func (m *Module) configure(ctx context.Context, id uuid.UUID) error {
	_, err, _ := m.loads.Do("rules:"+id.String(), func() (any, error) {
		t, err := m.d.Store.TicketType(ctx, id)
		if err != nil {
			return nil, unavailable("read ticket type", err)
		}
		rules, err := m.rulesOf(ctx, t)
		if err != nil {
			return nil, err
		}
		if err := m.d.Holds.Configure(ctx, rules); err != nil {
			return nil, unavailable("configure holds", err)
		}
		m.d.Log.InfoContext(ctx, "hold rules loaded from the store", "ticket_type", id, "sold", t.Sold)
		return nil, nil
	})
	return err
}

// EventStock returns an event, its ticket types and their live figures.
func (m *Module) EventStock(ctx context.Context, id uuid.UUID) (EventStock, error) {
	c, err := m.Catalogue(ctx, id)
	if err != nil {
		return EventStock{}, err
	}
	s, err := m.Stock(ctx, c)
	if err != nil {
		return EventStock{}, err
	}
	return EventStock{Catalogue: c, Stock: s}, nil
}

// Stock returns the live figures of an event's ticket types, reused for AvailabilityTTL and
// refreshed in the background for a while after (see stockCache).
func (m *Module) Stock(ctx context.Context, c Catalogue) ([]Stock, error) {
	if m.stock != nil {
		// Wall-clock time: reuse is about how old the figures are, not about the sale's clock.
		s, ok, refresh := m.stock.get(c.Event.ID, len(c.TicketTypes), time.Now())
		if ok {
			m.m.hits.Add(ctx, 1, metric.WithAttributes(attribute.String("cache", "availability")))
			if refresh {
				go func() {
					ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
					defer cancel()
					if _, err := m.loadStock(ctx, c); err != nil {
						m.stock.failed(c.Event.ID)
						m.d.Log.WarnContext(ctx, "availability refresh failed", "event", c.Event.ID, "err", err)
					}
				}()
			}
			return s, nil
		}
		m.m.misses.Add(ctx, 1, metric.WithAttributes(attribute.String("cache", "availability")))
	}
	return m.loadStock(ctx, c)
}

// loadStock reads the figures from the hold store (one reader per event at a time).
func (m *Module) loadStock(ctx context.Context, c Catalogue) ([]Stock, error) {
	v, err, _ := m.loads.Do("stock:"+c.Event.ID.String(), func() (any, error) {
		ids := make([]uuid.UUID, len(c.TicketTypes))
		for i, t := range c.TicketTypes {
			ids[i] = t.ID
		}
		now := m.d.Clock.Now()
		s, err := m.d.Holds.Stock(ctx, ids, now)
		if errors.Is(err, ErrNotConfigured) {
			for _, t := range c.TicketTypes {
				if cerr := m.configure(ctx, t.ID); cerr != nil {
					return nil, cerr
				}
			}
			s, err = m.d.Holds.Stock(ctx, ids, now)
		}
		if err != nil {
			return nil, unavailable("read stock", err)
		}
		netOfReturns(s, c.TicketTypes)
		if m.stock != nil {
			m.stock.put(c.Event.ID, s, time.Now())
		}
		return s, nil
	})
	if err != nil {
		return nil, err
	}
	return v.([]Stock), nil
}

// netOfReturns turns the hold store's figures, which count every ticket ever sold against the
// capacity plus the tickets given back, into what organizers and customers expect: the capacity
// they set and the tickets sold now. Available stays as it was.
func netOfReturns(s []Stock, types []TicketType) {
	for i := range s {
		for _, t := range types {
			if t.ID == s[i].TicketTypeID && t.Returned > 0 {
				r := min(t.Returned, s[i].Sold, s[i].Capacity)
				s[i].Capacity -= r
				s[i].Sold -= r
			}
		}
	}
}

// ---- holds ----

// Hold reserves quantity tickets of a ticket type for a customer. With an idempotency key, a
// retry returns the first attempt's hold (created is then false); the key is bound to the whole
// request, so the same key for another ticket type or quantity is ErrIdempotencyMismatch.
//
// The customer's cap across ticket types is checked after the hold is made, because the hold and
// the customer's count live in different Redis hash slots: a hold over the cap is given back at
// once. Deciding sold out first keeps the commonest answer of an on-sale at one round trip.
func (m *Module) Hold(ctx context.Context, customer, ticketType uuid.UUID, quantity int, idempotencyKey string) (Hold, bool, error) {
	return m.HoldWithPass(ctx, customer, ticketType, quantity, idempotencyKey, "")
}

// HoldWithPass is Hold presenting a waiting room's pass ("" for none): where the event's room is
// open, a hold needs a valid pass for it, given to this customer.
func (m *Module) HoldWithPass(ctx context.Context, customer, ticketType uuid.UUID, quantity int, idempotencyKey, pass string) (Hold, bool, error) {
	if quantity < 1 {
		return Hold{}, false, invalid("quantity", "must be at least 1")
	}
	passEvent, err := m.checkPass(ctx, customer, pass)
	if err != nil {
		if pe := problem.As(err); pe != nil {
			m.m.reject(pe.Code)
		}
		return Hold{}, false, err
	}
	now := m.d.Clock.Now()
	// A retry with an Idempotency-Key may be the replay of a hold made before the sale ran out:
	// only the store knows, so it is asked.
	if idempotencyKey == "" && m.soldOut != nil && m.soldOut.known(ticketType, now) {
		m.m.reject(ErrSoldOut.Code)
		return Hold{}, false, errNoneAvailable
	}
	id := NewHoldID(ticketType)
	if idempotencyKey != "" {
		fp := ticketType.String() + "|" + strconv.Itoa(quantity)
		bound, err := m.d.Customers.BindKey(ctx, customer, idempotencyKey, fp, now, m.cfg.HoldTTL+m.cfg.HoldRecordKeep)
		if err != nil {
			return Hold{}, false, unavailable("bind idempotency key", err)
		}
		if bound != fp {
			m.m.reject(ErrIdempotencyMismatch.Code)
			return Hold{}, false, ErrIdempotencyMismatch.WithDetail("this Idempotency-Key was used for another ticket type or quantity")
		}
		id = IdempotentHoldID(ticketType, customer, idempotencyKey)
	}
	req := HoldRequest{
		ID: id, TicketTypeID: ticketType, CustomerID: customer, Quantity: quantity,
		Now: now, TTL: m.cfg.HoldTTL, MaxLive: m.cfg.MaxHoldsPerType, Pass: passEvent,
	}
	h, created, err := m.d.Holds.Hold(ctx, req)
	if errors.Is(err, ErrNotConfigured) {
		if err = m.configure(ctx, ticketType); err == nil {
			h, created, err = m.d.Holds.Hold(ctx, req)
		}
	}
	if err != nil {
		if pe := problem.As(err); pe != nil && pe.Kind != problem.Internal && pe.Kind != problem.Unavailable {
			m.m.reject(pe.Code)
			return Hold{}, false, err
		}
		return Hold{}, false, unavailable("hold", err)
	}
	if !created {
		return h, false, nil
	}
	ok, earliest, err := m.d.Customers.Add(ctx, customer, h.ID, h.ExpiresAt, now, m.cfg.MaxHolds)
	if err != nil {
		// The count is abuse protection; the hold itself is sound. Keep it rather than fail a
		// customer for a hiccup of the count.
		m.d.Log.WarnContext(ctx, "count a customer's hold", "hold", h.ID, "err", err)
	} else if !ok {
		if rerr := m.d.Holds.Release(ctx, h.ID, now); rerr != nil {
			m.d.Log.WarnContext(ctx, "give back a hold over the customer's cap", "hold", h.ID, "err", rerr)
		}
		m.m.reject(ErrTooManyHolds.Code)
		return Hold{}, false, ErrTooManyHolds.WithDetail("you already have %d live holds; release one or wait for one to end", m.cfg.MaxHolds).
			WithRetryAfter(earliest.Sub(now))
	}
	m.m.created.Add(ctx, 1)
	return h, true, nil
}

// HoldFor returns a customer's own hold; anyone else's is "not found".
func (m *Module) HoldFor(ctx context.Context, customer uuid.UUID, id string) (Hold, error) {
	h, err := m.GetHold(ctx, id)
	if err != nil {
		return Hold{}, err
	}
	if h.CustomerID != customer {
		return Hold{}, ErrHoldNotFound
	}
	return h, nil
}

// ReleaseFor releases a customer's own hold, unless an order checked it out (ErrHoldOrdered).
func (m *Module) ReleaseFor(ctx context.Context, customer uuid.UUID, id string) error {
	if _, err := m.HoldFor(ctx, customer, id); err != nil {
		return err
	}
	if err := m.d.Holds.Cancel(ctx, id, m.d.Clock.Now()); err != nil {
		return unavailable("release hold", err)
	}
	m.m.released.Add(ctx, 1)
	m.uncount(ctx, customer, id)
	return nil
}

// uncount stops counting a hold against its customer's cap. Best effort: a hold left counted
// stops counting when it would have expired.
func (m *Module) uncount(ctx context.Context, customer uuid.UUID, id string) {
	if err := m.d.Customers.Remove(ctx, customer, id); err != nil {
		m.d.Log.WarnContext(ctx, "uncount a customer's hold", "hold", id, "err", err)
	}
}

// GetHold returns a hold; ErrHoldNotFound.
func (m *Module) GetHold(ctx context.Context, id string) (Hold, error) {
	h, err := m.d.Holds.Get(ctx, id, m.d.Clock.Now())
	if err != nil {
		return Hold{}, unavailable("read hold", err)
	}
	return h, nil
}

// CheckoutHold records that orderID checked the hold out and keeps it until at least until
// (to cover the payment window); from then on its customer can no longer release it.
// Idempotent for the same order; ErrHoldOrdered for another, ErrHoldNotLive when it lapsed.
func (m *Module) CheckoutHold(ctx context.Context, id string, orderID uuid.UUID, until time.Time) (Hold, error) {
	now := m.d.Clock.Now()
	h, err := m.d.Holds.Checkout(ctx, id, orderID, until, now)
	if err != nil {
		return Hold{}, unavailable("check out hold", err)
	}
	// The hold now lives as long as the payment may take; so does its place in the count.
	if _, _, err := m.d.Customers.Add(ctx, h.CustomerID, h.ID, h.ExpiresAt, now, m.cfg.MaxHolds); err != nil {
		m.d.Log.WarnContext(ctx, "recount a checked-out hold", "hold", h.ID, "err", err)
	}
	return h, nil
}

// ReleaseHold gives the tickets back, checked out or not (the order's payment failed);
// idempotent.
func (m *Module) ReleaseHold(ctx context.Context, id string) error {
	now := m.d.Clock.Now()
	h, err := m.d.Holds.Get(ctx, id, now)
	if err != nil {
		return unavailable("release hold", err)
	}
	if err := m.d.Holds.Release(ctx, id, now); err != nil {
		return unavailable("release hold", err)
	}
	m.m.released.Add(ctx, 1)
	m.uncount(ctx, h.CustomerID, id)
	return nil
}

// SoldTickets returns the tickets a hold was sold as, or none if it was not.
func (m *Module) SoldTickets(ctx context.Context, holdID string) ([]Ticket, error) {
	ts, err := m.d.Store.Tickets(ctx, holdID)
	if err != nil {
		return nil, unavailable("read tickets", err)
	}
	return ts, nil
}

// CommitHold sells the hold for orderID and returns its tickets, idempotently by hold id: claim the hold in the hold store (reserving again if it
// lapsed), sell it in the store (batched per ticket type), then record the sale in the hold
// store. Each step is idempotent, so a retry after any failure completes the same sale.
func (m *Module) CommitHold(ctx context.Context, h Hold, orderID uuid.UUID) ([]Ticket, error) {
	now := m.d.Clock.Now()
	claimed, err := m.d.Holds.Claim(ctx, h, now, m.cfg.ClaimTTL)
	if errors.Is(err, ErrNotConfigured) {
		if err = m.configure(ctx, h.TicketTypeID); err == nil {
			claimed, err = m.d.Holds.Claim(ctx, h, now, m.cfg.ClaimTTL)
		}
	}
	if errors.Is(err, ErrSoldOut) {
		// The hold store has no record of the hold (Redis lost it) and nothing left to reserve,
		// but this may repeat a commit that already happened: then its tickets are the answer,
		// not a refund.
		if ts, terr := m.d.Store.Tickets(ctx, h.ID); terr == nil && len(ts) > 0 {
			if t, terr := m.d.Store.TicketType(ctx, h.TicketTypeID); terr == nil {
				if ferr := m.d.Holds.Finalize(ctx, h, t.Sold, now); ferr != nil {
					m.d.Log.WarnContext(ctx, "finalize a repeated commit", "hold", h.ID, "err", ferr)
				}
			}
			m.m.commits.Add(ctx, 1, metric.WithAttributes(attribute.String("result", "ok")))
			return ts, nil
		}
	}
	if err != nil {
		m.m.commits.Add(ctx, 1, metric.WithAttributes(attribute.String("result", resultOf(err))))
		return nil, unavailable("claim hold", err)
	}
	if claimed.Status == HoldCommitted {
		ts, err := m.d.Store.Tickets(ctx, h.ID)
		if err != nil {
			return nil, unavailable("read tickets", err)
		}
		if len(ts) > 0 {
			return ts, nil
		}
		// The hold store says committed but the store has no tickets (its records outlived a
		// restored database, say): commit for real.
	}
	res := m.committer.Commit(ctx, CommitRequest{Hold: h, OrderID: orderID, Now: now})
	if res.Err != nil {
		m.m.commits.Add(ctx, 1, metric.WithAttributes(attribute.String("result", resultOf(res.Err))))
		if errors.Is(res.Err, ErrSoldOut) {
			if rerr := m.d.Holds.Release(ctx, h.ID, now); rerr != nil && !errors.Is(rerr, ErrHoldNotFound) {
				m.d.Log.WarnContext(ctx, "release after failed commit", "hold", h.ID, "err", rerr)
			}
			return nil, res.Err
		}
		return nil, unavailable("commit hold", res.Err)
	}
	if err := m.d.Holds.Finalize(ctx, h, res.Sold, now); err != nil {
		return nil, unavailable("finalize hold", err)
	}
	m.uncount(ctx, h.CustomerID, h.ID)
	m.endPass(ctx, h.TicketTypeID, h.CustomerID)
	m.m.commits.Add(ctx, 1, metric.WithAttributes(attribute.String("result", "ok")))
	return res.Tickets, nil
}

func resultOf(err error) string {
	if errors.Is(err, ErrSoldOut) {
		return "sold_out"
	}
	return "error"
}

// unavailable marks a failure that is not one of the module's own answers as a dependency
// outage: 503, retry shortly.
func unavailable(what string, err error) error {
	if pe := problem.As(err); pe != nil && pe.Kind != problem.Internal {
		return err
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	return problem.Unavailablef(fmt.Errorf("%s: %w", what, err), time.Second, "inventory is temporarily unavailable")
}
