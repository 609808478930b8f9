package main

import (
	"context"

	"github.com/onsale-dev/onsale/internal/inventory"
	invmemory "github.com/onsale-dev/onsale/internal/inventory/memory"
	invpostgres "github.com/onsale-dev/onsale/internal/inventory/postgres"
	invredis "github.com/onsale-dev/onsale/internal/inventory/redis"
	"github.com/onsale-dev/onsale/internal/platform/clock"
	"github.com/onsale-dev/onsale/internal/platform/httpserver"
)

// inventoryModule is the assembled inventory module.
type inventoryModule struct {
	mod     *inventory.Module
	handler *inventory.Handler
}

func (a *App) startInventory(ctx context.Context) error {
	cfg := a.cfg.Inventory
	d := inventory.Deps{
		Clock: clock.System{},
		Log:   a.log.With("module", "inventory"),
		Meter: a.tel.Meters.Meter("github.com/onsale-dev/onsale/internal/inventory"),
	}
	if a.pg != nil {
		if err := invpostgres.Migrate(ctx, a.pg, a.log); err != nil {
			return err
		}
		d.Store = invpostgres.NewStore(a.pg)
	} else {
		d.Store = invmemory.NewStore()
	}
	var report func(int)
	if a.redis != nil {
		holds := invredis.NewHolds(a.redis, a.cfg.RedisPrefix, cfg.HoldRecordKeep)
		holds.Pruned = func(n int) { report(n) }
		d.Holds = holds
		d.Customers = invredis.NewCustomerHolds(a.redis, a.cfg.RedisPrefix)
		d.Catalog = invredis.NewCatalog(a.redis, a.cfg.RedisPrefix, cfg.CatalogCacheTTL)
	} else {
		holds := invmemory.NewHolds(cfg.HoldRecordKeep)
		holds.Pruned = func(n int) { report(n) }
		d.Holds = holds
		d.Customers = invmemory.NewCustomerHolds()
	}
	mod, err := inventory.New(cfg, d)
	if err != nil {
		return err
	}
	report = mod.ExpiredHolds
	a.inventory = &inventoryModule{mod: mod, handler: inventory.NewHandler(mod, a.auth.authn,
		httpserver.LimitPerClient("holds", cfg.RateLimit, cfg.RateLimitBurst))}
	return nil
}
