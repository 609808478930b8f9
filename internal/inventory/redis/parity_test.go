package redis_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/inventory/memory"
	invredis "github.com/onsale-dev/onsale/internal/inventory/redis"
	"github.com/onsale-dev/onsale/internal/platform/problem"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

// TestParityWithMemory drives the Redis and memory hold stores through the same random walk of
// operations and times and requires the same answers from both: the suite pins the behaviours
// it names, this catches the corners it does not.
func TestParityWithMemory(t *testing.T) {
	t.Parallel()
	for seed := range uint64(12) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			c, prefix := testenv.Redis(t)
			walk(t, seed, invredis.NewHolds(c, prefix, time.Hour), memory.NewHolds(time.Hour))
		})
	}
}

func code(err error) string {
	if err == nil {
		return "ok"
	}
	if pe := problem.As(err); pe != nil {
		s := pe.Code
		if n, ok := pe.Extra["available"]; ok {
			s += fmt.Sprint("/available=", n)
		}
		if pe.RetryAfter > 0 {
			s += fmt.Sprint("/retry=", pe.RetryAfter)
		}
		return s
	}
	return "error: " + err.Error()
}

func view(h inventory.Hold, err error) string {
	if err != nil {
		return code(err)
	}
	return fmt.Sprintf("%s %s q%d %s exp=%d p%d%s o%s", h.ID[:6], h.Status, h.Quantity, h.CustomerID.String()[:4],
		h.ExpiresAt.UnixMilli(), h.UnitPriceCents, h.Currency, h.OrderID.String()[:4])
}

func walk(t *testing.T, seed uint64, a, b inventory.HoldStore) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 99))
	now := time.Now().Add(24 * time.Hour).Truncate(time.Millisecond)
	tts := []uuid.UUID{uuid.New(), uuid.New()}
	custs := []uuid.UUID{uuid.New(), uuid.New(), uuid.New()}
	orders := []uuid.UUID{uuid.New(), uuid.New()}
	rules := func(tt uuid.UUID) inventory.HoldRules {
		r := inventory.HoldRules{TicketTypeID: tt, Capacity: 4 + rng.IntN(8), Sold: rng.IntN(3), MaxPerOrder: 1 + rng.IntN(4),
			PriceCents: int64(rng.IntN(3) * 100), Currency: "EUR"}
		if rng.IntN(4) == 0 {
			r.SalesStart = now.Add(time.Duration(rng.IntN(200)-100) * time.Millisecond)
		}
		if rng.IntN(4) == 0 {
			r.SalesEnd = now.Add(time.Duration(rng.IntN(400)) * time.Millisecond)
		}
		return r
	}
	// Both ticket types are configured from the start. (A Finalize on a ticket type the store
	// has no rules for differs on purpose: Redis keeps the sold figure for the next Configure,
	// the memory store, which loses its rules only to Flush, waits for that Configure.)
	for _, tt := range tts {
		r := rules(tt)
		for _, s := range []inventory.HoldStore{a, b} {
			if err := s.Configure(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
	}
	var holds []inventory.Hold
	sold := map[uuid.UUID]int{}
	pickHold := func() inventory.Hold {
		if len(holds) == 0 || rng.IntN(8) == 0 {
			tt := tts[rng.IntN(len(tts))]
			return inventory.Hold{ID: inventory.NewHoldID(tt), TicketTypeID: tt, CustomerID: custs[rng.IntN(len(custs))],
				Quantity: 1 + rng.IntN(3), Status: inventory.HoldActive, ExpiresAt: now, CreatedAt: now}
		}
		return holds[rng.IntN(len(holds))]
	}
	for step := range 600 {
		now = now.Add(time.Duration(rng.IntN(30)) * time.Millisecond)
		var op, ra, rb string
		switch k := rng.IntN(22); {
		case k < 8:
			tt := tts[rng.IntN(len(tts))]
			req := inventory.HoldRequest{ID: inventory.NewHoldID(tt), TicketTypeID: tt, CustomerID: custs[rng.IntN(len(custs))],
				Quantity: rng.IntN(6), Now: now, TTL: time.Duration(20+rng.IntN(200)) * time.Millisecond, MaxLive: 2}
			if len(holds) > 0 && rng.IntN(5) == 0 { // a retry, maybe changed
				h := holds[rng.IntN(len(holds))]
				req.ID, req.TicketTypeID, req.CustomerID, req.Quantity = h.ID, h.TicketTypeID, h.CustomerID, h.Quantity
				if rng.IntN(3) == 0 {
					req.Quantity++
				}
			}
			op = fmt.Sprintf("hold %d", req.Quantity)
			ha, ca, ea := a.Hold(ctx, req)
			hb, cb, eb := b.Hold(ctx, req)
			ra, rb = fmt.Sprint(view(ha, ea), ca), fmt.Sprint(view(hb, eb), cb)
			if ea == nil && ca {
				holds = append(holds, ha)
			}
		case k < 10:
			h := pickHold()
			op = "get"
			ra, rb = view(a.Get(ctx, h.ID, now)), view(b.Get(ctx, h.ID, now))
		case k < 12:
			h := pickHold()
			until := now.Add(time.Duration(rng.IntN(300)) * time.Millisecond)
			order := orders[rng.IntN(len(orders))]
			op = "checkout"
			ra, rb = view(a.Checkout(ctx, h.ID, order, until, now)), view(b.Checkout(ctx, h.ID, order, until, now))
		case k < 14:
			h := pickHold()
			if rng.IntN(2) == 0 {
				op = "release"
				ra, rb = code(a.Release(ctx, h.ID, now)), code(b.Release(ctx, h.ID, now))
			} else {
				op = "cancel"
				ra, rb = code(a.Cancel(ctx, h.ID, now)), code(b.Cancel(ctx, h.ID, now))
			}
		case k < 16:
			h := pickHold()
			ttl := time.Duration(rng.IntN(100)) * time.Millisecond
			op = "claim"
			ha, ea := a.Claim(ctx, h, now, ttl)
			hb, eb := b.Claim(ctx, h, now, ttl)
			ra, rb = view(ha, ea), view(hb, eb)
		case k < 18:
			h := pickHold()
			sold[h.TicketTypeID] += h.Quantity * rng.IntN(2)
			op = "finalize"
			ra, rb = code(a.Finalize(ctx, h, sold[h.TicketTypeID], now)), code(b.Finalize(ctx, h, sold[h.TicketTypeID], now))
		case k < 19:
			tt := tts[rng.IntN(len(tts))]
			n := rng.IntN(14)
			op = fmt.Sprint("capacity ", n)
			ra, rb = code(a.SetCapacity(ctx, tt, n, now)), code(b.SetCapacity(ctx, tt, n, now))
		case k < 20:
			tt := tts[rng.IntN(len(tts))]
			r := rules(tt)
			op = fmt.Sprintf("configure %+v", r)
			ra, rb = code(a.Configure(ctx, r)), code(b.Configure(ctx, r))
		default:
			op = "stock"
			sa, ea := a.Stock(ctx, tts, now)
			sb, eb := b.Stock(ctx, tts, now)
			ra, rb = fmt.Sprint(sa, code(ea)), fmt.Sprint(sb, code(eb))
		}
		if ra != rb {
			t.Fatalf("step %d %s:\nredis  %s\nmemory %s", step, op, ra, rb)
		}
		sa, ea := a.Stock(ctx, tts, now)
		sb, eb := b.Stock(ctx, tts, now)
		if fmt.Sprint(sa, code(ea)) != fmt.Sprint(sb, code(eb)) {
			t.Fatalf("step %d after %s: stock\nredis  %v %v\nmemory %v %v", step, op, sa, ea, sb, eb)
		}
	}
}
