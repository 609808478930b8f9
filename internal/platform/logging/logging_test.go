package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"
)

// TestWithAttrsNests: attributes added at each layer reach every record written with the inner
// context, in order, whether they fit the list's own room or not; the outer context keeps its own.
func TestWithAttrsNests(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, Config{Level: "info", Format: "json"})
	outer := WithAttrs(context.Background(), slog.String("request_id", "r1"))
	inner := WithAttrs(outer, slog.String("hold", "h1"), slog.Int("n", 3))

	record := func(ctx context.Context) map[string]any {
		t.Helper()
		buf.Reset()
		log.InfoContext(ctx, "x")
		var m map[string]any
		if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
			t.Fatalf("log line %q: %v", buf.String(), err)
		}
		return m
	}
	in := record(inner)
	if in["request_id"] != "r1" || in["hold"] != "h1" || in["n"] != float64(3) {
		t.Fatalf("inner record %v: want request_id r1, hold h1, n 3", in)
	}
	out := record(outer)
	if out["request_id"] != "r1" {
		t.Fatalf("outer record %v: want request_id r1", out)
	}
	if _, ok := out["hold"]; ok {
		t.Fatalf("outer record %v carries the inner context's attribute", out)
	}
}

// TestWithAttrsKeepsTheParent: the context WithAttrs returns answers the parent's values,
// deadline and cancellation, and a context derived from it is cancelled with the parent.
func TestWithAttrsKeepsTheParent(t *testing.T) {
	type key struct{}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
	ctx := WithAttrs(parent, slog.String("request_id", "r1"))
	child, stop := context.WithCancel(ctx)
	defer stop()
	if ctx.Value(key{}) != "v" {
		t.Fatalf("the parent's value is lost: %v", ctx.Value(key{}))
	}
	cancel()
	select {
	case <-child.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a context derived after WithAttrs was not cancelled with the parent")
	}
	if ctx.Err() != context.Canceled {
		t.Fatalf("Err() = %v, want context.Canceled", ctx.Err())
	}
}
