package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/rueidis"

	"github.com/onsale-dev/onsale/internal/inventory"
)

// Catalog is a cross-replica catalogue cache. Entries are read with client-side caching: a hit is
// answered from this process's memory, and a write on any replica makes Redis invalidate every
// replica's copy at once. Each entry carries the event's version and a write never replaces a
// newer entry, so a slow reader cannot put back what a writer just replaced.
type Catalog struct {
	c      rueidis.Client
	prefix string
	ttl    time.Duration

	// decoded remembers the last decoded value per event, so a cache hit costs a string
	// comparison instead of a JSON decode.
	mu      sync.Mutex
	decoded map[uuid.UUID]decodedEntry
	// written is the newest version this process put per event. Redis invalidates this
	// process's local copy of an entry it overwrote asynchronously (the push can trail the
	// write's reply by a moment), so a local copy older than what this process itself wrote is
	// stale: read past it, or an organizer's GET right after their PATCH shows the old event.
	written map[uuid.UUID]int64
}

type decodedEntry struct {
	raw string
	c   inventory.Catalogue
}

var _ inventory.Catalog = (*Catalog)(nil)

// NewCatalog returns a cache whose entries live at most ttl.
func NewCatalog(c rueidis.Client, prefix string, ttl time.Duration) *Catalog {
	return &Catalog{c: c, prefix: prefix, ttl: ttl, decoded: map[uuid.UUID]decodedEntry{}, written: map[uuid.UUID]int64{}}
}

func (c *Catalog) key(id uuid.UUID) string { return c.prefix + "inv:catalogue:{" + id.String() + "}" }

// Get implements inventory.Catalog.
func (c *Catalog) Get(ctx context.Context, id uuid.UUID) (inventory.Catalogue, bool, error) {
	raw, err := c.c.DoCache(ctx, c.c.B().Get().Key(c.key(id)).Cache(), c.ttl).ToString()
	if rueidis.IsRedisNil(err) {
		return inventory.Catalogue{}, false, nil
	}
	if err != nil {
		return inventory.Catalogue{}, false, fmt.Errorf("catalogue cache: %w", err)
	}
	c.mu.Lock()
	floor := c.written[id]
	c.mu.Unlock()
	if floor > 0 && versionOf(raw) < floor {
		raw, err = c.c.Do(ctx, c.c.B().Get().Key(c.key(id)).Build()).ToString()
		if rueidis.IsRedisNil(err) {
			return inventory.Catalogue{}, false, nil
		}
		if err != nil {
			return inventory.Catalogue{}, false, fmt.Errorf("catalogue cache: %w", err)
		}
		if versionOf(raw) < floor {
			return inventory.Catalogue{}, false, nil // older than what we wrote: a miss, to be overwritten
		}
	}
	c.mu.Lock()
	d, ok := c.decoded[id]
	c.mu.Unlock()
	if ok && d.raw == raw {
		return d.c, true, nil
	}
	_, body, found := strings.Cut(raw, ":")
	var cat inventory.Catalogue
	if !found || json.Unmarshal([]byte(body), &cat) != nil {
		return inventory.Catalogue{}, false, nil // unreadable: treat as a miss and overwrite
	}
	c.mu.Lock()
	if len(c.decoded) > 10_000 {
		clear(c.decoded)
	}
	c.decoded[id] = decodedEntry{raw: raw, c: cat}
	c.mu.Unlock()
	return cat, true, nil
}

// putScript stores "<version>:<json>" unless the stored version is newer.
var putScript = rueidis.NewLuaScript(`
local cur = redis.call('GET', KEYS[1])
if cur then
  local v = tonumber(string.match(cur, '^(%d+):'))
  if v and v > tonumber(ARGV[1]) then return 0 end
  if v and v == tonumber(ARGV[1]) and cur == ARGV[2] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
`)

// Put implements inventory.Catalog.
func (c *Catalog) Put(ctx context.Context, cat inventory.Catalogue) error {
	body, err := json.Marshal(cat)
	if err != nil {
		return err
	}
	v := strconv.FormatInt(cat.Event.Version, 10)
	err = putScript.Exec(ctx, c.c, []string{c.key(cat.Event.ID)},
		[]string{v, v + ":" + string(body), strconv.FormatInt(c.ttl.Milliseconds(), 10)}).Error()
	if err != nil {
		return fmt.Errorf("catalogue cache write: %w", err)
	}
	c.mu.Lock()
	if len(c.written) > 10_000 {
		clear(c.written)
	}
	if cat.Event.Version > c.written[cat.Event.ID] {
		c.written[cat.Event.ID] = cat.Event.Version
	}
	c.mu.Unlock()
	return nil
}

// versionOf reads the version an entry starts with; 0 when it has none.
func versionOf(raw string) int64 {
	v, _, _ := strings.Cut(raw, ":")
	n, _ := strconv.ParseInt(v, 10, 64)
	return n
}
