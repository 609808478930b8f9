package redis

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/auth"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

// TestCreateWarmsCache shows that the replica that creates a session answers its first check
// from memory: the crowd that logs in before a sale opens costs no Redis call per request when
// it arrives.
func TestCreateWarmsCache(t *testing.T) {
	t.Parallel()
	c, prefix := testenv.Redis(t)
	s := NewSessions(c, prefix, DefaultGrace)
	ctx := context.Background()
	sess := auth.Session{ID: uuid.NewString(), UserID: uuid.New(), Role: auth.RoleCustomer, RefreshHash: "h"}
	if err := s.Create(ctx, sess, time.Hour); err != nil {
		t.Fatal(err)
	}
	r := c.DoCache(ctx, s.liveCmd(sess.ID), liveCacheTTL)
	if v, err := r.ToString(); err != nil || v != "1" {
		t.Fatalf("live key: %q, %v", v, err)
	}
	if !r.IsCacheHit() {
		t.Fatal("the first check after Create went to Redis")
	}
	if other := uuid.NewString(); c.DoCache(ctx, s.liveCmd(other), liveCacheTTL).IsCacheHit() {
		t.Fatal("a session never created was answered from the cache") // the check above can tell
	}
}
