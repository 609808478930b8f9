package httpserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/onsale-dev/onsale/internal/platform/apispec"
	"github.com/onsale-dev/onsale/internal/platform/config"
	"github.com/onsale-dev/onsale/internal/platform/logging"
	"github.com/onsale-dev/onsale/internal/platform/problem"
	"github.com/onsale-dev/onsale/internal/platform/telemetry"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

const testSpec = `
openapi: "3.1.0"
info:
  title: httpserver test
  version: "1"
paths:
  /livez:
    get:
      operationId: getLivez
      responses:
        "200":
          description: alive
  /metrics:
    get:
      operationId: getMetrics
      responses:
        "200":
          description: metrics
          content:
            text/plain:
              schema:
                type: string
  /v1/items:
    post:
      operationId: createItem
      requestBody:
        required: true
        content:
          application/json:
            schema:
              $ref: "#/components/schemas/NewItem"
      responses:
        "201":
          description: created
          content:
            application/json:
              schema:
                $ref: "#/components/schemas/Item"
        default:
          $ref: "#/components/responses/Problem"
  /v1/items/{item_id}:
    get:
      operationId: getItem
      parameters:
        - name: item_id
          in: path
          required: true
          schema:
            type: integer
      responses:
        "200":
          description: the item
          content:
            application/json:
              schema:
                $ref: "#/components/schemas/Item"
        default:
          $ref: "#/components/responses/Problem"
  /v1/raw:
    post:
      operationId: postRaw
      responses:
        "204":
          description: read
  /v1/panic:
    get:
      operationId: panics
      responses:
        "200":
          description: never
  /v1/retry:
    get:
      operationId: retry
      responses:
        "503":
          $ref: "#/components/responses/Problem"
  /v1/block:
    get:
      operationId: block
      responses:
        "200":
          description: released
  /v1/ip:
    get:
      operationId: ip
      responses:
        "200":
          description: the client address
  /v1/stream:
    get:
      operationId: stream
      responses:
        "200":
          description: events
components:
  responses:
    Problem:
      description: a problem
      content:
        application/problem+json:
          schema:
            type: object
            required: [type, title, status]
  schemas:
    NewItem:
      type: object
      additionalProperties: false
      required: [name, quantity]
      properties:
        name:
          type: string
          minLength: 1
        quantity:
          type: integer
          minimum: 1
    Item:
      type: object
      required: [id, name, quantity]
      properties:
        id:
          type: integer
        name:
          type: string
        quantity:
          type: integer
`

// fixture is a server with the test routes registered.
type fixture struct {
	s       *Server
	tel     *telemetry.Telemetry
	spec    *apispec.Spec
	entered chan string   // a blocking handler says it is running
	release chan struct{} // closing it lets blocking handlers return
	logs    *lockedBuffer
	once    sync.Once
}

// unblock lets every blocking handler return.
func (f *fixture) unblock() { f.once.Do(func() { close(f.release) }) }

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

func defaultConfig(t *testing.T) Config {
	t.Helper()
	var cfg Config
	if err := config.Load(&cfg, func(string) string { return "" }, ""); err != nil {
		t.Fatal(err)
	}
	cfg.Addr = "127.0.0.1:0"
	return cfg
}

func newFixture(t *testing.T, adjust func(*Config)) *fixture {
	t.Helper()
	cfg := defaultConfig(t)
	cfg.BodyLimit = 1024
	if adjust != nil {
		adjust(&cfg)
	}
	spec, err := apispec.Load([]byte(testSpec))
	if err != nil {
		t.Fatalf("load spec: %v", err)
	}
	tel, err := telemetry.New(context.Background(), telemetry.Config{}, "onsale-test", "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	logs := &lockedBuffer{}
	s, err := New(cfg, Deps{
		Log:        slog.New(slog.NewJSONHandler(logs, nil)),
		Meters:     tel.Meters,
		Tracers:    tel.Tracers,
		Propagator: tel.Propagator,
		Spec:       spec,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	f := &fixture{s: s, tel: tel, spec: spec, entered: make(chan string, 16), release: make(chan struct{}), logs: logs}
	t.Cleanup(f.unblock)

	err = s.Register(
		Route{Method: http.MethodGet, Path: "/livez", Handler: func(c echo.Context) error {
			return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
		}},
		Route{Method: http.MethodGet, Path: "/metrics", Handler: echo.WrapHandler(tel.Handler()), Unvalidated: true},
		Route{Method: http.MethodPost, Path: "/v1/items", Handler: func(c echo.Context) error {
			var in struct {
				Name     string `json:"name"`
				Quantity int    `json:"quantity"`
			}
			if err := Bind(c, &in); err != nil {
				return err
			}
			return c.JSON(http.StatusCreated, map[string]any{"id": 1, "name": in.Name, "quantity": in.Quantity})
		}},
		Route{Method: http.MethodGet, Path: "/v1/items/:item_id", Handler: func(c echo.Context) error {
			return c.JSON(http.StatusOK, map[string]any{"id": 5, "name": "x", "quantity": 1})
		}},
		Route{Method: http.MethodPost, Path: "/v1/raw", Handler: func(c echo.Context) error {
			var v any
			if err := Bind(c, &v); err != nil {
				return err
			}
			return c.NoContent(http.StatusNoContent)
		}},
		Route{Method: http.MethodGet, Path: "/v1/panic", Handler: func(c echo.Context) error {
			panic("kaboom: password=hunter2")
		}},
		Route{Method: http.MethodGet, Path: "/v1/retry", Handler: func(c echo.Context) error {
			return fmt.Errorf("reserve: %w", problem.ErrUnavailable.WithDetail("inventory is catching up").WithRetryAfter(3*time.Second))
		}},
		Route{Method: http.MethodGet, Path: "/v1/block", Handler: func(c echo.Context) error {
			f.entered <- "block"
			select {
			case <-f.release:
				return c.String(http.StatusOK, "released")
			case <-c.Request().Context().Done():
				return c.Request().Context().Err()
			}
		}},
		Route{Method: http.MethodGet, Path: "/v1/ip", Handler: func(c echo.Context) error {
			return c.String(http.StatusOK, c.RealIP())
		}},
		Route{Method: http.MethodGet, Path: "/v1/stream", Stream: true, Handler: func(c echo.Context) error {
			st, err := OpenStream(c)
			if err != nil {
				return err
			}
			defer st.Close()
			if err := st.Write([]byte("event: hello\ndata: {}\n\n")); err != nil {
				return err
			}
			f.entered <- "stream"
			beat := time.NewTicker(20 * time.Millisecond)
			defer beat.Stop()
			for {
				select {
				case <-s.Streams().Done():
					return st.Write([]byte("event: bye\ndata: shutting down\n\n"))
				case <-st.Done():
					f.entered <- "gone"
					return nil
				case <-beat.C:
					if !st.Alive() {
						f.entered <- "gone"
						return nil
					}
				}
			}
		}},
	)
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	return f
}

// serve runs one request through the server's handler.
func (f *fixture) serve(req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	f.s.Handler().ServeHTTP(rec, req)
	return rec
}

func (f *fixture) get(path string) *httptest.ResponseRecorder {
	return f.serve(httptest.NewRequest(http.MethodGet, path, nil))
}

func jsonRequest(method, path, body string) *http.Request {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	return req
}

// problemBody checks that rec is a problem document of the given status and type and returns it.
func problemBody(t *testing.T, status int, typ string, code int, header http.Header, body []byte) map[string]any {
	t.Helper()
	if code != status {
		t.Fatalf("status = %d, want %d; body %s", code, status, body)
	}
	if ct := header.Get("Content-Type"); ct != problem.ContentType {
		t.Fatalf("Content-Type = %q, want %q; body %s", ct, problem.ContentType, body)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("problem not JSON: %v: %s", err, body)
	}
	if m["type"] != problem.TypeBase+typ || m["status"] != float64(status) {
		t.Fatalf("problem = %v, want type %s status %d", m, problem.TypeBase+typ, status)
	}
	if m["request_id"] == "" || m["request_id"] != header.Get(echo.HeaderXRequestID) {
		t.Fatalf("problem request_id %v does not match X-Request-Id %q", m["request_id"], header.Get(echo.HeaderXRequestID))
	}
	return m
}

func wantProblem(t *testing.T, rec *httptest.ResponseRecorder, status int, typ string) map[string]any {
	t.Helper()
	return problemBody(t, status, typ, rec.Code, rec.Header(), rec.Body.Bytes())
}

func TestUnknownRoute(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	for _, path := range []string{"/nope", "/v1/nope/deeper", "/"} {
		m := wantProblem(t, f.get(path), http.StatusNotFound, "not-found")
		if m["instance"] != path {
			t.Errorf("instance = %v, want %s", m["instance"], path)
		}
	}
	// HEAD gets the status without a body.
	rec := f.serve(httptest.NewRequest(http.MethodHead, "/nope", nil))
	if rec.Code != http.StatusNotFound || rec.Body.Len() != 0 {
		t.Fatalf("HEAD unknown: %d %q", rec.Code, rec.Body)
	}
}

func TestWrongMethod(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	wantProblem(t, f.serve(httptest.NewRequest(http.MethodDelete, "/v1/items/5", nil)), http.StatusMethodNotAllowed, "method-not-allowed")
	rec := f.serve(httptest.NewRequest(http.MethodGet, "/v1/items", nil))
	wantProblem(t, rec, http.StatusMethodNotAllowed, "method-not-allowed")
	if allow := rec.Header().Get("Allow"); !strings.Contains(allow, http.MethodPost) {
		t.Fatalf("Allow = %q; want it to list POST", allow)
	}
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	idOf := func(sent string) string {
		req := httptest.NewRequest(http.MethodGet, "/livez", nil)
		if sent != "" {
			req.Header.Set(echo.HeaderXRequestID, sent)
		}
		rec := f.serve(req)
		if rec.Code != http.StatusOK {
			t.Fatalf("livez = %d", rec.Code)
		}
		return rec.Header().Get(echo.HeaderXRequestID)
	}
	generated := idOf("")
	if _, err := uuid.Parse(generated); err != nil {
		t.Fatalf("generated id %q is not a UUID", generated)
	}
	if other := idOf(""); other == generated {
		t.Fatalf("two requests got the same id %q", other)
	}
	for _, sane := range []string{"abc-1234", "lb:7f3a.99_x-" + strings.Repeat("a", 100), strings.Repeat("z", 128)} {
		if got := idOf(sane); got != sane {
			t.Errorf("sane id %q replaced by %q", sane, got)
		}
	}
	for _, insane := range []string{
		"short",                  // too short
		strings.Repeat("a", 129), // too long
		"has spaces in it",
		"<script>alert(1)</script>",
		"id\twith\ttabs",
		"ünïcödé-1234",
		"semi;colon;1234",
	} {
		got := idOf(insane)
		if got == insane {
			t.Errorf("insane id %q kept", insane)
		}
		if _, err := uuid.Parse(got); err != nil {
			t.Errorf("insane id %q replaced by %q, not a fresh UUID", insane, got)
		}
	}
}

func TestPanicBecomes500WithoutDetails(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	rec := f.get("/v1/panic")
	m := wantProblem(t, rec, http.StatusInternalServerError, "internal")
	if body := rec.Body.String(); strings.Contains(body, "kaboom") || strings.Contains(body, "hunter2") || strings.Contains(body, "goroutine") {
		t.Fatalf("500 body shows the panic: %s", body)
	}
	if _, ok := m["detail"]; ok {
		t.Fatalf("500 has a detail: %v", m)
	}
	if !strings.Contains(f.logs.String(), "kaboom") {
		t.Fatalf("panic not logged: %s", f.logs)
	}
	// The server keeps serving.
	if rec := f.get("/livez"); rec.Code != http.StatusOK {
		t.Fatalf("livez after panic = %d", rec.Code)
	}
}

func TestBodyLimit(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil) // limit 1024 bytes
	var sawChunked atomic.Bool
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawChunked.Store(slices.Contains(r.TransferEncoding, "chunked") && r.ContentLength == -1)
		f.s.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	big := `{"name":"` + strings.Repeat("x", 2000) + `","quantity":1}`

	for _, path := range []string{"/v1/items", "/v1/raw"} { // validated by the spec, and read by Bind
		for _, chunked := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s chunked=%v", path, chunked), func(t *testing.T) {
				var body io.Reader = strings.NewReader(big)
				if chunked {
					body = io.MultiReader(body) // hides the length: sent chunked
				}
				req, _ := http.NewRequest(http.MethodPost, ts.URL+path, body)
				req.Header.Set("Content-Type", "application/json")
				resp, err := ts.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				if sawChunked.Load() != chunked {
					t.Fatalf("request arrived chunked=%v, want %v", sawChunked.Load(), chunked)
				}
				problemBody(t, http.StatusRequestEntityTooLarge, "body-too-large", resp.StatusCode, resp.Header, b)
			})
		}
	}

	// A body under the limit is fine.
	rec := f.serve(jsonRequest(http.MethodPost, "/v1/items", `{"name":"ok","quantity":2}`))
	if rec.Code != http.StatusCreated {
		t.Fatalf("small body = %d %s", rec.Code, rec.Body)
	}
}

func TestRequestValidation(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)

	t.Run("valid", func(t *testing.T) {
		req := jsonRequest(http.MethodPost, "/v1/items", `{"name":"stall","quantity":2}`)
		rec := f.serve(req)
		if rec.Code != http.StatusCreated {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		if err := f.spec.ValidateResponse(req, "/v1/items", rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
			t.Fatalf("response breaks the spec: %v", err)
		}
	})

	t.Run("malformed JSON", func(t *testing.T) {
		for _, body := range []string{`{"name":`, `not json`, `{"name":"a","quantity":1}}`} {
			wantProblem(t, f.serve(jsonRequest(http.MethodPost, "/v1/items", body)), http.StatusBadRequest, "malformed-json")
		}
	})

	t.Run("missing body", func(t *testing.T) {
		wantProblem(t, f.serve(jsonRequest(http.MethodPost, "/v1/items", "")), http.StatusBadRequest, "malformed-json")
	})

	t.Run("schema violation", func(t *testing.T) {
		rec := f.serve(jsonRequest(http.MethodPost, "/v1/items", `{"name":"","quantity":0}`))
		m := wantProblem(t, rec, http.StatusUnprocessableEntity, "validation")
		errs, _ := m["errors"].([]any)
		fields := map[string]bool{}
		for _, e := range errs {
			fe := e.(map[string]any)
			fields[fmt.Sprint(fe["field"])] = true
			if fe["message"] == "" {
				t.Errorf("field error without message: %v", fe)
			}
		}
		if !fields["name"] || !fields["quantity"] {
			t.Fatalf("errors = %v; want entries for name and quantity", m["errors"])
		}
	})

	t.Run("wrong field type", func(t *testing.T) {
		rec := f.serve(jsonRequest(http.MethodPost, "/v1/items", `{"name":"a","quantity":"two"}`))
		m := wantProblem(t, rec, http.StatusUnprocessableEntity, "validation")
		if !strings.Contains(fmt.Sprint(m["errors"]), "quantity") {
			t.Fatalf("errors = %v; want quantity named", m["errors"])
		}
	})

	t.Run("unknown field", func(t *testing.T) {
		rec := f.serve(jsonRequest(http.MethodPost, "/v1/items", `{"name":"a","quantity":1,"price":3}`))
		wantProblem(t, rec, http.StatusUnprocessableEntity, "validation")
	})

	t.Run("wrong content type", func(t *testing.T) {
		req := httptest.NewRequest(http.MethodPost, "/v1/items", strings.NewReader(`name=a&quantity=1`))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		wantProblem(t, f.serve(req), http.StatusUnsupportedMediaType, "unsupported-media-type")
		req = httptest.NewRequest(http.MethodPost, "/v1/items", strings.NewReader(`{"name":"a","quantity":1}`))
		req.Header.Set("Content-Type", "text/plain")
		wantProblem(t, f.serve(req), http.StatusUnsupportedMediaType, "unsupported-media-type")
	})

	t.Run("bad path parameter", func(t *testing.T) {
		m := wantProblem(t, f.get("/v1/items/abc"), http.StatusBadRequest, "bad-request")
		if !strings.Contains(fmt.Sprint(m["errors"]), "item_id") {
			t.Fatalf("errors = %v; want item_id named", m["errors"])
		}
		if rec := f.get("/v1/items/5"); rec.Code != http.StatusOK {
			t.Fatalf("good path parameter = %d %s", rec.Code, rec.Body)
		}
	})
}

func TestRetryAfterFromHandler(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	rec := f.get("/v1/retry")
	m := wantProblem(t, rec, http.StatusServiceUnavailable, "unavailable")
	if got := rec.Header().Get("Retry-After"); got != "3" {
		t.Fatalf("Retry-After = %q, want 3", got)
	}
	if m["detail"] != "inventory is catching up" {
		t.Fatalf("detail = %v", m["detail"])
	}
}

func TestRegisterRefusesRouteMissingFromSpec(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	handler := func(c echo.Context) error { return c.NoContent(http.StatusOK) }
	for _, r := range []Route{
		{Method: http.MethodGet, Path: "/v1/secret-admin", Handler: handler},
		{Method: http.MethodDelete, Path: "/v1/items/:item_id", Handler: handler}, // path in the spec, method not
		{Method: http.MethodGet, Path: "/v1/unlisted", Handler: handler, Unvalidated: true},
	} {
		err := f.s.Register(r)
		if err == nil || !strings.Contains(err.Error(), apispec.OpenAPIPath(r.Path)) {
			t.Errorf("Register(%s %s) err = %v; want a refusal naming the path", r.Method, r.Path, err)
		}
	}
	for _, r := range f.s.Routes() {
		if r.Path == "/v1/secret-admin" || r.Path == "/v1/unlisted" || r.Method == http.MethodDelete {
			t.Errorf("refused route %s %s was registered", r.Method, r.Path)
		}
	}
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	got := map[string]bool{}
	for _, r := range f.s.Routes() {
		got[r.Method+" "+r.Path] = true
	}
	for _, want := range []string{"GET /livez", "GET /metrics", "POST /v1/items", "GET /v1/items/:item_id", "GET /v1/stream"} {
		if !got[want] {
			t.Errorf("Routes() lacks %s: %v", want, got)
		}
	}
	if got["RouteNotFound /*"] || len(got) != 10 {
		t.Errorf("Routes() = %v", got)
	}
}

func TestLoadShedding(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *Config) { c.MaxInFlight = 1 })
	first := make(chan *httptest.ResponseRecorder, 1)
	go func() { first <- f.get("/v1/block") }()
	select {
	case <-f.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("first request never reached its handler")
	}

	rec := f.get("/v1/items/5")
	wantProblem(t, rec, http.StatusServiceUnavailable, "overloaded")
	if got := rec.Header().Get("Retry-After"); got != "1" {
		t.Fatalf("Retry-After = %q", got)
	}
	// Probes are never shed.
	if rec := f.get("/livez"); rec.Code != http.StatusOK {
		t.Fatalf("livez while busy = %d", rec.Code)
	}

	f.unblock()
	if rec := <-first; rec.Code != http.StatusOK || rec.Body.String() != "released" {
		t.Fatalf("first request = %d %s", rec.Code, rec.Body)
	}
	if rec := f.get("/v1/items/5"); rec.Code != http.StatusOK {
		t.Fatalf("after the first finished = %d %s", rec.Code, rec.Body)
	}
}

func TestRateLimitPerIP(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *Config) { c.RateLimitIP = 1 }) // burst 3
	from := func(ip string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/v1/items/5", nil)
		req.RemoteAddr = ip + ":5555"
		return f.serve(req)
	}
	var limited *httptest.ResponseRecorder
	for range 10 {
		if rec := from("203.0.113.7"); rec.Code == http.StatusTooManyRequests {
			limited = rec
			break
		}
	}
	if limited == nil {
		t.Fatal("10 quick requests from one address were never limited")
	}
	wantProblem(t, limited, http.StatusTooManyRequests, "rate-limited")
	if limited.Header().Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
	if rec := from("203.0.113.8"); rec.Code != http.StatusOK {
		t.Fatalf("another address = %d", rec.Code)
	}
	if rec := f.get("/livez"); rec.Code != http.StatusOK {
		t.Fatalf("livez is rate limited: %d", rec.Code)
	}
}

func TestRequestDeadline(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *Config) { c.RequestTimeout = 50 * time.Millisecond })
	rec := f.get("/v1/block") // waits for its context to expire
	wantProblem(t, rec, http.StatusServiceUnavailable, "timeout")
	if rec.Header().Get("Retry-After") == "" {
		t.Fatal("timeout without Retry-After")
	}
}

func TestRealIPIgnoresForwardedForUnlessTrusted(t *testing.T) {
	t.Parallel()
	ipVia := func(f *fixture, peer string, xff string) string {
		req := httptest.NewRequest(http.MethodGet, "/v1/ip", nil)
		req.RemoteAddr = peer + ":40000"
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
			req.Header.Set("X-Real-Ip", xff)
		}
		rec := f.serve(req)
		if rec.Code != http.StatusOK {
			t.Fatalf("ip = %d %s", rec.Code, rec.Body)
		}
		return rec.Body.String()
	}
	direct := newFixture(t, nil)
	for _, peer := range []string{"198.51.100.9", "10.0.0.5", "127.0.0.1"} {
		if got := ipVia(direct, peer, "6.6.6.6"); got != peer {
			t.Errorf("no trusted proxies, peer %s: RealIP = %s (spoofable)", peer, got)
		}
	}
	proxied := newFixture(t, func(c *Config) { c.TrustedProxies = []string{"10.0.0.0/8"} })
	if got := ipVia(proxied, "10.1.2.3", "6.6.6.6"); got != "6.6.6.6" {
		t.Errorf("trusted proxy: RealIP = %s, want 6.6.6.6", got)
	}
	if got := ipVia(proxied, "10.1.2.3", "6.6.6.6, 10.9.9.9"); got != "6.6.6.6" {
		t.Errorf("trusted proxy chain: RealIP = %s, want 6.6.6.6", got)
	}
	if got := ipVia(proxied, "198.51.100.9", "6.6.6.6"); got != "198.51.100.9" {
		t.Errorf("untrusted peer: RealIP = %s, want the peer", got)
	}
	// Loopback and private ranges are not trusted just because they are local.
	if got := ipVia(proxied, "127.0.0.1", "6.6.6.6"); got != "127.0.0.1" {
		t.Errorf("loopback peer not in the trusted ranges: RealIP = %s", got)
	}
	if got := ipVia(proxied, "192.168.1.1", "6.6.6.6"); got != "192.168.1.1" {
		t.Errorf("private peer not in the trusted ranges: RealIP = %s", got)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	if rec := f.get("/v1/items/5"); rec.Code != http.StatusOK {
		t.Fatalf("item = %d", rec.Code)
	}
	f.get("/no/such/path/12345")
	f.get("/v1/panic")
	rec := f.get("/metrics")
	if rec.Code != http.StatusOK {
		t.Fatalf("metrics = %d", rec.Code)
	}
	var requests []string
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if strings.HasPrefix(line, "onsale_http_requests_total{") {
			requests = append(requests, line)
		}
	}
	has := func(parts ...string) bool {
		for _, l := range requests {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(l, p)
			}
			if all {
				return true
			}
		}
		return false
	}
	if !has(`http_route="/v1/items/:item_id"`, `http_response_status_code="200"`, `http_request_method="GET"`) {
		t.Errorf("no request counter for the item route:\n%s", strings.Join(requests, "\n"))
	}
	if !has(`http_route="unmatched"`, `http_response_status_code="404"`) {
		t.Errorf("no request counter for unmatched paths:\n%s", strings.Join(requests, "\n"))
	}
	if has("12345") {
		t.Errorf("a raw path leaked into the labels:\n%s", strings.Join(requests, "\n"))
	}
	body := rec.Body.String()
	if !strings.Contains(body, "onsale_http_errors_total{") || !strings.Contains(body, "http_server_request_duration_seconds_bucket{") {
		t.Errorf("errors counter or duration histogram missing:\n%s", body)
	}
}

func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	if err := f.s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	base := "http://" + f.s.Addr()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

	type result struct {
		code int
		body string
		err  error
	}
	fetch := func(path string, out chan<- result) {
		resp, err := client.Get(base + path)
		if err != nil {
			out <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		out <- result{code: resp.StatusCode, body: string(b), err: err}
	}
	stream, slow := make(chan result, 1), make(chan result, 1)
	go fetch("/v1/stream", stream)
	go fetch("/v1/block", slow)
	seen := map[string]bool{}
	for len(seen) < 2 {
		select {
		case name := <-f.entered:
			seen[name] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("handlers not reached: %v", seen)
		}
	}
	if f.s.Streams().Err() != nil {
		t.Fatal("Streams cancelled before shutdown")
	}

	shutdownDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdownDone <- f.s.Shutdown(ctx)
	}()

	testenv.Eventually(t, 2*time.Second, func() bool { return f.s.Streams().Err() != nil },
		"Streams() not cancelled after Shutdown started")
	// The stream ends on its own once told to.
	select {
	case r := <-stream:
		if r.err != nil || r.code != http.StatusOK || !strings.Contains(r.body, "event: bye") {
			t.Fatalf("stream = %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stream did not end after shutdown started")
	}
	// New connections are refused while the slow request is still being served.
	testenv.Eventually(t, 2*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", f.s.Addr(), 200*time.Millisecond)
		if err != nil {
			return true
		}
		c.Close()
		return false
	}, "still accepting connections after Shutdown started")
	select {
	case err := <-shutdownDone:
		t.Fatalf("Shutdown returned (%v) with a request in flight", err)
	default:
	}

	f.unblock()
	r := <-slow
	if r.err != nil || r.code != http.StatusOK || r.body != "released" {
		t.Fatalf("in-flight request = %+v; want it completed", r)
	}
	select {
	case err := <-shutdownDone:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the last request finished")
	}
}

func TestShutdownDeadlineCutsRequests(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	if err := f.s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	errc := make(chan error, 1)
	go func() {
		resp, err := client.Get("http://" + f.s.Addr() + "/v1/block")
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-f.entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := f.s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v; want the deadline error", err)
	}
	select {
	case <-errc:
	case <-time.After(5 * time.Second):
		t.Fatal("the stuck request was not cut off")
	}
}

func TestStartFailsOnBusyAddress(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f := newFixture(t, func(c *Config) { c.Addr = ln.Addr().String() })
	if err := f.s.Start(context.Background()); err == nil {
		t.Fatal("Start succeeded on a busy address")
	}
	if err := f.s.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown of a server that never started: %v", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	cfg := defaultConfig(t)
	cfg.Addr = "nonsense"
	cfg.BodyLimit = 1
	cfg.MaxInFlight = -1
	cfg.TrustedProxies = []string{"not-a-cidr"}
	cfg.RequestTimeout = 0
	_, err := New(cfg, Deps{Log: logging.Discard()})
	if err == nil {
		t.Fatal("New accepted a bad config")
	}
	for _, name := range []string{"ONSALE_HTTP_ADDR", "ONSALE_HTTP_BODY_LIMIT", "ONSALE_HTTP_MAX_IN_FLIGHT", "ONSALE_TRUSTED_PROXIES", "ONSALE_HTTP_REQUEST_TIMEOUT"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

// TestInFlightGauge: onsale_http_in_flight counts the API requests being handled, as a gauge per
// process; the Kubernetes autoscaler scales on it (deploy/k8s/prometheus-adapter).
func TestInFlightGauge(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	inFlight := func() string {
		t.Helper()
		rec := f.get("/metrics")
		for _, line := range strings.Split(rec.Body.String(), "\n") {
			if strings.HasPrefix(line, "onsale_http_in_flight{") || strings.HasPrefix(line, "onsale_http_in_flight ") {
				return line[strings.LastIndexByte(line, ' ')+1:]
			}
		}
		t.Fatalf("no onsale_http_in_flight series:\n%s", rec.Body)
		return ""
	}
	if rec := f.get("/v1/items/5"); rec.Code != http.StatusOK {
		t.Fatalf("item = %d", rec.Code)
	}
	if got := inFlight(); got != "0" {
		t.Fatalf("in flight after a finished request = %s, want 0", got)
	}
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() { done <- f.get("/v1/block") }()
	select {
	case <-f.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the request never reached its handler")
	}
	if got := inFlight(); got != "1" {
		t.Errorf("in flight while one request is handled = %s, want 1 (/metrics itself is not counted)", got)
	}
	f.unblock()
	if rec := <-done; rec.Code != http.StatusOK {
		t.Fatalf("block = %d", rec.Code)
	}
	if got := inFlight(); got != "0" {
		t.Errorf("in flight after it finished = %s, want 0", got)
	}
}

func TestCORSAnswersConfiguredOriginsOnly(t *testing.T) {
	t.Parallel()
	preflight := func(f *fixture, origin string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodOptions, "/v1/items", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
		return f.serve(req)
	}
	f := newFixture(t, func(c *Config) { c.CORSOrigins = []string{"https://shop.example"} })
	rec := preflight(f, "https://shop.example")
	if rec.Code != http.StatusNoContent {
		t.Fatalf("preflight from an allowed origin = %d %s", rec.Code, rec.Body)
	}
	h := rec.Header()
	if h.Get("Access-Control-Allow-Origin") != "https://shop.example" {
		t.Errorf("Access-Control-Allow-Origin = %q", h.Get("Access-Control-Allow-Origin"))
	}
	if !strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("Access-Control-Allow-Headers = %q, want Authorization", h.Get("Access-Control-Allow-Headers"))
	}
	if h.Get("Access-Control-Max-Age") == "" || h.Get("Access-Control-Max-Age") == "0" {
		t.Errorf("preflight not cacheable: Access-Control-Max-Age = %q", h.Get("Access-Control-Max-Age"))
	}
	if h.Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("credentials allowed: %q", h.Get("Access-Control-Allow-Credentials"))
	}
	if rec := preflight(f, "https://evil.example"); rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight from another origin got Access-Control-Allow-Origin %q", rec.Header().Get("Access-Control-Allow-Origin"))
	}
	req := httptest.NewRequest(http.MethodGet, "/v1/items/5", nil)
	req.Header.Set("Origin", "https://shop.example")
	rec = f.serve(req)
	if rec.Code != http.StatusOK || rec.Header().Get("Access-Control-Allow-Origin") != "https://shop.example" {
		t.Errorf("GET from an allowed origin = %d, Access-Control-Allow-Origin %q", rec.Code, rec.Header().Get("Access-Control-Allow-Origin"))
	}
	if !strings.Contains(rec.Header().Get("Access-Control-Expose-Headers"), "X-Request-Id") {
		t.Errorf("Access-Control-Expose-Headers = %q", rec.Header().Get("Access-Control-Expose-Headers"))
	}
	none := newFixture(t, nil)
	if rec := preflight(none, "https://shop.example"); rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("without configured origins a preflight got Access-Control-Allow-Origin %q", rec.Header().Get("Access-Control-Allow-Origin"))
	}
}

func TestCORSOriginsAreValidated(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"shop.example", "https://shop.example/path", "ftp://shop.example", "*"} {
		cfg := defaultConfig(t)
		cfg.CORSOrigins = []string{bad}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "ONSALE_CORS_ORIGINS") {
			t.Errorf("origin %q: Validate = %v, want an ONSALE_CORS_ORIGINS error", bad, err)
		}
	}
	cfg := defaultConfig(t)
	cfg.CORSOrigins = []string{"https://shop.example", "http://localhost:3000"}
	if err := cfg.Validate(); err != nil {
		t.Errorf("good origins: %v", err)
	}
}

// TestStreamOwnsItsConnection: over HTTP/1.1 a stream takes its connection from net/http. The
// client sees a plain 200 with the event-stream headers, the middleware's headers and
// Connection: close, then the events; when the client hangs up, the handler finds out from
// Alive, without a goroutine reading the connection.
func TestStreamOwnsItsConnection(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	if err := f.s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.s.Shutdown(context.Background()) })
	conn, err := net.Dial("tcp", f.s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /v1/stream HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" ||
		!resp.Close || resp.Header.Get("X-Request-Id") == "" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("head: %d close=%v %v", resp.StatusCode, resp.Close, resp.Header)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "event: hello\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	waitEntered(t, f, "stream")
	conn.Close()
	waitEntered(t, f, "gone")
}

// TestStreamThroughResponseWriter: where the connection cannot be taken (here a recorder), the
// stream writes through the ResponseWriter and ends with the request's context.
func TestStreamThroughResponseWriter(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequest(http.MethodGet, "/v1/stream", nil).WithContext(ctx)
	done := make(chan *httptest.ResponseRecorder, 1)
	rec := httptest.NewRecorder()
	go func() { f.s.Handler().ServeHTTP(rec, req); done <- rec }()
	waitEntered(t, f, "stream")
	cancel()
	waitEntered(t, f, "gone")
	r := <-done
	if r.Code != http.StatusOK || r.Header().Get("Content-Type") != "text/event-stream" || !strings.HasPrefix(r.Body.String(), "event: hello\n") {
		t.Fatalf("response %d %v %q", r.Code, r.Header(), r.Body)
	}
}

func waitEntered(t *testing.T, f *fixture, want string) {
	t.Helper()
	select {
	case got := <-f.entered:
		if got != want {
			t.Fatalf("handler said %q, want %q", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("handler did not say %q", want)
	}
}
