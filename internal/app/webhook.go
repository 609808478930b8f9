package app

import (
	"context"
	"net"

	"github.com/onsale-dev/onsale/internal/webhook"
	whnats "github.com/onsale-dev/onsale/internal/webhook/nats"
	whpostgres "github.com/onsale-dev/onsale/internal/webhook/postgres"
)

// WebhookModule is the webhook module as assembled in this process. It runs where the payment
// module runs, since payment announces most of its events.
type WebhookModule struct {
	Module    *webhook.Module
	Store     webhook.Store
	Handler   *webhook.Handler
	Guard     *webhook.Guard
	Names     whnats.Names
	Publisher *whnats.Publisher
	Fanout    *whnats.Fanout
	Sender    *webhook.Sender
}

// localWebhooks assembles the webhook module: the store (PostgreSQL, or memory in embedded mode),
// the event stream with its publisher and fan-out, the sender, and the organizers' routes.
func (p *Process) localWebhooks(ctx context.Context) (*WebhookModule, []Runner, error) {
	log := p.log.With("module", "webhook")
	allow, err := p.cfg.Webhook.Networks()
	if err != nil {
		return nil, nil, err // validation stops this before
	}
	if len(allow) > 0 {
		log.Info("webhooks may reach these internal networks (ONSALE_WEBHOOK_ALLOW_NETWORKS)", "networks", p.cfg.Webhook.AllowNetworks)
	}
	w := &WebhookModule{Guard: webhook.NewGuard(allow)}
	if p.PG != nil {
		if err := p.migrate(ctx, whpostgres.Migrate); err != nil {
			return nil, nil, err
		}
		w.Store = whpostgres.NewStore(p.PG)
	} else {
		w.Store = p.memory.webhooks
	}
	w.Names = whnats.NamesFor(p.cfg.Payment.StreamPrefix)
	if err := whnats.Setup(ctx, p.NATS.JS, w.Names, p.cfg.Payment.NATSReplicas); err != nil {
		return nil, nil, err
	}
	w.Publisher = whnats.NewPublisher(p.NATS.JS, w.Names)
	w.Sender = webhook.NewSender(w.Store, w.Guard, p.clock, log, webhook.SenderConfig{})
	w.Fanout = whnats.NewFanout(p.NATS.JS, w.Names, whnats.FanoutConfig{Replicas: p.cfg.Payment.NATSReplicas},
		w.Store, p.clock, log, w.Sender.Wake)
	w.Module = webhook.New(webhook.Deps{Store: w.Store, Publisher: w.Publisher, Guard: w.Guard, Resolver: net.DefaultResolver,
		Clock: p.clock, Log: log})
	w.Handler = webhook.NewHandler(w.Module, p.authn)
	return w, []Runner{
		{Name: "webhook.fanout", Start: w.Fanout.Start, Stop: w.Fanout.Stop},
		{Name: "webhook.sender", Start: w.Sender.Start, Stop: w.Sender.Stop},
	}, nil
}
