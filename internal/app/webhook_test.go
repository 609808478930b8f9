package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/platform/testenv"
	"github.com/onsale-dev/onsale/internal/webhook"
)

// TestWebhooksWiring: in a process running payment, an event given to the publisher payment
// holds reaches an organizer's endpoint through the stream, the fan-out and the sender, signed
// with the endpoint's secret; ONSALE_WEBHOOK_ALLOW_NETWORKS lets it reach this machine.
func TestWebhooksWiring(t *testing.T) {
	t.Parallel()
	var (
		mu  sync.Mutex
		got []*http.Request
		raw [][]byte
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, raw = append(got, r), append(raw, body)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	file, _ := secret(t)
	p := startProcess(t, "all", file, map[string]string{"ONSALE_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8"})
	if p.Payment == nil || p.Payment.Webhooks == nil || p.Webhooks == nil {
		t.Fatal("the payment process has no webhooks")
	}
	ctx := t.Context()
	org := uuid.New()
	ep, err := p.Webhooks.Module.RegisterEndpoint(ctx, org, webhook.NewEndpoint{URL: srv.URL + "/hook", EventTypes: []string{webhook.TypeOrderConfirmed}})
	if err != nil {
		t.Fatal(err)
	}
	orderID := uuid.New()
	data, _ := json.Marshal(map[string]any{"order_id": orderID, "status": "confirmed"})
	ev := webhook.Event{ID: "order.confirmed:" + orderID.String(), Type: webhook.TypeOrderConfirmed, OrganizerID: org,
		OrderingKey: orderID.String(), At: time.Now(), Data: data}
	for range 2 { // published twice, delivered once
		if err := p.Payment.Webhooks.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 15*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) > 0
	}, "the receiver got the event")
	key, _ := webhook.ParseSecret(ep.Secret)
	mu.Lock()
	r, body := got[0], raw[0]
	mu.Unlock()
	if err := webhook.Verify(key, r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"),
		body, time.Now(), time.Minute); err != nil || r.Header.Get("webhook-id") != ev.ID {
		t.Fatalf("delivery %s (%v) does not verify: %v", r.Header.Get("webhook-id"), r.Header, err)
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		ds, _, err := p.Webhooks.Module.Deliveries(ctx, org, ep.ID, "", 10)
		return err == nil && len(ds) == 1 && ds[0].Status == webhook.StatusSucceeded
	}, "one delivery, succeeded")
}
