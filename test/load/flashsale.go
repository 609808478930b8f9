package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// runFlashSale: an event with C tickets (max one per order) and N prepared buyers released at
// once. Each buyer holds one ticket; the winners check out with an Idempotency-Key and wait for
// their order to be confirmed (polling every 100 ms), while a sampler reads availability every
// 100 ms. The invariants: never more than C held+sold, exactly C sold, every buyer answered
// without 5xx or timeout within 5 s of the release, C orders confirmed and C charges.
func runFlashSale(ctx context.Context, e *env) (*Result, error) {
	o := e.o
	res := newResult(e, "flash-sale", fmt.Sprintf("barrier: %d buyers released at once", o.Buyers))
	base, err := e.runBaseline(ctx, Loop{Workers: o.Connections})
	if err != nil {
		return nil, err
	}
	res.Baseline = base
	s, err := e.createSale(ctx, "flash-sale", o.Tickets, 1)
	if err != nil {
		return nil, err
	}
	res.SetSale(s)
	buyers, prep, err := e.prepareCustomers(ctx, "buyer", o.Buyers)
	if err != nil {
		return nil, err
	}
	res.Set("buyers", o.Buyers)
	res.Set("capacity", o.Tickets)
	res.Set("prepare_s", round(prep.Seconds(), 1))
	expected := min(o.Buyers, o.Tickets)

	// The sampler: availability every 100 ms; any held+sold above capacity is an oversell.
	var samples, overSamples, maxSeen atomic.Int64
	sampleCtx, stopSampling := context.WithCancel(ctx)
	var sampler sync.WaitGroup
	sampler.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-sampleCtx.Done():
				return
			case <-tick.C:
			}
			st, r := e.availability(sampleCtx, s)
			if r.Status != http.StatusOK {
				continue
			}
			samples.Add(1)
			seen := int64(st.Held + st.Sold)
			for {
				m := maxSeen.Load()
				if seen <= m || maxSeen.CompareAndSwap(m, seen) {
					break
				}
			}
			if seen > int64(s.Capacity) {
				overSamples.Add(1)
			}
		}
	})

	holdRec := NewRecorder("hold")
	fromRelease := NewRecorder("hold, from release")
	orderRec := NewRecorder("order")
	pollRec := NewRecorder("order status poll")
	confirmRec := NewRecorder("order to confirmed")
	streamRec := NewRecorder("confirmed to its open stream")
	var winners, soldOut, unanswered, errs, confirmed, failedOrders, unconfirmed atomic.Int64
	var confirmedBeforeOpen, reopened atomic.Int64
	var maxAnswer atomic.Int64 // nanoseconds from the release
	orderIDs := make([]string, o.Buyers)
	var checkouts sync.WaitGroup

	// watch follows an order on its event stream, as a customer's page does, until a final
	// status. The latency that matters is from the confirmation (the event's "at", the server's
	// clock on this machine) to its arrival on the stream opened before it.
	watch := func(b Customer, id string, accepted, deadline time.Time) {
		for ctx.Err() == nil && time.Now().Before(deadline) {
			sctx, cancel := context.WithDeadline(ctx, deadline)
			resp, err := openStream(sctx, e.c, "", id, b)
			if err != nil {
				cancel()
				errs.Add(1)
				streamRec.Note("open the stream: %v", err)
				time.Sleep(100 * time.Millisecond)
				continue
			}
			first, done := true, false
			_ = readEvents(resp.Body, func(ev sseEvent) bool {
				var d statusData
				if ev.Event != "status" || json.Unmarshal([]byte(ev.Data), &d) != nil {
					return true
				}
				now := time.Now()
				switch d.Status {
				case "confirmed":
					if first {
						confirmedBeforeOpen.Add(1) // not through an open stream: not counted there
					} else {
						streamRec.Record(d.At, Outcome{Status: http.StatusOK, End: now})
					}
					confirmed.Add(1)
					confirmRec.Record(accepted, Outcome{Status: http.StatusOK, End: now})
					done = true
				case "failed":
					failedOrders.Add(1)
					errs.Add(1)
					confirmRec.Note("order %s failed: %s", id, d.StatusDetail)
					done = true
				}
				first = false
				return !done
			})
			resp.Body.Close()
			cancel()
			if done {
				return
			}
			reopened.Add(1) // ended without a final status (a reconnect, a draining replica)
		}
		unconfirmed.Add(1)
		confirmRec.Note("order %s not confirmed within %s", id, o.ConfirmWait)
	}

	checkout := func(i int, holdID string) {
		b := buyers[i]
		start := time.Now()
		var r Response
		var id string
		for attempt := 0; attempt < 5; attempt++ { // the key makes a retry safe
			r, id = e.order(ctx, e.c, b, holdID, fmt.Sprintf("flash-%s-%d", e.runID, i), "")
			if (r.Status != 0 && r.Status != http.StatusServiceUnavailable) || attempt == 4 {
				break
			}
			errs.Add(1)
			orderRec.Note("order (retried): %s", r.Problem())
			time.Sleep(retryAfter(r))
		}
		orderRec.Record(start, r.Outcome())
		if id == "" {
			errs.Add(1)
			orderRec.Note("order: %s", r.Problem())
			return
		}
		orderIDs[i] = id
		accepted := r.End
		deadline := accepted.Add(o.ConfirmWait)
		if o.Watch {
			watch(b, id, accepted, deadline)
			return
		}
		for time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(100 * time.Millisecond)
			t := time.Now()
			pr := e.c.Do(ctx, Request{Method: http.MethodGet, Path: "/v1/orders/" + id, Token: b.Token, From: b.From})
			pollRec.Record(t, pr.Outcome())
			var st struct {
				Status       string `json:"status"`
				StatusDetail string `json:"status_detail"`
			}
			if pr.Status != http.StatusOK || pr.Decode(&st) != nil {
				errs.Add(1)
				pollRec.Note("poll: %s", pr.Problem())
				continue
			}
			switch st.Status {
			case "confirmed":
				confirmed.Add(1)
				confirmRec.Record(accepted, Outcome{Status: http.StatusOK, End: pr.End})
				return
			case "failed":
				failedOrders.Add(1)
				errs.Add(1)
				confirmRec.Note("order %s failed: %s", id, st.StatusDetail)
				return
			}
		}
		unconfirmed.Add(1)
		confirmRec.Note("order %s not confirmed within %s", id, o.ConfirmWait)
	}

	release := make(chan struct{})
	var next atomic.Int64
	var workers sync.WaitGroup
	var t0 time.Time
	for range min(o.Connections, o.Buyers) {
		workers.Go(func() {
			<-release
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= o.Buyers {
					return
				}
				start := time.Now()
				r, holdID, _ := e.hold(ctx, e.c, buyers[i], s.TicketType, "")
				holdRec.Record(start, r.Outcome())
				fromRelease.Record(t0, r.Outcome())
				if r.Status != 0 && r.Status < 500 {
					if d := int64(r.End.Sub(t0)); d > maxAnswer.Load() {
						for {
							m := maxAnswer.Load()
							if d <= m || maxAnswer.CompareAndSwap(m, d) {
								break
							}
						}
					}
				}
				switch {
				case r.Status == http.StatusCreated && holdID != "":
					winners.Add(1)
					checkouts.Go(func() { checkout(i, holdID) })
				case r.Status == http.StatusConflict:
					soldOut.Add(1)
				case r.Status == 0 || r.Status >= 500:
					unanswered.Add(1)
					errs.Add(1)
					holdRec.Note("hold: %s", r.Problem())
				default:
					errs.Add(1)
					holdRec.Note("hold: %s", r.Problem())
				}
			}
		})
	}
	time.Sleep(100 * time.Millisecond) // let every worker reach the barrier
	stop := startProgress(e.prog, "flash-sale", holdRec, orderRec)
	t0 = time.Now()
	holdRec.Restart(t0)
	fromRelease.Restart(t0)
	orderRec.Restart(t0)
	confirmRec.Restart(t0)
	close(release)
	workers.Wait()
	holdsDone := time.Since(t0)
	checkouts.Wait()
	stop()
	all := time.Since(t0)
	stopSampling()
	sampler.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	e.logf("flash-sale: %d holds answered in %.2fs, orders settled after %.2fs", holdRec.Count(), holdsDone.Seconds(), all.Seconds())

	// The end state: availability is cached for about a second, so wait for it to settle.
	var final stock
	for deadline := time.Now().Add(10 * time.Second); ; {
		st, r := e.availability(ctx, s)
		if r.Status == http.StatusOK {
			final = st
			samples.Add(1)
			if seen := int64(st.Held + st.Sold); seen > maxSeen.Load() {
				maxSeen.Store(seen)
			}
			if seen := st.Held + st.Sold; seen > s.Capacity {
				overSamples.Add(1)
			}
			if st.Sold == expected && st.Held == 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}

	res.AddPhase(holdRec.Phase(holdsDone), true)
	res.AddPhase(fromRelease.Phase(holdsDone), false)
	res.AddPhase(orderRec.Phase(all), false)
	res.AddPhase(confirmRec.Phase(all), false)
	if o.Watch {
		res.AddPhase(streamRec.Phase(all), false)
	} else {
		res.AddPhase(pollRec.Phase(all), false)
	}

	oversold := max(0, maxSeen.Load()-int64(s.Capacity), int64(final.Sold-s.Capacity), winners.Load()-int64(s.Capacity))
	answeredWithin := time.Duration(maxAnswer.Load())
	res.Set("winners", winners.Load())
	res.Set("sold_out_answers", soldOut.Load())
	res.Set("sold", final.Sold)
	res.Set("held_at_end", final.Held)
	res.Set("max_held_plus_sold", maxSeen.Load())
	res.Set("availability_samples", samples.Load())
	res.Set("unanswered", unanswered.Load())
	res.Set("confirmed", confirmed.Load())
	res.Set("failed_orders", failedOrders.Load())
	res.Set("unconfirmed", unconfirmed.Load())
	res.Set("hold_p99_ms", holdRec.Latency().P99)
	res.Set("release_to_answer_p99_ms", fromRelease.Latency().P99)
	res.Set("answered_within_s", round(answeredWithin.Seconds(), 3))
	res.Set("order_p99_ms", orderRec.Latency().P99)
	res.Set("order_to_confirmed_p99_ms", confirmRec.Latency().P99)
	if o.Watch {
		l := streamRec.Latency()
		res.Set("confirmed_to_stream_p50_ms", l.P50)
		res.Set("confirmed_to_stream_p99_ms", l.P99)
		res.Set("confirmed_to_stream_count", streamRec.Count())
		res.Set("confirmed_before_stream_open", confirmedBeforeOpen.Load())
		res.Set("streams_reopened", reopened.Load())
	}

	res.Invariant("held+sold never above capacity (sampled every 100 ms)", overSamples.Load() == 0 && maxSeen.Load() <= int64(s.Capacity),
		"max held+sold %d of capacity %d over %d samples", maxSeen.Load(), s.Capacity, samples.Load())
	res.Invariant("holds granted == min(buyers, capacity)", winners.Load() == int64(expected),
		"%d holds granted, %d buyers told sold out", winners.Load(), soldOut.Load())
	res.Invariant("sold == min(buyers, capacity) at the end (availability API)", final.Sold == expected,
		"sold %d, held %d of capacity %d", final.Sold, final.Held, s.Capacity)

	if o.DatabaseURL != "" {
		f, err := checkDatabase(ctx, o.DatabaseURL, s.TicketType)
		if err != nil {
			res.Invariant("sold == capacity in PostgreSQL", false, "%v", err)
		} else {
			res.Set("db_sold", f.Sold)
			res.Set("db_tickets", f.Tickets)
			res.Set("db_orders", f.Orders)
			oversold = max(oversold, int64(f.Sold-s.Capacity), int64(f.Tickets-s.Capacity))
			res.Invariant("sold == capacity in PostgreSQL (inventory.ticket_types.sold, inventory.tickets rows)",
				f.Sold == expected && f.Tickets == expected, "sold %d, %d ticket rows, want %d", f.Sold, f.Tickets, expected)
			res.Invariant("confirmed orders == capacity in PostgreSQL (payment.orders)", f.Orders["confirmed"] == expected,
				"payment.orders by status: %v", f.Orders)
		}
	} else {
		res.NotChecked("sold == capacity in PostgreSQL", "no --database-url given")
	}
	res.Set("oversold", oversold)
	res.Set("errors", errs.Load())

	res.Invariant("every buyer answered (no 5xx, no timeout)", unanswered.Load() == 0,
		"%d of %d buyers unanswered", unanswered.Load(), o.Buyers)
	res.Invariant("no errors (unexpected statuses, failed orders)", errs.Load() == 0, "%d errors", errs.Load())
	res.Invariant(fmt.Sprintf("every buyer answered within %s of the release", o.AnswerWithin),
		unanswered.Load() == 0 && answeredWithin <= o.AnswerWithin, "last answer %.3fs after the release", answeredWithin.Seconds())
	res.Invariant("confirmed orders == min(buyers, capacity)", confirmed.Load() == int64(expected),
		"%d confirmed, %d failed, %d not confirmed within %s", confirmed.Load(), failedOrders.Load(), unconfirmed.Load(), o.ConfirmWait)

	if p := newProvider(o.Provider); p != nil {
		l, err := p.Ledger(ctx)
		if err != nil {
			res.Invariant("charges in the provider ledger == capacity", false, "%v", err)
		} else {
			ids := map[string]bool{}
			for _, id := range orderIDs {
				if id != "" {
					ids[id] = true
				}
			}
			charged, refunded := chargesFor(l, ids)
			res.Set("charges", charged)
			res.Set("refunds", refunded)
			res.Invariant("charges in the provider ledger == capacity", charged == expected && refunded == 0,
				"%d of this run's orders charged, %d refunded", charged, refunded)
		}
	} else {
		res.Set("charges", nil)
		res.NotChecked("charges in the provider ledger == capacity", "no --provider given")
	}

	if o.Watch {
		l := streamRec.Latency()
		res.Target("a confirmation reaches its open stream p99 ≤ 500 ms", streamRec.Count() > 0 && l.P99 <= 500,
			"p50 %.1f ms, p99 %.1f ms over %d streams (%d orders were confirmed before their stream opened)",
			l.P50, l.P99, streamRec.Count(), confirmedBeforeOpen.Load())
	}
	holdP99 := holdRec.Latency().P99
	res.Target("hold p99 ≤ 100 ms", holdP99 <= 100, "hold p99 %.2f ms (from send; %.2f ms from the release)", holdP99, fromRelease.Latency().P99)
	if o.Buyers >= 50000 && o.Tickets >= 1000 {
		res.Target("50,000 buyers for 1,000 tickets: 0 oversold, 0 errors, answered within 5 s",
			oversold == 0 && errs.Load() == 0 && unanswered.Load() == 0 && answeredWithin <= 5*time.Second,
			"%d buyers, %d tickets, last answer after %.2fs", o.Buyers, o.Tickets, answeredWithin.Seconds())
	} else {
		res.NotMeasured("50,000 buyers for 1,000 tickets", fmt.Sprintf("this run had %d buyers for %d tickets", o.Buyers, o.Tickets))
	}
	res.Note("accounts are prepared before the release; run the servers with ONSALE_ARGON2_MEMORY_KIB=1024 ONSALE_ARGON2_TIME=1 or preparing them takes minutes")
	res.Note("throughput = hold requests / time from the release to the last hold answer; hold p99 counts from the request's send, answered_within_s from the release")
	return res, nil
}
