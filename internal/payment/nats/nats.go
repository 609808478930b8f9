// Package nats carries the payment module's messages over NATS: payment requests through a
// JetStream work-queue stream (file storage, deduplicated by order id) consumed by a durable pull
// consumer with explicit acks, dead letters to their own stream, and order status changes over
// plain NATS subjects to every replica's live streams. It uses only what NATS 2.9 offers.
package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"

	"github.com/onsale-dev/onsale/internal/payment"
	"github.com/onsale-dev/onsale/internal/platform/natsclient"
)

// Names are the streams, subjects and consumer the module uses.
type Names struct {
	Stream         string // payment requests (work queue)
	DeadStream     string // dead letters
	RequestSubject string
	DeadSubject    string
	StatusPrefix   string // + order id
	Durable        string
}

// NamesFor derives the names from a deployment prefix ("" in most deployments).
func NamesFor(prefix string) Names {
	up, dot := "", ""
	if prefix != "" {
		up, dot = prefix+"_", prefix+"."
	}
	return Names{
		Stream:         up + "PAYMENTS",
		DeadStream:     up + "PAYMENTS_DEAD",
		RequestSubject: dot + "payments.requested",
		DeadSubject:    dot + "payments.dead",
		StatusPrefix:   dot + "orders.status.",
		Durable:        up + "payment-worker",
	}
}

// setupWithin bounds how long creating a stream or the consumer may keep failing: on a NATS
// cluster that has just started, or that is electing a leader, such calls fail for a few seconds.
const setupWithin = time.Minute

// Setup creates or updates the streams with the given number of replicas (1 on a single server,
// 3 on a cluster: a stream then survives the loss of one node); safe to run on every start of
// every replica.
func Setup(ctx context.Context, js jetstream.JetStream, n Names, replicas int) error {
	streams := []jetstream.StreamConfig{{
		Name:        n.Stream,
		Description: "payment requests, one per accepted order",
		Subjects:    []string{n.RequestSubject},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		Duplicates:  2 * time.Minute,
		MaxAge:      7 * 24 * time.Hour,
	}, {
		Name:        n.DeadStream,
		Description: "payment requests that could not be processed",
		Subjects:    []string{n.DeadSubject},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		MaxAge:      14 * 24 * time.Hour,
	}}
	for _, cfg := range streams {
		err := natsclient.Retry(ctx, setupWithin, func(ctx context.Context) error {
			_, err := js.CreateOrUpdateStream(ctx, cfg)
			return err
		})
		if err != nil {
			return fmt.Errorf("stream %s (%d replicas): %w", cfg.Name, replicas, err)
		}
	}
	return nil
}

// request is a payment request's body.
type request struct {
	OrderID uuid.UUID `json:"order_id"`
}

// Publisher publishes payment requests; it implements payment.Publisher.
type Publisher struct {
	js    jetstream.JetStream
	n     Names
	prop  propagation.TextMapPropagator
	clock func() time.Time
}

var _ payment.Publisher = (*Publisher)(nil)

// NewPublisher returns a publisher.
func NewPublisher(js jetstream.JetStream, n Names, prop propagation.TextMapPropagator) *Publisher {
	return &Publisher{js: js, n: n, prop: prop, clock: time.Now}
}

func (p *Publisher) message(ctx context.Context, orderID uuid.UUID, msgID, traceParent string) *nats.Msg {
	data, _ := json.Marshal(request{OrderID: orderID})
	m := nats.NewMsg(p.n.RequestSubject)
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	if traceParent != "" {
		// The order's own request: its payment continues that trace.
		ctx = propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": traceParent})
	}
	natsclient.InjectTrace(ctx, p.prop, m.Header)
	return m
}

// Publish implements payment.Publisher. Each message's id is its order id and outbox row, so
// JetStream drops a repeat of the same row within its duplicate window, while a later request for
// the same order (a refund after the charge) is a message of its own.
func (p *Publisher) Publish(ctx context.Context, msgs []payment.OutboxMessage) ([]int64, error) {
	futures := make([]jetstream.PubAckFuture, len(msgs))
	var errs []error
	for i, m := range msgs {
		f, err := p.js.PublishMsgAsync(p.message(ctx, m.OrderID, m.OrderID.String()+"/"+strconv.FormatInt(m.ID, 10), m.TraceParent))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		futures[i] = f
	}
	var ok []int64
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
			ok = append(ok, msgs[i].ID)
		case err := <-f.Err():
			errs = append(errs, err)
		case <-ctx.Done():
			errs = append(errs, ctx.Err())
			return ok, errors.Join(errs...)
		}
	}
	return ok, errors.Join(errs...)
}

// Requeue publishes a fresh request for an order under a new message id, so it starts over with
// a full delivery count.
func (p *Publisher) Requeue(ctx context.Context, orderID uuid.UUID) error {
	id := orderID.String() + "#" + strconv.FormatInt(p.clock().UnixNano(), 36)
	_, err := p.js.PublishMsg(ctx, p.message(ctx, orderID, id, ""))
	return err
}

// Bus carries status events over plain NATS subjects; it implements payment.StatusBus.
type Bus struct {
	nc *nats.Conn
	n  Names
}

var _ payment.StatusBus = (*Bus)(nil)

// NewBus returns a bus.
func NewBus(nc *nats.Conn, n Names) *Bus { return &Bus{nc: nc, n: n} }

// Publish implements payment.StatusBus.
func (b *Bus) Publish(_ context.Context, ev payment.StatusEvent) error {
	data, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	return b.nc.Publish(b.n.StatusPrefix+ev.OrderID.String(), data)
}

// Listen hands every order's status events to deliver until the returned stop is called.
func (b *Bus) Listen(deliver func(payment.StatusEvent)) (stop func() error, err error) {
	sub, err := b.nc.Subscribe(b.n.StatusPrefix+"*", func(m *nats.Msg) {
		var ev payment.StatusEvent
		if json.Unmarshal(m.Data, &ev) == nil {
			deliver(ev)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to order status: %w", err)
	}
	if err := sub.SetPendingLimits(1<<20, 256<<20); err != nil {
		return nil, err
	}
	return sub.Unsubscribe, nil
}

// Processor is the part of the payment module the worker drives.
type Processor interface {
	Process(ctx context.Context, orderID uuid.UUID, attempt int) payment.Decision
	GiveUp(ctx context.Context, orderID uuid.UUID, reason string) error
}

// WorkerConfig tunes the worker.
type WorkerConfig struct {
	Workers    int
	AckWait    time.Duration
	MaxDeliver int
	// Replicas of the durable consumer's state; the stream's (Setup's replicas) when 0.
	Replicas int
}

// Worker consumes payment requests with a durable pull consumer and explicit acks. A request is
// acknowledged only once its order is confirmed or failed; while one is being worked on the
// worker tells JetStream so, so a slow provider does not cause a redelivery; a transient failure
// is handed back with a growing delay; after MaxDeliver attempts the order is given up (refunded
// and failed) and the request dead-lettered. A request that cannot be read is dead-lettered at
// once and never blocks the others.
type Worker struct {
	js   jetstream.JetStream
	n    Names
	cfg  WorkerConfig
	proc Processor
	pub  *Publisher
	prop propagation.TextMapPropagator
	log  *slog.Logger

	mu       sync.Mutex
	cons     jetstream.Consumer
	cc       jetstream.ConsumeContext
	stopping bool
	slots    chan struct{}
	inFlight sync.WaitGroup

	deadLettered atomic.Int64 // requests this worker gave up on, for the metric
}

// NewWorker returns a worker; Start runs it.
func NewWorker(js jetstream.JetStream, n Names, cfg WorkerConfig, proc Processor, pub *Publisher,
	prop propagation.TextMapPropagator, log *slog.Logger) *Worker {
	return &Worker{js: js, n: n, cfg: cfg, proc: proc, pub: pub, prop: prop, log: log, slots: make(chan struct{}, cfg.Workers)}
}

// Start creates (or updates) the durable consumer and starts consuming.
func (w *Worker) Start(ctx context.Context) error {
	var cons jetstream.Consumer
	err := natsclient.Retry(ctx, setupWithin, func(ctx context.Context) (err error) {
		cons, err = w.js.CreateOrUpdateConsumer(ctx, w.n.Stream, jetstream.ConsumerConfig{
			Durable:       w.n.Durable,
			Description:   "charges orders and commits their tickets",
			FilterSubject: w.n.RequestSubject,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       w.cfg.AckWait,
			MaxDeliver:    w.cfg.MaxDeliver,
			MaxAckPending: 4096,
			Replicas:      w.cfg.Replicas,
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("consumer %s: %w", w.n.Durable, err)
	}
	cc, err := cons.Consume(w.dispatch,
		jetstream.PullMaxMessages(w.cfg.Workers),
		// A pull request lives 10 s with a heartbeat every 5 s (not 30 s and 15 s): when the
		// consumer's leader is lost with a NATS node, the missing heartbeats are noticed and the
		// pull is made again, to the new leader, within about 10 s.
		jetstream.PullExpiry(10*time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			w.log.Debug("payment consumer", "err", err)
		}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", w.n.Stream, err)
	}
	w.mu.Lock()
	w.cons, w.cc = cons, cc
	w.mu.Unlock()
	return nil
}

// RegisterMetrics reports the queue's depth: requests waiting for a worker and requests being
// worked on (across all replicas), read from the consumer's state at most every two seconds; and
// the requests this replica dead-lettered.
func (w *Worker) RegisterMetrics(meter metric.Meter) error {
	var (
		mu      sync.Mutex
		at      time.Time
		pending int64
		acks    int64
	)
	read := func(ctx context.Context) (int64, int64) {
		mu.Lock()
		defer mu.Unlock()
		w.mu.Lock()
		cons := w.cons
		w.mu.Unlock()
		if cons != nil && time.Since(at) > 2*time.Second {
			ctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			if info, err := cons.Info(ctx); err == nil {
				pending, acks, at = int64(info.NumPending), int64(info.NumAckPending), time.Now()
			}
		}
		return pending, acks
	}
	_, err := meter.Int64ObservableGauge("onsale.payment.queue.pending",
		metric.WithDescription("Payment requests waiting for a worker."),
		metric.WithInt64Callback(func(ctx context.Context, o metric.Int64Observer) error {
			p, _ := read(ctx)
			o.Observe(p)
			return nil
		}))
	if err != nil {
		return err
	}
	_, err = meter.Int64ObservableGauge("onsale.payment.queue.ack_pending",
		metric.WithDescription("Payment requests being worked on, not yet acknowledged."),
		metric.WithInt64Callback(func(ctx context.Context, o metric.Int64Observer) error {
			_, a := read(ctx)
			o.Observe(a)
			return nil
		}))
	if err != nil {
		return err
	}
	_, err = meter.Int64ObservableCounter("onsale.payment.dead_lettered",
		metric.WithDescription("Payment requests this replica gave up on and dead-lettered (unreadable, no such order, or out of attempts)."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(w.deadLettered.Load())
			return nil
		}))
	return err
}

// dispatch runs in the consumer's goroutine: it waits for a free worker slot (holding back the
// flow when all are busy) and hands the message over.
func (w *Worker) dispatch(msg jetstream.Msg) {
	w.mu.Lock()
	stopping := w.stopping
	if !stopping {
		w.inFlight.Add(1)
	}
	w.mu.Unlock()
	if stopping {
		// Shutting down: hand it back at once for another replica.
		_ = msg.Nak()
		return
	}
	w.slots <- struct{}{}
	// Stop may have begun while this message waited for a slot: it has not started, so it is
	// handed back like the other buffered ones instead of being worked on during shutdown.
	w.mu.Lock()
	stopping = w.stopping
	w.mu.Unlock()
	if stopping {
		<-w.slots
		w.inFlight.Done()
		_ = msg.Nak()
		return
	}
	go func() {
		defer func() { <-w.slots; w.inFlight.Done() }()
		w.handle(msg)
	}()
}

// Stop stops taking messages, hands back those not started, and waits (within ctx) for the ones
// being worked on to finish.
func (w *Worker) Stop(ctx context.Context) error {
	w.mu.Lock()
	w.stopping = true
	cc := w.cc
	w.mu.Unlock()
	if cc != nil {
		cc.Drain()
		select {
		case <-cc.Closed():
		case <-ctx.Done():
		}
	}
	done := make(chan struct{})
	go func() { w.inFlight.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("payment worker: %w", ctx.Err())
	}
}

func (w *Worker) handle(msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		w.log.Error("payment request without metadata", "err", err)
		_ = msg.Term()
		return
	}
	attempt := int(meta.NumDelivered)
	var req request
	if err := json.Unmarshal(msg.Data(), &req); err != nil || req.OrderID == uuid.Nil {
		w.deadLetter(msg, attempt, "unreadable payment request")
		_ = msg.Term()
		return
	}
	ctx := natsclient.ExtractTrace(context.Background(), w.prop, msg.Headers())

	stop := w.keepAlive(msg)
	d := w.process(ctx, req.OrderID, attempt)
	stop()

	switch d.Action {
	case payment.Done:
		_ = msg.Ack()
	case payment.Discard:
		w.deadLetter(msg, attempt, d.Reason)
		_ = msg.Term()
	case payment.Wait:
		if attempt >= w.cfg.MaxDeliver-1 {
			w.requeue(ctx, msg, req.OrderID)
			return
		}
		_ = msg.NakWithDelay(d.Delay)
	case payment.Retry:
		if attempt < w.cfg.MaxDeliver {
			_ = msg.NakWithDelay(d.Delay)
			return
		}
		if err := w.proc.GiveUp(ctx, req.OrderID, d.Reason); err != nil {
			// The refund cannot be made yet: keep the order's request alive.
			w.log.Warn("payment give-up deferred", "order", req.OrderID, "err", err)
			w.requeue(ctx, msg, req.OrderID)
			return
		}
		w.deadLetter(msg, attempt, d.Reason)
		_ = msg.Term()
	}
}

// process runs one attempt, turning a panic into a retry so a bug in one order cannot take the
// worker down (a request that always panics ends dead-lettered after MaxDeliver attempts).
func (w *Worker) process(ctx context.Context, orderID uuid.UUID, attempt int) (d payment.Decision) {
	defer func() {
		if r := recover(); r != nil {
			w.log.Error("payment attempt panicked", "order", orderID, "panic", fmt.Sprint(r))
			d = payment.Decision{Action: payment.Retry, Delay: time.Second, Reason: fmt.Sprint("panic: ", r)}
		}
	}()
	return w.proc.Process(ctx, orderID, attempt)
}

// keepAlive tells JetStream the message is being worked on, so a slow charge is not redelivered
// to another worker meanwhile.
func (w *Worker) keepAlive(msg jetstream.Msg) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(w.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				_ = msg.InProgress()
			case <-done:
				return
			}
		}
	}()
	return func() { close(done) }
}

func (w *Worker) requeue(ctx context.Context, msg jetstream.Msg, orderID uuid.UUID) {
	if err := w.pub.Requeue(ctx, orderID); err != nil {
		w.log.Warn("requeue payment request", "order", orderID, "err", err)
		_ = msg.NakWithDelay(5 * time.Second)
		return
	}
	_ = msg.Ack()
}

func (w *Worker) deadLetter(msg jetstream.Msg, attempt int, reason string) {
	w.deadLettered.Add(1) // counted even if the copy below fails: the request is given up either way
	m := nats.NewMsg(w.n.DeadSubject)
	m.Data = msg.Data()
	m.Header.Set("Onsale-Reason", reason)
	m.Header.Set("Onsale-Deliveries", strconv.Itoa(attempt))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := w.js.PublishMsg(ctx, m); err != nil {
		w.log.Error("dead-letter payment request", "reason", reason, "err", err)
		return
	}
	w.log.Error("payment request dead-lettered", "reason", reason, "deliveries", attempt)
}
