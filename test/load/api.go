package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// env is what a scenario runs with: the options, the clients and where to report.
type env struct {
	o          *Options
	runID      string
	stdout     io.Writer
	stderr     io.Writer
	prog       io.Writer // nil when quiet
	sources    []net.IP  // the local addresses requests leave from (none: the system's choice)
	sourcesWhy string    // where they come from, for the report
	tally      *tally    // the requests the servers limit per address, counted by every client
	c          *Client   // the load: Connections keep-alive connections per target
	admin      *Client   // setup, sampling and metrics: a few connections per target
}

func newEnv(o *Options, stdout, stderr io.Writer) (*env, error) {
	e := &env{o: o, runID: newRunID(), stdout: stdout, stderr: stderr, tally: newTally()}
	if !o.Quiet {
		e.prog = stderr
	}
	var err error
	if e.sources, e.sourcesWhy, err = chooseSources(o); err != nil {
		return nil, err
	}
	e.logf("%s", e.sourcesWhy)
	e.c = e.client(o.Connections, o.Timeout)
	// The few requests of no customer in particular (the organizer, samplers, metrics) need no
	// crowd of addresses: one pool of connections from the first address keeps them reused.
	e.admin = NewClient(o.Targets, o.Routes, 16, e.sources[:min(1, len(e.sources))], o.Timeout, e.tally)
	return e, nil
}

// client returns a client to the targets with conns connections per target (0: unbounded),
// from the run's source addresses, counted in the run's tally.
func (e *env) client(conns int, timeout time.Duration) *Client {
	return NewClient(e.o.Targets, e.o.Routes, conns, e.sources, timeout, e.tally)
}

func (e *env) close() {
	e.c.Close()
	e.admin.Close()
}

// logf writes a line about the run's progress on stderr.
func (e *env) logf(format string, args ...any) {
	if e.o.Quiet {
		return
	}
	fmt.Fprintf(e.stderr, "load: "+format+"\n", args...)
}

// ---- the catalogue ----

func (e *env) organizerToken(ctx context.Context) (string, error) {
	email, password, _ := strings.Cut(e.o.Organizer, ":")
	return e.login(ctx, e.admin, email, password, 0)
}

func (e *env) login(ctx context.Context, c *Client, email, password string, from int) (string, error) {
	r, _ := c.DoRetry(ctx, Request{Method: http.MethodPost, Path: "/v1/auth/login",
		Body: map[string]string{"email": email, "password": password}, From: from}, 100)
	if r.Status != http.StatusOK {
		return "", fmt.Errorf("log in as %s: %s", email, r.Problem())
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := r.Decode(&tok); err != nil || tok.AccessToken == "" {
		return "", fmt.Errorf("log in as %s: no access_token in %q", email, clip(r.Body))
	}
	return tok.AccessToken, nil
}

// sale is an event with one ticket type, made by the organizer for this run.
type sale struct {
	Event, TicketType string
	Capacity          int
}

// createSale makes an event starting in 30 days with one ticket type.
func (e *env) createSale(ctx context.Context, what string, capacity, maxPerOrder int) (sale, error) {
	tok, err := e.organizerToken(ctx)
	if err != nil {
		return sale{}, err
	}
	target := e.o.Targets[0]
	r, _ := e.admin.DoRetry(ctx, Request{Method: http.MethodPost, Target: target, Path: "/v1/events", Token: tok, Body: map[string]any{
		"name": fmt.Sprintf("load %s %s", what, e.runID), "venue": "load test arena",
		"starts_at": time.Now().Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339),
	}}, 10)
	var ev struct {
		ID string `json:"id"`
	}
	if r.Status != http.StatusCreated || r.Decode(&ev) != nil {
		return sale{}, fmt.Errorf("create event: %s", r.Problem())
	}
	r, _ = e.admin.DoRetry(ctx, Request{Method: http.MethodPost, Target: target, Path: "/v1/events/" + ev.ID + "/ticket-types", Token: tok,
		Body: map[string]any{"name": "general admission", "price_cents": e.o.PriceCents, "currency": "EUR", "capacity": capacity, "max_per_order": maxPerOrder}}, 10)
	var tt struct {
		ID string `json:"id"`
	}
	if r.Status != http.StatusCreated || r.Decode(&tt) != nil {
		return sale{}, fmt.Errorf("create ticket type (capacity %d): %s", capacity, r.Problem())
	}
	return sale{Event: ev.ID, TicketType: tt.ID, Capacity: capacity}, nil
}

// stock is a ticket type's availability.
type stock struct {
	TicketTypeID string `json:"ticket_type_id"`
	Capacity     int    `json:"capacity"`
	Sold         int    `json:"sold"`
	Held         int    `json:"held"`
	Available    int    `json:"available"`
}

// availability reads the sale's figures from the next target.
func (e *env) availability(ctx context.Context, s sale) (stock, Response) {
	r := e.admin.Do(ctx, Request{Method: http.MethodGet, Path: "/v1/events/" + s.Event + "/availability"})
	var out struct {
		TicketTypes []stock `json:"ticket_types"`
	}
	if r.Status == http.StatusOK && r.Decode(&out) == nil {
		for _, t := range out.TicketTypes {
			if t.TicketTypeID == s.TicketType {
				return t, r
			}
		}
	}
	return stock{}, r
}

// ---- customers ----

// Customer is a logged-in customer account. Its requests leave from one source address, as
// from its own device: pass From in every request made for it.
type Customer struct {
	Email string
	Token string
	From  int
}

// prepareCustomers registers (409 is fine: the account exists) and logs in n customers named
// <kind>-<runid>-<i>@load.test, a bounded number at a time, retrying 503 and 429 as told.
func (e *env) prepareCustomers(ctx context.Context, kind string, n int) ([]Customer, time.Duration, error) {
	t0 := time.Now()
	out := make([]Customer, n)
	workers := min(n, max(1, e.o.PrepWorkers*len(e.o.Targets)))
	var next, done atomic.Int64
	var mu sync.Mutex
	var firstErr error
	stop := startProgressFunc(e.prog, func(el time.Duration) string {
		return fmt.Sprintf("preparing %d %s accounts %4.0fs  done %d", n, kind, el.Seconds(), done.Load())
	})
	defer stop()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				email := fmt.Sprintf("%s-%s-%d@load.test", kind, e.runID, i)
				tok, err := e.customer(ctx, email, int(i)+1)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				out[i] = Customer{Email: email, Token: tok, From: int(i) + 1}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	stop()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		return nil, time.Since(t0), fmt.Errorf("prepare customers: %w", firstErr)
	}
	el := time.Since(t0)
	e.logf("prepared %d %s accounts in %.1fs (%.0f/s)", n, kind, el.Seconds(), float64(n)/el.Seconds())
	return out, el, nil
}

func (e *env) customer(ctx context.Context, email string, from int) (string, error) {
	r, _ := e.c.DoRetry(ctx, Request{Method: http.MethodPost, Path: "/v1/auth/register",
		Body: map[string]string{"email": email, "password": e.o.Password, "name": "Load Tester"}, From: from}, 1000)
	if r.Status != http.StatusCreated && r.Status != http.StatusConflict {
		return "", fmt.Errorf("register %s: %s", email, r.Problem())
	}
	return e.login(ctx, e.c, email, e.o.Password, from)
}

// ---- holds and orders ----

// hold creates a hold of one ticket for cu; it returns the answer and the hold's id on 201.
func (e *env) hold(ctx context.Context, c *Client, cu Customer, ticketType, target string) (Response, string, time.Time) {
	r := c.Do(ctx, Request{Method: http.MethodPost, Target: target, Path: "/v1/holds", Token: cu.Token, From: cu.From,
		Body: map[string]any{"ticket_type_id": ticketType, "quantity": 1}})
	var h struct {
		ID        string    `json:"id"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if r.Status == http.StatusCreated && r.Decode(&h) == nil {
		return r, h.ID, h.ExpiresAt
	}
	return r, "", time.Time{}
}

// keyedHold holds one ticket for cu with an Idempotency-Key; it returns the answer and the
// hold's id on 201, or on 200 for a retry of a hold already made.
func (e *env) keyedHold(ctx context.Context, c *Client, cu Customer, ticketType, key, target string) (Response, string) {
	r := c.Do(ctx, Request{Method: http.MethodPost, Target: target, Path: "/v1/holds", Token: cu.Token, From: cu.From,
		Body: map[string]any{"ticket_type_id": ticketType, "quantity": 1}, Header: map[string]string{"Idempotency-Key": key}})
	var h struct {
		ID string `json:"id"`
	}
	if (r.Status == http.StatusCreated || r.Status == http.StatusOK) && r.Decode(&h) == nil {
		return r, h.ID
	}
	return r, ""
}

// order checks cu's hold out with an idempotency key; it returns the answer and the order's id
// on 202.
func (e *env) order(ctx context.Context, c *Client, cu Customer, holdID, key, target string) (Response, string) {
	r := c.Do(ctx, Request{Method: http.MethodPost, Target: target, Path: "/v1/orders", Token: cu.Token, From: cu.From,
		Body: map[string]string{"hold_id": holdID}, Header: map[string]string{"Idempotency-Key": key}})
	var o struct {
		ID string `json:"id"`
	}
	if r.Status == http.StatusAccepted && r.Decode(&o) == nil {
		return r, o.ID
	}
	return r, ""
}

// placed is an order made ahead of a measurement.
type placed struct {
	Customer
	OrderID, Target string
}

// placeOrders makes n pending orders of one ticket each on the sale, holding then checking out,
// with the main client's workers; holds spread over the customers within the per-customer limit.
func (e *env) placeOrders(ctx context.Context, s sale, customers []Customer, n int, rec *Recorder) ([]placed, time.Duration, error) {
	out := make([]placed, n)
	holds := NewRecorder("hold")
	stop := startProgress(e.prog, "placing orders", rec)
	defer stop()
	var failed atomic.Int64
	var mu sync.Mutex
	var problem string
	el := Loop{Workers: e.o.Connections, Limit: int64(n)}.Run(ctx, rec, func(ctx context.Context, w int, i int64) Outcome {
		cu := customers[int(i)%len(customers)]
		target := e.c.Next()
		// Keyed, so that a hold or an order that got no answer (a connection lost under load)
		// is asked again without a second hold or order.
		var hr Response
		var holdID string
		for attempt := 0; attempt < 3; attempt++ {
			hr, holdID = e.keyedHold(ctx, e.c, cu, s.TicketType, fmt.Sprintf("place-%s-%d", e.runID, i), target)
			if hr.Status != 0 && hr.Status != http.StatusServiceUnavailable {
				break
			}
		}
		holds.Record(time.Now(), hr.Outcome())
		if holdID == "" {
			failed.Add(1)
			mu.Lock()
			if problem == "" {
				problem = "hold: " + hr.Problem()
			}
			mu.Unlock()
			return hr.Outcome()
		}
		var or Response
		var id string
		for attempt := 0; attempt < 3; attempt++ {
			or, id = e.order(ctx, e.c, cu, holdID, fmt.Sprintf("load-%s-%d", e.runID, i), target)
			if or.Status != 0 && or.Status != http.StatusServiceUnavailable {
				break
			}
		}
		if id == "" {
			failed.Add(1)
			mu.Lock()
			if problem == "" {
				problem = "order: " + or.Problem()
			}
			mu.Unlock()
		} else {
			out[i] = placed{Customer: cu, OrderID: id, Target: target}
		}
		return or.Outcome()
	})
	stop()
	if ctx.Err() != nil {
		return nil, el, ctx.Err()
	}
	if f := failed.Load(); f > 0 {
		return nil, el, fmt.Errorf("%d of %d orders could not be placed; first: %s", f, n, problem)
	}
	e.logf("placed %d orders in %.1fs (%.0f/s)", n, el.Seconds(), float64(n)/el.Seconds())
	return out, el, nil
}

// customersFor is how many customers n concurrent live holds need under --holds-per-customer,
// and streams concurrent order event streams under --streams-per-customer.
func (e *env) customersFor(n, streams int) int {
	return max(1, ceilDiv(n, e.o.HoldsPerCust), ceilDiv(streams, e.o.StreamsPerCus))
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// noteHoldCaps tells what the servers' caps on live holds must allow when one customer holds
// perCustomer tickets of the run's ticket type at once.
func (r *Result) noteHoldCaps(perCustomer int) {
	r.Set("live_holds_per_customer", perCustomer)
	if perCustomer > 4 {
		r.Note("a customer holds up to %d tickets of one ticket type at once: the servers need ONSALE_MAX_HOLDS_PER_TICKET_TYPE and ONSALE_MAX_HOLDS_PER_CUSTOMER of %d or more (defaults 4 and 8), or holds are refused with 429 too-many-holds",
			perCustomer, perCustomer)
	}
}

// held is a hold made ahead of a measurement.
type held struct {
	cu      Customer
	id      string
	expires time.Time
}

// holdsAhead makes n holds of one ticket each on the sale, spread over the customers.
func (e *env) holdsAhead(ctx context.Context, s sale, customers []Customer, n int) ([]held, error) {
	holds := make([]held, n)
	prepRec := NewRecorder("hold (preparation)")
	var bad atomic.Int64
	stop := startProgress(e.prog, "holds ahead", prepRec)
	prepEl := Loop{Workers: e.o.Connections, Limit: int64(n)}.Run(ctx, prepRec, func(ctx context.Context, w int, i int64) Outcome {
		cu := customers[int(i)%len(customers)]
		r, id, exp := e.hold(ctx, e.c, cu, s.TicketType, "")
		if id == "" {
			bad.Add(1)
			prepRec.Note("hold: %s", r.Problem())
		}
		holds[i] = held{cu, id, exp}
		return r.Outcome()
	})
	stop()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if b := bad.Load(); b > 0 {
		return nil, fmt.Errorf("%d of %d holds could not be made ahead (e.g. %v)", b, n, prepRec.Phase(prepEl).Samples)
	}
	e.logf("made %d holds ahead in %.1fs", n, prepEl.Seconds())
	return holds, nil
}
