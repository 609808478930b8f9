package main

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// runRefunds: an event of --orders confirmed orders is cancelled by its organizer, and the time
// until every order is refunded is measured, with the provider's ledger showing each charge
// refunded exactly once. Beside it, checkout runs on another event at --rate: its order p99 while
// the refunds run, against the same load just before the cancellation.
func runRefunds(ctx context.Context, e *env) (*Result, error) {
	o := e.o
	m := o.Orders
	loop := Loop{Workers: o.Connections, Duration: o.Duration, Rate: o.Rate}
	res := newResult(e, "refunds", fmt.Sprintf("an event of %d confirmed orders cancelled while checkout runs on another at %.0f/s", m, o.Rate))
	base, err := e.runBaseline(ctx, loop)
	if err != nil {
		return nil, err
	}
	res.Baseline = base
	perPhase := int(o.Rate * o.Duration.Seconds())
	if o.Rate <= 0 || perPhase < 1 || perPhase > 200000 {
		return nil, fmt.Errorf("--rate × --duration = %d orders per phase: want an open loop of 1 to 200,000", perPhase)
	}
	tok, err := e.organizerToken(ctx)
	if err != nil {
		return nil, err
	}

	// The event to cancel: m orders, confirmed.
	// Room to spare: a hold that lost its answer and was asked again must not leave an order short.
	s, err := e.createSale(ctx, "refunds", m+m/10+10, 1)
	if err != nil {
		return nil, err
	}
	res.SetSale(s)
	customers, _, err := e.prepareCustomers(ctx, "refundee", e.customersFor(m, 0))
	if err != nil {
		return nil, err
	}
	placed, _, err := e.placeOrders(ctx, s, customers, m, NewRecorder("order (event to cancel)"))
	if err != nil {
		return nil, err
	}
	if err := e.waitConfirmed(ctx, tok, s, m); err != nil {
		return nil, err
	}
	e.logf("%d orders confirmed on the event to cancel", m)

	// The other event's checkout, before and during the refunds.
	other, err := e.createSale(ctx, "refunds-other", 2*perPhase, 1)
	if err != nil {
		return nil, err
	}
	shoppers, _, err := e.prepareCustomers(ctx, "shopper", e.customersFor(perPhase, 0))
	if err != nil {
		return nil, err
	}
	checkout := func(name, tag string) (*Recorder, time.Duration, error) {
		holds, err := e.holdsAhead(ctx, other, shoppers, perPhase)
		if err != nil {
			return nil, 0, err
		}
		rec := NewRecorder(name)
		stop := startProgress(e.prog, name, rec)
		defer stop()
		el := loop.Run(ctx, rec, func(ctx context.Context, w int, i int64) Outcome {
			h := holds[i]
			r, id := e.order(ctx, e.c, h.cu, h.id, fmt.Sprintf("refunds-%s-%s-%d", e.runID, tag, i), "")
			if id == "" {
				rec.Note("order: %s", r.Problem())
			}
			return r.Outcome()
		})
		return rec, el, ctx.Err()
	}
	before, beforeEl, err := checkout("checkout before", "before")
	if err != nil {
		return nil, err
	}

	// The cancellation, followed on its progress view, while the second checkout runs.
	start := time.Now()
	r := e.admin.Do(ctx, Request{Method: http.MethodPost, Path: "/v1/events/" + s.Event + "/cancel", Token: tok,
		Body: map[string]string{"reason": "load test cancellation"}})
	if r.Status != http.StatusAccepted {
		return nil, fmt.Errorf("cancel the event: %s", r.Problem())
	}
	finished := make(chan time.Duration, 1)
	go func() {
		defer close(finished)
		for ctx.Err() == nil {
			var c struct {
				Status string `json:"status"`
			}
			r := e.admin.Do(ctx, Request{Method: http.MethodGet, Path: "/v1/events/" + s.Event + "/cancellation", Token: tok})
			if r.Status == http.StatusOK && r.Decode(&c) == nil && c.Status == "finished" {
				finished <- time.Since(start)
				return
			}
			if time.Since(start) > o.ConfirmWait {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	during, duringEl, err := checkout("checkout during", "during")
	if err != nil {
		return nil, err
	}
	took, ok := <-finished
	res.AddPhase(before.Phase(beforeEl), false)
	res.AddPhase(during.Phase(duringEl), true)
	b, d := before.Latency(), during.Latency()
	ratio := 0.0
	if b.P99 > 0 {
		ratio = d.P99 / b.P99
	}
	res.ThroughputRPS = 0
	if ok && took > 0 {
		res.ThroughputRPS = float64(m) / took.Seconds()
	}
	res.Set("orders_cancelled", m)
	res.Set("refund_s", round(took.Seconds(), 3))
	res.Set("refunds_per_s", round(res.ThroughputRPS, 1))
	res.Set("checkout_before_p99_ms", b.P99)
	res.Set("checkout_during_p99_ms", d.P99)
	res.Set("checkout_p99_ratio", round(ratio, 3))
	if ok {
		res.Invariant("the cancellation finished", true, "finished %.1fs after the cancel", took.Seconds())
	} else {
		res.Invariant("the cancellation finished", false, "not finished within %s of the cancel", o.ConfirmWait)
	}
	bad := before.Unexpected(http.StatusAccepted) + during.Unexpected(http.StatusAccepted)
	res.Invariant("every checkout on the other event accepted (202)", bad == 0, "%d of %d orders not 202", bad, before.Count()+during.Count())

	l, err := newProvider(o.Provider).Ledger(ctx)
	if err != nil {
		res.Invariant("each cancelled order refunded once, in full (provider ledger)", false, "%v", err)
		return res, nil
	}
	ids := map[string]bool{}
	for _, p := range placed {
		ids[p.OrderID] = true
	}
	var once, twice, partial int
	for _, en := range l.Entries {
		if !ids[en.Key] {
			continue
		}
		switch {
		case en.Refunds == 1 && en.RefundedCents == en.AmountCents:
			once++
		case en.Refunds > 1:
			twice++
		default:
			partial++
		}
	}
	res.Set("refunded_once", once)
	res.Set("refunded_twice", twice)
	res.Set("over_refunds", l.OverRefunds)
	res.Invariant("each cancelled order refunded once, in full (provider ledger)", once == m && twice == 0 && partial == 0 && l.OverRefunds == 0,
		"%d of %d refunded once in full, %d more than once, %d not in full, %d refunds refused as over the charge", once, m, twice, partial, l.OverRefunds)
	res.Target("checkout on another event unaffected: order p99 during the refunds ≤ 2 × before", ratio > 0 && ratio <= 2,
		"p99 %.2f ms during, %.2f ms before (%.2f ×)", d.P99, b.P99, ratio)
	res.Note("throughput_rps is refunds per second, from the cancel to the cancellation's finished status; p99_ms is the other event's order creation during the refunds")
	return res, nil
}

// waitConfirmed waits until the sale's n orders are confirmed, reading the organizer's sales
// summary.
func (e *env) waitConfirmed(ctx context.Context, tok string, s sale, n int) error {
	deadline := time.Now().Add(e.o.ConfirmWait)
	last := 0
	for time.Now().Before(deadline) {
		var sum struct {
			Totals struct {
				Confirmed int `json:"orders_confirmed"`
			} `json:"totals"`
		}
		r := e.admin.Do(ctx, Request{Method: http.MethodGet, Path: "/v1/events/" + s.Event + "/sales", Token: tok})
		if r.Status == http.StatusOK && r.Decode(&sum) == nil {
			if last = sum.Totals.Confirmed; last >= n {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("%d of %d orders confirmed after %s", last, n, e.o.ConfirmWait)
}
