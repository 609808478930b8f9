// Package health answers the two questions a load balancer and an orchestrator ask: is the process
// alive (never depends on anything else), and can it serve real requests now (every dependency
// answered in time and the process is not draining for shutdown).
package health

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
)

// CheckFunc returns nil when the dependency answered.
type CheckFunc func(ctx context.Context) error

// CheckResult is one dependency's answer.
type CheckResult struct {
	Name       string  `json:"name"`
	Status     string  `json:"status"` // ok or failed
	DurationMS float64 `json:"duration_ms"`
	Error      string  `json:"error,omitempty"`
}

// Report is the readiness answer.
type Report struct {
	Status string        `json:"status"` // ready, unready or draining
	Checks []CheckResult `json:"checks"`
	// Warnings are standing facts an operator must not miss, such as payments going to the
	// simulated provider. They do not affect readiness.
	Warnings []string `json:"warnings,omitempty"`
}

// Ready tells whether the report allows traffic.
func (r Report) Ready() bool { return r.Status == "ready" }

type check struct {
	name string
	fn   CheckFunc
}

// Health runs readiness checks. Results are reused for a short time so a burst of probes does not
// become a burst of dependency calls.
type Health struct {
	timeout  time.Duration
	reuse    time.Duration
	draining atomic.Bool

	mu       sync.Mutex
	checks   []check
	warnings []string
	last     Report
	lastAt   time.Time
}

// New returns a Health whose checks each get timeout to answer (500 ms is the promise).
func New(timeout time.Duration) *Health {
	return &Health{timeout: timeout, reuse: 200 * time.Millisecond}
}

// Add registers a dependency check.
func (h *Health) Add(name string, fn CheckFunc) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks = append(h.checks, check{name, fn})
	h.lastAt = time.Time{}
}

// Warn adds a warning to every readiness report from now on, without making the process unready:
// for a state that serves requests but that whoever looks at /readyz must know about.
func (h *Health) Warn(msg string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.warnings = append(h.warnings, msg)
	h.lastAt = time.Time{}
}

// StartDraining makes readiness fail from now on, so load balancers stop sending new requests.
func (h *Health) StartDraining() { h.draining.Store(true) }

// Draining tells whether StartDraining was called.
func (h *Health) Draining() bool { return h.draining.Load() }

// Check runs every check concurrently, each bounded by the timeout.
func (h *Health) Check(ctx context.Context) Report {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.lastAt.IsZero() && time.Since(h.lastAt) < h.reuse {
		return h.withDraining(h.last)
	}
	results := make([]CheckResult, len(h.checks))
	var wg sync.WaitGroup
	for i, c := range h.checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = run(ctx, c, h.timeout)
		}()
	}
	wg.Wait()
	rep := Report{Status: "ready", Checks: results, Warnings: slices.Clone(h.warnings)}
	for _, r := range results {
		if r.Status != "ok" {
			rep.Status = "unready"
		}
	}
	h.last, h.lastAt = rep, time.Now()
	return h.withDraining(rep)
}

func (h *Health) withDraining(r Report) Report {
	if h.draining.Load() {
		r.Status = "draining"
	}
	return r
}

func run(ctx context.Context, c check, timeout time.Duration) CheckResult {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	done := make(chan error, 1)
	// The check runs in its own goroutine so that one that ignores its context still cannot hold
	// the probe past the timeout.
	go func() { done <- c.fn(ctx) }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	res := CheckResult{Name: c.name, Status: "ok", DurationMS: float64(time.Since(start).Microseconds()) / 1000}
	if err != nil {
		res.Status, res.Error = "failed", err.Error()
	}
	return res
}

// Livez answers 200 while the process runs.
func (h *Health) Livez(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// Readyz answers 200 when ready and 503 otherwise, with every check in the body.
func (h *Health) Readyz(c echo.Context) error {
	rep := h.Check(c.Request().Context())
	c.Response().Header().Set("Cache-Control", "no-store")
	if !rep.Ready() {
		return c.JSON(http.StatusServiceUnavailable, rep)
	}
	return c.JSON(http.StatusOK, rep)
}
