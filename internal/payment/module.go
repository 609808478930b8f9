package payment

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
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"

	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/platform/clock"
	"github.com/onsale-dev/onsale/internal/platform/problem"
	"github.com/onsale-dev/onsale/internal/webhook"
)

// Deps are the module's ports and tools.
type Deps struct {
	Store     OrderStore
	Inventory Inventory
	Relay     *Relay
	Hub       *Hub
	Signer    *TicketSigner
	Clock     clock.Clock
	Log       *slog.Logger
	Meter     metric.Meter
	// Webhooks tells the organizers' webhook endpoints what happened; nil: nobody.
	Webhooks webhook.Publisher
	// Owners finds whose orders are whose, for notices.
	Owners *Owners
	// Wake nudges the cancellations runner after an event is cancelled; may be nil.
	Wake func()
}

// Module is the payment module's request side: checkout, order reads, check-in.
type Module struct {
	cfg     Config
	d       Deps
	created metric.Int64Counter
}

var _ Service = (*Module)(nil)

// New assembles the module.
func New(cfg Config, d Deps) (*Module, error) {
	created, err := d.Meter.Int64Counter("onsale.payment.orders.created", metric.WithDescription("Orders accepted."))
	if err != nil {
		return nil, err
	}
	return &Module{cfg: cfg, d: d, created: created}, nil
}

// Config returns the module's settings.
func (m *Module) Config() Config { return m.cfg }

func requestHash(holdID string) string {
	sum := sha256.Sum256([]byte("hold_id=" + holdID))
	return hex.EncodeToString(sum[:])
}

// CreateOrder implements Service. It answers in milliseconds: the payment itself happens later,
// in the worker, after the order and its outbox message are committed together.
func (m *Module) CreateOrder(ctx context.Context, customer uuid.UUID, holdID, key string) (Order, bool, error) {
	if key == "" {
		return Order{}, false, ErrMissingKey.WithDetail("send an Idempotency-Key header so a retry cannot order twice")
	}
	now := m.d.Clock.Now().UTC()
	hash := requestHash(holdID)
	// The order is created first and the key looked up only when that fails: the key and the
	// order are written in one statement, so a retry cannot create a second order, and the common
	// case costs one database round trip.
	o, err := m.createNew(ctx, customer, holdID, key, hash, now)
	var final *finalError
	if errors.As(err, &final) {
		return Order{}, false, final.err
	}
	if err != nil {
		// A request with the same key may have created the order, and its payment may already
		// have moved the hold on (sold, or released by a decline): answer as a retry would, not
		// with the hold's state.
		if ro, ok, rerr := m.replay(ctx, customer, key, hash, now); ok {
			return ro, false, nil
		} else if errors.Is(rerr, ErrIdempotencyMismatch) {
			return Order{}, false, rerr
		}
		if errors.Is(err, ErrDuplicateKey) {
			return Order{}, false, unavailable("read order", errors.New("idempotency key vanished"))
		}
		return Order{}, false, err
	}
	return o, true, nil
}

// createNew checks the hold out under a key no order has yet. Nothing in inventory changes until
// the order, its key and its outbox message are stored together: a request the store refuses (the
// key is taken, by this hold or another; the hold has an order already) leaves the hold as it was,
// so refused checkouts cannot keep tickets off sale.
func (m *Module) createNew(ctx context.Context, customer uuid.UUID, holdID, key, hash string, now time.Time) (Order, error) {
	hold, err := m.d.Inventory.GetHold(ctx, holdID)
	if errors.Is(err, inventory.ErrHoldNotFound) {
		return Order{}, inventory.ErrHoldNotFound.WithDetail("no such hold")
	}
	if err != nil {
		return Order{}, err
	}
	if hold.CustomerID != customer {
		return Order{}, inventory.ErrHoldNotFound.WithDetail("no such hold")
	}
	switch {
	case hold.Status == inventory.HoldClaimed || hold.Status == inventory.HoldCommitted || hold.OrderID != uuid.Nil:
		return Order{}, ErrHoldAlreadyOrdered.WithDetail("this hold has already been checked out")
	case hold.Status == inventory.HoldReleased:
		return Order{}, ErrHoldNotUsable.WithDetail("this hold was released; hold the tickets again")
	case hold.Status == inventory.HoldExpired:
		return Order{}, ErrHoldNotUsable.WithDetail("this hold has expired; hold the tickets again")
	}

	o := Order{
		ID: uuid.New(), CustomerID: customer, Hold: hold, AmountCents: hold.UnitPriceCents * int64(hold.Quantity),
		Currency: hold.Currency, Status: StatusPending, Version: 1, CreatedAt: now, UpdatedAt: now,
	}
	msg, err := m.d.Store.Create(ctx, o, IdempotencyRecord{
		CustomerID: customer, Key: key, RequestHash: hash, OrderID: o.ID, ExpiresAt: now.Add(m.cfg.IdempotencyTTL),
	})
	switch {
	case errors.Is(err, ErrDuplicateKey):
		// The same key came before, or raced us from another request; CreateOrder answers as a
		// retry would.
		return Order{}, err
	case errors.Is(err, ErrHoldAlreadyOrdered):
		return Order{}, ErrHoldAlreadyOrdered.WithDetail("this hold has already been checked out")
	case err != nil:
		return Order{}, unavailable("create order", err)
	}
	// Keep the tickets reserved for as long as the payment may take, and out of the customer's
	// hands: from here only the order gives them back.
	if _, err := m.d.Inventory.CheckoutHold(ctx, holdID, o.ID, now.Add(m.cfg.PaymentWindow)); err != nil {
		if !errors.Is(err, inventory.ErrHoldNotLive) && !errors.Is(err, inventory.ErrHoldOrdered) {
			// The order stands: its payment claims the hold again, reserving the tickets anew
			// if it lapsed, and refunds if they are gone.
			m.d.Log.WarnContext(ctx, "check out hold; the payment will claim it", "hold", holdID, "order", o.ID, "err", err)
		} else {
			// The hold lapsed or was released in the instant since it was read: the order cannot
			// be paid for. It ends failed at once (nothing was charged), under the key just used.
			if _, _, ferr := m.d.Store.Fail(ctx, o.ID, DetailHoldLapsed); ferr != nil {
				return Order{}, unavailable("fail order", ferr)
			}
			m.d.Relay.Notify(msg)
			return Order{}, &finalError{ErrHoldNotUsable.WithDetail("this hold has expired or was released; hold the tickets again")}
		}
	}
	msg.TraceParent = traceParent(ctx)
	m.d.Relay.Notify(msg)
	m.created.Add(ctx, 1)
	return o, nil
}

// traceParent is ctx's trace context as a W3C traceparent value ("" when there is none).
func traceParent(ctx context.Context) string {
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	return carrier.Get("traceparent")
}

// finalError is an answer createNew decided after storing the order: no earlier request can
// explain it, so CreateOrder must not look for one.
type finalError struct{ err error }

func (e *finalError) Error() string { return e.err.Error() }
func (e *finalError) Unwrap() error { return e.err }

// replay returns the order an earlier request with the same key created (ok true), or refuses
// the key when that request was for another hold.
func (m *Module) replay(ctx context.Context, customer uuid.UUID, key, hash string, now time.Time) (Order, bool, error) {
	rec, err := m.d.Store.ByIdempotencyKey(ctx, customer, key, now)
	if errors.Is(err, ErrOrderNotFound) {
		return Order{}, false, nil
	}
	if err != nil {
		return Order{}, false, unavailable("read idempotency key", err)
	}
	if rec.RequestHash != hash {
		return Order{}, false, ErrIdempotencyMismatch.WithDetail("this Idempotency-Key was used for a different hold")
	}
	o, err := m.d.Store.Get(ctx, rec.OrderID)
	if err != nil {
		return Order{}, false, unavailable("read order", err)
	}
	return o, true, nil
}

// Order implements Service: a customer's own order; anyone else's is "not found".
func (m *Module) Order(ctx context.Context, customer, id uuid.UUID) (Order, error) {
	o, err := m.d.Store.Get(ctx, id)
	if errors.Is(err, ErrOrderNotFound) || (err == nil && o.CustomerID != customer) {
		return Order{}, ErrOrderNotFound.WithDetail("no such order")
	}
	if err != nil {
		return Order{}, unavailable("read order", err)
	}
	return o, nil
}

// Orders lists a customer's orders, newest first, and the cursor of the next page.
func (m *Module) Orders(ctx context.Context, customer uuid.UUID, cursor string, limit int) ([]Order, string, error) {
	after, err := decodeOrderCursor(cursor)
	if err != nil {
		return nil, "", err
	}
	orders, err := m.d.Store.List(ctx, customer, after, limit+1)
	if err != nil {
		return nil, "", unavailable("list orders", err)
	}
	next := ""
	if len(orders) > limit {
		orders = orders[:limit]
		last := orders[limit-1]
		next = base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(last.CreatedAt.UnixNano(), 10) + "|" + last.ID.String()))
	}
	return orders, next, nil
}

func decodeOrderCursor(s string) (*OrderCursor, error) {
	if s == "" {
		return nil, nil
	}
	bad := problem.ErrBadRequest.WithDetail("the cursor is not one this server gave out").
		WithFields(problem.FieldError{Field: "query:cursor", Message: "invalid cursor"})
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, bad
	}
	ns, id, ok := strings.Cut(string(raw), "|")
	n, nerr := strconv.ParseInt(ns, 10, 64)
	u, uerr := uuid.Parse(id)
	if !ok || nerr != nil || uerr != nil {
		return nil, bad
	}
	return &OrderCursor{CreatedAt: time.Unix(0, n).UTC(), ID: u}, nil
}

// TicketCode returns the signed code of a ticket.
func (m *Module) TicketCode(t Ticket) string { return m.d.Signer.Code(t) }

// CheckIn admits the ticket a code names, once. A code that does not verify is
// ErrInvalidTicketCode; a genuine code for a ticket that was never sold is ErrTicketNotFound; a
// second scan is ErrAlreadyCheckedIn (with the first admission's time).
func (m *Module) CheckIn(ctx context.Context, staff uuid.UUID, code string) (CheckIn, error) {
	ticketID, eventID, err := m.d.Signer.Verify(code)
	if err != nil {
		return CheckIn{}, err
	}
	// Check the code names the ticket's own event before admitting anyone with it.
	t, err := m.d.Store.Ticket(ctx, ticketID)
	if errors.Is(err, ErrTicketNotFound) {
		return CheckIn{}, ErrTicketNotFound.WithDetail("no such ticket")
	}
	if err != nil {
		return CheckIn{}, unavailable("check in", err)
	}
	if t.EventID != eventID {
		return CheckIn{}, ErrInvalidTicketCode.WithDetail("this is not a ticket issued by onsale")
	}
	c, first, err := m.d.Store.CheckIn(ctx, ticketID, staff, m.d.Clock.Now())
	if errors.Is(err, ErrTicketNotFound) {
		return CheckIn{}, ErrTicketNotFound.WithDetail("no such ticket")
	}
	if err != nil {
		return CheckIn{}, unavailable("check in", err)
	}
	// Told again on a second scan: a notice lost with a crash after the first is sent then.
	m.notifyCheckIn(ctx, c)
	if !first {
		return c, ErrAlreadyCheckedIn.WithDetail("checked in at %s", c.CheckedInAt.Format(time.RFC3339)).
			WithExtra("checked_in_at", c.CheckedInAt.Format(time.RFC3339Nano))
	}
	return c, nil
}

// notifyCheckIn tells the organizer's integrations of an admission. The door does not wait on
// them: a failure is logged, not answered.
func (m *Module) notifyCheckIn(ctx context.Context, c CheckIn) {
	if m.d.Webhooks == nil || m.d.Owners == nil {
		return
	}
	t := c.Ticket
	_, organizer, err := m.d.Owners.Of(ctx, t.TicketTypeID)
	if err == nil {
		var ev webhook.Event
		ev, err = webhook.TicketCheckedInEvent(organizer, webhook.TicketData{TicketID: t.ID, OrderID: t.OrderID,
			EventID: t.EventID, TicketTypeID: t.TicketTypeID, CheckedInAt: c.CheckedInAt})
		if err == nil {
			err = m.d.Webhooks.Publish(ctx, ev)
		}
	}
	if err != nil {
		m.d.Log.WarnContext(ctx, "ticket.checked_in webhook", "ticket", t.ID, "err", err)
	}
}

// unavailable marks a failure that is not one of the modules' own answers as a dependency
// outage: 503, retry shortly.
func unavailable(what string, err error) error {
	if pe := problem.As(err); pe != nil && pe.Kind != problem.Internal {
		return err
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	return problem.Unavailablef(fmt.Errorf("%s: %w", what, err), time.Second, "orders are temporarily unavailable")
}
