package main

import (
	"context"
	"fmt"
	"time"
)

// runConfirm: confirmation throughput on one ticket type (the hot row). The provider is paused,
// M orders are placed on one ticket type as fast as possible, then the provider is resumed and
// the time until all M are confirmed is measured by sampling
// onsale_payment_orders_total{status="confirmed"} from every target every 100 ms.
func runConfirm(ctx context.Context, e *env) (*Result, error) {
	o := e.o
	loop := Loop{Workers: o.Connections}
	res := newResult(e, "confirm", fmt.Sprintf("%d orders queued behind a paused provider, then released", o.Orders))
	base, err := e.runBaseline(ctx, loop)
	if err != nil {
		return nil, err
	}
	res.Baseline = base
	prov := newProvider(o.Provider)
	m := o.Orders
	s, err := e.createSale(ctx, "confirm", m, 1)
	if err != nil {
		return nil, err
	}
	res.SetSale(s)
	customers, _, err := e.prepareCustomers(ctx, "payer", e.customersFor(m, 0))
	if err != nil {
		return nil, err
	}
	res.noteHoldCaps(ceilDiv(m, len(customers)))
	if err := prov.SetPaused(ctx, true); err != nil {
		return nil, fmt.Errorf("pause the provider: %w", err)
	}
	resumed := false
	defer func() {
		if !resumed {
			_ = prov.SetPaused(context.WithoutCancel(ctx), false)
		}
	}()
	orderRec := NewRecorder("order")
	orders, placeEl, err := e.placeOrders(ctx, s, customers, m, orderRec)
	if err != nil {
		return nil, err
	}
	res.AddPhase(orderRec.Phase(placeEl), true)

	confirmedSel, failedSel := map[string]string{"status": "confirmed"}, map[string]string{"status": "failed"}
	before, err := e.scrapeAll(ctx)
	if err != nil {
		return nil, err
	}
	c0, _ := sumAll(before, "onsale_payment_orders_total", confirmedSel)
	f0, _ := sumAll(before, "onsale_payment_orders_total", failedSel)

	t0 := time.Now()
	if err := prov.SetPaused(ctx, false); err != nil {
		return nil, fmt.Errorf("resume the provider: %w", err)
	}
	resumed = true
	var done time.Duration
	var timeline [][2]float64
	last := 0.0
	stop := startProgressFunc(e.prog, func(el time.Duration) string {
		return fmt.Sprintf("confirming %4.0fs  confirmed %6.0f of %d", el.Seconds(), last, m)
	})
	for {
		time.Sleep(100 * time.Millisecond)
		ms, err := e.scrapeAll(ctx)
		if err != nil {
			if ctx.Err() != nil {
				stop()
				return nil, ctx.Err()
			}
			continue
		}
		c, _ := sumAll(ms, "onsale_payment_orders_total", confirmedSel)
		last = c - c0
		el := time.Since(t0)
		timeline = append(timeline, [2]float64{round(el.Seconds(), 2), last})
		if last >= float64(m) {
			done = el
			break
		}
		if el > o.ConfirmWait {
			break
		}
	}
	stop()
	after, err := e.scrapeAll(ctx)
	if err != nil {
		return nil, err
	}
	c1, _ := sumAll(after, "onsale_payment_orders_total", confirmedSel)
	f1, _ := sumAll(after, "onsale_payment_orders_total", failedSel)
	confirmed, failedN := int(c1-c0), int(f1-f0)
	perS := 0.0
	if done > 0 {
		perS = float64(m) / done.Seconds()
	}
	res.ThroughputRPS = perS
	res.Set("orders", m)
	res.Set("confirmed", confirmed)
	res.Set("failed", failedN)
	res.Set("confirm_s", round(done.Seconds(), 3))
	res.Set("confirmed_per_s", round(perS, 1))
	res.Set("order_p99_ms", orderRec.Latency().P99)
	if len(timeline) > 300 {
		step := len(timeline)/300 + 1
		var thin [][2]float64
		for i := 0; i < len(timeline); i += step {
			thin = append(thin, timeline[i])
		}
		timeline = append(thin, timeline[len(timeline)-1])
	}
	res.Set("confirm_timeline", timeline)

	res.Invariant("every order confirmed after the resume", done > 0 && confirmed >= m,
		"%d of %d confirmed (metrics) within %s", confirmed, m, o.ConfirmWait)
	res.Invariant("no order failed", failedN == 0, "%d orders failed during the run", failedN)
	ids := map[string]bool{}
	for _, p := range orders {
		ids[p.OrderID] = true
	}
	if l, err := prov.Ledger(ctx); err != nil {
		res.Invariant("charges in the provider ledger == orders", false, "%v", err)
	} else {
		charged, refunded := chargesFor(l, ids)
		res.Set("charges", charged)
		res.Invariant("charges in the provider ledger == orders", charged == m && refunded == 0, "%d of %d orders charged, %d refunded", charged, m, refunded)
	}
	if o.DatabaseURL != "" {
		f, err := checkDatabase(ctx, o.DatabaseURL, s.TicketType)
		if err != nil {
			res.Invariant("sold and confirmed == orders in PostgreSQL", false, "%v", err)
		} else {
			res.Set("db_sold", f.Sold)
			res.Set("db_orders", f.Orders)
			res.Invariant("sold and confirmed == orders in PostgreSQL", f.Sold == m && f.Tickets == m && f.Orders["confirmed"] == m,
				"sold %d, %d ticket rows, orders by status %v", f.Sold, f.Tickets, f.Orders)
		}
	} else {
		res.NotChecked("sold and confirmed == orders in PostgreSQL", "no --database-url given")
	}
	res.Target("≥ 3,000 confirmed orders/s on one ticket type", perS >= 3000, "%.0f confirmed/s (%d orders in %.2fs)", perS, m, done.Seconds())
	res.Note("throughput_rps is confirmed orders per second after the resume; p99_ms is order creation's p99 (provider paused)")
	res.Note("the payment workers bound it too: ONSALE_PAYMENT_WORKERS / provider latency per replica (512 / 50 ms = 10,240/s by default)")
	res.Note("the servers need ONSALE_PROVIDER_TIMEOUT and ONSALE_PAYMENT_ACK_WAIT longer than the pause (e.g. 120s and 180s), or paused charges time out and retry")
	return res, nil
}
