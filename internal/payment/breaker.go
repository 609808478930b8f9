package payment

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/otel/metric"
)

// ErrBreakerOpen means the provider is not being called right now: the breaker is open, or it is
// probing or ramping back and this call was not let through. The payment waits; it has not failed.
var ErrBreakerOpen = errors.New("payment provider circuit open")

// GuardedProvider calls a Provider through a circuit breaker: it opens when at least
// BreakerMinRequests calls in the rolling BreakerWindow fail at BreakerFailureRate or more, stays
// open for BreakerCooldown, lets one probe through, and once that succeeds ramps the number of
// concurrent calls back up over BreakerRamp instead of releasing the whole queue at once. Every
// call has the provider timeout. A decline or a pending charge is a healthy answer, not a failure.
type GuardedProvider struct {
	p       Provider
	cb      *gobreaker.CircuitBreaker[any]
	timeout time.Duration
	log     *slog.Logger

	mu       sync.Mutex
	inFlight int
	full     int       // concurrency once ramped up
	rampFrom time.Time // when the breaker last closed after being open
	ramp     time.Duration
	openedAt time.Time
	cooldown time.Duration
}

// NewGuardedProvider wraps p.
func NewGuardedProvider(p Provider, cfg Config, meter metric.Meter, log *slog.Logger) (*GuardedProvider, error) {
	g := &GuardedProvider{p: p, timeout: cfg.ProviderTO, log: log, full: cfg.Workers, ramp: cfg.BreakerRamp, cooldown: cfg.BreakerCooldown}
	g.cb = gobreaker.NewCircuitBreaker[any](gobreaker.Settings{
		Name:         "payment-provider",
		MaxRequests:  1,
		Interval:     cfg.BreakerWindow,
		BucketPeriod: cfg.BreakerWindow / 10,
		Timeout:      cfg.BreakerCooldown,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			// Requests includes excluded calls (cancelled by the caller); they must count
			// neither towards the minimum nor in the ratio.
			valid := c.Requests - min(c.TotalExclusions, c.Requests)
			return valid >= uint32(cfg.BreakerMinRequests) &&
				float64(c.TotalFailures) >= cfg.BreakerFailureRate*float64(valid)
		},
		IsSuccessful: func(err error) bool {
			return err == nil || errors.Is(err, ErrDeclined) || errors.Is(err, ErrChargePending)
		},
		IsExcluded: func(err error) bool {
			// The caller gave up (shutdown): says nothing about the provider.
			return errors.Is(err, context.Canceled)
		},
		OnStateChange: g.stateChanged,
	})
	_, err := meter.Int64ObservableGauge("onsale.payment.breaker.state",
		metric.WithDescription("Payment provider circuit breaker: 0 closed, 1 half-open, 2 open."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(int64(g.cb.State()))
			return nil
		}))
	if err != nil {
		return nil, err
	}
	return g, nil
}

func (g *GuardedProvider) stateChanged(_ string, from, to gobreaker.State) {
	g.mu.Lock()
	now := time.Now()
	switch to {
	case gobreaker.StateOpen:
		g.openedAt = now
	case gobreaker.StateClosed:
		if from == gobreaker.StateHalfOpen {
			g.rampFrom = now
		}
	}
	g.mu.Unlock()
	g.log.Warn("payment provider circuit breaker", "from", from.String(), "to", to.String())
}

// State is the breaker's state.
func (g *GuardedProvider) State() gobreaker.State { return g.cb.State() }

// RetryIn suggests when a call refused with ErrBreakerOpen is worth trying again.
func (g *GuardedProvider) RetryIn() time.Duration {
	// Ask the breaker before taking g.mu: State may change the state, and the breaker calls
	// stateChanged (which takes g.mu) while holding its own lock.
	if g.cb.State() != gobreaker.StateOpen {
		return time.Second
	}
	g.mu.Lock()
	openedAt := g.openedAt
	g.mu.Unlock()
	if left := g.cooldown - time.Since(openedAt); left > time.Second {
		return left
	}
	return time.Second
}

// admit applies the ramp: right after recovery only a few calls run at once.
func (g *GuardedProvider) admit() (release func(), ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	limit := g.full
	if g.ramp > 0 && !g.rampFrom.IsZero() {
		if since := time.Since(g.rampFrom); since < g.ramp {
			limit = max(1, int(float64(g.full)*float64(since)/float64(g.ramp)))
		}
	}
	if g.inFlight >= limit {
		return nil, false
	}
	g.inFlight++
	return func() {
		g.mu.Lock()
		g.inFlight--
		g.mu.Unlock()
	}, true
}

// Charge implements Provider.
func (g *GuardedProvider) Charge(ctx context.Context, req ChargeRequest) (Charge, error) {
	release, ok := g.admit()
	if !ok {
		return Charge{}, ErrBreakerOpen
	}
	defer release()
	v, err := g.cb.Execute(func() (any, error) {
		ctx, cancel := context.WithTimeout(ctx, g.timeout)
		defer cancel()
		return g.p.Charge(ctx, req)
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return Charge{}, ErrBreakerOpen
	}
	if err != nil {
		return Charge{}, err
	}
	return v.(Charge), nil
}

// Refund implements Provider. Refunds bypass the breaker, which exists to spare a struggling
// provider the flood of new charges; a refund is owed and is retried until it goes through.
func (g *GuardedProvider) Refund(ctx context.Context, req ProviderRefund) (Refunded, error) {
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	r, err := g.p.Refund(ctx, req)
	if err != nil {
		return Refunded{}, fmt.Errorf("refund %s: %w", req.ChargeKey, err)
	}
	return r, nil
}
