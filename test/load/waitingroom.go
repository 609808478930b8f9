package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// queueAnswer is a customer's place as the queue routes show it.
type queueAnswer struct {
	Status        string     `json:"status"`
	Place         *int64     `json:"place"`
	Ahead         int64      `json:"ahead"`
	WaitSeconds   *int64     `json:"estimated_wait_seconds"`
	OpensAt       time.Time  `json:"opens_at"`
	Pass          string     `json:"pass"`
	PassExpiresAt *time.Time `json:"pass_expires_at"`
}

// queuer is one customer's way through the room.
type queuer struct {
	joinedAt   time.Time
	place      int64
	admittedAt time.Time // the pass's start, as the server set it
	seenAt     time.Time // when the customer learnt it
	pass       string
	streamed   bool
}

// roomPassLifetime is the pass lifetime the scenario sets: long enough that no pass runs out
// before its customer, polling lazily, reads it.
const roomPassLifetime = 30 * time.Minute

// runWaitingRoom: an event with T tickets behind a waiting room admitting R customers a minute.
// N prepared customers join within seconds, the first ones before the opening (drawn at random
// at it), the rest after (in order of arrival). Most follow their place by asking again when
// the estimated wait says their turn is near; --streams of them follow it on the status stream.
// Admitted customers hold with their pass and check out until the tickets are gone. The
// invariants: everyone gets a place, places are 1..N each once, admission follows the places
// strictly, admission runs at R ± 5 % once everyone is in line, no hold without a pass (probed),
// never oversold. The streaming customers are spread over the line, one every N/streams.
func runWaitingRoom(ctx context.Context, e *env) (*Result, error) {
	o := e.o
	res := newResult(e, "waiting-room", fmt.Sprintf("%d customers join, admitted at %d a minute", o.Customers, o.AdmissionRate))
	base, err := e.runBaseline(ctx, Loop{Workers: o.Connections})
	if err != nil {
		return nil, err
	}
	res.Baseline = base
	s, err := e.createSale(ctx, "waiting-room", o.Tickets, 1)
	if err != nil {
		return nil, err
	}
	res.SetSale(s)
	customers, prep, err := e.prepareCustomers(ctx, "queuer", o.Customers)
	if err != nil {
		return nil, err
	}
	n := len(customers)
	res.Set("customers", n)
	res.Set("capacity", o.Tickets)
	res.Set("admission_rate_per_minute", o.AdmissionRate)
	res.Set("prepare_s", round(prep.Seconds(), 1))

	tok, err := e.organizerToken(ctx)
	if err != nil {
		return nil, err
	}
	roomPath := "/v1/events/" + s.Event + "/waiting-room"
	queuePath := "/v1/events/" + s.Event + "/queue"
	opensAt := time.Now().Add(o.OpensIn).Truncate(time.Millisecond)
	r, _ := e.admin.DoRetry(ctx, Request{Method: http.MethodPut, Path: roomPath, Token: tok, Body: map[string]any{
		"admission_rate_per_minute": o.AdmissionRate, "pass_lifetime_seconds": int(roomPassLifetime / time.Second),
		"opens_at": opensAt.UTC().Format(time.RFC3339Nano),
	}}, 10)
	if r.Status != http.StatusOK {
		return nil, fmt.Errorf("turn the waiting room on: %s", r.Problem())
	}
	// Every server reads its rooms again within a few seconds; until then it sells without a pass.
	if err := e.waitForPassRequired(ctx, s, customers[0]); err != nil {
		return nil, err
	}

	qs := make([]queuer, n)
	joinRec, pollRec, holdRec, orderRec := NewRecorder("join"), NewRecorder("place"), NewRecorder("hold with pass"), NewRecorder("order")
	var errs, admitted, held, soldOut, ordered, refusedWithout, grantedWithout, swappedRefused, swappedGranted atomic.Int64
	var streamEvents atomic.Int64
	var somePass atomic.Pointer[givenPass] // the first pass given, for the probes
	var firstJoin, lastJoin atomic.Int64   // unix nanoseconds
	var done sync.WaitGroup
	slots := make(chan struct{}, o.Connections) // requests in flight while customers wait

	// Everyone joins at once (the first ones before the opening), then waits their turn.
	stop := startProgressFunc(e.prog, func(el time.Duration) string {
		return fmt.Sprintf("waiting room %4.0fs  joined %d  admitted %d  held %d", el.Seconds(), joinRec.Count(), admitted.Load(), held.Load())
	})
	defer stop()
	t0 := time.Now()
	joinEl := Loop{Workers: o.Connections, Limit: int64(n)}.Run(ctx, joinRec, func(ctx context.Context, w int, i int64) Outcome {
		cu := customers[i]
		r := e.c.Do(ctx, Request{Method: http.MethodPost, Path: queuePath, Token: cu.Token, From: cu.From})
		var q queueAnswer
		if r.Status != http.StatusCreated || r.Decode(&q) != nil {
			errs.Add(1)
			joinRec.Note("join: %s", r.Problem())
			return r.Outcome()
		}
		now := r.End.UnixNano()
		firstJoin.CompareAndSwap(0, now)
		for {
			l := lastJoin.Load()
			if now <= l || lastJoin.CompareAndSwap(l, now) {
				break
			}
		}
		qs[i].joinedAt = r.End
		done.Add(1)
		go func() {
			defer done.Done()
			if o.Streams > 0 && int(i)%max(n/o.Streams, 1) == 0 && int(i)/max(n/o.Streams, 1) < o.Streams {
				qs[i].streamed = true
				e.followRoom(ctx, queuePath, cu, &qs[i], &q, &streamEvents, pollRec, &errs)
			} else {
				e.waitTurn(ctx, slots, queuePath, cu, &qs[i], q, pollRec, &errs)
			}
			if qs[i].pass == "" {
				return
			}
			admitted.Add(1)
			somePass.CompareAndSwap(nil, &givenPass{pass: qs[i].pass, owner: int(i)})
			slots <- struct{}{}
			defer func() { <-slots }()
			t := time.Now()
			hr := e.c.Do(ctx, Request{Method: http.MethodPost, Path: "/v1/holds", Token: cu.Token, From: cu.From,
				Body: map[string]any{"ticket_type_id": s.TicketType, "quantity": 1},
				// The key makes the hold safe to send again, as the transport does when a kept-alive
				// connection turns out closed.
				Header: map[string]string{"Queue-Pass": qs[i].pass, "Idempotency-Key": fmt.Sprintf("room-hold-%s-%d", e.runID, i)}})
			holdRec.Record(t, hr.Outcome())
			var h struct {
				ID string `json:"id"`
			}
			switch {
			case (hr.Status == http.StatusCreated || hr.Status == http.StatusOK) && hr.Decode(&h) == nil:
				held.Add(1)
				or, id := e.order(ctx, e.c, cu, h.ID, fmt.Sprintf("room-%s-%d", e.runID, i), "")
				orderRec.Record(t, or.Outcome())
				if id == "" {
					errs.Add(1)
					orderRec.Note("order: %s", or.Problem())
				} else {
					ordered.Add(1)
				}
			case hr.Status == http.StatusConflict:
				soldOut.Add(1)
			default:
				errs.Add(1)
				holdRec.Note("hold with a pass: %s", hr.Problem())
			}
		}()
		return r.Outcome()
	})
	joined := time.Unix(0, lastJoin.Load())
	// The probes: while most still wait, holds without a pass and with another customer's pass.
	e.probePasses(ctx, s, customers, somePass.Load, &refusedWithout, &grantedWithout, &swappedRefused, &swappedGranted, &errs)
	done.Wait()
	stop()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	total := time.Since(t0)
	res.AddPhase(joinRec.Phase(joinEl), true)
	res.AddPhase(pollRec.Phase(total), false)
	res.AddPhase(holdRec.Phase(total), false)
	res.AddPhase(orderRec.Phase(total), false)

	// Places and admission, from what the customers were told.
	byPlace := make([]int, n+1)
	badPlaces := 0
	for i, q := range qs {
		if q.place < 1 || q.place > int64(n) || byPlace[q.place] != 0 {
			badPlaces++
			continue
		}
		byPlace[q.place] = i + 1
	}
	outOfOrder := 0
	var firstAdm, lastAdm time.Time
	var lags []time.Duration
	var streamLags []time.Duration
	for p := 1; p <= n; p++ {
		i := byPlace[p] - 1
		if i < 0 || qs[i].admittedAt.IsZero() {
			continue
		}
		at := qs[i].admittedAt
		if !lastAdm.IsZero() && at.Before(lastAdm) {
			outOfOrder++
		}
		if firstAdm.IsZero() {
			firstAdm = at
		}
		lastAdm = at
		lag := qs[i].seenAt.Sub(at)
		lags = append(lags, lag)
		if qs[i].streamed {
			streamLags = append(streamLags, lag)
		}
	}
	// The rate while everyone was in line: admission goes by ticks, so it is measured from the
	// first tick after the last join to the last tick, counting what the ticks after the first
	// admitted.
	var inLineAt []time.Time
	for _, q := range qs {
		if !q.admittedAt.IsZero() && !q.admittedAt.Before(joined) {
			inLineAt = append(inLineAt, q.admittedAt)
		}
	}
	slices.SortFunc(inLineAt, func(a, b time.Time) int { return a.Compare(b) })
	var window time.Duration
	rate := 0.0
	if len(inLineAt) > 1 {
		from, to := inLineAt[0], inLineAt[len(inLineAt)-1]
		window = to.Sub(from)
		after := len(inLineAt) - slices.IndexFunc(inLineAt, func(t time.Time) bool { return t.After(from) })
		if window > 0 {
			rate = float64(after) / window.Minutes()
		}
	}
	res.Set("join_s", round(joined.Sub(time.Unix(0, firstJoin.Load())).Seconds(), 2))
	res.Set("joins_per_s", round(float64(n)/joinEl.Seconds(), 0))
	res.Set("admitted", admitted.Load())
	res.Set("admission_s", round(lastAdm.Sub(firstAdm).Seconds(), 1))
	res.Set("measured_rate_per_minute", round(rate, 0))
	res.Set("rate_window_s", round(window.Seconds(), 1))
	res.Set("told_admitted_p50_ms", durMS(percentile(lags, 0.5)))
	res.Set("told_admitted_p99_ms", durMS(percentile(lags, 0.99)))
	res.Set("streamed", o.Streams)
	res.Set("stream_told_admitted_p99_ms", durMS(percentile(streamLags, 0.99)))
	res.Set("stream_updates", streamEvents.Load())
	res.Set("stream_updates_per_s", round(float64(streamEvents.Load())/total.Seconds(), 0))
	res.Set("held", held.Load())
	res.Set("sold_out_answers", soldOut.Load())
	res.Set("orders", ordered.Load())
	res.Set("errors", errs.Load())

	res.Invariant("everyone got a place", joinRec.Unexpected(http.StatusCreated) == 0 && badPlaces == 0,
		"%d joins not 201, %d customers without a place of their own", joinRec.Unexpected(http.StatusCreated), badPlaces)
	res.Invariant("everyone admitted", admitted.Load() == int64(n), "%d of %d admitted", admitted.Load(), n)
	res.Invariant("admission in the order of places", outOfOrder == 0, "%d places admitted before an earlier one", outOfOrder)
	res.Invariant("no hold without a pass", grantedWithout.Load() == 0 && swappedGranted.Load() == 0,
		"without a pass: %d refused, %d granted; with another customer's pass: %d refused, %d granted",
		refusedWithout.Load(), grantedWithout.Load(), swappedRefused.Load(), swappedGranted.Load())
	st, sr := e.availability(ctx, s)
	over := 0
	if sr.Status == http.StatusOK {
		over = max(st.Sold+st.Held-s.Capacity, 0)
		res.Invariant("never oversold", over == 0 && held.Load() <= int64(s.Capacity), "sold %d + held %d of %d; %d holds granted", st.Sold, st.Held, s.Capacity, held.Load())
	} else {
		res.NotChecked("never oversold", "availability: "+sr.Problem())
	}
	res.Set("oversold", over)
	res.Invariant("no errors", errs.Load() == 0, "%d unexpected answers", errs.Load())
	switch {
	case window < 5*time.Second:
		res.NotMeasured("admission rate within 5 % of the setting", fmt.Sprintf("only %s of admission after the last join: too short to tell", window.Round(time.Millisecond)))
	default:
		dev := rate/float64(o.AdmissionRate) - 1
		res.Target("admission rate within 5 % of the setting", dev >= -0.05 && dev <= 0.05,
			"%.0f a minute over %s with everyone in line (%+.1f %%)", rate, window.Round(100*time.Millisecond), 100*dev)
	}
	res.Note("places and admission times come from the answers (a pass starts when its place is admitted); customers poll when their estimated wait runs out")
	return res, nil
}

// waitForPassRequired waits until the servers ask for a pass on the sale's holds.
func (e *env) waitForPassRequired(ctx context.Context, s sale, cu Customer) error {
	deadline := time.Now().Add(15 * time.Second)
	streak := 0
	for streak < 2*len(e.o.Targets) {
		if time.Now().After(deadline) {
			return fmt.Errorf("the servers still sell without a pass 15 s after the room was turned on")
		}
		r := e.admin.Do(ctx, Request{Method: http.MethodPost, Path: "/v1/holds", Token: cu.Token, From: cu.From,
			Body: map[string]any{"ticket_type_id": s.TicketType, "quantity": 1}})
		switch r.Status {
		case http.StatusForbidden:
			streak++
		case http.StatusCreated:
			return fmt.Errorf("a hold was granted without a pass after the room was turned on: %s", r.Problem())
		default:
			streak = 0
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}

// waitTurn asks for the customer's place when the estimated wait says the turn is near, until
// admitted (the pass and its start are then in q).
func (e *env) waitTurn(ctx context.Context, slots chan struct{}, queuePath string, cu Customer, me *queuer, q queueAnswer, rec *Recorder, errs *atomic.Int64) {
	for ctx.Err() == nil {
		if me.record(q) {
			return
		}
		wait := 500 * time.Millisecond
		switch {
		case q.Status == "pre_queue":
			wait = time.Until(q.OpensAt) + time.Duration(rand.Int64N(int64(2*time.Second)))
		case q.WaitSeconds != nil:
			// The estimate, but no longer than 10 s: a customer's page would not stay silent
			// longer, and the estimate is pessimistic while the line is still forming.
			wait = min(max(time.Duration(*q.WaitSeconds)*time.Second, wait), 10*time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		slots <- struct{}{}
		t := time.Now()
		r := e.c.Do(ctx, Request{Method: http.MethodGet, Path: queuePath + "/me", Token: cu.Token, From: cu.From})
		<-slots
		rec.Record(t, r.Outcome())
		q = queueAnswer{}
		if r.Status != http.StatusOK || r.Decode(&q) != nil {
			errs.Add(1)
			rec.Note("place: %s", r.Problem())
			return
		}
	}
}

// followRoom follows the customer's place on the status stream until admitted, opening it
// again when a server asks to reconnect.
func (e *env) followRoom(ctx context.Context, queuePath string, cu Customer, me *queuer, first *queueAnswer, events *atomic.Int64, rec *Recorder, errs *atomic.Int64) {
	if me.record(*first) {
		return
	}
	for attempt := 0; attempt < 5 && ctx.Err() == nil; attempt++ {
		path := queuePath + "/me/events"
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.c.Target("", path)+path, nil)
		if err != nil {
			errs.Add(1)
			return
		}
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Authorization", "Bearer "+cu.Token)
		t := time.Now()
		resp, err := e.c.route(cu.From).hc.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			o := Outcome{Err: err}
			if resp != nil {
				o.Status = resp.StatusCode
				resp.Body.Close()
			}
			rec.Record(t, o)
			errs.Add(1)
			return
		}
		rec.Record(t, Outcome{Status: resp.StatusCode})
		admitted := false
		_ = readEvents(resp.Body, func(ev sseEvent) bool {
			if ev.Event != "position" {
				return false // reconnect or closed: open it again
			}
			events.Add(1)
			var q queueAnswer
			if json.Unmarshal([]byte(ev.Data), &q) == nil && me.record(q) {
				admitted = true
				return false
			}
			return true
		})
		resp.Body.Close()
		if admitted {
			return
		}
	}
	errs.Add(1)
	rec.Note("stream of %s ended without a pass", cu.Email)
}

// record keeps what an answer says; true once it brings the pass.
func (me *queuer) record(q queueAnswer) bool {
	if q.Place != nil {
		me.place = *q.Place
	}
	if q.Status != "admitted" || q.Pass == "" || q.PassExpiresAt == nil {
		return false
	}
	me.pass, me.seenAt, me.admittedAt = q.Pass, time.Now(), q.PassExpiresAt.Add(-roomPassLifetime)
	return true
}

// probePasses asks for holds, while the room admits, as customers who joined last (no pass),
// then with the pass of a customer admitted already: every one must be refused.
func (e *env) probePasses(ctx context.Context, s sale, customers []Customer, pass func() *givenPass, refusedWithout, grantedWithout, swappedRefused, swappedGranted, errs *atomic.Int64) {
	probes := min(200, len(customers)/2)
	hold := func(cu Customer, header map[string]string) Response {
		return e.admin.Do(ctx, Request{Method: http.MethodPost, Path: "/v1/holds", Token: cu.Token, From: cu.From,
			Body: map[string]any{"ticket_type_id": s.TicketType, "quantity": 1}, Header: header})
	}
	for k := range probes {
		countProbe(hold(customers[len(customers)-1-k], nil), "queue-pass-required", refusedWithout, grantedWithout, errs)
	}
	var p *givenPass
	for p = pass(); p == nil; p = pass() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	for k := range probes {
		if i := len(customers) - 1 - k; i != p.owner {
			countProbe(hold(customers[i], map[string]string{"Queue-Pass": p.pass}), "queue-pass-invalid", swappedRefused, swappedGranted, errs)
		}
	}
}

// givenPass is a pass and the customer it was given to.
type givenPass struct {
	pass  string
	owner int
}

func countProbe(r Response, want string, refused, granted, errs *atomic.Int64) {
	var p struct {
		Type string `json:"type"`
	}
	switch {
	case r.Status == http.StatusCreated:
		granted.Add(1)
	case r.Status == http.StatusForbidden && r.Decode(&p) == nil && p.Type == "https://onsale.dev/problems/"+want:
		refused.Add(1)
	default:
		errs.Add(1)
	}
}

func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func durMS(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 1) }
