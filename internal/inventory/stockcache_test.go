package inventory

import (
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestStockCacheServesStaleWhileOneReloads(t *testing.T) {
	c := newStockCache(time.Second)
	ev := uuid.New()
	t0 := time.Unix(1_800_000_000, 0)
	if _, ok, _ := c.get(ev, 1, t0); ok {
		t.Fatal("hit on an empty cache")
	}
	c.put(ev, []Stock{{Capacity: 10}}, t0)
	if s, ok, refresh := c.get(ev, 1, t0.Add(500*time.Millisecond)); !ok || refresh || s[0].Capacity != 10 {
		t.Fatalf("fresh entry: ok=%v refresh=%v", ok, refresh)
	}
	if _, ok, _ := c.get(ev, 2, t0); ok {
		t.Fatal("an entry with another number of ticket types was served")
	}
	// Past its time: served, and exactly one caller is told to reload.
	_, ok1, r1 := c.get(ev, 1, t0.Add(1500*time.Millisecond))
	_, ok2, r2 := c.get(ev, 1, t0.Add(1600*time.Millisecond))
	if !ok1 || !ok2 || !r1 || r2 {
		t.Fatalf("stale: ok %v %v, refresh %v %v; want served twice, one reload", ok1, ok2, r1, r2)
	}
	// A failed reload lets the next caller try again.
	c.failed(ev)
	if _, _, r := c.get(ev, 1, t0.Add(1700*time.Millisecond)); !r {
		t.Fatal("no reload after a failed one")
	}
	// Too old: not served at all.
	if _, ok, _ := c.get(ev, 1, t0.Add(4*time.Second)); ok {
		t.Fatal("an entry past the stale limit was served")
	}
	// A reload's result is fresh again.
	c.put(ev, []Stock{{Capacity: 12}}, t0.Add(4*time.Second))
	if s, ok, refresh := c.get(ev, 1, t0.Add(4*time.Second)); !ok || refresh || s[0].Capacity != 12 {
		t.Fatalf("after reload: %v ok=%v refresh=%v", s, ok, refresh)
	}
	c.remove(ev)
	if _, ok, _ := c.get(ev, 1, t0.Add(4*time.Second)); ok {
		t.Fatal("removed entry served")
	}
}

func TestStockCacheStaysBounded(t *testing.T) {
	c := newStockCache(time.Second)
	c.max = 100
	now := time.Unix(1_800_000_000, 0)
	for range 1000 {
		c.put(uuid.New(), []Stock{{}}, now)
	}
	if n := len(c.entries); n > 100 {
		t.Fatalf("%d entries kept, limit 100", n)
	}
}
