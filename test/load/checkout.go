package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// runCheckout: holds are prepared ahead, then orders arrive in an open loop at --rate for
// --duration. Order creation latency counts from each order's intended send time; every order is
// then followed on its event stream (SSE) to measure order-to-confirmed latency, from the 202
// answer to the "confirmed" event.
func runCheckout(ctx context.Context, e *env) (*Result, error) {
	o := e.o
	loop := Loop{Workers: o.Connections, Duration: o.Duration, Rate: o.Rate}
	res := newResult(e, "checkout", loop.Mode())
	base, err := e.runBaseline(ctx, loop)
	if err != nil {
		return nil, err
	}
	res.Baseline = base
	n := int(o.Rate * o.Duration.Seconds())
	if n < 1 || n > 1000000 {
		return nil, fmt.Errorf("rate × duration = %d orders: want 1 to 1,000,000", n)
	}
	latency, latencyFrom := o.LatencyMS, "--latency-ms"
	if latency == 0 {
		latency, latencyFrom = 50, "the server default ONSALE_SIMULATED_LATENCY=50ms"
		if p := newProvider(o.Provider); p != nil {
			if l, err := p.LatencyMS(ctx); err == nil {
				latency, latencyFrom = l, "the provider's mode"
			}
		}
	}
	s, err := e.createSale(ctx, "checkout", n, 1)
	if err != nil {
		return nil, err
	}
	res.SetSale(s)
	customers, _, err := e.prepareCustomers(ctx, "shopper", e.customersFor(n, min(n, o.MaxStreams)))
	if err != nil {
		return nil, err
	}
	res.noteHoldCaps(ceilDiv(n, len(customers)))

	// The holds, ahead: they must outlive the run (ONSALE_HOLD_TTL, 2 minutes by default).
	holds, err := e.holdsAhead(ctx, s, customers, n)
	if err != nil {
		return nil, err
	}
	earliest := holds[0].expires
	for _, h := range holds {
		if h.expires.Before(earliest) {
			earliest = h.expires
		}
	}
	if time.Until(earliest) < o.Duration+5*time.Second {
		res.Note("the first holds expire %.0fs from now, before the run ends: raise the servers' ONSALE_HOLD_TTL or shorten the preparation", time.Until(earliest).Seconds())
	}

	// Streams are long requests: their own client, no connection bound, no request deadline.
	sc := e.client(0, 0)
	defer sc.Close()
	orderRec, confirmRec := NewRecorder("order"), NewRecorder("order to confirmed")
	var confirmed, failed, lost, errs atomic.Int64
	var follow sync.WaitGroup
	streams := make(chan struct{}, o.MaxStreams)
	// The servers' CPU from the first order to the last confirmation: what the orders cost them,
	// whatever process they ran in (a split deployment's work is spread over several).
	cpuBefore, cpuErr := e.serverCPU(ctx)
	stop := startProgress(e.prog, "checkout  ", orderRec)
	start := time.Now()
	el := loop.Run(ctx, orderRec, func(ctx context.Context, w int, i int64) Outcome {
		h := holds[i]
		r, id := e.order(ctx, e.c, h.cu, h.id, fmt.Sprintf("checkout-%s-%d", e.runID, i), "")
		if id == "" {
			errs.Add(1)
			orderRec.Note("order: %s", r.Problem())
			return r.Outcome()
		}
		accepted := r.End
		follow.Go(func() {
			fctx, cancel := context.WithTimeout(ctx, o.ConfirmWait)
			defer cancel()
			select { // bounded streams: files are finite on both sides
			case streams <- struct{}{}:
				defer func() { <-streams }()
			case <-fctx.Done():
				lost.Add(1)
				confirmRec.Note("order %s: no stream slot within %s", id, o.ConfirmWait)
				return
			}
			st, at, err := followOrder(fctx, sc, sc.Next(), id, h.cu)
			switch {
			case err != nil:
				lost.Add(1)
				confirmRec.Note("%v", err)
			case st.Status == "confirmed":
				confirmed.Add(1)
				confirmRec.Record(accepted, Outcome{Status: http.StatusOK, End: at})
			default:
				failed.Add(1)
				confirmRec.Note("order %s %s: %s", id, st.Status, st.StatusDetail)
			}
		})
		return r.Outcome()
	})
	follow.Wait()
	all := time.Since(start)
	stop()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	cpuAfter, err := e.serverCPU(ctx)
	cpuErr = errors.Join(cpuErr, err)
	res.AddPhase(orderRec.Phase(el), true)
	res.AddPhase(confirmRec.Phase(all), false)
	created, conf := orderRec.Latency(), confirmRec.Latency()
	res.Set("orders", n)
	res.Set("latency_ms", latency)
	res.Set("confirmed", confirmed.Load())
	res.Set("failed", failed.Load())
	res.Set("lost_streams", lost.Load())
	res.Set("creation_p50_ms", created.P50)
	res.Set("creation_p99_ms", created.P99)
	res.Set("order_to_confirmed_p50_ms", conf.P50)
	res.Set("order_to_confirmed_p99_ms", conf.P99)
	res.Set("errors", errs.Load()+failed.Load()+lost.Load())
	// Per accepted order: each was created, and is confirmed by the servers even when its stream
	// was lost (then the figure covers whatever of its payment ran before the last scrape).
	if accepted := orderRec.StatusCount(http.StatusAccepted); cpuErr == nil && accepted > 0 {
		cpu := cpuAfter - cpuBefore
		res.Set("server_cpu_s", cpu)
		res.Set("server_cpu_ms_per_order", 1000*cpu/float64(accepted))
	} else if cpuErr != nil {
		res.Note("server CPU per order not measured: %v", cpuErr)
	}

	notAccepted := orderRec.Unexpected(http.StatusAccepted)
	res.Invariant("every order accepted (202)", notAccepted == 0, "%d of %d orders not 202", notAccepted, orderRec.Count())
	res.Invariant("every accepted order confirmed", confirmed.Load() == orderRec.StatusCount(http.StatusAccepted) && failed.Load() == 0 && lost.Load() == 0,
		"%d confirmed, %d failed, %d streams ended (or timed out after %s) before a final status", confirmed.Load(), failed.Load(), lost.Load(), o.ConfirmWait)

	at := ""
	if o.Rate < 1000 {
		at = fmt.Sprintf(" (at %.0f orders/s; the target is at 1,000/s)", o.Rate)
	}
	res.Target("order creation p99 ≤ 25 ms at 1,000 orders/s", created.P99 <= 25, "creation p99 %.2f ms%s", created.P99, at)
	res.Target(fmt.Sprintf("order-to-confirmed p99 ≤ L + 200 ms (L = %.0f ms, from %s)", latency, latencyFrom), conf.P99 <= latency+200,
		"order-to-confirmed p99 %.2f ms", conf.P99)
	return res, nil
}
