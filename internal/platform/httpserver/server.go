// Package httpserver is onsale's HTTP edge: an echo router on a net/http server with timeouts,
// request ids, panic recovery, body limits, load shedding, per-route metrics and traces, one
// access log line per request, request validation against the OpenAPI document, and errors
// rendered as RFC 9457 problem documents in one place.
package httpserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/onsale-dev/onsale/internal/platform/apispec"
	"github.com/onsale-dev/onsale/internal/platform/problem"
)

// Route is one operation served by a module.
type Route struct {
	Method  string
	Path    string // echo form: /v1/holds/:hold_id
	Handler echo.HandlerFunc
	// Middleware runs before request validation, e.g. authentication, so that an anonymous
	// caller learns nothing about the body's shape.
	Middleware []echo.MiddlewareFunc
	// Stream marks a long-lived response (Server-Sent Events): it gets no request deadline, no
	// write timeout, does not count against the in-flight limit, and ends when the server shuts
	// down (see Server.Streams).
	Stream bool
	// Unvalidated serves the route without request validation; only for routes outside /v1
	// whose shape the document cannot express (e.g. /metrics). They must still be in the
	// document.
	Unvalidated bool
}

// Deps are what the server needs from the rest of the platform.
type Deps struct {
	Log        *slog.Logger
	Meters     metric.MeterProvider
	Tracers    trace.TracerProvider
	Propagator propagation.TextMapPropagator
	Spec       *apispec.Spec
}

// Server is the HTTP edge.
type Server struct {
	cfg     Config
	log     *slog.Logger
	echo    *echo.Echo
	spec    *apispec.Spec
	httpSrv *http.Server
	inst    *instruments
	ids     *requestIDs
	streams map[string]bool // "GET /v1/orders/:order_id/events"; written only before Start

	streamsCtx    context.Context
	cancelStreams context.CancelFunc
	streamWG      sync.WaitGroup // stream handlers running

	mu       sync.Mutex
	listener net.Listener
	serveErr chan error
}

// New builds a server with the platform middleware in place and no routes.
func New(cfg Config, d Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.IPExtractor = ipExtractor(cfg.TrustedProxies)
	inst, err := newInstruments(d.Meters)
	if err != nil {
		return nil, err
	}
	ids, err := newRequestIDs()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: d.Log, echo: e, spec: d.Spec, inst: inst, ids: ids, streams: map[string]bool{}}
	s.streamsCtx, s.cancelStreams = context.WithCancel(context.Background())
	e.HTTPErrorHandler = s.handleError

	tracer := d.Tracers.Tracer("github.com/onsale-dev/onsale/internal/platform/httpserver")
	if len(cfg.CORSOrigins) > 0 {
		// Before routing: a preflight names a path that has no OPTIONS route.
		e.Pre(cors(cfg.CORSOrigins))
	}
	// The edge middleware runs as one function: echo composes its global middleware anew on
	// every request, one closure each, which showed in allocation profiles of the hottest routes.
	e.Use(s.edge(edgeConfig{
		tracer:     tracer,
		prop:       d.Propagator,
		bodyLimit:  cfg.BodyLimit,
		maxInFlght: cfg.MaxInFlight,
		limitIP:    newClientLimiter("api", cfg.RateLimitIP, int(2*cfg.RateLimitIP)+1),
		overloaded: problem.ErrOverloaded.WithDetail("the server is at capacity; retry shortly").WithRetryAfter(time.Second),
	}))
	// Unknown paths are left to echo's own not-found handler (rendered by handleError): a
	// catch-all route here would also answer 404 where the path exists with another method (405).
	return s, nil
}

// Register adds routes. Each must be in the OpenAPI document (when the server has one); requests
// are validated against it after the route's own middleware.
func (s *Server) Register(routes ...Route) error {
	for _, r := range routes {
		mws := append([]echo.MiddlewareFunc{}, r.Middleware...)
		// Every other route gets its deadline at the edge (see edge).
		if r.Stream {
			mws = append([]echo.MiddlewareFunc{liftWriteDeadline}, mws...)
			s.streams[r.Method+" "+r.Path] = true
		}
		if s.spec != nil {
			if _, ok := s.spec.Route(r.Method, r.Path); !ok {
				return fmt.Errorf("route %s %s is not in the OpenAPI document", r.Method, apispec.OpenAPIPath(r.Path))
			}
			if !r.Unvalidated {
				v, err := s.spec.RequestValidator(r.Method, r.Path)
				if err != nil {
					return err
				}
				mws = append(mws, v)
			}
		}
		// The route's middleware is applied here, once: echo's own Add would compose it again on
		// every request.
		h := r.Handler
		for i := len(mws) - 1; i >= 0; i-- {
			h = mws[i](h)
		}
		s.echo.Add(r.Method, r.Path, h)
	}
	return nil
}

// Routes lists the registered method and path pairs (echo form), without the catch-all.
func (s *Server) Routes() []Route {
	var out []Route
	for _, r := range s.echo.Routes() {
		if r.Path == "/*" || r.Method == echo.RouteNotFound {
			continue
		}
		out = append(out, Route{Method: r.Method, Path: r.Path})
	}
	return out
}

// Handler is the server's http.Handler, for tests.
func (s *Server) Handler() http.Handler { return s.echo }

// Streams is cancelled when the server starts shutting down; long-lived responses end then so
// the shutdown can finish, and clients reconnect to another replica.
func (s *Server) Streams() context.Context { return s.streamsCtx }

// Start listens and serves in the background. It returns once the listener is open, so a bad
// address fails the start.
func (s *Server) Start(ctx context.Context) error {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.Addr, err)
	}
	s.httpSrv = &http.Server{
		Handler:           s.echo,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.httpSrv.RegisterOnShutdown(s.cancelStreams)
	s.mu.Lock()
	s.listener = ln
	s.serveErr = make(chan error, 1)
	s.mu.Unlock()
	go func() {
		err := s.httpSrv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.serveErr <- err
	}()
	s.log.Info("http server listening", "addr", ln.Addr().String())
	return nil
}

// Addr is the address the server listens on (useful with port 0).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listener == nil {
		return ""
	}
	return s.listener.Addr().String()
}

// Shutdown stops accepting connections and waits for in-flight requests to finish, within ctx.
// Streams are told to end first.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.httpSrv == nil {
		return nil
	}
	err := s.httpSrv.Shutdown(ctx)
	if err == nil {
		// Streams on connections of their own were told to end when the shutdown began.
		done := make(chan struct{})
		go func() { s.streamWG.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			err = fmt.Errorf("streams still open: %w", ctx.Err())
		}
	}
	if err != nil {
		// The deadline passed with requests still running: cut them off rather than hang.
		err = errors.Join(err, s.httpSrv.Close())
	}
	if serveErr := <-s.serveErr; serveErr != nil {
		err = errors.Join(err, serveErr)
	}
	return err
}

func ipExtractor(trusted []string) echo.IPExtractor {
	if len(trusted) == 0 {
		// Never believe forwarding headers unless a proxy range is configured.
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, p := range trusted {
		prefix := netip.MustParsePrefix(p) // validated in Config.Validate
		_, n, _ := net.ParseCIDR(prefix.String())
		opts = append(opts, echo.TrustIPRange(n))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

// handleError renders any error as a problem document. It is the only place where errors become
// HTTP responses.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	pe := toProblem(err)
	req := c.Request()
	if pe.Kind == problem.Internal || (pe.Kind == problem.Unavailable && pe.Err != nil) {
		s.log.ErrorContext(req.Context(), "request failed", "err", err, "route", c.Path())
	}
	rid := c.Response().Header().Get(echo.HeaderXRequestID)
	if req.Method == http.MethodHead {
		c.Response().Header().Set("Content-Type", problem.ContentType)
		c.Response().WriteHeader(pe.Kind.Status())
		return
	}
	if werr := problem.Write(c.Response(), pe, req.URL.Path, rid); werr != nil {
		s.log.DebugContext(req.Context(), "write problem", "err", werr)
	}
}

// toProblem maps echo's own errors (unknown route, wrong method, body too large) and everything
// else to a problem.
func toProblem(err error) *problem.Error {
	if pe := problem.As(err); pe != nil {
		return pe
	}
	if he, ok := errors.AsType[*echo.HTTPError](err); ok {
		switch he.Code {
		case http.StatusNotFound:
			return problem.ErrNotFound
		case http.StatusMethodNotAllowed:
			return problem.ErrMethodNotAllowed
		case http.StatusRequestEntityTooLarge:
			return problem.ErrBodyTooLarge
		case http.StatusUnsupportedMediaType:
			return problem.ErrUnsupportedMedia
		case http.StatusBadRequest:
			return problem.ErrBadRequest.WithDetail("%v", he.Message)
		case http.StatusServiceUnavailable:
			return problem.ErrUnavailable.WithRetryAfter(time.Second)
		case http.StatusTooManyRequests:
			return problem.ErrRateLimited.WithRetryAfter(time.Second)
		case http.StatusUnauthorized:
			return problem.ErrUnauthorized
		case http.StatusForbidden:
			return problem.ErrForbidden
		}
		return problem.ErrInternal.Wrap(err)
	}
	return problem.Resolve(err)
}
