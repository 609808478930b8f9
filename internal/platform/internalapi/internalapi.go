// Package internalapi is how onsale's processes call one another when modules run apart. A
// module's internal API is served on its own listener (ONSALE_INTERNAL_ADDR), never the public
// port, and every call carries a secret all processes of a deployment share. The client carries
// the caller's deadline and trace context in headers and turns problem documents back into the
// errors they were made from, so errors.Is works the same whether a module is local or remote; a
// failure to reach the other process, or an answer about the deployment rather than the request
// (a 5xx, the other process refusing this one's secret), is an Unavailable problem, which callers
// already retry and the public caller gets as a 503.
package internalapi

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/propagation"

	"github.com/onsale-dev/onsale/internal/platform/problem"
)

// DeadlineHeader carries the caller's deadline (RFC 3339 with nanoseconds), so the callee stops
// working when nobody waits any more.
const DeadlineHeader = "Onsale-Deadline"

// minSecret is the shortest shared secret accepted: 32 characters, 128 bits as hex.
const minSecret = 32

// ErrUnauthorized answers an internal call without the deployment's secret.
var ErrUnauthorized = problem.New(problem.Unauthorized, "internal-unauthorized", "Internal API credentials missing or wrong")

// LoadSecret reads the shared secret from path (surrounding white space ignored).
func LoadSecret(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("internal API secret: %w", err)
	}
	s := strings.TrimSpace(string(data))
	if len(s) < minSecret {
		return "", fmt.Errorf("internal API secret in %s: want at least %d characters (e.g. openssl rand -hex 32), got %d", path, minSecret, len(s))
	}
	return s, nil
}

// RequireSecret is the internal listener's guard: a request must present the shared secret as
// a bearer token.
func RequireSecret(secret string) echo.MiddlewareFunc {
	want := []byte("Bearer " + secret)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			got := []byte(c.Request().Header.Get(echo.HeaderAuthorization))
			if subtle.ConstantTimeCompare(got, want) != 1 {
				return ErrUnauthorized.WithDetail("send the deployment's internal secret: Authorization: Bearer <secret>")
			}
			return next(c)
		}
	}
}

// Deadline gives the request's context the caller's deadline, when it sent one that is sooner
// than the one the server set.
func Deadline(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		raw := c.Request().Header.Get(DeadlineHeader)
		if raw == "" {
			return next(c)
		}
		at, err := time.Parse(time.RFC3339Nano, raw)
		if err != nil {
			return problem.ErrBadRequest.WithDetail("the %s header is not an RFC 3339 time", DeadlineHeader)
		}
		ctx, cancel := context.WithDeadline(c.Request().Context(), at)
		defer cancel()
		c.SetRequest(c.Request().WithContext(ctx))
		return next(c)
	}
}

// Client calls one process's internal API.
type Client struct {
	module  string // who is called, for error messages
	base    string
	secret  string
	timeout time.Duration
	prop    propagation.TextMapPropagator
	http    *http.Client
}

// NewClient returns a client of the module served at baseURL (scheme, host and port). Calls
// without a deadline of their own get timeout.
func NewClient(module, baseURL, secret string, timeout time.Duration, prop propagation.TextMapPropagator) *Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 256
	return &Client{
		module: module, base: strings.TrimRight(baseURL, "/"), secret: secret, timeout: timeout, prop: prop,
		http: &http.Client{Transport: transport},
	}
}

// Do sends a JSON request (in nil for none) and decodes a 2xx answer's body into out (nil to
// ignore it). A problem answer comes back as the *problem.Error it was made from; a failure to
// reach the process, or an answer that is not one of its own, as an Unavailable problem.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set(echo.HeaderAuthorization, "Bearer "+c.secret)
	if dl, ok := ctx.Deadline(); ok {
		req.Header.Set(DeadlineHeader, dl.UTC().Format(time.RFC3339Nano))
	}
	c.prop.Inject(ctx, propagation.HeaderCarrier(req.Header))
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return ctx.Err()
		}
		return c.unreachable(fmt.Errorf("%s %s: %w", method, path, err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return c.unreachable(fmt.Errorf("%s %s: read answer: %w", method, path, err))
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if out == nil || len(data) == 0 {
			return nil
		}
		if err := json.Unmarshal(data, out); err != nil {
			return c.unreachable(fmt.Errorf("%s %s: decode answer: %w", method, path, err))
		}
		return nil
	}
	if pe := problem.Decode(resp.StatusCode, resp.Header, data); pe != nil {
		pe.Err = fmt.Errorf("%s answered %s %s with %d", c.module, method, path, resp.StatusCode)
		if aboutDeployment(resp.StatusCode, pe) {
			return problem.Unavailablef(pe, max(pe.RetryAfter, time.Second),
				"the %s service is temporarily unavailable", c.module)
		}
		return pe
	}
	return c.unreachable(fmt.Errorf("%s %s: status %d without a problem document", method, path, resp.StatusCode))
}

// aboutDeployment tells whether a problem the callee answered is about the deployment rather than
// the request: any 5xx (the other process is failing), and a refusal of this process's
// credentials (the internal secrets differ). Passed on as they are, they would reach the public
// caller as a 500, or as a 401 that reads as a verdict on the customer's own token. The internal
// API takes no customer's credentials, so any 401 from it is about the process; a 403 is only
// when the guard says so, since a module may refuse a request with one (a queue pass, say).
func aboutDeployment(status int, pe *problem.Error) bool {
	return status >= http.StatusInternalServerError || status == http.StatusUnauthorized || pe.Code == ErrUnauthorized.Code
}

// unreachable is the error for a call that got no answer from the module itself.
func (c *Client) unreachable(err error) error {
	return problem.Unavailablef(err, time.Second, "the %s service is temporarily unreachable", c.module)
}
