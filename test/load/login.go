package main

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/argon2"
)

// runLogin: first the raw argon2id hash rate of this machine with the server's parameters, then
// a login storm (closed loop, existing accounts) whose logins/s are compared to it; meanwhile a
// light steady hold+release load at --rate measures hold p99 without the storm and during it.
// The servers run with their real (expensive) argon2 parameters here.
func runLogin(ctx context.Context, e *env) (*Result, error) {
	o := e.o
	storm := Loop{Workers: o.Connections, Duration: o.Duration}
	res := newResult(e, "login", fmt.Sprintf("login storm, closed loop; light holds at %.0f/s", o.Rate))
	raw := e.hashRate(ctx)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	e.logf("raw argon2id rate (%d KiB, t=%d, p=%d, %d goroutines): %.1f hashes/s", o.Argon2MemKiB, o.Argon2Time, o.Argon2Threads, runtime.GOMAXPROCS(0), raw)
	base, err := e.runBaseline(ctx, storm)
	if err != nil {
		return nil, err
	}
	res.Baseline = base
	s, err := e.createSale(ctx, "login", 1000000, 1)
	if err != nil {
		return nil, err
	}
	res.SetSale(s)
	accounts, _, err := e.prepareCustomers(ctx, "storm", max(o.Customers, 1))
	if err != nil {
		return nil, err
	}
	lightN := min(o.LightWorkers, len(accounts))
	lc := e.client(lightN, o.Timeout) // its own connections: no queueing behind the storm's
	defer lc.Close()
	light := func(rec, rel *Recorder) time.Duration {
		return Loop{Workers: lightN, Duration: o.Duration, Rate: o.Rate}.Run(ctx, rec, func(ctx context.Context, w int, i int64) Outcome {
			cu := accounts[w]
			target := lc.Next()
			r, id, _ := e.hold(ctx, lc, cu, s.TicketType, target)
			if id == "" {
				rec.Note("hold: %s", r.Problem())
				return r.Outcome()
			}
			t := time.Now()
			rr := lc.Do(ctx, Request{Method: http.MethodDelete, Target: target, Path: "/v1/holds/" + id, Token: cu.Token, From: cu.From})
			rel.Record(t, rr.Outcome())
			return r.Outcome()
		})
	}

	alone, aloneRel := NewRecorder("hold, no storm"), NewRecorder("release, no storm")
	stop := startProgress(e.prog, "holds alone", alone)
	aloneEl := light(alone, aloneRel)
	stop()

	during, duringRel := NewRecorder("hold, during storm"), NewRecorder("release, during storm")
	logins := NewRecorder("login storm")
	var stormEl time.Duration
	var wg sync.WaitGroup
	var shed atomic.Int64
	stop = startProgress(e.prog, "login storm", logins)
	wg.Go(func() {
		stormEl = storm.Run(ctx, logins, func(ctx context.Context, w int, i int64) Outcome {
			a := accounts[int(i)%len(accounts)]
			r := e.c.Do(ctx, Request{Method: http.MethodPost, Path: "/v1/auth/login",
				Body: map[string]string{"email": a.Email, "password": o.Password}, From: a.From})
			if r.Status == http.StatusServiceUnavailable || r.Status == http.StatusTooManyRequests {
				shed.Add(1)
				wait := min(retryAfter(r), 2*time.Second)
				select { // a well-behaved client waits as told
				case <-time.After(wait):
				case <-ctx.Done():
				}
			} else if r.Status != http.StatusOK {
				logins.Note("login: %s", r.Problem())
			}
			return r.Outcome()
		})
	})
	duringEl := light(during, duringRel)
	wg.Wait()
	stop()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	res.AddPhase(logins.Phase(stormEl), true)
	res.AddPhase(alone.Phase(aloneEl), false)
	res.AddPhase(during.Phase(duringEl), false)
	res.AddPhase(aloneRel.Phase(aloneEl), false)
	res.AddPhase(duringRel.Phase(duringEl), false)

	ok := logins.StatusCount(http.StatusOK)
	perS := float64(ok) / stormEl.Seconds()
	res.ThroughputRPS = perS
	hashRatio := 0.0
	if raw > 0 {
		hashRatio = perS / raw
	}
	a, d := alone.Latency().P99, during.Latency().P99
	p99Ratio := 0.0
	if a > 0 {
		p99Ratio = d / a
	}
	res.Set("accounts", len(accounts))
	res.Set("raw_hash_rate", round(raw, 1))
	res.Set("logins_per_s", round(perS, 1))
	res.Set("hash_ratio", round(hashRatio, 3))
	res.Set("logins_shed", shed.Load())
	res.Set("hold_p99_alone_ms", a)
	res.Set("hold_p99_storm_ms", d)
	res.Set("hold_p99_ratio", round(p99Ratio, 2))

	badLogins := logins.Unexpected(http.StatusOK, http.StatusServiceUnavailable, http.StatusTooManyRequests)
	res.Invariant("every login answered 200 (or shed with 503/429 and Retry-After)", badLogins == 0,
		"%d of %d logins answered otherwise", badLogins, logins.Count())
	bad := alone.Unexpected(http.StatusCreated) + during.Unexpected(http.StatusCreated) +
		aloneRel.Unexpected(http.StatusNoContent) + duringRel.Unexpected(http.StatusNoContent)
	res.Invariant("every light-load hold granted and released", bad == 0, "%d holds or releases failed", bad)
	res.Target("logins/s ≥ 90% of the raw argon2id rate", hashRatio >= 0.9, "%.1f logins/s = %.1f%% of %.1f hashes/s", perS, 100*hashRatio, raw)
	res.Target("hold p99 during the storm ≤ 2 × without", p99Ratio > 0 && p99Ratio <= 2, "%.2f ms during vs %.2f ms without = %.2f×", d, a, p99Ratio)
	res.Note("raw rate: argon2id %d KiB, t=%d, p=%d in GOMAXPROCS=%d goroutines in this process for %s (the servers must use the same parameters)",
		o.Argon2MemKiB, o.Argon2Time, o.Argon2Threads, runtime.GOMAXPROCS(0), o.Argon2For)
	res.Note("throughput_rps is successful logins per second; shed logins (503) wait Retry-After before retrying")
	return res, nil
}

// hashRate computes argon2id hashes in GOMAXPROCS goroutines for --argon2-seconds and returns
// hashes per second.
func (e *env) hashRate(ctx context.Context) float64 {
	o := e.o
	stop := startProgressFunc(e.prog, func(el time.Duration) string {
		return fmt.Sprintf("raw argon2id rate %4.0fs", el.Seconds())
	})
	defer stop()
	var n atomic.Int64
	t0 := time.Now()
	deadline := t0.Add(o.Argon2For)
	var wg sync.WaitGroup
	for g := range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			salt := []byte(fmt.Sprintf("load-salt-%06d", g))
			for time.Now().Before(deadline) && ctx.Err() == nil {
				argon2.IDKey([]byte(o.Password), salt, uint32(o.Argon2Time), uint32(o.Argon2MemKiB), uint8(o.Argon2Threads), 32)
				n.Add(1)
			}
		})
	}
	wg.Wait()
	return float64(n.Load()) / time.Since(t0).Seconds()
}
