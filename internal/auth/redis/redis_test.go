package redis_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/auth"
	"github.com/onsale-dev/onsale/internal/auth/authtest"
	authredis "github.com/onsale-dev/onsale/internal/auth/redis"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

// Redis keeps the time itself, so letting time pass means waiting; the suites keep those TTLs
// to a few hundred milliseconds and poll.

func TestSessions(t *testing.T) {
	t.Parallel()
	authtest.SessionStore(t, func(t *testing.T) (auth.SessionStore, func(time.Duration)) {
		c, prefix := testenv.Redis(t)
		return authredis.NewSessions(c, prefix, authredis.DefaultGrace), time.Sleep
	})
}

func TestFailures(t *testing.T) {
	t.Parallel()
	authtest.FailureCounter(t, func(t *testing.T) (auth.FailureCounter, func(time.Duration)) {
		c, prefix := testenv.Redis(t)
		return authredis.NewFailures(c, prefix), time.Sleep
	})
}

// BenchmarkActive is the per-request revocation check against a real Redis.
func BenchmarkActive(b *testing.B) {
	c, prefix := testenv.Redis(b)
	s := authredis.NewSessions(c, prefix, authredis.DefaultGrace)
	ctx := context.Background()
	sess := auth.Session{ID: "bench", UserID: uuid.New(), Role: auth.RoleCustomer, RefreshHash: "h"}
	if err := s.Create(ctx, sess, time.Hour); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if ok, err := s.Active(ctx, sess.ID); err != nil || !ok {
			b.Fatalf("active %v err %v", ok, err)
		}
	}
}
