package payment

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/onsale-dev/onsale/internal/platform/clock"
	"github.com/onsale-dev/onsale/internal/webhook"
)

// cancelConcurrency is how many refunds one runner asks for at once: a few of the pool's
// connections, so sales of other events keep theirs.
const cancelConcurrency = 4

// Cancellations refunds the orders of cancelled events in the background: page by page, each
// paid order is cancelled under the one key "event-cancel", so replicas running it side by side,
// or a replica that restarts half way, refund every order once. An event's cancellation is
// finished once every order is refunded (or failed) and none is still waiting for its payment.
type Cancellations struct {
	store OrderStore
	relay *Relay
	hooks webhook.Publisher // nil: nobody is told
	clock clock.Clock
	log   *slog.Logger
	every time.Duration
	page  int
	// pace spreads the refunds out: each is a chain of database, Redis, NATS and provider calls,
	// and ten thousand of them at once would take the CPU the sales of other events need.
	pace *rate.Limiter

	wake chan struct{}
	stop chan struct{}
	done sync.WaitGroup
}

// NewCancellations returns a runner that looks for work every period (and when woken), cancelling
// up to page orders per store read and starting at most perSecond refunds a second.
func NewCancellations(store OrderStore, relay *Relay, hooks webhook.Publisher, clk clock.Clock, log *slog.Logger, every time.Duration, page int, perSecond float64) *Cancellations {
	return &Cancellations{store: store, relay: relay, hooks: hooks, clock: clk, log: log, every: every, page: max(page, 1),
		pace: rate.NewLimiter(rate.Limit(perSecond), max(1, int(perSecond/10))), wake: make(chan struct{}, 1), stop: make(chan struct{})}
}

// Wake asks for a pass soon (an event was just cancelled).
func (c *Cancellations) Wake() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Start runs the passes until Stop.
func (c *Cancellations) Start() {
	c.done.Add(1)
	go func() {
		defer c.done.Done()
		wait := c.every
		for {
			t := time.NewTimer(wait)
			select {
			case <-c.stop:
				t.Stop()
				return
			case <-t.C:
			case <-c.wake:
				t.Stop()
			}
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				select {
				case <-c.stop:
					cancel()
				case <-ctx.Done():
				}
			}()
			open, err := c.Pass(ctx)
			if err != nil && !errors.Is(err, context.Canceled) {
				c.log.Warn("event cancellations pass", "err", err)
			}
			cancel()
			// While refunds are under way, look again soon: the cancellation is finished, and
			// its organizer told so, within a fraction of a second of the last refund.
			wait = c.every
			if open > 0 {
				wait = min(c.every, 250*time.Millisecond)
			}
		}
	}()
}

// Stop ends the runner, waiting for the pass under way to stop.
func (c *Cancellations) Stop() {
	close(c.stop)
	c.done.Wait()
}

// Pass works on every open cancellation once, and returns how many are still open.
func (c *Cancellations) Pass(ctx context.Context) (int, error) {
	open, err := c.store.OpenCancellations(ctx, 100)
	if err != nil {
		return 0, err
	}
	var errs []error
	left := 0
	for _, ec := range open {
		finished, err := c.work(ctx, ec)
		if err != nil {
			errs = append(errs, err)
		}
		if !finished {
			left++
		}
	}
	return left, errors.Join(errs...)
}

func (c *Cancellations) work(ctx context.Context, ec EventCancellation) (finished bool, err error) {
	if c.hooks != nil {
		ev, err := eventCancelledNotice(ec)
		if err == nil {
			err = c.hooks.Publish(ctx, ev)
		}
		if err != nil {
			return false, err
		}
	}
	var after *OrderCursor
	for {
		orders, err := c.store.TicketTypeOrders(ctx, ec.TicketTypes, StatusConfirmed, after, c.page)
		if err != nil {
			return false, err
		}
		// A few at a time: each is a short transaction of its own, and the payment workers
		// refund them as they come.
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(cancelConcurrency)
		for _, o := range orders {
			if err := c.pace.Wait(ctx); err != nil {
				break
			}
			g.Go(func() error {
				res, err := c.store.RequestRefund(gctx, RefundRequest{OrderID: o.ID, Key: keyEventCancel, Reason: ec.Reason, Cancel: true, At: c.clock.Now()})
				switch {
				case errors.Is(err, ErrNotRefundable):
					return nil // cancelled meanwhile by its customer or the organizer
				case err != nil:
					return err
				}
				if res.Message.ID != 0 {
					c.relay.Notify(res.Message)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return false, err
		}
		if len(orders) < c.page {
			break
		}
		last := orders[len(orders)-1]
		after = &OrderCursor{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	// Orders still being paid for are cancelled once they are confirmed, on a later pass; the
	// cancellation is finished when the last refund is made.
	for _, st := range []Status{StatusPending, StatusConfirmed, StatusRefundPending} {
		left, err := c.store.TicketTypeOrders(ctx, ec.TicketTypes, st, nil, 1)
		if err != nil {
			return false, err
		}
		if len(left) > 0 {
			return false, nil
		}
	}
	if err := c.store.FinishCancellation(ctx, ec.EventID, c.clock.Now()); err != nil {
		return false, err
	}
	c.log.Info("event cancellation finished", "event", ec.EventID)
	return true, nil
}
