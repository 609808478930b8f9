// Package app is onsale's composition root: it builds a process from the modules' registrations,
// choosing each port's adapter (memory, Redis, PostgreSQL, NATS, or a client of another process
// when a module runs elsewhere). cmd/server and the test stacks assemble processes through it
// and nothing else wires adapters.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/redis/rueidis"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"

	"github.com/onsale-dev/onsale/api"
	"github.com/onsale-dev/onsale/internal/auth"
	"github.com/onsale-dev/onsale/internal/payment"
	"github.com/onsale-dev/onsale/internal/payment/simulated"
	"github.com/onsale-dev/onsale/internal/platform/apispec"
	"github.com/onsale-dev/onsale/internal/platform/clock"
	"github.com/onsale-dev/onsale/internal/platform/health"
	"github.com/onsale-dev/onsale/internal/platform/httpserver"
	"github.com/onsale-dev/onsale/internal/platform/internalapi"
	"github.com/onsale-dev/onsale/internal/platform/lifecycle"
	"github.com/onsale-dev/onsale/internal/platform/natsclient"
	"github.com/onsale-dev/onsale/internal/platform/pgpool"
	"github.com/onsale-dev/onsale/internal/platform/redisclient"
	"github.com/onsale-dev/onsale/internal/platform/telemetry"
	"github.com/onsale-dev/onsale/web"
)

// Options change how New assembles a process; the zero value is what cmd/server runs. Tests use
// the others.
type Options struct {
	// Version is the build's version, reported by telemetry.
	Version string
	// Clock tells the modules the time (nil: the system clock).
	Clock clock.Clock
	// Meters receives the modules' metrics instead of the process's telemetry.
	Meters metric.MeterProvider
	// Memory is the memory adapters to use when no Redis or PostgreSQL is configured, shared with
	// another process of the same test (nil: new ones).
	Memory *Memory
	// NATS is a connection to use instead of the configured or an embedded server (another
	// process of the same test started it); the process does not close it.
	NATS *natsclient.Conn
	// Provider replaces the payment provider the configuration chooses.
	Provider payment.Provider
	// WrapProcessor wraps the processor the payment worker calls (to observe deliveries).
	WrapProcessor func(PaymentProcessor) PaymentProcessor
	// Hold names runners assembled but not started; StartRunner starts them.
	Hold []string
	// NoServers assembles the modules without the public, internal and debug listeners; Streams
	// then says when long-lived responses must end.
	NoServers bool
	Streams   func() context.Context
}

// tokenChecker is the auth port inventory and payment use, local or remote.
type tokenChecker interface {
	Authenticate(ctx context.Context, header string) (auth.Principal, error)
	AuthenticateTicket(ctx context.Context, ticket string) (auth.Principal, error)
	StillActive(ctx context.Context, p auth.Principal) error
}

// Process is an assembled process: the platform, the modules that run here, clients of those
// that run elsewhere, and the listeners.
type Process struct {
	cfg    *Config
	log    *slog.Logger
	opts   Options
	clock  clock.Clock
	tel    *telemetry.Telemetry
	meters metric.MeterProvider
	prop   propagation.TextMapPropagator
	health *health.Health
	reg    *lifecycle.Registry
	local  map[string]bool
	memory *Memory
	secret string

	public   *httpserver.Server // nil with NoServers
	internal *httpserver.Server // nil without ONSALE_INTERNAL_ADDR
	debug    *http.Server

	// Connections, nil when this process needs none.
	Redis rueidis.Client
	PG    *pgxpool.Pool
	// PGRead is the read replica (ONSALE_DATABASE_READ_URL), nil without one.
	PGRead *pgxpool.Pool
	NATS   *natsclient.Conn

	// The ports modules offer one another: a module here, or a client of one elsewhere.
	authn     tokenChecker
	inventory payment.Inventory

	// The modules that run here; nil when they run elsewhere.
	Auth      *AuthModule
	Inventory *InventoryModule
	Payment   *PaymentModule
	// Webhooks runs with the payment module.
	Webhooks *WebhookModule

	runners map[string]Runner // by name
	held    map[string]bool   // held and not started yet
}

// New assembles a process for cfg (already validated) without starting anything.
func New(ctx context.Context, cfg *Config, log *slog.Logger, opts Options) (*Process, error) {
	local, err := ParseModules(cfg.Modules)
	if err != nil {
		return nil, err
	}
	tel, err := telemetry.New(ctx, cfg.Telemetry, "onsale", opts.Version)
	if err != nil {
		return nil, err
	}
	p := &Process{
		cfg: cfg, log: log, opts: opts, clock: opts.Clock, tel: tel, meters: opts.Meters, prop: tel.Propagator,
		health: health.New(500 * time.Millisecond), reg: lifecycle.New(log), local: local, memory: opts.Memory,
		runners: map[string]Runner{}, held: map[string]bool{},
	}
	if p.clock == nil {
		p.clock = clock.System{}
	}
	if p.meters == nil {
		p.meters = tel.Meters
	}
	if p.memory == nil {
		p.memory = NewMemory(p.clock, cfg.Inventory.HoldRecordKeep)
	}
	for _, name := range opts.Hold {
		p.held[name] = true
	}
	if !opts.NoServers {
		if err := p.newServers(); err != nil {
			return nil, err
		}
	}
	if err := p.plan(); err != nil {
		return nil, err
	}
	return p, nil
}

// newServers builds the public listener and, when configured, the internal one.
func (p *Process) newServers() error {
	spec, err := apispec.Load(api.Spec)
	if err != nil {
		return err
	}
	p.public, err = httpserver.New(p.cfg.HTTP, httpserver.Deps{
		Log: p.log, Meters: p.tel.Meters, Tracers: p.tel.Tracers, Propagator: p.tel.Propagator, Spec: spec,
	})
	if err != nil {
		return err
	}
	if p.cfg.Internal.Addr == "" {
		return nil
	}
	ispec, err := apispec.Load(api.InternalSpec)
	if err != nil {
		return err
	}
	icfg := p.cfg.HTTP
	icfg.Addr = p.cfg.Internal.Addr
	icfg.RateLimitIP = 0 // callers are the deployment's own processes
	p.internal, err = httpserver.New(icfg, httpserver.Deps{
		Log: p.log, Meters: p.tel.Meters, Tracers: p.tel.Tracers, Propagator: p.tel.Propagator, Spec: ispec,
	})
	return err
}

// plan registers the process's parts with the lifecycle registry, in dependency order: the
// connections the modules here need, the modules (here or elsewhere), their runners, and last
// the listeners.
func (p *Process) plan() error {
	parts := []lifecycle.Module{{Name: "telemetry", Stop: p.tel.Shutdown}}
	connections := []string{"telemetry"}
	anyLocal := len(p.local) > 0
	if p.cfg.RedisURL != "" && anyLocal {
		parts = append(parts, lifecycle.Module{Name: "redis", DependsOn: []string{"telemetry"}, Start: p.startRedis, Stop: p.stopRedis})
		connections = append(connections, "redis")
	}
	if p.cfg.DatabaseURL != "" && anyLocal {
		parts = append(parts, lifecycle.Module{Name: "postgres", DependsOn: []string{"telemetry"}, Start: p.startPostgres, Stop: p.stopPostgres})
		connections = append(connections, "postgres")
	}
	if p.local[Payment] {
		parts = append(parts, lifecycle.Module{Name: "nats", DependsOn: []string{"telemetry"}, Start: p.startNATS, Stop: p.stopNATS})
		connections = append(connections, "nats")
	}
	if p.cfg.Internal.SecretFile != "" {
		parts = append(parts, lifecycle.Module{Name: "internal-secret", Start: p.loadSecret})
		connections = append(connections, "internal-secret")
	}
	var modules, runnerNames []string
	for _, r := range Registrations() {
		where := "absent"
		switch {
		case p.local[r.Name]:
			where = "local"
		case p.cfg.Internal.URL(r.Name) != "":
			where = "remote"
		}
		if where == "absent" {
			continue
		}
		deps := slices.Clone(connections)
		for _, d := range r.DependsOn {
			if slices.Contains(modules, d) {
				deps = append(deps, d)
			}
		}
		r := r
		m := lifecycle.Module{Name: r.Name, DependsOn: deps}
		if where == "local" {
			m.Start = func(ctx context.Context) error {
				runners, err := r.Local(p, ctx)
				for _, run := range runners {
					p.runners[run.Name] = run
				}
				return err
			}
			if r.Close != nil {
				m.Stop = func(ctx context.Context) error { return r.Close(p, ctx) }
			}
		} else {
			url := p.cfg.Internal.URL(r.Name)
			m.Start = func(ctx context.Context) error { return r.Remote(p, ctx, url) }
		}
		parts = append(parts, m)
		modules = append(modules, r.Name)
	}
	// Runners start once every module is assembled; each is its own part so a failure stops the
	// ones already running.
	// The webhook runners come first so they stop last: the payment worker may still announce
	// events while it finishes.
	for _, name := range []string{"webhook.fanout", "webhook.sender", "payment.bus", "payment.recheck", "payment.relay", "payment.cancellations", "payment.worker", "auth.keys", "inventory.admission"} {
		name := name
		parts = append(parts, lifecycle.Module{Name: name, DependsOn: modules,
			Start: func(ctx context.Context) error { return p.startRunner(ctx, name, false) },
			Stop:  func(ctx context.Context) error { return p.stopRunner(ctx, name) }})
		runnerNames = append(runnerNames, name)
	}
	if p.public != nil {
		after := append(slices.Clone(modules), runnerNames...)
		parts = append(parts,
			lifecycle.Module{Name: "debug", DependsOn: after, Start: p.startDebug, Stop: p.stopDebug},
			lifecycle.Module{Name: "internal", DependsOn: after, Start: p.startInternal, Stop: p.stopInternal},
			lifecycle.Module{Name: "http", DependsOn: append(after, "internal"), Start: p.startHTTP, Stop: p.public.Shutdown},
		)
	}
	for _, m := range parts {
		if err := p.reg.Add(m); err != nil {
			return err
		}
	}
	return nil
}

// startRunner starts a runner a module returned, unless it is held (or force).
func (p *Process) startRunner(ctx context.Context, name string, force bool) error {
	r, ok := p.runners[name]
	if !ok {
		return nil
	}
	if p.held[name] && !force {
		return nil
	}
	delete(p.held, name)
	if err := r.Start(ctx); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	return nil
}

func (p *Process) stopRunner(ctx context.Context, name string) error {
	r, ok := p.runners[name]
	if !ok || p.held[name] || r.Stop == nil {
		return nil
	}
	delete(p.runners, name) // stop once
	return r.Stop(ctx)
}

// StartRunner starts a runner that Options.Hold kept back, once.
func (p *Process) StartRunner(ctx context.Context, name string) error {
	if !p.held[name] {
		return nil
	}
	return p.startRunner(ctx, name, true)
}

// StopRunner stops a running runner now, ahead of the process (a test killing a replica's relay).
func (p *Process) StopRunner(ctx context.Context, name string) error { return p.stopRunner(ctx, name) }

func (p *Process) loadSecret(context.Context) error {
	s, err := internalapi.LoadSecret(p.cfg.Internal.SecretFile)
	if err != nil {
		return fmt.Errorf("ONSALE_INTERNAL_SECRET_FILE: %w", err)
	}
	p.secret = s
	return nil
}

func (p *Process) startRedis(ctx context.Context) error {
	c, err := redisclient.Open(p.cfg.RedisURL)
	if err != nil {
		return err
	}
	p.Redis = c
	p.health.Add("redis", redisclient.Check(c))
	return nil
}

func (p *Process) stopRedis(context.Context) error {
	if p.Redis != nil {
		p.Redis.Close()
	}
	return nil
}

func (p *Process) startPostgres(ctx context.Context) error {
	pool, err := pgpool.OpenWith(ctx, p.cfg.DatabaseURL, pgpool.Options{
		MaxConns: p.cfg.DBMaxConns, MinIdleConns: 2, QueryExecMode: p.cfg.DBQueryExecMode})
	if err != nil {
		return err
	}
	p.PG = pool
	p.health.Add("postgres", pgpool.Check(pool))
	if p.cfg.DatabaseReadURL != "" {
		// Catalogue reloads are cache misses: a quarter of the pool is plenty.
		read, err := pgpool.OpenWith(ctx, p.cfg.DatabaseReadURL, pgpool.Options{
			MaxConns: max(2, p.cfg.DBMaxConns/4), MinIdleConns: 1, QueryExecMode: p.cfg.DBQueryExecMode})
		if err != nil {
			pool.Close()
			return fmt.Errorf("read replica (ONSALE_DATABASE_READ_URL): %w", err)
		}
		p.PGRead = read
		p.health.Add("postgres read replica", pgpool.Check(read))
	}
	return nil
}

func (p *Process) stopPostgres(context.Context) error {
	if p.PGRead != nil {
		p.PGRead.Close()
	}
	if p.PG != nil {
		p.PG.Close()
	}
	return nil
}

// migrate runs a module's migrations. With ONSALE_MIGRATE_DATABASE_URL they run on a pool of
// their own, direct to PostgreSQL, open only while they run: the advisory lock that makes
// replicas take turns is a session's, which a PgBouncer in transaction pooling does not keep.
func (p *Process) migrate(ctx context.Context, run func(context.Context, *pgxpool.Pool, *slog.Logger) error) error {
	if p.cfg.MigrateDatabaseURL == "" || p.cfg.MigrateDatabaseURL == p.cfg.DatabaseURL {
		return run(ctx, p.PG, p.log)
	}
	// Two connections: one holds the lock while goose works on the other. None is kept idle,
	// so replicas waiting for the lock hold one connection each.
	pool, err := pgpool.OpenWith(ctx, p.cfg.MigrateDatabaseURL, pgpool.Options{MaxConns: 2})
	if err != nil {
		return fmt.Errorf("migrations (ONSALE_MIGRATE_DATABASE_URL): %w", err)
	}
	defer pool.Close()
	return run(ctx, pool, p.log)
}

func (p *Process) startNATS(ctx context.Context) error {
	if p.opts.NATS != nil {
		p.NATS = p.opts.NATS
		p.health.Add("nats", p.NATS.Check)
		return nil
	}
	var (
		c   *natsclient.Conn
		err error
	)
	if p.cfg.NATSURL != "" {
		c, err = natsclient.Connect(p.cfg.NATSURL, "onsale", p.log)
	} else {
		c, err = natsclient.StartEmbedded(p.cfg.DataDir, "onsale", p.log)
	}
	if err != nil {
		return err
	}
	p.NATS = c
	p.health.Add("nats", c.Check)
	return nil
}

func (p *Process) stopNATS(ctx context.Context) error {
	if p.NATS == nil || p.opts.NATS != nil {
		return nil
	}
	return p.NATS.Close(ctx)
}

func (p *Process) startDebug(ctx context.Context) error {
	if p.cfg.DebugAddr == "" {
		return nil
	}
	mux := http.NewServeMux()
	// Metrics and profiles tell an outsider a lot (routes, load, goroutine stacks) and profiles
	// cost CPU, so with this listener configured they are served here only.
	mux.Handle("GET /metrics", p.tel.Handler())
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	if p.Payment != nil && p.Payment.Simulated != nil {
		// The in-process simulated provider's ledger and switches, for load runs and drills.
		mux.Handle("/provider/", http.StripPrefix("/provider", simulated.Handler(p.Payment.Simulated)))
	}
	// Listen here, not in the goroutine: an address that cannot be had fails the start rather
	// than leaving the process without the metrics, pprof and drill endpoints its operator asked
	// for.
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", p.cfg.DebugAddr)
	if err != nil {
		return fmt.Errorf("debug listener (ONSALE_DEBUG_ADDR): %w", err)
	}
	p.debug = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := p.debug.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("debug server", "err", err)
		}
	}()
	p.log.Info("debug listener: /metrics and pprof", "addr", ln.Addr().String())
	return nil
}

func (p *Process) stopDebug(ctx context.Context) error {
	if p.debug == nil {
		return nil
	}
	return p.debug.Shutdown(ctx)
}

// startInternal serves the internal API of the modules that run here, to the deployment's other
// processes.
func (p *Process) startInternal(ctx context.Context) error {
	if p.internal == nil {
		return nil
	}
	livez := func(c echo.Context) error {
		var here []string
		for _, m := range ModuleNames() {
			if p.local[m] {
				here = append(here, m)
			}
		}
		return c.JSON(http.StatusOK, struct {
			Modules []string `json:"modules"`
		}{here})
	}
	routes := []httpserver.Route{{Method: http.MethodGet, Path: "/internal/v1/livez", Handler: livez}}
	if p.Auth != nil {
		routes = append(routes, p.Auth.Handler.InternalRoutes()...)
	}
	if p.Inventory != nil {
		routes = append(routes, p.Inventory.Handler.InternalRoutes()...)
	}
	guard := []echo.MiddlewareFunc{internalapi.RequireSecret(p.secret), internalapi.Deadline}
	for i := range routes {
		routes[i].Middleware = append(slices.Clone(guard), routes[i].Middleware...)
	}
	if err := p.internal.Register(routes...); err != nil {
		return err
	}
	return p.internal.Start(ctx)
}

func (p *Process) stopInternal(ctx context.Context) error {
	if p.internal == nil {
		return nil
	}
	return p.internal.Shutdown(ctx)
}

// startHTTP registers the public routes of the modules that run here and starts listening; it
// runs last, once everything the routes use is up.
func (p *Process) startHTTP(ctx context.Context) error {
	specYAML := func(c echo.Context) error {
		return c.Blob(http.StatusOK, "application/yaml", api.Spec)
	}
	docs := func(c echo.Context) error { return c.HTMLBlob(http.StatusOK, api.DocsPage) }
	redoc := func(c echo.Context) error {
		c.Response().Header().Set("Cache-Control", "public, max-age=3600")
		return c.Blob(http.StatusOK, "text/javascript; charset=utf-8", api.RedocScript)
	}
	if err := p.public.Register(
		httpserver.Route{Method: http.MethodGet, Path: "/livez", Handler: p.health.Livez},
		httpserver.Route{Method: http.MethodGet, Path: "/readyz", Handler: p.health.Readyz},
		httpserver.Route{Method: http.MethodGet, Path: "/openapi.yaml", Handler: specYAML},
		httpserver.Route{Method: http.MethodGet, Path: "/docs", Handler: docs},
		httpserver.Route{Method: http.MethodGet, Path: api.RedocScriptPath, Handler: redoc},
	); err != nil {
		return err
	}
	if err := p.public.Register(web.Routes()...); err != nil {
		return err
	}
	// /metrics is public only without a debug listener (ONSALE_DEBUG_ADDR), as in development;
	// otherwise it is served there and this port answers 404 for it.
	if p.cfg.DebugAddr == "" {
		metrics := echo.WrapHandler(p.tel.Handler())
		if err := p.public.Register(httpserver.Route{Method: http.MethodGet, Path: "/metrics", Handler: metrics, Unvalidated: true}); err != nil {
			return err
		}
	}
	var routes []httpserver.Route
	if p.Auth != nil {
		routes = append(routes, p.Auth.Handler.Routes()...)
	}
	if p.Inventory != nil {
		routes = append(routes, p.Inventory.Handler.Routes()...)
	}
	if p.Payment != nil {
		routes = append(routes, p.Payment.Handler.Routes()...)
	}
	if p.Webhooks != nil {
		routes = append(routes, p.Webhooks.Handler.Routes()...)
	}
	if err := p.public.Register(routes...); err != nil {
		return err
	}
	return p.public.Start(ctx)
}

// streams is when long-lived responses (event streams) must end: when the public listener shuts
// down, or as the test that assembled the process says.
func (p *Process) streams() context.Context {
	if p.public != nil {
		return p.public.Streams()
	}
	if p.opts.Streams != nil {
		return p.opts.Streams()
	}
	return context.Background()
}

// Start starts every part in dependency order; a part that fails stops the ones already started.
func (p *Process) Start(ctx context.Context) error {
	if p.cfg.Embedded() && len(p.local) == len(ModuleNames()) {
		p.log.Warn("embedded mode: memory adapters and an in-process NATS server; single replica only, " +
			"and state does not survive a restart. Set ONSALE_REDIS_URL, ONSALE_DATABASE_URL and ONSALE_NATS_URL to scale out.")
	}
	return p.reg.Start(ctx)
}

// Stop drains and stops the process: readiness fails first so load balancers stop sending, then
// after the drain delay the server stops accepting and finishes in-flight requests, workers hand
// back their messages, and connections close. All of it within ctx.
func (p *Process) Stop(ctx context.Context) error {
	p.health.StartDraining()
	if p.public != nil {
		p.log.Info("draining", "delay", p.cfg.DrainDelay.String())
		select {
		case <-time.After(p.cfg.DrainDelay):
		case <-ctx.Done():
		}
	}
	if err := p.reg.Stop(ctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// Addr is the address the public API listens on.
func (p *Process) Addr() string {
	if p.public == nil {
		return ""
	}
	return p.public.Addr()
}

// InternalAddr is the address the internal API listens on, if it does.
func (p *Process) InternalAddr() string {
	if p.internal == nil {
		return ""
	}
	return p.internal.Addr()
}

// Health is the process's readiness checks.
func (p *Process) Health() *health.Health { return p.health }

// Telemetry is the process's metrics and traces.
func (p *Process) Telemetry() *telemetry.Telemetry { return p.tel }

// Public is the public listener (nil with NoServers).
func (p *Process) Public() *httpserver.Server { return p.public }

// Local tells whether the module runs in this process.
func (p *Process) Local(module string) bool { return p.local[module] }
