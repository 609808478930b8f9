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
	"slices"
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

// adminCommand is one operator subcommand: server admin NAME [flags].
type adminCommand struct {
	name    string
	flags   string // its flags, for the usage
	summary string // one line, for server --help
	details string // what else to know, for server admin's usage
	run     func(ctx context.Context, args []string, x adminIO) error
}

// adminIO is what a subcommand may use of the process.
type adminIO struct {
	getenv         func(string) string
	stdin          io.Reader
	stdout, stderr io.Writer
}

// adminCommands lists the subcommands, in the order usage shows them.
func adminCommands() []adminCommand {
	return []adminCommand{
		{
			name: "create-user", flags: "--email E --role organizer|staff|customer [--name N]",
			summary: "create an account in the database (password from ONSALE_ADMIN_PASSWORD or stdin)",
			details: `password from ONSALE_ADMIN_PASSWORD or the first line of standard input;
needs ONSALE_DATABASE_URL (embedded mode keeps accounts in memory: use
ONSALE_BOOTSTRAP_ORGANIZER / ONSALE_BOOTSTRAP_STAFF there)`,
			run: func(ctx context.Context, args []string, x adminIO) error {
				return createUser(ctx, args, x.getenv, x.stdin, x.stdout, x.stderr)
			},
		},
		{
			name: "gen-keys", flags: "[--add-to FILE]",
			summary: "print a JWK set with a new Ed25519 signing key (for the key files; --add-to rotates)",
			details: `print a JWK set with a new Ed25519 signing key (appended to FILE's keys,
for rotation), for ONSALE_JWT_KEYS_FILE or ONSALE_TICKET_KEYS_FILE`,
			run: func(_ context.Context, args []string, x adminIO) error { return genKeys(args, x.stdout, x.stderr) },
		},
		{
			name: "simulate-provider", flags: "[--addr 127.0.0.1:9090]",
			summary: "serve the simulated payment provider's HTTP API (for ONSALE_PROVIDER_URL in tests and demos)",
			details: `serve the simulated payment provider's HTTP API (for ONSALE_PROVIDER_URL),
behaving as the ONSALE_SIMULATED_* settings say`,
			run: func(ctx context.Context, args []string, x adminIO) error {
				return simulateProvider(ctx, args, x.getenv, x.stdout, x.stderr)
			},
		},
	}
}

// adminUsage describes every subcommand.
func adminUsage() string {
	var b strings.Builder
	b.WriteString("usage:\n")
	for _, c := range adminCommands() {
		fmt.Fprintf(&b, "  server admin %s %s\n", c.name, c.flags)
		for _, line := range strings.Split(c.details, "\n") {
			fmt.Fprintf(&b, "        %s\n", line)
		}
	}
	return b.String()
}

// runAdmin runs the small operator subcommands.
func runAdmin(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, adminUsage())
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, adminUsage())
		return 0
	}
	i := slices.IndexFunc(adminCommands(), func(c adminCommand) bool { return c.name == args[0] })
	if i < 0 {
		fmt.Fprintf(stderr, "onsale admin: unknown command %q\n%s", args[0], adminUsage())
		return 2
	}
	err := adminCommands()[i].run(ctx, args[1:], adminIO{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr})
	var usage usageError
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0 // the flag package printed the command's flags
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "onsale admin: %v\n%s", err, adminUsage())
		return 2
	case err != nil:
		fmt.Fprintf(stderr, "onsale admin: %v\n", err)
		return 1
	}
	return 0
}

// usageError is a mistake in a subcommand's arguments: the usage follows the message.
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

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
	cfg, err := loadConfig(getenv, "", "")
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
	// A one-off that migrates: the direct connection, when there is one (ONSALE_MIGRATE_DATABASE_URL).
	pool, err := pgpool.Open(ctx, cfg.MigrationURL(), 2)
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
	cfg, err := loadConfig(getenv, "", "")
	if err != nil {
		return err
	}
	p := cfg.Payment
	provider := simulated.New(simulated.Mode{Latency: p.SimLatency, Slow: p.SimSlow, DeclineRate: p.SimDeclineRate,
		ErrorRate: p.SimErrorRate, Outage: p.SimOutage, PendingAmountCents: p.SimPending})
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
