package app

import (
	"errors"
	"fmt"
	"net"
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
	"github.com/onsale-dev/onsale/internal/platform/pgpool"
	"github.com/onsale-dev/onsale/internal/platform/redisclient"
	"github.com/onsale-dev/onsale/internal/platform/telemetry"
	"github.com/onsale-dev/onsale/internal/webhook"
)

// Config is the whole process's configuration: the platform's parts, which modules run here and
// where the others are, and each module's own section.
type Config struct {
	Modules     string `env:"ONSALE_MODULES" yaml:"modules" default:"all" help:"modules this process runs: all, or a comma list of auth, inventory and payment (the --modules flag overrides it)"`
	Env         string `env:"ONSALE_ENV" yaml:"env" default:"development" help:"development or production; production refuses memory adapters"`
	DataDir     string `env:"ONSALE_DATA_DIR" yaml:"data_dir" default:"./data" help:"where embedded mode keeps its NATS store and generated keys"`
	RedisURL    string `env:"ONSALE_REDIS_URL" yaml:"redis_url" secret:"true" help:"Redis for holds, sessions and caches, e.g. redis://127.0.0.1:6379/0, or a Redis Cluster by seed addresses, redis+cluster://host:7000,host:7001,host:7002; empty uses memory"`
	RedisPrefix string `env:"ONSALE_REDIS_PREFIX" yaml:"redis_prefix" help:"prefix of every Redis key (to share a Redis between deployments)"`
	DatabaseURL string `env:"ONSALE_DATABASE_URL" yaml:"database_url" secret:"true" help:"PostgreSQL, e.g. postgres://onsale@127.0.0.1:5432/onsale; empty uses memory"`
	// MigrateDatabaseURL and DBQueryExecMode are what PostgreSQL behind a transaction-pooling
	// PgBouncer needs (docs/operations.md); DatabaseReadURL is a read replica for catalogue reads.
	MigrateDatabaseURL string        `env:"ONSALE_MIGRATE_DATABASE_URL" yaml:"migrate_database_url" secret:"true" help:"direct PostgreSQL connection for schema migrations, whose advisory lock needs a session (set it when ONSALE_DATABASE_URL is a PgBouncer in transaction pooling); empty: ONSALE_DATABASE_URL"`
	DatabaseReadURL    string        `env:"ONSALE_DATABASE_READ_URL" yaml:"database_read_url" secret:"true" help:"optional PostgreSQL read replica for catalogue reloads and event listings (never for what could show more tickets than exist); empty: ONSALE_DATABASE_URL"`
	DBQueryExecMode    string        `env:"ONSALE_DB_QUERY_EXEC_MODE" yaml:"db_query_exec_mode" default:"cache_statement" help:"how pgx sends queries: cache_statement (named prepared statements, direct connections), cache_describe (one round trip, no named statements: for PgBouncer in transaction pooling before 1.21), exec or simple_protocol"`
	DBMaxConns         int           `env:"ONSALE_DB_MAX_CONNS" yaml:"db_max_conns" default:"16" help:"PostgreSQL pool size per replica; keep pool size × replicas under max_connections"`
	NATSURL            string        `env:"ONSALE_NATS_URL" yaml:"nats_url" secret:"true" help:"NATS with JetStream, e.g. nats://127.0.0.1:4222; empty runs an embedded server"`
	DrainDelay         time.Duration `env:"ONSALE_DRAIN_DELAY" yaml:"drain_delay" default:"5s" help:"after SIGTERM, how long readiness fails before the server stops accepting"`
	ShutdownTimeout    time.Duration `env:"ONSALE_SHUTDOWN_TIMEOUT" yaml:"shutdown_timeout" default:"25s" help:"the whole shutdown, drain delay included, must finish within this"`
	DebugAddr          string        `env:"ONSALE_DEBUG_ADDR" yaml:"debug_addr" help:"internal listener for /metrics and pprof, off the public port (keep it private: 127.0.0.1:6060, or a pod port no Service exposes); empty serves /metrics on the API port and no pprof"`

	AllowSimulatedProvider bool `env:"ONSALE_ALLOW_SIMULATED_PROVIDER" yaml:"allow_simulated_provider" default:"false" help:"let ONSALE_ENV=production run without ONSALE_PROVIDER_URL, on the in-process simulated provider: orders are confirmed and nobody is charged (demos only)"`

	Internal  InternalConfig
	HTTP      httpserver.Config
	Log       logging.Config
	Telemetry telemetry.Config
	Auth      auth.Config
	Inventory inventory.Config
	Payment   payment.Config
	Webhook   webhook.Config
}

// InternalConfig says how this process and the others reach one another when modules run apart.
type InternalConfig struct {
	Addr         string        `env:"ONSALE_INTERNAL_ADDR" yaml:"internal_addr" help:"listener of the internal API, where other processes call the modules this one runs (keep it off the public network, e.g. a pod port no Service exposes publicly); empty: none"`
	SecretFile   string        `env:"ONSALE_INTERNAL_SECRET_FILE" yaml:"internal_secret_file" help:"file holding the secret every process of the deployment presents on the internal API (32+ characters, e.g. openssl rand -hex 32); needed with ONSALE_INTERNAL_ADDR or any ONSALE_*_URL"`
	Timeout      time.Duration `env:"ONSALE_INTERNAL_TIMEOUT" yaml:"internal_timeout" default:"5s" help:"longest a call to another process may take when the request behind it has no sooner deadline"`
	AuthURL      string        `env:"ONSALE_AUTH_URL" yaml:"auth_url" help:"internal API of the auth module when this process does not run it, e.g. http://onsale-auth:9090 (a load-balanced address)"`
	InventoryURL string        `env:"ONSALE_INVENTORY_URL" yaml:"inventory_url" help:"internal API of the inventory module when this process does not run it"`
	PaymentURL   string        `env:"ONSALE_PAYMENT_URL" yaml:"payment_url" help:"internal API of the payment module when this process does not run it (nothing calls payment today; /readyz and --list-modules show it)"`
}

// URL is where the named module's internal API is, or "" when none is configured.
func (c InternalConfig) URL(module string) string {
	switch module {
	case Auth:
		return c.AuthURL
	case Inventory:
		return c.InventoryURL
	case Payment:
		return c.PaymentURL
	}
	return ""
}

// Embedded tells whether no external service is configured at all.
func (c *Config) Embedded() bool {
	return c.RedisURL == "" && c.DatabaseURL == "" && c.NATSURL == ""
}

// MigrationURL is where schema migrations connect: ONSALE_MIGRATE_DATABASE_URL, else
// ONSALE_DATABASE_URL.
func (c *Config) MigrationURL() string {
	if c.MigrateDatabaseURL != "" {
		return c.MigrateDatabaseURL
	}
	return c.DatabaseURL
}

// Validate checks every part; the errors name the variables at fault.
func (c *Config) Validate() error {
	var errs []error
	local, err := ParseModules(c.Modules)
	if err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.checkPlacement(local))
	switch c.Env {
	case "development":
	case "production":
		// What each module running here keeps outside the process; a module elsewhere needs
		// nothing of it here.
		var missing []string
		need := func(ok bool, name string) {
			if !ok && !slices.Contains(missing, name) {
				missing = append(missing, name)
			}
		}
		need(c.DatabaseURL != "", "ONSALE_DATABASE_URL")
		if local[Auth] || local[Inventory] {
			need(c.RedisURL != "", "ONSALE_REDIS_URL")
		}
		if local[Auth] {
			need(c.Auth.KeysFile != "", "ONSALE_JWT_KEYS_FILE")
		}
		if local[Payment] {
			need(c.NATSURL != "", "ONSALE_NATS_URL")
			need(c.Payment.TicketKeysFile != "", "ONSALE_TICKET_KEYS_FILE")
		}
		if len(missing) > 0 {
			slices.Sort(missing)
			errs = append(errs, fmt.Errorf("ONSALE_ENV=production needs %s: without them state stays in this process, "+
				"replicas behind a load balancer would each sell the same tickets, and each would sign tokens the others reject", strings.Join(missing, ", ")))
		}
		if local[Payment] && c.Payment.ProviderURL == "" && !c.AllowSimulatedProvider {
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
	if _, err := pgpool.ParseQueryExecMode(c.DBQueryExecMode); err != nil || c.DBQueryExecMode == "" {
		errs = append(errs, config.Invalid("ONSALE_DB_QUERY_EXEC_MODE", c.DBQueryExecMode, "want one of "+strings.Join(pgpool.QueryExecModes, ", ")))
	}
	if c.DatabaseURL == "" && (c.MigrateDatabaseURL != "" || c.DatabaseReadURL != "") {
		errs = append(errs, errors.New("ONSALE_MIGRATE_DATABASE_URL and ONSALE_DATABASE_READ_URL go with ONSALE_DATABASE_URL, which is not set"))
	}
	if strings.ContainsAny(c.RedisPrefix, "{}") {
		// A brace in the prefix would become every key's hash tag: on a Redis Cluster all keys in
		// one slot, and the scripts' own tags ({tt:<id>}...) no longer spreading them.
		errs = append(errs, config.Invalid("ONSALE_REDIS_PREFIX", c.RedisPrefix, "want a prefix without { or }"))
	}
	for name, u := range map[string]string{"ONSALE_REDIS_URL": c.RedisURL, "ONSALE_DATABASE_URL": c.DatabaseURL, "ONSALE_NATS_URL": c.NATSURL,
		"ONSALE_MIGRATE_DATABASE_URL": c.MigrateDatabaseURL, "ONSALE_DATABASE_READ_URL": c.DatabaseReadURL} {
		if err := checkURL(name, u); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, c.HTTP.Validate(), c.Log.Validate(), c.Telemetry.Validate(), c.Auth.Validate(), c.Inventory.Validate(), c.Payment.Validate(), c.Webhook.Validate())
	return errors.Join(errs...)
}

// checkPlacement checks that every module running here finds the modules it depends on, here or
// at a URL, and that the internal API has its secret wherever it is used.
func (c *Config) checkPlacement(local map[string]bool) error {
	var errs []error
	for _, r := range Registrations() {
		if !local[r.Name] {
			continue
		}
		for _, dep := range r.DependsOn {
			if !local[dep] && c.Internal.URL(dep) == "" {
				errs = append(errs, fmt.Errorf("%s needs the %s module: run it here (--modules=%s,%s) or set %s to its internal API",
					r.Name, dep, r.Name, dep, urlSetting(dep)))
			}
		}
	}
	for _, m := range ModuleNames() {
		u := c.Internal.URL(m)
		if u == "" {
			continue
		}
		if parsed, err := url.Parse(u); err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
			errs = append(errs, config.Invalid(urlSetting(m), "", "want an http(s) URL of the module's internal API, such as http://onsale-"+m+":9090"))
		}
	}
	usesInternal := c.Internal.Addr != "" || c.Internal.AuthURL != "" || c.Internal.InventoryURL != "" || c.Internal.PaymentURL != ""
	if usesInternal && c.Internal.SecretFile == "" {
		errs = append(errs, errors.New("ONSALE_INTERNAL_SECRET_FILE is needed when processes call one another (ONSALE_INTERNAL_ADDR or an ONSALE_*_URL is set): "+
			"the internal API answers nobody without the deployment's shared secret"))
	}
	if c.Internal.Addr != "" {
		if _, _, err := net.SplitHostPort(c.Internal.Addr); err != nil {
			errs = append(errs, config.Invalid("ONSALE_INTERNAL_ADDR", c.Internal.Addr, "want host:port such as :9090 or 127.0.0.1:9090"))
		}
	}
	if c.Internal.Timeout < 100*time.Millisecond {
		errs = append(errs, config.Invalid("ONSALE_INTERNAL_TIMEOUT", c.Internal.Timeout.String(), "want 100ms or more"))
	}
	return errors.Join(errs...)
}

// urlSetting names the setting that says where a module is.
func urlSetting(module string) string { return "ONSALE_" + strings.ToUpper(module) + "_URL" }

var schemes = map[string][]string{
	"ONSALE_REDIS_URL":            {"redis", "rediss", redisclient.ClusterScheme, redisclient.ClusterTLSScheme},
	"ONSALE_DATABASE_URL":         {"postgres", "postgresql"},
	"ONSALE_MIGRATE_DATABASE_URL": {"postgres", "postgresql"},
	"ONSALE_DATABASE_READ_URL":    {"postgres", "postgresql"},
	"ONSALE_NATS_URL":             {"nats", "tls"},
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
		if name == "ONSALE_REDIS_URL" && redisclient.IsCluster(item) {
			// A seed list is no single URL (url.Parse refuses a list of IPv6 seeds); the client's
			// own parser says whether it can connect.
			if _, err := redisclient.ParseURL(item); err != nil {
				return config.Invalid(name, "", "want redis+cluster://[user:password@]host:port,host:port,... (database 0 only)")
			}
			continue
		}
		if _, err := url.Parse(item); err != nil {
			return config.Invalid(name, "", "not a valid URL (a password with @, /, ?, # or % in it must be percent-encoded)")
		}
	}
	return nil
}
