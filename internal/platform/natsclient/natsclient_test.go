package natsclient

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
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
