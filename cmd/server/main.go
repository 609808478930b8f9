// Command server runs onsale: the whole ticketing API in one process, or some of its modules
// (--modules) with the others reached in their own processes. With nothing configured it runs
// embedded (memory adapters, an in-process NATS server); with ONSALE_REDIS_URL,
// ONSALE_DATABASE_URL and ONSALE_NATS_URL it uses the real services and can run as many
// identical replicas behind a load balancer.
//
// Usage:
//
//	server [--config FILE] [--modules all|auth,inventory,payment] [--list-modules] [--print-config] [--version]
//	server admin create-user --email E --role organizer|staff|customer [--name N]
//	server admin gen-keys [--add-to FILE]
//	server admin simulate-provider [--addr 127.0.0.1:9090]
//
// server --help lists the flags and the admin commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/onsale-dev/onsale/internal/app"
	"github.com/onsale-dev/onsale/internal/platform/config"
	"github.com/onsale-dev/onsale/internal/platform/logging"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Environ(), os.Stdin, os.Stdout, os.Stderr))
}

// run is main without the process globals, so tests can drive it. environ is the environment as
// os.Environ gives it ("NAME=value" items): the settings are read from it, and an ONSALE_*
// variable in it that is no setting is reported.
func run(ctx context.Context, args, environ []string, stdin io.Reader, stdout, stderr io.Writer) int {
	getenv := envLookup(environ)
	if len(args) > 0 && args[0] == "admin" {
		return runAdmin(ctx, args[1:], getenv, stdin, stdout, stderr)
	}
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // printed below: to stdout for --help, to stderr after a mistake
	configFile := fs.String("config", "", "YAML file with settings (the environment overrides it)")
	printConfig := fs.Bool("print-config", false, "print the effective configuration, secrets masked, and exit")
	modules := fs.String("modules", "", "modules this process runs: all, or a comma list of auth, inventory, payment (default: ONSALE_MODULES, else all)")
	listModules := fs.Bool("list-modules", false, "print each module, what it depends on and whether it runs here or elsewhere with these settings, and exit")
	showVersion := fs.Bool("version", false, "print the version and the commit it was built from, and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout, fs)
			return 0
		}
		usage(stderr, fs)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "onsale: unexpected argument %q\n", fs.Arg(0))
		usage(stderr, fs)
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, versionLine())
		return 0
	}
	unknown := unknownSettings(environ)
	cfg, err := loadConfig(getenv, *configFile, *modules)
	if err == nil && cfg.Env == "production" && len(unknown) > 0 {
		err = errors.New("ONSALE_ENV=production refuses to start with unknown settings: a misspelt setting would silently keep its default")
	}
	if err != nil {
		fmt.Fprintf(stderr, "onsale: configuration error:\n%v\n", err)
		for _, u := range unknown {
			fmt.Fprintln(stderr, u)
		}
		return 2
	}
	if *listModules {
		if err := app.ListModules(stdout, cfg); err != nil {
			return 1
		}
		return 0
	}
	if *printConfig {
		for _, u := range unknown {
			fmt.Fprintf(stderr, "onsale: warning: %s\n", u)
		}
		if err := config.Print(stdout, cfg); err != nil {
			return 1
		}
		return 0
	}
	log := logging.New(stdout, cfg.Log)
	for _, u := range unknown {
		log.Warn(u.String())
	}
	if err := serve(ctx, cfg, log); err != nil {
		// Errors from connecting to Redis, PostgreSQL, NATS or the collector already hide their
		// URLs' credentials; this is the last line of defence for anything quoting one.
		for _, u := range []string{cfg.RedisURL, cfg.DatabaseURL, cfg.NATSURL, cfg.Payment.ProviderURL, cfg.Telemetry.OTLPEndpoint} {
			err = config.RedactError(err, u)
		}
		log.Error("onsale stopped with an error", "err", err)
		return 1
	}
	log.Info("onsale stopped cleanly")
	return 0
}

// envLookup returns a getenv over environ; the first of repeated names wins, as with os.Getenv.
func envLookup(environ []string) func(string) string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		if _, seen := m[k]; !seen {
			m[k] = v
		}
	}
	return func(name string) string { return m[name] }
}

// unknownSettings lists the ONSALE_* variables of environ that are no setting of the server.
// Skipped: the test suites' own ONSALE_TEST_* variables, admin create-user's
// ONSALE_ADMIN_PASSWORD, and the variables Kubernetes injects for a Service named onsale
// (ONSALE_SERVICE_HOST, ONSALE_PORT_80_TCP... unless the pod sets enableServiceLinks: false).
func unknownSettings(environ []string) []config.Unknown {
	return config.UnknownEnv(&app.Config{}, environ, "ONSALE_", func(name string) bool {
		return strings.HasPrefix(name, "ONSALE_TEST_") || name == "ONSALE_ADMIN_PASSWORD" ||
			name == "ONSALE_PORT" || strings.HasPrefix(name, "ONSALE_PORT_") ||
			name == "ONSALE_SERVICE_HOST" || name == "ONSALE_SERVICE_PORT" || strings.HasPrefix(name, "ONSALE_SERVICE_PORT_")
	})
}

func usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, `onsale: the ticketing API in one binary.

usage:
  server [flags]                run the server
  server admin COMMAND [flags]  an operator command (below)

flags:
`)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fmt.Fprint(w, "\nadmin commands (server admin COMMAND --help for their flags):\n")
	for _, c := range adminCommands() {
		fmt.Fprintf(w, "  admin %-18s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Settings are ONSALE_* environment variables (or the keys of the --config file); --print-config
lists them all with their values, and README.md describes each.
`)
}

// versionLine is what --version prints: the version set at build time (-ldflags
// "-X main.version=...", else the module version when the build has one) and the commit of the
// build's version control information, "-dirty" when the tree had changes.
func versionLine() string { return "onsale " + buildVersion() }

// buildVersion is the version and commit without the program's name.
func buildVersion() string {
	bi, _ := debug.ReadBuildInfo()
	return describeBuild(version, bi)
}

// describeBuild renders a version and a build's commit, such as "1.2.0 (commit 3f2a9c1e0b7d,
// go1.26.8)".
func describeBuild(v string, bi *debug.BuildInfo) string {
	if bi == nil {
		return v
	}
	if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	var parts []string
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if modified == "true" {
			rev += "-dirty"
		}
		parts = append(parts, "commit "+rev)
	}
	if bi.GoVersion != "" {
		parts = append(parts, bi.GoVersion)
	}
	if len(parts) == 0 {
		return v
	}
	return v + " (" + strings.Join(parts, ", ") + ")"
}

// loadConfig reads the settings; modules, when not empty, overrides ONSALE_MODULES.
func loadConfig(getenv func(string) string, file, modules string) (*app.Config, error) {
	cfg := &app.Config{}
	if err := config.Load(cfg, getenv, file); err != nil {
		return nil, err
	}
	if modules != "" {
		cfg.Modules = modules
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// serve runs the app until SIGTERM or SIGINT, then shuts it down gracefully.
func serve(ctx context.Context, cfg *app.Config, log *slog.Logger) error {
	// GOMAXPROCS is left as the runtime chose it: the container's CPU limit (or GOMAXPROCS from
	// the environment), and the runtime keeps following the limit if it changes. Raising it
	// would let the process run more threads at once than the CPUs it is given, and the CPU
	// quota would then throttle every request. The password hash pool shares these CPUs; it is
	// sized to leave requests some (see auth.NewHasher).

	// The live heap is small and short-lived per request; collecting at 5× instead of 2× the live
	// heap cut GC's share of a hold from ~15% to ~5% (+13% holds/s). GOGC still overrides it, and
	// GOMEMLIMIT (set it in containers) keeps the heap under the memory limit either way.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}

	proc, err := app.New(ctx, cfg, log, app.Options{Version: buildVersion()})
	if err != nil {
		return err
	}
	sigCtx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := proc.Start(sigCtx); err != nil {
		return err
	}
	log.Info("onsale started", "addr", proc.Addr(), "internal_addr", proc.InternalAddr(), "modules", placement(cfg),
		"version", buildVersion(), "gomaxprocs", runtime.GOMAXPROCS(0))
	<-sigCtx.Done()
	stop() // a second signal now kills the process the default way
	log.Info("shutdown requested")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if err := proc.Stop(shutdownCtx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("shutdown did not finish within ONSALE_SHUTDOWN_TIMEOUT (%s): %w", cfg.ShutdownTimeout, err)
		}
		return err
	}
	return nil
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// placement renders where each module runs, for the start's log line.
func placement(cfg *app.Config) string {
	where := app.Placement(cfg)
	parts := make([]string, 0, len(where))
	for _, m := range app.ModuleNames() {
		parts = append(parts, m+"="+where[m])
	}
	return strings.Join(parts, " ")
}
