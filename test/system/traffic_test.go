package system

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// notes collects surprising answers the traffic saw (the first few of them).
type notes struct {
	mu    sync.Mutex
	n     int
	first []string
}

func (n *notes) add(format string, args ...any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.n++
	if len(n.first) < 15 {
		n.first = append(n.first, fmt.Sprintf(format, args...))
	}
}

// report fails the test with the notes, if any.
func (n *notes) report(t *testing.T, what string) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, s := range n.first {
		t.Errorf("%s: %s", what, s)
	}
	if n.n > len(n.first) {
		t.Errorf("%s: ... %d more", what, n.n-len(n.first))
	}
}

// worker is one client's steady traffic: optionally browse, hold one ticket, then release it or
// check out (and optionally follow the order until it is terminal), over and over, cycling over
// its customers (each may hold only a few tickets at once).
type worker struct {
	cl            *Client
	users         []*Customer
	eventID, tt   string
	accepted      *Accepted
	pause         time.Duration
	browse        bool
	checkoutEvery int // 0: never (hold and release), 1: every iteration, 2: every other one
	follow        bool
	// lostHoldOK accepts a checkout answering 404 (the hold vanished with Redis's state).
	lostHoldOK bool
	// baseline makes the worker only call GET /livez (the trivial handler), every pause.
	baseline bool
	notes    *notes

	iterations, holds, soldOut, orders, lostHolds atomic.Int64
}

// run loops until stop is set (finishing the iteration under way, so no hold is left behind) or
// ctx ends (a hard stop).
func (w *worker) run(ctx context.Context, stop *atomic.Bool, id int) {
	for i := 0; ctx.Err() == nil && !stop.Load(); i++ {
		if w.baseline {
			if r := w.cl.Livez(ctx); r.Status != http.StatusOK && ctx.Err() == nil {
				w.notes.add("livez: %s", r)
			}
			sleepCtx(ctx, w.pause)
			continue
		}
		w.iterations.Add(1)
		u := w.users[i%len(w.users)]
		if w.browse {
			w.cl.Event(ctx, w.eventID)
			w.cl.Availability(ctx, w.eventID)
		}
		h := w.cl.Hold(ctx, u, w.tt, 1, fmt.Sprintf("w%d-hold-%d", id, i))
		switch {
		case ctx.Err() != nil:
			return
		case h.Status == http.StatusCreated || h.Status == http.StatusOK:
			w.holds.Add(1)
		case h.SoldOut():
			w.soldOut.Add(1)
			sleepCtx(ctx, w.pause)
			continue
		default:
			w.notes.add("hold: %s", h.Resp)
			sleepCtx(ctx, w.pause)
			continue
		}
		if w.checkoutEvery == 0 || i%w.checkoutEvery != 0 {
			if r := w.cl.Release(ctx, u, h.ID); r.Status != http.StatusNoContent && ctx.Err() == nil {
				w.notes.add("release: %s", r)
			}
			sleepCtx(ctx, w.pause)
			continue
		}
		o, r := w.cl.Checkout(ctx, u, h.ID, fmt.Sprintf("w%d-order-%d", id, i))
		switch {
		case ctx.Err() != nil:
			return
		case r.Status == http.StatusAccepted:
			w.orders.Add(1)
			w.accepted.Add(o.ID, u)
		case r.Status == http.StatusNotFound && w.lostHoldOK:
			w.lostHolds.Add(1)
			sleepCtx(ctx, w.pause)
			continue
		default:
			w.notes.add("checkout: %s", r)
			w.cl.Release(ctx, u, h.ID)
			sleepCtx(ctx, w.pause)
			continue
		}
		if w.follow {
			// Follow the order until it is terminal, so the customer's holds do not pile up.
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; {
				got, r := w.cl.Order(ctx, u, o.ID)
				if r.Status != http.StatusOK {
					if ctx.Err() == nil {
						w.notes.add("get order: %s", r)
					}
					break
				}
				if got.Terminal() {
					break
				}
				sleepCtx(ctx, 100*time.Millisecond)
			}
		}
		sleepCtx(ctx, w.pause)
	}
}

// traffic runs workers until stopped.
type traffic struct {
	workers []*worker
	stop    atomic.Bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func startTraffic(workers ...*worker) *traffic {
	ctx, cancel := context.WithCancel(context.Background())
	tr := &traffic{workers: workers, cancel: cancel}
	for i, w := range workers {
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			w.run(ctx, &tr.stop, i)
		}()
	}
	return tr
}

// Stop lets every worker finish its iteration (its hold released or checked out), cancelling
// what is left after 45 s, and waits for them.
func (tr *traffic) Stop() {
	tr.stop.Store(true)
	done := make(chan struct{})
	go func() {
		tr.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(45 * time.Second):
		tr.cancel()
		<-done
	}
	tr.cancel()
}

func (tr *traffic) sum(f func(*worker) int64) int64 {
	var n int64
	for _, w := range tr.workers {
		n += f(w)
	}
	return n
}

func (tr *traffic) String() string {
	return fmt.Sprintf("%d iterations, %d holds, %d sold-out answers, %d orders accepted, %d holds lost before checkout",
		tr.sum(func(w *worker) int64 { return w.iterations.Load() }), tr.sum(func(w *worker) int64 { return w.holds.Load() }),
		tr.sum(func(w *worker) int64 { return w.soldOut.Load() }), tr.sum(func(w *worker) int64 { return w.orders.Load() }),
		tr.sum(func(w *worker) int64 { return w.lostHolds.Load() }))
}

// poll waits until cond holds, checking every interval, and fails the test at the deadline with
// what it waited for (describe is called then, so it can report the last state seen).
func poll(t *testing.T, timeout, interval time.Duration, cond func() bool, describe func() string) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("not true after %s: %s", timeout, describe())
		}
		time.Sleep(interval)
	}
	return time.Since(start)
}

// says is a constant description for poll.
func says(s string) func() string { return func() string { return s } }

// split deals customers out to n workers.
func split(users []*Customer, n int) [][]*Customer {
	out := make([][]*Customer, n)
	for i, u := range users {
		out[i%n] = append(out[i%n], u)
	}
	return out
}

const (
	saleBuyers   = 2000
	saleCapacity = 200
	saleConns    = 200 // concurrent client connections during the sale
)

// saleOutcome is what the buyers of a flash sale got.
type saleOutcome struct {
	accepted    *Accepted
	holds       atomic.Int64 // buyers who got a hold
	soldOut     atomic.Int64 // buyers told 409 sold-out
	holdAnswers atomic.Int64 // hold requests answered (any final answer)
	mu          sync.Mutex
	unexpected  []string
	duration    time.Duration
}

func (s *saleOutcome) fail(format string, args ...any) {
	s.mu.Lock()
	s.unexpected = append(s.unexpected, fmt.Sprintf(format, args...))
	s.mu.Unlock()
}

// flashSale releases every buyer at once, conns at a time: each asks for one ticket and, when it
// gets one, checks out at once. afterHold runs after each hold answer with the count so far.
func flashSale(ctx context.Context, cl *Client, buyers []*Customer, ticketTypeID string, conns int, afterHold func(n int64)) *saleOutcome {
	out := &saleOutcome{accepted: NewAccepted()}
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for {
				i := int(next.Add(1)) - 1
				if i >= len(buyers) || ctx.Err() != nil {
					return
				}
				u := buyers[i]
				h := cl.Hold(ctx, u, ticketTypeID, 1, "hold-"+u.Email)
				n := out.holdAnswers.Add(1)
				if afterHold != nil {
					afterHold(n)
				}
				switch {
				case h.Status == http.StatusCreated || h.Status == http.StatusOK:
					out.holds.Add(1)
				case h.SoldOut():
					out.soldOut.Add(1)
					continue
				default:
					out.fail("hold for %s: %s", u.Email, h.Resp)
					continue
				}
				o, r := cl.Checkout(ctx, u, h.ID, "order-"+u.Email)
				if r.Status != http.StatusAccepted {
					out.fail("checkout of hold %s for %s: %s", h.ID, u.Email, r)
					continue
				}
				out.accepted.Add(o.ID, u)
			}
		}()
	}
	began := time.Now()
	close(start)
	wg.Wait()
	out.duration = time.Since(began)
	return out
}

// logSpread logs how the sale's holds spread over the replicas.
func logSpread(t *testing.T, c *Cluster) {
	t.Helper()
	for _, r := range c.Replicas {
		if !r.Serves("inventory") {
			continue
		}
		if !r.Running() {
			t.Logf("%s: not running", r.Name)
			continue
		}
		t.Logf("%s: holds created %.0f, HTTP requests %.0f", r.Name,
			r.MetricSum("onsale_inventory_holds_created_total"), r.MetricSum("onsale_http_requests_total"))
	}
}

func setupSale(t *testing.T, c *Cluster, cl *Client, buyers, capacity, maxPerOrder int, tag string) (string, string, []*Customer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	org := &Customer{Email: c.OrganizerEmail, Password: c.OrganizerPassword}
	eventID, ttID, err := cl.CreateSale(ctx, org, capacity, maxPerOrder, 4900)
	if err != nil {
		t.Fatalf("set up the sale: %v", err)
	}
	var customers []*Customer
	if buyers > 0 {
		if customers, err = cl.RegisterCustomers(ctx, tag, buyers, 48); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("sale set up in %s: event %s, ticket type %s (capacity %d, max %d per order), %d customers registered and logged in",
		time.Since(start).Round(time.Millisecond), eventID, ttID, capacity, maxPerOrder, buyers)
	return eventID, ttID, customers
}

// testTag makes account emails unique per run.
func testTag(base string) string {
	return fmt.Sprintf("%s%d", base, time.Now().UnixNano()%1e9)
}

// waitServed waits until the replica has answered at least n more requests than it had, so the
// test knows traffic reaches it (it polls the replica's own request counter).
func waitServed(t *testing.T, r *Replica, n float64, timeout time.Duration) {
	t.Helper()
	base := r.MetricSum("onsale_http_requests_total")
	deadline := time.Now().Add(timeout)
	for r.MetricSum("onsale_http_requests_total") < base+n {
		if time.Now().After(deadline) {
			t.Fatalf("%s served fewer than %.0f requests in %s after rejoining", r.Name, n, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fastRedelivery makes a payment a crashed or cut-off worker held come back within seconds.
var fastRedelivery = map[string]string{"ONSALE_PAYMENT_ACK_WAIT": "12s", "ONSALE_PROVIDER_TIMEOUT": "8s"}

// soldHistory samples PostgreSQL's sold count over time, to judge answers served from caches.
type soldHistory struct {
	mu      sync.Mutex
	at      []time.Time
	sold    []int
	stop    chan struct{}
	stopped chan struct{}
}

func watchSold(c *Cluster, ticketTypeID string) *soldHistory {
	h := &soldHistory{stop: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(h.stopped)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			sold, _, err := c.Sold(ctx, ticketTypeID)
			cancel()
			if err == nil {
				h.mu.Lock()
				h.at, h.sold = append(h.at, time.Now()), append(h.sold, sold)
				h.mu.Unlock()
			}
			select {
			case <-h.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return h
}

func (h *soldHistory) Stop() {
	select {
	case <-h.stop:
	default:
		close(h.stop)
		<-h.stopped
	}
}

// before returns the sold count last sampled at or before t (-1 if none).
func (h *soldHistory) before(t time.Time) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	v := -1
	for i, at := range h.at {
		if at.After(t) {
			break
		}
		v = h.sold[i]
	}
	return v
}

func (h *soldHistory) last() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.sold) == 0 {
		return -1
	}
	return h.sold[len(h.sold)-1]
}

// breakerStates reads onsale_payment_breaker_state from every running replica.
func breakerStates(c *Cluster) []int {
	out := make([]int, len(c.Replicas))
	for i, r := range c.Replicas {
		out[i] = -1
		if m, err := r.Metric("onsale_payment_breaker_state"); err == nil {
			for _, v := range m {
				out[i] = int(v)
			}
		}
	}
	return out
}

// slowest lists the n slowest samples, with when they were sent relative to from.
func slowest(samples []Sample, from time.Time, n int) string {
	s := append([]Sample(nil), samples...)
	sort.Slice(s, func(i, j int) bool { return s[i].Latency > s[j].Latency })
	var b strings.Builder
	for i := 0; i < n && i < len(s); i++ {
		fmt.Fprintf(&b, " %s@+%s", s[i].Latency.Round(100*time.Microsecond), s[i].At.Sub(from).Round(10*time.Millisecond))
	}
	return b.String()
}
