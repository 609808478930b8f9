package main

import (
	"context"
	"fmt"
	"github.com/onsale-dev/onsale/internal/app"
	"github.com/onsale-dev/onsale/internal/platform/logging"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkHoldRequest measures one hold request through the whole in-process stack (edge
// middleware, authentication, request validation, the hold store) in embedded mode. The holds
// are released every 64 requests with the timer stopped, over 16 customers (4 live holds each, the default limit per ticket type), so that neither the
// tickets nor a customer's allowance of live holds runs out: the release is a request of its own
// (BenchmarkHoldAndRelease measures the pair).
func BenchmarkHoldRequest(b *testing.B) {
	h, tt := holdBenchSetup(b)
	buyers := make([]string, 16)
	for i := range buyers {
		email := fmt.Sprintf("bench%d@example.com", i)
		callB(b, h, "POST", "/v1/auth/register", "", fmt.Sprintf(`{"email":%q,"password":"bench password","name":"B"}`, email), 201)
		buyers[i] = loginB(b, h, email, "bench password")
	}
	body := fmt.Sprintf(`{"ticket_type_id":%q,"quantity":1}`, tt)
	held := make([]string, 0, 64)
	b.ResetTimer()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		held = append(held, callB(b, h, "POST", "/v1/holds", buyers[i%len(buyers)], body, 201))
		if len(held) == cap(held) || i == b.N-1 {
			b.StopTimer()
			for j, id := range held {
				callB(b, h, "DELETE", "/v1/holds/"+id, buyers[(i+1-len(held)+j)%len(buyers)], "", 204)
			}
			held = held[:0]
			b.StartTimer()
		}
	}
}

// BenchmarkHoldAndRelease measures a hold and its release, two requests, through the whole
// in-process stack in embedded mode.
func BenchmarkHoldAndRelease(b *testing.B) {
	h, tt := holdBenchSetup(b)
	callB(b, h, "POST", "/v1/auth/register", "", `{"email":"bench@example.com","password":"bench password","name":"B"}`, 201)
	buyer := loginB(b, h, "bench@example.com", "bench password")
	body := fmt.Sprintf(`{"ticket_type_id":%q,"quantity":1}`, tt)
	b.ResetTimer()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		id := callB(b, h, "POST", "/v1/holds", buyer, body, 201)
		callB(b, h, "DELETE", "/v1/holds/"+id, buyer, "", 204)
	}
}

// holdBenchSetup starts a process with an event and a ticket type of a million tickets.
func holdBenchSetup(b *testing.B) (http.Handler, string) {
	h := startAppB(b).Public().Handler()
	org := loginB(b, h, "org@example.com", "organizer password")
	ev := callB(b, h, "POST", "/v1/events", org, `{"name":"Bench","venue":"Hall","starts_at":"2031-01-01T20:00:00Z"}`, 201)
	tt := callB(b, h, "POST", "/v1/events/"+ev+"/ticket-types", org, `{"name":"GA","price_cents":100,"currency":"EUR","capacity":1000000,"max_per_order":1}`, 201)
	return h, tt
}

func startAppB(b *testing.B) *app.Process {
	cfg, err := loadConfig(envMap(map[string]string{
		"ONSALE_HTTP_ADDR": "127.0.0.1:0", "ONSALE_DATA_DIR": b.TempDir(), "ONSALE_DRAIN_DELAY": "0s",
		"ONSALE_ARGON2_MEMORY_KIB": "1024", "ONSALE_ARGON2_TIME": "1", "ONSALE_ACCESS_LOG": "false",
		"ONSALE_BOOTSTRAP_ORGANIZER": "org@example.com:organizer password", "ONSALE_MAX_HOLDS_PER_CUSTOMER": "1000000",
		// One client address sends every request: the per-address limits would measure themselves.
		"ONSALE_RATE_LIMIT_HOLDS": "0", "ONSALE_RATE_LIMIT_AUTH": "0",
	}), "", "")
	if err != nil {
		b.Fatal(err)
	}
	proc, err := app.New(b.Context(), cfg, logging.Discard(), app.Options{})
	if err != nil {
		b.Fatal(err)
	}
	if err := proc.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = proc.Stop(context.Background()) })
	return proc
}

func callB(b *testing.B, h http.Handler, method, path, token, body string, want int) string {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != want {
		b.Fatalf("%s %s: %d %s", method, path, rec.Code, rec.Body)
	}
	s := rec.Body.String()
	if i := strings.Index(s, `"id":"`); i >= 0 {
		s = s[i+6:]
		return s[:strings.IndexByte(s, '"')]
	}
	return ""
}

func loginB(b *testing.B, h http.Handler, email, pw string) string {
	req := httptest.NewRequest("POST", "/v1/auth/login", strings.NewReader(fmt.Sprintf(`{"email":%q,"password":%q}`, email, pw)))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	s := rec.Body.String()
	i := strings.Index(s, `"access_token":"`)
	s = s[i+16:]
	return s[:strings.IndexByte(s, '"')]
}

// BenchmarkSoldOutRequest measures the commonest answer of a flash sale: a hold refused as sold
// out, through the whole in-process stack.
func BenchmarkSoldOutRequest(b *testing.B) {
	h := startAppB(b).Public().Handler()
	org := loginB(b, h, "org@example.com", "organizer password")
	ev := callB(b, h, "POST", "/v1/events", org, `{"name":"Bench","venue":"Hall","starts_at":"2031-01-01T20:00:00Z"}`, 201)
	tt := callB(b, h, "POST", "/v1/events/"+ev+"/ticket-types", org, `{"name":"GA","price_cents":100,"currency":"EUR","capacity":1,"max_per_order":1}`, 201)
	callB(b, h, "POST", "/v1/auth/register", "", `{"email":"bench@example.com","password":"bench password","name":"B"}`, 201)
	buyer := loginB(b, h, "bench@example.com", "bench password")
	body := fmt.Sprintf(`{"ticket_type_id":%q,"quantity":1}`, tt)
	callB(b, h, "POST", "/v1/holds", buyer, body, 201)
	b.ResetTimer()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		callB(b, h, "POST", "/v1/holds", buyer, body, 409)
	}
}

// BenchmarkTrivialRequest is the yardstick for the two benchmarks above: a trivial JSON handler
// (GET /livez) through the same process's public handler and so the same edge middleware (request
// id, trace, metrics, panic recovery, body limit, deadline), run beside them so their ratios to it
// come from one run on a noisy machine.
func BenchmarkTrivialRequest(b *testing.B) {
	h := startAppB(b).Public().Handler()
	b.ResetTimer()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		callB(b, h, "GET", "/livez", "", "", 200)
	}
}
