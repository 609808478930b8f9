package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/redis/rueidis"

	"github.com/onsale-dev/onsale/api"
	"github.com/onsale-dev/onsale/internal/payment/simulated"
	"github.com/onsale-dev/onsale/internal/platform/apispec"
	"github.com/onsale-dev/onsale/internal/platform/health"
	"github.com/onsale-dev/onsale/internal/platform/httpserver"
	"github.com/onsale-dev/onsale/internal/platform/lifecycle"
	"github.com/onsale-dev/onsale/internal/platform/natsclient"
	"github.com/onsale-dev/onsale/internal/platform/pgpool"
	"github.com/onsale-dev/onsale/internal/platform/redisclient"
	"github.com/onsale-dev/onsale/internal/platform/telemetry"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// App is the assembled process: the platform, the modules and the adapters chosen for them. It
// is the only place that decides which adapter serves which port.
type App struct {
	cfg    *Config
	log    *slog.Logger
	tel    *telemetry.Telemetry
	health *health.Health
	spec   *apispec.Spec
	http   *httpserver.Server
	reg    *lifecycle.Registry

	redis rueidis.Client   // nil: memory adapters play Redis's role
	pg    *pgxpool.Pool    // nil: memory adapters play PostgreSQL's role
	nats  *natsclient.Conn // external or embedded
	debug *http.Server     // the internal listener (metrics, pprof), when configured

	auth      *authModule
	inventory *inventoryModule
	payment   *paymentModule
}

// NewApp assembles the process without starting anything.
func NewApp(ctx context.Context, cfg *Config, log *slog.Logger) (*App, error) {
	spec, err := apispec.Load(api.Spec)
	if err != nil {
		return nil, err
	}
	tel, err := telemetry.New(ctx, cfg.Telemetry, "onsale", version)
	if err != nil {
		return nil, err
	}
	srv, err := httpserver.New(cfg.HTTP, httpserver.Deps{
		Log: log, Meters: tel.Meters, Tracers: tel.Tracers, Propagator: tel.Propagator, Spec: spec,
	})
	if err != nil {
		return nil, err
	}
	a := &App{
		cfg: cfg, log: log, tel: tel, spec: spec, http: srv,
		health: health.New(500 * time.Millisecond),
		reg:    lifecycle.New(log),
	}
	for _, m := range a.modules() {
		if err := a.reg.Add(m); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// modules lists the parts of the process with their dependencies; the registry starts them in
// dependency order and stops them in reverse.
func (a *App) modules() []lifecycle.Module {
	return []lifecycle.Module{
		{Name: "telemetry", Stop: a.tel.Shutdown},
		{Name: "redis", DependsOn: []string{"telemetry"}, Start: a.startRedis, Stop: a.stopRedis},
		{Name: "postgres", DependsOn: []string{"telemetry"}, Start: a.startPostgres, Stop: a.stopPostgres},
		{Name: "nats", DependsOn: []string{"telemetry"}, Start: a.startNATS, Stop: a.stopNATS},
		{Name: "debug", DependsOn: []string{"payment"}, Start: a.startDebug, Stop: a.stopDebug},
		{Name: "auth", DependsOn: []string{"redis", "postgres"}, Start: a.startAuth, Stop: a.stopAuth},
		{Name: "inventory", DependsOn: []string{"auth", "redis", "postgres"}, Start: a.startInventory},
		{Name: "payment", DependsOn: []string{"auth", "inventory", "nats", "postgres"}, Start: a.startPayment, Stop: a.stopPayment},
		{Name: "http", DependsOn: []string{"auth", "inventory", "payment"}, Start: a.startHTTP, Stop: a.http.Shutdown},
	}
}

func (a *App) startRedis(ctx context.Context) error {
	if a.cfg.RedisURL == "" {
		return nil
	}
	c, err := redisclient.Open(a.cfg.RedisURL)
	if err != nil {
		return err
	}
	a.redis = c
	a.health.Add("redis", redisclient.Check(c))
	return nil
}

func (a *App) stopRedis(context.Context) error {
	if a.redis != nil {
		a.redis.Close()
	}
	return nil
}

func (a *App) startPostgres(ctx context.Context) error {
	if a.cfg.DatabaseURL == "" {
		return nil
	}
	pool, err := pgpool.Open(ctx, a.cfg.DatabaseURL, a.cfg.DBMaxConns)
	if err != nil {
		return err
	}
	a.pg = pool
	a.health.Add("postgres", pgpool.Check(pool))
	return nil
}

func (a *App) stopPostgres(context.Context) error {
	if a.pg != nil {
		a.pg.Close()
	}
	return nil
}

func (a *App) startNATS(ctx context.Context) error {
	var (
		c   *natsclient.Conn
		err error
	)
	if a.cfg.NATSURL != "" {
		c, err = natsclient.Connect(a.cfg.NATSURL, "onsale", a.log)
	} else {
		c, err = natsclient.StartEmbedded(a.cfg.DataDir, "onsale", a.log)
	}
	if err != nil {
		return err
	}
	a.nats = c
	a.health.Add("nats", c.Check)
	return nil
}

func (a *App) stopNATS(ctx context.Context) error {
	if a.nats == nil {
		return nil
	}
	return a.nats.Close(ctx)
}

func (a *App) startDebug(ctx context.Context) error {
	if a.cfg.DebugAddr == "" {
		return nil
	}
	mux := http.NewServeMux()
	// Metrics and profiles tell an outsider a lot (routes, load, goroutine stacks) and profiles
	// cost CPU, so with this listener configured they are served here only.
	mux.Handle("GET /metrics", a.tel.Handler())
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	if a.payment != nil && a.payment.simulated != nil {
		// The in-process simulated provider's ledger and switches, for load runs and drills.
		mux.Handle("/provider/", http.StripPrefix("/provider", simulated.Handler(a.payment.simulated)))
	}
	// Listen here, not in the goroutine: an address that cannot be had fails the start rather
	// than leaving the process without the metrics, pprof and drill endpoints its operator asked
	// for.
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", a.cfg.DebugAddr)
	if err != nil {
		return fmt.Errorf("debug listener (ONSALE_DEBUG_ADDR): %w", err)
	}
	a.debug = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := a.debug.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("debug server", "err", err)
		}
	}()
	a.log.Info("internal listener: /metrics and pprof", "addr", ln.Addr().String())
	return nil
}

func (a *App) stopDebug(ctx context.Context) error {
	if a.debug == nil {
		return nil
	}
	return a.debug.Shutdown(ctx)
}

// startHTTP registers every route and starts listening; it runs last, once everything the routes
// use is up.
func (a *App) startHTTP(ctx context.Context) error {
	specYAML := func(c echo.Context) error {
		return c.Blob(http.StatusOK, "application/yaml", api.Spec)
	}
	docs := func(c echo.Context) error { return c.HTMLBlob(http.StatusOK, api.DocsPage) }
	redoc := func(c echo.Context) error {
		c.Response().Header().Set("Cache-Control", "public, max-age=3600")
		return c.Blob(http.StatusOK, "text/javascript; charset=utf-8", api.RedocScript)
	}
	metrics := echo.WrapHandler(a.tel.Handler())
	if err := a.http.Register(
		httpserver.Route{Method: http.MethodGet, Path: "/livez", Handler: a.health.Livez},
		httpserver.Route{Method: http.MethodGet, Path: "/readyz", Handler: a.health.Readyz},
		httpserver.Route{Method: http.MethodGet, Path: "/openapi.yaml", Handler: specYAML},
		httpserver.Route{Method: http.MethodGet, Path: "/docs", Handler: docs},
		httpserver.Route{Method: http.MethodGet, Path: api.RedocScriptPath, Handler: redoc},
	); err != nil {
		return err
	}
	// /metrics is public only without an internal listener (ONSALE_DEBUG_ADDR), as in
	// development; otherwise it is served there and this port answers 404 for it.
	if a.cfg.DebugAddr == "" {
		if err := a.http.Register(httpserver.Route{Method: http.MethodGet, Path: "/metrics", Handler: metrics, Unvalidated: true}); err != nil {
			return err
		}
	}
	for _, routes := range [][]httpserver.Route{a.auth.handler.Routes(), a.inventory.handler.Routes(), a.payment.handler.Routes()} {
		if err := a.http.Register(routes...); err != nil {
			return err
		}
	}
	return a.http.Start(ctx)
}

// Start starts every part in dependency order.
func (a *App) Start(ctx context.Context) error {
	if a.cfg.Embedded() {
		a.log.Warn("embedded mode: memory adapters and an in-process NATS server; single replica only, " +
			"and state does not survive a restart. Set ONSALE_REDIS_URL, ONSALE_DATABASE_URL and ONSALE_NATS_URL to scale out.")
	}
	return a.reg.Start(ctx)
}

// Stop drains and stops the process: readiness fails first so load balancers stop sending, then
// after the drain delay the server stops accepting and finishes in-flight requests, workers hand
// back their messages, and connections close. All of it within the shutdown timeout.
func (a *App) Stop(ctx context.Context) error {
	a.health.StartDraining()
	a.log.Info("draining", "delay", a.cfg.DrainDelay.String())
	select {
	case <-time.After(a.cfg.DrainDelay):
	case <-ctx.Done():
	}
	if err := a.reg.Stop(ctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// Addr is the address the API listens on.
func (a *App) Addr() string { return a.http.Addr() }
