package app_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// collector is an OTLP/HTTP trace endpoint that keeps the name of every span it is sent, by
// trace id.
type collector struct {
	mu    sync.Mutex
	spans map[string][]string
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var req collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err == nil {
		c.mu.Lock()
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					id := hex.EncodeToString(s.TraceId)
					c.spans[id] = append(c.spans[id], s.Name)
				}
			}
		}
		c.mu.Unlock()
	}
	w.WriteHeader(http.StatusOK)
}

func (c *collector) trace(id string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.spans[id]...)
}

// TestOneTraceAcrossProcesses: a checkout on a payment process continues the caller's trace
// through inventory's internal API in another process, and the payment that follows (in the
// payment worker, after the queue) commits the hold in the same trace.
func TestOneTraceAcrossProcesses(t *testing.T) {
	t.Parallel()
	col := &collector{spans: map[string][]string{}}
	srv := httptest.NewServer(col)
	defer srv.Close()
	file, _ := secret(t)
	tracing := map[string]string{"ONSALE_OTLP_ENDPOINT": srv.URL, "ONSALE_TRACE_SAMPLE_RATIO": "1",
		"ONSALE_BOOTSTRAP_ORGANIZER": "org@example.com:organizer password"}
	inv := startProcess(t, "auth,inventory", file, tracing)
	tracing["ONSALE_AUTH_URL"], tracing["ONSALE_INVENTORY_URL"] = "http://"+inv.InternalAddr(), "http://"+inv.InternalAddr()
	delete(tracing, "ONSALE_BOOTSTRAP_ORGANIZER")
	pay := startProcess(t, "payment", file, tracing)

	call := func(base, method, path, token string, body any, headers map[string]string, want int) map[string]any {
		t.Helper()
		data, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, base+path, bytes.NewReader(data))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out := map[string]any{}
		raw, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(raw, &out)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
		}
		return out
	}
	invURL, payURL := "http://"+inv.Addr(), "http://"+pay.Addr()
	org := call(invURL, "POST", "/v1/auth/login", "", map[string]string{"email": "org@example.com", "password": "organizer password"}, nil, 200)["access_token"].(string)
	ev := call(invURL, "POST", "/v1/events", org, map[string]string{"name": "Traced", "venue": "Hall", "starts_at": time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)}, nil, 201)["id"].(string)
	tt := call(invURL, "POST", "/v1/events/"+ev+"/ticket-types", org, map[string]any{"name": "GA", "price_cents": 100, "currency": "EUR", "capacity": 10, "max_per_order": 1}, nil, 201)["id"].(string)
	call(invURL, "POST", "/v1/auth/register", "", map[string]string{"email": "traced@example.com", "password": "traced password", "name": "T"}, nil, 201)
	buyer := call(invURL, "POST", "/v1/auth/login", "", map[string]string{"email": "traced@example.com", "password": "traced password"}, nil, 200)["access_token"].(string)
	hold := call(invURL, "POST", "/v1/holds", buyer, map[string]any{"ticket_type_id": tt, "quantity": 1}, nil, 201)["id"].(string)

	// The caller's trace: the checkout continues it.
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	order := call(payURL, "POST", "/v1/orders", buyer, map[string]string{"hold_id": hold},
		map[string]string{"Idempotency-Key": "traced-1", "traceparent": "00-" + traceID + "-00f067aa0ba902b7-01"}, 202)["id"].(string)
	deadline := time.Now().Add(20 * time.Second)
	for call(payURL, "GET", "/v1/orders/"+order, buyer, nil, nil, 200)["status"] != "confirmed" {
		if time.Now().After(deadline) {
			t.Fatal("the order was not confirmed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Spans are exported in batches: stopping the processes flushes them.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, p := range []interface{ Stop(context.Context) error }{pay, inv} {
		_ = p.Stop(ctx)
	}
	spans := strings.Join(col.trace(traceID), " | ")
	for _, want := range []string{"POST /v1/orders", "GET /internal/v1/holds/:hold_id", "POST /internal/v1/holds/:hold_id/checkout", "POST /internal/v1/holds/:hold_id/commit"} {
		if !strings.Contains(spans, want) {
			col.mu.Lock()
			t.Errorf("the caller's trace lacks %q; it has: %s (all traces: %v)", want, spans, col.spans)
			col.mu.Unlock()
		}
	}
}
