package nats_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/onsale-dev/onsale/internal/payment"
	paynats "github.com/onsale-dev/onsale/internal/payment/nats"
	"github.com/onsale-dev/onsale/internal/platform/logging"
	"github.com/onsale-dev/onsale/internal/platform/natsclient"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

// These tests are about the transport: the worker drives a fake Processor.

// server is a NATS the worker runs on, with the stream replicas asked of it.
type server struct {
	name     string
	replicas int
	connect  func(t *testing.T) (*natsclient.Conn, paynats.Names)
}

// servers are the NATS servers the worker runs on: the embedded one (embedded mode) and the
// Debian NATS 2.9 (what production-like setups may run).
var servers = []server{
	{"embedded", 1, func(t *testing.T) (*natsclient.Conn, paynats.Names) {
		return testenv.EmbeddedNATS(t), paynats.NamesFor(testenv.Unique("T"))
	}},
	{"nats-2.9", 1, func(t *testing.T) (*natsclient.Conn, paynats.Names) {
		prefix := testenv.Unique("T")
		return testenv.NATS(t, prefix), paynats.NamesFor(prefix)
	}},
}

// cluster is the 3-node NATS 2.9 JetStream cluster (.ci/nats-cluster.sh), every stream and the
// consumer replicated on all three.
var cluster = server{"nats-2.9-cluster", 3, func(t *testing.T) (*natsclient.Conn, paynats.Names) {
	prefix := testenv.Unique("T")
	return testenv.NATSCluster(t, prefix), paynats.NamesFor(prefix)
}}

// forEachServer runs fn in parallel on every server, each run with its own streams. Under
// TestNATSCluster, which runs this file's tests again, the server is the cluster alone.
func forEachServer(t *testing.T, fn func(t *testing.T, e *env)) {
	list := servers
	if strings.HasPrefix(t.Name(), "TestNATSCluster/") {
		list = []server{cluster}
	}
	for _, srv := range list {
		t.Run(srv.name, func(t *testing.T) {
			t.Parallel()
			conn, names := srv.connect(t)
			ctx := context.Background()
			if err := paynats.Setup(ctx, conn.JS, names, srv.replicas); err != nil {
				t.Fatalf("setup: %v", err)
			}
			// Setup is safe to run again (every replica runs it on start).
			if err := paynats.Setup(ctx, conn.JS, names, srv.replicas); err != nil {
				t.Fatalf("setup again: %v", err)
			}
			fn(t, &env{conn: conn, names: names, replicas: srv.replicas,
				pub: paynats.NewPublisher(conn.JS, names, propagation.TraceContext{})})
		})
	}
}

// TestNATSCluster runs the transport's tests on a NATS JetStream cluster of three nodes with
// every stream and the worker's consumer on three replicas, and checks that they are.
func TestNATSCluster(t *testing.T) {
	tests := []struct {
		name string
		run  func(*testing.T)
	}{
		{"Replicas", testReplicas},
		{"PublishDeduplicatesByOutboxRow", TestPublishDeduplicatesByOutboxRow},
		{"WorkerAcksDone", TestWorkerAcksDone},
		{"WorkerRetriesAfterDelay", TestWorkerRetriesAfterDelay},
		{"WorkerWaitDoesNotGiveUp", TestWorkerWaitDoesNotGiveUp},
		{"WorkerDeadLettersPoisonWithoutBlocking", TestWorkerDeadLettersPoisonWithoutBlocking},
		{"WorkerGivesUpAfterMaxDeliver", TestWorkerGivesUpAfterMaxDeliver},
		{"WorkerRequeuesWhenGiveUpFails", TestWorkerRequeuesWhenGiveUpFails},
		{"WorkerKeepsSlowWorkAlive", TestWorkerKeepsSlowWorkAlive},
		{"WorkerStopHandsBackAndWaits", TestWorkerStopHandsBackAndWaits},
		{"WorkerStopGivesUpWaitingAtDeadline", TestWorkerStopGivesUpWaitingAtDeadline},
		{"BusRoundTrip", TestBusRoundTrip},
		{"WorkerCountsDeadLetters", TestWorkerCountsDeadLetters},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.run)
	}
}

// testReplicas: the streams and the worker's consumer are created with the replicas asked, and
// each has a leader and its followers.
func testReplicas(t *testing.T) {
	forEachServer(t, func(t *testing.T, e *env) {
		cfg := workerConfig()
		cfg.Replicas = e.replicas
		e.worker(t, &fakeProc{}, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, name := range []string{e.names.Stream, e.names.DeadStream} {
			st, err := e.conn.JS.Stream(ctx, name)
			if err != nil {
				t.Fatalf("stream %s: %v", name, err)
			}
			info := st.CachedInfo()
			if info.Config.Replicas != e.replicas || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != e.replicas-1 {
				t.Errorf("stream %s: %d replicas configured, cluster %+v; want %d, a leader and %d followers",
					name, info.Config.Replicas, info.Cluster, e.replicas, e.replicas-1)
			}
		}
		ci := e.consumerInfo(t)
		if ci.Config.Replicas != e.replicas || ci.Cluster == nil || ci.Cluster.Leader == "" || len(ci.Cluster.Replicas) != e.replicas-1 {
			t.Errorf("consumer: %d replicas configured, cluster %+v; want %d, a leader and %d followers",
				ci.Config.Replicas, ci.Cluster, e.replicas, e.replicas-1)
		}
	})
}

type env struct {
	conn     *natsclient.Conn
	names    paynats.Names
	replicas int
	pub      *paynats.Publisher
}

// call is one Process call the fake saw.
type call struct {
	order   uuid.UUID
	attempt int
	at      time.Time
}

// fakeProc is a Processor whose answers the test chooses.
type fakeProc struct {
	mu       sync.Mutex
	calls    []call
	giveUps  []call
	decide   func(order uuid.UUID, attempt int) payment.Decision
	giveUp   func(order uuid.UUID, n int) error
	inFlight int
}

func (f *fakeProc) Process(_ context.Context, order uuid.UUID, attempt int) payment.Decision {
	f.mu.Lock()
	f.calls = append(f.calls, call{order, attempt, time.Now()})
	f.inFlight++
	decide := f.decide
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inFlight--
		f.mu.Unlock()
	}()
	if decide == nil {
		return payment.Decision{Action: payment.Done}
	}
	return decide(order, attempt)
}

func (f *fakeProc) GiveUp(_ context.Context, order uuid.UUID, _ string) error {
	f.mu.Lock()
	f.giveUps = append(f.giveUps, call{order, 0, time.Now()})
	n := len(f.giveUps)
	giveUp := f.giveUp
	f.mu.Unlock()
	if giveUp == nil {
		return nil
	}
	return giveUp(order, n)
}

func (f *fakeProc) callsOf(order uuid.UUID) []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []call
	for _, c := range f.calls {
		if c.order == order {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeProc) attemptsOf(order uuid.UUID) []int {
	var out []int
	for _, c := range f.callsOf(order) {
		out = append(out, c.attempt)
	}
	return out
}

func (f *fakeProc) giveUpCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.giveUps)
}

func (e *env) worker(t *testing.T, proc paynats.Processor, cfg paynats.WorkerConfig) *paynats.Worker {
	t.Helper()
	w := paynats.NewWorker(e.conn.JS, e.names, cfg, proc, e.pub, propagation.TraceContext{}, logging.Discard())
	if err := w.Start(context.Background()); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.Stop(ctx); err != nil {
			t.Errorf("stop worker: %v", err)
		}
	})
	return w
}

func workerConfig() paynats.WorkerConfig {
	return paynats.WorkerConfig{Workers: 4, AckWait: 2 * time.Second, MaxDeliver: 4}
}

func (e *env) publish(t *testing.T, orders ...uuid.UUID) {
	t.Helper()
	msgs := make([]payment.OutboxMessage, len(orders))
	for i, o := range orders {
		msgs[i] = payment.OutboxMessage{ID: int64(i + 1), OrderID: o, CreatedAt: time.Now()}
	}
	ids, err := e.pub.Publish(context.Background(), msgs)
	if err != nil || len(ids) != len(msgs) {
		t.Fatalf("publish: %d of %d accepted, %v", len(ids), len(msgs), err)
	}
}

func (e *env) publishRaw(t *testing.T, data []byte) {
	t.Helper()
	m := nats.NewMsg(e.names.RequestSubject)
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, uuid.NewString())
	if _, err := e.conn.JS.PublishMsg(context.Background(), m); err != nil {
		t.Fatalf("publish raw: %v", err)
	}
}

func (e *env) streamMsgs(t *testing.T, name string) uint64 {
	t.Helper()
	s, err := e.conn.JS.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func (e *env) consumerInfo(t *testing.T) *jetstream.ConsumerInfo {
	t.Helper()
	c, err := e.conn.JS.Consumer(context.Background(), e.names.Stream, e.names.Durable)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// deadLetter is a message of the dead-letter stream.
type deadLetter struct {
	data    string
	reason  string
	tries   string
	subject string
}

// deadLetters reads the whole dead-letter stream with an ordered consumer.
func (e *env) deadLetters(t *testing.T) []deadLetter {
	t.Helper()
	ctx := context.Background()
	n := e.streamMsgs(t, e.names.DeadStream)
	if n == 0 {
		return nil
	}
	cons, err := e.conn.JS.OrderedConsumer(ctx, e.names.DeadStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("ordered consumer: %v", err)
	}
	batch, err := cons.Fetch(int(n), jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatalf("fetch dead letters: %v", err)
	}
	var out []deadLetter
	for m := range batch.Messages() {
		out = append(out, deadLetter{data: string(m.Data()), reason: m.Headers().Get("Onsale-Reason"),
			tries: m.Headers().Get("Onsale-Deliveries"), subject: m.Subject()})
	}
	if err := batch.Error(); err != nil {
		t.Fatalf("fetch dead letters: %v", err)
	}
	if len(out) != int(n) {
		t.Fatalf("read %d of %d dead letters", len(out), n)
	}
	return out
}

func TestPublishDeduplicatesByOutboxRow(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, e *env) {
		a, b := uuid.New(), uuid.New()
		ids, err := e.pub.Publish(context.Background(), []payment.OutboxMessage{
			{ID: 1, OrderID: a}, {ID: 1, OrderID: a}, {ID: 3, OrderID: b},
		})
		if err != nil || !slices.Equal(ids, []int64{1, 1, 3}) {
			t.Fatalf("publish: %v, %v; a duplicate is accepted too (the outbox row can go)", ids, err)
		}
		// The relay's sweeper publishing a row again later changes nothing either.
		if _, err := e.pub.Publish(context.Background(), []payment.OutboxMessage{{ID: 3, OrderID: b}}); err != nil {
			t.Fatal(err)
		}
		if n := e.streamMsgs(t, e.names.Stream); n != 2 {
			t.Fatalf("%d messages in the stream for 2 outbox rows", n)
		}
		// A later row of the same order (its refund after the charge) is a request of its own.
		if _, err := e.pub.Publish(context.Background(), []payment.OutboxMessage{{ID: 4, OrderID: a}}); err != nil {
			t.Fatal(err)
		}
		if n := e.streamMsgs(t, e.names.Stream); n != 3 {
			t.Fatalf("%d messages in the stream after a second row of one order, want 3", n)
		}
		if _, err := e.pub.Publish(context.Background(), nil); err != nil {
			t.Fatalf("publish nothing: %v", err)
		}
	})
}

func TestWorkerAcksDone(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, e *env) {
		proc := &fakeProc{}
		e.worker(t, proc, workerConfig())
		orders := []uuid.UUID{uuid.New(), uuid.New(), uuid.New()}
		e.publish(t, orders...)
		testenv.Eventually(t, 10*time.Second, func() bool {
			for _, o := range orders {
				if len(proc.callsOf(o)) == 0 {
					return false
				}
			}
			return true
		}, "not every request was processed")
		testenv.Eventually(t, 10*time.Second, func() bool { return e.streamMsgs(t, e.names.Stream) == 0 },
			"acknowledged requests stay in the work queue")
		info := e.consumerInfo(t)
		if info.NumAckPending != 0 || info.NumRedelivered != 0 || info.Config.AckPolicy != jetstream.AckExplicitPolicy ||
			info.Config.MaxDeliver != 4 || info.Config.AckWait != 2*time.Second {
			t.Fatalf("consumer: %+v, config %+v", info, info.Config)
		}
		for _, o := range orders {
			if a := proc.attemptsOf(o); !slices.Equal(a, []int{1}) {
				t.Fatalf("order %s attempts %v, want [1]", o, a)
			}
		}
	})
}

func TestWorkerRetriesAfterDelay(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, e *env) {
		const delay = 700 * time.Millisecond
		proc := &fakeProc{decide: func(_ uuid.UUID, attempt int) payment.Decision {
			if attempt == 1 {
				return payment.Decision{Action: payment.Retry, Delay: delay, Reason: "transient"}
			}
			return payment.Decision{Action: payment.Done}
		}}
		e.worker(t, proc, workerConfig())
		o := uuid.New()
		e.publish(t, o)
		testenv.Eventually(t, 10*time.Second, func() bool { return len(proc.callsOf(o)) >= 2 }, "no redelivery after a retry")
		calls := proc.callsOf(o)
		if calls[0].attempt != 1 || calls[1].attempt != 2 {
			t.Fatalf("attempts %v", proc.attemptsOf(o))
		}
		if gap := calls[1].at.Sub(calls[0].at); gap < delay-50*time.Millisecond {
			t.Fatalf("redelivered after %s, before the %s delay", gap, delay)
		}
		testenv.Eventually(t, 10*time.Second, func() bool { return e.streamMsgs(t, e.names.Stream) == 0 }, "not acknowledged")
		if n := len(proc.callsOf(o)); n != 2 || proc.giveUpCount() != 0 {
			t.Fatalf("%d calls, %d give-ups", n, proc.giveUpCount())
		}
	})
}

func TestWorkerWaitDoesNotGiveUp(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, e *env) {
		// The breaker is open for a while: Wait answers past MaxDeliver deliveries never give the
		// order up; the request is published afresh instead.
		proc := &fakeProc{decide: func(_ uuid.UUID, attempt int) payment.Decision {
			return payment.Decision{Action: payment.Wait, Delay: 20 * time.Millisecond, Reason: "circuit open"}
		}}
		o := uuid.New()
		e.worker(t, proc, workerConfig())
		e.publish(t, o)
		testenv.Eventually(t, 15*time.Second, func() bool { return len(proc.callsOf(o)) >= 8 }, "waiting request not redelivered")
		proc.mu.Lock()
		proc.decide = nil
		proc.mu.Unlock()
		testenv.Eventually(t, 10*time.Second, func() bool { return e.streamMsgs(t, e.names.Stream) == 0 }, "not acknowledged")
		for _, a := range proc.attemptsOf(o) {
			if a >= 4 {
				t.Fatalf("a waiting request reached delivery %d of MaxDeliver 4: %v", a, proc.attemptsOf(o))
			}
		}
		if proc.giveUpCount() != 0 || len(e.deadLetters(t)) != 0 {
			t.Fatal("a waiting order was given up")
		}
	})
}

func TestWorkerDeadLettersPoisonWithoutBlocking(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, e *env) {
		unknown := uuid.New()
		proc := &fakeProc{decide: func(order uuid.UUID, _ int) payment.Decision {
			if order == unknown {
				return payment.Decision{Action: payment.Discard, Reason: "no such order"}
			}
			return payment.Decision{Action: payment.Done}
		}}
		cfg := workerConfig()
		cfg.Workers = 1 // one at a time: a stuck poison message would block everything behind it
		e.worker(t, proc, cfg)
		e.publishRaw(t, []byte("not json"))
		e.publishRaw(t, []byte(`{"order_id":"00000000-0000-0000-0000-000000000000"}`))
		e.publish(t, unknown)
		good := []uuid.UUID{uuid.New(), uuid.New(), uuid.New()}
		e.publish(t, good...)
		deadline := time.Now().Add(20 * time.Second)
		for {
			done := true
			for _, o := range good {
				if len(proc.callsOf(o)) == 0 {
					done = false
				}
			}
			if done {
				break
			}
			if time.Now().After(deadline) {
				info := e.consumerInfo(t)
				proc.mu.Lock()
				t.Fatalf("requests behind the poison ones were not processed: calls %+v; consumer delivered %+v ackfloor %+v pending %d ackpending %d waiting %d redelivered %d; stream %d dead %d",
					proc.calls, info.Delivered, info.AckFloor, info.NumPending, info.NumAckPending, info.NumWaiting, info.NumRedelivered,
					e.streamMsgs(t, e.names.Stream), e.streamMsgs(t, e.names.DeadStream))
			}
			time.Sleep(10 * time.Millisecond)
		}
		testenv.Eventually(t, 10*time.Second, func() bool { return e.streamMsgs(t, e.names.Stream) == 0 },
			"poison requests stay in the work queue")
		testenv.Eventually(t, 10*time.Second, func() bool { return e.streamMsgs(t, e.names.DeadStream) == 3 },
			"want 3 dead letters")
		dead := e.deadLetters(t)
		reasons := map[string]int{}
		for _, d := range dead {
			reasons[d.reason]++
			if d.subject != e.names.DeadSubject || d.tries != "1" {
				t.Fatalf("dead letter %+v", d)
			}
		}
		if reasons["unreadable payment request"] != 2 || reasons["no such order"] != 1 {
			t.Fatalf("dead letter reasons %v", reasons)
		}
		if !slices.ContainsFunc(dead, func(d deadLetter) bool { return d.data == "not json" }) ||
			!slices.ContainsFunc(dead, func(d deadLetter) bool { return strings.Contains(d.data, unknown.String()) }) {
			t.Fatalf("dead letters do not keep the original payloads: %+v", dead)
		}
		if n := len(proc.callsOf(unknown)); n != 1 {
			t.Fatalf("a discarded request was processed %d times", n)
		}
		for _, o := range good {
			if a := proc.attemptsOf(o); !slices.Equal(a, []int{1}) {
				t.Fatalf("good request attempts %v", a)
			}
		}
	})
}

func TestWorkerGivesUpAfterMaxDeliver(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, e *env) {
		proc := &fakeProc{decide: func(uuid.UUID, int) payment.Decision {
			return payment.Decision{Action: payment.Retry, Delay: 20 * time.Millisecond, Reason: "provider error"}
		}}
		e.worker(t, proc, workerConfig())
		o := uuid.New()
		e.publish(t, o)
		testenv.Eventually(t, 10*time.Second, func() bool { return e.streamMsgs(t, e.names.DeadStream) == 1 },
			"not dead-lettered after MaxDeliver attempts")
		if a := proc.attemptsOf(o); !slices.Equal(a, []int{1, 2, 3, 4}) {
			t.Fatalf("attempts %v, want 1..4", a)
		}
		if n := proc.giveUpCount(); n != 1 {
			t.Fatalf("GiveUp called %d times", n)
		}
		d := e.deadLetters(t)[0]
		if d.reason != "provider error" || d.tries != "4" || !strings.Contains(d.data, o.String()) {
			t.Fatalf("dead letter %+v", d)
		}
		testenv.Eventually(t, 10*time.Second, func() bool { return e.streamMsgs(t, e.names.Stream) == 0 }, "request left in the queue")
	})
}

func TestWorkerRequeuesWhenGiveUpFails(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, e *env) {
		// Watch every request published on the subject, with its message id.
		var mu sync.Mutex
		var msgIDs []string
		sub, err := e.conn.NC.Subscribe(e.names.RequestSubject, func(m *nats.Msg) {
			mu.Lock()
			msgIDs = append(msgIDs, m.Header.Get(jetstream.MsgIDHeader))
			mu.Unlock()
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
		if err := e.conn.NC.Flush(); err != nil {
			t.Fatal(err)
		}

		proc := &fakeProc{
			decide: func(uuid.UUID, int) payment.Decision {
				return payment.Decision{Action: payment.Retry, Delay: 20 * time.Millisecond, Reason: "provider error"}
			},
			// The first give-up cannot refund yet.
			giveUp: func(_ uuid.UUID, n int) error {
				if n == 1 {
					return errors.New("refund failed")
				}
				return nil
			},
		}
		e.worker(t, proc, workerConfig())
		o := uuid.New()
		e.publish(t, o)
		testenv.Eventually(t, 15*time.Second, func() bool { return proc.giveUpCount() == 2 }, "the requeued request was not processed again")
		if a := proc.attemptsOf(o); !slices.Equal(a, []int{1, 2, 3, 4, 1, 2, 3, 4}) {
			t.Fatalf("attempts %v: want a fresh delivery count after the requeue", a)
		}
		testenv.Eventually(t, 10*time.Second, func() bool { return e.streamMsgs(t, e.names.DeadStream) == 1 }, "not dead-lettered")
		mu.Lock()
		ids := slices.Clone(msgIDs)
		mu.Unlock()
		if len(ids) != 2 || ids[0] != o.String()+"/1" || !strings.HasPrefix(ids[1], o.String()+"#") {
			t.Fatalf("published message ids %q: want the order id and outbox row, then a new id for the requeue", ids)
		}
		testenv.Eventually(t, 10*time.Second, func() bool { return e.streamMsgs(t, e.names.Stream) == 0 }, "request left in the queue")
	})
}

func TestWorkerKeepsSlowWorkAlive(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, e *env) {
		cfg := workerConfig()
		cfg.AckWait = time.Second
		proc := &fakeProc{decide: func(uuid.UUID, int) payment.Decision {
			time.Sleep(3 * cfg.AckWait)
			return payment.Decision{Action: payment.Done}
		}}
		e.worker(t, proc, cfg)
		o := uuid.New()
		e.publish(t, o)
		testenv.Eventually(t, 15*time.Second, func() bool { return e.streamMsgs(t, e.names.Stream) == 0 }, "not acknowledged")
		if n := len(proc.callsOf(o)); n != 1 {
			t.Fatalf("a request worked on for 3×AckWait was processed %d times", n)
		}
		if info := e.consumerInfo(t); info.NumRedelivered != 0 {
			t.Fatalf("%d redeliveries", info.NumRedelivered)
		}
	})
}

func TestWorkerStopHandsBackAndWaits(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, e *env) {
		first := uuid.New()
		release := make(chan struct{})
		proc := &fakeProc{decide: func(order uuid.UUID, _ int) payment.Decision {
			if order == first {
				<-release
			}
			return payment.Decision{Action: payment.Done}
		}}
		cfg := workerConfig()
		cfg.Workers = 1
		w := paynats.NewWorker(e.conn.JS, e.names, cfg, proc, e.pub, propagation.TraceContext{}, logging.Discard())
		if err := w.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		e.publish(t, first)
		testenv.Eventually(t, 10*time.Second, func() bool { return len(proc.callsOf(first)) == 1 }, "first request not started")
		rest := []uuid.UUID{uuid.New(), uuid.New()}
		e.publish(t, rest...)
		// The next request reaches the worker and waits there for the busy slot.
		testenv.Eventually(t, 10*time.Second, func() bool { return e.consumerInfo(t).NumAckPending >= 2 },
			"the next request was not delivered to the worker")

		stopped := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			stopped <- w.Stop(ctx)
		}()
		select {
		case err := <-stopped:
			t.Fatalf("Stop returned (%v) while a payment was in flight", err)
		case <-time.After(300 * time.Millisecond):
		}
		close(release)
		select {
		case err := <-stopped:
			if err != nil {
				t.Fatalf("stop: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("Stop did not return after the in-flight payment finished")
		}
		for _, o := range rest {
			if n := len(proc.callsOf(o)); n != 0 {
				t.Fatalf("a request not started before Stop was processed during it (%d calls)", n)
			}
		}
		// Handed back, not lost: another worker takes them at once.
		proc2 := &fakeProc{}
		e.worker(t, proc2, cfg)
		testenv.Eventually(t, 10*time.Second, func() bool {
			return len(proc2.callsOf(rest[0])) == 1 && len(proc2.callsOf(rest[1])) == 1
		}, "handed-back requests were not redelivered promptly")
		testenv.Eventually(t, 10*time.Second, func() bool { return e.streamMsgs(t, e.names.Stream) == 0 }, "not acknowledged")
		if n := len(proc2.callsOf(first)); n != 0 {
			t.Fatalf("the request finished during Stop was delivered again (%d)", n)
		}
	})
}

func TestWorkerStopGivesUpWaitingAtDeadline(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, e *env) {
		release := make(chan struct{})
		t.Cleanup(func() { close(release) })
		proc := &fakeProc{decide: func(uuid.UUID, int) payment.Decision {
			<-release
			return payment.Decision{Action: payment.Done}
		}}
		w := paynats.NewWorker(e.conn.JS, e.names, workerConfig(), proc, e.pub, propagation.TraceContext{}, logging.Discard())
		if err := w.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		o := uuid.New()
		e.publish(t, o)
		testenv.Eventually(t, 10*time.Second, func() bool { return len(proc.callsOf(o)) == 1 }, "not started")
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if err := w.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("stop with a stuck payment: want the deadline, got %v", err)
		}
	})
}

func TestBusRoundTrip(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, e *env) {
		bus := paynats.NewBus(e.conn.NC, e.names)
		got := make(chan payment.StatusEvent, 16)
		stop, err := bus.Listen(func(ev payment.StatusEvent) { got <- ev })
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := stop(); err != nil {
				t.Errorf("stop listening: %v", err)
			}
		}()
		if err := e.conn.NC.Flush(); err != nil {
			t.Fatal(err)
		}
		want := payment.StatusEvent{OrderID: uuid.New(), CustomerID: uuid.New(), Status: payment.StatusPending,
			StatusDetail: payment.DetailDelayed, Version: 2, At: time.Now().UTC().Truncate(time.Millisecond)}
		if err := bus.Publish(context.Background(), want); err != nil {
			t.Fatal(err)
		}
		// A status on another deployment's subjects is not ours.
		other := paynats.NewBus(e.conn.NC, paynats.NamesFor(testenv.Unique("other")))
		if err := other.Publish(context.Background(), payment.StatusEvent{OrderID: uuid.New(), Status: payment.StatusFailed}); err != nil {
			t.Fatal(err)
		}
		if err := bus.Publish(context.Background(), payment.StatusEvent{OrderID: want.OrderID, Status: payment.StatusConfirmed, Version: 3}); err != nil {
			t.Fatal(err)
		}
		select {
		case ev := <-got:
			if ev.OrderID != want.OrderID || ev.CustomerID != want.CustomerID || ev.Status != want.Status ||
				ev.StatusDetail != want.StatusDetail || ev.Version != want.Version || !ev.At.Equal(want.At) {
				t.Fatalf("got %+v, want %+v", ev, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no status event")
		}
		select {
		case ev := <-got:
			if ev.OrderID != want.OrderID || ev.Status != payment.StatusConfirmed || ev.Version != 3 {
				t.Fatalf("second event %+v", ev)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no second status event")
		}
	})
}

// TestWorkerCountsDeadLetters: every request the worker gives up on shows in the
// onsale.payment.dead_lettered counter, which the alert on dead letters watches.
func TestWorkerCountsDeadLetters(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, e *env) {
		reader := sdkmetric.NewManualReader()
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
		unknown := uuid.New()
		proc := &fakeProc{decide: func(order uuid.UUID, _ int) payment.Decision {
			if order == unknown {
				return payment.Decision{Action: payment.Discard, Reason: "no such order"}
			}
			return payment.Decision{Action: payment.Done}
		}}
		w := e.worker(t, proc, workerConfig())
		if err := w.RegisterMetrics(mp.Meter("payment")); err != nil {
			t.Fatal(err)
		}
		counter := func() int64 {
			t.Helper()
			var rm metricdata.ResourceMetrics
			if err := reader.Collect(context.Background(), &rm); err != nil {
				t.Fatal(err)
			}
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					if m.Name != "onsale.payment.dead_lettered" {
						continue
					}
					data, ok := m.Data.(metricdata.Sum[int64])
					if !ok || !data.IsMonotonic || len(data.DataPoints) != 1 {
						t.Fatalf("dead-letter counter: %+v", m.Data)
					}
					return data.DataPoints[0].Value
				}
			}
			t.Fatal("no onsale.payment.dead_lettered metric")
			return -1
		}
		if n := counter(); n != 0 {
			t.Fatalf("%d dead letters counted before any", n)
		}
		e.publish(t, uuid.New())
		e.publishRaw(t, []byte("not json"))
		e.publish(t, unknown)
		testenv.Eventually(t, 10*time.Second, func() bool { return e.streamMsgs(t, e.names.DeadStream) == 2 }, "want 2 dead letters")
		if n := counter(); n != 2 {
			t.Fatalf("%d dead letters counted, want 2", n)
		}
	})
}
