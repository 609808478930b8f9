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
	"github.com/onsale-dev/onsale/internal/webhook"
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
	inv      Inventory
	provider *GuardedProvider
	bus      StatusBus
	hooks    webhook.Publisher // nil: nobody is told
	owners   *Owners
	clock    clock.Clock
	log      *slog.Logger
	outcomes metric.Int64Counter
	// duration is how long each attempt takes, by what came of it: the autoscaler's second signal
	// besides requests in flight (deploy/k8s/hpa.yaml), since a provider slowing down fills the
	// payment queue long before it shows in CPU.
	duration metric.Float64Histogram
	results  map[Action]metric.MeasurementOption // the duration's labels, built once
	// settling bounds the charged payments being turned into sales at once. Charges answered by a
	// slow provider come back in waves, hundreds within milliseconds; settled all at once they
	// queued customers' holds behind a thousand Redis scripts (hold p95 ×4 in the slow-provider
	// system test). Settled a few dozen at a time, the same work leaves room for requests.
	settling chan struct{}
}

// NewProcessor assembles a processor that settles at most settleAtOnce charged payments at once.
// The organizers' webhooks (nil: none) hear of every order that is confirmed, fails, is cancelled
// or refunded.
func NewProcessor(store OrderStore, inv Inventory, provider *GuardedProvider, bus StatusBus, hooks webhook.Publisher,
	clk clock.Clock, log *slog.Logger, meter metric.Meter, settleAtOnce int) (*Processor, error) {
	outcomes, err := meter.Int64Counter("onsale.payment.orders", metric.WithDescription("Orders that reached a status, by status and reason."))
	if err != nil {
		return nil, fmt.Errorf("orders counter: %w", err)
	}
	duration, err := meter.Float64Histogram("onsale.payment.processing.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of payment attempts (charge and settlement), by result: done, retry, wait or discard."),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
	if err != nil {
		return nil, fmt.Errorf("processing duration histogram: %w", err)
	}
	return &Processor{store: store, inv: inv, provider: provider, bus: bus, hooks: hooks, owners: NewOwners(inv, 4096),
		clock: clk, log: log, outcomes: outcomes,
		duration: duration, results: map[Action]metric.MeasurementOption{
			Done:    metric.WithAttributeSet(attribute.NewSet(attribute.String("result", "done"))),
			Retry:   metric.WithAttributeSet(attribute.NewSet(attribute.String("result", "retry"))),
			Wait:    metric.WithAttributeSet(attribute.NewSet(attribute.String("result", "wait"))),
			Discard: metric.WithAttributeSet(attribute.NewSet(attribute.String("result", "discard"))),
		},
		settling: make(chan struct{}, max(settleAtOnce, 1))}, nil
}

// backoff grows with the attempt number, with jitter so that retries do not march in step.
func backoff(attempt int) time.Duration {
	d := time.Second << min(attempt-1, 5) // 1s, 2s, 4s ... 32s
	return d/2 + rand.N(d/2+1)
}

// Process makes one attempt at an order's payment. An attempt that leaves the order pending is
// recorded, so the relay's reconciler can tell a waiting order from one whose request was lost.
func (p *Processor) Process(ctx context.Context, orderID uuid.UUID, attempt int) Decision {
	// Wall time, not p.clock: this measures the work, whatever clock the domain runs on.
	start := time.Now()
	d := p.process(ctx, orderID, attempt)
	p.duration.Record(ctx, time.Since(start).Seconds(), p.results[d.Action])
	// A payment waiting for the breaker is not recorded: the reconciler leaves pending orders
	// alone while the breaker is open (see Relay.Reconcile).
	if d.Action == Retry {
		if err := p.store.Touch(ctx, []uuid.UUID{orderID}, p.clock.Now()); err != nil {
			p.log.WarnContext(ctx, "record payment attempt", "order", orderID, "err", err)
		}
	}
	return d
}

func (p *Processor) process(ctx context.Context, orderID uuid.UUID, attempt int) Decision {
	if p.provider.State() == gobreaker.StateOpen {
		// Nothing can be charged now: tell the customer (a no-op once told) and come back later,
		// without reading the order. Hundreds of queued payments pass through here every
		// cool-down; they must not cost the database more than that one conditional update.
		p.markDelayed(ctx, orderID)
		return p.wait()
	}
	o, err := p.store.Get(ctx, orderID)
	if errors.Is(err, ErrOrderNotFound) {
		return Decision{Action: Discard, Reason: "no such order"}
	}
	if err != nil {
		return p.retry(ctx, orderID, attempt, fmt.Errorf("read order: %w", err))
	}
	if o.Status == StatusRefundPending {
		return p.refundOrder(ctx, o, attempt)
	}
	if o.Status.Terminal() {
		// In case the first announcement and notices were lost with a crash.
		return p.finish(ctx, o, attempt)
	}

	charge, err := p.provider.Charge(ctx, ChargeRequest{
		IdempotencyKey: o.ID.String(), AmountCents: o.AmountCents, Currency: o.Currency,
		CustomerID: o.CustomerID, Description: "onsale order " + o.ID.String(),
	})
	switch {
	case errors.Is(err, ErrBreakerOpen):
		p.markDelayed(ctx, o.ID)
		return p.wait()
	case errors.Is(err, ErrChargePending):
		// Accepted, settled later: the request is finished, and the relay's reconciler asks
		// again under the same key once the order is stale. Holding the message meanwhile
		// would hold a worker or an unacknowledged delivery, and payments behind it would wait.
		if err := p.store.Touch(ctx, []uuid.UUID{o.ID}, p.clock.Now()); err != nil {
			return p.retry(ctx, orderID, attempt, fmt.Errorf("record pending charge: %w", err))
		}
		return Decision{Action: Done, Reason: "charge pending"}
	case errors.Is(err, ErrDeclined):
		if err := p.inv.ReleaseHold(ctx, o.Hold.ID); err != nil && !errors.Is(err, inventory.ErrHoldNotFound) {
			return p.retry(ctx, orderID, attempt, fmt.Errorf("release hold after decline: %w", err))
		}
		return p.fail(ctx, o, DetailDeclined, "declined", attempt)
	case err != nil:
		if p.provider.State() == gobreaker.StateOpen {
			p.markDelayed(ctx, o.ID)
		}
		return p.retry(ctx, orderID, attempt, fmt.Errorf("charge: %w", err))
	}

	select {
	case p.settling <- struct{}{}:
		defer func() { <-p.settling }()
	case <-ctx.Done():
		// Charged but not settled: the redelivery finds the charge (same key) and settles it.
		return p.retry(ctx, orderID, attempt, fmt.Errorf("settle: %w", ctx.Err()))
	}
	tickets, err := p.inv.CommitHold(ctx, o.Hold, o.ID)
	switch {
	case errors.Is(err, inventory.ErrSoldOut):
		// The hold lapsed (a long outage) and its tickets were sold to others: give the money back.
		refunded, err := p.refund(ctx, o)
		if err != nil {
			return p.retry(ctx, orderID, attempt, err)
		}
		return p.failRefunded(ctx, o, DetailSoldOut, "sold_out", refunded, attempt)
	case err != nil:
		return p.retry(ctx, orderID, attempt, fmt.Errorf("commit hold: %w", err))
	}

	confirmed, changed, err := p.store.Confirm(ctx, o.ID, charge.ID, orderTickets(o.ID, tickets))
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
	return p.finish(ctx, confirmed, attempt)
}

// finish announces an order's new state to its streams and its organizer's integrations. The
// request is done only once the notices are queued: until then it is delivered again, and the
// redelivery finds the order finished and comes here.
func (p *Processor) finish(ctx context.Context, o Order, attempt int) Decision {
	p.announce(ctx, o)
	if err := notifyOrder(ctx, p.hooks, p.owners, o); err != nil {
		return p.retry(ctx, o.ID, attempt, err)
	}
	return Decision{Action: Done}
}

// refundOrder carries out an order's pending refunds: a cancelled order's tickets go back on sale
// first, then each refund is asked of the provider under its own key (so a repeat refunds
// nothing more) and recorded.
func (p *Processor) refundOrder(ctx context.Context, o Order, attempt int) Decision {
	p.announce(ctx, o) // streams show refund_pending
	if o.Voided {
		if _, err := p.inv.ReturnTickets(ctx, o.Hold.ID); err != nil && !errors.Is(err, inventory.ErrHoldNotFound) {
			return p.retry(ctx, o.ID, attempt, fmt.Errorf("return tickets: %w", err))
		}
	}
	cur := o
	for _, r := range o.Refunds {
		if r.Status != RefundPending {
			continue
		}
		done, err := p.provider.Refund(ctx, ProviderRefund{IdempotencyKey: "refund:" + r.ID.String(), ChargeKey: o.ID.String(), AmountCents: r.AmountCents})
		switch {
		case errors.Is(err, ErrBreakerOpen):
			return p.wait()
		case errors.Is(err, ErrNoCharge), errors.Is(err, ErrRefundExceedsCharge):
			// Nothing the provider would ever accept: an operator must look (dead letter).
			p.log.ErrorContext(ctx, "refund refused by the provider", "order", o.ID, "refund", r.ID, "err", err)
			return Decision{Action: Discard, Reason: "refund refused: " + err.Error()}
		case err != nil:
			return p.retry(ctx, o.ID, attempt, fmt.Errorf("refund %s: %w", r.ID, err))
		}
		var changed bool
		cur, changed, err = p.store.CompleteRefund(ctx, r.ID, done.ID, p.clock.Now())
		if err != nil {
			return p.retry(ctx, o.ID, attempt, fmt.Errorf("complete refund %s: %w", r.ID, err))
		}
		if changed {
			p.outcomes.Add(ctx, 1, metric.WithAttributes(attribute.String("status", "refunded"), attribute.String("reason", refundReason(r))))
		}
	}
	return p.finish(ctx, cur, attempt)
}

// refundReason labels a refund for the outcomes metric by who asked for it.
func refundReason(r Refund) string {
	switch {
	case r.Key == keyCustomerCancel:
		return "customer_cancel"
	case r.Key == keyEventCancel:
		return "event_cancel"
	default:
		return "organizer"
	}
}

func (p *Processor) retry(ctx context.Context, orderID uuid.UUID, attempt int, err error) Decision {
	p.log.WarnContext(ctx, "payment attempt failed; will retry", "order", orderID, "attempt", attempt, "err", err)
	return Decision{Action: Retry, Delay: backoff(attempt), Reason: err.Error()}
}

// markDelayed tells the customer the payment is queued behind a provider outage.
func (p *Processor) markDelayed(ctx context.Context, orderID uuid.UUID) {
	updated, changed, err := p.store.SetDetail(ctx, orderID, DetailDelayed)
	if err != nil {
		p.log.WarnContext(ctx, "mark order delayed", "order", orderID, "err", err)
		return
	}
	if changed {
		p.announce(ctx, updated)
	}
}

// wait hands a payment back until the breaker may let it through. The delay is spread over up to
// twice the time left, so the queued payments do not all come back at the same instant.
func (p *Processor) wait() Decision {
	d := p.provider.RetryIn()
	return Decision{Action: Wait, Delay: d + rand.N(d+1), Reason: "provider circuit open"}
}

// refund gives back whatever was charged for an order that cannot be confirmed; refunded is
// the provider's refund, zero when nothing was charged. Its key is the order's own: one such
// refund per order, whichever attempt or replica asks.
func (p *Processor) refund(ctx context.Context, o Order) (refunded Refunded, err error) {
	refunded, err = p.provider.Refund(ctx, ProviderRefund{IdempotencyKey: "refund:" + o.ID.String(), ChargeKey: o.ID.String(), AmountCents: o.AmountCents})
	switch {
	case errors.Is(err, ErrNoCharge):
		return Refunded{}, nil
	case err != nil:
		return Refunded{}, err
	}
	return refunded, nil
}

// failRefunded fails an order whose charge was given back, with the refund in its history (a
// plain failure when nothing had been charged).
func (p *Processor) failRefunded(ctx context.Context, o Order, detail, reason string, refunded Refunded, attempt int) Decision {
	if refunded.ID == "" {
		return p.fail(ctx, o, detail, reason, attempt)
	}
	now := p.clock.Now().UTC()
	failed, changed, err := p.store.FailRefunded(ctx, o.ID, detail, Refund{ID: uuid.New(), Key: keyUnconfirmed,
		AmountCents: o.AmountCents, Reason: detail, ProviderRefundID: refunded.ID, CreatedAt: now, CompletedAt: now})
	if errors.Is(err, ErrOrderTerminal) {
		return Decision{Action: Done}
	}
	if err != nil {
		return p.retry(ctx, o.ID, attempt, fmt.Errorf("fail refunded order: %w", err))
	}
	if changed {
		p.outcomes.Add(ctx, 1, metric.WithAttributes(attribute.String("status", "failed"), attribute.String("reason", reason)))
	}
	return p.finish(ctx, failed, attempt)
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
	return p.finish(ctx, failed, attempt)
}

// GiveUp ends an order whose payment kept failing. If its sale did commit (only a charge that
// went through is ever committed), the order is confirmed after all; otherwise any charge is
// refunded, the hold released and the order failed. It returns an error, and the order stays
// pending, while that cannot be done: an order must never end failed with the customer's money
// kept, nor confirmed without its charge.
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
	if o.Status == StatusRefundPending {
		// Money is owed back: the order stays as it is, and the reconciler asks again later.
		return fmt.Errorf("order %s: a refund is still owed", o.ID)
	}
	sold, err := p.inv.SoldTickets(ctx, o.Hold.ID)
	if err != nil {
		return err
	}
	if len(sold) > 0 {
		return p.settle(ctx, o, sold)
	}
	refunded, err := p.refund(ctx, o)
	if err != nil {
		return err
	}
	if err := p.inv.ReleaseHold(ctx, o.Hold.ID); err != nil && !errors.Is(err, inventory.ErrHoldNotFound) {
		return err
	}
	p.log.ErrorContext(ctx, "payment given up", "order", orderID, "reason", reason, "refunded", refunded.ID != "")
	detail := DetailGaveUp
	if refunded.ID != "" {
		detail = DetailRefunded
	}
	if d := p.failRefunded(ctx, o, detail, "gave_up", refunded, 1); d.Action != Done {
		return errors.New(d.Reason)
	}
	return nil
}

// settle confirms an order whose sale committed but whose confirmation kept failing. The charge is
// asked for again by its key, which returns the one already made.
func (p *Processor) settle(ctx context.Context, o Order, sold []inventory.Ticket) error {
	charge, err := p.provider.Charge(ctx, ChargeRequest{
		IdempotencyKey: o.ID.String(), AmountCents: o.AmountCents, Currency: o.Currency, CustomerID: o.CustomerID,
	})
	if err != nil {
		return fmt.Errorf("settle order %s: %w", o.ID, err)
	}
	confirmed, changed, err := p.store.Confirm(ctx, o.ID, charge.ID, orderTickets(o.ID, sold))
	if err != nil {
		return fmt.Errorf("settle order %s: %w", o.ID, err)
	}
	if changed {
		p.outcomes.Add(ctx, 1, metric.WithAttributes(attribute.String("status", "confirmed"), attribute.String("reason", "settled")))
	}
	if d := p.finish(ctx, confirmed, 1); d.Action != Done {
		return errors.New(d.Reason)
	}
	return nil
}

func orderTickets(orderID uuid.UUID, tickets []inventory.Ticket) []Ticket {
	ts := make([]Ticket, len(tickets))
	for i, t := range tickets {
		ts[i] = Ticket{ID: t.ID, OrderID: orderID, TicketTypeID: t.TicketTypeID, EventID: t.EventID, Seq: t.Seq}
	}
	return ts
}

// announce tells every replica about the order's status, for live streams. A lost announcement
// is not fatal: the Rechecker rereads the orders with open streams.
func (p *Processor) announce(ctx context.Context, o Order) {
	if err := p.bus.Publish(ctx, EventOf(o)); err != nil {
		p.log.WarnContext(ctx, "announce order status", "order", o.ID, "err", err)
	}
}
