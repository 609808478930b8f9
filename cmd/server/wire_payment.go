package main

import (
	"context"
	"errors"
	"path/filepath"

	"github.com/sony/gobreaker/v2"

	"github.com/onsale-dev/onsale/internal/payment"
	paymemory "github.com/onsale-dev/onsale/internal/payment/memory"
	paynats "github.com/onsale-dev/onsale/internal/payment/nats"
	paypostgres "github.com/onsale-dev/onsale/internal/payment/postgres"
	"github.com/onsale-dev/onsale/internal/payment/providerhttp"
	"github.com/onsale-dev/onsale/internal/payment/simulated"
	"github.com/onsale-dev/onsale/internal/platform/clock"
	"github.com/onsale-dev/onsale/internal/platform/keyset"
)

// paymentModule is the assembled payment module.
type paymentModule struct {
	mod       *payment.Module
	handler   *payment.Handler
	relay     *payment.Relay
	worker    *paynats.Worker
	stopBus   func() error
	simulated *simulated.Provider // nil when a real provider is configured
}

// ticketKeys loads the ticket-signing keys: the configured file, or one generated once under the
// data directory.
func ticketKeys(cfg *Config) (*keyset.Set, error) {
	if cfg.Payment.TicketKeysFile != "" {
		return keyset.Load(cfg.Payment.TicketKeysFile)
	}
	return keyset.LoadOrCreate(filepath.Join(cfg.DataDir, "ticket-keys.json"))
}

func (a *App) startPayment(ctx context.Context) error {
	cfg := a.cfg.Payment
	log := a.log.With("module", "payment")
	meter := a.tel.Meters.Meter("github.com/onsale-dev/onsale/internal/payment")
	clk := clock.System{}
	keys, err := ticketKeys(a.cfg)
	if err != nil {
		return err
	}
	var store payment.OrderStore
	if a.pg != nil {
		if err := paypostgres.Migrate(ctx, a.pg, a.log); err != nil {
			return err
		}
		store = paypostgres.NewStore(a.pg)
	} else {
		store = paymemory.NewStore()
	}
	pm := &paymentModule{}
	var provider payment.Provider
	if cfg.ProviderURL != "" {
		provider = providerhttp.New(cfg.ProviderURL)
	} else {
		pm.simulated = simulated.New(simulated.Mode{Latency: cfg.SimLatency, Slow: cfg.SimSlow,
			DeclineRate: cfg.SimDeclineRate, ErrorRate: cfg.SimErrorRate, Outage: cfg.SimOutage})
		provider = pm.simulated
		if a.cfg.Env == "production" { // allowed by ONSALE_ALLOW_SIMULATED_PROVIDER, or validation would have stopped it
			log.Warn("PRODUCTION ON THE SIMULATED PAYMENT PROVIDER (ONSALE_ALLOW_SIMULATED_PROVIDER=true): every order is confirmed " +
				"and nobody is charged; set ONSALE_PROVIDER_URL to take real payments")
		} else {
			log.Warn("payments are simulated: no money moves (set ONSALE_PROVIDER_URL for a provider)")
		}
		a.health.Warn("simulated provider: payments are simulated, every order is confirmed and no money moves (ONSALE_PROVIDER_URL is not set)")
	}
	guarded, err := payment.NewGuardedProvider(provider, cfg, meter, log)
	if err != nil {
		return err
	}
	names := paynats.NamesFor(cfg.StreamPrefix)
	if err := paynats.Setup(ctx, a.nats.JS, names, cfg.NATSReplicas); err != nil {
		return err
	}
	pub := paynats.NewPublisher(a.nats.JS, names, a.tel.Propagator)
	bus := paynats.NewBus(a.nats.NC, names)
	hub := payment.NewHub()
	// Background work takes at most a quarter of the pool at once, so checkouts always find a
	// connection when a breaker transition releases hundreds of queued payments together.
	background := payment.BoundedStore(store, a.cfg.DBMaxConns/4)
	pm.relay = payment.NewRelay(background, pub, clk, log, cfg.StaleAfter)
	pm.relay.ReconcileUnless(func() bool { return guarded.State() != gobreaker.StateClosed })
	proc, err := payment.NewProcessor(background, a.inventory.mod, guarded, bus, clk, log, meter, max(8, cfg.Workers/8))
	if err != nil {
		return err
	}
	pm.mod, err = payment.New(cfg, payment.Deps{
		Store: store, Inventory: a.inventory.mod, Relay: pm.relay, Hub: hub,
		Signer: payment.NewTicketSigner(keys), Clock: clk, Log: log, Meter: meter,
	})
	if err != nil {
		return err
	}
	pm.handler, err = payment.NewHandler(pm.mod, hub, a.auth.authn, a.http.Streams)
	if err != nil {
		return err
	}
	if pm.stopBus, err = bus.Listen(hub.Deliver); err != nil {
		return err
	}
	pm.relay.Start()
	pm.worker = paynats.NewWorker(a.nats.JS, names, paynats.WorkerConfig{
		Workers: cfg.Workers, AckWait: cfg.AckWait, MaxDeliver: cfg.MaxDeliver,
	}, proc, pub, a.tel.Propagator, log)
	if err := pm.worker.Start(ctx); err != nil {
		pm.relay.Stop()
		_ = pm.stopBus()
		return err
	}
	if err := errors.Join(pm.worker.RegisterMetrics(meter), pm.relay.RegisterMetrics(meter)); err != nil {
		return err
	}
	a.payment = pm
	return nil
}

// stopPayment lets the workers finish or hand back their payments, then stops the relay.
func (a *App) stopPayment(ctx context.Context) error {
	pm := a.payment
	if pm == nil {
		return nil
	}
	err := pm.worker.Stop(ctx)
	pm.relay.Stop()
	return errors.Join(err, pm.stopBus())
}
