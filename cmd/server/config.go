package main

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/onsale-dev/onsale/internal/auth"
	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/payment"
	"github.com/onsale-dev/onsale/internal/platform/config"
	"github.com/onsale-dev/onsale/internal/platform/httpserver"
	"github.com/onsale-dev/onsale/internal/platform/logging"
	"github.com/onsale-dev/onsale/internal/platform/telemetry"
)

// Config is the whole process's configuration: the platform's parts and each module's own.
type Config struct {
	Env             string        `env:"ONSALE_ENV" yaml:"env" default:"development" help:"development or production; production refuses memory adapters"`
	DataDir         string        `env:"ONSALE_DATA_DIR" yaml:"data_dir" default:"./data" help:"where embedded mode keeps its NATS store and generated keys"`
	RedisURL        string        `env:"ONSALE_REDIS_URL" yaml:"redis_url" secret:"true" help:"Redis for holds, sessions and caches, e.g. redis://127.0.0.1:6379/0; empty uses memory"`
	RedisPrefix     string        `env:"ONSALE_REDIS_PREFIX" yaml:"redis_prefix" help:"prefix of every Redis key (to share a Redis between deployments)"`
	DatabaseURL     string        `env:"ONSALE_DATABASE_URL" yaml:"database_url" secret:"true" help:"PostgreSQL, e.g. postgres://onsale@127.0.0.1:5432/onsale; empty uses memory"`
	DBMaxConns      int           `env:"ONSALE_DB_MAX_CONNS" yaml:"db_max_conns" default:"16" help:"PostgreSQL pool size per replica; keep pool size × replicas under max_connections"`
	NATSURL         string        `env:"ONSALE_NATS_URL" yaml:"nats_url" secret:"true" help:"NATS with JetStream, e.g. nats://127.0.0.1:4222; empty runs an embedded server"`
	DrainDelay      time.Duration `env:"ONSALE_DRAIN_DELAY" yaml:"drain_delay" default:"5s" help:"after SIGTERM, how long readiness fails before the server stops accepting"`
	ShutdownTimeout time.Duration `env:"ONSALE_SHUTDOWN_TIMEOUT" yaml:"shutdown_timeout" default:"25s" help:"the whole shutdown, drain delay included, must finish within this"`
	DebugAddr       string        `env:"ONSALE_DEBUG_ADDR" yaml:"debug_addr" help:"internal listener for /metrics and pprof, off the public port (keep it private: 127.0.0.1:6060, or a pod port no Service exposes); empty serves /metrics on the API port and no pprof"`

	AllowSimulatedProvider bool `env:"ONSALE_ALLOW_SIMULATED_PROVIDER" yaml:"allow_simulated_provider" default:"false" help:"let ONSALE_ENV=production run without ONSALE_PROVIDER_URL, on the in-process simulated provider: orders are confirmed and nobody is charged (demos only)"`

	HTTP      httpserver.Config
	Log       logging.Config
	Telemetry telemetry.Config
	Auth      auth.Config
	Inventory inventory.Config
	Payment   payment.Config
}

// Embedded tells whether no external service is configured at all.
func (c *Config) Embedded() bool {
	return c.RedisURL == "" && c.DatabaseURL == "" && c.NATSURL == ""
}

// Validate checks every part; the errors name the variables at fault.
func (c *Config) Validate() error {
	var errs []error
	switch c.Env {
	case "development":
	case "production":
		var missing []string
		for name, v := range map[string]string{"ONSALE_REDIS_URL": c.RedisURL, "ONSALE_DATABASE_URL": c.DatabaseURL, "ONSALE_NATS_URL": c.NATSURL} {
			if v == "" {
				missing = append(missing, name)
			}
		}
		if c.Auth.KeysFile == "" {
			missing = append(missing, "ONSALE_JWT_KEYS_FILE")
		}
		if c.Payment.TicketKeysFile == "" {
			missing = append(missing, "ONSALE_TICKET_KEYS_FILE")
		}
		if len(missing) > 0 {
			slices.Sort(missing)
			errs = append(errs, fmt.Errorf("ONSALE_ENV=production needs %s: without them state stays in this process, "+
				"replicas behind a load balancer would each sell the same tickets, and each would sign tokens the others reject", strings.Join(missing, ", ")))
		}
		if c.Payment.ProviderURL == "" && !c.AllowSimulatedProvider {
			errs = append(errs, errors.New("ONSALE_ENV=production needs ONSALE_PROVIDER_URL: without it the in-process simulated provider "+
				"confirms every order and no money moves; for a demo that means it, set ONSALE_ALLOW_SIMULATED_PROVIDER=true"))
		}
	default:
		errs = append(errs, config.Invalid("ONSALE_ENV", c.Env, "want development or production"))
	}
	if c.DataDir == "" {
		errs = append(errs, config.Invalid("ONSALE_DATA_DIR", "", "want a directory path"))
	}
	if c.DBMaxConns < 2 || c.DBMaxConns > 1000 {
		errs = append(errs, config.Invalid("ONSALE_DB_MAX_CONNS", fmt.Sprint(c.DBMaxConns), "want a number from 2 to 1000 (migrations hold one connection while using another)"))
	}
	if c.DrainDelay < 0 {
		errs = append(errs, config.Invalid("ONSALE_DRAIN_DELAY", c.DrainDelay.String(), "want 0 or a positive duration"))
	}
	if c.ShutdownTimeout <= c.DrainDelay {
		errs = append(errs, config.Invalid("ONSALE_SHUTDOWN_TIMEOUT", c.ShutdownTimeout.String(),
			"want a duration longer than ONSALE_DRAIN_DELAY ("+c.DrainDelay.String()+")"))
	}
	for name, u := range map[string]string{"ONSALE_REDIS_URL": c.RedisURL, "ONSALE_DATABASE_URL": c.DatabaseURL, "ONSALE_NATS_URL": c.NATSURL} {
		if err := checkURL(name, u); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, c.HTTP.Validate(), c.Log.Validate(), c.Telemetry.Validate(), c.Auth.Validate(), c.Inventory.Validate(), c.Payment.Validate())
	return errors.Join(errs...)
}

var schemes = map[string][]string{
	"ONSALE_REDIS_URL":    {"redis", "rediss"},
	"ONSALE_DATABASE_URL": {"postgres", "postgresql"},
	"ONSALE_NATS_URL":     {"nats", "tls"},
}

func checkURL(name, raw string) error {
	if raw == "" {
		return nil
	}
	want := schemes[name]
	items := []string{raw}
	if name == "ONSALE_NATS_URL" { // NATS takes a comma-separated list of servers
		items = strings.Split(raw, ",")
	}
	// The value may hold a password, so it is not repeated; nor is url.Parse's error, which
	// quotes it.
	for _, item := range items {
		item = strings.TrimSpace(item)
		scheme, rest, ok := strings.Cut(item, "://")
		if !ok || rest == "" || !slices.Contains(want, scheme) {
			return config.Invalid(name, "", "want a URL starting with "+strings.Join(want, ":// or ")+"://")
		}
		if _, err := url.Parse(item); err != nil {
			return config.Invalid(name, "", "not a valid URL (a password with @, /, ?, # or % in it must be percent-encoded)")
		}
	}
	return nil
}
