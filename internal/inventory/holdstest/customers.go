package holdstest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/inventory"
)

// CustomerHolds runs the conformance suite of inventory.CustomerHolds. Times passed to Add are
// a day ahead of the real clock (see start); key lifetimes are short real durations, because the
// Redis adapter lets Redis expire them by its own clock.
func CustomerHolds(t *testing.T, newStore func(t *testing.T) inventory.CustomerHolds) {
	ctx := context.Background()

	t.Run("BindKey", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		alice, bob := uuid.New(), uuid.New()
		bind := func(c uuid.UUID, key, fp string, ttl time.Duration) string {
			t.Helper()
			got, err := s.BindKey(ctx, c, key, fp, time.Now(), ttl)
			if err != nil {
				t.Fatalf("bind %s: %v", key, err)
			}
			return got
		}
		if got := bind(alice, "k-1", "tt-a|2", time.Minute); got != "tt-a|2" {
			t.Fatalf("a free key bound to %q", got)
		}
		if got := bind(alice, "k-1", "tt-a|2", time.Minute); got != "tt-a|2" {
			t.Fatalf("the same request again: %q", got)
		}
		for _, other := range []string{"tt-b|2", "tt-a|3"} {
			if got := bind(alice, "k-1", other, time.Minute); got != "tt-a|2" {
				t.Fatalf("the key for %q: bound to %q, want the first request's", other, got)
			}
		}
		// Keys belong to their customer, and a long or odd key is fine.
		if got := bind(bob, "k-1", "tt-b|1", time.Minute); got != "tt-b|1" {
			t.Fatalf("another customer's key: %q", got)
		}
		long := fmt.Sprintf("%0255d", 7)
		if got := bind(alice, long, "tt-c|1", time.Minute); got != "tt-c|1" {
			t.Fatalf("a 255-character key: %q", got)
		}
		// A key is free again once its time is up.
		bind(alice, "short", "tt-a|1", 200*time.Millisecond)
		deadline := time.Now().Add(5 * time.Second)
		for bind(alice, "short", "tt-b|1", 200*time.Millisecond) != "tt-b|1" {
			if time.Now().After(deadline) {
				t.Fatal("a key stayed bound long after its lifetime")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("CapCountsLiveHolds", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		c := uuid.New()
		now := start()
		add := func(id string, end, at time.Time) (bool, time.Time) {
			t.Helper()
			ok, earliest, err := s.Add(ctx, c, id, end, at, 3)
			if err != nil {
				t.Fatalf("add %s: %v", id, err)
			}
			return ok, earliest
		}
		for i, end := range []time.Duration{3 * time.Minute, time.Minute, 2 * time.Minute} {
			if ok, _ := add(fmt.Sprint("h", i), now.Add(end), now); !ok {
				t.Fatalf("hold %d of 3 refused", i+1)
			}
		}
		ok, earliest := add("h3", now.Add(time.Minute), now)
		if ok || !earliest.Equal(now.Add(time.Minute)) {
			t.Fatalf("fourth hold: ok %v, earliest %s; want refused until %s", ok, earliest, now.Add(time.Minute))
		}
		// A hold already counted just moves its end, even at the cap.
		if ok, _ := add("h1", now.Add(10*time.Minute), now); !ok {
			t.Fatal("moving a counted hold's end was refused at the cap")
		}
		if _, earliest := add("h3", now.Add(time.Minute), now); !earliest.Equal(now.Add(2 * time.Minute)) {
			t.Fatalf("after moving h1, the earliest end is %s, want %s", earliest, now.Add(2*time.Minute))
		}
		// Removing one frees a place; removing twice is harmless.
		for range 2 {
			if err := s.Remove(ctx, c, "h0"); err != nil {
				t.Fatalf("remove: %v", err)
			}
		}
		if ok, _ := add("h3", now.Add(time.Minute), now); !ok {
			t.Fatal("refused after a hold was removed")
		}
		// Holds stop counting when they end.
		later := now.Add(2 * time.Minute)
		if ok, _ := add("h4", later.Add(time.Minute), later); !ok {
			t.Fatal("refused although two of the three holds have ended")
		}
		// Other customers have their own count.
		if ok, _, err := s.Add(ctx, uuid.New(), "h0", now.Add(time.Minute), now, 3); err != nil || !ok {
			t.Fatalf("another customer: ok %v, err %v", ok, err)
		}
	})

	t.Run("CapUnderRace", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		c := uuid.New()
		now := start()
		const racers, cap = 50, 8
		var ok atomic.Int64
		var wg sync.WaitGroup
		for i := range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, _, err := s.Add(ctx, c, fmt.Sprint("race-", i), now.Add(time.Minute), now, cap)
				if err != nil {
					t.Errorf("add: %v", err)
				}
				if got {
					ok.Add(1)
				}
			}()
		}
		wg.Wait()
		if ok.Load() != cap {
			t.Fatalf("%d holds raced for %d places: %d counted", racers, cap, ok.Load())
		}
	})
}
