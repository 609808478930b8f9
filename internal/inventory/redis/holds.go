// Package redis holds the inventory module's Redis adapters: the hold store, where every
// operation is one Lua script over the keys of one ticket type (hash tag {tt:<id>}, so a script
// runs unchanged on Redis Cluster), and the catalogue cache, read through rueidis client-side
// caching so that an organizer's change reaches every replica's memory at once.
//
// Keys of ticket type X (after the optional prefix):
//
//	inv:{tt:X}:cfg          hash: capacity, max_per_order, price, currency, sales_start, sales_end,
//	                        room (the event whose waiting room guards holds, or empty)
//	inv:{tt:X}:sold         mirror of the sold count in PostgreSQL (only ever raised)
//	inv:{tt:X}:held         tickets in live holds
//	inv:{tt:X}:live         sorted set: hold id by expiry (ms)
//	inv:{tt:X}:h:<hold>     hash: customer, qty, status, expires, price, currency, created, order
//	inv:{tt:X}:c:<customer> sorted set: the customer's live holds by expiry
//
// Expired holds are pruned by whichever script touches the ticket type next, before it counts:
// no background job is needed for correctness. Redis must run with maxmemory-policy noeviction.
package redis

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/redis/rueidis"

	"github.com/onsale-dev/onsale/internal/inventory"
)

// pruneLua returns expired holds to the pool: at most 500 per call, so one script never runs
// long; any left over are pruned by the next call, and meanwhile they still count as held, which
// errs on the side of selling less, never more.
const pruneLua = `
local function prune(base, live, held, now)
  local ids = redis.call('ZRANGE', live, '-inf', now, 'BYSCORE', 'LIMIT', 0, 500)
  if #ids == 0 then return 0 end
  local freed = 0
  for _, id in ipairs(ids) do
    local hk = base .. 'h:' .. id
    local f = redis.call('HMGET', hk, 'qty', 'status', 'customer')
    freed = freed + (tonumber(f[1]) or 0)
    if f[2] == 'active' or f[2] == 'claimed' then redis.call('HSET', hk, 'status', 'expired') end
    if f[3] then redis.call('ZREM', base .. 'c:' .. f[3], id) end
  end
  redis.call('ZREM', live, unpack(ids))
  redis.call('DECRBY', held, freed)
  return #ids
end
local function configured(cfg, sold)
  return redis.call('EXISTS', cfg) == 1 and redis.call('EXISTS', sold) == 1
end
`

// KEYS: cfg sold held live hold cust. ARGV: base now ttl qty customer id maxLive keep pass.
var holdScript = rueidis.NewLuaScript(pruneLua + `
local now = tonumber(ARGV[2])
local cfg = redis.call('HMGET', KEYS[1], 'capacity', 'max_per_order', 'price', 'currency', 'sales_start', 'sales_end', 'room')
local sold = redis.call('GET', KEYS[2])
if not cfg[1] or not sold then return {'nocfg'} end
local pruned = prune(ARGV[1], KEYS[4], KEYS[3], now)
local h = redis.call('HMGET', KEYS[5], 'customer', 'qty', 'status', 'expires', 'price', 'currency', 'created', 'order')
if h[1] then
  if h[1] ~= ARGV[5] or h[2] ~= ARGV[4] then return {'mismatch', pruned} end
  return {'exists', pruned, h[3], h[4], h[5], h[6], h[7], h[8] or ''}
end
if cfg[7] and cfg[7] ~= '' and cfg[7] ~= ARGV[9] then return {'pass', pruned} end
local qty = tonumber(ARGV[4])
if qty > tonumber(cfg[2]) then return {'limit', pruned, cfg[2]} end
local ss, se = tonumber(cfg[5]), tonumber(cfg[6])
if ss > 0 and now < ss then return {'notopen', pruned} end
if se > 0 and now >= se then return {'closed', pruned} end
-- Sold out is the commonest answer of an on-sale: decide it before looking at the customer.
local avail = tonumber(cfg[1]) - tonumber(sold) - tonumber(redis.call('GET', KEYS[3]) or '0')
if qty > avail then return {'soldout', pruned, math.max(avail, 0)} end
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now)
if redis.call('ZCARD', KEYS[6]) >= tonumber(ARGV[7]) then
  return {'toomany', pruned, redis.call('ZRANGE', KEYS[6], 0, 0, 'WITHSCORES')[2]}
end
local exp = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[5], 'customer', ARGV[5], 'qty', qty, 'status', 'active', 'expires', exp,
  'price', cfg[3], 'currency', cfg[4], 'created', now)
redis.call('PEXPIREAT', KEYS[5], exp + tonumber(ARGV[8]))
redis.call('ZADD', KEYS[4], exp, ARGV[6])
redis.call('INCRBY', KEYS[3], qty)
redis.call('ZADD', KEYS[6], exp, ARGV[6])
-- The customer's set lives as long as its longest hold: never shorten it (an extended hold
-- would drop out of the per-customer count). PEXPIRETIME is -1 without an expiry.
if redis.call('PEXPIRETIME', KEYS[6]) < exp then redis.call('PEXPIREAT', KEYS[6], exp) end
return {'ok', pruned, 'active', tostring(exp), cfg[3], cfg[4], tostring(now)}
`)

// KEYS: cfg sold. ARGV: capacity max price currency salesStart salesEnd sold room.
var configureScript = rueidis.NewLuaScript(`
redis.call('HSET', KEYS[1], 'capacity', ARGV[1], 'max_per_order', ARGV[2], 'price', ARGV[3],
  'currency', ARGV[4], 'sales_start', ARGV[5], 'sales_end', ARGV[6], 'room', ARGV[8])
local s = redis.call('GET', KEYS[2])
if not s or tonumber(s) < tonumber(ARGV[7]) then redis.call('SET', KEYS[2], ARGV[7]) end
return 'ok'
`)

// KEYS: cfg sold held live. ARGV: base now capacity.
var setCapacityScript = rueidis.NewLuaScript(pruneLua + `
if not configured(KEYS[1], KEYS[2]) then return {'nocfg'} end
prune(ARGV[1], KEYS[4], KEYS[3], tonumber(ARGV[2]))
local committed = tonumber(redis.call('GET', KEYS[2])) + tonumber(redis.call('GET', KEYS[3]) or '0')
if tonumber(ARGV[3]) < committed then return {'below', tostring(committed)} end
redis.call('HSET', KEYS[1], 'capacity', ARGV[3])
return {'ok'}
`)

// KEYS: live hold. ARGV: id now until keep base order. The customer's set (same hash slot) is
// found from the hold's record, so a checkout is one round trip.
var checkoutScript = rueidis.NewLuaScript(`
local h = redis.call('HMGET', KEYS[2], 'status', 'expires', 'customer', 'qty', 'price', 'currency', 'created', 'order')
if not h[1] then return {'notfound'} end
if h[8] and h[8] ~= ARGV[6] then return {'ordered', h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8]} end
local now = tonumber(ARGV[2])
if (h[1] ~= 'active' and h[1] ~= 'claimed') or tonumber(h[2]) <= now then
  return {'notlive', h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8] or ''}
end
local exp = math.max(tonumber(h[2]), tonumber(ARGV[3]))
redis.call('HSET', KEYS[2], 'expires', exp, 'order', ARGV[6])
redis.call('PEXPIREAT', KEYS[2], exp + tonumber(ARGV[4]))
redis.call('ZADD', KEYS[1], 'XX', exp, ARGV[1])
local owner = ARGV[5] .. 'c:' .. h[3]
redis.call('ZADD', owner, 'XX', exp, ARGV[1])
redis.call('PEXPIREAT', owner, exp, 'GT')
return {'ok', h[1], tostring(exp), h[3], h[4], h[5], h[6], h[7], ARGV[6]}
`)

// KEYS: held live hold. ARGV: base id cancel. With cancel set (the customer asking), a hold that
// an order checked out, or that is sold, stays.
var releaseScript = rueidis.NewLuaScript(`
local h = redis.call('HMGET', KEYS[3], 'status', 'qty', 'customer', 'order')
if not h[1] then return 'notfound' end
if ARGV[3] == '1' and (h[1] == 'committed' or (h[4] and (h[1] == 'active' or h[1] == 'claimed'))) then
  return 'ordered'
end
if h[1] == 'active' or h[1] == 'claimed' then
  if redis.call('ZREM', KEYS[2], ARGV[2]) == 1 then redis.call('DECRBY', KEYS[1], tonumber(h[2])) end
  redis.call('ZREM', ARGV[1] .. 'c:' .. h[3], ARGV[2])
  redis.call('HSET', KEYS[3], 'status', 'released')
end
return 'ok'
`)

// KEYS: cfg sold held live hold. ARGV: base now claimTTL id qty customer price currency keep created.
var claimScript = rueidis.NewLuaScript(pruneLua + `
local now = tonumber(ARGV[2])
if not configured(KEYS[1], KEYS[2]) then return {'nocfg'} end
prune(ARGV[1], KEYS[4], KEYS[3], now)
local h = redis.call('HMGET', KEYS[5], 'status', 'expires')
local untilMs = now + tonumber(ARGV[3])
if h[1] == 'committed' then return {'committed'} end
if h[1] == 'claimed' or (h[1] == 'active' and tonumber(h[2]) > now) then
  local exp = math.max(tonumber(h[2]), untilMs)
  redis.call('HSET', KEYS[5], 'status', 'claimed', 'expires', exp)
  redis.call('PEXPIREAT', KEYS[5], exp + tonumber(ARGV[9]))
  redis.call('ZADD', KEYS[4], exp, ARGV[4])
  return {'ok', tostring(exp)}
end
local qty = tonumber(ARGV[5])
local avail = tonumber(redis.call('HGET', KEYS[1], 'capacity')) - tonumber(redis.call('GET', KEYS[2]))
  - tonumber(redis.call('GET', KEYS[3]) or '0')
if qty > avail then return {'soldout', tostring(math.max(avail, 0))} end
redis.call('HSET', KEYS[5], 'customer', ARGV[6], 'qty', qty, 'status', 'claimed', 'expires', untilMs,
  'price', ARGV[7], 'currency', ARGV[8], 'created', ARGV[10])
redis.call('PEXPIREAT', KEYS[5], untilMs + tonumber(ARGV[9]))
redis.call('ZADD', KEYS[4], untilMs, ARGV[4])
redis.call('INCRBY', KEYS[3], qty)
return {'ok', tostring(untilMs)}
`)

// KEYS: sold held live hold cfg. ARGV: base id qty sold keep customer price currency expires
// created. A record lost since the claim (Redis flushed) is written whole, so the hold still
// reads back. The hold stops counting as held and sold is raised to the store's count (ARGV[4]),
// the largest one reported winning whatever order the commits finalize in.
var finalizeScript = rueidis.NewLuaScript(`
if redis.call('HGET', KEYS[4], 'status') ~= 'committed' then
  if redis.call('ZREM', KEYS[3], ARGV[2]) == 1 then
    redis.call('DECRBY', KEYS[2], tonumber(ARGV[3]))
  end
  redis.call('ZREM', ARGV[1] .. 'c:' .. ARGV[6], ARGV[2])
  if redis.call('EXISTS', KEYS[4]) == 0 then
    redis.call('HSET', KEYS[4], 'price', ARGV[7], 'currency', ARGV[8], 'expires', ARGV[9], 'created', ARGV[10])
  end
  redis.call('HSET', KEYS[4], 'status', 'committed', 'qty', ARGV[3], 'customer', ARGV[6])
  redis.call('PEXPIRE', KEYS[4], ARGV[5])
end
local s = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[4]) > s then redis.call('SET', KEYS[1], ARGV[4]) end
return 'ok'
`)

// KEYS: cfg sold held live. ARGV: base now.
var stockScript = rueidis.NewLuaScript(pruneLua + `
if not configured(KEYS[1], KEYS[2]) then return {'nocfg'} end
local pruned = prune(ARGV[1], KEYS[4], KEYS[3], tonumber(ARGV[2]))
local capacity = tonumber(redis.call('HGET', KEYS[1], 'capacity'))
local held = tonumber(redis.call('GET', KEYS[3]) or '0')
-- sold may already include holds of a commit batch still held until their own Finalize: report
-- it only as far as held plus sold fits the capacity.
local sold = math.max(0, math.min(tonumber(redis.call('GET', KEYS[2])), capacity - held))
return {'ok', tostring(capacity), tostring(sold), tostring(held), tostring(pruned)}
`)

// Holds is a HoldStore on Redis.
type Holds struct {
	c      rueidis.Client
	prefix string
	keep   time.Duration
	// Pruned, when set, is told how many expired holds each operation returned to the pool.
	Pruned func(n int)
}

var _ inventory.HoldStore = (*Holds)(nil)

// NewHolds returns a hold store whose keys start with prefix (empty in production) and that keeps
// finished hold records readable for keep.
func NewHolds(c rueidis.Client, prefix string, keep time.Duration) *Holds {
	return &Holds{c: c, prefix: prefix, keep: keep}
}

type ttKeys struct {
	base, cfg, sold, held, live string
}

func (s *Holds) keys(tt uuid.UUID) ttKeys {
	base := s.prefix + "inv:{tt:" + tt.String() + "}:"
	return ttKeys{base: base, cfg: base + "cfg", sold: base + "sold", held: base + "held", live: base + "live"}
}

func (k ttKeys) hold(id string) string        { return k.base + "h:" + id }
func (k ttKeys) customer(id uuid.UUID) string { return k.base + "c:" + id.String() }

func msOf(t time.Time) string      { return strconv.FormatInt(t.UnixMilli(), 10) }
func durMs(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

func timeOf(ms string) time.Time {
	n, _ := strconv.ParseInt(ms, 10, 64)
	return time.UnixMilli(n).UTC()
}

// optionalMs renders an optional instant; 0 stands for none.
func optionalMs(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	return msOf(t)
}

// optionalID renders an optional id; empty stands for none.
func optionalID(id uuid.UUID) string {
	if id == uuid.Nil {
		return ""
	}
	return id.String()
}

// pruned reports the count of pruned holds found at vals[i].
func (s *Holds) pruned(vals []rueidis.RedisMessage, i int) {
	if s.Pruned == nil || len(vals) <= i {
		return
	}
	if n, err := vals[i].AsInt64(); err == nil && n > 0 {
		s.Pruned(int(n))
	}
}

// Configure implements inventory.HoldStore.
func (s *Holds) Configure(ctx context.Context, r inventory.HoldRules) error {
	k := s.keys(r.TicketTypeID)
	err := configureScript.Exec(ctx, s.c, []string{k.cfg, k.sold}, []string{
		strconv.Itoa(r.Capacity), strconv.Itoa(r.MaxPerOrder), strconv.FormatInt(r.PriceCents, 10), r.Currency,
		optionalMs(r.SalesStart), optionalMs(r.SalesEnd), strconv.Itoa(r.Sold), optionalID(r.Room),
	}).Error()
	if err != nil {
		return fmt.Errorf("configure holds for %s: %w", r.TicketTypeID, err)
	}
	return nil
}

// SetCapacity implements inventory.HoldStore.
func (s *Holds) SetCapacity(ctx context.Context, tt uuid.UUID, capacity int, now time.Time) error {
	k := s.keys(tt)
	res, err := setCapacityScript.Exec(ctx, s.c, []string{k.cfg, k.sold, k.held, k.live},
		[]string{k.base, msOf(now), strconv.Itoa(capacity)}).AsStrSlice()
	if err != nil {
		return fmt.Errorf("set capacity of %s: %w", tt, err)
	}
	switch res[0] {
	case "nocfg":
		return inventory.ErrNotConfigured
	case "below":
		return inventory.ErrCapacityBelowCommitted.WithDetail("%s tickets are sold or held", res[1])
	}
	return nil
}

// Hold implements inventory.HoldStore.
func (s *Holds) Hold(ctx context.Context, req inventory.HoldRequest) (inventory.Hold, bool, error) {
	k := s.keys(req.TicketTypeID)
	vals, err := holdScript.Exec(ctx, s.c,
		[]string{k.cfg, k.sold, k.held, k.live, k.hold(req.ID), k.customer(req.CustomerID)},
		[]string{k.base, msOf(req.Now), durMs(req.TTL), strconv.Itoa(req.Quantity), req.CustomerID.String(),
			req.ID, strconv.Itoa(req.MaxLive), durMs(s.keep), optionalID(req.Pass)}).ToArray()
	if err != nil {
		return inventory.Hold{}, false, fmt.Errorf("hold %s: %w", req.ID, err)
	}
	s.pruned(vals, 1)
	res := strs(vals)
	switch res[0] {
	case "ok", "exists":
		h := inventory.Hold{
			ID: req.ID, TicketTypeID: req.TicketTypeID, CustomerID: req.CustomerID, Quantity: req.Quantity,
			Status: inventory.HoldStatus(res[2]), ExpiresAt: timeOf(res[3]), Currency: res[5], CreatedAt: timeOf(res[6]),
		}
		h.UnitPriceCents, _ = strconv.ParseInt(res[4], 10, 64)
		if len(res) > 7 && res[7] != "" {
			h.OrderID, _ = uuid.Parse(res[7])
		}
		if h.Status.Live() && !req.Now.Before(h.ExpiresAt) {
			h.Status = inventory.HoldExpired
		}
		return h, res[0] == "ok", nil
	case "nocfg":
		return inventory.Hold{}, false, inventory.ErrNotConfigured
	case "pass":
		return inventory.Hold{}, false, inventory.PassRefused(req.Pass)
	case "mismatch":
		return inventory.Hold{}, false, inventory.ErrIdempotencyMismatch.WithDetail("this Idempotency-Key was used for a different hold")
	case "limit":
		return inventory.Hold{}, false, inventory.ErrOverOrderLimit.WithDetail("at most %s tickets per order", res[2])
	case "notopen":
		return inventory.Hold{}, false, inventory.ErrSalesClosed.WithDetail("sales have not started yet")
	case "closed":
		return inventory.Hold{}, false, inventory.ErrSalesClosed.WithDetail("sales have ended")
	case "toomany":
		return inventory.Hold{}, false, inventory.ErrTooManyHolds.WithDetail("you already have %d live holds on this ticket type", req.MaxLive).
			WithRetryAfter(timeOf(res[2]).Sub(req.Now))
	case "soldout":
		n, _ := strconv.Atoi(res[2])
		return inventory.Hold{}, false, inventory.SoldOut(n)
	}
	return inventory.Hold{}, false, fmt.Errorf("hold %s: unexpected answer %q", req.ID, res[0])
}

func strs(vals []rueidis.RedisMessage) []string {
	out := make([]string, len(vals))
	for i, v := range vals {
		if s, err := v.ToString(); err == nil {
			out[i] = s
		} else if n, err := v.AsInt64(); err == nil {
			out[i] = strconv.FormatInt(n, 10)
		}
	}
	return out
}

// Get implements inventory.HoldStore.
func (s *Holds) Get(ctx context.Context, id string, now time.Time) (inventory.Hold, error) {
	tt, ok := inventory.ParseHoldID(id)
	if !ok {
		return inventory.Hold{}, inventory.ErrHoldNotFound
	}
	k := s.keys(tt)
	f, err := s.c.Do(ctx, s.c.B().Hmget().Key(k.hold(id)).Field("status", "expires", "customer", "qty", "price", "currency", "created", "order").Build()).ToArray()
	if err != nil {
		return inventory.Hold{}, fmt.Errorf("get hold %s: %w", id, err)
	}
	return holdFromFields(id, tt, strs(f), now)
}

// holdFromFields reads a hold record's fields: status, expires, customer, qty, price, currency,
// created and, when present, order (empty strings for missing ones).
func holdFromFields(id string, tt uuid.UUID, f []string, now time.Time) (inventory.Hold, error) {
	if len(f) < 7 || f[3] == "" {
		return inventory.Hold{}, inventory.ErrHoldNotFound
	}
	h := inventory.Hold{ID: id, TicketTypeID: tt, Status: inventory.HoldStatus(f[0]), ExpiresAt: timeOf(f[1]),
		Currency: f[5], CreatedAt: timeOf(f[6])}
	if len(f) > 7 && f[7] != "" {
		h.OrderID, _ = uuid.Parse(f[7])
	}
	h.CustomerID, _ = uuid.Parse(f[2])
	h.Quantity, _ = strconv.Atoi(f[3])
	h.UnitPriceCents, _ = strconv.ParseInt(f[4], 10, 64)
	if h.Status.Live() && !now.Before(h.ExpiresAt) {
		h.Status = inventory.HoldExpired
	}
	return h, nil
}

// Checkout implements inventory.HoldStore, in one round trip.
func (s *Holds) Checkout(ctx context.Context, id string, orderID uuid.UUID, until, now time.Time) (inventory.Hold, error) {
	tt, ok := inventory.ParseHoldID(id)
	if !ok {
		return inventory.Hold{}, inventory.ErrHoldNotFound
	}
	k := s.keys(tt)
	vals, err := checkoutScript.Exec(ctx, s.c, []string{k.live, k.hold(id)},
		[]string{id, msOf(now), msOf(until), durMs(s.keep), k.base, orderID.String()}).ToArray()
	if err != nil {
		return inventory.Hold{}, fmt.Errorf("check out hold %s: %w", id, err)
	}
	res := strs(vals)
	if res[0] == "notfound" {
		return inventory.Hold{}, inventory.ErrHoldNotFound
	}
	h, err := holdFromFields(id, tt, res[1:], now)
	if err != nil {
		return inventory.Hold{}, err
	}
	switch res[0] {
	case "ordered":
		return inventory.Hold{}, inventory.ErrHoldOrdered.WithDetail("the hold is checked out by another order")
	case "notlive":
		return inventory.Hold{}, inventory.ErrHoldNotLive.WithDetail("the hold has %s", h.Status)
	}
	return h, nil
}

// Release implements inventory.HoldStore.
func (s *Holds) Release(ctx context.Context, id string, now time.Time) error {
	return s.release(ctx, id, false)
}

// Cancel implements inventory.HoldStore.
func (s *Holds) Cancel(ctx context.Context, id string, now time.Time) error {
	return s.release(ctx, id, true)
}

func (s *Holds) release(ctx context.Context, id string, cancel bool) error {
	tt, ok := inventory.ParseHoldID(id)
	if !ok {
		return inventory.ErrHoldNotFound
	}
	k := s.keys(tt)
	flag := "0"
	if cancel {
		flag = "1"
	}
	res, err := releaseScript.Exec(ctx, s.c, []string{k.held, k.live, k.hold(id)}, []string{k.base, id, flag}).ToString()
	if err != nil {
		return fmt.Errorf("release hold %s: %w", id, err)
	}
	switch res {
	case "notfound":
		return inventory.ErrHoldNotFound
	case "ordered":
		return inventory.ErrHoldOrdered.WithDetail("the hold is checked out; its order gives the tickets back if the payment fails")
	}
	return nil
}

// Claim implements inventory.HoldStore.
func (s *Holds) Claim(ctx context.Context, h inventory.Hold, now time.Time, claimTTL time.Duration) (inventory.Hold, error) {
	k := s.keys(h.TicketTypeID)
	res, err := claimScript.Exec(ctx, s.c, []string{k.cfg, k.sold, k.held, k.live, k.hold(h.ID)},
		[]string{k.base, msOf(now), durMs(claimTTL), h.ID, strconv.Itoa(h.Quantity), h.CustomerID.String(),
			strconv.FormatInt(h.UnitPriceCents, 10), h.Currency, durMs(s.keep), msOf(h.CreatedAt)}).AsStrSlice()
	if err != nil {
		return inventory.Hold{}, fmt.Errorf("claim hold %s: %w", h.ID, err)
	}
	switch res[0] {
	case "nocfg":
		return inventory.Hold{}, inventory.ErrNotConfigured
	case "committed":
		h.Status = inventory.HoldCommitted
		return h, nil
	case "soldout":
		n, _ := strconv.Atoi(res[1])
		return inventory.Hold{}, inventory.SoldOut(n)
	}
	h.Status, h.ExpiresAt = inventory.HoldClaimed, timeOf(res[1])
	return h, nil
}

// Finalize implements inventory.HoldStore.
func (s *Holds) Finalize(ctx context.Context, h inventory.Hold, sold int, _ time.Time) error {
	k := s.keys(h.TicketTypeID)
	err := finalizeScript.Exec(ctx, s.c, []string{k.sold, k.held, k.live, k.hold(h.ID), k.cfg},
		[]string{k.base, h.ID, strconv.Itoa(h.Quantity), strconv.Itoa(sold), durMs(s.keep), h.CustomerID.String(),
			strconv.FormatInt(h.UnitPriceCents, 10), h.Currency, msOf(h.ExpiresAt), msOf(h.CreatedAt)}).Error()
	if err != nil {
		return fmt.Errorf("finalize hold %s: %w", h.ID, err)
	}
	return nil
}

// Stock implements inventory.HoldStore. The ticket types' scripts are pipelined in one round trip.
func (s *Holds) Stock(ctx context.Context, ids []uuid.UUID, now time.Time) ([]inventory.Stock, error) {
	execs := make([]rueidis.LuaExec, len(ids))
	for i, id := range ids {
		k := s.keys(id)
		execs[i] = rueidis.LuaExec{Keys: []string{k.cfg, k.sold, k.held, k.live}, Args: []string{k.base, msOf(now)}}
	}
	out := make([]inventory.Stock, 0, len(ids))
	var missing error
	for i, r := range stockScript.ExecMulti(ctx, s.c, execs...) {
		vals, err := r.ToArray()
		if err != nil {
			return nil, fmt.Errorf("stock of %s: %w", ids[i], err)
		}
		res := strs(vals)
		if res[0] == "nocfg" {
			missing = inventory.ErrNotConfigured
			continue
		}
		s.pruned(vals, 4)
		st := inventory.Stock{TicketTypeID: ids[i]}
		st.Capacity, _ = strconv.Atoi(res[1])
		st.Sold, _ = strconv.Atoi(res[2])
		st.Held, _ = strconv.Atoi(res[3])
		out = append(out, st)
	}
	return out, missing
}
