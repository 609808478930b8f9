// Package paymenttest holds the conformance suite that every payment.OrderStore adapter runs
// (RunOrderStore) and a harness that assembles a whole payment stack for tests (NewStack): the
// real inventory module, an authenticator with logged-in users, a simulated provider behind the
// circuit breaker, the JetStream queue, relay, worker, hub and the HTTP handler served through
// apitest (so every response is checked against the published document). The stack is built by
// internal/app from the modules' registrations, as cmd/server builds a process.
package paymenttest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/rueidis"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/onsale-dev/onsale/internal/app"
	"github.com/onsale-dev/onsale/internal/auth"
	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/payment"
	paynats "github.com/onsale-dev/onsale/internal/payment/nats"
	"github.com/onsale-dev/onsale/internal/payment/simulated"
	"github.com/onsale-dev/onsale/internal/platform/apitest"
	"github.com/onsale-dev/onsale/internal/platform/clock"
	"github.com/onsale-dev/onsale/internal/platform/config"
	"github.com/onsale-dev/onsale/internal/platform/httpserver"
	"github.com/onsale-dev/onsale/internal/platform/keyset"
	"github.com/onsale-dev/onsale/internal/platform/logging"
	"github.com/onsale-dev/onsale/internal/platform/natsclient"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

// Backend chooses the adapters for the stores.
type Backend int

// The backends.
const (
	Memory Backend = iota // in-process stores
	Real                  // PostgreSQL (orders, sales) and Redis (holds, catalogue)
)

func (b Backend) String() string {
	if b == Real {
		return "postgres+redis"
	}
	return "memory"
}

// NATSKind chooses the NATS server.
type NATSKind int

// The NATS servers.
const (
	Embedded NATSKind = iota // nats-server inside the test process
	RealNATS                 // the local NATS 2.9 (testenv.NATS)
)

func (n NATSKind) String() string {
	if n == RealNATS {
		return "nats-2.9"
	}
	return "embedded"
}

// Options shape a stack.
type Options struct {
	Backend Backend
	NATS    NATSKind
	// Mode is the simulated provider's behaviour at the start.
	Mode simulated.Mode
	// Config and Inventory tweak the test configurations (TestConfig, TestInventoryConfig).
	Config    func(*payment.Config)
	Inventory func(*inventory.Config)
	// Clock is the payment and inventory modules' clock (nil: the system clock). Tokens always
	// live in real time.
	Clock clock.Clock
	// NoWorker leaves the worker stopped (StartWorker starts it), so a test can drive the
	// Processor itself or choose when payments begin.
	NoWorker bool
	// HTTPOnly makes a replica that only serves the API: no relay and no worker; its hub is fed
	// by its own status subscription.
	HTTPOnly bool
	// Join makes this stack another replica of an existing one: the same databases, Redis
	// prefix, streams, users, ticket keys and payment provider, with its own connections (on the
	// embedded NATS, which has no address, the connection is shared).
	Join *Stack
	// PGConns is the size of the PostgreSQL pool (default 8).
	PGConns int
	// Meters receives the module's metrics (default: discarded).
	Meters metric.MeterProvider
	// Log receives the modules' logs (default: discarded).
	Log *slog.Logger
	// HTTP tweaks the API server's configuration (apitest's defaults otherwise).
	HTTP func(*httpserver.Config)
}

// TestConfig is the payment configuration tests run with: short timeouts, a quick breaker.
func TestConfig() payment.Config {
	return payment.Config{
		PaymentWindow: 10 * time.Minute, Workers: 16, AckWait: 2 * time.Second, MaxDeliver: 4,
		ProviderTO: time.Second, IdempotencyTTL: 24 * time.Hour, NATSReplicas: 1, Heartbeat: 15 * time.Second, MaxStreams: 8, StaleAfter: 15 * time.Minute,
		CancelRate:         1000,
		BreakerMinRequests: 5, BreakerFailureRate: 0.5, BreakerWindow: time.Second,
		BreakerCooldown: 300 * time.Millisecond, BreakerRamp: 0,
		SimLatency: 2 * time.Millisecond,
	}
}

// TestInventoryConfig is the inventory configuration the stacks use.
func TestInventoryConfig() inventory.Config {
	return inventory.Config{
		HoldTTL: 2 * time.Minute, MaxHoldsPerType: 4, MaxHolds: 8, AvailabilityTTL: 0, ClaimTTL: 30 * time.Second,
		CommitBatchMax: 256, HoldRecordKeep: 10 * time.Minute, CatalogCacheTTL: time.Hour, MaxCapacity: 1_000_000,
		QueueTick: 250 * time.Millisecond, QueuePerAddress: 20,
	}
}

// User is a logged-in caller.
type User struct {
	ID        uuid.UUID
	Role      auth.Role
	Token     string
	SessionID string
}

// identity is what replicas of one deployment share: the data directory with the signing keys,
// the memory adapters (in memory), the services' places (real), the payment provider and the
// users logged in.
type identity struct {
	dataDir     string
	memory      *app.Memory
	redisPrefix string
	pgURL       string
	natsPrefix  string
	nats        *natsclient.Conn // the embedded server's connection, shared
	sim         *simulated.Provider

	organizer, customer, customer2, staff User
}

// Stack is an assembled payment module with everything it needs, built by internal/app as
// cmd/server builds a process.
type Stack struct {
	t    testing.TB
	opts Options
	id   *identity
	proc *app.Process

	Cfg    payment.Config
	InvCfg inventory.Config
	Clock  clock.Clock

	// Inventory.
	Inv       *inventory.Module
	InvStore  inventory.Store
	Holds     inventory.HoldStore
	Customers inventory.CustomerHolds

	// Payment.
	Store     payment.OrderStore
	Sim       *simulated.Provider // shared by joined stacks, like an external provider
	Guarded   *payment.GuardedProvider
	Processor *payment.Processor
	Module    *payment.Module
	Handler   *payment.Handler
	Hub       *payment.Hub
	Relay     *payment.Relay
	Signer    *payment.TicketSigner
	Keys      *keyset.Set

	// NATS.
	NATS      *natsclient.Conn
	Names     paynats.Names
	Publisher *paynats.Publisher
	Bus       *paynats.Bus
	Worker    *paynats.Worker
	// Webhooks is the organizers' webhook endpoints and deliveries (loopback allowed).
	Webhooks *app.WebhookModule

	// HTTP.
	Server *apitest.Server

	// Real backend only.
	PG          *pgxpool.Pool
	Redis       rueidis.Client
	RedisPrefix string

	// Users logged in for the stack (shared by joined stacks).
	Organizer, Customer, Customer2, Staff User

	deliveriesMu sync.Mutex
	deliveries   map[uuid.UUID]int

	killed   chan struct{} // closed by Kill
	killOnce sync.Once
	gone     chan struct{} // closed when the test ends: a killed stack's calls return
}

// testAuthConfig is the auth module's default configuration with cheap password hashing.
func testAuthConfig(t testing.TB) auth.Config {
	var cfg app.Config
	if err := config.Load(&cfg, func(string) string { return "" }, ""); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	a := cfg.Auth
	a.Argon2MemoryKiB, a.Argon2Time, a.HashWorkers = 64, 1, 2
	a.RateLimit = 0 // every test user comes from one address
	return a
}

// NewStack assembles a stack; everything stops when the test ends.
func NewStack(t testing.TB, o Options) *Stack {
	t.Helper()
	ctx := context.Background()
	s := &Stack{t: t, opts: o, Cfg: TestConfig(), InvCfg: TestInventoryConfig(), Clock: o.Clock,
		killed: make(chan struct{}), gone: make(chan struct{})}
	if s.Clock == nil {
		s.Clock = clock.System{}
	}
	if o.Config != nil {
		o.Config(&s.Cfg)
	}
	if o.Inventory != nil {
		o.Inventory(&s.InvCfg)
	}
	meters := o.Meters
	if meters == nil {
		meters = noop.NewMeterProvider()
	}
	log := o.Log
	if log == nil {
		log = logging.Discard()
	}
	if o.PGConns == 0 {
		o.PGConns = 8
	}

	// Where the state lives: shared with the stack this one joins.
	if o.Join != nil {
		if o.Join.opts.Backend != o.Backend || o.Join.opts.NATS != o.NATS {
			t.Fatalf("a joined stack needs the same backend and NATS as the stack it joins")
		}
		s.id = o.Join.id
	} else {
		s.id = &identity{dataDir: t.TempDir(), sim: simulated.New(o.Mode),
			memory: app.NewMemory(s.Clock, s.InvCfg.HoldRecordKeep), natsPrefix: testenv.Unique("T")}
		if o.Backend == Real {
			_, s.id.redisPrefix = testenv.Redis(t) // its keys are deleted when the test ends
			s.id.pgURL = testenv.PostgresURL(t)
		}
		switch o.NATS {
		case Embedded:
			s.id.nats = testenv.EmbeddedNATS(t)
		case RealNATS:
			// This connection only deletes the streams when the test ends (after everything
			// else has stopped); each stack works on its own, which Kill may close.
			testenv.NATS(t, s.id.natsPrefix)
		}
	}
	s.Sim = s.id.sim
	s.Cfg.StreamPrefix = s.id.natsPrefix

	cfg := &app.Config{}
	if err := config.Load(cfg, func(string) string { return "" }, ""); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	cfg.DataDir, cfg.DBMaxConns = s.id.dataDir, o.PGConns
	cfg.Auth, cfg.Inventory, cfg.Payment = testAuthConfig(t), s.InvCfg, s.Cfg
	cfg.Webhook.AllowNetworks = "127.0.0.0/8" // the tests' webhook receivers
	if o.Backend == Real {
		cfg.RedisURL, cfg.RedisPrefix, cfg.DatabaseURL = testenv.RedisURL(), s.id.redisPrefix, s.id.pgURL
	}
	if o.NATS == RealNATS {
		cfg.NATSURL = testenv.NATSURL()
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	var hold []string
	if o.HTTPOnly {
		hold = append(hold, "payment.relay", "payment.worker")
	} else if o.NoWorker {
		hold = append(hold, "payment.worker")
	}
	var srv *apitest.Server
	proc, err := app.New(ctx, cfg, log, app.Options{
		Clock: s.Clock, Meters: meters, Memory: s.id.memory, NATS: s.id.nats,
		Provider: &killSwitch{p: s.Sim, killed: s.killed, gone: s.gone},
		WrapProcessor: func(p app.PaymentProcessor) app.PaymentProcessor {
			return &countingProcessor{PaymentProcessor: p, s: s}
		},
		Hold: hold, NoServers: true, Streams: func() context.Context { return srv.HTTP.Streams() },
	})
	if err != nil {
		t.Fatalf("assemble: %v", err)
	}
	if err := proc.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	s.proc = proc
	t.Cleanup(func() {
		select {
		case <-s.killed:
			return // its connection is gone; it was never asked to stop
		default:
		}
		stopCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := proc.Stop(stopCtx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})

	inv, pay := proc.Inventory, proc.Payment
	s.Inv, s.InvStore, s.Holds, s.Customers = inv.Module, inv.Store, inv.Holds, inv.Customers
	s.Store, s.Guarded, s.Processor, s.Module, s.Handler = pay.Store, pay.Guarded, pay.Processor, pay.Module, pay.Handler
	s.Hub, s.Relay, s.Signer, s.Keys = pay.Hub, pay.Relay, pay.Signer, pay.Keys
	s.NATS, s.Names, s.Publisher, s.Bus, s.Worker = proc.NATS, pay.Names, pay.Publisher, pay.Bus, pay.Worker
	s.PG, s.Redis, s.RedisPrefix = proc.PG, proc.Redis, s.id.redisPrefix
	s.Webhooks = proc.Webhooks
	srv = apitest.NewServer(t, o.HTTP, s.Handler.Routes()...)
	s.Server = srv

	if o.Join == nil {
		s.id.organizer = s.login(t, auth.RoleOrganizer)
		s.id.customer = s.login(t, auth.RoleCustomer)
		s.id.customer2 = s.login(t, auth.RoleCustomer)
		s.id.staff = s.login(t, auth.RoleStaff)
	}
	s.Organizer, s.Customer, s.Customer2, s.Staff = s.id.organizer, s.id.customer, s.id.customer2, s.id.staff
	// Runs first: a killed stack's blocked calls return, so its goroutines end with the test.
	t.Cleanup(func() { close(s.gone) })
	return s
}

// testPassword is every test user's password.
const testPassword = "correct horse battery staple"

// login makes an account with the role through the auth module and logs it in.
func (s *Stack) login(t testing.TB, role auth.Role) User {
	t.Helper()
	ctx := context.Background()
	email := testenv.Unique("user") + "@example.com"
	u, err := s.proc.Auth.Service.CreateUser(ctx, email, testPassword, "Test "+string(role), role)
	if err != nil {
		t.Fatalf("create %s: %v", role, err)
	}
	tok, err := s.proc.Auth.Service.Login(ctx, email, testPassword, "")
	if err != nil {
		t.Fatalf("log %s in: %v", role, err)
	}
	c, err := s.proc.Auth.Authn.Authenticate(ctx, "Bearer "+tok.AccessToken)
	if err != nil {
		t.Fatalf("check %s's token: %v", role, err)
	}
	return User{ID: u.ID, Role: role, Token: tok.AccessToken, SessionID: c.SessionID}
}

// TokenFor issues another access token in u's session that expires after ttl.
func (s *Stack) TokenFor(u User, ttl time.Duration) string {
	s.t.Helper()
	tok, err := s.proc.Auth.Issuer.Issue(auth.Claims{UserID: u.ID, Role: u.Role, SessionID: u.SessionID, TokenID: uuid.NewString(),
		ExpiresAt: time.Now().Add(ttl)})
	if err != nil {
		s.t.Fatalf("issue token: %v", err)
	}
	return tok
}

// Logout ends u's session, as a logout on any replica would.
func (s *Stack) Logout(u User) {
	s.t.Helper()
	if err := s.proc.Auth.Service.Logout(context.Background(), u.SessionID); err != nil {
		s.t.Fatalf("log out: %v", err)
	}
}

// NewUser logs a new user in with the role.
func (s *Stack) NewUser(role auth.Role) User { s.t.Helper(); return s.login(s.t, role) }

// NewCustomer logs a new customer in.
func (s *Stack) NewCustomer() User { s.t.Helper(); return s.login(s.t, auth.RoleCustomer) }

// StartWorker starts consuming payment requests (once).
func (s *Stack) StartWorker() {
	s.t.Helper()
	if err := s.proc.StartRunner(context.Background(), "payment.worker"); err != nil {
		s.t.Fatalf("start worker: %v", err)
	}
}

// Kill ends the stack as a crash would: its NATS connection closes without acknowledging
// anything, and its provider calls in flight never come back to it (the provider may still
// complete them, as a real one would after a client dies). Only for stacks on the real NATS.
func (s *Stack) Kill() {
	s.t.Helper()
	if s.opts.NATS != RealNATS {
		s.t.Fatalf("Kill needs a stack on the real NATS (its own connection)")
	}
	s.killOnce.Do(func() {
		close(s.killed)
		s.NATS.NC.Close()
		_ = s.proc.StopRunner(context.Background(), "payment.relay")
	})
}

// countingProcessor counts the payment requests the worker hands to the processor.
type countingProcessor struct {
	app.PaymentProcessor
	s *Stack
}

func (c *countingProcessor) Process(ctx context.Context, orderID uuid.UUID, attempt int) payment.Decision {
	c.s.deliveriesMu.Lock()
	if c.s.deliveries == nil {
		c.s.deliveries = map[uuid.UUID]int{}
	}
	c.s.deliveries[orderID]++
	c.s.deliveriesMu.Unlock()
	return c.PaymentProcessor.Process(ctx, orderID, attempt)
}

// Deliveries is how many times this stack's worker took up the order's payment request.
func (s *Stack) Deliveries(orderID uuid.UUID) int {
	s.deliveriesMu.Lock()
	defer s.deliveriesMu.Unlock()
	return s.deliveries[orderID]
}

// errKilled is what a killed stack's provider calls return once the test ends.
var errKilled = errors.New("paymenttest: stack killed")

// killSwitch passes calls to the provider until the stack is killed; after that no call leaves
// and none comes back (until the test ends).
type killSwitch struct {
	p            payment.Provider
	killed, gone <-chan struct{}
}

func (k *killSwitch) dead() bool {
	select {
	case <-k.killed:
		return true
	default:
		return false
	}
}

func (k *killSwitch) Charge(ctx context.Context, req payment.ChargeRequest) (payment.Charge, error) {
	if k.dead() {
		<-k.gone
		return payment.Charge{}, errKilled
	}
	c, err := k.p.Charge(ctx, req)
	if k.dead() {
		<-k.gone
		return payment.Charge{}, errKilled
	}
	return c, err
}

func (k *killSwitch) Refund(ctx context.Context, req payment.ProviderRefund) (payment.Refunded, error) {
	if k.dead() {
		<-k.gone
		return payment.Refunded{}, errKilled
	}
	r, err := k.p.Refund(ctx, req)
	if k.dead() {
		<-k.gone
		return payment.Refunded{}, errKilled
	}
	return r, err
}

// ---- shortcuts ----

// TicketType creates an event of the stack's organizer with one ticket type (EUR 25.00 each, up
// to 4 per order).
func (s *Stack) TicketType(capacity int) inventory.TicketType {
	s.t.Helper()
	ctx := context.Background()
	ev, err := s.Inv.CreateEvent(ctx, s.Organizer.ID, inventory.EventInput{
		Name: "The Last Waltz", Venue: "Winterland Ballroom", StartsAt: s.Clock.Now().Add(30 * 24 * time.Hour),
	})
	if err != nil {
		s.t.Fatalf("create event: %v", err)
	}
	tt, err := s.Inv.CreateTicketType(ctx, s.Organizer.ID, ev.ID, inventory.TicketTypeInput{
		Name: "Floor", PriceCents: 2500, Currency: "EUR", Capacity: capacity, MaxPerOrder: 4,
	})
	if err != nil {
		s.t.Fatalf("create ticket type: %v", err)
	}
	return tt
}

// Hold reserves quantity tickets for a customer.
func (s *Stack) Hold(u User, tt inventory.TicketType, quantity int) inventory.Hold {
	s.t.Helper()
	h, err := s.TryHold(u, tt, quantity)
	if err != nil {
		s.t.Fatalf("hold: %v", err)
	}
	return h
}

// TryHold reserves tickets and returns the error, for use off the test goroutine.
func (s *Stack) TryHold(u User, tt inventory.TicketType, quantity int) (inventory.Hold, error) {
	h, _, err := s.Inv.Hold(context.Background(), u.ID, tt.ID, quantity, "")
	return h, err
}

// Stock returns a ticket type's live figures.
func (s *Stack) Stock(tt inventory.TicketType) inventory.Stock {
	s.t.Helper()
	st, err := s.Holds.Stock(context.Background(), []uuid.UUID{tt.ID}, s.Clock.Now())
	if err != nil || len(st) != 1 {
		s.t.Fatalf("stock: %v", err)
	}
	return st[0]
}

// Sold is the store's count of a ticket type's sold tickets (the truth).
func (s *Stack) Sold(tt inventory.TicketType) int {
	s.t.Helper()
	got, err := s.InvStore.TicketType(context.Background(), tt.ID)
	if err != nil {
		s.t.Fatalf("ticket type: %v", err)
	}
	return got.Sold
}

// TicketJSON is a ticket as the API shows it.
type TicketJSON struct {
	ID           string `json:"id"`
	OrderID      string `json:"order_id"`
	TicketTypeID string `json:"ticket_type_id"`
	EventID      string `json:"event_id"`
	Code         string `json:"code"`
}

// OrderJSON is an order as the API shows it.
type OrderJSON struct {
	ID           string       `json:"id"`
	Status       string       `json:"status"`
	StatusDetail string       `json:"status_detail"`
	HoldID       string       `json:"hold_id"`
	TicketTypeID string       `json:"ticket_type_id"`
	Quantity     int          `json:"quantity"`
	AmountCents  int64        `json:"amount_cents"`
	Currency     string       `json:"currency"`
	Tickets      []TicketJSON `json:"tickets"`
	CreatedAt    time.Time    `json:"created_at"`
	UpdatedAt    time.Time    `json:"updated_at"`
}

// UUID parses the order id.
func (o OrderJSON) UUID() uuid.UUID { return uuid.MustParse(o.ID) }

// Do sends a request through the API (the response is checked against the document).
func (s *Stack) Do(req apitest.Request) *apitest.Response {
	s.t.Helper()
	return s.Server.Do(req)
}

// Checkout posts an order for a hold with an Idempotency-Key ("" sends none).
func (s *Stack) Checkout(u User, holdID, key string) *apitest.Response {
	s.t.Helper()
	req := apitest.Request{Method: http.MethodPost, Path: "/v1/orders", Token: u.Token,
		Body: map[string]string{"hold_id": holdID}}
	if key != "" {
		req.Header = map[string]string{"Idempotency-Key": key}
	}
	return s.Server.Do(req)
}

// CheckoutOK checks a hold out with a fresh key and returns the pending order.
func (s *Stack) CheckoutOK(u User, holdID string) OrderJSON {
	s.t.Helper()
	r := s.Checkout(u, holdID, uuid.NewString()).Expect(s.t, http.StatusAccepted, "")
	var o OrderJSON
	r.JSON(s.t, &o)
	if o.Status != string(payment.StatusPending) || o.HoldID != holdID {
		s.t.Fatalf("checkout: got %+v, want a pending order of hold %s", o, holdID)
	}
	return o
}

// GetOrder reads an order through the API as u.
func (s *Stack) GetOrder(u User, id string) (*apitest.Response, OrderJSON) {
	s.t.Helper()
	r := s.Server.Do(apitest.Request{Method: http.MethodGet, Path: "/v1/orders/" + id, Token: u.Token})
	var o OrderJSON
	if r.Status == http.StatusOK {
		r.JSON(s.t, &o)
	}
	return r, o
}

// Order reads an order from the store.
func (s *Stack) Order(id uuid.UUID) payment.Order {
	s.t.Helper()
	o, err := s.Store.Get(context.Background(), id)
	if err != nil {
		s.t.Fatalf("get order %s: %v", id, err)
	}
	return o
}

// WaitStatus waits until the order has the status and returns it.
func (s *Stack) WaitStatus(id uuid.UUID, status payment.Status, timeout time.Duration) payment.Order {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		o, err := s.Store.Get(context.Background(), id)
		if err == nil && o.Status == status {
			return o
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("order %s is not %s after %s: %s %q (err %v)", id, status, timeout, o.Status, o.StatusDetail, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Orders lists all of a customer's orders from the store.
func (s *Stack) Orders(customer uuid.UUID) []payment.Order {
	s.t.Helper()
	out, err := s.Store.List(context.Background(), customer, nil, 10_000)
	if err != nil {
		s.t.Fatalf("list orders: %v", err)
	}
	return out
}

// Entry returns the simulated ledger's entry for a key.
func (s *Stack) Entry(key string) (simulated.Entry, bool) {
	for _, e := range s.Sim.Ledger(true).Entries {
		if e.Key == key {
			return e, true
		}
	}
	return simulated.Entry{}, false
}

// String names the stack's adapters, for subtest names.
func (o Options) String() string { return fmt.Sprintf("%s/%s", o.Backend, o.NATS) }
