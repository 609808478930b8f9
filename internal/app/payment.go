package app

import (
	"context"
	"errors"
	"path/filepath"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/onsale-dev/onsale/internal/payment"
	paynats "github.com/onsale-dev/onsale/internal/payment/nats"
	paypostgres "github.com/onsale-dev/onsale/internal/payment/postgres"
	"github.com/onsale-dev/onsale/internal/payment/providerhttp"
	"github.com/onsale-dev/onsale/internal/payment/simulated"
	"github.com/onsale-dev/onsale/internal/platform/internalapi"
	"github.com/onsale-dev/onsale/internal/platform/keyset"
	"github.com/onsale-dev/onsale/internal/webhook"
)

// PaymentProcessor is what the payment worker hands each payment request to.
type PaymentProcessor = paynats.Processor

// PaymentModule is the payment module as assembled in this process.
type PaymentModule struct {
	Module    *payment.Module
	Store     payment.OrderStore
	Handler   *payment.Handler
	Hub       *payment.Hub
	Relay     *payment.Relay
	Processor *payment.Processor
	// Cancellations refunds the orders of cancelled events.
	Cancellations *payment.Cancellations
	Guarded       *payment.GuardedProvider
	Signer        *payment.TicketSigner
	Keys          *keyset.Set
	Names         paynats.Names
	Publisher     *paynats.Publisher
	Bus           *paynats.Bus
	Worker        *paynats.Worker
	Simulated     *simulated.Provider // nil when another provider is used
	// Webhooks announces orders' changes to their organizers' webhook endpoints.
	Webhooks webhook.Publisher
}

// TicketKeys loads the ticket-signing keys: the configured file, or one generated once under the
// data directory.
func TicketKeys(cfg *Config) (*keyset.Set, error) {
	if cfg.Payment.TicketKeysFile != "" {
		return keyset.Load(cfg.Payment.TicketKeysFile)
	}
	return keyset.LoadOrCreate(filepath.Join(cfg.DataDir, "ticket-keys.json"))
}

func (p *Process) localPayment(ctx context.Context) ([]Runner, error) {
	cfg := p.cfg.Payment
	log := p.log.With("module", "payment")
	meter := p.meters.Meter("github.com/onsale-dev/onsale/internal/payment")
	keys, err := TicketKeys(p.cfg)
	if err != nil {
		return nil, err
	}
	m := &PaymentModule{Keys: keys}
	if p.PG != nil {
		if err := p.migrate(ctx, paypostgres.Migrate); err != nil {
			return nil, err
		}
		m.Store = paypostgres.NewStore(p.PG)
	} else {
		m.Store = p.memory.orders
	}
	provider := p.opts.Provider
	switch {
	case provider != nil:
	case cfg.ProviderURL != "":
		provider = providerhttp.New(cfg.ProviderURL)
	default:
		m.Simulated = simulated.New(simulated.Mode{Latency: cfg.SimLatency, Slow: cfg.SimSlow,
			DeclineRate: cfg.SimDeclineRate, ErrorRate: cfg.SimErrorRate, Outage: cfg.SimOutage, PendingAmountCents: cfg.SimPending})
		provider = m.Simulated
		if p.cfg.Env == "production" { // allowed by ONSALE_ALLOW_SIMULATED_PROVIDER, or validation would have stopped it
			log.Warn("PRODUCTION ON THE SIMULATED PAYMENT PROVIDER (ONSALE_ALLOW_SIMULATED_PROVIDER=true): every order is confirmed " +
				"and nobody is charged; set ONSALE_PROVIDER_URL to take real payments")
		} else {
			log.Warn("payments are simulated: no money moves (set ONSALE_PROVIDER_URL for a provider)")
		}
		p.health.Warn("simulated provider: payments are simulated, every order is confirmed and no money moves (ONSALE_PROVIDER_URL is not set)")
	}
	if m.Guarded, err = payment.NewGuardedProvider(provider, cfg, meter, log); err != nil {
		return nil, err
	}
	hooks, hookRunners, err := p.localWebhooks(ctx)
	if err != nil {
		return nil, err
	}
	m.Webhooks = hooks.Publisher
	m.Names = paynats.NamesFor(cfg.StreamPrefix)
	if err := paynats.Setup(ctx, p.NATS.JS, m.Names, cfg.NATSReplicas); err != nil {
		return nil, err
	}
	m.Publisher = paynats.NewPublisher(p.NATS.JS, m.Names, p.prop)
	m.Bus = paynats.NewBus(p.NATS.NC, m.Names)
	m.Hub = payment.NewHub()
	// Background work takes at most a quarter of the pool at once, so checkouts always find a
	// connection when a breaker transition releases hundreds of queued payments together.
	background := payment.BoundedStore(m.Store, p.cfg.DBMaxConns/4)
	m.Relay = payment.NewRelay(background, m.Publisher, p.clock, log, cfg.StaleAfter)
	m.Relay.ReconcileUnless(func() bool { return m.Guarded.State() != gobreaker.StateClosed })
	if m.Processor, err = payment.NewProcessor(background, p.inventory, m.Guarded, m.Bus, hooks.Publisher, p.clock, log, meter, max(8, cfg.Workers/8)); err != nil {
		return nil, err
	}
	// A page of 200 orders per read, refunds started at ONSALE_CANCEL_REFUNDS_PER_SECOND: a
	// cancelled event of tens of thousands of orders is refunded in minutes, leaving the CPU and
	// the database to the sales of other events. Every replica looks every 5 s, so one that dies
	// half way is taken over within seconds.
	m.Cancellations = payment.NewCancellations(background, m.Relay, hooks.Publisher, p.clock, log, 5*time.Second, 200, cfg.CancelRate)
	m.Signer = payment.NewTicketSigner(keys)
	if m.Module, err = payment.New(cfg, payment.Deps{
		Store: m.Store, Inventory: p.inventory, Relay: m.Relay, Hub: m.Hub,
		Signer: m.Signer, Clock: p.clock, Log: log, Meter: meter,
		Webhooks: hooks.Publisher, Owners: payment.NewOwners(p.inventory, 4096), Wake: m.Cancellations.Wake,
	}); err != nil {
		return nil, err
	}
	if m.Handler, err = payment.NewHandler(m.Module, m.Hub, p.authn, p.streams); err != nil {
		return nil, err
	}
	var proc PaymentProcessor = m.Processor
	if p.opts.WrapProcessor != nil {
		proc = p.opts.WrapProcessor(proc)
	}
	m.Worker = paynats.NewWorker(p.NATS.JS, m.Names, paynats.WorkerConfig{
		Workers: cfg.Workers, AckWait: cfg.AckWait, MaxDeliver: cfg.MaxDeliver, Replicas: cfg.NATSReplicas,
	}, proc, m.Publisher, p.prop, log)
	// Metrics are registered before anything runs: a failure here leaves nothing running.
	if err := errors.Join(m.Worker.RegisterMetrics(meter), m.Relay.RegisterMetrics(meter)); err != nil {
		return nil, err
	}
	// Open streams learn of a lost announcement from a reread of their orders every four
	// heartbeats, a thousand orders a statement.
	recheck := payment.NewRechecker(background, m.Hub, 4*cfg.Heartbeat, 1000, log)
	p.Payment = m
	p.Webhooks = hooks
	var stopBus func() error
	return append(hookRunners, []Runner{
		{Name: "payment.bus",
			Start: func(context.Context) (err error) { stopBus, err = m.Bus.Listen(m.Hub.Deliver); return err },
			Stop:  func(context.Context) error { return stopBus() }},
		{Name: "payment.recheck",
			Start: func(context.Context) error { recheck.Start(); return nil },
			Stop:  func(context.Context) error { recheck.Stop(); return nil }},
		{Name: "payment.relay",
			Start: func(context.Context) error { m.Relay.Start(); return nil },
			Stop:  func(context.Context) error { m.Relay.Stop(); return nil }},
		{Name: "payment.cancellations",
			Start: func(context.Context) error { m.Cancellations.Start(); return nil },
			Stop:  func(context.Context) error { m.Cancellations.Stop(); return nil }},
		// The worker stops first (runners stop in reverse): it finishes or hands back its
		// payments while the relay and the status bus still run.
		{Name: "payment.worker", Start: m.Worker.Start, Stop: m.Worker.Stop},
	}...), nil
}

// remotePayment only watches the payment process: no module calls payment synchronously today.
func (p *Process) remotePayment(ctx context.Context, url string) error {
	api := internalapi.NewClient(Payment, url, p.secret, p.cfg.Internal.Timeout, p.prop)
	p.health.Add("payment (remote, "+url+")", pingRemote(api))
	return nil
}
