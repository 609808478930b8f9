package nats_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/platform/clock"
	"github.com/onsale-dev/onsale/internal/platform/logging"
	"github.com/onsale-dev/onsale/internal/platform/natsclient"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
	"github.com/onsale-dev/onsale/internal/webhook"
	"github.com/onsale-dev/onsale/internal/webhook/memory"
	whnats "github.com/onsale-dev/onsale/internal/webhook/nats"
	"github.com/onsale-dev/onsale/internal/webhook/webhooktest"
)

// flaky is a store whose first Enqueue fails, as a database restart would make it.
type flaky struct {
	*memory.Store
	calls atomic.Int32
}

func (f *flaky) Enqueue(ctx context.Context, ev webhook.Event, now time.Time) (int, error) {
	if f.calls.Add(1) == 1 {
		return 0, errors.New("database restarting")
	}
	return f.Store.Enqueue(ctx, ev, now)
}

// servers are the NATS servers the fan-out runs on: the embedded one and the local NATS 2.9.
var servers = []struct {
	name    string
	connect func(t *testing.T) (*natsclient.Conn, whnats.Names)
}{
	{"embedded", func(t *testing.T) (*natsclient.Conn, whnats.Names) {
		return testenv.EmbeddedNATS(t), whnats.NamesFor(testenv.Unique("T"))
	}},
	{"nats-2.9", func(t *testing.T) (*natsclient.Conn, whnats.Names) {
		prefix := testenv.Unique("T")
		return testenv.NATS(t, prefix), whnats.NamesFor(prefix)
	}},
}

func TestFanout(t *testing.T) {
	t.Parallel()
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			t.Parallel()
			conn, names := srv.connect(t)
			ctx := t.Context()
			if err := whnats.Setup(ctx, conn.JS, names, 1); err != nil {
				t.Fatal(err)
			}
			// Again, as every replica does at start.
			if err := whnats.Setup(ctx, conn.JS, names, 1); err != nil {
				t.Fatal(err)
			}
			store := &flaky{Store: memory.NewStore()}
			org := uuid.New()
			ep := webhooktest.NewEndpoint(org, time.Now())
			if err := store.CreateEndpoint(ctx, ep); err != nil {
				t.Fatal(err)
			}
			var woken atomic.Int32
			fan := whnats.NewFanout(conn.JS, names, whnats.FanoutConfig{AckWait: 5 * time.Second}, store, clock.System{},
				logging.Discard(), func() { woken.Add(1) })
			if err := fan.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = fan.Stop(context.Background()) }()

			pub := whnats.NewPublisher(conn.JS, names)
			ev := webhooktest.NewEvent(org, webhook.TypeOrderConfirmed, uuid.NewString(), time.Now().UTC())
			for range 2 { // a publisher's retry
				if err := pub.Publish(ctx, ev); err != nil {
					t.Fatal(err)
				}
			}
			other := webhooktest.NewEvent(org, webhook.TypeOrderRefunded, ev.OrderingKey, time.Now().UTC())
			if err := pub.Publish(ctx, other); err != nil {
				t.Fatal(err)
			}
			if err := pub.Publish(ctx, webhook.Event{ID: "x", Type: "order.lost", OrganizerID: org}); err == nil {
				t.Fatal("an event of an unknown type was published")
			}
			var ds []webhook.Delivery
			testenv.Eventually(t, 15*time.Second, func() bool {
				ds, _ = store.Deliveries(ctx, ep.ID, nil, 10)
				return len(ds) == 2
			}, "both events enqueued (the first after a failed try)")
			if ds[1].EventID != ev.ID || ds[0].EventID != other.ID || ds[1].OrderingKey != ev.OrderingKey {
				t.Fatalf("deliveries %v, %v; want the two events in order", ds[1].EventID, ds[0].EventID)
			}
			if store.calls.Load() < 3 {
				t.Fatalf("%d enqueues, want the failed one tried again", store.calls.Load())
			}
			// The sender is told after each event that created deliveries (once it is acked).
			testenv.Eventually(t, 5*time.Second, func() bool { return woken.Load() >= 2 }, "two wake-ups")
			// Every event is acknowledged: nothing waits in the work queue.
			testenv.Eventually(t, 10*time.Second, func() bool {
				info, err := conn.JS.Stream(ctx, names.Stream)
				if err != nil {
					return false
				}
				si, err := info.Info(ctx)
				return err == nil && si.State.Msgs == 0
			}, "the stream is empty")
		})
	}
}
