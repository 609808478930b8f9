package payment

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"
	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/platform/clock"
)

// Action is what the queue should do with a payment request after an attempt.
type Action int

// The actions.
const (
	Done    Action = iota // finished (confirmed or failed): acknowledge
	Retry                 // a transient failure: deliver again after Delay; counts towards the limit
	Wait                  // the provider is not being called (breaker): deliver again after Delay
	Discard               // not processable (no such order): dead-letter it
)

// Decision is the outcome of one attempt.
type Decision struct {
	Action Action
	Delay  time.Duration
	Reason string
}

// Processor takes a payment request from accepted to confirmed or failed. Every step is
// idempotent — the charge by the order id, the sale by the hold id, the confirmation by the order
// id — so a request delivered twice, or after a crash at any point, completes the same order once.
type Processor struct {
	store    OrderStore
	inv      inventory.Service
	provider *GuardedProvider
	bus      StatusBus
	clock    clock.Clock
	log      *slog.Logger
	outcomes metric.Int64Counter
}

// NewProcessor assembles a processor.
func NewProcessor(store OrderStore, inv inventory.Service, provider *GuardedProvider, bus StatusBus,
	clk clock.Clock, log *slog.Logger, meter metric.Meter) (*Processor, error) {
	outcomes, err := meter.Int64Counter("onsale.payment.orders", metric.WithDescription("Orders that reached a status, by status and reason."))
	if err != nil {
		return nil, err
	}
	return &Processor{store: store, inv: inv, provider: provider, bus: bus, clock: clk, log: log, outcomes: outcomes}, nil
}

// backoff grows with the attempt number, with jitter so that retries do not march in step.
func backoff(attempt int) time.Duration {
	d := time.Second << min(attempt-1, 5) // 1s, 2s, 4s ... 32s
	return d/2 + rand.N(d/2+1)
}

// Process makes one attempt at an order's payment.
func (p *Processor) Process(ctx context.Context, orderID uuid.UUID, attempt int) Decision {
	o, err := p.store.Get(ctx, orderID)
	if errors.Is(err, ErrOrderNotFound) {
		return Decision{Action: Discard, Reason: "no such order"}
	}
	if err != nil {
		return p.retry(ctx, orderID, attempt, fmt.Errorf("read order: %w", err))
	}
	if o.Status.Terminal() {
		p.announce(ctx, o) // in case the first announcement was lost with a crash
		return Decision{Action: Done}
	}

	charge, err := p.provider.Charge(ctx, ChargeRequest{
		IdempotencyKey: o.ID.String(), AmountCents: o.AmountCents, Currency: o.Currency,
		CustomerID: o.CustomerID, Description: "onsale order " + o.ID.String(),
	})
	switch {
	case errors.Is(err, ErrBreakerOpen):
		p.delayed(ctx, o)
		return Decision{Action: Wait, Delay: p.provider.RetryIn(), Reason: "provider circuit open"}
	case errors.Is(err, ErrDeclined):
		if err := p.inv.ReleaseHold(ctx, o.Hold.ID); err != nil && !errors.Is(err, inventory.ErrHoldNotFound) {
			return p.retry(ctx, orderID, attempt, fmt.Errorf("release hold after decline: %w", err))
		}
		return p.fail(ctx, o, DetailDeclined, "declined", attempt)
	case err != nil:
		if p.provider.State() == gobreaker.StateOpen {
			p.delayed(ctx, o)
		}
		return p.retry(ctx, orderID, attempt, fmt.Errorf("charge: %w", err))
	}

	tickets, err := p.inv.CommitHold(ctx, o.Hold, o.ID)
	switch {
	case errors.Is(err, inventory.ErrSoldOut):
		// The hold lapsed (a long outage) and its tickets were sold to others: give the money back.
		if _, err := p.refund(ctx, o); err != nil {
			return p.retry(ctx, orderID, attempt, err)
		}
		return p.fail(ctx, o, DetailSoldOut, "sold_out", attempt)
	case err != nil:
		return p.retry(ctx, orderID, attempt, fmt.Errorf("commit hold: %w", err))
	}

	ts := make([]Ticket, len(tickets))
	for i, t := range tickets {
		ts[i] = Ticket{ID: t.ID, OrderID: o.ID, TicketTypeID: t.TicketTypeID, EventID: t.EventID, Seq: t.Seq}
	}
	confirmed, changed, err := p.store.Confirm(ctx, o.ID, charge.ID, ts)
	if errors.Is(err, ErrOrderTerminal) {
		// Failed meanwhile (given up by another delivery): the sale stands, so the order must
		// not; this cannot happen with one delivery at a time and is logged loudly if it does.
		p.log.ErrorContext(ctx, "order failed while its sale committed", "order", o.ID)
		return Decision{Action: Done}
	}
	if err != nil {
		return p.retry(ctx, orderID, attempt, fmt.Errorf("confirm: %w", err))
	}
	if changed {
		p.outcomes.Add(ctx, 1, metric.WithAttributes(attribute.String("status", "confirmed"), attribute.String("reason", "paid")))
	}
	p.announce(ctx, confirmed)
	return Decision{Action: Done}
}

func (p *Processor) retry(ctx context.Context, orderID uuid.UUID, attempt int, err error) Decision {
	p.log.WarnContext(ctx, "payment attempt failed; will retry", "order", orderID, "attempt", attempt, "err", err)
	return Decision{Action: Retry, Delay: backoff(attempt), Reason: err.Error()}
}

// delayed tells the customer the payment is queued behind a provider outage.
func (p *Processor) delayed(ctx context.Context, o Order) {
	updated, changed, err := p.store.SetDetail(ctx, o.ID, DetailDelayed)
	if err != nil {
		p.log.WarnContext(ctx, "mark order delayed", "order", o.ID, "err", err)
		return
	}
	if changed {
		p.announce(ctx, updated)
	}
}

// refund gives back whatever was charged for the order; refunded is false when nothing was.
func (p *Processor) refund(ctx context.Context, o Order) (refunded bool, err error) {
	_, err = p.provider.Refund(ctx, RefundRequest{IdempotencyKey: "refund:" + o.ID.String(), ChargeKey: o.ID.String(), AmountCents: o.AmountCents})
	switch {
	case errors.Is(err, ErrNoCharge):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

func (p *Processor) fail(ctx context.Context, o Order, detail, reason string, attempt int) Decision {
	failed, changed, err := p.store.Fail(ctx, o.ID, detail)
	if errors.Is(err, ErrOrderTerminal) {
		return Decision{Action: Done}
	}
	if err != nil {
		return p.retry(ctx, o.ID, attempt, fmt.Errorf("fail order: %w", err))
	}
	if changed {
		p.outcomes.Add(ctx, 1, metric.WithAttributes(attribute.String("status", "failed"), attribute.String("reason", reason)))
	}
	p.announce(ctx, failed)
	return Decision{Action: Done}
}

// GiveUp ends an order whose payment kept failing: any charge is refunded, the hold released and
// the order failed. It returns an error (and the order stays pending) while the refund cannot be
// made, because an order must never end failed with the customer's money kept.
func (p *Processor) GiveUp(ctx context.Context, orderID uuid.UUID, reason string) error {
	o, err := p.store.Get(ctx, orderID)
	if errors.Is(err, ErrOrderNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if o.Status.Terminal() {
		return nil
	}
	refunded, err := p.refund(ctx, o)
	if err != nil {
		return err
	}
	if err := p.inv.ReleaseHold(ctx, o.Hold.ID); err != nil && !errors.Is(err, inventory.ErrHoldNotFound) {
		return err
	}
	p.log.ErrorContext(ctx, "payment given up", "order", orderID, "reason", reason, "refunded", refunded)
	detail := DetailGaveUp
	if refunded {
		detail = DetailRefunded
	}
	if d := p.fail(ctx, o, detail, "gave_up", 1); d.Action != Done {
		return errors.New(d.Reason)
	}
	return nil
}

// announce tells every replica about the order's status, for live streams. A lost announcement
// is not fatal: streams re-read the order on every heartbeat.
func (p *Processor) announce(ctx context.Context, o Order) {
	if err := p.bus.Publish(ctx, EventOf(o)); err != nil {
		p.log.WarnContext(ctx, "announce order status", "order", o.ID, "err", err)
	}
}
