package natsclient

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/onsale-dev/onsale/internal/platform/logging"
)

// TestTraceTravelsInHeaders: a message published inside a span carries the trace to its
// consumer, over a real (embedded) server.
func TestTraceTravelsInHeaders(t *testing.T) {
	conn, err := StartEmbedded(t.TempDir(), "test", logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	prop := propagation.TraceContext{}
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("test").Start(context.Background(), "publish")
	defer span.End()

	got := make(chan trace.SpanContext, 1)
	sub, err := conn.NC.Subscribe("trace.test", func(m *nats.Msg) {
		got <- trace.SpanContextFromContext(ExtractTrace(context.Background(), prop, m.Header))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	m := nats.NewMsg("trace.test")
	InjectTrace(ctx, prop, m.Header)
	if err := conn.NC.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	sc := <-got
	if sc.TraceID() != span.SpanContext().TraceID() || !sc.IsRemote() {
		t.Fatalf("consumer saw trace %s (remote %v), publisher had %s", sc.TraceID(), sc.IsRemote(), span.SpanContext().TraceID())
	}
	checkCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := conn.Check(checkCtx); err != nil {
		t.Fatalf("check: %v", err)
	}
}

// lockedBuffer collects log output written from NATS's callback goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestConnectErrorHidesCredentials: a server that cannot be reached is named in the error, its
// password is not.
func TestConnectErrorHidesCredentials(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	var logs lockedBuffer
	_, err = Connect("nats://user:S3cretPw@"+addr, "test", logging.New(&logs, logging.Config{Level: "debug", Format: "json"}))
	if err == nil {
		t.Fatal("connected to a closed port")
	}
	if strings.Contains(err.Error()+logs.String(), "S3cretPw") {
		t.Fatalf("the password shows:\nerr: %v\nlogs: %s", err, logs.String())
	}
	if !strings.Contains(err.Error(), "nats://user:****@"+addr) {
		t.Errorf("the error does not say which server: %v", err)
	}
}

// TestReconnectLogHidesToken: a token given as the URL's user (NATS's token authentication) is
// masked in the "reconnected" log line, which names the server.
func TestReconnectLogHidesToken(t *testing.T) {
	t.Parallel()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, Authorization: "tok3n", NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats server not ready")
	}
	addr := ns.Addr().String()
	var logs lockedBuffer
	conn, err := Connect("nats://tok3n@"+addr, "test", logging.New(&logs, logging.Config{Level: "debug", Format: "json"}))
	if err != nil {
		t.Fatalf("connect with the token: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	if err := conn.NC.ForceReconnect(); err != nil {
		t.Fatal(err)
	}
	// (testenv imports this package, so it cannot poll for us.)
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "nats reconnected"); {
		if time.Now().After(deadline) {
			t.Fatalf("no reconnect logged:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	out := logs.String()
	if strings.Contains(out, "tok3n") {
		t.Fatalf("the token shows in the log:\n%s", out)
	}
	if !strings.Contains(out, "nats://****@"+addr) {
		t.Errorf("the reconnect line does not name the server:\n%s", out)
	}
}

// TestRetry: a JetStream management call that fails for a while (a cluster electing a leader)
// is tried again until it succeeds; one the server refuses for good (a 400) is not; one that
// keeps failing gives up when the time allowed is over.
func TestRetry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	calls := 0
	err := Retry(ctx, 10*time.Second, func(context.Context) error {
		calls++
		if calls < 3 {
			return &jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Errorf("transient failures: %d calls, %v; want success on the 3rd", calls, err)
	}

	calls = 0
	err = Retry(ctx, 10*time.Second, func(context.Context) error {
		calls++
		return &jetstream.APIError{Code: 400, ErrorCode: 10058, Description: "stream name already in use with a different configuration"}
	})
	if err == nil || calls != 1 {
		t.Errorf("a refusal: %d calls, %v; want 1 call and the error", calls, err)
	}

	calls = 0
	err = Retry(ctx, 500*time.Millisecond, func(ctx context.Context) error {
		calls++
		<-ctx.Done() // an attempt that times out
		return ctx.Err()
	})
	if err == nil || calls == 0 {
		t.Errorf("a call that never answers: %d calls, %v; want an error once the time is over", calls, err)
	}
}
