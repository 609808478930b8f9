package payment_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/onsale-dev/onsale/internal/payment"
	"github.com/onsale-dev/onsale/internal/payment/paymenttest"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

// fakeProvider answers charges with whatever result is set, counting the calls that reach it;
// with a gate set, calls wait for it (or their context).
type fakeProvider struct {
	mu     sync.Mutex
	result error
	gate   chan struct{}
	calls  atomic.Int64
}

func (f *fakeProvider) set(err error) {
	f.mu.Lock()
	f.result = err
	f.mu.Unlock()
}

// hold makes calls wait until the returned function is called.
func (f *fakeProvider) hold() (release func()) {
	g := make(chan struct{})
	f.mu.Lock()
	f.gate = g
	f.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			f.gate = nil
			f.mu.Unlock()
			close(g)
		})
	}
}

func (f *fakeProvider) Charge(ctx context.Context, req payment.ChargeRequest) (payment.Charge, error) {
	f.calls.Add(1)
	f.mu.Lock()
	gate, result := f.gate, f.result
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return payment.Charge{}, ctx.Err()
		}
		f.mu.Lock()
		result = f.result
		f.mu.Unlock()
	}
	if err := ctx.Err(); err != nil {
		return payment.Charge{}, err
	}
	if result != nil {
		return payment.Charge{}, result
	}
	return payment.Charge{ID: "ch_" + req.IdempotencyKey, AmountCents: req.AmountCents, Currency: req.Currency}, nil
}

func (f *fakeProvider) Refund(context.Context, payment.ProviderRefund) (payment.Refunded, error) {
	return payment.Refunded{ID: "re_1"}, nil
}

var errDown = errors.New("provider down")

func breakerConfig() payment.Config {
	cfg := paymenttest.TestConfig()
	cfg.Workers = 100
	return cfg
}

func newGuarded(t *testing.T, cfg payment.Config, meter metric.Meter) (*payment.GuardedProvider, *fakeProvider) {
	t.Helper()
	if meter == nil {
		meter = noopMeter()
	}
	f := &fakeProvider{}
	g, err := payment.NewGuardedProvider(f, cfg, meter, discardLog())
	if err != nil {
		t.Fatal(err)
	}
	return g, f
}

func charge(g *payment.GuardedProvider) error {
	return chargeCtx(context.Background(), g)
}

func chargeCtx(ctx context.Context, g *payment.GuardedProvider) error {
	_, err := g.Charge(ctx, payment.ChargeRequest{IdempotencyKey: uuid.NewString(), AmountCents: 100, Currency: "EUR"})
	return err
}

func wantState(t *testing.T, g *payment.GuardedProvider, want gobreaker.State) {
	t.Helper()
	if got := g.State(); got != want {
		t.Fatalf("breaker %s, want %s", got, want)
	}
}

// open trips the breaker with MinRequests failures.
func open(t *testing.T, g *payment.GuardedProvider, f *fakeProvider, cfg payment.Config) {
	t.Helper()
	f.set(errDown)
	for range cfg.BreakerMinRequests {
		if err := charge(g); !errors.Is(err, errDown) {
			t.Fatalf("charge: want the provider's error, got %v", err)
		}
	}
	wantState(t, g, gobreaker.StateOpen)
}

func TestBreakerOpensOnlyAfterMinRequests(t *testing.T) {
	t.Parallel()
	cfg := breakerConfig()
	g, f := newGuarded(t, cfg, nil)
	f.set(errDown)
	for i := 1; i < cfg.BreakerMinRequests; i++ {
		if err := charge(g); !errors.Is(err, errDown) {
			t.Fatalf("failure %d: %v", i, err)
		}
		wantState(t, g, gobreaker.StateClosed)
	}
	if err := charge(g); !errors.Is(err, errDown) {
		t.Fatalf("failure %d: %v", cfg.BreakerMinRequests, err)
	}
	wantState(t, g, gobreaker.StateOpen)
}

func TestBreakerOpensAtFailureRatio(t *testing.T) {
	t.Parallel()
	cfg := breakerConfig()
	g, f := newGuarded(t, cfg, nil)
	// 3 successes then failures: 2 of 5 and 2 of 6 stay below half, 3 of 6 opens.
	for range 3 {
		if err := charge(g); err != nil {
			t.Fatal(err)
		}
	}
	f.set(errDown)
	for range 2 {
		_ = charge(g)
		wantState(t, g, gobreaker.StateClosed)
	}
	_ = charge(g)
	wantState(t, g, gobreaker.StateOpen)
}

func TestBreakerWindowForgetsOldFailures(t *testing.T) {
	t.Parallel()
	cfg := breakerConfig()
	cfg.BreakerWindow = 300 * time.Millisecond
	g, f := newGuarded(t, cfg, nil)
	f.set(errDown)
	for range cfg.BreakerMinRequests - 1 {
		_ = charge(g)
	}
	// Once the window has rolled past them, the old failures do not count.
	time.Sleep(cfg.BreakerWindow + 100*time.Millisecond)
	_ = charge(g)
	wantState(t, g, gobreaker.StateClosed)
}

func TestBreakerOpenRefusesWithoutCallingProvider(t *testing.T) {
	t.Parallel()
	cfg := breakerConfig()
	cfg.BreakerCooldown = time.Hour
	g, f := newGuarded(t, cfg, nil)
	open(t, g, f, cfg)
	before := f.calls.Load()
	f.set(nil)
	for range 50 {
		if err := charge(g); !errors.Is(err, payment.ErrBreakerOpen) {
			t.Fatalf("charge while open: want ErrBreakerOpen, got %v", err)
		}
	}
	if n := f.calls.Load() - before; n != 0 {
		t.Fatalf("%d calls reached the provider while the breaker was open", n)
	}
	if d := g.RetryIn(); d < 59*time.Minute {
		t.Fatalf("RetryIn %s while open for an hour more", d)
	}
	// Refunds are owed: they go through whatever the breaker says.
	if _, err := g.Refund(context.Background(), payment.ProviderRefund{IdempotencyKey: "r", ChargeKey: "k"}); err != nil {
		t.Fatalf("refund while open: %v", err)
	}
}

func TestBreakerRetryInAfterCooldown(t *testing.T) {
	t.Parallel()
	cfg := breakerConfig()
	g, f := newGuarded(t, cfg, nil)
	open(t, g, f, cfg)
	if d := g.RetryIn(); d < time.Second/2 || d > cfg.BreakerCooldown+time.Second {
		t.Fatalf("RetryIn %s while open", d)
	}
	time.Sleep(cfg.BreakerCooldown + 50*time.Millisecond)
	// The cooldown has passed but nothing has asked the breaker yet: RetryIn is the first to
	// find it half-open (a state change inside the call).
	done := make(chan time.Duration, 1)
	go func() { done <- g.RetryIn() }()
	select {
	case d := <-done:
		if d <= 0 {
			t.Fatalf("RetryIn %s", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("RetryIn deadlocked when the breaker left the open state during the call")
	}
	wantState(t, g, gobreaker.StateHalfOpen)
}

func TestBreakerOneProbeThenCloses(t *testing.T) {
	t.Parallel()
	cfg := breakerConfig()
	g, f := newGuarded(t, cfg, nil)
	open(t, g, f, cfg)
	testenv.Eventually(t, 5*time.Second, func() bool { return g.State() == gobreaker.StateHalfOpen },
		"the breaker did not go half-open after the cooldown")

	// Many callers at once: exactly one reaches the provider.
	f.set(nil)
	release := f.hold()
	defer release()
	before := f.calls.Load()
	const n = 20
	errs := make(chan error, n)
	for range n {
		go func() { errs <- charge(g) }()
	}
	refused := 0
	for range n - 1 {
		err := <-errs
		if !errors.Is(err, payment.ErrBreakerOpen) {
			t.Fatalf("a second call got through while probing: %v", err)
		}
		refused++
	}
	testenv.Eventually(t, 5*time.Second, func() bool { return f.calls.Load()-before == 1 }, "the probe did not reach the provider")
	release()
	if err := <-errs; err != nil {
		t.Fatalf("the probe: %v", err)
	}
	if got := f.calls.Load() - before; got != 1 {
		t.Fatalf("%d calls reached the provider while half-open, want 1", got)
	}
	wantState(t, g, gobreaker.StateClosed)
	if err := charge(g); err != nil {
		t.Fatalf("charge after closing: %v", err)
	}
}

func TestBreakerFailedProbeReopens(t *testing.T) {
	t.Parallel()
	cfg := breakerConfig()
	g, f := newGuarded(t, cfg, nil)
	open(t, g, f, cfg)
	testenv.Eventually(t, 5*time.Second, func() bool { return g.State() == gobreaker.StateHalfOpen },
		"the breaker did not go half-open after the cooldown")
	if err := charge(g); !errors.Is(err, errDown) {
		t.Fatalf("probe: %v", err)
	}
	wantState(t, g, gobreaker.StateOpen)
}

func TestBreakerRampsAfterClosing(t *testing.T) {
	t.Parallel()
	const n = 40
	cfg := breakerConfig()
	cfg.Workers = n
	cfg.BreakerRamp = 2 * time.Second
	g, f := newGuarded(t, cfg, nil)
	open(t, g, f, cfg)
	testenv.Eventually(t, 5*time.Second, func() bool { return g.State() == gobreaker.StateHalfOpen },
		"the breaker did not go half-open after the cooldown")
	f.set(nil)
	if err := charge(g); err != nil {
		t.Fatalf("probe: %v", err)
	}
	wantState(t, g, gobreaker.StateClosed)

	// burst sends n calls at once while the provider holds them, and returns how many reached
	// it (the others are refused at once).
	burst := func() int {
		t.Helper()
		release := f.hold()
		defer release()
		before := f.calls.Load()
		var refused atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				switch err := charge(g); {
				case errors.Is(err, payment.ErrBreakerOpen):
					refused.Add(1)
				case err != nil:
					errs <- err
				}
			}()
		}
		testenv.Eventually(t, 5*time.Second, func() bool { return refused.Load()+f.calls.Load()-before == n },
			"calls neither refused nor admitted")
		admitted := int(f.calls.Load() - before)
		release()
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("admitted call: %v", err)
		}
		return admitted
	}
	// Right after closing only a few calls run at once.
	if admitted := burst(); admitted < 1 || admitted > n/4 {
		t.Fatalf("%d of %d concurrent calls admitted right after closing; want a few", admitted, n)
	}
	// Once ramped up, all of them do.
	time.Sleep(cfg.BreakerRamp)
	if admitted := burst(); admitted != n {
		t.Fatalf("%d of %d concurrent calls admitted after the ramp", admitted, n)
	}
	wantState(t, g, gobreaker.StateClosed)
}

func TestBreakerDeclinesAreHealthy(t *testing.T) {
	t.Parallel()
	cfg := breakerConfig()
	g, f := newGuarded(t, cfg, nil)
	f.set(payment.ErrDeclined)
	for range 5 * cfg.BreakerMinRequests {
		if err := charge(g); !errors.Is(err, payment.ErrDeclined) {
			t.Fatalf("want ErrDeclined, got %v", err)
		}
	}
	wantState(t, g, gobreaker.StateClosed)
}

func TestBreakerIgnoresCancelledCalls(t *testing.T) {
	t.Parallel()
	cfg := breakerConfig()
	g, f := newGuarded(t, cfg, nil)
	f.set(errDown)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 3 * cfg.BreakerMinRequests {
		if err := chargeCtx(ctx, g); !errors.Is(err, context.Canceled) {
			t.Fatalf("want context.Canceled, got %v", err)
		}
	}
	wantState(t, g, gobreaker.StateClosed)
	// Cancelled calls do not count towards the minimum either: MinRequests-1 real failures
	// after them leave the breaker closed...
	for range cfg.BreakerMinRequests - 1 {
		_ = charge(g)
	}
	wantState(t, g, gobreaker.StateClosed)
	// ...and the next one opens it.
	_ = charge(g)
	wantState(t, g, gobreaker.StateOpen)
}

func TestBreakerTimeoutIsAFailure(t *testing.T) {
	t.Parallel()
	cfg := breakerConfig()
	cfg.ProviderTO = 20 * time.Millisecond
	cfg.AckWait = time.Second
	g, f := newGuarded(t, cfg, nil)
	release := f.hold()
	defer release()
	for range cfg.BreakerMinRequests {
		if err := charge(g); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("want the provider timeout, got %v", err)
		}
	}
	wantState(t, g, gobreaker.StateOpen)
}

func TestBreakerStateMetric(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	cfg := breakerConfig()
	cfg.BreakerCooldown = time.Hour
	g, f := newGuarded(t, cfg, mp.Meter("payment"))
	gauge := func() int64 {
		t.Helper()
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				if m.Name != "onsale.payment.breaker.state" {
					continue
				}
				data, ok := m.Data.(metricdata.Gauge[int64])
				if !ok || len(data.DataPoints) != 1 {
					t.Fatalf("breaker gauge: %+v", m.Data)
				}
				return data.DataPoints[0].Value
			}
		}
		t.Fatal("no onsale.payment.breaker.state metric")
		return -1
	}
	if v := gauge(); v != int64(gobreaker.StateClosed) {
		t.Fatalf("gauge %d while closed", v)
	}
	open(t, g, f, cfg)
	if v := gauge(); v != int64(gobreaker.StateOpen) {
		t.Fatalf("gauge %d while open, want %d", v, gobreaker.StateOpen)
	}
}
