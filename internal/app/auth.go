package app

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/redis/rueidis"
	"go.opentelemetry.io/otel/propagation"

	"github.com/onsale-dev/onsale/internal/auth"
	authclient "github.com/onsale-dev/onsale/internal/auth/client"
	authpostgres "github.com/onsale-dev/onsale/internal/auth/postgres"
	authredis "github.com/onsale-dev/onsale/internal/auth/redis"
	"github.com/onsale-dev/onsale/internal/auth/token"
	"github.com/onsale-dev/onsale/internal/platform/clock"
	"github.com/onsale-dev/onsale/internal/platform/httpserver"
	"github.com/onsale-dev/onsale/internal/platform/internalapi"
	"github.com/onsale-dev/onsale/internal/platform/keyset"
)

// AuthModule is the auth module as assembled in this process.
type AuthModule struct {
	Service auth.Service
	Authn   *auth.Authenticator
	// Issuer signs access tokens with the module's key (tests use it for tokens of a chosen life).
	Issuer  *token.Issuer
	Handler *auth.Handler
	hasher  *auth.Hasher
}

// JWTKeys loads the access-token keys: the configured file, or in its absence one generated once
// under the data directory.
func JWTKeys(cfg *Config) (*keyset.Set, error) {
	if cfg.Auth.KeysFile != "" {
		return keyset.Load(cfg.Auth.KeysFile)
	}
	return keyset.LoadOrCreate(filepath.Join(cfg.DataDir, "jwt-keys.json"))
}

func (p *Process) localAuth(ctx context.Context) (_ []Runner, err error) {
	cfg := p.cfg.Auth
	keys, err := JWTKeys(p.cfg)
	if err != nil {
		return nil, err
	}
	hasher, err := auth.NewHasher(cfg.Argon2MemoryKiB, cfg.Argon2Time, cfg.Argon2Threads, cfg.HashWorkers, cfg.HashQueue)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil { // a part that fails to start is not stopped: release what it made
			hasher.Close()
		}
	}()
	m := &AuthModule{hasher: hasher}
	verifier, err := token.NewVerifier(keys, cfg.Issuer, cfg.Audience, cfg.TokenCacheMax, p.clock)
	if err != nil {
		return nil, err
	}
	m.Issuer = token.NewIssuer(keys, cfg.Issuer, cfg.Audience, p.clock)
	m.Issuer.RememberIn(verifier)
	// Stream tickets are signed with the same keys for another audience, so every replica (and a
	// process without auth, from the published keys) checks them locally, as it checks tokens.
	tickets, err := token.NewVerifier(keys, cfg.Issuer, auth.StreamAudience(cfg.Audience), cfg.TokenCacheMax, p.clock)
	if err != nil {
		return nil, err
	}
	ticketIssuer := token.NewIssuer(keys, cfg.Issuer, auth.StreamAudience(cfg.Audience), p.clock)
	ticketIssuer.RememberIn(tickets)
	d := auth.Deps{
		Hasher:  hasher,
		Issuer:  m.Issuer,
		Tickets: ticketIssuer,
		Clock:   p.clock,
		Log:     p.log.With("module", "auth"),
		Meter:   p.meters.Meter("github.com/onsale-dev/onsale/internal/auth"),
	}
	if p.PG != nil {
		if err := p.migrate(ctx, authpostgres.Migrate); err != nil {
			return nil, err
		}
		d.Users = authpostgres.NewUsers(p.PG)
	} else {
		d.Users = p.memory.users
	}
	if p.Redis != nil {
		d.Sessions = authredis.NewSessions(p.Redis, p.cfg.RedisPrefix, authredis.DefaultGrace)
		d.Failures = authredis.NewFailures(p.Redis, p.cfg.RedisPrefix)
	} else {
		d.Sessions, d.Failures = p.memory.sessions, p.memory.failures
	}
	if m.Service, err = auth.NewService(cfg, d); err != nil {
		return nil, err
	}
	jwks, err := keys.PublicJSON()
	if err != nil {
		return nil, err
	}
	m.Authn = auth.NewAuthenticator(verifier, d.Sessions, tickets)
	m.Handler = auth.NewHandler(m.Service, m.Authn, jwks, httpserver.LimitPerClient("auth", cfg.RateLimit, cfg.RateLimitBurst))
	for _, b := range []struct {
		value, name string
		role        auth.Role
	}{{cfg.BootstrapOrganizer, "Organizer", auth.RoleOrganizer}, {cfg.BootstrapStaff, "Staff", auth.RoleStaff}} {
		if b.value == "" {
			continue
		}
		email, password, _ := auth.ParseBootstrap(b.value) // validated with the config
		u, created, err := m.Service.EnsureUser(ctx, email, password, b.name, b.role)
		if err != nil {
			return nil, fmt.Errorf("bootstrap %s account: %w", b.role, err)
		}
		if created {
			p.log.Info("bootstrap account created", "role", b.role, "email", u.Email)
		}
	}
	p.Auth, p.authn = m, m.Authn
	return nil, nil
}

func (p *Process) closeAuth(context.Context) error {
	if p.Auth != nil && p.Auth.hasher != nil {
		p.Auth.hasher.Close()
	}
	return nil
}

// keysRefresh is how often a process without auth fetches auth's public keys anyway, so a key
// auth added ahead of a rotation is known before its first token arrives.
const keysRefresh = 5 * time.Minute

// remoteAuth checks tokens for the modules here without the auth module: signatures against
// auth's public keys (no private key in this process), sessions in the shared session store when
// this process has Redis (a logout is seen at once, as with auth in process), else through auth's
// internal API.
func (p *Process) remoteAuth(ctx context.Context, url string) error {
	ra, err := newRemoteAuth(p.cfg.Auth, url, p.secret, p.cfg.Internal.Timeout, p.prop, p.clock, p.Redis, p.cfg.RedisPrefix)
	if err != nil {
		return err
	}
	keys := ra.keys
	p.authn = ra.Authenticator
	p.health.Add("auth (remote, "+url+")", pingRemote(ra.api))
	stop := make(chan struct{})
	done := make(chan struct{})
	p.runners["auth.keys"] = Runner{
		Name: "auth.keys",
		Start: func(context.Context) error {
			go func() {
				defer close(done)
				t := time.NewTicker(keysRefresh)
				defer t.Stop()
				for {
					refreshCtx, cancel := context.WithTimeout(context.Background(), p.cfg.Internal.Timeout)
					if err := keys.Refresh(refreshCtx); err != nil {
						p.log.Warn("fetch auth's public keys", "err", err)
					}
					cancel()
					select {
					case <-t.C:
					case <-stop:
						return
					}
				}
			}()
			return nil
		},
		Stop: func(ctx context.Context) error {
			close(stop)
			select {
			case <-done:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		},
	}
	return nil
}

// RemoteAuth checks access tokens where the auth module does not run: against auth's public
// keys (no private key here), with sessions read from the shared session store (Redis) when
// there is one, else asked of auth's internal API.
type RemoteAuth struct {
	*auth.Authenticator
	keys *token.FetchedKeys
	api  *internalapi.Client
}

// NewRemoteAuth returns the authenticator a process without the auth module uses; auth's
// internal API is at url. redis may be nil.
func NewRemoteAuth(cfg auth.Config, url, secret string, timeout time.Duration, redis rueidis.Client, redisPrefix string) (*RemoteAuth, error) {
	return newRemoteAuth(cfg, url, secret, timeout, propagation.TraceContext{}, clock.System{}, redis, redisPrefix)
}

func newRemoteAuth(cfg auth.Config, url, secret string, timeout time.Duration, prop propagation.TextMapPropagator,
	clk clock.Clock, redis rueidis.Client, redisPrefix string) (*RemoteAuth, error) {
	api := internalapi.NewClient(Auth, url, secret, timeout, prop)
	client := authclient.New(api)
	keys := token.NewFetchedKeys(client.JWKS, clk)
	verifier, err := token.NewVerifier(keys, cfg.Issuer, cfg.Audience, cfg.TokenCacheMax, clk)
	if err != nil {
		return nil, err
	}
	tickets, err := token.NewVerifier(keys, cfg.Issuer, auth.StreamAudience(cfg.Audience), cfg.TokenCacheMax, clk)
	if err != nil {
		return nil, err
	}
	var sessions auth.SessionChecker = client
	if redis != nil {
		sessions = authredis.NewSessions(redis, redisPrefix, authredis.DefaultGrace)
	}
	return &RemoteAuth{Authenticator: auth.NewAuthenticator(verifier, sessions, tickets), keys: keys, api: api}, nil
}

// pingRemote is a readiness check of another process: its internal listener answers.
func pingRemote(api *internalapi.Client) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		return api.Do(ctx, "GET", "/internal/v1/livez", nil, nil)
	}
}
