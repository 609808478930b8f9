package main

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// runHolds: sustained hold-then-release on a large ticket type with many customers. Each
// operation is POST /v1/holds then DELETE /v1/holds/{id}; throughput counts hold requests and the
// latency is the hold's. Worker w cycles through its own customers (w, w+W, w+2W, ...), so a
// customer has at most one live hold when there are at least as many customers as workers.
func runHolds(ctx context.Context, e *env) (*Result, error) {
	o := e.o
	loop := Loop{Workers: o.Connections, Duration: o.Duration, Rate: o.Rate}
	res := newResult(e, "holds", loop.Mode())
	base, err := e.runBaseline(ctx, loop)
	if err != nil {
		return nil, err
	}
	res.Baseline = base
	s, err := e.createSale(ctx, "holds", o.Capacity, 1)
	if err != nil {
		return nil, err
	}
	res.SetSale(s)
	n := max(o.Customers, 1)
	customers, _, err := e.prepareCustomers(ctx, "holder", n)
	if err != nil {
		return nil, err
	}
	own := make([][]int, loop.Workers) // each worker's customers
	for w := range own {
		if n >= loop.Workers {
			for c := w; c < n; c += loop.Workers {
				own[w] = append(own[w], c)
			}
		} else {
			own[w] = []int{w % n}
		}
	}
	share := ceilDiv(loop.Workers, n)
	if share > o.HoldsPerCust {
		res.Note("%d workers share %d customers: up to %d live holds per customer, above --holds-per-customer %d", loop.Workers, n, share, o.HoldsPerCust)
	}
	res.noteHoldCaps(share)
	turn := make([]int, loop.Workers)
	holdRec, relRec := NewRecorder("hold"), NewRecorder("release")
	stop := startProgress(e.prog, "holds     ", holdRec)
	el := loop.Run(ctx, holdRec, func(ctx context.Context, w int, i int64) Outcome {
		mine := own[w]
		cu := customers[mine[turn[w]%len(mine)]]
		turn[w]++
		target := e.c.Next()
		r, id, _ := e.hold(ctx, e.c, cu, s.TicketType, target)
		if id != "" {
			t := time.Now()
			rr := e.c.Do(ctx, Request{Method: http.MethodDelete, Target: target, Path: "/v1/holds/" + id, Token: cu.Token, From: cu.From})
			relRec.Record(t, rr.Outcome())
			if rr.Status != http.StatusNoContent {
				relRec.Note("release: %s", rr.Problem())
			}
		} else {
			holdRec.Note("hold: %s", r.Problem())
		}
		return r.Outcome()
	})
	stop()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	res.AddPhase(holdRec.Phase(el), true)
	res.AddPhase(relRec.Phase(el), false)
	hold, rel := holdRec.Latency(), relRec.Latency()
	res.Set("customers", n)
	res.Set("capacity", o.Capacity)
	res.Set("holds", holdRec.Count())
	res.Set("releases", relRec.Count())
	res.Set("hold_p99_ms", hold.P99)
	res.Set("release_p99_ms", rel.P99)

	badHolds, badReleases := holdRec.Unexpected(http.StatusCreated), relRec.Unexpected(http.StatusNoContent)
	res.Invariant("every hold granted (201)", badHolds == 0, "%d of %d hold requests not 201", badHolds, holdRec.Count())
	res.Invariant("every release done (204)", badReleases == 0, "%d of %d releases not 204", badReleases, relRec.Count())

	ratio := 0.0
	if base.ThroughputRPS > 0 {
		ratio = res.ThroughputRPS / base.ThroughputRPS
	}
	res.Target("hold throughput ≥ 50% of baseline", ratio >= 0.5, "%.0f holds/s = %.1f%% of %.0f/s", res.ThroughputRPS, 100*ratio, base.ThroughputRPS)
	at := ""
	if o.Connections != 1000 {
		at = fmt.Sprintf(" (measured at %d connections, the target is at 1,000)", o.Connections)
	}
	res.Target("hold p99 ≤ 50 ms at 1,000 connections", hold.P99 <= 50, "hold p99 %.2f ms%s", hold.P99, at)
	res.Note("each operation is a hold then its release; throughput counts the holds, so a release's time lowers it")
	return res, nil
}
