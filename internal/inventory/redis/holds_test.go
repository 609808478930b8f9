package redis_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/inventory/holdstest"
	invredis "github.com/onsale-dev/onsale/internal/inventory/redis"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

func TestHolds(t *testing.T) {
	t.Parallel()
	holdstest.Run(t, func(t *testing.T) inventory.HoldStore {
		c, prefix := testenv.Redis(t)
		return invredis.NewHolds(c, prefix, time.Hour)
	})
}

// TestCustomerSetOutlivesItsHolds looks at the keys themselves: Redis expires a customer's set
// of live holds by its own clock, so the set must live as long as the customer's longest hold,
// or an extended hold would silently stop counting against the per-customer limit once a
// shorter hold is made after it.
func TestCustomerHolds(t *testing.T) {
	t.Parallel()
	holdstest.CustomerHolds(t, func(t *testing.T) inventory.CustomerHolds {
		c, prefix := testenv.Redis(t)
		return invredis.NewCustomerHolds(c, prefix)
	})
}

func TestCustomerSetOutlivesItsHolds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, prefix := testenv.Redis(t)
	s := invredis.NewHolds(c, prefix, time.Hour)
	tt, cust := uuid.New(), uuid.New()
	if err := s.Configure(ctx, inventory.HoldRules{TicketTypeID: tt, Capacity: 10, MaxPerOrder: 4, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Millisecond)
	hold := func(ttl time.Duration) inventory.Hold {
		h, _, err := s.Hold(ctx, inventory.HoldRequest{ID: inventory.NewHoldID(tt), TicketTypeID: tt, CustomerID: cust,
			Quantity: 1, Now: now, TTL: ttl, MaxLive: 4})
		if err != nil {
			t.Fatalf("hold: %v", err)
		}
		return h
	}
	key := prefix + "inv:{tt:" + tt.String() + "}:c:" + cust.String()
	expiry := func() time.Time {
		ms, err := c.Do(ctx, c.B().Pexpiretime().Key(key).Build()).AsInt64()
		if err != nil || ms < 0 {
			t.Fatalf("PEXPIRETIME %s: %d, %v", key, ms, err)
		}
		return time.UnixMilli(ms)
	}
	long := hold(time.Hour)
	if got := expiry(); !got.Equal(long.ExpiresAt) {
		t.Fatalf("customer set expires at %s, hold at %s", got, long.ExpiresAt)
	}
	if _, err := s.Checkout(ctx, long.ID, uuid.New(), now.Add(2*time.Hour), now); err != nil {
		t.Fatalf("checkout: %v", err)
	}
	hold(time.Minute)
	if got := expiry(); !got.Equal(now.Add(2 * time.Hour)) {
		t.Fatalf("after a shorter hold the customer set expires at %s, before the extended hold (%s)", got, now.Add(2*time.Hour))
	}
}
