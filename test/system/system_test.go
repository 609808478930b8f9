package system

// The seven system tests, in the order of the issue. Each builds on cluster.go (processes),
// client.go (clients that record every answer), invariants.go (the end-of-test checks) and
// traffic_test.go (the traffic the tests drive).

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestThreeReplicasSale: three replicas behind nginx, 2,000 buyers released at once for 200
// tickets: exactly 200 sold, 200 orders confirmed, 200 charges.
func TestThreeReplicasSale(t *testing.T) {
	systemTest(t)
	threeReplicasSale(t, Options{Replicas: 3})
}

// threeReplicasSale is TestThreeReplicasSale's sale on the cluster o describes; the cluster
// runs until the test ends.
func threeReplicasSale(t *testing.T, o Options) *Cluster {
	c := NewCluster(t, o)
	rec := NewRecorder(t)
	cl := NewClient(c.URL(), rec)
	eventID, ttID, buyers := setupSale(t, c, cl, saleBuyers, saleCapacity, 1, testTag("sale"))

	rec.SetPhase("sale")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// No retries of connection errors here: nothing should fail.
	sale := flashSale(ctx, cl.With(func(c *Client) { c.Relogin = false }), buyers, ttID, saleConns, nil)
	t.Logf("sale over in %s: %d holds, %d sold-out answers, %d orders accepted", sale.duration.Round(time.Millisecond),
		sale.holds.Load(), sale.soldOut.Load(), sale.accepted.Len())
	logSpread(t, c)
	for i, u := range sale.unexpected {
		if i == 10 {
			break
		}
		t.Errorf("unexpected answer: %s", u)
	}

	rec.SetPhase("settle")
	f := CheckInvariants(t, c, eventID, ttID, sale.accepted, 60*time.Second)
	t.Logf("client answers:%s", rec.Counts(nil))

	if got := sale.holds.Load(); got != saleCapacity {
		t.Errorf("%d buyers got a hold, want exactly %d", got, saleCapacity)
	}
	if got := sale.accepted.Len(); got != saleCapacity {
		t.Errorf("%d orders accepted, want %d", got, saleCapacity)
	}
	if f.Sold != saleCapacity || f.Confirmed != saleCapacity || f.LedgerCharges != saleCapacity {
		t.Errorf("want exactly %d sold, confirmed and charged; got sold=%d confirmed=%d charges=%d", saleCapacity, f.Sold, f.Confirmed, f.LedgerCharges)
	}
	if f.Failed != 0 {
		t.Errorf("%d orders failed: %v", f.Failed, f.FailReasons)
	}
	rec.Forbid(t, "connection errors", Sample.ConnErr)
	rec.Forbid(t, "5xx answers other than 503 with Retry-After", func(s Sample) bool { return s.Status >= 500 && !s.Unavailable() })
	rec.Forbid(t, "401 answers", func(s Sample) bool { return s.Status == http.StatusUnauthorized })
	return c
}

// TestReplicaKilledMidSale: the same sale, and one replica is killed with SIGKILL once a third of
// the holds are answered (it is not restarted). The sale still ends exactly sold out, every
// accepted order ends confirmed or failed-and-refunded within 60 s, nothing is charged twice.
// Clients retry requests that got a connection error or a 502 (same Idempotency-Key).
func TestReplicaKilledMidSale(t *testing.T) {
	systemTest(t)
	// The killed replica's unacknowledged payments come back after AckWait (12 s here).
	c := NewCluster(t, Options{Replicas: 3, Env: fastRedelivery})
	rec := NewRecorder(t)
	cl := NewClient(c.URL(), rec)
	eventID, ttID, buyers := setupSale(t, c, cl, saleBuyers, saleCapacity, 1, testTag("kill"))

	victim := c.Replicas[1]
	var (
		killOnce sync.Once
		killedAt time.Time
		killed   = make(chan struct{})
	)
	kill := func(n int64) {
		killOnce.Do(func() {
			go func() {
				defer close(killed)
				killedAt = time.Now()
				_ = victim.Signal(syscall.SIGKILL)
				code, _ := victim.Wait(10 * time.Second)
				t.Logf("%s killed with SIGKILL after %d of %d hold answers (exit code %d)", victim.Name, n, saleBuyers, code)
			}()
		})
	}
	rec.SetPhase("sale")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	buyer := cl.With(func(c *Client) { c.RetryConnErrors, c.Relogin = true, false })
	sale := flashSale(ctx, buyer, buyers, ttID, saleConns, func(n int64) {
		if n >= saleBuyers/3 {
			kill(n)
		}
	})
	kill(-1) // in case the sale ended early
	<-killed
	t.Logf("sale over in %s: %d holds, %d sold-out answers, %d orders accepted", sale.duration.Round(time.Millisecond),
		sale.holds.Load(), sale.soldOut.Load(), sale.accepted.Len())
	logSpread(t, c)
	for i, u := range sale.unexpected {
		if i == 10 {
			break
		}
		t.Errorf("unexpected answer: %s", u)
	}

	rec.SetPhase("settle")
	f := CheckInvariants(t, c, eventID, ttID, sale.accepted, 60*time.Second)
	t.Logf("every accepted order terminal %s after the kill", time.Since(killedAt).Round(time.Millisecond))
	t.Logf("client answers:%s", rec.Counts(nil))
	t.Logf("connection errors and 502s retried by clients: %d", len(rec.Samples(func(s Sample) bool { return s.ConnErr() || s.Status == http.StatusBadGateway })))

	if f.Sold != saleCapacity {
		t.Errorf("the sale did not end exactly sold out: sold=%d, capacity=%d", f.Sold, saleCapacity)
	}
	if got := sale.accepted.Len(); got != f.Confirmed+f.Failed {
		t.Errorf("%d orders accepted but %d confirmed + %d failed", got, f.Confirmed, f.Failed)
	}
	rec.Forbid(t, "5xx answers other than 502 (the killed replica's in-flight requests) and 503 with Retry-After",
		func(s Sample) bool { return s.Status >= 500 && s.Status != http.StatusBadGateway && !s.Unavailable() })
	rec.Forbid(t, "connection errors or 502s before the kill", func(s Sample) bool {
		return (s.ConnErr() || s.Status == http.StatusBadGateway) && s.At.Add(s.Latency).Before(killedAt)
	})
	rec.Forbid(t, "401 answers", func(s Sample) bool { return s.Status == http.StatusUnauthorized })
}

// TestRollingRestart: SIGTERM each replica in turn (wait for exit 0, start it again, wait until it
// is ready and back in rotation, next) while 20 clients browse, hold, release and check out
// through the load balancer. Zero failed requests: every answer is 2xx, no 5xx, no connection
// error, because readiness fails first and the balancer stops sending before the replica stops
// listening. The balancer here is ReadyProxy, which follows /readyz every 100 ms as an
// orchestrator's endpoints would (nginx open source cannot: see the package comment).
func TestRollingRestart(t *testing.T) {
	systemTest(t)
	c := NewCluster(t, Options{Replicas: 3, ReadinessProxy: true})
	rec := NewRecorder(t)
	cl := NewClient(c.URL(), rec)
	const clients = 20
	eventID, ttID, customers := setupSale(t, c, cl, clients, 100000, 1, testTag("roll"))

	// No retries of any kind: every failure counts.
	strict := cl.With(func(c *Client) { c.RetryUnavailable, c.RetryConnErrors, c.Relogin = false, false, false })
	accepted := NewAccepted()
	shoppers := &notes{}
	var workers []*worker
	for i := 0; i < clients; i++ {
		workers = append(workers, &worker{cl: strict, users: customers[i : i+1], eventID: eventID, tt: ttID, accepted: accepted,
			pause: 20 * time.Millisecond, browse: true, checkoutEvery: 2, follow: true, notes: shoppers})
	}
	rec.SetPhase("steady")
	tr := startTraffic(workers...)
	defer tr.Stop()
	for _, r := range c.Replicas {
		waitServed(t, r, 50, 20*time.Second)
	}

	for _, r := range c.Replicas {
		rec.SetPhase("restart-" + r.Name)
		began := time.Now()
		if err := r.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		var outAfter time.Duration
		for deadline := time.Now().Add(5 * time.Second); c.LB.InRotation(r.Index) && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		if c.LB.InRotation(r.Index) {
			t.Errorf("%s still in rotation 5s after SIGTERM: its readiness did not fail", r.Name)
		}
		outAfter = time.Since(began)
		code, err := r.Wait(30 * time.Second)
		if err != nil {
			t.Fatalf("%s did not exit after SIGTERM: %v\n%s", r.Name, err, r.Tail(30))
		}
		exited := time.Since(began)
		if code != 0 {
			t.Errorf("%s exited with code %d after SIGTERM, want 0:\n%s", r.Name, code, r.Tail(30))
		}
		c.Restart(t, r)
		ready := time.Since(began)
		for deadline := time.Now().Add(10 * time.Second); !c.LB.InRotation(r.Index); {
			if time.Now().After(deadline) {
				t.Fatalf("%s ready but not back in rotation after 10s", r.Name)
			}
			time.Sleep(10 * time.Millisecond)
		}
		waitServed(t, r, 50, 20*time.Second)
		t.Logf("%s: out of rotation %s after SIGTERM, exited (code %d) after %s, ready again after %s, serving again after %s",
			r.Name, outAfter.Round(time.Millisecond), code, exited.Round(time.Millisecond), ready.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	}
	rec.SetPhase("after")
	for _, r := range c.Replicas {
		waitServed(t, r, 50, 20*time.Second)
	}
	tr.Stop()
	shoppers.report(t, "unexpected answer")
	t.Logf("traffic: %s; %s", tr, c.LB.Describe())

	rec.SetPhase("settle")
	f := CheckInvariants(t, c, eventID, ttID, accepted, 60*time.Second)
	if f.Confirmed != accepted.Len() {
		t.Errorf("%d orders accepted but %d confirmed", accepted.Len(), f.Confirmed)
	}
	t.Logf("client answers:%s", rec.Counts(nil))
	rec.Forbid(t, "failed requests (anything but 2xx or 409 sold-out)", func(s Sample) bool {
		if s.Phase == "setup" || s.Phase == "settle" {
			return s.ConnErr() || s.Status >= 500
		}
		return !(s.Status >= 200 && s.Status < 300) && !(s.Status == http.StatusConflict && s.Route == "POST /v1/holds")
	})
}

// TestRedisRestartMidSale: the sale runs on the test's own redis-server (no persistence); a third
// of the way through, Redis is killed and started again empty. No oversell; the availability
// shown is right again within 10 s (sold equals PostgreSQL's, held within bounds); logged-in
// customers may have to log in again (401, the client logs in and carries on), holds taken before
// the restart are gone, and that is all: the sale goes on to sell out.
func TestRedisRestartMidSale(t *testing.T) {
	systemTest(t)
	redis := StartRedis(t)
	c := NewCluster(t, Options{Replicas: 2, RedisURL: redis.URL, Env: fastRedelivery})
	rec := NewRecorder(t)
	cl := NewClient(c.URL(), rec)
	const capacity = 150
	eventID, ttID, customers := setupSale(t, c, cl, 48, capacity, 1, testTag("redis"))
	history := watchSold(c, ttID)
	defer history.Stop()

	accepted := NewAccepted()
	problems := &notes{}
	var workers []*worker
	for _, us := range split(customers, 16) {
		workers = append(workers, &worker{cl: cl, users: us, eventID: eventID, tt: ttID, accepted: accepted,
			pause: 150 * time.Millisecond, browse: true, checkoutEvery: 1, follow: true, lostHoldOK: true, notes: problems})
	}
	rec.SetPhase("before")
	tr := startTraffic(workers...)
	defer tr.Stop()
	poll(t, 60*time.Second, 50*time.Millisecond, func() bool { return history.last() >= capacity/3 }, says("a third of the tickets sold"))

	rec.SetPhase("redis-down")
	soldBefore := history.last()
	killedAt := time.Now()
	redis.Restart(t, time.Second)
	restartedAt := time.Now()
	rec.SetPhase("after")
	t.Logf("redis-server killed with %d of %d sold and started again empty %s later", soldBefore, capacity, restartedAt.Sub(killedAt).Round(time.Millisecond))

	// The availability clients see must be right again within 10 s: sold as PostgreSQL says (the
	// answer may be up to its max-age old, 1 s), held and available within bounds.
	checker := NewClient(c.URL(), newRecorder())
	var lastSeen string
	correctAfter := poll(t, 10*time.Second, 100*time.Millisecond, func() bool {
		sent := time.Now()
		stocks, r := checker.Availability(context.Background(), eventID)
		soldNow := history.last()
		if r.Status != http.StatusOK || len(stocks) != 1 {
			lastSeen = r.String()
			return false
		}
		s := stocks[0]
		lastSeen = fmt.Sprintf("%+v with PostgreSQL sold %d..%d", s, history.before(sent.Add(-1500*time.Millisecond)), soldNow)
		return s.Sold >= history.before(sent.Add(-1500*time.Millisecond)) && s.Sold >= soldBefore && s.Sold <= soldNow &&
			s.Held >= 0 && s.Held <= capacity-s.Sold && s.Available == capacity-s.Sold-s.Held && s.Capacity == capacity
	}, func() string { return "availability correct after the Redis restart (last: " + lastSeen + ")" })
	t.Logf("availability correct %s after the restart: %s", correctAfter.Round(time.Millisecond), lastSeen)

	// The sale goes on to sell out.
	if !waitFor(30*time.Second, 100*time.Millisecond, func() bool { return history.last() == capacity }) {
		stocks, r := checker.Availability(context.Background(), eventID)
		t.Errorf("the sale did not sell out within 30 s of the Redis restart: PostgreSQL sold %d of %d, availability %+v (%d)",
			history.last(), capacity, stocks, r.Status)
	}
	tr.Stop()
	history.Stop()
	problems.report(t, "unexpected answer")
	t.Logf("traffic: %s", tr)

	rec.SetPhase("settle")
	f := CheckInvariants(t, c, eventID, ttID, accepted, 60*time.Second)
	if f.Sold != capacity {
		t.Errorf("sold %d, want the sale sold out (%d)", f.Sold, capacity)
	}
	var relogins int64
	for _, u := range customers {
		relogins += u.Logins.Load() - 1
	}
	unauthorized := rec.Samples(func(s Sample) bool { return s.Status == http.StatusUnauthorized })
	t.Logf("client answers:%s", rec.Counts(nil))
	t.Logf("after the restart: %d answers 401 and %d logins again; %d answers 503 with Retry-After", len(unauthorized), relogins,
		len(rec.Samples(Sample.Unavailable)))

	window := restartedAt.Add(10 * time.Second)
	rec.Forbid(t, "connection errors", Sample.ConnErr)
	rec.Forbid(t, "5xx answers other than 503 with Retry-After", func(s Sample) bool { return s.Status >= 500 && !s.Unavailable() })
	rec.Forbid(t, "503 answers outside the Redis outage (kill to restart + 10s)", func(s Sample) bool {
		return s.Unavailable() && (s.At.Add(s.Latency).Before(killedAt) || s.At.After(window))
	})
	rec.Forbid(t, "401 answers before the Redis restart", func(s Sample) bool {
		return s.Status == http.StatusUnauthorized && s.At.Add(s.Latency).Before(killedAt)
	})
	rec.Forbid(t, "4xx answers other than 401 (log in again), 409 sold-out and 404 for a hold lost with Redis", func(s Sample) bool {
		switch {
		case s.Status < 400 || s.Status >= 500 || s.Status == http.StatusUnauthorized:
			return false
		case s.Status == http.StatusConflict && strings.HasSuffix(s.Type, "/sold-out"):
			return false
		case s.Status == http.StatusNotFound && s.Route == "POST /v1/orders" && !s.At.Add(s.Latency).Before(killedAt):
			// Answered after the kill: even a checkout sent before it may find its hold gone.
			return false
		}
		return true
	})
}

// TestNATSRestartMidSale: the replicas use the test's own nats-server (JetStream on disk); it is
// stopped for about 5 s while checkouts continue, then started again on the same store. Orders
// accepted during the outage are published from the outbox afterwards and complete: every
// accepted order ends confirmed, and confirmed == sold.
func TestNATSRestartMidSale(t *testing.T) {
	systemTest(t)
	nats := StartNATS(t)
	c := NewCluster(t, Options{Replicas: 2, NATSURL: nats.URL, Env: fastRedelivery})
	rec := NewRecorder(t)
	cl := NewClient(c.URL(), rec)
	eventID, ttID, customers := setupSale(t, c, cl, 100, 100000, 1, testTag("nats"))

	accepted := NewAccepted()
	problems := &notes{}
	var workers []*worker
	for _, us := range split(customers, 10) {
		workers = append(workers, &worker{cl: cl, users: us, eventID: eventID, tt: ttID, accepted: accepted,
			pause: 250 * time.Millisecond, browse: true, checkoutEvery: 1, notes: problems})
	}
	rec.SetPhase("before")
	tr := startTraffic(workers...)
	defer tr.Stop()
	confirmed := func() int {
		n, _ := c.OrderCounts(context.Background())
		return n["confirmed"]
	}
	poll(t, 30*time.Second, 100*time.Millisecond, func() bool { return confirmed() >= 20 }, says("20 orders confirmed before the outage"))

	rec.SetPhase("nats-down")
	downAt := time.Now()
	nats.StopServer(t)
	stoppedAt := time.Now()
	time.Sleep(5 * time.Second) // the scenario: NATS is gone for about 5 s while checkouts continue
	during := len(accepted.Between(stoppedAt, time.Now()))
	var outbox int
	if err := c.DB.QueryRow(context.Background(), `SELECT count(*) FROM payment.outbox`).Scan(&outbox); err != nil {
		t.Fatal(err)
	}
	nats.StartAgain(t)
	upAt := time.Now()
	rec.SetPhase("after")
	t.Logf("nats-server stopped (%s to exit) and started again %s later; %d orders accepted meanwhile, %d payment requests waiting in the outbox",
		stoppedAt.Sub(downAt).Round(time.Millisecond), upAt.Sub(stoppedAt).Round(time.Millisecond), during, outbox)
	if during == 0 {
		t.Errorf("no order was accepted while NATS was down: checkout should not need NATS")
	}
	if outbox == 0 {
		t.Errorf("the outbox was empty while NATS was down with %d orders accepted: where did their payment requests go?", during)
	}
	afterUp := accepted.Len()
	poll(t, 30*time.Second, 100*time.Millisecond, func() bool { return accepted.Len() >= afterUp+20 }, says("20 orders accepted after NATS came back"))
	tr.Stop()
	problems.report(t, "unexpected answer")
	t.Logf("traffic: %s", tr)

	rec.SetPhase("settle")
	f := CheckInvariants(t, c, eventID, ttID, accepted, 60*time.Second)
	if f.Confirmed != accepted.Len() || f.Failed != 0 {
		t.Errorf("%d orders accepted, want all confirmed: %d confirmed, %d failed %v", accepted.Len(), f.Confirmed, f.Failed, f.FailReasons)
	}
	outage := accepted.Between(downAt, upAt)
	final, err := cl.FinalStatuses(context.Background(), accepted, 16)
	if err != nil {
		t.Errorf("read final order statuses: %v", err)
	}
	notConfirmed := 0
	for _, id := range outage {
		if o := final[id]; o.Status != "confirmed" {
			notConfirmed++
			t.Errorf("order %s accepted while NATS was down ended %q (%q)", id, o.Status, o.StatusDetail)
		}
	}
	t.Logf("%d orders accepted while NATS was down (stop to start), %d of them confirmed", len(outage), len(outage)-notConfirmed)
	t.Logf("client answers:%s", rec.Counts(nil))
	rec.Forbid(t, "connection errors", Sample.ConnErr)
	rec.Forbid(t, "5xx answers", func(s Sample) bool { return s.Status >= 500 })
	rec.Forbid(t, "4xx answers", func(s Sample) bool { return s.Status >= 400 && s.Status < 500 })
}

// TestProviderOutageThenSlow: the payment provider is down for 60 s, then answers in 5 s per
// call, while customers browse, hold and check out. The breaker opens (state 2 on /metrics);
// holds, browsing and order creation stay fast (no request near a provider call's time, and the
// 95th percentile within 2× that of a normal phase before, with a floor, judged against a trivial
// handler's rise in the same run); orders queue as pending "payment delayed" and all complete
// after recovery.
func TestProviderOutageThenSlow(t *testing.T) {
	systemTest(t)
	c := NewCluster(t, Options{Replicas: 2, Env: fastRedelivery})
	rec := NewRecorder(t)
	cl := NewClient(c.URL(), rec)
	eventID, ttID, customers := setupSale(t, c, cl, 304, 100000, 1, testTag("provider"))

	accepted := NewAccepted()
	problems := &notes{}
	var workers []*worker
	// Browsers hold and release at a steady pace; buyers check out at a slower one, cycling over
	// 75 customers each, since pending orders keep their holds; a baseline probe calls the trivial
	// /livez handler, to tell the machine's own noise from the server's.
	for i := 0; i < 4; i++ {
		workers = append(workers, &worker{cl: cl, users: customers[i : i+1], eventID: eventID, tt: ttID,
			pause: 40 * time.Millisecond, browse: true, notes: problems})
	}
	for _, us := range split(customers[4:], 4) {
		workers = append(workers, &worker{cl: cl, users: us, eventID: eventID, tt: ttID, accepted: accepted,
			pause: 500 * time.Millisecond, checkoutEvery: 1, notes: problems})
	}
	workers = append(workers, &worker{cl: cl, baseline: true, pause: 20 * time.Millisecond, notes: problems})
	rec.SetPhase("normal")
	tr := startTraffic(workers...)
	defer tr.Stop()
	samples := func(phase, route string) []Sample {
		return rec.Samples(func(s Sample) bool { return s.Phase == phase && s.Route == route })
	}
	// Enough orders in each phase for a 95th percentile that is not one unlucky request (the
	// 15th slowest of 300).
	const orderSamples = 300
	poll(t, 120*time.Second, 100*time.Millisecond, func() bool {
		return len(samples("normal", "POST /v1/holds")) >= 1000 && len(samples("normal", "POST /v1/orders")) >= orderSamples
	}, says("a normal phase of 1000 holds and 300 orders"))

	// Down for 60 s.
	phaseStart := map[string]time.Time{}
	rec.SetPhase("outage")
	phaseStart["outage"] = time.Now()
	mode := c.Provider.Mode(t)
	mode.Outage = true
	c.Provider.SetMode(t, mode)
	outageAt := time.Now()
	var (
		openedAfter  time.Duration
		delayedAfter time.Duration
		delayedOrder string
		maxState     = make([]int, len(c.Replicas))
	)
	for time.Since(outageAt) < 60*time.Second {
		for i, s := range breakerStates(c) {
			maxState[i] = max(maxState[i], s)
			if s == 2 && openedAfter == 0 {
				openedAfter = time.Since(outageAt)
			}
		}
		if openedAfter > 0 && delayedOrder == "" {
			var id, detail string
			err := c.DB.QueryRow(context.Background(), `SELECT id::text, status_detail FROM payment.orders
				WHERE status = 'pending' AND status_detail = 'payment delayed' ORDER BY created_at LIMIT 1`).Scan(&id, &detail)
			if u, ok := accepted.Customer(id); err == nil && ok {
				// The customer sees it too.
				if o, r := cl.Order(context.Background(), u, id); r.Status == http.StatusOK && o.Status == "pending" && o.StatusDetail == "payment delayed" {
					delayedOrder, delayedAfter = id, time.Since(outageAt)
				}
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("outage: breaker states seen (max per replica) %v, first open %s after the outage began; order %s shown pending %q %s after",
		maxState, openedAfter.Round(time.Millisecond), delayedOrder, "payment delayed", delayedAfter.Round(time.Millisecond))
	if openedAfter == 0 {
		t.Errorf("the breaker never opened during a 60 s provider outage (states seen %v)", maxState)
	}
	if delayedOrder == "" {
		t.Errorf("no order was shown pending with status_detail %q during the outage", "payment delayed")
	}
	var delayed int
	_ = c.DB.QueryRow(context.Background(), `SELECT count(*) FROM payment.orders WHERE status = 'pending' AND status_detail = 'payment delayed'`).Scan(&delayed)
	t.Logf("at the end of the outage: %d orders pending as %q, %d accepted so far", delayed, "payment delayed", accepted.Len())

	// Then slow: 5 s per call, until the breaker has closed again and orders complete.
	rec.SetPhase("slow")
	phaseStart["slow"] = time.Now()
	mode.Outage, mode.SlowMS = false, 5000
	c.Provider.SetMode(t, mode)
	slowAt := time.Now()
	confirmedAtSlow, _ := c.OrderCounts(context.Background())
	closedAfter := poll(t, 90*time.Second, 500*time.Millisecond, func() bool {
		for _, s := range breakerStates(c) {
			if s != 0 {
				return false
			}
		}
		n, _ := c.OrderCounts(context.Background())
		return n["confirmed"] >= confirmedAtSlow["confirmed"]+20
	}, func() string {
		return fmt.Sprintf("breakers closed again (states now %v) and 20 orders confirmed at 5 s per call", breakerStates(c))
	})
	t.Logf("slow provider: breakers closed and 20 more orders confirmed %s after the outage ended", closedAfter.Round(time.Millisecond))
	poll(t, 120*time.Second, 100*time.Millisecond, func() bool { return len(samples("slow", "POST /v1/orders")) >= orderSamples },
		says("300 orders created while the provider is slow"))

	// Recovery: normal speed, traffic stops, everything completes.
	rec.SetPhase("recovered")
	mode.SlowMS = 0
	c.Provider.SetMode(t, mode)
	tr.Stop()
	problems.report(t, "unexpected answer")
	t.Logf("traffic: %s; slow phase lasted %s", tr, time.Since(slowAt).Round(time.Millisecond))

	rec.SetPhase("settle")
	f := CheckInvariants(t, c, eventID, ttID, accepted, 90*time.Second)
	if f.Confirmed != accepted.Len() || f.Failed != 0 {
		t.Errorf("%d orders accepted, want all confirmed: %d confirmed, %d failed %v", accepted.Len(), f.Confirmed, f.Failed, f.FailReasons)
	}

	// Latency: the customer-facing paths do not wait for the provider.
	//
	// First the plain fact: a request that waited for the provider would take at least one
	// provider call, 5 s in the slow phase; none may come near that, whatever the machine is doing.
	//
	// Then the pace: in each phase a route's 95th percentile stays within max(2 × its 95th
	// percentile in the normal phase, a floor), times however much the trivial /livez handler's own
	// 95th percentile grew in that phase. Everything on this shared machine (replicas, provider,
	// nginx, PostgreSQL, this client) competes for two cores, most of all when a breaker transition
	// releases the queued payments at once; the baseline, measured in the same run, takes that out.
	// It scales the limit rather than adding its rise: a busy machine slows a request in proportion
	// to the work it does, and an order (PostgreSQL, Redis, NATS) does far more than /livez. Adding
	// the rise failed a run where other tests shared the machine (/livez 6.5 → 10.2 ms, orders 25 →
	// 62 ms). Waiting for the provider is still caught: that takes seconds, not milliseconds.
	// The 95th percentile of at least 300 samples is the 15th slowest: a p99 of 150 orders was the
	// second slowest, and one scheduling hiccup decided it.
	const (
		floor       = 50 * time.Millisecond
		q           = 0.95
		neverAsLong = 2500 * time.Millisecond // half the slow provider's 5 s
	)
	base := map[string]time.Duration{}
	line := fmt.Sprintf("%-34s", "GET /livez (baseline)")
	for _, phase := range []string{"normal", "outage", "slow"} {
		base[phase] = Percentile(samples(phase, "GET /livez"), q)
		line += fmt.Sprintf(" | %s %6s (n=%d)", phase, base[phase].Round(100*time.Microsecond), len(samples(phase, "GET /livez")))
	}
	t.Log("p95 " + line)
	for _, route := range []string{"POST /v1/holds", "DELETE /v1/holds/{id}", "POST /v1/orders", "GET /v1/events/{id}", "GET /v1/events/{id}/availability"} {
		normal := Percentile(samples("normal", route), q)
		line := fmt.Sprintf("%-34s | normal %6s (n=%d)", route, normal.Round(100*time.Microsecond), len(samples("normal", route)))
		for _, phase := range []string{"outage", "slow"} {
			s := samples(phase, route)
			p := Percentile(s, q)
			worst := Percentile(s, 1)
			noise := max(1, float64(base[phase])/float64(max(base["normal"], time.Microsecond)))
			limit := time.Duration(float64(max(2*normal, floor)) * noise)
			line += fmt.Sprintf(" | %s %6s, max %s (n=%d, limit %s)", phase, p.Round(100*time.Microsecond),
				worst.Round(100*time.Microsecond), len(s), limit.Round(100*time.Microsecond))
			if worst >= neverAsLong {
				t.Errorf("%s: a request during the %s phase took %s, as long as waiting for the provider; slowest:%s",
					route, phase, worst, slowest(s, phaseStart[phase], 8))
			}
			if p > limit {
				t.Errorf("%s: p95 during the %s phase %s exceeds max(2 × normal %s, %s) × baseline growth %.2f = %s; slowest:%s",
					route, phase, p, normal, floor, noise, limit, slowest(s, phaseStart[phase], 8))
			}
		}
		t.Log("p95 " + line)
	}
	t.Logf("client answers:%s", rec.Counts(nil))
	rec.Forbid(t, "connection errors", Sample.ConnErr)
	rec.Forbid(t, "5xx answers", func(s Sample) bool { return s.Status >= 500 })
	rec.Forbid(t, "4xx answers", func(s Sample) bool { return s.Status >= 400 && s.Status < 500 })
}

// TestPostgresUnreachable: every replica reaches PostgreSQL through a TCP proxy the test cuts for
// 10 s. Holds keep working (201s continue: they live in Redis); order creation answers 503 with
// Retry-After at once (p99 under 1 s: no pile-up); afterwards everything resumes: orders accepted
// before the cut (in flight at the provider when it came) and orders created after the restore
// are confirmed.
func TestPostgresUnreachable(t *testing.T) {
	systemTest(t)
	c := NewCluster(t, Options{Replicas: 2, PostgresProxy: true, Env: fastRedelivery})
	rec := NewRecorder(t)
	cl := NewClient(c.URL(), rec)
	eventID, ttID, customers := setupSale(t, c, cl, 84, 100000, 1, testTag("pg"))

	accepted := NewAccepted()
	problems := &notes{}
	var workers []*worker
	for i := 0; i < 4; i++ {
		workers = append(workers, &worker{cl: cl, users: customers[i : i+1], eventID: eventID, tt: ttID,
			pause: 40 * time.Millisecond, notes: problems})
	}
	for _, us := range split(customers[4:], 4) {
		// Checkouts refused with 503 are retried after Retry-After by the client (same key).
		workers = append(workers, &worker{cl: cl, users: us, eventID: eventID, tt: ttID, accepted: accepted,
			pause: 200 * time.Millisecond, checkoutEvery: 1, notes: problems})
	}
	rec.SetPhase("normal")
	tr := startTraffic(workers...)
	defer tr.Stop()
	confirmed := func() int {
		n, _ := c.OrderCounts(context.Background())
		return n["confirmed"]
	}
	poll(t, 30*time.Second, 100*time.Millisecond, func() bool { return confirmed() >= 20 }, says("20 orders confirmed before the cut"))

	// Payments take 1.5 s from now, so the orders accepted just before the cut are in flight.
	mode := c.Provider.Mode(t)
	normalLatency := mode.LatencyMS
	mode.LatencyMS = 1500
	c.Provider.SetMode(t, mode)
	preFrom := time.Now()
	poll(t, 30*time.Second, 20*time.Millisecond, func() bool { return len(accepted.Between(preFrom, time.Now())) >= 10 }, says("10 orders accepted before the cut"))

	rec.SetPhase("cut")
	cutAt := time.Now()
	conns := c.PGProxy.Cut()
	preCut := accepted.Between(time.Time{}, cutAt)
	inFlight := 0
	if n, err := c.OrderCounts(context.Background()); err == nil {
		inFlight = n["pending"]
	}
	t.Logf("PostgreSQL cut off (%d connections closed) with %d orders accepted, %d of them still pending", conns, len(preCut), inFlight)
	time.Sleep(10 * time.Second) // the scenario: PostgreSQL unreachable for 10 s
	c.PGProxy.Restore(t)
	restoredAt := time.Now()
	rec.SetPhase("restored")
	mode.LatencyMS = normalLatency
	c.Provider.SetMode(t, mode)
	afterCount := accepted.Len()
	poll(t, 30*time.Second, 100*time.Millisecond, func() bool { return accepted.Len() >= afterCount+20 }, says("20 orders accepted after the restore"))
	tr.Stop()
	problems.report(t, "unexpected answer")
	t.Logf("traffic: %s", tr)

	rec.SetPhase("settle")
	f := CheckInvariants(t, c, eventID, ttID, accepted, 60*time.Second)
	if f.Confirmed != accepted.Len() || f.Failed != 0 {
		t.Errorf("%d orders accepted, want all confirmed: %d confirmed, %d failed %v", accepted.Len(), f.Confirmed, f.Failed, f.FailReasons)
	}
	final, err := cl.FinalStatuses(context.Background(), accepted, 16)
	if err != nil {
		t.Errorf("read final order statuses: %v", err)
	}
	for _, group := range []struct {
		name string
		ids  []string
	}{{"before the cut", preCut}, {"after the restore", accepted.Between(restoredAt, time.Now())}} {
		ok := 0
		for _, id := range group.ids {
			if final[id].Status == "confirmed" {
				ok++
			} else {
				t.Errorf("order %s accepted %s ended %q (%q)", id, group.name, final[id].Status, final[id].StatusDetail)
			}
		}
		t.Logf("orders accepted %s: %d, confirmed %d", group.name, len(group.ids), ok)
	}

	cut := func(route string, f func(Sample) bool) []Sample {
		return rec.Samples(func(s Sample) bool {
			return s.Route == route && !s.At.Before(cutAt) && s.At.Add(s.Latency).Before(restoredAt) && (f == nil || f(s))
		})
	}
	holdsOK := cut("POST /v1/holds", func(s Sample) bool { return s.Status == http.StatusCreated })
	holdsAll := cut("POST /v1/holds", nil)
	orders503 := cut("POST /v1/orders", Sample.Unavailable)
	ordersAll := cut("POST /v1/orders", nil)
	t.Logf("during the cut: holds %d (201: %d, p99 %s); orders %d (503 with Retry-After: %d, p50 %s, p99 %s)",
		len(holdsAll), len(holdsOK), Percentile(holdsOK, 0.99).Round(100*time.Microsecond), len(ordersAll), len(orders503),
		Percentile(orders503, 0.5).Round(100*time.Microsecond), Percentile(orders503, 0.99).Round(100*time.Microsecond))
	if len(holdsOK) < 20 || len(holdsOK) != len(holdsAll) {
		t.Errorf("holds must keep working while PostgreSQL is down: %d of %d answered 201", len(holdsOK), len(holdsAll))
	}
	if len(orders503) == 0 || len(orders503) != len(ordersAll) {
		t.Errorf("order creation must answer 503 with Retry-After while PostgreSQL is down: %d of %d did", len(orders503), len(ordersAll))
	}
	if p := Percentile(orders503, 0.99); p > time.Second {
		t.Errorf("order creation 503s piled up: p99 %s, want under 1s", p)
	}
	t.Logf("client answers:%s", rec.Counts(nil))
	rec.Forbid(t, "connection errors", Sample.ConnErr)
	rec.Forbid(t, "5xx answers other than 503 with Retry-After", func(s Sample) bool { return s.Status >= 500 && !s.Unavailable() })
	rec.Forbid(t, "503 answers outside the cut (and 5 s after the restore)", func(s Sample) bool {
		return s.Unavailable() && (s.At.Add(s.Latency).Before(cutAt) || s.At.After(restoredAt.Add(5*time.Second)))
	})
	rec.Forbid(t, "4xx answers", func(s Sample) bool { return s.Status >= 400 && s.Status < 500 })
}
