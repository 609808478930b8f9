package redis

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/redis/rueidis"

	"github.com/onsale-dev/onsale/internal/inventory"
)

// Keys of customer C (after the optional prefix), all in C's own hash slot:
//
//	inv:{cust:C}:holds      sorted set: the customer's live holds of every ticket type, by end (ms)
//	inv:{cust:C}:k:<sha>    string: the fingerprint of the hold request an Idempotency-Key was
//	                        first used for (the key is hashed: clients choose it)

// KEYS: key. ARGV: fp ttl(ms).
var bindScript = rueidis.NewLuaScript(`
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]`)

// KEYS: holds. ARGV: id end now max. Answers {1} or {0, end of the earliest}.
var addScript = rueidis.NewLuaScript(`
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local known = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not known and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return {0, redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]}
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
if redis.call('PEXPIRETIME', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIREAT', KEYS[1], ARGV[2]) end
return {1}`)

// CustomerHolds is a CustomerHolds on Redis.
type CustomerHolds struct {
	c      rueidis.Client
	prefix string
}

var _ inventory.CustomerHolds = (*CustomerHolds)(nil)

// NewCustomerHolds returns a store whose keys start with prefix.
func NewCustomerHolds(c rueidis.Client, prefix string) *CustomerHolds {
	return &CustomerHolds{c: c, prefix: prefix}
}

func (s *CustomerHolds) base(id uuid.UUID) string {
	return s.prefix + "inv:{cust:" + id.String() + "}:"
}

// BindKey implements inventory.CustomerHolds.
func (s *CustomerHolds) BindKey(ctx context.Context, id uuid.UUID, key, fp string, _ time.Time, ttl time.Duration) (string, error) {
	sum := sha256.Sum256([]byte(key))
	k := s.base(id) + "k:" + base64.RawURLEncoding.EncodeToString(sum[:])
	bound, err := bindScript.Exec(ctx, s.c, []string{k}, []string{fp, durMs(ttl)}).ToString()
	if err != nil {
		return "", fmt.Errorf("bind idempotency key: %w", err)
	}
	return bound, nil
}

// Add implements inventory.CustomerHolds.
func (s *CustomerHolds) Add(ctx context.Context, id uuid.UUID, holdID string, expires, now time.Time, max int) (bool, time.Time, error) {
	vals, err := addScript.Exec(ctx, s.c, []string{s.base(id) + "holds"},
		[]string{holdID, msOf(expires), msOf(now), strconv.Itoa(max)}).ToArray()
	if err != nil {
		return false, time.Time{}, fmt.Errorf("count hold %s: %w", holdID, err)
	}
	res := strs(vals)
	if res[0] == "1" {
		return true, time.Time{}, nil
	}
	return false, timeOf(res[1]), nil
}

// Remove implements inventory.CustomerHolds.
func (s *CustomerHolds) Remove(ctx context.Context, id uuid.UUID, holdID string) error {
	if err := s.c.Do(ctx, s.c.B().Zrem().Key(s.base(id)+"holds").Member(holdID).Build()).Error(); err != nil {
		return fmt.Errorf("uncount hold %s: %w", holdID, err)
	}
	return nil
}
