package system

// The split tests: the same binary, its modules in processes of their own (--modules), wired by
// their internal APIs and routed by path through nginx, on the real Redis, PostgreSQL and NATS.
// Each drives the sale traffic of the other system tests and checks the same invariants (nothing
// oversold, nothing charged twice, every accepted order terminal). They run in parallel with one
// another: four small deployments at once on the machine.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/app"
	"github.com/onsale-dev/onsale/internal/auth/authtest"
	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/payment"
	"github.com/onsale-dev/onsale/internal/payment/paymenttest"
	"github.com/onsale-dev/onsale/internal/platform/config"
	"github.com/onsale-dev/onsale/internal/platform/redisclient"
)

const (
	splitBuyers   = 300
	splitCapacity = 60
	splitConns    = 40
)

// threeProcesses is one process per module.
var threeProcesses = []Tier{{Modules: "auth", Count: 1}, {Modules: "inventory", Count: 1}, {Modules: "payment", Count: 1}}

// splitSale runs a flash sale of splitBuyers for splitCapacity tickets through the cluster and
// checks the invariants; afterHold runs after each hold answer. It returns the figures.
func splitSale(t *testing.T, c *Cluster, cl *Client, tag string, afterHold func(n int64)) Figures {
	t.Helper()
	eventID, ttID, buyers := setupSale(t, c, cl, splitBuyers, splitCapacity, 1, testTag(tag))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sale := flashSale(ctx, cl, buyers, ttID, splitConns, afterHold)
	t.Logf("sale over in %s: %d holds, %d sold-out answers, %d orders accepted", sale.duration.Round(time.Millisecond),
		sale.holds.Load(), sale.soldOut.Load(), sale.accepted.Len())
	for i, u := range sale.unexpected {
		if i == 10 {
			break
		}
		t.Errorf("unexpected answer: %s", u)
	}
	f := CheckInvariants(t, c, eventID, ttID, sale.accepted, 90*time.Second)
	if f.Sold != splitCapacity {
		t.Errorf("the sale did not end exactly sold out: sold=%d of %d", f.Sold, splitCapacity)
	}
	if got := sale.accepted.Len(); got != f.Confirmed+f.Failed {
		t.Errorf("%d orders accepted but %d confirmed + %d failed", got, f.Confirmed, f.Failed)
	}
	return f
}

// TestSplitThreeProcesses: auth, inventory and payment each in a process of its own, nginx
// routing by path. A sale sells exactly the capacity, every order is charged once; then the
// cross-module ports' contracts run against the real processes.
func TestSplitThreeProcesses(t *testing.T) {
	systemTest(t)
	t.Parallel()
	c := NewCluster(t, Options{Topology: threeProcesses})
	rec := NewRecorder(t)
	cl := NewClient(c.URL(), rec)
	f := splitSale(t, c, cl.With(func(c *Client) { c.Relogin = false }), "split3", nil)
	if f.Confirmed != splitCapacity || f.LedgerCharges != splitCapacity {
		t.Errorf("want %d confirmed and charged, got confirmed=%d charges=%d", splitCapacity, f.Confirmed, f.LedgerCharges)
	}
	rec.Forbid(t, "connection errors", Sample.ConnErr)
	rec.Forbid(t, "5xx answers other than 503 with Retry-After", func(s Sample) bool { return s.Status >= 500 && !s.Unavailable() })
	rec.Forbid(t, "401 answers", func(s Sample) bool { return s.Status == http.StatusUnauthorized })

	// Only each module's own routes are served by its process.
	for _, r := range c.Replicas {
		probe := NewClient(r.URL, newRecorder())
		for _, route := range []struct{ module, path string }{{"auth", "/.well-known/jwks.json"}, {"inventory", "/v1/events"}, {"payment", "/.well-known/ticket-keys.json"}} {
			resp := probe.Call(context.Background(), "GET "+route.path, http.MethodGet, route.path, nil, "", nil)
			if want := map[bool]int{true: http.StatusOK, false: http.StatusNotFound}[r.Serves(route.module)]; resp.Status != want {
				t.Errorf("%s: GET %s answered %d, want %d", r.Name, route.path, resp.Status, want)
			}
		}
	}

	t.Run("InventoryContract", func(t *testing.T) {
		paymenttest.InventoryContract(t, func(t *testing.T) (payment.Inventory, paymenttest.InventoryFixture) {
			return app.InventoryClient(c.ModuleURLs["inventory"], c.InternalSecret, 5*time.Second), &publicInventory{c: c, cl: cl}
		})
	})
	t.Run("AuthContract", func(t *testing.T) {
		var cfg app.Config
		if err := config.Load(&cfg, func(string) string { return "" }, ""); err != nil {
			t.Fatal(err)
		}
		rc, err := redisclient.Open(c.RedisURL)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		ra, err := app.NewRemoteAuth(cfg.Auth, c.ModuleURLs["auth"], c.InternalSecret, 5*time.Second, rc, c.RedisPrefix)
		if err != nil {
			t.Fatal(err)
		}
		// With the session store shared, a logout is seen at once, as with auth in process.
		authtest.AuthenticatorContract(t, time.Second, func(*testing.T) (authtest.TokenChecker, authtest.SessionFixture) {
			return ra, &publicSessions{cl: cl}
		})
	})
}

// TestSplitTwoByTwo: two processes running auth and inventory, two running payment; each
// module's internal API is balanced by nginx for the processes that call it.
func TestSplitTwoByTwo(t *testing.T) {
	systemTest(t)
	t.Parallel()
	c := NewCluster(t, Options{Topology: []Tier{{Modules: "auth,inventory", Count: 2}, {Modules: "payment", Count: 2}}})
	rec := NewRecorder(t)
	cl := NewClient(c.URL(), rec)
	f := splitSale(t, c, cl.With(func(c *Client) { c.Relogin = false }), "split22", nil)
	if f.Confirmed != splitCapacity || f.LedgerCharges != splitCapacity {
		t.Errorf("want %d confirmed and charged, got confirmed=%d charges=%d", splitCapacity, f.Confirmed, f.LedgerCharges)
	}
	for _, r := range c.Replicas {
		if r.Serves("payment") && r.MetricSum("onsale_payment_orders_total") == 0 {
			t.Logf("%s confirmed no order (the queue gave the other all)", r.Name)
		}
	}
	rec.Forbid(t, "connection errors", Sample.ConnErr)
	rec.Forbid(t, "5xx answers other than 503 with Retry-After", func(s Sample) bool { return s.Status >= 500 && !s.Unavailable() })
	rec.Forbid(t, "401 answers", func(s Sample) bool { return s.Status == http.StatusUnauthorized })
}

// TestSplitPaymentKilled: the payment process is killed with SIGKILL a third into the sale and
// started again two seconds later. Clients retry what failed meanwhile (same Idempotency-Key);
// nothing is lost, nothing is charged twice, every accepted order ends terminal.
func TestSplitPaymentKilled(t *testing.T) {
	systemTest(t)
	t.Parallel()
	c := NewCluster(t, Options{Topology: threeProcesses, Env: fastRedelivery})
	rec := NewRecorder(t)
	cl := NewClient(c.URL(), rec)
	var victim *Replica
	for _, r := range c.Replicas {
		if r.Modules == "payment" {
			victim = r
		}
	}
	var (
		once     sync.Once
		killedAt time.Time
		back     = make(chan struct{})
	)
	kill := func(n int64) {
		once.Do(func() {
			go func() {
				defer close(back)
				killedAt = time.Now()
				_ = victim.Signal(syscall.SIGKILL)
				code, _ := victim.Wait(10 * time.Second)
				t.Logf("%s killed with SIGKILL after %d hold answers (exit code %d)", victim.Name, n, code)
				time.Sleep(2 * time.Second)
				c.Restart(t, victim)
				t.Logf("%s ready again %s after the kill", victim.Name, time.Since(killedAt).Round(time.Millisecond))
			}()
		})
	}
	buyer := cl.With(func(c *Client) { c.RetryConnErrors, c.RetryUnavailable, c.Relogin = true, true, false })
	f := splitSale(t, c, buyer, "splitkill", func(n int64) {
		if n >= splitBuyers/3 {
			kill(n)
		}
	})
	kill(-1)
	<-back
	// CheckInvariants held every charge to one order and every key to one charge.
	t.Logf("after the kill: %d confirmed, %d failed (%d refunded), %d charges, %d keys presented more than once",
		f.Confirmed, f.Failed, f.FailedRefunded, f.LedgerCharges, f.RepeatedChargeCalls)
	rec.Forbid(t, "5xx answers other than 502 (the killed process) and 503 with Retry-After",
		func(s Sample) bool { return s.Status >= 500 && s.Status != http.StatusBadGateway && !s.Unavailable() })
	rec.Forbid(t, "connection errors or 502s before the kill", func(s Sample) bool {
		return (s.ConnErr() || s.Status == http.StatusBadGateway) && s.At.Add(s.Latency).Before(killedAt)
	})
}

// TestSplitInventoryUnreachable: the payment process cannot reach inventory for 10 s. Checkout
// answers at once with 503 and Retry-After (nothing hangs), holds keep working (inventory itself
// is up), and once inventory is back checkouts are accepted and confirmed again.
func TestSplitInventoryUnreachable(t *testing.T) {
	systemTest(t)
	t.Parallel()
	c := NewCluster(t, Options{Topology: threeProcesses, InventoryProxy: true})
	rec := NewRecorder(t)
	cl := NewClient(c.URL(), rec)
	eventID, ttID, buyers := setupSale(t, c, cl, 60, 1000, 1, testTag("splitcut"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	accepted := NewAccepted()
	// Every answer is looked at: no retries behind the test's back.
	once := cl.With(func(c *Client) { c.RetryUnavailable, c.RetryConnErrors = false, false })
	type attempt struct {
		u      *Customer
		holdID string
	}
	checkout := func(a attempt) Resp {
		o, r := once.Checkout(ctx, a.u, a.holdID, "order-"+a.holdID)
		if r.Status == http.StatusAccepted {
			accepted.Add(o.ID, a.u)
		}
		return r
	}
	order := func(u *Customer, what string) (attempt, Resp) {
		h := once.Hold(ctx, u, ttID, 1, "")
		if h.Status != http.StatusCreated {
			t.Fatalf("hold %s: %s", what, h.Resp)
		}
		a := attempt{u, h.ID}
		return a, checkout(a)
	}
	rec.SetPhase("before")
	for i := range 10 {
		if _, r := order(buyers[i], "before the cut"); r.Status != http.StatusAccepted {
			t.Fatalf("checkout before the cut: %s", r)
		}
	}

	rec.SetPhase("cut")
	cutAt := time.Now()
	c.InvProxy.Cut()
	var refused []attempt
	var slowest time.Duration
	for i := 10; i < 30; i++ {
		a, r := order(buyers[i], "during the cut")
		if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" || !strings.HasSuffix(r.ProblemType(), "/unavailable") {
			t.Errorf("checkout while inventory is unreachable: %s; want 503 unavailable with Retry-After", r)
		}
		refused = append(refused, a)
		slowest = max(slowest, r.Latency)
	}
	t.Logf("%d checkouts refused while inventory was unreachable, the slowest in %s", len(refused), slowest.Round(time.Millisecond))
	if slowest > 3*time.Second {
		t.Errorf("a checkout took %s while inventory was unreachable: a clear answer at once, not a hang", slowest)
	}
	time.Sleep(time.Until(cutAt.Add(10 * time.Second)))
	c.InvProxy.Restore(t)

	// The customers retry their refused checkouts (same hold, same key) and are accepted; new
	// customers too.
	rec.SetPhase("after")
	back := poll(t, 30*time.Second, 200*time.Millisecond, func() bool { return checkout(refused[0]).Status == http.StatusAccepted },
		says("a refused checkout accepted on retry once inventory is reachable again"))
	t.Logf("checkouts accepted again %s after the restore", back.Round(time.Millisecond))
	for _, a := range refused[1:] {
		if r := checkout(a); r.Status != http.StatusAccepted {
			t.Errorf("retrying a refused checkout after the restore: %s", r)
		}
	}
	for i := 40; i < 50; i++ {
		if _, r := order(buyers[i], "after the cut"); r.Status != http.StatusAccepted {
			t.Errorf("checkout after the restore: %s", r)
		}
	}
	// The payments in flight when inventory went away are retried (with backoff) until they
	// complete: every accepted order, before, during or after, ends confirmed.
	rec.SetPhase("settle")
	f := CheckInvariants(t, c, eventID, ttID, accepted, 90*time.Second)
	if f.Confirmed != accepted.Len() || f.Failed != 0 {
		t.Errorf("%d orders accepted, want all confirmed: %d confirmed, %d failed %v", accepted.Len(), f.Confirmed, f.Failed, f.FailReasons)
	}
	rec.Forbid(t, "5xx answers other than 503 with Retry-After", func(s Sample) bool { return s.Status >= 500 && !s.Unavailable() })
}

// publicInventory is the Inventory contract's fixture over the public API of the inventory
// process: ticket types made by the organizer, holds by new customers.
type publicInventory struct {
	c  *Cluster
	cl *Client
	n  int
	mu sync.Mutex
}

func (f *publicInventory) TicketType(t *testing.T, capacity int) uuid.UUID {
	t.Helper()
	org := &Customer{Email: f.c.OrganizerEmail, Password: f.c.OrganizerPassword}
	_, tt, err := f.cl.CreateSale(context.Background(), org, capacity, 4, 1500)
	if err != nil {
		t.Fatal(err)
	}
	return uuid.MustParse(tt)
}

func (f *publicInventory) Hold(t *testing.T, tt uuid.UUID, quantity int) inventory.Hold {
	t.Helper()
	ctx := context.Background()
	f.mu.Lock()
	f.n++
	u := &Customer{Email: fmt.Sprintf("contract-%s-%d@example.com", uuid.NewString()[:8], f.n), Password: "contract password"}
	f.mu.Unlock()
	if err := f.cl.Register(ctx, u); err != nil {
		t.Fatal(err)
	}
	if err := f.cl.Login(ctx, u); err != nil {
		t.Fatal(err)
	}
	r := f.cl.Call(ctx, "POST /v1/holds", http.MethodPost, "/v1/holds", u, "", map[string]any{"ticket_type_id": tt.String(), "quantity": quantity})
	var h struct {
		ID             string    `json:"id"`
		UnitPriceCents int64     `json:"unit_price_cents"`
		Currency       string    `json:"currency"`
		ExpiresAt      time.Time `json:"expires_at"`
	}
	if r.Status != http.StatusCreated || r.Decode(&h) != nil {
		t.Fatalf("hold: %s", r)
	}
	me := f.cl.Call(ctx, "GET /v1/me", http.MethodGet, "/v1/me", u, "", nil)
	var who struct {
		ID string `json:"id"`
	}
	if me.Status != http.StatusOK || json.Unmarshal(me.Body, &who) != nil {
		t.Fatalf("me: %s", me)
	}
	return inventory.Hold{ID: h.ID, TicketTypeID: tt, CustomerID: uuid.MustParse(who.ID), Quantity: quantity,
		UnitPriceCents: h.UnitPriceCents, Currency: h.Currency, Status: inventory.HoldActive, ExpiresAt: h.ExpiresAt}
}

// publicSessions is the auth contract's fixture over the auth process's public API.
type publicSessions struct {
	cl *Client
}

func (f *publicSessions) Login(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	u := &Customer{Email: "session-" + uuid.NewString()[:12] + "@example.com", Password: "contract password"}
	if err := f.cl.Register(ctx, u); err != nil {
		t.Fatal(err)
	}
	if err := f.cl.Login(ctx, u); err != nil {
		t.Fatal(err)
	}
	return u.bearer()
}

func (f *publicSessions) Logout(t *testing.T, access string) {
	t.Helper()
	r := f.cl.once(context.Background(), "POST /v1/auth/logout", http.MethodPost, "/v1/auth/logout", access, "", nil)
	if r.Status != http.StatusNoContent {
		t.Fatalf("logout: %s", r)
	}
}
