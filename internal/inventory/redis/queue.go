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

// Keys of event E's waiting room (after the optional prefix), all in one hash slot:
//
//	inv:{room:E}:meta       hash: frozen (pre-queue size at the draw), seq (places after it),
//	                        through (admission cursor), tokens, last, tick, admitted, expired,
//	                        left, leftw (left places still ahead of the cursor), hist_at
//	inv:{room:E}:pre        sorted set: pre-queue arrivals by their draw; after the draw, place
//	                        n of the first frozen places is rank n-1
//	inv:{room:E}:line       list: arrivals after the draw in order; place frozen+i+1 is index i
//	inv:{room:E}:places     hash: customer → place, for arrivals after the draw
//	inv:{room:E}:st         hash: customer → left | done
//	inv:{room:E}:adm        hash: customer → pass expiry (ms), for everyone admitted
//	inv:{room:E}:inside     sorted set: customers whose pass is live, by expiry (ms)
//	inv:{room:E}:ip         hash: client address → places taken from it
//	inv:{room:E}:hist       list: "ms:admitted" samples a second apart, newest first
//	inv:{room:E}:gone:<C>   string: C's pass was ended early (left or done); read by every
//	                        hold that presents a pass

// queueLua holds the functions every queue script shares. KEYS: meta pre line places st adm
// inside ip hist.
const queueLua = `
local meta, pre, line, places, st, adm, inside = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local function num(v) return tonumber(v) or 0 end
local function frozen() return redis.call('HGET', meta, 'frozen') end
local function freeze()
  local f = frozen()
  if f then return tonumber(f) end
  local n = redis.call('ZCARD', pre)
  redis.call('HSET', meta, 'frozen', n)
  return n
end
local function placeOf(c)
  local p = redis.call('HGET', places, c)
  if p then return tonumber(p) end
  local r = redis.call('ZRANK', pre, c)
  if not r then return nil end
  if frozen() then return r + 1 end
  return 0
end
local function memberAt(p)
  local f = num(frozen())
  if p <= f then return redis.call('ZRANGE', pre, p - 1, p - 1)[1] end
  return redis.call('LINDEX', line, p - f - 1)
end
-- entry answers {status, place, through, pass expiry} for a customer with a place.
local function entry(c, place, now)
  local through = num(redis.call('HGET', meta, 'through'))
  local s = redis.call('HGET', st, c)
  local exp = redis.call('HGET', adm, c) or '0'
  if s then return {s, tostring(place), tostring(through), exp} end
  if place == 0 then return {'pre_queue', '0', tostring(through), '0'} end
  if place > through then return {'waiting', tostring(place), tostring(through), '0'} end
  if tonumber(exp) > now then return {'admitted', tostring(place), tostring(through), exp} end
  return {'expired', tostring(place), tostring(through), exp}
end
local function prune(now)
  local n = redis.call('ZREMRANGEBYSCORE', inside, '-inf', now)
  if n > 0 then redis.call('HINCRBY', meta, 'expired', n) end
end
local function state(now, opensAt)
  prune(now)
  local m = redis.call('HMGET', meta, 'frozen', 'seq', 'through', 'admitted', 'expired', 'left', 'leftw')
  local opened = m[1] and 1 or 0
  local placesN, waiting, preN = 0, 0, redis.call('ZCARD', pre)
  local through = num(m[3])
  if m[1] then
    placesN = num(m[1]) + num(m[2])
    waiting = math.max(placesN - through - num(m[7]), 0)
  end
  local rate = '-1'
  local hist = redis.call('LRANGE', KEYS[9], 0, -1)
  local oldT, oldA
  for _, s in ipairs(hist) do
    local t, a = string.match(s, '(%d+):(%d+)')
    t, a = tonumber(t), tonumber(a)
    if now - t <= 61000 then oldT, oldA = t, a end
  end
  if oldT and now - oldT >= 5000 then
    rate = tostring(math.floor((num(m[4]) - oldA) * 60000000 / (now - oldT)))
  end
  return {'ok', tostring(opened), tostring(preN), tostring(placesN), tostring(through), tostring(waiting),
    tostring(num(m[4])), tostring(redis.call('ZCARD', inside)), tostring(num(m[5])), tostring(num(m[6])), rate}
end
`

// KEYS[10]: gone. ARGV: customer address maxPerAddress draw now opensAt.
var joinScript = rueidis.NewLuaScript(queueLua + `
local c, now = ARGV[1], tonumber(ARGV[5])
local opened = now >= tonumber(ARGV[6]) or frozen()
if opened then freeze() end
local place = placeOf(c)
if place then
  local e = entry(c, place, now)
  if e[1] ~= 'left' and e[1] ~= 'expired' then table.insert(e, 1, 'exists') return e end
end
if ARGV[2] ~= '' then
  if redis.call('HINCRBY', KEYS[8], ARGV[2], 1) > tonumber(ARGV[3]) then
    redis.call('HINCRBY', KEYS[8], ARGV[2], -1)
    return {'addr'}
  end
end
redis.call('HDEL', st, c)
redis.call('HDEL', adm, c)
redis.call('DEL', KEYS[10])
if not opened then
  redis.call('ZADD', pre, ARGV[4], c)
  local e = entry(c, 0, now)
  table.insert(e, 1, 'new')
  return e
end
local seq = redis.call('HINCRBY', meta, 'seq', 1)
place = num(frozen()) + seq
redis.call('RPUSH', line, c)
redis.call('HSET', places, c, place)
local e = entry(c, place, now)
table.insert(e, 1, 'new')
return e
`)

// ARGV: customer now.
var entryScript = rueidis.NewLuaScript(queueLua + `
local place = placeOf(ARGV[1])
if not place then return {'none'} end
local e = entry(ARGV[1], place, tonumber(ARGV[2]))
table.insert(e, 1, 'ok')
return e
`)

// KEYS[10]: gone. ARGV: customer now how (left|done) goneKeep.
var endScript = rueidis.NewLuaScript(queueLua + `
local c, now = ARGV[1], tonumber(ARGV[2])
local place = placeOf(c)
if not place then return 'none' end
local e = entry(c, place, now)
if ARGV[3] == 'done' and e[1] ~= 'admitted' then return 'skip' end
if e[1] == 'left' or e[1] == 'done' then return 'ok' end
if place == 0 then
  redis.call('ZREM', pre, c) -- before the draw, leaving takes no place
  return 'ok'
end
redis.call('HSET', st, c, ARGV[3])
if ARGV[3] == 'left' then redis.call('HINCRBY', meta, 'left', 1) end
if e[1] == 'waiting' then redis.call('HINCRBY', meta, 'leftw', 1) end
if e[1] == 'admitted' then
  redis.call('ZREM', inside, c)
  redis.call('SET', KEYS[10], ARGV[3], 'PXAT', tonumber(e[4]) + tonumber(ARGV[4]))
end
return 'ok'
`)

// ARGV: now opensAt rate maxShoppers lifetime paused tick.
var admitScript = rueidis.NewLuaScript(queueLua + `
local now, opensAt = tonumber(ARGV[1]), tonumber(ARGV[2])
if now < opensAt and not frozen() then return state(now, opensAt) end
local f = freeze()
prune(now)
local tick = math.floor(now / tonumber(ARGV[7]))
-- A tick at or before the last one run (a call that waited, with an earlier clock reading)
-- decides nothing: admission times only move forward.
if num(redis.call('HGET', meta, 'tick')) >= tick then return state(now, opensAt) end
redis.call('HSET', meta, 'tick', tick)
local rate, cap, lifetime, paused = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6] == '1'
local m = redis.call('HMGET', meta, 'tokens', 'last', 'through', 'seq', 'leftw', 'admitted')
-- Tokens are counted in thousandths, in integers, so every replica and adapter rounds alike.
local burst = math.max(1000, math.floor(rate * 1000 / 60))
local tokens = 1000
if m[2] then
  tokens = tonumber(m[1]) or 0
  if not paused then tokens = math.min(tokens + math.floor(math.max(now - tonumber(m[2]), 0) * rate / 60), burst) end
end
local n = 1000000
if rate > 0 then n = math.floor(tokens / 1000) end
if paused then n = 0 end
if cap > 0 then n = math.min(n, math.max(cap - redis.call('ZCARD', inside), 0)) end
local through, total, leftw, admitted = num(m[3]), f + num(m[4]), num(m[5]), num(m[6])
local steps = 0
while n > 0 and through < total and steps < 20000 do
  steps = steps + 1
  through = through + 1
  local c = memberAt(through)
  local s = c and redis.call('HGET', st, c)
  if c and not s and placeOf(c) == through then
    local exp = now + lifetime
    redis.call('ZADD', inside, exp, c)
    redis.call('HSET', adm, c, exp)
    n = n - 1
    admitted = admitted + 1
    if rate > 0 then tokens = tokens - 1000 end
  elseif leftw > 0 then
    leftw = leftw - 1
  end
end
redis.call('HSET', meta, 'tokens', tokens, 'last', now, 'through', through, 'leftw', leftw, 'admitted', admitted)
if now - num(redis.call('HGET', meta, 'hist_at')) >= 1000 then
  redis.call('LPUSH', KEYS[9], now .. ':' .. admitted)
  redis.call('LTRIM', KEYS[9], 0, 61)
  redis.call('HSET', meta, 'hist_at', now)
end
return state(now, opensAt)
`)

// ARGV: now.
var stateScript = rueidis.NewLuaScript(queueLua + `return state(tonumber(ARGV[1]), 0)`)

// Queue is a QueueStore on Redis: every operation on a room is one Lua script over the room's
// keys (hash tag {room:<event>}), so it runs unchanged on Redis Cluster.
type Queue struct {
	c      rueidis.Client
	prefix string
}

var _ inventory.QueueStore = (*Queue)(nil)

// NewQueue returns a queue store whose keys start with prefix.
func NewQueue(c rueidis.Client, prefix string) *Queue {
	return &Queue{c: c, prefix: prefix}
}

func (q *Queue) base(event uuid.UUID) string { return q.prefix + "inv:{room:" + event.String() + "}:" }

// keys are the keys queueLua expects, in its order.
func (q *Queue) keys(event uuid.UUID, extra ...string) []string {
	b := q.base(event)
	return append([]string{b + "meta", b + "pre", b + "line", b + "places", b + "st", b + "adm", b + "inside", b + "ip", b + "hist"}, extra...)
}

func (q *Queue) gone(event, customer uuid.UUID) string {
	return q.base(event) + "gone:" + customer.String()
}

// entryOf reads {status, place, through, expiry} from res.
func entryOf(event, customer uuid.UUID, res []string) inventory.QueueEntry {
	e := inventory.QueueEntry{EventID: event, CustomerID: customer, Status: inventory.EntryStatus(res[0])}
	e.Place, _ = strconv.ParseInt(res[1], 10, 64)
	e.Through, _ = strconv.ParseInt(res[2], 10, 64)
	if ms, _ := strconv.ParseInt(res[3], 10, 64); ms > 0 {
		e.PassExpires = time.UnixMilli(ms).UTC()
	}
	return e
}

// Join implements inventory.QueueStore.
func (q *Queue) Join(ctx context.Context, req inventory.JoinRequest) (inventory.QueueEntry, error) {
	res, err := joinScript.Exec(ctx, q.c, q.keys(req.EventID, q.gone(req.EventID, req.CustomerID)), []string{
		req.CustomerID.String(), req.Address, strconv.Itoa(req.MaxPerAddress),
		strconv.FormatFloat(req.Draw, 'g', -1, 64), msOf(req.Now), msOf(req.OpensAt),
	}).AsStrSlice()
	if err != nil {
		return inventory.QueueEntry{}, fmt.Errorf("join queue of %s: %w", req.EventID, err)
	}
	if res[0] == "addr" {
		return inventory.QueueEntry{}, inventory.ErrAddressPlaces.WithDetail("at most %d places may be taken from one address", req.MaxPerAddress)
	}
	e := entryOf(req.EventID, req.CustomerID, res[1:])
	e.Created = res[0] == "new"
	return e, nil
}

// Entry implements inventory.QueueStore.
func (q *Queue) Entry(ctx context.Context, event, customer uuid.UUID, now time.Time) (inventory.QueueEntry, error) {
	res, err := entryScript.Exec(ctx, q.c, q.keys(event), []string{customer.String(), msOf(now)}).AsStrSlice()
	if err != nil {
		return inventory.QueueEntry{}, fmt.Errorf("queue entry of %s: %w", customer, err)
	}
	if res[0] == "none" {
		return inventory.QueueEntry{}, inventory.ErrNotInQueue
	}
	return entryOf(event, customer, res[1:]), nil
}

func (q *Queue) end(ctx context.Context, event, customer uuid.UUID, now time.Time, how string) (string, error) {
	res, err := endScript.Exec(ctx, q.c, q.keys(event, q.gone(event, customer)),
		[]string{customer.String(), msOf(now), how, durMs(goneKeep)}).ToString()
	if err != nil {
		return "", fmt.Errorf("%s queue of %s: %w", how, event, err)
	}
	return res, nil
}

// Leave implements inventory.QueueStore.
func (q *Queue) Leave(ctx context.Context, event, customer uuid.UUID, now time.Time) error {
	res, err := q.end(ctx, event, customer, now, "left")
	if err == nil && res == "none" {
		return inventory.ErrNotInQueue
	}
	return err
}

// EndPass implements inventory.QueueStore.
func (q *Queue) EndPass(ctx context.Context, event, customer uuid.UUID, now time.Time) error {
	_, err := q.end(ctx, event, customer, now, "done")
	return err
}

// goneKeep is how long an ended pass is remembered after it would have expired by itself.
const goneKeep = time.Minute

// PassEnded implements inventory.QueueStore. It is a plain read, not a cached one: a customer
// who left and came back must not be refused for a moment by a replica's stale copy.
func (q *Queue) PassEnded(ctx context.Context, event, customer uuid.UUID) (bool, error) {
	err := q.c.Do(ctx, q.c.B().Get().Key(q.gone(event, customer)).Build()).Error()
	if rueidis.IsRedisNil(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("pass of %s: %w", customer, err)
	}
	return true, nil
}

func stateOf(res []string) (inventory.RoomState, error) {
	if len(res) != 11 || res[0] != "ok" {
		return inventory.RoomState{}, fmt.Errorf("unexpected room state %q", res)
	}
	n := make([]int64, 10)
	for i := range n {
		n[i], _ = strconv.ParseInt(res[i+1], 10, 64)
	}
	s := inventory.RoomState{
		Opened: n[0] == 1, PreQueue: n[1], Places: n[2], Through: n[3], Waiting: n[4],
		Admitted: n[5], Shopping: n[6], Expired: n[7], Left: n[8], MeasuredPerMinute: -1,
	}
	if n[9] >= 0 {
		s.MeasuredPerMinute = float64(n[9]) / 1000
	}
	return s, nil
}

// Admit implements inventory.QueueStore.
func (q *Queue) Admit(ctx context.Context, req inventory.AdmitRequest) (inventory.RoomState, error) {
	paused := "0"
	if req.Paused {
		paused = "1"
	}
	res, err := admitScript.Exec(ctx, q.c, q.keys(req.EventID), []string{
		msOf(req.Now), msOf(req.OpensAt), strconv.Itoa(req.RatePerMinute), strconv.Itoa(req.MaxShoppers),
		durMs(req.PassLifetime), paused, durMs(max(req.Tick, time.Millisecond)),
	}).AsStrSlice()
	if err != nil {
		return inventory.RoomState{}, fmt.Errorf("admit to %s: %w", req.EventID, err)
	}
	return stateOf(res)
}

// State implements inventory.QueueStore.
func (q *Queue) State(ctx context.Context, event uuid.UUID, now time.Time) (inventory.RoomState, error) {
	res, err := stateScript.Exec(ctx, q.c, q.keys(event), []string{msOf(now)}).AsStrSlice()
	if err != nil {
		return inventory.RoomState{}, fmt.Errorf("state of room %s: %w", event, err)
	}
	return stateOf(res)
}

// Drop implements inventory.QueueStore.
func (q *Queue) Drop(ctx context.Context, event uuid.UUID) error {
	if err := q.c.Do(ctx, q.c.B().Del().Key(q.keys(event)...).Build()).Error(); err != nil {
		return fmt.Errorf("drop room %s: %w", event, err)
	}
	return nil
}
