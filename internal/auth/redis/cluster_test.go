package redis_test

import (
	"testing"
	"time"

	"github.com/onsale-dev/onsale/internal/auth"
	"github.com/onsale-dev/onsale/internal/auth/authtest"
	authredis "github.com/onsale-dev/onsale/internal/auth/redis"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

// The session and failure-counter suites against a 3-master Redis Cluster: a session's keys share
// the hash tag {<session id>}, so its scripts run on one master.

func TestSessionsRedisCluster(t *testing.T) {
	t.Parallel()
	authtest.SessionStore(t, func(t *testing.T) (auth.SessionStore, func(time.Duration)) {
		c, prefix := testenv.RedisCluster(t)
		return authredis.NewSessions(c, prefix, authredis.DefaultGrace), time.Sleep
	})
}

func TestFailuresRedisCluster(t *testing.T) {
	t.Parallel()
	authtest.FailureCounter(t, func(t *testing.T) (auth.FailureCounter, func(time.Duration)) {
		c, prefix := testenv.RedisCluster(t)
		return authredis.NewFailures(c, prefix), time.Sleep
	})
}
