package httpserver

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/onsale-dev/onsale/internal/platform/logging"
	"github.com/onsale-dev/onsale/internal/platform/problem"
	"github.com/onsale-dev/onsale/internal/platform/ratelimit"
)

// requestID keeps a sane client-sent X-Request-Id (so a request can be followed through proxies)
// and replaces anything else with a fresh id.
func (s *Server) requestID(c echo.Context) string {
	id := c.Request().Header.Get(echo.HeaderXRequestID)
	var value []string
	if saneRequestID(id) {
		value = []string{id}
	} else {
		value = s.ids.next()
		id = value[0]
	}
	c.Response().Header()[echo.HeaderXRequestID] = value
	return id
}

// idBatch is how many request ids are made at once.
const idBatch = 64

// requestIDs makes request ids: UUIDs of version 8 (RFC 9562's custom layout) holding a random
// prefix drawn when the server starts and a counter, unique across replicas without reading
// the system's random source on every request, which cost a random UUID three allocations.
// They are made idBatch at a time into one string and one slice of header values, so that a
// request's id and its X-Request-Id value share those and cost no allocation of their own.
type requestIDs struct {
	prefix [8]byte
	seq    uint64
	mu     sync.Mutex
	block  []string // made and not yet handed out
}

func newRequestIDs() (*requestIDs, error) {
	ids := &requestIDs{}
	if _, err := rand.Read(ids.prefix[:]); err != nil {
		return nil, fmt.Errorf("seed request ids: %w", err)
	}
	return ids, nil
}

// next returns a fresh id as a header value of one element; its capacity is 1, so an append
// to it cannot reach the next request's id.
func (r *requestIDs) next() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.block) == 0 {
		r.block = r.fill()
	}
	v := r.block[:1:1]
	r.block = r.block[1:]
	return v
}

// fill makes the next idBatch ids.
func (r *requestIDs) fill() []string {
	const n = len("xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx")
	var text [idBatch * n]byte
	for i := 0; i < idBatch; i++ {
		r.seq++
		var u uuid.UUID
		copy(u[:8], r.prefix[:])
		binary.BigEndian.PutUint64(u[8:], r.seq)
		u[6] = u[6]&0x0f | 0x80 // version 8
		u[8] = u[8]&0x3f | 0x80 // the RFC 9562 variant
		b := text[i*n : (i+1)*n]
		hex.Encode(b[0:8], u[0:4])
		b[8] = '-'
		hex.Encode(b[9:13], u[4:6])
		b[13] = '-'
		hex.Encode(b[14:18], u[6:8])
		b[18] = '-'
		hex.Encode(b[19:23], u[8:10])
		b[23] = '-'
		hex.Encode(b[24:], u[10:])
	}
	all := string(text[:])
	block := make([]string, idBatch)
	for i := range block {
		block[i] = all[i*n : (i+1)*n]
	}
	return block
}

func saneRequestID(id string) bool {
	if len(id) < 8 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		b := id[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || strings.IndexByte("-_.:", b) >= 0) {
			return false
		}
	}
	return true
}

type instruments struct {
	duration metric.Float64Histogram
	requests metric.Int64Counter
	errors   metric.Int64Counter
	shed     metric.Int64Counter
	// inFlight counts the API requests being handled; the gauge of the same name reads it when
	// metrics are collected, rather than two measurements per request.
	inFlight atomic.Int64
	sets     sync.Map // attrKey → *attrSet
}

type attrKey struct {
	route, method string
	status        int
}

// attrSet is what one route, method and status record with, built once: building an attribute
// set, or even the option slices the instruments take, per request showed in profiles.
type attrSet struct {
	record   []metric.RecordOption
	add      []metric.AddOption
	spanName string
}

// attrs returns the measurement attributes of a route, method and status (0: without status),
// built once per combination.
func (i *instruments) attrs(route, method string, status int) *attrSet {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
	default:
		method = "_OTHER" // clients choose methods freely; labels must stay few
	}
	k := attrKey{route, method, status}
	if v, ok := i.sets.Load(k); ok {
		return v.(*attrSet)
	}
	kvs := []attribute.KeyValue{attribute.String("http.route", route), attribute.String("http.request.method", method)}
	if status != 0 {
		kvs = append(kvs, attribute.Int("http.response.status_code", status))
	}
	opt := metric.WithAttributeSet(attribute.NewSet(kvs...))
	v, _ := i.sets.LoadOrStore(k, &attrSet{
		record: []metric.RecordOption{opt}, add: []metric.AddOption{opt}, spanName: method + " " + route,
	})
	return v.(*attrSet)
}

func newInstruments(mp metric.MeterProvider) (*instruments, error) {
	m := mp.Meter("github.com/onsale-dev/onsale/internal/platform/httpserver")
	i := &instruments{}
	var err, e error
	i.duration, e = m.Float64Histogram("http.server.request.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of HTTP requests by route."),
		metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	err = errors.Join(err, e)
	i.requests, e = m.Int64Counter("onsale.http.requests", metric.WithDescription("HTTP requests by route, method and status."))
	err = errors.Join(err, e)
	i.errors, e = m.Int64Counter("onsale.http.errors", metric.WithDescription("HTTP requests answered with a 5xx, by route and method."))
	err = errors.Join(err, e)
	_, e = m.Int64ObservableUpDownCounter("onsale.http.in_flight", metric.WithDescription("Requests being handled (event streams not counted)."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(i.inFlight.Load())
			return nil
		}))
	err = errors.Join(err, e)
	i.shed, e = m.Int64Counter("onsale.http.shed", metric.WithDescription("Requests refused with 503 because too many were in flight."))
	err = errors.Join(err, e)
	return i, err
}

// edgeConfig is what the edge middleware needs.
type edgeConfig struct {
	tracer     trace.Tracer
	prop       propagation.TextMapPropagator
	bodyLimit  int64
	maxInFlght int            // 0: no limit
	limitIP    *clientLimiter // nil: no limit
	overloaded *problem.Error
}

// edge is the platform middleware every request passes, in this order: a request id; a span, RED
// metrics and one access log line (errors returned by handlers are rendered here, through the
// error handler, so the status is known when recording); panic recovery; the body limit; load
// shedding; the per-address rate limit. It is one function rather than a chain (see New).
func (s *Server) edge(cfg edgeConfig) echo.MiddlewareFunc {
	// Built once, as the slice the variadic call takes: a single option built per request
	// would cost a slice each time.
	spanOpts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			rid := s.requestID(c)
			req := c.Request()
			route := c.Path()
			if route == "/*" || route == "" {
				route = "unmatched" // keep unknown paths out of the label values
			}
			ctx := req.Context()
			if len(req.Header) > 0 {
				ctx = cfg.prop.Extract(ctx, canonicalCarrier(req.Header))
			}
			ctx, span := cfg.tracer.Start(ctx, s.inst.attrs(route, req.Method, 0).spanName, spanOpts...)
			// The log handler adds the trace id itself, from the span in ctx.
			ctx = logging.WithAttrs(ctx, slog.String("request_id", rid))
			if s.streams[req.Method+" "+c.Path()] {
				// A stream may own its connection (OpenStream) and outlive the request, which
				// net/http's Shutdown no longer waits for; the server's Shutdown waits for them.
				c.Set(streamGroupKey, &s.streamWG)
			} else {
				// The request's deadline, set here rather than by a middleware of its own to
				// save a copy of the request: handlers pass the request context down so database
				// and cache calls stop when it expires. Streams live as long as they need.
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, s.cfg.RequestTimeout)
				defer cancel()
			}
			req = req.WithContext(ctx)
			c.SetRequest(req)

			err := s.guarded(c, next, &cfg)
			if err != nil {
				c.Error(err)
			}
			status := c.Response().Status
			elapsed := time.Since(start)
			attrs := s.inst.attrs(route, req.Method, status)
			s.inst.duration.Record(ctx, elapsed.Seconds(), attrs.record...)
			s.inst.requests.Add(ctx, 1, attrs.add...)
			if status >= 500 {
				s.inst.errors.Add(ctx, 1, s.inst.attrs(route, req.Method, 0).add...)
				span.SetStatus(codes.Error, http.StatusText(status))
			}
			if span.IsRecording() {
				span.SetAttributes(attribute.String("http.route", route), attribute.Int("http.response.status_code", status))
			}
			span.End()
			if s.cfg.AccessLog {
				s.log.LogAttrs(ctx, slog.LevelInfo, "request",
					slog.String("method", req.Method),
					slog.String("route", route),
					slog.String("path", req.URL.Path),
					slog.Int("status", status),
					slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
					slog.Int64("bytes", c.Response().Size),
					slog.String("ip", c.RealIP()))
			}
			return nil
		}
	}
}

// guarded runs the handler behind panic recovery, the body limit, load shedding and the
// per-address rate limit.
func (s *Server) guarded(c echo.Context, next echo.HandlerFunc, cfg *edgeConfig) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if r == http.ErrAbortHandler {
				panic(r)
			}
			// The stack goes to the log; the response shows nothing of it.
			s.log.ErrorContext(c.Request().Context(), "panic in handler",
				"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = problem.ErrInternal.Wrap(fmt.Errorf("panic: %v", r))
		}
	}()
	req := c.Request()
	// The body limit refuses at once when Content-Length says so, otherwise when reading crosses
	// the limit.
	if req.ContentLength > cfg.bodyLimit {
		return problem.ErrBodyTooLarge.WithDetail("the body may be at most %d bytes", cfg.bodyLimit)
	}
	if req.ContentLength < 0 && req.Body != nil && req.Body != http.NoBody {
		// Only a body of unknown length (chunked) needs the reader that counts: net/http
		// already stops a body with a Content-Length at that length, checked above.
		req.Body = http.MaxBytesReader(c.Response(), req.Body, cfg.bodyLimit)
	}
	api := strings.HasPrefix(c.Path(), "/v1/")
	if api && !s.streams[req.Method+" "+c.Path()] {
		// Shedding answers 503 at once when too many requests are being handled, so a flash
		// crowd meets a fast "try again" instead of a collapsing server. Probes, metrics and
		// streams are exempt.
		n := s.inst.inFlight.Add(1)
		defer s.inst.inFlight.Add(-1)
		if cfg.maxInFlght > 0 && n > int64(cfg.maxInFlght) {
			s.inst.shed.Add(req.Context(), 1)
			return cfg.overloaded
		}
	}
	if cfg.limitIP != nil && api {
		if err := cfg.limitIP.check(c); err != nil {
			return err
		}
	}
	return next(c)
}

// clientLimiter is a token bucket per client address, in this process.
type clientLimiter struct {
	limiter     *ratelimit.Memory
	policy      string
	policyField string
}

// newClientLimiter returns a limiter of rps requests per second after a burst of burst, or nil
// for rps 0.
func newClientLimiter(policy string, rps float64, burst int) *clientLimiter {
	if rps <= 0 {
		return nil
	}
	window := int(math.Ceil(float64(burst) / rps))
	return &clientLimiter{
		limiter:     ratelimit.NewMemory(rps, burst, 100_000),
		policy:      policy,
		policyField: fmt.Sprintf("%q;q=%d;w=%d", policy, burst, window),
	}
}

// check refuses a request over its address's budget: 429 with Retry-After and the IETF
// RateLimit-Policy and RateLimit fields naming the policy, so a client can pace itself.
func (l *clientLimiter) check(c echo.Context) error {
	ok, wait := l.limiter.Allow(ratelimit.ClientKey(c.RealIP()))
	if ok {
		return nil
	}
	secs := int(math.Ceil(wait.Seconds()))
	h := c.Response().Header()
	h.Set("RateLimit-Policy", l.policyField)
	h.Set("RateLimit", fmt.Sprintf("%q;r=0;t=%d", l.policy, secs))
	return problem.ErrRateLimited.WithDetail("too many requests from this address; slow down").WithRetryAfter(wait)
}

// LimitPerClient returns middleware that lets each client address (IPv6 by its /64) send rps
// requests per second after a burst of burst, in this process; rps 0 lets everything through.
// A refusal is 429 with Retry-After and the IETF RateLimit-Policy and RateLimit fields naming
// the policy, so a client can pace itself.
func LimitPerClient(policy string, rps float64, burst int) echo.MiddlewareFunc {
	l := newClientLimiter(policy, rps, burst)
	if l == nil {
		return func(next echo.HandlerFunc) echo.HandlerFunc { return next }
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if err := l.check(c); err != nil {
				return err
			}
			return next(c)
		}
	}
}

// liftWriteDeadline lets a stream write for as long as it lives.
func liftWriteDeadline(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		_ = http.NewResponseController(c.Response()).SetWriteDeadline(time.Time{})
		return next(c)
	}
}

// validatedBody is a request body the spec's rules already accepted, from a schema that refuses
// unknown members at every level (apispec's compiled validator).
type validatedBody interface {
	ValidatedJSON() ([]byte, bool)
}

// Bind decodes a JSON request body into dst, refusing unknown fields and trailing data.
func Bind(c echo.Context, dst any) error {
	if vb, ok := c.Request().Body.(validatedBody); ok {
		if data, ok := vb.ValidatedJSON(); ok {
			// Valid JSON with no unknown member and nothing after it: one plain decode, without
			// a streaming decoder's buffers.
			if err := json.Unmarshal(data, dst); err != nil {
				return problem.ErrMalformedJSON.WithDetail("the body is not the expected JSON: %s", jsonReason(err))
			}
			return nil
		}
	}
	dec := json.NewDecoder(c.Request().Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return problem.ErrBodyTooLarge.WithDetail("the body may be at most %d bytes", mbe.Limit)
		}
		return problem.ErrMalformedJSON.WithDetail("the body is not the expected JSON: %s", jsonReason(err))
	}
	// dec.More would miss a stray closing ']' or '}'; only the end of the body is acceptable here.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return problem.ErrBodyTooLarge.WithDetail("the body may be at most %d bytes", mbe.Limit)
		}
		return problem.ErrMalformedJSON.WithDetail("the body has data after the JSON value")
	}
	return nil
}

func jsonReason(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("field %q has the wrong type", te.Field)
	}
	msg := err.Error()
	if strings.HasPrefix(msg, "json: unknown field ") {
		return "unknown field " + strings.TrimPrefix(msg, "json: unknown field ")
	}
	return "syntax error"
}

// canonicalCarrier reads the trace propagation headers under their canonical names. The
// propagators ask for "traceparent", "tracestate" and "baggage" in lower case, which
// propagation.HeaderCarrier canonicalises into a new string on every request.
type canonicalCarrier http.Header

// Get returns the first value of key.
func (c canonicalCarrier) Get(key string) string {
	switch key {
	case "traceparent":
		key = "Traceparent"
	case "tracestate":
		key = "Tracestate"
	case "baggage":
		key = "Baggage"
	}
	return http.Header(c).Get(key)
}

// Set sets key to value.
func (c canonicalCarrier) Set(key, value string) { http.Header(c).Set(key, value) }

// Keys lists the header names.
func (c canonicalCarrier) Keys() []string { return propagation.HeaderCarrier(c).Keys() }
