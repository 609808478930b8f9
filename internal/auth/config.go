package auth

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/onsale-dev/onsale/internal/platform/config"
)

// Config holds the auth module's settings.
type Config struct {
	Argon2MemoryKiB int `env:"ONSALE_ARGON2_MEMORY_KIB" yaml:"argon2_memory_kib" default:"19456" help:"argon2id memory per hash in KiB (OWASP: 19456)"`
	Argon2Time      int `env:"ONSALE_ARGON2_TIME" yaml:"argon2_time" default:"2" help:"argon2id passes (OWASP: 2)"`
	Argon2Threads   int `env:"ONSALE_ARGON2_THREADS" yaml:"argon2_threads" default:"1" help:"argon2id lanes (OWASP: 1)"`
	HashWorkers     int `env:"ONSALE_HASH_WORKERS" yaml:"hash_workers" default:"0" help:"password hashes computed at once; 0 means half the CPUs (GOMAXPROCS/2, at least 1), leaving the rest to requests during a login storm"`
	HashQueue       int `env:"ONSALE_HASH_QUEUE" yaml:"hash_queue" default:"64" help:"password hashes allowed to wait; beyond it login and register answer 503 at once"`

	AccessTTL     time.Duration `env:"ONSALE_ACCESS_TTL" yaml:"access_ttl" default:"15m" help:"lifetime of access tokens"`
	RefreshTTL    time.Duration `env:"ONSALE_REFRESH_TTL" yaml:"refresh_ttl" default:"336h" help:"a session ends when unused this long"`
	Issuer        string        `env:"ONSALE_JWT_ISSUER" yaml:"jwt_issuer" default:"onsale" help:"iss claim of access tokens"`
	Audience      string        `env:"ONSALE_JWT_AUDIENCE" yaml:"jwt_audience" default:"onsale-api" help:"aud claim of access tokens"`
	KeysFile      string        `env:"ONSALE_JWT_KEYS_FILE" yaml:"jwt_keys_file" help:"JWK set of Ed25519 signing keys (the last one signs); empty generates one under the data directory"`
	TokenCacheMax int           `env:"ONSALE_TOKEN_CACHE_SIZE" yaml:"token_cache_size" default:"100000" help:"verified access tokens kept in memory"`

	FailuresPerAccount int           `env:"ONSALE_LOGIN_FAILURES_PER_ACCOUNT" yaml:"login_failures_per_account" default:"10" help:"failed logins allowed per account from one client address per window; past it, failures from anywhere slow the account's next attempt"`
	FailuresPerIP      int           `env:"ONSALE_LOGIN_FAILURES_PER_IP" yaml:"login_failures_per_ip" default:"100" help:"failed logins allowed per client address per window, across accounts"`
	FailureWindow      time.Duration `env:"ONSALE_LOGIN_FAILURE_WINDOW" yaml:"login_failure_window" default:"1m" help:"window for counting failed logins"`
	LoginDelayMax      time.Duration `env:"ONSALE_LOGIN_DELAY_MAX" yaml:"login_delay_max" default:"10s" help:"longest wait an account's repeated failures impose on its next login attempt (the wait starts at 1s and doubles)"`
	RateLimit          float64       `env:"ONSALE_RATE_LIMIT_AUTH" yaml:"rate_limit_auth" default:"5" help:"requests per second per client address on /v1/auth/* (IPv6 counted per /64); 0 disables"`
	RateLimitBurst     int           `env:"ONSALE_RATE_LIMIT_AUTH_BURST" yaml:"rate_limit_auth_burst" default:"300" help:"requests one client address may send at once on /v1/auth/* before the rate applies (a crowd behind one carrier NAT logs in together)"`

	BootstrapOrganizer string `env:"ONSALE_BOOTSTRAP_ORGANIZER" yaml:"bootstrap_organizer" secret:"true" help:"email:password of an organizer account created at start if missing"`
	BootstrapStaff     string `env:"ONSALE_BOOTSTRAP_STAFF" yaml:"bootstrap_staff" secret:"true" help:"email:password of a staff account created at start if missing"`
}

// Validate checks the settings.
func (c Config) Validate() error {
	var errs []error
	if c.Argon2MemoryKiB < 64 || c.Argon2MemoryKiB > 4<<20 {
		errs = append(errs, config.Invalid("ONSALE_ARGON2_MEMORY_KIB", fmt.Sprint(c.Argon2MemoryKiB), "want KiB from 64 to 4194304"))
	}
	if c.Argon2Time < 1 || c.Argon2Time > 100 {
		errs = append(errs, config.Invalid("ONSALE_ARGON2_TIME", fmt.Sprint(c.Argon2Time), "want 1 to 100"))
	}
	if c.Argon2Threads < 1 || c.Argon2Threads > 255 {
		errs = append(errs, config.Invalid("ONSALE_ARGON2_THREADS", fmt.Sprint(c.Argon2Threads), "want 1 to 255"))
	}
	if c.HashWorkers < 0 {
		errs = append(errs, config.Invalid("ONSALE_HASH_WORKERS", fmt.Sprint(c.HashWorkers), "want 0 (half the CPUs) or more"))
	}
	if c.HashQueue < 1 {
		errs = append(errs, config.Invalid("ONSALE_HASH_QUEUE", fmt.Sprint(c.HashQueue), "want 1 or more"))
	}
	if c.AccessTTL < time.Minute || c.AccessTTL > 24*time.Hour {
		errs = append(errs, config.Invalid("ONSALE_ACCESS_TTL", c.AccessTTL.String(), "want from 1m to 24h"))
	}
	if c.RefreshTTL <= c.AccessTTL {
		errs = append(errs, config.Invalid("ONSALE_REFRESH_TTL", c.RefreshTTL.String(), "want longer than ONSALE_ACCESS_TTL"))
	}
	if c.Issuer == "" {
		errs = append(errs, config.Invalid("ONSALE_JWT_ISSUER", "", "want a non-empty issuer"))
	}
	if c.Audience == "" {
		errs = append(errs, config.Invalid("ONSALE_JWT_AUDIENCE", "", "want a non-empty audience"))
	}
	if c.TokenCacheMax < 1 {
		errs = append(errs, config.Invalid("ONSALE_TOKEN_CACHE_SIZE", fmt.Sprint(c.TokenCacheMax), "want 1 or more"))
	}
	if c.FailuresPerAccount < 1 {
		errs = append(errs, config.Invalid("ONSALE_LOGIN_FAILURES_PER_ACCOUNT", fmt.Sprint(c.FailuresPerAccount), "want 1 or more"))
	}
	if c.FailuresPerIP < 1 {
		errs = append(errs, config.Invalid("ONSALE_LOGIN_FAILURES_PER_IP", fmt.Sprint(c.FailuresPerIP), "want 1 or more"))
	}
	if c.LoginDelayMax < time.Second || c.LoginDelayMax > time.Hour {
		errs = append(errs, config.Invalid("ONSALE_LOGIN_DELAY_MAX", c.LoginDelayMax.String(), "want from 1s to 1h"))
	}
	if c.RateLimit < 0 {
		errs = append(errs, config.Invalid("ONSALE_RATE_LIMIT_AUTH", fmt.Sprint(c.RateLimit), "want 0 (off) or a positive number"))
	}
	if c.RateLimit > 0 && c.RateLimitBurst < 1 {
		errs = append(errs, config.Invalid("ONSALE_RATE_LIMIT_AUTH_BURST", fmt.Sprint(c.RateLimitBurst), "want 1 or more"))
	}
	if c.FailureWindow < time.Second {
		errs = append(errs, config.Invalid("ONSALE_LOGIN_FAILURE_WINDOW", c.FailureWindow.String(), "want 1s or more"))
	}
	for name, v := range map[string]string{"ONSALE_BOOTSTRAP_ORGANIZER": c.BootstrapOrganizer, "ONSALE_BOOTSTRAP_STAFF": c.BootstrapStaff} {
		if v == "" {
			continue
		}
		email, password, err := ParseBootstrap(v)
		if err == nil {
			err = errors.Join(ValidateEmail(email), ValidatePassword(password))
		}
		if err != nil {
			errs = append(errs, config.Invalid(name, "", "want email:password with a valid email and a password of 8 to 128 characters"))
		}
	}
	return errors.Join(errs...)
}

// ParseBootstrap splits "email:password" (the password may contain colons).
func ParseBootstrap(v string) (email, password string, err error) {
	email, password, ok := strings.Cut(v, ":")
	if !ok || email == "" || password == "" {
		return "", "", errors.New("want email:password")
	}
	return email, password, nil
}
