package main

import (
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// limitedKind is a kind of request that the servers limit per client address by default, with a
// token bucket per address in each server process.
type limitedKind struct {
	name    string  // as the report says it
	setting string  // the servers' setting of the rate (the burst's is setting + "_BURST")
	rate    float64 // its default: requests per second per address
	burst   float64 // its default burst
}

// limitedKinds lists them with the servers' defaults.
func limitedKinds() []limitedKind {
	return []limitedKind{
		{name: "POST /v1/auth/*", setting: "ONSALE_RATE_LIMIT_AUTH", rate: 5, burst: 300},
		{name: "POST /v1/holds", setting: "ONSALE_RATE_LIMIT_HOLDS", rate: 20, burst: 600},
	}
}

// kindOf returns the index in limitedKinds of a request's kind, or -1.
func kindOf(method, path string) int {
	switch {
	case method != http.MethodPost:
		return -1
	case strings.HasPrefix(path, "/v1/auth/"):
		return 0
	case path == "/v1/holds" || strings.HasPrefix(path, "/v1/holds?"):
		return 1
	}
	return -1
}

// tally counts, per source address and server, the requests of each limited kind, and replays
// them against a token bucket with the servers' default limits: how many a server with the
// defaults would have refused. It also counts the 429 answers that name a rate-limit policy. It
// is safe for concurrent use; a nil *tally counts nothing.
type tally struct {
	mu      sync.Mutex
	kinds   []limitedKind
	buckets map[tallyKey]*tokenBucket
	limited map[string]int64 // 429 answers by RateLimit-Policy name
}

type tallyKey struct {
	src, target string
	kind        int
}

// tokenBucket replays one address's requests to one server against a default limit.
type tokenBucket struct {
	n, refused int64
	tokens     float64
	at         time.Time
}

func newTally() *tally {
	return &tally{kinds: limitedKinds(), buckets: map[tallyKey]*tokenBucket{}, limited: map[string]int64{}}
}

// count records an answered request sent at sent from src to target.
func (t *tally) count(src net.IP, target, method, path string, sent time.Time, r Response) {
	if t == nil {
		return
	}
	k := kindOf(method, path)
	policy := ""
	if r.Status == http.StatusTooManyRequests {
		policy, _, _ = strings.Cut(r.Header.Get("RateLimit-Policy"), ";")
		policy = strings.Trim(policy, `"`)
	}
	if k < 0 && policy == "" {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if policy != "" {
		t.limited[policy]++
	}
	if k < 0 {
		return
	}
	key := tallyKey{src: src.String(), target: target, kind: k}
	b := t.buckets[key]
	lim := t.kinds[k]
	if b == nil {
		b = &tokenBucket{tokens: lim.burst, at: sent}
		t.buckets[key] = b
	}
	b.n++
	if sent.After(b.at) {
		b.tokens = min(lim.burst, b.tokens+lim.rate*sent.Sub(b.at).Seconds())
		b.at = sent
	}
	if b.tokens >= 1 {
		b.tokens--
	} else {
		b.refused++
	}
}

// kindFigures are one limited kind's counts over a run.
type kindFigures struct {
	Total     int64 `json:"total"`
	MaxPerSrc int64 `json:"max_per_address"` // the most one source address sent to one server
	Refused   int64 `json:"refused_at_defaults"`
}

// figures sums the counts per kind.
func (t *tally) figures() []kindFigures {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]kindFigures, len(t.kinds))
	for k, b := range t.buckets {
		f := &out[k.kind]
		f.Total += b.n
		f.MaxPerSrc = max(f.MaxPerSrc, b.n)
		f.Refused += b.refused
	}
	return out
}

// limitedAnswers returns the 429 answers that named a rate-limit policy, by policy.
func (t *tally) limitedAnswers() map[string]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]int64, len(t.limited))
	for p, n := range t.limited {
		out[p] = n
	}
	return out
}

// noteSources reports the source addresses the run used and where its requests stand against
// the servers' default per-address limits.
func (r *Result) noteSources(e *env) {
	r.Set("source_addresses", max(1, len(e.sources)))
	r.Note("%s", e.sourcesWhy)
	figs := e.tally.figures()
	perKind := map[string]kindFigures{}
	for i, k := range e.tally.kinds {
		f := figs[i]
		if f.Total == 0 {
			continue
		}
		perKind[k.name] = f
		def := fmt.Sprintf("%s %g/s, burst %g", k.setting, k.rate, k.burst)
		if f.Refused == 0 {
			r.Note("%s: %d in all, at most %d from one source address to one server; the servers' default limit (%s) would have refused none",
				k.name, f.Total, f.MaxPerSrc, def)
		} else {
			r.Note("%s: %d in all, at most %d from one source address to one server; the servers' default limit (%s) would have refused %d of them: run the servers with %s=0 or spread the load over more source addresses (docs/benchmarks.md)",
				k.name, f.Total, f.MaxPerSrc, def, f.Refused, k.setting)
		}
	}
	if len(perKind) > 0 {
		r.Set("per_source_address", perKind)
	}
	if limited := e.tally.limitedAnswers(); len(limited) > 0 {
		names := make([]string, 0, len(limited))
		var total int64
		for p, n := range limited {
			names = append(names, p)
			total += n
		}
		slices.Sort(names)
		parts := make([]string, len(names))
		for i, p := range names {
			parts[i] = fmt.Sprintf("%q %d", p, limited[p])
		}
		r.Note("the servers refused %d requests with 429 for a per-address rate limit (by policy: %s); the tool waited as told and retried where it could",
			total, strings.Join(parts, ", "))
		r.Set("rate_limited_answers", limited)
	}
}
