package auth_test

import (
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric/noop"

	"github.com/onsale-dev/onsale/internal/auth"
	"github.com/onsale-dev/onsale/internal/auth/memory"
	"github.com/onsale-dev/onsale/internal/auth/token"
	"github.com/onsale-dev/onsale/internal/platform/clock"
	"github.com/onsale-dev/onsale/internal/platform/httpserver"
	"github.com/onsale-dev/onsale/internal/platform/keyset"
	"github.com/onsale-dev/onsale/internal/platform/logging"
)

// testConfig is the module's default configuration with cheap argon2 parameters.
func testConfig() auth.Config {
	return auth.Config{
		Argon2MemoryKiB: 64, Argon2Time: 1, Argon2Threads: 1, HashWorkers: 2, HashQueue: 64,
		AccessTTL: 15 * time.Minute, RefreshTTL: 336 * time.Hour,
		Issuer: "onsale", Audience: "onsale-api", TokenCacheMax: 1000,
		FailuresPerAccount: 10, FailuresPerIP: 100, FailureWindow: time.Minute, LoginDelayMax: 10 * time.Second,
		RateLimit: 5, RateLimitBurst: 300,
	}
}

// module is the auth module assembled the way cmd/server assembles it.
type module struct {
	cfg      auth.Config
	clk      clock.Clock
	keys     *keyset.Set
	users    auth.UserStore
	sessions auth.SessionStore
	failures auth.FailureCounter
	hasher   *auth.Hasher
	svc      auth.Service
	verifier *token.Verifier
	authn    *auth.Authenticator
	handler  *auth.Handler
}

// moduleOptions choose what newModule builds; zero fields get memory adapters, the system clock,
// a fresh key set and testConfig.
type moduleOptions struct {
	cfg      func(*auth.Config)
	clk      clock.Clock
	keys     *keyset.Set
	users    auth.UserStore
	sessions auth.SessionStore
	failures auth.FailureCounter
}

func newKeys(t testing.TB) *keyset.Set {
	t.Helper()
	keys, err := keyset.LoadOrCreate(filepath.Join(t.TempDir(), "jwt-keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func newModule(t testing.TB, o moduleOptions) *module {
	t.Helper()
	m := &module{cfg: testConfig(), clk: o.clk, keys: o.keys, users: o.users, sessions: o.sessions, failures: o.failures}
	if o.cfg != nil {
		o.cfg(&m.cfg)
	}
	if err := m.cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	if m.clk == nil {
		m.clk = clock.System{}
	}
	if m.keys == nil {
		m.keys = newKeys(t)
	}
	if m.users == nil {
		m.users = memory.NewUsers()
	}
	if m.sessions == nil {
		m.sessions = memory.NewSessions(m.clk)
	}
	if m.failures == nil {
		m.failures = memory.NewFailures(m.clk)
	}
	var err error
	m.hasher, err = auth.NewHasher(m.cfg.Argon2MemoryKiB, m.cfg.Argon2Time, m.cfg.Argon2Threads, m.cfg.HashWorkers, m.cfg.HashQueue)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.hasher.Close)
	m.svc, err = auth.NewService(m.cfg, auth.Deps{
		Users: m.users, Sessions: m.sessions, Failures: m.failures, Hasher: m.hasher,
		Issuer:  token.NewIssuer(m.keys, m.cfg.Issuer, m.cfg.Audience, m.clk),
		Tickets: token.NewIssuer(m.keys, m.cfg.Issuer, auth.StreamAudience(m.cfg.Audience), m.clk),
		Clock:   m.clk, Log: logging.Discard(), Meter: noop.NewMeterProvider().Meter("test"),
	})
	if err != nil {
		t.Fatal(err)
	}
	m.verifier, err = token.NewVerifier(m.keys, m.cfg.Issuer, m.cfg.Audience, m.cfg.TokenCacheMax, m.clk)
	if err != nil {
		t.Fatal(err)
	}
	tickets, err := token.NewVerifier(m.keys, m.cfg.Issuer, auth.StreamAudience(m.cfg.Audience), m.cfg.TokenCacheMax, m.clk)
	if err != nil {
		t.Fatal(err)
	}
	m.authn = auth.NewAuthenticator(m.verifier, m.sessions, tickets)
	jwks, err := m.keys.PublicJSON()
	if err != nil {
		t.Fatal(err)
	}
	m.handler = auth.NewHandler(m.svc, m.authn, jwks, httpserver.LimitPerClient("auth", m.cfg.RateLimit, m.cfg.RateLimitBurst))
	return m
}
