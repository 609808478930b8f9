package inventory

import (
	"errors"
	"fmt"
	"time"

	"github.com/onsale-dev/onsale/internal/platform/config"
)

// Config holds the inventory module's settings.
type Config struct {
	HoldTTL         time.Duration `env:"ONSALE_HOLD_TTL" yaml:"hold_ttl" default:"2m" help:"how long a hold reserves tickets"`
	MaxHoldsPerType int           `env:"ONSALE_MAX_HOLDS_PER_TICKET_TYPE" yaml:"max_holds_per_ticket_type" default:"4" help:"live holds a customer may have on one ticket type"`
	MaxHolds        int           `env:"ONSALE_MAX_HOLDS_PER_CUSTOMER" yaml:"max_holds_per_customer" default:"8" help:"live holds a customer may have in all, across ticket types (checked-out holds count until their order ends)"`
	RateLimit       float64       `env:"ONSALE_RATE_LIMIT_HOLDS" yaml:"rate_limit_holds" default:"20" help:"hold requests per second per client address (IPv6 counted per /64); 0 disables"`
	RateLimitBurst  int           `env:"ONSALE_RATE_LIMIT_HOLDS_BURST" yaml:"rate_limit_holds_burst" default:"600" help:"hold requests one client address may send at once before the rate applies (a crowd behind one carrier NAT arrives together)"`
	AvailabilityTTL time.Duration `env:"ONSALE_AVAILABILITY_MAX_AGE" yaml:"availability_max_age" default:"1s" help:"how long availability answers are reused (and Cache-Control max-age)"`
	ClaimTTL        time.Duration `env:"ONSALE_CLAIM_TTL" yaml:"claim_ttl" default:"30s" help:"how long a hold being committed stays reserved"`
	CommitBatchMax  int           `env:"ONSALE_COMMIT_BATCH_MAX" yaml:"commit_batch_max" default:"256" help:"most sales committed in one transaction per ticket type"`
	HoldRecordKeep  time.Duration `env:"ONSALE_HOLD_RECORD_KEEP" yaml:"hold_record_keep" default:"10m" help:"how long a finished hold can still be read"`
	CatalogCacheTTL time.Duration `env:"ONSALE_CATALOG_CACHE_TTL" yaml:"catalog_cache_ttl" default:"1h" help:"lifetime of a cached catalogue entry (writes invalidate it at once)"`
	MaxCapacity     int           `env:"ONSALE_MAX_CAPACITY" yaml:"max_capacity" default:"10000000" help:"largest capacity of one ticket type"`
	SoldOutMemory   time.Duration `env:"ONSALE_SOLD_OUT_MEMORY" yaml:"sold_out_memory" default:"100ms" help:"how long a replica answers 'sold out' itself after the hold store said none are left (0 disables): tickets that come back through another replica or by a hold's expiry are offered again within this"`
	QueueTick       time.Duration `env:"ONSALE_QUEUE_TICK" yaml:"queue_tick" default:"250ms" help:"waiting rooms' admission period: one admission decision per room per period, across all replicas"`
	QueuePerAddress int           `env:"ONSALE_QUEUE_PLACES_PER_ADDRESS" yaml:"queue_places_per_address" default:"20" help:"places one client address (IPv6 counted per /64) may take in one waiting room's queue; 0 disables"`
}

// Validate checks the settings.
func (c Config) Validate() error {
	var errs []error
	if c.HoldTTL < time.Second || c.HoldTTL > time.Hour {
		errs = append(errs, config.Invalid("ONSALE_HOLD_TTL", c.HoldTTL.String(), "want from 1s to 1h"))
	}
	if c.MaxHoldsPerType < 1 {
		errs = append(errs, config.Invalid("ONSALE_MAX_HOLDS_PER_TICKET_TYPE", fmt.Sprint(c.MaxHoldsPerType), "want 1 or more"))
	}
	if c.MaxHolds < 1 {
		errs = append(errs, config.Invalid("ONSALE_MAX_HOLDS_PER_CUSTOMER", fmt.Sprint(c.MaxHolds), "want 1 or more"))
	}
	if c.RateLimit < 0 {
		errs = append(errs, config.Invalid("ONSALE_RATE_LIMIT_HOLDS", fmt.Sprint(c.RateLimit), "want 0 (off) or a positive number"))
	}
	if c.RateLimit > 0 && c.RateLimitBurst < 1 {
		errs = append(errs, config.Invalid("ONSALE_RATE_LIMIT_HOLDS_BURST", fmt.Sprint(c.RateLimitBurst), "want 1 or more"))
	}
	if c.AvailabilityTTL < 0 || c.AvailabilityTTL > time.Minute {
		errs = append(errs, config.Invalid("ONSALE_AVAILABILITY_MAX_AGE", c.AvailabilityTTL.String(), "want from 0s to 1m"))
	}
	if c.SoldOutMemory < 0 || c.SoldOutMemory > time.Second {
		errs = append(errs, config.Invalid("ONSALE_SOLD_OUT_MEMORY", c.SoldOutMemory.String(), "want from 0s (off) to 1s"))
	}
	if c.ClaimTTL < time.Second {
		errs = append(errs, config.Invalid("ONSALE_CLAIM_TTL", c.ClaimTTL.String(), "want 1s or more"))
	}
	if c.CommitBatchMax < 1 || c.CommitBatchMax > 10000 {
		errs = append(errs, config.Invalid("ONSALE_COMMIT_BATCH_MAX", fmt.Sprint(c.CommitBatchMax), "want 1 to 10000"))
	}
	if c.HoldRecordKeep < time.Minute {
		errs = append(errs, config.Invalid("ONSALE_HOLD_RECORD_KEEP", c.HoldRecordKeep.String(), "want 1m or more"))
	}
	if c.CatalogCacheTTL < time.Second {
		errs = append(errs, config.Invalid("ONSALE_CATALOG_CACHE_TTL", c.CatalogCacheTTL.String(), "want 1s or more"))
	}
	if c.QueueTick < 10*time.Millisecond || c.QueueTick > 10*time.Second {
		errs = append(errs, config.Invalid("ONSALE_QUEUE_TICK", c.QueueTick.String(), "want from 10ms to 10s"))
	}
	if c.QueuePerAddress < 0 {
		errs = append(errs, config.Invalid("ONSALE_QUEUE_PLACES_PER_ADDRESS", fmt.Sprint(c.QueuePerAddress), "want 0 (off) or more"))
	}
	if c.MaxCapacity < 1 {
		errs = append(errs, config.Invalid("ONSALE_MAX_CAPACITY", fmt.Sprint(c.MaxCapacity), "want 1 or more"))
	}
	return errors.Join(errs...)
}
