package memory_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/inventory/memory"
)

// benchTTL is short so that released holds' bookkeeping is pruned during the run instead of
// piling up: the benchmark measures the steady state of a busy ticket type.
const benchTTL = time.Second

func benchStore(b *testing.B, capacity, sold int) (*memory.Holds, uuid.UUID) {
	b.Helper()
	s := memory.NewHolds(time.Millisecond)
	tt := uuid.New()
	if err := s.Configure(context.Background(), inventory.HoldRules{TicketTypeID: tt, Capacity: capacity, Sold: sold,
		MaxPerOrder: 4, PriceCents: 100, Currency: "EUR"}); err != nil {
		b.Fatal(err)
	}
	return s, tt
}

// BenchmarkHold is the hot path of an on-sale: a hold then its release, for distinct customers,
// on one large ticket type, from every core at once.
func BenchmarkHold(b *testing.B) {
	s, tt := benchStore(b, 1_000_000, 0)
	ctx := context.Background()
	b.ReportAllocs()
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

// BenchmarkHoldSoldOut is the rejection path, which most requests of a big on-sale take.
func BenchmarkHoldSoldOut(b *testing.B) {
	s, tt := benchStore(b, 1000, 1000)
	ctx := context.Background()
	b.ReportAllocs()
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
