// Command server runs onsale: the whole ticketing API in one process. With nothing configured it
// runs embedded (memory adapters, an in-process NATS server); with ONSALE_REDIS_URL,
// ONSALE_DATABASE_URL and ONSALE_NATS_URL it uses the real services and can run as many
// identical replicas behind a load balancer.
//
// Usage:
//
//	server [--config FILE] [--print-config]
//	server admin create-user --email E --role organizer|staff|customer [--name N]
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
	"syscall"

	"github.com/onsale-dev/onsale/internal/platform/config"
	"github.com/onsale-dev/onsale/internal/platform/logging"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr))
}

// run is main without the process globals, so tests can drive it.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "admin" {
		return runAdmin(ctx, args[1:], getenv, stdin, stdout, stderr)
	}
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "", "YAML file with settings (the environment overrides it)")
	printConfig := fs.Bool("print-config", false, "print the effective configuration, secrets masked, and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := loadConfig(getenv, *configFile)
	if err != nil {
		fmt.Fprintf(stderr, "onsale: configuration error:\n%v\n", err)
		return 2
	}
	if *printConfig {
		if err := config.Print(stdout, cfg); err != nil {
			return 1
		}
		return 0
	}
	log := logging.New(stdout, cfg.Log)
	if err := serve(ctx, cfg, log); err != nil {
		log.Error("onsale stopped with an error", "err", err)
		return 1
	}
	log.Info("onsale stopped cleanly")
	return 0
}

func loadConfig(getenv func(string) string, file string) (*Config, error) {
	cfg := &Config{}
	if err := config.Load(cfg, getenv, file); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// serve runs the app until SIGTERM or SIGINT, then shuts it down gracefully.
func serve(ctx context.Context, cfg *Config, log *slog.Logger) error {
	// Password hashes run on low-priority threads, each holding a Go P while it computes. One
	// extra P per hash worker keeps a login storm from leaving requests without a P to run on;
	// the kernel, seeing the hash threads' lower priority, gives the CPUs to requests first.
	if cfg.Auth.HashWorkers == 0 {
		cfg.Auth.HashWorkers = runtime.GOMAXPROCS(0)
	}
	runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + cfg.Auth.HashWorkers)
	// The live heap is small and short-lived per request; collecting at 5× instead of 2× the live
	// heap cut GC's share of a hold from ~15% to ~5% (+13% holds/s). GOGC still overrides it, and
	// GOMEMLIMIT (set it in containers) keeps the heap under the memory limit either way.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}

	app, err := NewApp(ctx, cfg, log)
	if err != nil {
		return err
	}
	sigCtx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := app.Start(sigCtx); err != nil {
		return err
	}
	log.Info("onsale started", "addr", app.Addr(), "version", version)
	<-sigCtx.Done()
	stop() // a second signal now kills the process the default way
	log.Info("shutdown requested")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if err := app.Stop(shutdownCtx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("shutdown did not finish within ONSALE_SHUTDOWN_TIMEOUT (%s): %w", cfg.ShutdownTimeout, err)
		}
		return err
	}
	return nil
}
