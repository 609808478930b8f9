package redis_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/inventory"
	invredis "github.com/onsale-dev/onsale/internal/inventory/redis"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

// benchTTL and a keep of 1 ms let Redis expire the released holds' records a second after they
// were made, so a long run does not fill Redis (or the cleanup) with them.
const benchTTL = time.Second

// parallelism puts many requests in flight per core, as a server under an on-sale has: rueidis
// pipelines them, so the figures are throughput, not one round trip's latency.
const parallelism = 16

func benchStore(b *testing.B, capacity, sold int) (*invredis.Holds, uuid.UUID) {
	b.Helper()
	c, prefix := testenv.Redis(b)
	s := invredis.NewHolds(c, prefix, time.Millisecond)
	tt := uuid.New()
	if err := s.Configure(context.Background(), inventory.HoldRules{TicketTypeID: tt, Capacity: capacity, Sold: sold,
		MaxPerOrder: 4, PriceCents: 100, Currency: "EUR"}); err != nil {
		b.Fatal(err)
	}
	return s, tt
}

// BenchmarkPing is the baseline: a plain PING through the same kind of client, from every core.
// Quote the hold scripts as a ratio of it.
func BenchmarkPing(b *testing.B) {
	c, _ := testenv.Redis(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(parallelism)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := c.Do(ctx, c.B().Ping().Build()).Error(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkHold is the hot path of an on-sale: a hold then its release (two scripts), for
// distinct customers, on one large ticket type (one hash slot), from every core at once.
func BenchmarkHold(b *testing.B) {
	s, tt := benchStore(b, 1_000_000, 0)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(parallelism)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			now := time.Now()
			h, _, err := s.Hold(ctx, inventory.HoldRequest{ID: inventory.NewHoldID(tt), TicketTypeID: tt,
				CustomerID: uuid.New(), Quantity: 2, Now: now, TTL: benchTTL, MaxLive: 4})
			if err != nil {
				b.Error(err)
				return
			}
			if err := s.Release(ctx, h.ID, now); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkHoldSoldOut is the rejection path (one script), which most requests of a big
// on-sale take.
func BenchmarkHoldSoldOut(b *testing.B) {
	s, tt := benchStore(b, 1000, 1000)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(parallelism)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, _, err := s.Hold(ctx, inventory.HoldRequest{ID: inventory.NewHoldID(tt), TicketTypeID: tt,
				CustomerID: uuid.New(), Quantity: 1, Now: time.Now(), TTL: benchTTL, MaxLive: 4})
			if !errors.Is(err, inventory.ErrSoldOut) {
				b.Errorf("want sold out, got %v", err)
				return
			}
		}
	})
}

// BenchmarkHoldSpread and BenchmarkHoldSpreadRedisCluster are BenchmarkHold over 64 ticket types
// (so over every master of a cluster), on one Redis and on the 3-master cluster: their ratio is
// what the cluster costs per hold on one machine (more connections, one pipeline per master).
func BenchmarkHoldSpread(b *testing.B) {
	c, prefix := testenv.Redis(b)
	benchSpread(b, invredis.NewHolds(c, prefix, time.Millisecond))
}

// BenchmarkHoldSpreadRedisCluster: see BenchmarkHoldSpread.
func BenchmarkHoldSpreadRedisCluster(b *testing.B) {
	c, prefix := testenv.RedisCluster(b)
	benchSpread(b, invredis.NewHolds(c, prefix, time.Millisecond))
}

func benchSpread(b *testing.B, s *invredis.Holds) {
	ctx := context.Background()
	tts := make([]uuid.UUID, 64)
	for i := range tts {
		tts[i] = uuid.New()
		if err := s.Configure(ctx, inventory.HoldRules{TicketTypeID: tts[i], Capacity: 1_000_000, MaxPerOrder: 4,
			PriceCents: 100, Currency: "EUR"}); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(parallelism)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tt := tts[next.Add(1)%int64(len(tts))]
			now := time.Now()
			h, _, err := s.Hold(ctx, inventory.HoldRequest{ID: inventory.NewHoldID(tt), TicketTypeID: tt,
				CustomerID: uuid.New(), Quantity: 2, Now: now, TTL: benchTTL, MaxLive: 4})
			if err != nil {
				b.Error(err)
				return
			}
			if err := s.Release(ctx, h.ID, now); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
