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
		t.Fatalf("with a wrong secret: %v, want internal-unauthorized", err)
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
