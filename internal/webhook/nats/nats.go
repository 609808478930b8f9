// Package nats carries webhook events over NATS JetStream: a publisher puts each event on a
// work-queue stream (deduplicated by event id), and a fan-out, a durable pull consumer, turns
// each event into deliveries in the store and acknowledges it only once they are stored. An
// event published and acknowledged is therefore never lost, whichever process fails.
package nats

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/onsale-dev/onsale/internal/platform/clock"
	"github.com/onsale-dev/onsale/internal/platform/natsclient"
	"github.com/onsale-dev/onsale/internal/webhook"
)

// Names are the stream, subject and consumer the module uses.
type Names struct {
	Stream  string
	Subject string
	Durable string
}

// NamesFor derives the names from a deployment prefix ("" in most deployments), as the payment
// module's streams are named.
func NamesFor(prefix string) Names {
	up, dot := "", ""
	if prefix != "" {
		up, dot = prefix+"_", prefix+"."
	}
	return Names{Stream: up + "WEBHOOKS", Subject: dot + "webhooks.events", Durable: up + "webhook-fanout"}
}

// setupWithin bounds how long creating the stream or the consumer may keep failing (a NATS
// cluster electing a leader).
const setupWithin = time.Minute

// Setup creates or updates the stream with the given number of replicas; safe on every start of
// every replica.
func Setup(ctx context.Context, js jetstream.JetStream, n Names, replicas int) error {
	cfg := jetstream.StreamConfig{
		Name:        n.Stream,
		Description: "webhook events, each fanned out to the organizer's endpoints",
		Subjects:    []string{n.Subject},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		// A publisher retrying within this window is deduplicated here; beyond it the store's
		// (endpoint, event id) uniqueness drops the repeat.
		Duplicates: 10 * time.Minute,
		MaxAge:     7 * 24 * time.Hour,
	}
	err := natsclient.Retry(ctx, setupWithin, func(ctx context.Context) error {
		_, err := js.CreateOrUpdateStream(ctx, cfg)
		return err
	})
	if err != nil {
		return fmt.Errorf("stream %s (%d replicas): %w", cfg.Name, replicas, err)
	}
	return nil
}

// Publisher puts events on the stream; it implements webhook.Publisher.
type Publisher struct {
	js jetstream.JetStream
	n  Names
}

var _ webhook.Publisher = (*Publisher)(nil)

// NewPublisher returns a publisher.
func NewPublisher(js jetstream.JetStream, n Names) *Publisher { return &Publisher{js: js, n: n} }

// Publish implements webhook.Publisher: it returns once JetStream has stored the event. The
// message id is the event id, so a repeat within the duplicate window is dropped.
func (p *Publisher) Publish(ctx context.Context, ev webhook.Event) error {
	if err := ev.Validate(); err != nil {
		return err
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("webhook event %s: %w", ev.ID, err)
	}
	m := nats.NewMsg(p.n.Subject)
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, ev.ID)
	if _, err := p.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("publish webhook event %s: %w", ev.ID, err)
	}
	return nil
}

// FanoutConfig tunes the fan-out consumer.
type FanoutConfig struct {
	// AckWait is how long an event may take to be stored before it is redelivered (30 s).
	AckWait time.Duration
	// Replicas of the durable consumer, as the stream's.
	Replicas int
}

// Fanout consumes events and enqueues their deliveries.
type Fanout struct {
	js    jetstream.JetStream
	n     Names
	cfg   FanoutConfig
	store webhook.Store
	clock clock.Clock
	log   *slog.Logger
	// enqueued is told when deliveries were created, so a sender in this process looks at once.
	enqueued func()

	mu sync.Mutex
	cc jetstream.ConsumeContext
}

// NewFanout returns a fan-out; Start runs it. enqueued (may be nil) is called after an event
// created deliveries.
func NewFanout(js jetstream.JetStream, n Names, cfg FanoutConfig, store webhook.Store, clk clock.Clock, log *slog.Logger, enqueued func()) *Fanout {
	if cfg.AckWait <= 0 {
		cfg.AckWait = 30 * time.Second
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if enqueued == nil {
		enqueued = func() {}
	}
	return &Fanout{js: js, n: n, cfg: cfg, store: store, clock: clk, log: log, enqueued: enqueued}
}

// Start creates (or updates) the durable consumer and starts consuming.
func (f *Fanout) Start(ctx context.Context) error {
	var cons jetstream.Consumer
	err := natsclient.Retry(ctx, setupWithin, func(ctx context.Context) (err error) {
		cons, err = f.js.CreateOrUpdateConsumer(ctx, f.n.Stream, jetstream.ConsumerConfig{
			Durable:       f.n.Durable,
			Description:   "turns webhook events into deliveries",
			FilterSubject: f.n.Subject,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       f.cfg.AckWait,
			// Events are few and each is one insert: a small window keeps them close to the order
			// they were published in, which is the order their deliveries go in.
			MaxAckPending: 64,
			Replicas:      f.cfg.Replicas,
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("consumer %s: %w", f.n.Durable, err)
	}
	cc, err := cons.Consume(f.handle,
		jetstream.PullMaxMessages(64),
		jetstream.PullExpiry(10*time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			f.log.Debug("webhook consumer", "err", err)
		}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", f.n.Stream, err)
	}
	f.mu.Lock()
	f.cc = cc
	f.mu.Unlock()
	return nil
}

// Stop stops consuming; the event being stored, if any, is finished first (within ctx).
func (f *Fanout) Stop(ctx context.Context) error {
	f.mu.Lock()
	cc := f.cc
	f.cc = nil
	f.mu.Unlock()
	if cc == nil {
		return nil
	}
	cc.Drain()
	select {
	case <-cc.Closed():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("webhook fan-out: %w", ctx.Err())
	}
}

// handle stores one event's deliveries, in the consumer's goroutine: one at a time, in the
// order they come.
func (f *Fanout) handle(msg jetstream.Msg) {
	var ev webhook.Event
	if err := json.Unmarshal(msg.Data(), &ev); err != nil {
		f.log.Error("webhook event unreadable; dropped", "err", err)
		_ = msg.Term()
		return
	}
	if err := ev.Validate(); err != nil {
		f.log.Error("webhook event invalid; dropped", "err", err)
		_ = msg.Term()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.cfg.AckWait/2)
	defer cancel()
	n, err := f.enqueue(ctx, ev)
	if err != nil {
		delay := time.Second
		if meta, merr := msg.Metadata(); merr == nil {
			delay = min(time.Duration(meta.NumDelivered)*time.Second, time.Minute)
		}
		f.log.Warn("webhook event not stored; redelivered later", "event", ev.ID, "err", err, "retry_in", delay)
		_ = msg.NakWithDelay(delay)
		return
	}
	if err := msg.DoubleAck(ctx); err != nil {
		// Stored, but the ack was lost: the event comes again and the store drops the repeat.
		f.log.Debug("webhook event ack", "event", ev.ID, "err", err)
	}
	if n > 0 {
		f.enqueued()
	}
}

// enqueue stores the event's deliveries, trying again in place (within ctx) when the store
// fails: the next events wait behind it, so a blip of the database does not reorder them.
func (f *Fanout) enqueue(ctx context.Context, ev webhook.Event) (int, error) {
	wait := 100 * time.Millisecond
	for {
		n, err := f.store.Enqueue(ctx, ev, f.clock.Now().UTC().Truncate(time.Microsecond))
		if err == nil {
			return n, nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, err
		case <-t.C:
		}
		wait = min(2*wait, 2*time.Second)
	}
}
