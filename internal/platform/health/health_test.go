package health

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
)

const promise = 500 * time.Millisecond // the readiness timeout the design promises

func ok(context.Context) error { return nil }

// probe calls handler the way the HTTP server would and decodes the JSON answer.
func probe(t *testing.T, handler echo.HandlerFunc, path string) (int, map[string]any) {
	t.Helper()
	e := echo.New()
	rec := httptest.NewRecorder()
	c := e.NewContext(httptest.NewRequest(http.MethodGet, path, nil), rec)
	if err := handler(c); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("%s: not JSON: %v: %s", path, err, rec.Body)
	}
	return rec.Code, body
}

func TestReadyWhenChecksPass(t *testing.T) {
	t.Parallel()
	h := New(promise)
	h.Add("redis", ok)
	h.Add("postgres", ok)
	code, body := probe(t, h.Readyz, "/readyz")
	if code != http.StatusOK || body["status"] != "ready" {
		t.Fatalf("readyz = %d %v", code, body)
	}
	checks, _ := body["checks"].([]any)
	if len(checks) != 2 {
		t.Fatalf("checks = %v", body["checks"])
	}
	for i, name := range []string{"redis", "postgres"} {
		c := checks[i].(map[string]any)
		if c["name"] != name || c["status"] != "ok" {
			t.Errorf("check %d = %v", i, c)
		}
	}
}

func TestReadyWithoutChecks(t *testing.T) {
	t.Parallel()
	rep := New(promise).Check(context.Background())
	if !rep.Ready() {
		t.Fatalf("report = %+v", rep)
	}
}

func TestUnreadyWhenACheckFails(t *testing.T) {
	t.Parallel()
	h := New(promise)
	h.Add("redis", ok)
	h.Add("nats", func(context.Context) error { return errors.New("nats: no servers available") })
	code, body := probe(t, h.Readyz, "/readyz")
	if code != http.StatusServiceUnavailable || body["status"] != "unready" {
		t.Fatalf("readyz = %d %v", code, body)
	}
	c := body["checks"].([]any)[1].(map[string]any)
	if c["name"] != "nats" || c["status"] != "failed" || c["error"] != "nats: no servers available" {
		t.Fatalf("failed check = %v", c)
	}
}

func TestSlowCheckTimesOut(t *testing.T) {
	t.Parallel()
	for name, fn := range map[string]CheckFunc{
		"honours context": func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		},
		"ignores context": func() CheckFunc {
			// Blocks far past the timeout whatever the context says.
			release := make(chan struct{})
			t.Cleanup(func() { close(release) })
			return func(context.Context) error { <-release; return nil }
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := New(promise)
			h.Add("fast", ok)
			h.Add("slow", fn)
			h.Add("slow too", fn) // checks run concurrently: two slow ones cost one timeout
			start := time.Now()
			code, body := probe(t, h.Readyz, "/readyz")
			elapsed := time.Since(start)
			if code != http.StatusServiceUnavailable || body["status"] != "unready" {
				t.Fatalf("readyz = %d %v", code, body)
			}
			if elapsed < promise-50*time.Millisecond || elapsed > promise+400*time.Millisecond {
				t.Fatalf("probe took %s; want about %s", elapsed, promise)
			}
			c := body["checks"].([]any)[1].(map[string]any)
			if c["status"] != "failed" || c["error"] != context.DeadlineExceeded.Error() {
				t.Fatalf("slow check = %v", c)
			}
		})
	}
}

func TestCallerContextBoundsChecks(t *testing.T) {
	t.Parallel()
	h := New(promise)
	h.Add("slow", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if rep := h.Check(ctx); rep.Ready() {
		t.Fatalf("report = %+v", rep)
	}
}

func TestResultsReusedBriefly(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	h := New(promise)
	h.Add("counted", func(context.Context) error { calls.Add(1); return nil })
	start := time.Now()
	h.Check(context.Background())
	h.Check(context.Background())
	if time.Since(start) < 150*time.Millisecond && calls.Load() != 1 {
		t.Fatalf("a burst of probes ran the check %d times", calls.Load())
	}
	// Adding a check invalidates the cached answer.
	h.Add("failing", func(context.Context) error { return errors.New("down") })
	if rep := h.Check(context.Background()); rep.Ready() || len(rep.Checks) != 2 {
		t.Fatalf("report after Add = %+v", rep)
	}
}

func TestDraining(t *testing.T) {
	t.Parallel()
	h := New(promise)
	h.Add("redis", ok)
	if code, _ := probe(t, h.Readyz, "/readyz"); code != http.StatusOK {
		t.Fatalf("before draining: %d", code)
	}
	if h.Draining() {
		t.Fatal("Draining before StartDraining")
	}
	h.StartDraining()
	if !h.Draining() {
		t.Fatal("not Draining after StartDraining")
	}
	// The cached "ready" answer must not outlive the start of draining.
	code, body := probe(t, h.Readyz, "/readyz")
	if code != http.StatusServiceUnavailable || body["status"] != "draining" {
		t.Fatalf("draining readyz = %d %v", code, body)
	}
	// Liveness is unaffected.
	if code, body := probe(t, h.Livez, "/livez"); code != http.StatusOK || body["status"] != "ok" {
		t.Fatalf("livez while draining = %d %v", code, body)
	}
}

func TestLivezNeverRunsChecks(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	h := New(promise)
	h.Add("broken", func(context.Context) error { calls.Add(1); return errors.New("down") })
	for range 3 {
		if code, body := probe(t, h.Livez, "/livez"); code != http.StatusOK || body["status"] != "ok" {
			t.Fatalf("livez = %d %v", code, body)
		}
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("livez ran the checks %d times", n)
	}
}

func TestReadyzNotCacheable(t *testing.T) {
	t.Parallel()
	h := New(promise)
	e := echo.New()
	rec := httptest.NewRecorder()
	if err := h.Readyz(e.NewContext(httptest.NewRequest(http.MethodGet, "/readyz", nil), rec)); err != nil {
		t.Fatal(err)
	}
	if got := rec.Header().Get("Cache-Control"); got != "no-store" {
		t.Fatalf("Cache-Control = %q", got)
	}
}

// TestWarningsShowWithoutChangingReadiness: a warning is in every report, ready or not, and
// does not make a ready process unready.
func TestWarningsShowWithoutChangingReadiness(t *testing.T) {
	t.Parallel()
	h := New(promise)
	h.Add("redis", ok)
	code, body := probe(t, h.Readyz, "/readyz")
	if _, ok := body["warnings"]; ok || code != http.StatusOK {
		t.Fatalf("readyz without warnings = %d %v", code, body)
	}
	h.Warn("payments go to the simulated provider: no money moves")
	code, body = probe(t, h.Readyz, "/readyz")
	warnings, _ := body["warnings"].([]any)
	if code != http.StatusOK || body["status"] != "ready" || len(warnings) != 1 || warnings[0] != "payments go to the simulated provider: no money moves" {
		t.Fatalf("readyz with a warning = %d %v", code, body)
	}
	h.Add("nats", func(context.Context) error { return errors.New("down") })
	code, body = probe(t, h.Readyz, "/readyz")
	if warnings, _ := body["warnings"].([]any); code != http.StatusServiceUnavailable || len(warnings) != 1 {
		t.Fatalf("readyz unready with a warning = %d %v", code, body)
	}
}
