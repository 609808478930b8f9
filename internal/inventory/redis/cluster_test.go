package redis_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/rueidis"

	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/inventory/holdstest"
	"github.com/onsale-dev/onsale/internal/inventory/memory"
	"github.com/onsale-dev/onsale/internal/inventory/queuetest"
	invredis "github.com/onsale-dev/onsale/internal/inventory/redis"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

// The same suites as against one Redis, against a 3-master Redis Cluster: every script's keys
// share one hash tag, so Redis runs each script on the one master that owns the tag's slot (a
// script touching two slots would fail with CROSSSLOT, and one touching a key of another node
// with "non local key").

func TestHoldsRedisCluster(t *testing.T) {
	t.Parallel()
	holdstest.Run(t, func(t *testing.T) inventory.HoldStore {
		c, prefix := testenv.RedisCluster(t)
		return invredis.NewHolds(c, prefix, time.Hour)
	})
}

func TestCustomerHoldsRedisCluster(t *testing.T) {
	t.Parallel()
	holdstest.CustomerHolds(t, func(t *testing.T) inventory.CustomerHolds {
		c, prefix := testenv.RedisCluster(t)
		return invredis.NewCustomerHolds(c, prefix)
	})
}

func TestQueueRedisCluster(t *testing.T) {
	t.Parallel()
	queuetest.Run(t, func(t *testing.T) inventory.QueueStore {
		c, prefix := testenv.RedisCluster(t)
		return invredis.NewQueue(c, prefix)
	})
}

func TestParityWithMemoryRedisCluster(t *testing.T) {
	t.Parallel()
	for seed := range uint64(12) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			c, prefix := testenv.RedisCluster(t)
			walk(t, seed, invredis.NewHolds(c, prefix, time.Hour), memory.NewHolds(time.Hour))
		})
	}
}

// TestRedisClusterSlotSpread: holds of 1,000 ticket types land on every master, each with a fair
// share (at least 20 % of 3 masters' 33 %): a sale of many ticket types uses the whole cluster.
// The spread is counted where the keys are (DBSIZE of each master), not computed from slots.
func TestRedisClusterSlotSpread(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, prefix := testenv.RedisCluster(t)
	s := invredis.NewHolds(c, prefix, time.Hour)
	const types = 1000
	now := time.Now()
	ids := make([]uuid.UUID, types)
	for i := range ids {
		ids[i] = uuid.New()
		if err := s.Configure(ctx, inventory.HoldRules{TicketTypeID: ids[i], Capacity: 10, MaxPerOrder: 2, Currency: "EUR"}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Hold(ctx, inventory.HoldRequest{ID: inventory.NewHoldID(ids[i]), TicketTypeID: ids[i], CustomerID: uuid.New(),
			Quantity: 1, Now: now, TTL: time.Minute, MaxLive: 4}); err != nil {
			t.Fatalf("hold on ticket type %d: %v", i, err)
		}
	}
	// Which master holds each ticket type's keys: count this test's held counters per master.
	perMaster := map[string]int{}
	for addr, node := range c.Nodes() {
		role, err := node.Do(ctx, node.B().Role().Build()).ToArray()
		if err != nil {
			t.Fatalf("ROLE of %s: %v", addr, err)
		}
		if r, _ := role[0].ToString(); r != "master" {
			continue
		}
		perMaster[addr] = countKeys(t, node, prefix+"inv:{tt:*}:held")
	}
	if len(perMaster) != 3 {
		t.Fatalf("want 3 masters, the client knows %d: %v", len(perMaster), perMaster)
	}
	total := 0
	addrs := make([]string, 0, len(perMaster))
	for addr, n := range perMaster {
		total += n
		addrs = append(addrs, addr)
	}
	sort.Strings(addrs)
	var line []string
	for _, addr := range addrs {
		line = append(line, fmt.Sprintf("%s %d (%.1f %%)", addr, perMaster[addr], 100*float64(perMaster[addr])/types))
	}
	t.Logf("holds of %d ticket types over %d masters: %s", types, len(addrs), strings.Join(line, ", "))
	if total != types {
		t.Fatalf("found %d ticket types' held counters on the masters, want %d", total, types)
	}
	for _, addr := range addrs {
		if perMaster[addr] < types/5 {
			t.Errorf("master %s has %d of %d ticket types, want at least 20 %%", addr, perMaster[addr], types)
		}
	}
}

// countKeys counts one node's keys matching pattern.
func countKeys(t *testing.T, node rueidis.Client, pattern string) int {
	t.Helper()
	ctx := context.Background()
	n := 0
	var cursor uint64
	for {
		res, err := node.Do(ctx, node.B().Scan().Cursor(cursor).Match(pattern).Count(1000).Build()).AsScanEntry()
		if err != nil {
			t.Fatalf("SCAN: %v", err)
		}
		n += len(res.Elements)
		if cursor = res.Cursor; cursor == 0 {
			return n
		}
	}
}
