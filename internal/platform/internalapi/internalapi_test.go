package internalapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/propagation"

	"github.com/onsale-dev/onsale/internal/platform/problem"
)

const testSecret = "0123456789abcdef0123456789abcdef"

var errSoldOut = problem.New(problem.Conflict, "sold-out", "Not enough tickets available")

// server answers like an onsale internal listener: the guard, the deadline, problem documents.
func server(t *testing.T, handler echo.HandlerFunc) string {
	t.Helper()
	e := echo.New()
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		_ = problem.Write(c.Response(), problem.Resolve(err), c.Request().URL.Path, "")
	}
	e.Use(RequireSecret(testSecret), Deadline)
	e.Any("/*", handler)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv.URL
}

func client(url, secret string) *Client {
	return NewClient("inventory", url, secret, 2*time.Second, propagation.TraceContext{})
}

func TestErrorsKeepTheirIdentity(t *testing.T) {
	url := server(t, func(c echo.Context) error {
		return errSoldOut.WithDetail("only 1 ticket is available").WithExtra("available", 1).WithRetryAfter(time.Second)
	})
	err := client(url, testSecret).Do(context.Background(), http.MethodPost, "/internal/v1/holds/x/commit", map[string]int{"a": 1}, nil)
	if !errors.Is(err, errSoldOut) {
		t.Fatalf("got %v, want the sold-out problem", err)
	}
	if pe := problem.As(err); pe.Detail != "only 1 ticket is available" || pe.Extra["available"] != float64(1) || pe.RetryAfter != time.Second {
		t.Fatalf("decoded %+v", pe)
	}
}

func TestSecretRequired(t *testing.T) {
	url := server(t, func(c echo.Context) error { return c.NoContent(http.StatusNoContent) })
	if err := client(url, testSecret).Do(context.Background(), http.MethodGet, "/", nil, nil); err != nil {
		t.Fatalf("with the secret: %v", err)
	}
	err := client(url, strings.Repeat("x", 32)).Do(context.Background(), http.MethodGet, "/", nil, nil)
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("with a wrong secret: %v, want internal-unauthorized as the cause", err)
	}
}

// TestDeploymentFaultsAreUnavailable: an answer about the deployment rather than the request (the
// callee refuses this process's secret, or fails with a 5xx) comes back as Unavailable with
// Retry-After, which the public caller gets as a 503 to retry, whatever the callee's status was;
// the callee's answer stays the cause, for the log. Answers about the request keep their identity.
func TestDeploymentFaultsAreUnavailable(t *testing.T) {
	t.Parallel()
	errPassRequired := problem.New(problem.Forbidden, "queue-pass-required", "Join the queue")
	errHoldNotFound := problem.New(problem.NotFound, "hold-not-found", "Hold not found")
	answers := map[string]error{
		"/internal":       problem.ErrInternal.Wrap(errors.New("boom")),
		"/overloaded":     problem.ErrOverloaded.WithRetryAfter(3 * time.Second),
		"/timeout":        problem.ErrTimeout,
		"/refused":        ErrUnauthorized.WithDetail("send the deployment's internal secret"),
		"/refused-403":    problem.New(problem.Forbidden, ErrUnauthorized.Code, ErrUnauthorized.Title),
		"/pass-required":  errPassRequired.WithDetail("join the queue"),
		"/hold-not-found": errHoldNotFound,
		"/sold-out":       errSoldOut,
		"/unprocessable":  problem.ErrValidation,
		"/too-many":       problem.ErrRateLimited.WithRetryAfter(time.Second),
	}
	url := server(t, func(c echo.Context) error { return answers[c.Request().URL.Path] })
	c := client(url, testSecret)
	do := func(path string) error {
		return c.Do(context.Background(), http.MethodPost, path, nil, nil)
	}
	for path, cause := range map[string]error{
		"/internal": problem.ErrInternal, "/overloaded": problem.ErrOverloaded, "/timeout": problem.ErrTimeout,
		"/refused": ErrUnauthorized, "/refused-403": answers["/refused-403"],
	} {
		err := do(path)
		pe := problem.As(err)
		if pe == nil || pe.Kind != problem.Unavailable || !errors.Is(err, problem.ErrUnavailable) || pe.RetryAfter < time.Second {
			t.Errorf("%s: got %v, want an unavailable problem with Retry-After", path, err)
			continue
		}
		if !errors.Is(err, cause) {
			t.Errorf("%s: %v lost the callee's answer", path, err)
		}
		if strings.Contains(pe.Detail, "secret") {
			t.Errorf("%s: the detail %q speaks of the deployment's secret", path, pe.Detail)
		}
	}
	if pe := problem.As(do("/overloaded")); pe == nil || pe.RetryAfter != 3*time.Second {
		t.Errorf("the callee's Retry-After was not kept: %+v", pe)
	}
	for path, want := range map[string]*problem.Error{
		"/pass-required": errPassRequired, "/hold-not-found": errHoldNotFound, "/sold-out": errSoldOut,
		"/unprocessable": problem.ErrValidation, "/too-many": problem.ErrRateLimited,
	} {
		if err := do(path); !errors.Is(err, want) || problem.KindOf(err) != want.Kind {
			t.Errorf("%s: got %v, want %v", path, err, want)
		}
	}
	// Refused by the guard itself.
	err := client(url, strings.Repeat("x", 32)).Do(context.Background(), http.MethodGet, "/sold-out", nil, nil)
	if problem.KindOf(err) != problem.Unavailable || !errors.Is(err, ErrUnauthorized) {
		t.Errorf("refused by the guard: %v, want unavailable caused by internal-unauthorized", err)
	}
}

func TestDeadlineTravels(t *testing.T) {
	got := make(chan time.Duration, 1)
	url := server(t, func(c echo.Context) error {
		dl, ok := c.Request().Context().Deadline()
		if !ok {
			got <- -1
		} else {
			got <- time.Until(dl)
		}
		return c.NoContent(http.StatusNoContent)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	if err := client(url, testSecret).Do(ctx, http.MethodGet, "/", nil, nil); err != nil {
		t.Fatal(err)
	}
	if left := <-got; left <= 0 || left > 700*time.Millisecond {
		t.Fatalf("the callee's deadline is %s away, want the caller's (under 700ms)", left)
	}
	// Without a deadline of its own, a call gets the client's timeout.
	if err := client(url, testSecret).Do(context.Background(), http.MethodGet, "/", nil, nil); err != nil {
		t.Fatal(err)
	}
	if left := <-got; left <= 0 || left > 2*time.Second {
		t.Fatalf("a call without a deadline arrived with %s left, want the 2s timeout", left)
	}
}

func TestUnreachableIsUnavailable(t *testing.T) {
	// Nothing listens here.
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	err := client(url, testSecret).Do(context.Background(), http.MethodGet, "/internal/v1/livez", nil, nil)
	if problem.KindOf(err) != problem.Unavailable || problem.As(err).RetryAfter <= 0 {
		t.Fatalf("got %v, want an unavailable problem with Retry-After", err)
	}
	// An answer that is no problem document of ours (a proxy's 502 page) is unavailable too.
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "<html>bad gateway</html>", http.StatusBadGateway)
	}))
	defer proxy.Close()
	if err := client(proxy.URL, testSecret).Do(context.Background(), http.MethodGet, "/", nil, nil); problem.KindOf(err) != problem.Unavailable {
		t.Fatalf("a proxy's 502 page: %v, want unavailable", err)
	}
}

func TestLoadSecret(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	if err := os.WriteFile(good, []byte("  "+testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := LoadSecret(good); err != nil || s != testSecret {
		t.Fatalf("LoadSecret: %q, %v", s, err)
	}
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("hunter2"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSecret(short); err == nil || !strings.Contains(err.Error(), "32") {
		t.Fatalf("a short secret: %v", err)
	}
	if _, err := LoadSecret(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing file was accepted")
	}
}
