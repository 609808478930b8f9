package inventory

import (
	"sync"
	"time"

	"github.com/google/uuid"
)

// stockCache keeps each event's live figures for a short time. An entry past its time is still
// served, for a little longer, while one request reloads it in the background
// (stale-while-revalidate): under a flash crowd no request waits for the reload, and the hold
// store sees one read per event per period instead of a burst at every expiry.
type stockCache struct {
	fresh time.Duration // served as is
	stale time.Duration // served while a reload runs; older entries are reloaded first
	max   int

	mu         sync.Mutex
	entries    map[uuid.UUID]stockEntry
	refreshing map[uuid.UUID]bool
}

type stockEntry struct {
	stock []Stock
	at    time.Time
}

func newStockCache(fresh time.Duration) *stockCache {
	return &stockCache{fresh: fresh, stale: 3 * fresh, max: 10_000,
		entries: map[uuid.UUID]stockEntry{}, refreshing: map[uuid.UUID]bool{}}
}

// get returns the event's figures if usable at now; refresh is true when the caller should reload
// them in the background (the first caller to find the entry past its time).
func (c *stockCache) get(event uuid.UUID, types int, now time.Time) (stock []Stock, ok, refresh bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, found := c.entries[event]
	if !found || len(e.stock) != types {
		return nil, false, false
	}
	age := now.Sub(e.at)
	switch {
	case age < c.fresh:
		return e.stock, true, false
	case age < c.stale:
		if c.refreshing[event] {
			return e.stock, true, false
		}
		c.refreshing[event] = true
		return e.stock, true, true
	}
	return nil, false, false
}

func (c *stockCache) put(event uuid.UUID, stock []Stock, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.refreshing, event)
	if len(c.entries) >= c.max {
		for id, e := range c.entries { // forget the expired; if none, anything
			if at.Sub(e.at) >= c.stale || len(c.entries) >= c.max {
				delete(c.entries, id)
			}
			if len(c.entries) < c.max/2 {
				break
			}
		}
	}
	c.entries[event] = stockEntry{stock: stock, at: at}
}

// failed ends a background reload that did not succeed, so another may be tried.
func (c *stockCache) failed(event uuid.UUID) {
	c.mu.Lock()
	delete(c.refreshing, event)
	c.mu.Unlock()
}

func (c *stockCache) remove(event uuid.UUID) {
	c.mu.Lock()
	delete(c.entries, event)
	c.mu.Unlock()
}
