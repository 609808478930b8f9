package payment

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/platform/problem"
)

// ErrCancelClosed refuses a customer's cancellation outside the event's window.
var ErrCancelClosed = problem.New(problem.Conflict, "cancellation-window-closed", "Cancellation window closed")

// The refund keys of the three ways an order is refunded: one refund per order and key, so a
// repeated request, from any replica, finds the first.
const (
	keyCustomerCancel = "customer-cancel"
	keyEventCancel    = "event-cancel"
	keyOrganizerPfx   = "organizer:"
	// keyUnconfirmed is the refund of a payment whose order could not be confirmed (its tickets
	// were gone, or the payment was given up).
	keyUnconfirmed = "unconfirmed"
)

// maxReasonLen bounds the reason an organizer or customer gives.
const maxReasonLen = 500

func checkReason(reason string) error {
	if len(reason) > maxReasonLen || strings.ContainsFunc(reason, func(r rune) bool { return r < 0x20 && r != '\n' && r != '\t' }) {
		return problem.ErrValidation.WithFields(problem.FieldError{Field: "reason",
			Message: fmt.Sprintf("must be at most %d characters without control characters", maxReasonLen)})
	}
	return nil
}

// CancelOrder cancels a customer's confirmed order while its event allows it: the tickets are
// voided and go back on sale, and everything paid is refunded by the payment worker. Repeating it
// returns the first cancellation.
func (m *Module) CancelOrder(ctx context.Context, customer, id uuid.UUID, reason string) (RefundResult, error) {
	if err := checkReason(reason); err != nil {
		return RefundResult{}, err
	}
	o, err := m.Order(ctx, customer, id)
	if err != nil {
		return RefundResult{}, err
	}
	for _, r := range o.Refunds {
		if r.Key == keyCustomerCancel {
			return RefundResult{Order: o, Refund: r}, nil
		}
	}
	if o.Status != StatusConfirmed || o.Voided || len(o.Tickets) == 0 {
		return RefundResult{}, ErrNotRefundable.WithDetail("only a confirmed order can be cancelled; this one is %s", o.Status)
	}
	ids := make([]uuid.UUID, len(o.Tickets))
	for i, t := range o.Tickets {
		ids[i] = t.ID
	}
	admitted, err := m.d.Store.CheckedIn(ctx, ids)
	if err != nil {
		return RefundResult{}, unavailable("read check-ins", err)
	}
	if len(admitted) > 0 {
		return RefundResult{}, ErrNotRefundable.WithDetail("a ticket of this order was used at the door; ask the organizer")
	}
	es, err := m.d.Inventory.EventStock(ctx, o.Tickets[0].EventID)
	if err != nil {
		return RefundResult{}, unavailable("read event", err)
	}
	e, now := es.Catalogue.Event, m.d.Clock.Now().UTC()
	if !e.CancelOpen(now) {
		if e.CancelCutoffHours == nil {
			return RefundResult{}, ErrCancelClosed.WithDetail("this event's orders cannot be cancelled")
		}
		return RefundResult{}, ErrCancelClosed.WithDetail("cancellations closed %d hours before the event, at %s",
			*e.CancelCutoffHours, e.StartsAt.Add(-time.Duration(*e.CancelCutoffHours)*time.Hour).Format(time.RFC3339))
	}
	return m.requestRefund(ctx, RefundRequest{OrderID: o.ID, Key: keyCustomerCancel, Reason: reason, Cancel: true, At: now})
}

// RefundOrder refunds an order of the organizer's event: amountCents of it (0: everything left),
// under the organizer's idempotency key. A refund of everything left also cancels the order (its
// tickets are voided and go back on sale) unless keepTickets.
func (m *Module) RefundOrder(ctx context.Context, organizer, id uuid.UUID, amountCents int64, reason, key string, keepTickets bool) (RefundResult, error) {
	if key == "" {
		return RefundResult{}, ErrMissingKey.WithDetail("send an Idempotency-Key header so a retry cannot refund twice")
	}
	if amountCents < 0 {
		return RefundResult{}, problem.ErrValidation.WithFields(problem.FieldError{Field: "amount_cents", Message: "must be positive"})
	}
	if err := checkReason(reason); err != nil {
		return RefundResult{}, err
	}
	o, err := m.d.Store.Get(ctx, id)
	if errors.Is(err, ErrOrderNotFound) {
		return RefundResult{}, ErrOrderNotFound.WithDetail("no such order")
	}
	if err != nil {
		return RefundResult{}, unavailable("read order", err)
	}
	e, err := m.d.Inventory.EventOf(ctx, o.Hold.TicketTypeID)
	if err != nil {
		return RefundResult{}, unavailable("read event", err)
	}
	if e.OrganizerID != organizer {
		// Another organizer's order does not exist for this one.
		return RefundResult{}, ErrOrderNotFound.WithDetail("no such order")
	}
	cancel := !keepTickets && (amountCents == 0 || amountCents == o.RefundableCents())
	return m.requestRefund(ctx, RefundRequest{OrderID: o.ID, Key: keyOrganizerPfx + key, AmountCents: amountCents,
		Reason: reason, Cancel: cancel, At: m.d.Clock.Now().UTC()})
}

// requestRefund stores the refund with its outbox message and hands the message to the relay.
func (m *Module) requestRefund(ctx context.Context, req RefundRequest) (RefundResult, error) {
	res, err := m.d.Store.RequestRefund(ctx, req)
	if err != nil {
		return RefundResult{}, unavailable("request refund", err)
	}
	if res.Message.ID != 0 {
		res.Message.TraceParent = traceParent(ctx)
		m.d.Relay.Notify(res.Message)
	}
	return res, nil
}

// CancellationProgress is an event cancellation with how far its refunds have come.
type CancellationProgress struct {
	Cancellation EventCancellation
	Sales        Sales // summed over the event's ticket types
}

// CancelEvent cancels an organizer's event: sales end at once, and every paid order is cancelled
// and refunded in the background (the cancellations runner). Repeating it returns the first
// cancellation, and finishes what a crash may have left undone in inventory.
func (m *Module) CancelEvent(ctx context.Context, organizer, eventID uuid.UUID, reason string) (CancellationProgress, bool, error) {
	if err := checkReason(reason); err != nil {
		return CancellationProgress{}, false, err
	}
	cat, err := m.d.Inventory.CancelEvent(ctx, organizer, eventID)
	if err != nil {
		return CancellationProgress{}, false, unavailable("cancel event", err)
	}
	ids := make([]uuid.UUID, len(cat.TicketTypes))
	for i, t := range cat.TicketTypes {
		ids[i] = t.ID
	}
	c, created, err := m.d.Store.CancelEvent(ctx, EventCancellation{EventID: eventID, OrganizerID: organizer,
		TicketTypes: ids, Reason: reason, CreatedAt: cat.Event.CancelledAt})
	if err != nil {
		return CancellationProgress{}, false, unavailable("record cancellation", err)
	}
	if m.d.Webhooks != nil {
		ev, err := eventCancelledNotice(c)
		if err == nil {
			err = m.d.Webhooks.Publish(ctx, ev)
		}
		if err != nil {
			// The cancellations runner tells them again until the cancellation is finished.
			m.d.Log.WarnContext(ctx, "event.cancelled notice", "event", eventID, "err", err)
		}
	}
	if m.d.Wake != nil {
		m.d.Wake()
	}
	p, err := m.progress(ctx, c)
	return p, created, err
}

// Cancellation returns an event's cancellation and its progress, for its organizer.
func (m *Module) Cancellation(ctx context.Context, organizer, eventID uuid.UUID) (CancellationProgress, error) {
	c, err := m.d.Store.EventCancellation(ctx, eventID)
	if errors.Is(err, ErrCancellationNotFound) {
		if _, oerr := m.ownEvent(ctx, organizer, eventID); oerr != nil {
			return CancellationProgress{}, oerr
		}
		return CancellationProgress{}, ErrCancellationNotFound.WithDetail("this event was not cancelled")
	}
	if err != nil {
		return CancellationProgress{}, unavailable("read cancellation", err)
	}
	if c.OrganizerID != organizer {
		return CancellationProgress{}, inventory.ErrNotOwner.WithDetail("only the event's organizer sees its cancellation")
	}
	return m.progress(ctx, c)
}

func (m *Module) progress(ctx context.Context, c EventCancellation) (CancellationProgress, error) {
	sales, err := m.d.Store.Sales(ctx, c.TicketTypes)
	if err != nil {
		return CancellationProgress{}, unavailable("read sales", err)
	}
	p := CancellationProgress{Cancellation: c}
	for _, s := range sales {
		p.Sales.Pending += s.Pending
		p.Sales.Confirmed += s.Confirmed
		p.Sales.Failed += s.Failed
		p.Sales.Refunding += s.Refunding
		p.Sales.Refunded += s.Refunded
	}
	return p, nil
}
