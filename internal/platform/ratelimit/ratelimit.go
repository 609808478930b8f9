// Package ratelimit holds per-key token buckets kept in process memory, bounded in the number of
// keys so a flood of distinct clients cannot grow it without limit.
package ratelimit

import (
	"net/netip"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// Memory is a set of token buckets, one per key.
type Memory struct {
	rps   rate.Limit
	burst int
	mu    sync.Mutex
	keys  *lru.Cache[string, *rate.Limiter]
}

// NewMemory allows rps requests per second per key with the given burst, remembering at most
// maxKeys keys (the least recently seen are forgotten, which only ever errs towards allowing).
func NewMemory(rps float64, burst, maxKeys int) *Memory {
	keys, err := lru.New[string, *rate.Limiter](maxKeys)
	if err != nil {
		panic(err) // only for maxKeys <= 0, a programming error
	}
	return &Memory{rps: rate.Limit(rps), burst: burst, keys: keys}
}

// Allow takes a token for key. When none is left it returns false and how long until one is.
func (m *Memory) Allow(key string) (bool, time.Duration) {
	m.mu.Lock()
	l, ok := m.keys.Get(key)
	if !ok {
		l = rate.NewLimiter(m.rps, m.burst)
		m.keys.Add(key, l)
	}
	m.mu.Unlock()
	now := time.Now()
	r := l.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// ClientKey is the key a client address is counted under: an IPv4 address as it is, an IPv6
// address by its /64, the network one subscriber gets (counting single IPv6 addresses would let
// anyone with a /64 send from 2^64 of them). Anything that is not an address is its own key.
func ClientKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	p, _ := a.Prefix(64)
	return p.String()
}
