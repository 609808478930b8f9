package payment_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/sony/gobreaker/v2"

	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/payment"
	"github.com/onsale-dev/onsale/internal/payment/paymenttest"
	"github.com/onsale-dev/onsale/internal/payment/simulated"
	"github.com/onsale-dev/onsale/internal/platform/apitest"
	"github.com/onsale-dev/onsale/internal/platform/httpserver"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

// The "done when" scenarios of the payment issue, against the real PostgreSQL, Redis and NATS.
// Pools are kept small: the test database server is shared.

func realStack(t *testing.T, o paymenttest.Options) *paymenttest.Stack {
	t.Helper()
	o.Backend, o.NATS = paymenttest.Real, paymenttest.RealNATS
	if o.PGConns == 0 {
		o.PGConns = 4
	}
	return paymenttest.NewStack(t, o)
}

func count(t *testing.T, s *paymenttest.Stack, query string, args ...any) int {
	t.Helper()
	var n int
	if err := s.PG.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// checkout is one POST /v1/orders made off the test goroutine.
type checkout struct {
	status   int
	id       string
	replayed bool
	body     string
}

func post(s *paymenttest.Stack, u paymenttest.User, holdID, key string) checkout {
	r := s.Checkout(u, holdID, key)
	c := checkout{status: r.Status, replayed: r.Header.Get("Idempotent-Replayed") == "true", body: string(r.Body)}
	var o paymenttest.OrderJSON
	if json.Unmarshal(r.Body, &o) == nil {
		c.id = o.ID
	}
	return c
}

// TestE2EConcurrentCheckouts is not parallel: it runs alone, before the parallel tests, so 500
// simultaneous requests on a 2-core machine under -race measure the module, not the neighbours.
func TestE2EConcurrentCheckouts(t *testing.T) {
	const n = 500
	s := realStack(t, paymenttest.Options{Mode: simulated.Mode{Latency: 2 * time.Millisecond}, PGConns: 10,
		Config: func(c *payment.Config) { c.Workers = 64 },
		// Every request answers without a payment call, but 500 at once share two cores with
		// the race detector and the response checks; don't let a slow machine turn them into 503s.
		HTTP: func(c *httpserver.Config) { c.RequestTimeout, c.WriteTimeout = time.Minute, time.Minute }})
	tt := s.TicketType(n)
	customers := make([]paymenttest.User, n)
	for i := range customers {
		customers[i] = s.NewCustomer()
	}
	holds := make([]inventory.Hold, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			holds[i], errs[i] = s.TryHold(customers[i], tt, 1)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("hold %d: %v", i, err)
		}
	}
	if st := s.Stock(tt); st.Held != n || st.Available() != 0 {
		t.Fatalf("stock after the holds: %+v", st)
	}

	// Everyone checks out at once.
	results := make([]checkout, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i] = post(s, customers[i], holds[i].ID, "checkout-"+strconv.Itoa(i))
		}()
	}
	began := time.Now()
	close(start)
	wg.Wait()
	accepted := time.Since(began)
	ids := map[uuid.UUID]bool{}
	for i, r := range results {
		if r.status != http.StatusAccepted || r.id == "" {
			t.Fatalf("checkout %d: %d %s", i, r.status, r.body)
		}
		ids[uuid.MustParse(r.id)] = true
	}
	if len(ids) != n {
		t.Fatalf("%d distinct orders for %d checkouts", len(ids), n)
	}

	testenv.Eventually(t, 90*time.Second, func() bool {
		return count(t, s, `SELECT count(*) FROM payment.orders WHERE status <> 'pending'`) == n
	}, "not every order finished: %d pending", count(t, s, `SELECT count(*) FROM payment.orders WHERE status = 'pending'`))
	t.Logf("%d checkouts accepted in %s, all paid after %s", n, accepted.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	if c := count(t, s, `SELECT count(*) FROM payment.orders WHERE status = 'confirmed'`); c != n {
		t.Fatalf("%d of %d orders confirmed", c, n)
	}

	// Charged exactly once each, under the order's id.
	l := s.Sim.Ledger(true)
	if l.Charges != n || len(l.Entries) != n || l.Refunds != 0 || l.Declines != 0 || l.ChargedCents != int64(n)*tt.PriceCents {
		t.Fatalf("ledger: %d charges, %d entries, %d refunds, %d declines, %d cents", l.Charges, len(l.Entries), l.Refunds, l.Declines, l.ChargedCents)
	}
	repeated := 0
	for _, e := range l.Entries {
		if !ids[uuid.MustParse(e.Key)] || e.ChargeID == "" || e.Refunded {
			t.Fatalf("ledger entry %+v", e)
		}
		// Only a redelivery presents a key again (and it gets the first charge back).
		if e.ChargeCalls > 1 {
			repeated++
			if d := s.Deliveries(uuid.MustParse(e.Key)); d < e.ChargeCalls {
				t.Fatalf("key %s presented %d times in %d deliveries", e.Key, e.ChargeCalls, d)
			}
		}
	}
	if repeated > 0 {
		t.Logf("%d of %d orders were delivered more than once (their messages outlived AckWait under load); each was charged once", repeated, n)
	}
	for id := range ids {
		o := s.Order(id)
		if e, _ := s.Entry(id.String()); o.ChargeID != e.ChargeID || len(o.Tickets) != 1 {
			t.Fatalf("order %+v, entry %+v", o, e)
		}
	}

	// Tickets issued = sold = n, never more.
	if c := count(t, s, `SELECT count(*) FROM inventory.tickets WHERE ticket_type_id = $1`, tt.ID); c != n {
		t.Fatalf("%d tickets issued", c)
	}
	if c := count(t, s, `SELECT count(DISTINCT hold_id) FROM inventory.tickets WHERE ticket_type_id = $1`, tt.ID); c != n {
		t.Fatalf("tickets of %d holds", c)
	}
	if c := count(t, s, `SELECT count(*) FROM payment.order_tickets`); c != n {
		t.Fatalf("%d tickets on orders", c)
	}
	if sold := s.Sold(tt); sold != n {
		t.Fatalf("sold %d", sold)
	}
	if st := s.Stock(tt); st.Sold != n || st.Held != 0 || st.Available() != 0 {
		t.Fatalf("stock %+v", st)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return count(t, s, `SELECT count(*) FROM payment.outbox`) == 0 },
		"the outbox was not emptied")
}

func TestE2EProviderOutage(t *testing.T) {
	t.Parallel()
	const n = 50
	s := realStack(t, paymenttest.Options{Mode: simulated.Mode{Latency: 2 * time.Millisecond, Outage: true},
		Config: func(c *payment.Config) {
			// Long enough that no order is given up during the outage: while the breaker is open
			// orders wait, they are not failed.
			c.MaxDeliver = 20
			c.BreakerRamp = 500 * time.Millisecond
		}})
	tt := s.TicketType(n)
	var ids []uuid.UUID
	var owners []paymenttest.User
	for range n {
		u := s.NewCustomer()
		owners = append(owners, u)
		ids = append(ids, s.CheckoutOK(u, s.Hold(u, tt, 1).ID).UUID())
	}
	testenv.Eventually(t, 20*time.Second, func() bool { return s.Guarded.State() == gobreaker.StateOpen },
		"the breaker did not open with the provider failing every call")
	delayed := func() int {
		return count(t, s, `SELECT count(*) FROM payment.orders WHERE status = 'pending' AND status_detail = $1`, payment.DetailDelayed)
	}
	testenv.Eventually(t, 30*time.Second, func() bool { return delayed() == n },
		"orders are not all pending with %q: %d are", payment.DetailDelayed, delayed())
	if c := count(t, s, `SELECT count(*) FROM payment.orders WHERE status <> 'pending'`); c != 0 {
		t.Fatalf("%d orders finished during the outage", c)
	}
	// The customer sees why.
	if r, view := s.GetOrder(owners[0], ids[0].String()); r.Status != http.StatusOK || view.Status != "pending" ||
		view.StatusDetail != payment.DetailDelayed {
		t.Fatalf("GET during the outage: %d %+v", r.Status, view)
	}
	if l := s.Sim.Ledger(false); l.Charges != 0 || l.Calls == 0 {
		t.Fatalf("ledger during the outage %+v", l)
	}

	// Recovery: every order completes, none is lost, each is charged once.
	s.Sim.SetMode(simulated.Mode{Latency: 2 * time.Millisecond})
	recovered := time.Now()
	testenv.Eventually(t, 90*time.Second, func() bool {
		return count(t, s, `SELECT count(*) FROM payment.orders WHERE status = 'confirmed'`) == n
	}, "not every order completed after recovery: %d pending, %d failed",
		count(t, s, `SELECT count(*) FROM payment.orders WHERE status = 'pending'`),
		count(t, s, `SELECT count(*) FROM payment.orders WHERE status = 'failed'`))
	t.Logf("all %d orders confirmed %s after the provider recovered", n, time.Since(recovered).Round(time.Millisecond))
	for _, id := range ids {
		o := s.Order(id)
		if o.StatusDetail != "" || len(o.Tickets) != 1 {
			t.Fatalf("order %+v", o)
		}
	}
	l := s.Sim.Ledger(true)
	if l.Charges != n || len(l.Entries) != n || l.Refunds != 0 {
		t.Fatalf("ledger %+v", l)
	}
	for _, e := range l.Entries {
		if e.ChargeID == "" || e.Refunded {
			t.Fatalf("entry %+v", e)
		}
	}
	if s.Sold(tt) != n || count(t, s, `SELECT count(*) FROM inventory.tickets`) != n {
		t.Fatalf("sold %d", s.Sold(tt))
	}
	if st := s.Guarded.State(); st != gobreaker.StateClosed {
		t.Fatalf("breaker %s after recovery", st)
	}
}

func TestE2EWorkerKilledMidCharge(t *testing.T) {
	t.Parallel()
	cfg := func(c *payment.Config) {
		c.AckWait = 2 * time.Second
		c.ProviderTO = 1800 * time.Millisecond
	}
	a := realStack(t, paymenttest.Options{Mode: simulated.Mode{Latency: 1200 * time.Millisecond}, Config: cfg})
	tt := a.TicketType(10)
	o := a.CheckoutOK(a.Customer, a.Hold(a.Customer, tt, 2).ID)
	// The charge is on its way to the provider...
	testenv.Eventually(t, 20*time.Second, func() bool { return a.Sim.Ledger(false).Calls >= 1 }, "the charge never reached the provider")
	// ...when the worker dies: its connection drops without an ack, and it never hears back.
	a.Kill()

	// Another replica takes over the same durable consumer.
	b := realStack(t, paymenttest.Options{Join: a, Config: cfg})
	got := b.WaitStatus(o.UUID(), payment.StatusConfirmed, 30*time.Second)
	e, ok := b.Entry(o.ID)
	if !ok || e.ChargeCalls < 2 {
		t.Fatalf("entry %+v: want the key presented again by the redelivery", e)
	}
	l := b.Sim.Ledger(true)
	if l.Charges != 1 || len(l.Entries) != 1 || l.Refunds != 0 || e.Refunded || got.ChargeID != e.ChargeID {
		t.Fatalf("ledger %+v, order charge %s: want exactly one charge", l, got.ChargeID)
	}
	if len(got.Tickets) != 2 || b.Sold(tt) != 2 ||
		count(t, b, `SELECT count(*) FROM inventory.tickets WHERE hold_id = $1`, o.HoldID) != 2 {
		t.Fatalf("order %+v, sold %d", got, b.Sold(tt))
	}
}

func TestE2EDuplicateIdempotencyKey(t *testing.T) {
	t.Parallel()
	const n = 20
	s := realStack(t, paymenttest.Options{Mode: simulated.Mode{Latency: 2 * time.Millisecond}})
	tt := s.TicketType(10)
	h := s.Hold(s.Customer, tt, 2)
	results := make([]checkout, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i] = post(s, s.Customer, h.ID, "one-key")
		}()
	}
	close(start)
	wg.Wait()
	fresh := 0
	for i, r := range results {
		if r.status != http.StatusAccepted || r.id != results[0].id {
			t.Fatalf("request %d: %d %s (first id %s)", i, r.status, r.body, results[0].id)
		}
		if !r.replayed {
			fresh++
		}
	}
	if fresh != 1 {
		t.Fatalf("%d answers were not replays, want 1", fresh)
	}
	orders := s.Orders(s.Customer.ID)
	if len(orders) != 1 || orders[0].ID.String() != results[0].id {
		t.Fatalf("%d orders", len(orders))
	}
	s.WaitStatus(orders[0].ID, payment.StatusConfirmed, 20*time.Second)
	if l := s.Sim.Ledger(false); l.Charges != 1 {
		t.Fatalf("ledger %+v", l)
	}
	if c := count(t, s, `SELECT count(*) FROM payment.idempotency_keys`); c != 1 {
		t.Fatalf("%d idempotency keys", c)
	}
}

// sse is what an event stream showed.
type sse struct {
	id       string
	event    string
	data     payment.StatusEvent
	comment  string
	finished bool // the server ended the stream
}

// openStream follows an order's events on a stack's API and returns what it reads, as it
// reads it; the channel closes when the stream ends.
func openStream(t *testing.T, s *paymenttest.Stack, u paymenttest.User, orderID, lastEventID string) (*http.Response, <-chan sse) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.Server.URL+"/v1/orders/"+orderID+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+u.Token)
	req.Header.Set("Accept", "text/event-stream")
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	out := make(chan sse, 64)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		var cur sse
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if cur.event != "" {
					out <- cur
				}
				cur = sse{}
			case strings.HasPrefix(line, ":"):
				out <- sse{comment: strings.TrimSpace(line[1:])}
			case strings.HasPrefix(line, "id: "):
				cur.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				cur.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				if err := json.Unmarshal([]byte(line[6:]), &cur.data); err != nil {
					cur.event = "bad data: " + line
				}
			}
		}
		if sc.Err() == nil {
			out <- sse{finished: true}
		}
	}()
	return resp, out
}

// next returns the next status event, skipping comments (counted in beats).
func next(t *testing.T, ch <-chan sse, beats *int) sse {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatal("the stream failed")
			}
			if ev.comment != "" {
				*beats++
				continue
			}
			return ev
		case <-timeout:
			t.Fatal("no event")
		}
	}
}

func TestE2EStatusStreamThroughAnotherReplica(t *testing.T) {
	t.Parallel()
	// Replica A takes orders and pays them; replica B only serves the API, its hub fed by its own
	// NATS subscription. Heartbeats on B are frequent, but its reread of the orders with open
	// streams (every 4 beats) comes later than A's announcement, which must carry the change.
	a := realStack(t, paymenttest.Options{Mode: simulated.Mode{Latency: 2 * time.Millisecond}, NoWorker: true})
	b := realStack(t, paymenttest.Options{Join: a, HTTPOnly: true, PGConns: 3,
		Config: func(c *payment.Config) { c.Heartbeat = 250 * time.Millisecond }})
	tt := a.TicketType(10)
	o := a.CheckoutOK(a.Customer, a.Hold(a.Customer, tt, 1).ID)
	hubEvents, stop := b.Hub.Subscribe(o.UUID())
	defer stop()

	resp, stream := openStream(t, b, b.Customer, o.ID, "")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") ||
		resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("stream: %d %v", resp.StatusCode, resp.Header)
	}
	beats := 0
	first := next(t, stream, &beats)
	if first.event != "status" || first.id != "1" || first.data.Status != payment.StatusPending || first.data.OrderID != o.UUID() ||
		first.data.Version != 1 {
		t.Fatalf("first event %+v", first)
	}
	// A heartbeat comes while nothing happens.
	testenv.Eventually(t, 10*time.Second, func() bool {
		select {
		case ev := <-stream:
			if ev.comment == "keep-alive" {
				return true
			}
			t.Fatalf("unexpected %+v while pending", ev)
		default:
		}
		return false
	}, "no keep-alive comment")

	a.StartWorker()
	second := next(t, stream, &beats)
	if second.event != "status" || second.id != "2" || second.data.Status != payment.StatusConfirmed || second.data.Version != 2 {
		t.Fatalf("second event %+v", second)
	}
	// B's own Rechecker may hand its hub the pending version first (a stream is open there);
	// what matters is that the confirmation arrives.
	for confirmed := false; !confirmed; {
		select {
		case ev := <-hubEvents:
			switch {
			case ev.Status == payment.StatusConfirmed:
				confirmed = true
			case ev.Status != payment.StatusPending || ev.Version != 1:
				t.Fatalf("B's hub got %+v", ev)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("A's announcement did not reach B over NATS")
		}
	}
	if end := next(t, stream, &beats); !end.finished {
		t.Fatalf("the stream went on after the terminal status: %+v", end)
	}

	// Reconnecting with the last id seen gets nothing old, and the stream ends at once.
	_, again := openStream(t, b, b.Customer, o.ID, second.id)
	if end := next(t, again, &beats); !end.finished {
		t.Fatalf("a reconnect with Last-Event-ID %s got %+v", second.id, end)
	}
	// With an older id it gets only what came after.
	_, resumed := openStream(t, b, b.Customer, o.ID, "1")
	if ev := next(t, resumed, &beats); ev.event != "status" || ev.data.Status != payment.StatusConfirmed || ev.id != "2" {
		t.Fatalf("resumed stream: %+v", ev)
	}
	if end := next(t, resumed, &beats); !end.finished {
		t.Fatalf("resumed stream went on: %+v", end)
	}
	// Somebody else's order stream is not theirs.
	resp, _ = openStream(t, b, b.Customer2, o.ID, "")
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("another customer's stream: %d", resp.StatusCode)
	}
}

// finished waits for the stream to end, returning the events it sent on the way.
func finished(t *testing.T, ch <-chan sse, within time.Duration) []sse {
	t.Helper()
	var seen []sse
	timeout := time.After(within)
	for {
		select {
		case ev, ok := <-ch:
			if !ok || ev.finished {
				return seen
			}
			if ev.comment == "" {
				seen = append(seen, ev)
			}
		case <-timeout:
			t.Fatalf("the stream is still open after %s (saw %+v)", within, seen)
			return nil
		}
	}
}

func TestStreamsAreReauthorized(t *testing.T) {
	t.Parallel()
	// The provider takes a minute per call: orders stay pending and their streams stay open.
	s := httpStack(t, paymenttest.Options{Mode: simulated.Mode{Latency: time.Minute},
		Config: func(c *payment.Config) { c.Heartbeat, c.MaxStreams = 200*time.Millisecond, 3 }})
	tt := s.TicketType(100)
	o := s.CheckoutOK(s.Customer, s.Hold(s.Customer, tt, 1).ID)

	t.Run("LogoutEndsTheStream", func(t *testing.T) {
		u := s.NewCustomer()
		mine := s.CheckoutOK(u, s.Hold(u, tt, 1).ID)
		_, ch := openStream(t, s, u, mine.ID, "")
		var beats int
		if ev := next(t, ch, &beats); ev.data.Status != payment.StatusPending {
			t.Fatalf("first event %+v", ev)
		}
		s.Logout(u)
		// One heartbeat is 200 ms; allow for a busy machine, but far less than the token's hour.
		finished(t, ch, 5*time.Second)
	})

	t.Run("TokenExpiryAsksToReconnect", func(t *testing.T) {
		u := s.Customer
		short := paymenttest.User{ID: u.ID, Role: u.Role, SessionID: u.SessionID, Token: s.TokenFor(u, 1500*time.Millisecond)}
		_, ch := openStream(t, s, short, o.ID, "")
		seen := finished(t, ch, 10*time.Second)
		if len(seen) != 2 || seen[0].data.Status != payment.StatusPending || seen[1].event != "reconnect" {
			t.Fatalf("events %+v; want the status, then reconnect", seen)
		}
	})

	t.Run("CapPerCustomer", func(t *testing.T) {
		u := s.NewCustomer()
		mine := s.CheckoutOK(u, s.Hold(u, tt, 1).ID)
		var bodies []*http.Response
		for range 3 {
			resp, ch := openStream(t, s, u, mine.ID, "")
			var beats int
			next(t, ch, &beats)
			bodies = append(bodies, resp)
		}
		s.Do(apitest.Request{Method: http.MethodGet, Path: "/v1/orders/" + mine.ID + "/events", Token: u.Token}).
			Expect(t, http.StatusTooManyRequests, "too-many-streams")
		// Another customer is not affected.
		_, ch := openStream(t, s, s.Customer, o.ID, "")
		var beats int
		next(t, ch, &beats)
		// Closing one makes room.
		bodies[0].Body.Close()
		deadline := time.Now().Add(5 * time.Second)
		for {
			resp, ch := openStream(t, s, u, mine.ID, "")
			if resp.StatusCode == http.StatusOK {
				next(t, ch, &beats)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("a closed stream was still counted: %d", resp.StatusCode)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// TestLostAnnouncementReachesTheStream: a status change nobody announced (the replica that made it
// died between its commit and its publish) reaches an open stream from the replica's reread of
// the orders with open streams, within a few heartbeats, over memory and PostgreSQL.
func TestLostAnnouncementReachesTheStream(t *testing.T) {
	t.Parallel()
	for _, backend := range []paymenttest.Backend{paymenttest.Memory, paymenttest.Real} {
		t.Run(backend.String(), func(t *testing.T) {
			t.Parallel()
			s := httpStack(t, paymenttest.Options{Backend: backend, NoWorker: true,
				Config: func(c *payment.Config) { c.Heartbeat = 100 * time.Millisecond }})
			tt := s.TicketType(10)
			o := s.CheckoutOK(s.Customer, s.Hold(s.Customer, tt, 1).ID)
			_, ch := openStream(t, s, s.Customer, o.ID, "")
			var beats int
			if ev := next(t, ch, &beats); ev.data.Status != payment.StatusPending || ev.data.Version != 1 {
				t.Fatalf("first event %+v", ev)
			}
			// Confirmed in the store alone: no announcement.
			if _, changed, err := s.Store.Confirm(context.Background(), o.UUID(), "ch_unannounced", nil); err != nil || !changed {
				t.Fatalf("confirm: changed=%v err=%v", changed, err)
			}
			ev := next(t, ch, &beats)
			if ev.event != "status" || ev.data.Status != payment.StatusConfirmed || ev.data.Version != 2 || ev.id != "2" {
				t.Fatalf("event %+v; want the confirmation", ev)
			}
			if end := next(t, ch, &beats); !end.finished {
				t.Fatalf("the stream went on after the terminal status: %+v", end)
			}
		})
	}
}
