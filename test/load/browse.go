package main

import (
	"context"
	"net/http"
)

// runBrowse: cached availability reads. Afterwards the cache hit ratio of the run comes from the
// targets' onsale_inventory_cache_hits_total and onsale_inventory_cache_misses_total
// (cache="availability"), read before and after.
func runBrowse(ctx context.Context, e *env) (*Result, error) {
	o := e.o
	loop := Loop{Workers: o.Connections, Duration: o.Duration, Rate: o.Rate}
	res := newResult(e, "browse", loop.Mode())
	base, err := e.runBaseline(ctx, loop)
	if err != nil {
		return nil, err
	}
	res.Baseline = base
	s, err := e.createSale(ctx, "browse", 1000, 4)
	if err != nil {
		return nil, err
	}
	res.SetSale(s)
	path := "/v1/events/" + s.Event + "/availability"
	for _, t := range o.Targets { // warm every replica's cache
		e.admin.Do(ctx, Request{Method: http.MethodGet, Target: t, Path: path})
	}
	before, berr := e.scrapeAll(ctx)
	rec := NewRecorder("availability")
	stop := startProgress(e.prog, "browse    ", rec)
	el := loop.Run(ctx, rec, func(ctx context.Context, w int, i int64) Outcome {
		r := e.c.Do(ctx, Request{Method: http.MethodGet, Path: path})
		if r.Status != http.StatusOK {
			rec.Note("availability: %s", r.Problem())
		}
		return r.Outcome()
	})
	stop()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	after, aerr := e.scrapeAll(ctx)
	res.AddPhase(rec.Phase(el), true)
	bad := rec.Unexpected(http.StatusOK, http.StatusNotModified)
	res.Invariant("every read answered 200", bad == 0, "%d of %d reads not 200", bad, rec.Count())

	ratio := 0.0
	if base.ThroughputRPS > 0 {
		ratio = res.ThroughputRPS / base.ThroughputRPS
	}
	res.Target("read throughput ≥ 80% of baseline", ratio >= 0.8, "%.0f reads/s = %.1f%% of %.0f/s", res.ThroughputRPS, 100*ratio, base.ThroughputRPS)
	sel := map[string]string{"cache": "availability"}
	h0, ok1 := sumAll(before, "onsale_inventory_cache_hits_total", sel)
	h1, ok2 := sumAll(after, "onsale_inventory_cache_hits_total", sel)
	m0, _ := sumAll(before, "onsale_inventory_cache_misses_total", sel)
	m1, _ := sumAll(after, "onsale_inventory_cache_misses_total", sel)
	switch {
	case berr != nil || aerr != nil:
		res.NotMeasured("cache hit ratio ≥ 99.9%", "could not read /metrics: "+errText(berr, aerr))
	case !ok1 && !ok2:
		res.NotMeasured("cache hit ratio ≥ 99.9%", "the targets export no onsale_inventory_cache_hits_total{cache=\"availability\"}")
	default:
		hits, misses := h1-h0, m1-m0
		hr := 0.0
		if hits+misses > 0 {
			hr = hits / (hits + misses)
		}
		res.Set("cache_hits", hits)
		res.Set("cache_misses", misses)
		res.Set("cache_hit_ratio", round(hr, 6))
		res.Target("cache hit ratio ≥ 99.9%", hr >= 0.999, "%.4f%% (%.0f hits, %.0f misses during the run)", 100*hr, hits, misses)
	}
	return res, nil
}

func errText(errs ...error) string {
	for _, err := range errs {
		if err != nil {
			return err.Error()
		}
	}
	return ""
}
