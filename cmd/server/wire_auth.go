package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/onsale-dev/onsale/internal/auth"
	authmemory "github.com/onsale-dev/onsale/internal/auth/memory"
	authpostgres "github.com/onsale-dev/onsale/internal/auth/postgres"
	authredis "github.com/onsale-dev/onsale/internal/auth/redis"
	"github.com/onsale-dev/onsale/internal/auth/token"
	"github.com/onsale-dev/onsale/internal/platform/clock"
	"github.com/onsale-dev/onsale/internal/platform/httpserver"
	"github.com/onsale-dev/onsale/internal/platform/keyset"
)

// authModule is the assembled auth module.
type authModule struct {
	svc     auth.Service
	authn   *auth.Authenticator
	handler *auth.Handler
	hasher  *auth.Hasher
}

// jwtKeys loads the access-token keys: the configured file, or in its absence one generated once
// under the data directory.
func jwtKeys(cfg *Config) (*keyset.Set, error) {
	if cfg.Auth.KeysFile != "" {
		return keyset.Load(cfg.Auth.KeysFile)
	}
	return keyset.LoadOrCreate(filepath.Join(cfg.DataDir, "jwt-keys.json"))
}

func (a *App) startAuth(ctx context.Context) error {
	cfg := a.cfg.Auth
	keys, err := jwtKeys(a.cfg)
	if err != nil {
		return err
	}
	clk := clock.System{}
	hasher, err := auth.NewHasher(cfg.Argon2MemoryKiB, cfg.Argon2Time, cfg.Argon2Threads, cfg.HashWorkers, cfg.HashQueue)
	if err != nil {
		return err
	}
	verifier, err := token.NewVerifier(keys, cfg.Issuer, cfg.Audience, cfg.TokenCacheMax, clk)
	if err != nil {
		hasher.Close()
		return err
	}
	issuer := token.NewIssuer(keys, cfg.Issuer, cfg.Audience, clk)
	issuer.RememberIn(verifier)
	d := auth.Deps{
		Hasher: hasher,
		Issuer: issuer,
		Clock:  clk,
		Log:    a.log.With("module", "auth"),
		Meter:  a.tel.Meters.Meter("github.com/onsale-dev/onsale/internal/auth"),
	}
	if a.pg != nil {
		if err := authpostgres.Migrate(ctx, a.pg, a.log); err != nil {
			hasher.Close()
			return err
		}
		d.Users = authpostgres.NewUsers(a.pg)
	} else {
		d.Users = authmemory.NewUsers()
	}
	if a.redis != nil {
		d.Sessions = authredis.NewSessions(a.redis, a.cfg.RedisPrefix, authredis.DefaultGrace)
		d.Failures = authredis.NewFailures(a.redis, a.cfg.RedisPrefix)
	} else {
		d.Sessions = authmemory.NewSessions(clk)
		d.Failures = authmemory.NewFailures(clk)
	}
	svc, err := auth.NewService(cfg, d)
	if err != nil {
		hasher.Close()
		return err
	}
	jwks, err := keys.PublicJSON()
	if err != nil {
		hasher.Close()
		return err
	}
	authn := auth.NewAuthenticator(verifier, d.Sessions)
	a.auth = &authModule{svc: svc, authn: authn, handler: auth.NewHandler(svc, authn, jwks, httpserver.LimitPerClient("auth", cfg.RateLimit, cfg.RateLimitBurst)), hasher: hasher}
	for _, b := range []struct {
		value, name string
		role        auth.Role
	}{{cfg.BootstrapOrganizer, "Organizer", auth.RoleOrganizer}, {cfg.BootstrapStaff, "Staff", auth.RoleStaff}} {
		if b.value == "" {
			continue
		}
		email, password, _ := auth.ParseBootstrap(b.value) // validated with the config
		u, created, err := svc.EnsureUser(ctx, email, password, b.name, b.role)
		if err != nil {
			hasher.Close()
			return fmt.Errorf("bootstrap %s account: %w", b.role, err)
		}
		if created {
			a.log.Info("bootstrap account created", "role", b.role, "email", u.Email)
		}
	}
	return nil
}

func (a *App) stopAuth(context.Context) error {
	if a.auth != nil {
		a.auth.hasher.Close()
	}
	return nil
}
