package payment

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/onsale-dev/onsale/internal/platform/config"
)

// Config holds the payment module's settings.
type Config struct {
	PaymentWindow  time.Duration `env:"ONSALE_PAYMENT_WINDOW" yaml:"payment_window" default:"10m" help:"how long a checked-out hold stays reserved while its payment runs"`
	Workers        int           `env:"ONSALE_PAYMENT_WORKERS" yaml:"payment_workers" default:"512" help:"payments processed at once per replica"`
	AckWait        time.Duration `env:"ONSALE_PAYMENT_ACK_WAIT" yaml:"payment_ack_wait" default:"30s" help:"time a worker has to finish a payment before it is redelivered (kept alive while working)"`
	MaxDeliver     int           `env:"ONSALE_PAYMENT_MAX_DELIVER" yaml:"payment_max_deliver" default:"20" help:"attempts at a payment before it is dead-lettered and its order failed"`
	ProviderTO     time.Duration `env:"ONSALE_PROVIDER_TIMEOUT" yaml:"provider_timeout" default:"10s" help:"deadline of one call to the payment provider"`
	ProviderURL    string        `env:"ONSALE_PROVIDER_URL" yaml:"provider_url" secret:"true" help:"payment provider API (user:password@ in it is sent as basic auth); empty uses the in-process simulated provider, which production refuses unless ONSALE_ALLOW_SIMULATED_PROVIDER=true"`
	IdempotencyTTL time.Duration `env:"ONSALE_IDEMPOTENCY_TTL" yaml:"idempotency_ttl" default:"24h" help:"how long an order's Idempotency-Key is remembered"`
	TicketKeysFile string        `env:"ONSALE_TICKET_KEYS_FILE" yaml:"ticket_keys_file" help:"JWK set of Ed25519 keys that sign ticket codes (the last one signs); empty generates one under the data directory"`
	StreamPrefix   string        `env:"ONSALE_NATS_PREFIX" yaml:"nats_prefix" help:"prefix of the JetStream stream and subject names (to share a NATS between deployments)"`
	NATSReplicas   int           `env:"ONSALE_NATS_REPLICAS" yaml:"nats_replicas" default:"1" help:"replicas of every JetStream stream and consumer the payment module creates: 1 on a single server, 3 on a NATS cluster of 3 or more nodes (the stream then survives the loss of a node)"`
	StaleAfter     time.Duration `env:"ONSALE_PAYMENT_STALE_AFTER" yaml:"payment_stale_after" default:"15m" help:"a pending order no worker tried for this long has its payment requested again"`
	Heartbeat      time.Duration `env:"ONSALE_SSE_HEARTBEAT" yaml:"sse_heartbeat" default:"15s" help:"interval of keep-alive comments on order event streams; each one also checks the stream's session is still live"`
	CancelRate     float64       `env:"ONSALE_CANCEL_REFUNDS_PER_SECOND" yaml:"cancel_refunds_per_second" default:"50" help:"refunds of a cancelled event's orders each replica starts per second: the pace that leaves the two cores' worth of a replica to the sales of other events"`
	MaxStreams     int           `env:"ONSALE_SSE_MAX_PER_CUSTOMER" yaml:"sse_max_per_customer" default:"8" help:"order event streams one customer may keep open at once on one replica; the next is 429"`

	BreakerMinRequests int           `env:"ONSALE_BREAKER_MIN_REQUESTS" yaml:"breaker_min_requests" default:"20" help:"provider calls in the window before the breaker may open"`
	BreakerFailureRate float64       `env:"ONSALE_BREAKER_FAILURE_RATIO" yaml:"breaker_failure_ratio" default:"0.5" help:"failure ratio over the window that opens the breaker"`
	BreakerWindow      time.Duration `env:"ONSALE_BREAKER_WINDOW" yaml:"breaker_window" default:"10s" help:"rolling window the failure ratio is measured over"`
	BreakerCooldown    time.Duration `env:"ONSALE_BREAKER_COOLDOWN" yaml:"breaker_cooldown" default:"30s" help:"how long the breaker stays open before one probe call"`
	BreakerRamp        time.Duration `env:"ONSALE_BREAKER_RAMP" yaml:"breaker_ramp" default:"10s" help:"after the breaker closes, time over which concurrency ramps back to full"`

	SimLatency     time.Duration `env:"ONSALE_SIMULATED_LATENCY" yaml:"simulated_latency" default:"50ms" help:"simulated provider: time per call"`
	SimDeclineRate float64       `env:"ONSALE_SIMULATED_DECLINE_RATE" yaml:"simulated_decline_rate" default:"0" help:"simulated provider: share of charges declined (0..1, final)"`
	SimErrorRate   float64       `env:"ONSALE_SIMULATED_ERROR_RATE" yaml:"simulated_error_rate" default:"0" help:"simulated provider: share of calls failing transiently (0..1, retried)"`
	SimOutage      bool          `env:"ONSALE_SIMULATED_OUTAGE" yaml:"simulated_outage" default:"false" help:"simulated provider: every call fails"`
	SimSlow        time.Duration `env:"ONSALE_SIMULATED_SLOW" yaml:"simulated_slow" default:"0s" help:"simulated provider: extra time per call"`
	SimPending     int64         `env:"ONSALE_SIMULATED_PENDING_AMOUNT" yaml:"simulated_pending_amount" default:"0" help:"simulated provider: charges of exactly this many cents are accepted but never settle, so their orders stay pending (0: none)"`
}

// Validate checks the settings.
func (c Config) Validate() error {
	var errs []error
	positive := map[string]time.Duration{
		"ONSALE_PAYMENT_WINDOW": c.PaymentWindow, "ONSALE_PAYMENT_ACK_WAIT": c.AckWait, "ONSALE_PROVIDER_TIMEOUT": c.ProviderTO,
		"ONSALE_IDEMPOTENCY_TTL": c.IdempotencyTTL, "ONSALE_SSE_HEARTBEAT": c.Heartbeat, "ONSALE_BREAKER_WINDOW": c.BreakerWindow,
		"ONSALE_BREAKER_COOLDOWN": c.BreakerCooldown, "ONSALE_PAYMENT_STALE_AFTER": c.StaleAfter,
	}
	for name, d := range positive {
		if d <= 0 {
			errs = append(errs, config.Invalid(name, d.String(), "want a positive duration"))
		}
	}
	if c.AckWait <= c.ProviderTO {
		errs = append(errs, config.Invalid("ONSALE_PAYMENT_ACK_WAIT", c.AckWait.String(), "want longer than ONSALE_PROVIDER_TIMEOUT ("+c.ProviderTO.String()+")"))
	}
	if c.CancelRate <= 0 || c.CancelRate > 100000 {
		errs = append(errs, config.Invalid("ONSALE_CANCEL_REFUNDS_PER_SECOND", fmt.Sprint(c.CancelRate), "want more than 0 and at most 100000"))
	}
	if c.Workers < 1 || c.Workers > 10000 {
		errs = append(errs, config.Invalid("ONSALE_PAYMENT_WORKERS", fmt.Sprint(c.Workers), "want 1 to 10000"))
	}
	if c.MaxStreams < 1 {
		errs = append(errs, config.Invalid("ONSALE_SSE_MAX_PER_CUSTOMER", fmt.Sprint(c.MaxStreams), "want 1 or more"))
	}
	if c.MaxDeliver < 2 {
		errs = append(errs, config.Invalid("ONSALE_PAYMENT_MAX_DELIVER", fmt.Sprint(c.MaxDeliver), "want 2 or more"))
	}
	if c.NATSReplicas < 1 || c.NATSReplicas > 5 {
		errs = append(errs, config.Invalid("ONSALE_NATS_REPLICAS", fmt.Sprint(c.NATSReplicas), "want 1 to 5"))
	}
	if c.ProviderURL != "" {
		if u, err := url.Parse(c.ProviderURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, config.Invalid("ONSALE_PROVIDER_URL", config.RedactURL(c.ProviderURL), "want an http(s) URL"))
		}
	}
	if c.BreakerMinRequests < 1 {
		errs = append(errs, config.Invalid("ONSALE_BREAKER_MIN_REQUESTS", fmt.Sprint(c.BreakerMinRequests), "want 1 or more"))
	}
	if c.BreakerFailureRate <= 0 || c.BreakerFailureRate > 1 {
		errs = append(errs, config.Invalid("ONSALE_BREAKER_FAILURE_RATIO", fmt.Sprint(c.BreakerFailureRate), "want a number above 0 and at most 1"))
	}
	if c.BreakerRamp < 0 {
		errs = append(errs, config.Invalid("ONSALE_BREAKER_RAMP", c.BreakerRamp.String(), "want 0 or a positive duration"))
	}
	for name, r := range map[string]float64{"ONSALE_SIMULATED_DECLINE_RATE": c.SimDeclineRate, "ONSALE_SIMULATED_ERROR_RATE": c.SimErrorRate} {
		if r < 0 || r > 1 {
			errs = append(errs, config.Invalid(name, fmt.Sprint(r), "want a number from 0 to 1"))
		}
	}
	if c.SimPending < 0 {
		errs = append(errs, config.Invalid("ONSALE_SIMULATED_PENDING_AMOUNT", fmt.Sprint(c.SimPending), "want 0 or a positive number of cents"))
	}
	if c.SimLatency < 0 || c.SimSlow < 0 {
		errs = append(errs, config.Invalid("ONSALE_SIMULATED_LATENCY", c.SimLatency.String(), "want 0 or a positive duration"))
	}
	return errors.Join(errs...)
}
