package app

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/onsale-dev/onsale/internal/inventory"
	invclient "github.com/onsale-dev/onsale/internal/inventory/client"
	invpostgres "github.com/onsale-dev/onsale/internal/inventory/postgres"
	invredis "github.com/onsale-dev/onsale/internal/inventory/redis"
	"github.com/onsale-dev/onsale/internal/payment"
	"github.com/onsale-dev/onsale/internal/platform/httpserver"
	"github.com/onsale-dev/onsale/internal/platform/internalapi"
)

// InventoryModule is the inventory module as assembled in this process.
type InventoryModule struct {
	Module    *inventory.Module
	Store     inventory.Store
	Holds     inventory.HoldStore
	Customers inventory.CustomerHolds
	Handler   *inventory.Handler
}

func (p *Process) localInventory(ctx context.Context) ([]Runner, error) {
	cfg := p.cfg.Inventory
	d := inventory.Deps{
		Clock: p.clock,
		Log:   p.log.With("module", "inventory"),
		Meter: p.meters.Meter("github.com/onsale-dev/onsale/internal/inventory"),
	}
	if p.PG != nil {
		if err := p.migrate(ctx, invpostgres.Migrate); err != nil {
			return nil, err
		}
		d.Store = invpostgres.NewStore(p.PG)
		if p.PGRead != nil {
			d.Replica = invpostgres.NewStore(p.PGRead)
		}
	} else {
		d.Store = p.memory.catalogue
	}
	var report func(int)
	if p.Redis != nil {
		holds := invredis.NewHolds(p.Redis, p.cfg.RedisPrefix, cfg.HoldRecordKeep)
		holds.Pruned = func(n int) { report(n) }
		d.Holds = holds
		d.Customers = invredis.NewCustomerHolds(p.Redis, p.cfg.RedisPrefix)
		d.Catalog = invredis.NewCatalog(p.Redis, p.cfg.RedisPrefix, cfg.CatalogCacheTTL)
		d.Queue = invredis.NewQueue(p.Redis, p.cfg.RedisPrefix)
	} else {
		p.memory.holds.Pruned = func(n int) { report(n) }
		d.Holds, d.Customers, d.Queue = p.memory.holds, p.memory.customerHolds, p.memory.queue
	}
	mod, err := inventory.New(cfg, d)
	if err != nil {
		return nil, err
	}
	report = mod.ExpiredHolds
	p.Inventory = &InventoryModule{
		Module: mod, Store: d.Store, Holds: d.Holds, Customers: d.Customers,
		Handler: inventory.NewHandler(mod, p.authn, httpserver.LimitPerClient("holds", cfg.RateLimit, cfg.RateLimitBurst), p.streams),
	}
	p.inventory = mod
	return []Runner{admission(mod)}, nil
}

// admission is the runner that admits people from waiting rooms' queues, tick by tick.
func admission(mod *inventory.Module) Runner {
	var cancel context.CancelFunc
	done := make(chan struct{})
	return Runner{
		Name: "inventory.admission",
		Start: func(context.Context) error {
			var ctx context.Context
			ctx, cancel = context.WithCancel(context.Background())
			go func() {
				defer close(done)
				_ = mod.RunAdmission(ctx)
			}()
			return nil
		},
		Stop: func(ctx context.Context) error {
			cancel()
			select {
			case <-done:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		},
	}
}

// remoteInventory serves payment's Inventory port with a client of inventory's internal API.
func (p *Process) remoteInventory(ctx context.Context, url string) error {
	api := internalapi.NewClient(Inventory, url, p.secret, p.cfg.Internal.Timeout, p.prop)
	p.inventory = invclient.New(api)
	p.health.Add("inventory (remote, "+url+")", pingRemote(api))
	return nil
}

// InventoryClient is payment's Inventory port served by the inventory module of another process,
// whose internal API is at url: what a process without inventory uses.
func InventoryClient(url, secret string, timeout time.Duration) payment.Inventory {
	return invclient.New(internalapi.NewClient(Inventory, url, secret, timeout, propagation.TraceContext{}))
}

// InventoryPort is the port this process's payment module uses: the module here, or the client
// of the one elsewhere.
func (p *Process) InventoryPort() payment.Inventory { return p.inventory }
