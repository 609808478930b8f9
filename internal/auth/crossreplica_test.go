package auth_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	authpostgres "github.com/onsale-dev/onsale/internal/auth/postgres"
	authredis "github.com/onsale-dev/onsale/internal/auth/redis"
	"github.com/onsale-dev/onsale/internal/platform/apitest"
	"github.com/onsale-dev/onsale/internal/platform/keyset"
	"github.com/onsale-dev/onsale/internal/platform/logging"
	"github.com/onsale-dev/onsale/internal/platform/pgpool"
	"github.com/onsale-dev/onsale/internal/platform/redisclient"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

// newReplica assembles the auth module the way a production replica does: its own Redis client
// (with its own client-side cache), its own Postgres pool, hasher, verifier cache, authenticator
// and HTTP server. Replicas share only the Redis key prefix, the database and the key set.
func newReplica(t *testing.T, dbURL, prefix string, keys *keyset.Set) *apitest.Server {
	t.Helper()
	ctx := context.Background()
	rc, err := redisclient.Open(testenv.RedisURL())
	if err != nil {
		t.Fatalf("redis: %v", err)
	}
	t.Cleanup(rc.Close)
	pool, err := pgpool.Open(ctx, dbURL, 8)
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	t.Cleanup(pool.Close)
	if err := authpostgres.Migrate(ctx, pool, logging.Discard()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	m := newModule(t, moduleOptions{
		keys:     keys,
		users:    authpostgres.NewUsers(pool),
		sessions: authredis.NewSessions(rc, prefix, authredis.DefaultGrace),
		failures: authredis.NewFailures(rc, prefix),
	})
	return apitest.NewServer(t, nil, m.handler.Routes()...)
}

// TestCrossReplica runs two replicas on one Redis and one database and shows that what one of
// them ends is refused by the other on the very next request: no polling, no grace period. It
// repeats the scenario to show this is not a lucky race.
func TestCrossReplica(t *testing.T) {
	t.Parallel()
	_, prefix := testenv.Redis(t) // reachability, a prefix of our own, and cleanup of its keys
	dbURL := testenv.PostgresURL(t)
	keys := newKeys(t)
	a := newReplica(t, dbURL, prefix, keys)
	b := newReplica(t, dbURL, prefix, keys)

	for i := range 20 {
		email := fmt.Sprintf("Replica.%d@Example.com", i)
		u := httpRegister(t, a, email)
		// The account is visible to B at once (one database).
		b.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/auth/register",
			Body: map[string]string{"email": email, "password": password, "name": "Twin"}}).
			Expect(t, http.StatusConflict, "/email-taken")

		// Logout on A, refused on B at once, though B has just cached the session as live.
		tok := httpLogin(t, a, email)
		var got userBody
		me(b, tok.AccessToken).Expect(t, http.StatusOK, "").JSON(t, &got)
		if got != u {
			t.Fatalf("round %d: B says %+v, want %+v", i, got, u)
		}
		me(b, tok.AccessToken).Expect(t, http.StatusOK, "") // answered from B's caches
		a.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/auth/logout", Token: tok.AccessToken}).
			Expect(t, http.StatusNoContent, "")
		wantUnauthorized(t, me(b, tok.AccessToken), "/session-ended", fmt.Sprintf("round %d: B right after logout on A", i))
		wantUnauthorized(t, me(a, tok.AccessToken), "/session-ended", fmt.Sprintf("round %d: A after its logout", i))
		refresh(b, tok.RefreshToken).Expect(t, http.StatusUnauthorized, "/session-ended")

		// Logged in on A (which caches the session as live from the start), logged out on B.
		warm := httpLogin(t, a, email)
		b.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/auth/logout", Token: warm.AccessToken}).
			Expect(t, http.StatusNoContent, "")
		wantUnauthorized(t, me(a, warm.AccessToken), "/session-ended", fmt.Sprintf("round %d: A right after logout on B", i))

		// Rotate on A, present the old refresh token on B: reuse, and the session ends on both.
		first := httpLogin(t, b, email)
		var second tokenPair
		refresh(a, first.RefreshToken).Expect(t, http.StatusOK, "").JSON(t, &second)
		me(b, second.AccessToken).Expect(t, http.StatusOK, "")
		me(a, second.AccessToken).Expect(t, http.StatusOK, "")
		refresh(b, first.RefreshToken).Expect(t, http.StatusUnauthorized, "/refresh-token-reused")
		wantUnauthorized(t, me(a, second.AccessToken), "/session-ended", fmt.Sprintf("round %d: A after reuse on B", i))
		wantUnauthorized(t, me(b, second.AccessToken), "/session-ended", fmt.Sprintf("round %d: B after reuse on B", i))
		refresh(a, second.RefreshToken).Expect(t, http.StatusUnauthorized, "/session-ended")
	}

	// Failed logins count on both replicas: the counters are in Redis.
	httpRegister(t, a, "counted@example.com")
	for i := range 10 {
		srv := []*apitest.Server{a, b}[i%2]
		srv.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/auth/login",
			Body: map[string]string{"email": "counted@example.com", "password": "wrong password"}}).
			Expect(t, http.StatusUnauthorized, "/invalid-credentials")
	}
	for _, srv := range []*apitest.Server{a, b} {
		srv.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/auth/login",
			Body: map[string]string{"email": "counted@example.com", "password": password}}).
			Expect(t, http.StatusTooManyRequests, "/too-many-login-attempts")
	}
}
