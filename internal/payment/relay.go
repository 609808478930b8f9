package payment

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/onsale-dev/onsale/internal/platform/clock"
)

// Relay moves payment requests from the outbox to the queue. A new order is handed to it at once
// (the fast path, milliseconds after the order commits); a sweeper also republishes anything left
// in the outbox longer than a few seconds — after a NATS outage, a crash between commit and
// publish, or on another replica's behalf — so no accepted order is ever stranded.
type Relay struct {
	store OrderStore
	pub   Publisher
	clock clock.Clock
	log   *slog.Logger

	kick     chan OutboxMessage
	interval time.Duration // sweep period
	grace    time.Duration // the fast path's head start before the sweeper steps in
	purge    time.Duration // period of idempotency key purges and stale order checks
	stale    time.Duration // a pending order nobody tried for this long is requested again

	stop    chan struct{}
	done    sync.WaitGroup
	backlog atomic.Int64 // messages the last sweep found waiting past the grace period
	// providerDown, when set, tells whether payments are waiting on the provider (its breaker
	// is open): pending orders are then stale by design and the reconciler leaves them alone.
	providerDown func() bool
}

// ReconcileUnless sets a condition under which stale pending orders are not requested again.
func (r *Relay) ReconcileUnless(providerDown func() bool) { r.providerDown = providerDown }

// NewRelay returns a relay; Start runs it.
// staleAfter is how long a pending order may go without an attempt before its payment is
// requested again.
func NewRelay(store OrderStore, pub Publisher, clk clock.Clock, log *slog.Logger, staleAfter time.Duration) *Relay {
	return &Relay{
		store: store, pub: pub, clock: clk, log: log,
		kick: make(chan OutboxMessage, 4096), interval: time.Second, grace: 3 * time.Second, purge: time.Minute,
		stale: staleAfter, stop: make(chan struct{}),
	}
}

// Notify hands a freshly committed message to the fast path. It never blocks: when the fast path
// is saturated the sweeper takes the message a few seconds later.
func (r *Relay) Notify(m OutboxMessage) {
	select {
	case r.kick <- m:
	default:
	}
}

// Start runs the fast path and the sweeper until Stop.
func (r *Relay) Start() {
	r.done.Add(2)
	go r.fast()
	go r.sweep()
}

// Stop ends both loops. Messages not yet published stay in the outbox for the next sweep, here
// or on another replica.
func (r *Relay) Stop() {
	close(r.stop)
	r.done.Wait()
}

func (r *Relay) fast() {
	defer r.done.Done()
	for {
		var batch []OutboxMessage
		select {
		case m := <-r.kick:
			batch = append(batch, m)
		case <-r.stop:
			return
		}
	gather:
		for len(batch) < 256 {
			select {
			case m := <-r.kick:
				batch = append(batch, m)
			default:
				break gather
			}
		}
		r.publish(batch)
	}
}

func (r *Relay) sweep() {
	defer r.done.Done()
	tick := time.NewTicker(r.interval)
	defer tick.Stop()
	lastPurge := r.clock.Now()
	for {
		select {
		case <-tick.C:
		case <-r.stop:
			return
		}
		r.SweepOnce()
		if now := r.clock.Now(); now.Sub(lastPurge) >= r.purge {
			lastPurge = now
			r.Reconcile()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if n, err := r.store.PurgeIdempotency(ctx, now); err != nil {
				r.log.Warn("purge idempotency keys", "err", err)
			} else if n > 0 {
				r.log.Info("idempotency keys expired", "count", n)
			}
			cancel()
		}
	}
}

// Reconcile requests the payment again for pending orders that no worker tried for the stale
// period and that have nothing in the outbox: their message was lost (a NATS store lost, a requeue
// that failed after the last delivery). Processing is idempotent, so a request that was merely
// slow costs a duplicate delivery and nothing more.
func (r *Relay) Reconcile() {
	if r.providerDown != nil && r.providerDown() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	now := r.clock.Now()
	ids, err := r.store.StalePending(ctx, now.Add(-r.stale), 500)
	if err != nil {
		r.log.Warn("find stale orders", "err", err)
		return
	}
	if len(ids) == 0 {
		return
	}
	msgs := make([]OutboxMessage, len(ids))
	for i, id := range ids {
		msgs[i] = OutboxMessage{OrderID: id, CreatedAt: now}
	}
	published, err := r.pub.Publish(ctx, msgs)
	if err != nil {
		r.log.Warn("request stale payments again", "err", err)
	}
	if len(published) < len(msgs) {
		return // try again next time
	}
	if err := r.store.Touch(ctx, ids, now); err != nil {
		r.log.Warn("touch stale orders", "err", err)
	}
	r.log.Warn("payments requested again for orders nobody tried", "count", len(ids), "after", r.stale.String())
}

// SweepOnce publishes messages that have waited in the outbox longer than the grace period.
func (r *Relay) SweepOnce() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		msgs, err := r.store.Unpublished(ctx, r.clock.Now().Add(-r.grace), 500)
		if err != nil {
			r.log.Warn("read outbox", "err", err)
			return
		}
		r.backlog.Store(int64(len(msgs)))
		if len(msgs) == 0 {
			return
		}
		r.log.Info("republishing from the outbox", "count", len(msgs))
		if published := r.publish(msgs); published < len(msgs) {
			return // the queue is struggling; try again next tick
		}
	}
}

// RegisterMetrics reports the outbox backlog the sweeper last found.
func (r *Relay) RegisterMetrics(meter metric.Meter) error {
	_, err := meter.Int64ObservableGauge("onsale.payment.outbox.backlog",
		metric.WithDescription("Accepted orders whose payment request waited in the outbox past the fast path (up to 500)."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(r.backlog.Load())
			return nil
		}))
	return err
}

// publish sends msgs and clears those the queue accepted; it returns how many it cleared.
func (r *Relay) publish(msgs []OutboxMessage) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ids, err := r.pub.Publish(ctx, msgs)
	if err != nil {
		r.log.Warn("publish payment requests", "accepted", len(ids), "of", len(msgs), "err", err)
	}
	if len(ids) == 0 {
		return 0
	}
	if err := r.store.Published(ctx, ids); err != nil {
		// They will be published again by the sweeper; the queue drops the repeats.
		r.log.Warn("clear outbox", "err", err)
		return 0
	}
	return len(ids)
}
