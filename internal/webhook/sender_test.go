package webhook_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/platform/clock"
	"github.com/onsale-dev/onsale/internal/platform/logging"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
	"github.com/onsale-dev/onsale/internal/webhook"
	"github.com/onsale-dev/onsale/internal/webhook/memory"
	"github.com/onsale-dev/onsale/internal/webhook/webhooktest"
)

// received is one request a test receiver got.
type received struct {
	header http.Header
	body   []byte
	at     time.Time
}

// receiver is an httptest server that answers with answer and remembers every request.
type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	got  []received
	busy atomic.Int32 // requests being answered now
	peak atomic.Int32
}

func newReceiver(t *testing.T, answer func(n int, r *http.Request) int) *receiver {
	t.Helper()
	rc := &receiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		busy := rc.busy.Add(1)
		defer rc.busy.Add(-1)
		for {
			p := rc.peak.Load()
			if busy <= p || rc.peak.CompareAndSwap(p, busy) {
				break
			}
		}
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got = append(rc.got, received{header: r.Header.Clone(), body: body, at: time.Now()})
		n := len(rc.got)
		rc.mu.Unlock()
		w.WriteHeader(answer(n, r))
	}))
	t.Cleanup(rc.Server.Close)
	return rc
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

// senderEnv is a memory store and a running sender allowed to reach loopback.
type senderEnv struct {
	store  *memory.Store
	sender *webhook.Sender
	org    uuid.UUID
}

func newSenderEnv(t *testing.T, cfg webhook.SenderConfig) *senderEnv {
	t.Helper()
	if cfg.Poll == 0 {
		cfg.Poll = 10 * time.Millisecond
	}
	if cfg.Schedule == nil {
		cfg.Schedule = []time.Duration{0, 20 * time.Millisecond, 20 * time.Millisecond}
	}
	e := &senderEnv{store: memory.NewStore(), org: uuid.New()}
	guard := webhook.NewGuard([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})
	e.sender = webhook.NewSender(e.store, guard, clock.System{}, logging.Discard(), cfg)
	if err := e.sender.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_ = e.sender.Stop(ctx)
	})
	return e
}

func (e *senderEnv) endpoint(t *testing.T, url string) webhook.Endpoint {
	t.Helper()
	ep := webhooktest.NewEndpoint(e.org, time.Now())
	ep.URL = url
	secret, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	ep.Secret = secret
	if err := e.store.CreateEndpoint(t.Context(), ep); err != nil {
		t.Fatal(err)
	}
	return ep
}

func (e *senderEnv) publish(t *testing.T, typ, key string) webhook.Event {
	t.Helper()
	ev := webhooktest.NewEvent(e.org, typ, key, time.Now())
	if _, err := e.store.Enqueue(t.Context(), ev, time.Now()); err != nil {
		t.Fatal(err)
	}
	e.sender.Wake()
	return ev
}

func (e *senderEnv) deliveries(t *testing.T, endpoint uuid.UUID) []webhook.Delivery {
	t.Helper()
	ds, err := e.store.Deliveries(t.Context(), endpoint, nil, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func (e *senderEnv) waitAll(t *testing.T, endpoint uuid.UUID, n int, status webhook.DeliveryStatus) []webhook.Delivery {
	t.Helper()
	var ds []webhook.Delivery
	testenv.Eventually(t, 10*time.Second, func() bool {
		ds = e.deliveries(t, endpoint)
		if len(ds) != n {
			return false
		}
		for _, d := range ds {
			if d.Status != status {
				return false
			}
		}
		return true
	}, "%d deliveries %s", n, status)
	return ds
}

func TestSenderSignsAndRetries(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, func(n int, _ *http.Request) int {
		if n == 1 {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	})
	e := newSenderEnv(t, webhook.SenderConfig{})
	ep := e.endpoint(t, rc.URL+"/hook")
	ev := e.publish(t, webhook.TypeOrderConfirmed, "")
	ds := e.waitAll(t, ep.ID, 1, webhook.StatusSucceeded)
	d := ds[0]
	if d.Attempts != 2 || len(d.History) != 2 {
		t.Fatalf("delivery %+v, want two attempts", d)
	}
	if h := d.History; h[0].StatusCode != 500 || !strings.HasPrefix(h[0].Error, "HTTP 500") || h[1].StatusCode != 204 || h[1].Error != "" {
		t.Fatalf("attempts %+v, want a 500 then a 204", h)
	}
	key, err := webhook.ParseSecret(ep.Secret)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := ev.Body()
	for i, r := range rc.requests() {
		h := r.header
		if string(r.body) != string(body) || h.Get("Content-Type") != "application/json" || h.Get("User-Agent") != webhook.UserAgent ||
			h.Get("webhook-id") != ev.ID {
			t.Fatalf("request %d: headers %v body %s", i, h, r.body)
		}
		if err := webhook.Verify(key, h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature"), r.body, r.at, 5*time.Minute); err != nil {
			t.Fatalf("request %d does not verify with the endpoint's secret: %v", i, err)
		}
	}
}

func TestSenderSignsWithBothSecretsDuringARotation(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, func(int, *http.Request) int { return http.StatusNoContent })
	e := newSenderEnv(t, webhook.SenderConfig{})
	ep := e.endpoint(t, rc.URL+"/hook")
	newSecret, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.RotateSecret(t.Context(), ep.ID, newSecret, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	e.publish(t, webhook.TypeOrderConfirmed, "")
	e.waitAll(t, ep.ID, 1, webhook.StatusSucceeded)

	// The overlap over: only the new secret signs.
	if _, err := e.store.RotateSecret(t.Context(), ep.ID, newSecret, time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	e.publish(t, webhook.TypeOrderConfirmed, "")
	e.waitAll(t, ep.ID, 2, webhook.StatusSucceeded)

	oldKey, _ := webhook.ParseSecret(ep.Secret)
	newKey, _ := webhook.ParseSecret(newSecret)
	reqs := rc.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	verify := func(r received, key []byte) error {
		h := r.header
		return webhook.Verify(key, h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature"), r.body, r.at, 5*time.Minute)
	}
	during, after := reqs[0], reqs[1]
	if n := len(strings.Fields(during.header.Get("webhook-signature"))); n != 2 {
		t.Fatalf("during the overlap %d signatures, want 2", n)
	}
	if verify(during, oldKey) != nil || verify(during, newKey) != nil {
		t.Fatalf("during the overlap the delivery must verify with the old and the new secret")
	}
	if n := len(strings.Fields(after.header.Get("webhook-signature"))); n != 1 || verify(after, newKey) != nil {
		t.Fatalf("after the overlap: %d signatures (want 1), new secret: %v", n, verify(after, newKey))
	}
	if err := verify(after, oldKey); err == nil {
		t.Fatalf("after the overlap the old secret still verifies")
	}
}

func TestSenderDeadAfterTheLastAttempt(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, func(int, *http.Request) int { return http.StatusServiceUnavailable })
	e := newSenderEnv(t, webhook.SenderConfig{Schedule: []time.Duration{0, 10 * time.Millisecond, 10 * time.Millisecond}})
	ep := e.endpoint(t, rc.URL)
	e.publish(t, webhook.TypeOrderFailed, "")
	d := e.waitAll(t, ep.ID, 1, webhook.StatusDead)[0]
	if d.Attempts != 3 || len(rc.requests()) != 3 {
		t.Fatalf("dead after %d attempts (%d requests), want 3", d.Attempts, len(rc.requests()))
	}
}

func TestSenderKeepsOrderPerKey(t *testing.T) {
	t.Parallel()
	var failedOnce atomic.Bool
	rc := newReceiver(t, func(_ int, r *http.Request) int {
		// The first event of the key fails once: the second must wait for its retry.
		if strings.HasPrefix(r.Header.Get("webhook-id"), webhook.TypeOrderConfirmed) && failedOnce.CompareAndSwap(false, true) {
			return http.StatusBadGateway
		}
		return http.StatusOK
	})
	e := newSenderEnv(t, webhook.SenderConfig{Schedule: []time.Duration{0, 50 * time.Millisecond, 50 * time.Millisecond}})
	ep := e.endpoint(t, rc.URL)
	key := uuid.NewString()
	first := e.publish(t, webhook.TypeOrderConfirmed, key)
	second := e.publish(t, webhook.TypeOrderRefunded, key)
	e.waitAll(t, ep.ID, 2, webhook.StatusSucceeded)
	var ids []string
	for _, r := range rc.requests() {
		ids = append(ids, r.header.Get("webhook-id"))
	}
	want := []string{first.ID, first.ID, second.ID}
	if strings.Join(ids, " ") != strings.Join(want, " ") {
		t.Fatalf("requests %v, want %v", ids, want)
	}
}

func TestSenderSlowEndpointDoesNotHoldUpOthers(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	slow := newReceiver(t, func(int, *http.Request) int {
		<-release
		return http.StatusOK
	})
	fast := newReceiver(t, func(int, *http.Request) int { return http.StatusOK })
	e := newSenderEnv(t, webhook.SenderConfig{Concurrency: 4, PerEndpoint: 2})
	// Let the slow receiver answer before the sender stops and its server closes (cleanups run
	// last first).
	t.Cleanup(func() { close(release) })
	slowEP := e.endpoint(t, slow.URL)
	fastEP := e.endpoint(t, fast.URL)
	for range 10 {
		e.publish(t, webhook.TypeOrderConfirmed, "")
	}
	e.waitAll(t, fastEP.ID, 10, webhook.StatusSucceeded)
	if n := slow.peak.Load(); n > 2 {
		t.Fatalf("%d requests at once to the slow endpoint, want at most 2", n)
	}
	for _, d := range e.deliveries(t, slowEP.ID) {
		if d.Status != webhook.StatusPending {
			t.Fatalf("slow endpoint's delivery %s, want pending", d.Status)
		}
	}
}

func TestSenderRefusesWhatTheGuardRefuses(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, func(int, *http.Request) int { return http.StatusOK })
	store := memory.NewStore()
	org := uuid.New()
	ep := webhooktest.NewEndpoint(org, time.Now())
	ep.URL = rc.URL
	ep.Secret, _ = webhook.NewSecret()
	if err := store.CreateEndpoint(t.Context(), ep); err != nil {
		t.Fatal(err)
	}
	// The default guard: loopback is refused at connection time, whatever was registered.
	s := webhook.NewSender(store, webhook.NewGuard(nil), clock.System{}, logging.Discard(),
		webhook.SenderConfig{Poll: 10 * time.Millisecond, Schedule: []time.Duration{0}})
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Stop(context.Background()) }()
	if _, err := store.Enqueue(t.Context(), webhooktest.NewEvent(org, webhook.TypeEventCancelled, "", time.Now()), time.Now()); err != nil {
		t.Fatal(err)
	}
	var d webhook.Delivery
	testenv.Eventually(t, 10*time.Second, func() bool {
		ds, _ := store.Deliveries(t.Context(), ep.ID, nil, 10)
		if len(ds) == 1 {
			d = ds[0]
		}
		return d.Status == webhook.StatusDead
	}, "the delivery is dead")
	if len(rc.requests()) != 0 || !strings.Contains(d.History[0].Error, "refused") {
		t.Fatalf("%d requests reached the receiver; attempt %+v", len(rc.requests()), d.History)
	}
}

func TestSenderFollowsNoRedirect(t *testing.T) {
	t.Parallel()
	target := newReceiver(t, func(int, *http.Request) int { return http.StatusOK })
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirect.Close)
	e := newSenderEnv(t, webhook.SenderConfig{Schedule: []time.Duration{0}})
	ep := e.endpoint(t, redirect.URL)
	e.publish(t, webhook.TypeTicketCheckedIn, "")
	d := e.waitAll(t, ep.ID, 1, webhook.StatusDead)[0]
	if len(target.requests()) != 0 || d.History[0].StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("redirect followed (%d requests at its target); attempt %+v", len(target.requests()), d.History)
	}
}
