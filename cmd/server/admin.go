package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/onsale-dev/onsale/internal/auth"
	authmemory "github.com/onsale-dev/onsale/internal/auth/memory"
	authpostgres "github.com/onsale-dev/onsale/internal/auth/postgres"
	"github.com/onsale-dev/onsale/internal/auth/token"
	"github.com/onsale-dev/onsale/internal/payment/simulated"
	"github.com/onsale-dev/onsale/internal/platform/clock"
	"github.com/onsale-dev/onsale/internal/platform/keyset"
	"github.com/onsale-dev/onsale/internal/platform/logging"
	"github.com/onsale-dev/onsale/internal/platform/pgpool"
	"go.opentelemetry.io/otel/metric/noop"
)

const adminUsage = `usage:
  server admin create-user --email E --role organizer|staff|customer [--name N]
        password from ONSALE_ADMIN_PASSWORD or the first line of standard input;
        needs ONSALE_DATABASE_URL (embedded mode keeps accounts in memory: use
        ONSALE_BOOTSTRAP_ORGANIZER / ONSALE_BOOTSTRAP_STAFF there)
  server admin gen-keys [--add-to FILE]
        print a JWK set with a new Ed25519 signing key (appended to FILE's keys,
        for rotation), for ONSALE_JWT_KEYS_FILE or ONSALE_TICKET_KEYS_FILE
  server admin simulate-provider [--addr 127.0.0.1:9090]
        serve the simulated payment provider's HTTP API (for ONSALE_PROVIDER_URL),
        behaving as the ONSALE_SIMULATED_* settings say
`

// runAdmin runs the small operator subcommands.
func runAdmin(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, adminUsage)
		return 2
	}
	var err error
	switch args[0] {
	case "create-user":
		err = createUser(ctx, args[1:], getenv, stdin, stdout, stderr)
	case "gen-keys":
		err = genKeys(args[1:], stdout, stderr)
	case "simulate-provider":
		err = simulateProvider(ctx, args[1:], getenv, stdout, stderr)
	default:
		fmt.Fprint(stderr, adminUsage)
		return 2
	}
	var usage usageError
	switch {
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "onsale admin: %v\n%s", err, adminUsage)
		return 2
	case err != nil:
		fmt.Fprintf(stderr, "onsale admin: %v\n", err)
		return 1
	}
	return 0
}

type usageError struct{ error }

func createUser(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("create-user", flag.ContinueOnError)
	fs.SetOutput(stderr)
	email := fs.String("email", "", "the account's email")
	role := fs.String("role", "", "organizer, staff or customer")
	name := fs.String("name", "", "display name (default: the role)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if *email == "" || *role == "" {
		return usageError{errors.New("--email and --role are required")}
	}
	if !auth.Role(*role).Valid() {
		return usageError{fmt.Errorf("unknown role %q", *role)}
	}
	cfg, err := loadConfig(getenv, "")
	if err != nil {
		return err
	}
	if cfg.DatabaseURL == "" {
		return errors.New("ONSALE_DATABASE_URL is not set: without a database, accounts live in the server's memory; " +
			"use ONSALE_BOOTSTRAP_ORGANIZER or ONSALE_BOOTSTRAP_STAFF instead")
	}
	password := getenv("ONSALE_ADMIN_PASSWORD")
	if password == "" {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read password: %w", err)
		}
		password = strings.TrimRight(line, "\r\n")
	}
	if password == "" {
		return usageError{errors.New("no password: set ONSALE_ADMIN_PASSWORD or pipe it on standard input")}
	}
	if *name == "" {
		*name = strings.ToUpper((*role)[:1]) + (*role)[1:]
	}
	log := logging.New(stderr, cfg.Log)
	pool, err := pgpool.Open(ctx, cfg.DatabaseURL, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := authpostgres.Migrate(ctx, pool, log); err != nil {
		return err
	}
	hasher, err := auth.NewHasher(cfg.Auth.Argon2MemoryKiB, cfg.Auth.Argon2Time, cfg.Auth.Argon2Threads, 1, 1)
	if err != nil {
		return err
	}
	defer hasher.Close()
	keys, err := keysForAdmin()
	if err != nil {
		return err
	}
	// Only CreateUser is used: sessions and tokens are never touched here.
	svc, err := auth.NewService(cfg.Auth, auth.Deps{
		Users: authpostgres.NewUsers(pool), Sessions: authmemory.NewSessions(clock.System{}), Failures: authmemory.NewFailures(clock.System{}),
		Hasher: hasher, Issuer: token.NewIssuer(keys, cfg.Auth.Issuer, cfg.Auth.Audience, clock.System{}),
		Clock: clock.System{}, Log: log, Meter: noop.NewMeterProvider().Meter("admin"),
	})
	if err != nil {
		return err
	}
	u, err := svc.CreateUser(ctx, *email, password, *name, auth.Role(*role))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created %s %s (%s)\n", u.Role, u.Email, u.ID)
	return nil
}

// keysForAdmin returns a throwaway key set: creating a user signs nothing.
func keysForAdmin() (*keyset.Set, error) {
	data, err := keyset.Generate(nil)
	if err != nil {
		return nil, err
	}
	return keyset.Parse(data)
}

func genKeys(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gen-keys", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addTo := fs.String("add-to", "", "an existing JWK set file whose keys are kept (the new key signs from then on)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	var existing []byte
	if *addTo != "" {
		var err error
		if existing, err = os.ReadFile(*addTo); err != nil {
			return err
		}
	}
	data, err := keyset.Generate(existing)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", data)
	return err
}

func simulateProvider(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("simulate-provider", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:9090", "address to serve the provider API on")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	cfg, err := loadConfig(getenv, "")
	if err != nil {
		return err
	}
	p := cfg.Payment
	provider := simulated.New(simulated.Mode{Latency: p.SimLatency, Slow: p.SimSlow, DeclineRate: p.SimDeclineRate,
		ErrorRate: p.SimErrorRate, Outage: p.SimOutage})
	srv := &http.Server{Addr: *addr, Handler: simulated.Handler(provider), ReadHeaderTimeout: 5 * time.Second}
	sigCtx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	fmt.Fprintf(stdout, "simulated payment provider listening on %s\n", *addr)
	select {
	case err := <-errc:
		return err
	case <-sigCtx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}
