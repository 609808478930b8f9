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

// runStreams: S pending orders (the provider paused, so they stay pending), then S concurrent
// GET /v1/orders/{id}/events streams spread over the targets and source addresses, held for
// --hold-for with a few requests per second of other traffic. With --rate they open at that
// arrival rate, else as fast as --connections opens at once allow. It counts streams that ended early
// and the servers' memory per stream: the growth of process_resident_memory_bytes from before the
// streams opened to while they are all open, divided by S.
func runStreams(ctx context.Context, e *env) (*Result, error) {
	o := e.o
	res := newResult(e, "streams", fmt.Sprintf("%d concurrent order event streams held %s", o.Streams, o.HoldFor))
	base, err := e.runBaseline(ctx, Loop{Workers: o.Connections})
	if err != nil {
		return nil, err
	}
	res.Baseline = base
	if limit, err := raiseFileLimit(); err == nil && uint64(o.Streams+64) > limit {
		res.Note("this process may open %d files but needs about %d for the streams: expect dial errors", limit, o.Streams+64)
	}
	n := o.Streams
	if p := newProvider(o.Provider); p != nil {
		if err := p.SetPaused(ctx, true); err != nil {
			return nil, fmt.Errorf("pause the provider: %w", err)
		}
		defer func() { _ = p.SetPaused(context.WithoutCancel(ctx), false) }()
	} else {
		res.Note("no --provider: the orders stay pending only if the servers' provider is down or slow (e.g. ONSALE_SIMULATED_OUTAGE=true); a confirmed order ends its stream")
	}
	s, err := e.createSale(ctx, "streams", n, 1)
	if err != nil {
		return nil, err
	}
	res.SetSale(s)
	// Every order's hold stays live on the one ticket type until the order ends, and the
	// orders stay pending: at most 4 a customer, the servers' default per ticket type
	// (ONSALE_MAX_HOLDS_PER_TICKET_TYPE), whatever --holds-per-customer allows in all.
	customers, _, err := e.prepareCustomers(ctx, "watcher", max(e.customersFor(n, n), ceilDiv(n, min(o.HoldsPerCust, 4))))
	if err != nil {
		return nil, err
	}
	res.noteHoldCaps(ceilDiv(n, len(customers)))
	orderRec := NewRecorder("order (preparation)")
	orders, placeEl, err := e.placeOrders(ctx, s, customers, n, orderRec)
	if err != nil {
		return nil, err
	}
	e.c.Close() // free the load connections' files before opening the streams
	e.admin.Close()
	time.Sleep(time.Second)
	before, err := e.memory(ctx)
	if err != nil {
		return nil, err
	}
	rssBefore := before.RSS

	sc := e.client(0, 0)
	defer sc.Close()
	holdCtx, endHold := context.WithCancel(ctx)
	defer endHold()
	openRec := NewRecorder("stream open (to first event)")
	var opened, openFailed, dropped, finished, reconnects atomic.Int64
	var dropMu sync.Mutex
	var dropSamples []string
	sem := make(chan struct{}, o.Connections)
	var openWG, streamWG sync.WaitGroup
	stop := startProgressFunc(e.prog, func(el time.Duration) string {
		return fmt.Sprintf("streams %4.0fs  open %6d of %d  failed %d  dropped %d", el.Seconds(), opened.Load()-dropped.Load(), n, openFailed.Load(), dropped.Load())
	})
	t0 := time.Now()
	openRec.Restart(t0)
	for i, ord := range orders {
		if o.Rate > 0 { // an arrival rate: the i-th stream opens i/rate after the first
			time.Sleep(time.Until(t0.Add(time.Duration(float64(i) / o.Rate * float64(time.Second)))))
		}
		sem <- struct{}{}
		openWG.Add(1)
		streamWG.Go(func() {
			start := time.Now()
			target := o.Targets[i%len(o.Targets)]
			resp, err := openStream(holdCtx, sc, target, ord.OrderID, ord.Customer)
			if err != nil {
				openFailed.Add(1)
				openRec.Record(start, Outcome{Err: err})
				openRec.Note("open: %v", err)
				<-sem
				openWG.Done()
				return
			}
			defer resp.Body.Close()
			first, reconnect := true, false
			err = readEvents(resp.Body, func(ev sseEvent) bool {
				if first {
					first = false
					openRec.Record(start, Outcome{Status: http.StatusOK})
					opened.Add(1)
					<-sem
					openWG.Done()
				}
				if ev.Event == "reconnect" { // the access token ran out: a client comes back with a fresh one
					reconnect = true
				}
				var d statusData
				if ev.Event == "status" && json.Unmarshal([]byte(ev.Data), &d) == nil && (d.Status == "confirmed" || d.Status == "failed") {
					finished.Add(1)
				}
				return true
			})
			if first { // ended before its first event
				openFailed.Add(1)
				openRec.Record(start, Outcome{Err: fmt.Errorf("stream ended before its first event: %v", err)})
				<-sem
				openWG.Done()
				return
			}
			if reconnect {
				reconnects.Add(1)
				return
			}
			if holdCtx.Err() == nil {
				dropped.Add(1)
				dropMu.Lock()
				if len(dropSamples) < 5 {
					dropSamples = append(dropSamples, fmt.Sprintf("order %s: %v", ord.OrderID, err))
				}
				dropMu.Unlock()
			}
		})
	}
	openWG.Wait()
	openEl := time.Since(t0)
	e.logf("streams: %d open, %d failed to open, in %.1fs", opened.Load(), openFailed.Load(), openEl.Seconds())
	res.Set("open_rate_per_s", o.Rate)
	res.Set("open_s", round(openEl.Seconds(), 1))

	// Hold them, with a few requests per second of other traffic, reading RSS as we go.
	lightRec := NewRecorder("other traffic while held")
	var rssOpen, rssMax float64
	var open memory
	var rssErr error
	holdEnd := time.Now().Add(o.HoldFor)
	tick := time.NewTicker(250 * time.Millisecond)
	sample := time.Now().Add(min(2*time.Second, o.HoldFor/2))
	for k := 0; time.Now().Before(holdEnd) && ctx.Err() == nil; k++ {
		<-tick.C
		t := time.Now()
		lightRec.Record(t, e.admin.Do(ctx, Request{Method: http.MethodGet, Path: "/v1/events/" + s.Event + "/availability"}).Outcome())
		if k%4 == 0 {
			ord := orders[k%len(orders)]
			t = time.Now()
			lightRec.Record(t, e.admin.Do(ctx, Request{Method: http.MethodGet, Target: ord.Target, Path: "/v1/orders/" + ord.OrderID, Token: ord.Token, From: ord.From}).Outcome())
		}
		if !time.Now().Before(sample) {
			m, err := e.memory(ctx)
			if err != nil {
				rssErr = err
			} else {
				open = m
				rssOpen, rssMax = m.RSS, max(rssMax, m.RSS)
			}
			sample = time.Now().Add(5 * time.Second)
		}
	}
	tick.Stop()
	if m, err := e.memory(ctx); err == nil && rssOpen == 0 {
		open = m
		rssOpen, rssMax = m.RSS, max(rssMax, m.RSS)
	}
	stillOpen := opened.Load() - dropped.Load() - reconnects.Load()
	endHold()
	streamWG.Wait()
	stop()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	res.AddPhase(openRec.Phase(openEl), true)
	res.AddPhase(lightRec.Phase(o.HoldFor), false)
	res.AddPhase(orderRec.Phase(placeEl), false)

	perStream := 0.0
	if opened.Load() > 0 && rssOpen > 0 {
		perStream = (rssOpen - rssBefore) / float64(opened.Load())
	}
	res.Set("streams", n)
	res.Set("opened", opened.Load())
	res.Set("open_failed", openFailed.Load())
	res.Set("dropped", dropped.Load())
	res.Set("asked_to_reconnect", reconnects.Load())
	res.Set("open_at_end", stillOpen)
	res.Set("final_status_seen", finished.Load())
	res.Set("hold_for_s", o.HoldFor.Seconds())
	res.Set("rss_before_bytes", rssBefore)
	res.Set("rss_open_bytes", rssOpen)
	res.Set("rss_max_bytes", rssMax)
	res.Set("bytes_per_stream", round(perStream, 0))
	res.Set("kib_per_stream", round(perStream/1024, 2))
	if k := float64(opened.Load()); k > 0 && open.RSS > 0 {
		res.Set("goroutines_per_stream", round((open.Goroutines-before.Goroutines)/k, 2))
		res.Set("stack_bytes_per_stream", round((open.Stack-before.Stack)/k, 0))
		res.Set("heap_inuse_bytes_per_stream", round((open.Heap-before.Heap)/k, 0))
	}
	res.Set("server_open_files", open.OpenFiles)
	res.Set("server_max_files", open.MaxFiles)
	res.Set("drop_samples", dropSamples)

	res.Invariant("every stream opened", openFailed.Load() == 0 && opened.Load() == int64(n), "%d of %d opened, %d failed", opened.Load(), n, openFailed.Load())
	res.Invariant("no stream dropped while held", dropped.Load() == 0, "%d streams ended early (%d with a final status)", dropped.Load(), finished.Load())
	badLight := lightRec.Unexpected(http.StatusOK)
	res.Invariant("other traffic answered while the streams are open", badLight == 0, "%d of %d requests failed", badLight, lightRec.Count())
	if n >= 19000 {
		res.Target("≥ 19,000 concurrent streams on one server process", len(o.Targets) == 1 && stillOpen >= 19000,
			"%d streams open at the end on %d server(s)", stillOpen, len(o.Targets))
	} else {
		res.NotMeasured("≥ 19,000 concurrent streams on one server process", fmt.Sprintf("this run opened %d", n))
	}
	switch {
	case rssErr != nil && rssOpen == 0:
		res.NotMeasured("≤ 32 KiB per stream", "could not read process_resident_memory_bytes: "+rssErr.Error())
	default:
		res.Target("≤ 32 KiB per stream", perStream <= 32*1024, "%.1f KiB per stream (RSS %.1f MiB before, %.1f MiB with the streams open)",
			perStream/1024, rssBefore/(1<<20), rssOpen/(1<<20))
	}
	res.Note("RSS rarely shrinks: measure on a freshly started server, or the growth of an earlier run hides this one's")
	res.Note("throughput_rps is streams opened per second and p99_ms the time to a stream's first event; memory per stream = ΔRSS / streams, summed over the targets")
	return res, nil
}

// memory is the servers' memory figures, summed over the targets.
type memory struct {
	RSS, Goroutines, Stack, Heap, OpenFiles, MaxFiles float64
}

// memory reads process_resident_memory_bytes (required) and the Go runtime's figures.
func (e *env) memory(ctx context.Context) (memory, error) {
	ms, err := e.scrapeAll(ctx)
	if err != nil {
		return memory{}, err
	}
	var m memory
	var ok bool
	if m.RSS, ok = sumAll(ms, "process_resident_memory_bytes", nil); !ok {
		return memory{}, fmt.Errorf("no process_resident_memory_bytes in /metrics")
	}
	m.Goroutines, _ = sumAll(ms, "go_goroutines", nil)
	m.Stack, _ = sumAll(ms, "go_memstats_stack_inuse_bytes", nil)
	m.Heap, _ = sumAll(ms, "go_memstats_heap_inuse_bytes", nil)
	m.OpenFiles, _ = sumAll(ms, "process_open_fds", nil)
	m.MaxFiles, _ = sumAll(ms, "process_max_fds", nil)
	return m, nil
}
