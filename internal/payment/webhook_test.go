package payment_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/onsale-dev/onsale/internal/payment"
	"github.com/onsale-dev/onsale/internal/payment/paymenttest"
	"github.com/onsale-dev/onsale/internal/platform/apitest"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
	"github.com/onsale-dev/onsale/internal/webhook"
)

// received is one delivery a test receiver got, verified against the endpoint's secret.
type received struct {
	id, typ string
	data    map[string]any
}

// receiver is an organizer's webhook endpoint: it verifies every delivery's signature and keeps
// them in the order they arrived.
type receiver struct {
	t   *testing.T
	key []byte
	mu  sync.Mutex
	got []received
	bad []string
	srv *httptest.Server
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{t: t}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if err := webhook.Verify(r.key, req.Header.Get("webhook-id"), req.Header.Get("webhook-timestamp"),
			req.Header.Get("webhook-signature"), body, time.Now(), 5*time.Minute); err != nil {
			r.bad = append(r.bad, req.Header.Get("webhook-id")+": "+err.Error())
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var p struct {
			Type string         `json:"type"`
			Data map[string]any `json:"data"`
		}
		if err := json.Unmarshal(body, &p); err != nil {
			r.bad = append(r.bad, "not JSON: "+string(body))
		}
		r.got = append(r.got, received{id: req.Header.Get("webhook-id"), typ: p.Type, data: p.Data})
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// of returns the types delivered about one order (or event), in order of arrival.
func (r *receiver) of(key string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, g := range r.got {
		if g.data["order_id"] == key || (g.data["order_id"] == nil && g.data["event_id"] == key) {
			out = append(out, g.typ)
		}
	}
	return out
}

// TestWebhooksFollowOrders: an organizer's endpoint hears of every change to its orders (paid,
// partly refunded, cancelled and refunded, admitted at the door) and of the event's cancellation,
// signed, each once, and in order per order.
func TestWebhooksFollowOrders(t *testing.T) {
	t.Parallel()
	s := httpStack(t, paymenttest.Options{})
	rcv := newReceiver(t)
	ep, err := s.Webhooks.Module.RegisterEndpoint(t.Context(), s.Organizer.ID, webhook.NewEndpoint{URL: rcv.srv.URL + "/hooks", EventTypes: webhook.EventTypes()})
	if err != nil {
		t.Fatal(err)
	}
	rcv.mu.Lock()
	rcv.key, err = webhook.ParseSecret(ep.Secret)
	rcv.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	tt := s.TicketType(10)
	setCutoff(t, s, tt, hours(24))

	// One order: paid, refunded in part by the organizer, then cancelled by its customer.
	a := confirmedOrder(t, s, s.Customer, tt, 2)
	s.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/orders/" + a.ID + "/refunds", Token: s.Organizer.Token,
		Header: map[string]string{"Idempotency-Key": "part"}, Body: map[string]any{"amount_cents": 1000, "reason": "pillar"}}).Expect(t, http.StatusAccepted, "")
	testRefunded(t, s, a.UUID(), 1000)
	s.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/orders/" + a.ID + "/cancel", Token: s.Customer.Token, Body: map[string]string{}}).Expect(t, http.StatusAccepted, "")
	s.WaitStatus(a.UUID(), payment.StatusRefunded, 10*time.Second)

	// Another: paid, admitted at the door, then refunded with its event's cancellation.
	b := confirmedOrder(t, s, s.Customer2, tt, 1)
	s.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/checkins", Token: s.Staff.Token,
		Body: map[string]string{"code": b.Tickets[0].Code}}).Expect(t, http.StatusOK, "")
	s.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/events/" + tt.EventID.String() + "/cancel", Token: s.Organizer.Token, Body: map[string]string{}}).Expect(t, http.StatusAccepted, "")
	s.WaitStatus(b.UUID(), payment.StatusRefunded, 15*time.Second)

	wantA := []string{"order.confirmed", "order.refunded", "order.cancelled", "order.refunded"}
	wantB := []string{"order.confirmed", "ticket.checked_in", "order.cancelled", "order.refunded"}
	testenv.Eventually(t, 20*time.Second, func() bool {
		return len(rcv.of(a.ID)) >= len(wantA) && len(rcv.of(b.ID)) >= len(wantB) && len(rcv.of(tt.EventID.String())) >= 1
	}, "every notice delivered")
	time.Sleep(300 * time.Millisecond) // room for a duplicate to show
	if got := rcv.of(a.ID); !slices.Equal(got, wantA) {
		t.Errorf("order A's deliveries %v, want %v", got, wantA)
	}
	if got := rcv.of(b.ID); !slices.Equal(got, wantB) {
		t.Errorf("order B's deliveries %v, want %v", got, wantB)
	}
	if got := rcv.of(tt.EventID.String()); !slices.Equal(got, []string{"event.cancelled"}) {
		t.Errorf("the event's deliveries %v, want one event.cancelled", got)
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.bad) > 0 {
		t.Errorf("deliveries that did not verify: %v", rcv.bad)
	}
	ids := map[string]bool{}
	for _, g := range rcv.got {
		if ids[g.id] {
			t.Errorf("webhook-id %s delivered twice", g.id)
		}
		ids[g.id] = true
		if g.typ == "order.refunded" && (g.data["refund_id"] == nil || g.data["refund_amount_cents"] == nil) {
			t.Errorf("order.refunded without its refund: %v", g.data)
		}
	}
}
