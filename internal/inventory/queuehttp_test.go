package inventory_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/platform/apitest"
)

type queueBody struct {
	EventID       string     `json:"event_id"`
	Status        string     `json:"status"`
	Place         *int64     `json:"place"`
	Ahead         int64      `json:"ahead"`
	WaitSeconds   *int64     `json:"estimated_wait_seconds"`
	Pass          string     `json:"pass"`
	PassExpiresAt *time.Time `json:"pass_expires_at"`
}

type roomBody struct {
	EventID       string `json:"event_id"`
	Status        string `json:"status"`
	RatePerMinute int    `json:"admission_rate_per_minute"`
	MaxShoppers   int    `json:"max_shoppers"`
	PassLifetime  int    `json:"pass_lifetime_seconds"`
	Paused        bool   `json:"paused"`
	Live          struct {
		Waiting  int64 `json:"waiting"`
		Admitted int64 `json:"admitted"`
		Shopping int64 `json:"shopping"`
		Places   int64 `json:"places"`
	} `json:"live"`
}

func (a *api) holdWithPass(u user, ttID, pass string) *apitest.Response {
	return a.srv.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/holds", Token: u.token,
		Body: map[string]any{"ticket_type_id": ttID, "quantity": 1}, Header: map[string]string{inventory.PassHeader: pass}})
}

// admitAll ticks admission until nobody waits.
func (a *api) admitAll(t *testing.T) {
	t.Helper()
	for range 100 {
		a.clk.Advance(a.cfg.QueueTick)
		if err := a.mod.Admit(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestHTTPWaitingRoom(t *testing.T) {
	t.Parallel()
	forEachAPI(t, nil, func(t *testing.T, a *api) {
		ev := a.createEvent(t)
		tt := a.createTicketType(t, ev.ID, 10)
		room := "/v1/events/" + ev.ID + "/waiting-room"
		queue := "/v1/events/" + ev.ID + "/queue"
		me := queue + "/me"

		// Who may set a room, and with what.
		settings := map[string]any{"admission_rate_per_minute": 600, "pass_lifetime_seconds": 600}
		a.do(http.MethodPut, room, a.customer, settings).Expect(t, http.StatusForbidden, "/forbidden")
		a.do(http.MethodPut, room, a.organizer2, settings).Expect(t, http.StatusForbidden, "/not-event-owner")
		a.do(http.MethodPut, room, user{}, settings).Expect(t, http.StatusUnauthorized, "")
		a.do(http.MethodPut, "/v1/events/"+uuid.NewString()+"/waiting-room", a.organizer, settings).Expect(t, http.StatusNotFound, "/event-not-found")
		a.do(http.MethodPatch, room, a.organizer, map[string]any{"paused": true}).Expect(t, http.StatusNotFound, "/waiting-room-not-found")
		a.do(http.MethodGet, room, a.organizer, nil).Expect(t, http.StatusNotFound, "/waiting-room-not-found")
		for _, bad := range []map[string]any{
			{},
			{"admission_rate_per_minute": -1},
			{"admission_rate_per_minute": "fast"},
			{"admission_rate_per_minute": 60, "pass_lifetime_seconds": 5},
			{"admission_rate_per_minute": 60, "opens_at": "soon"},
			{"admission_rate_per_minute": 60, "colour": "blue"},
			{"max_shoppers": 0, "admission_rate_per_minute": 0},
		} {
			a.do(http.MethodPut, room, a.organizer, bad).Expect(t, http.StatusUnprocessableEntity, "/validation")
		}
		var rb roomBody
		a.do(http.MethodPut, room, a.organizer, settings).Expect(t, http.StatusOK, "").JSON(t, &rb)
		if rb.EventID != ev.ID || rb.Status != "open" || rb.RatePerMinute != 600 || rb.PassLifetime != 600 || rb.Paused {
			t.Fatalf("room as put: %+v", rb)
		}
		a.do(http.MethodPatch, room, a.organizer, map[string]any{}).Expect(t, http.StatusUnprocessableEntity, "/validation")
		a.do(http.MethodPatch, room, a.organizer2, map[string]any{"paused": true}).Expect(t, http.StatusForbidden, "/not-event-owner")
		a.do(http.MethodGet, room, a.organizer2, nil).Expect(t, http.StatusForbidden, "/not-event-owner")

		// Without a place, and before admission, holds are refused with a problem about the queue.
		a.hold(a.customer, tt.ID, 1, "").Expect(t, http.StatusForbidden, "/queue-pass-required")
		a.holdWithPass(a.customer, tt.ID, "garbage").Expect(t, http.StatusForbidden, "/queue-pass-invalid")
		a.do(http.MethodGet, me, a.customer, nil).Expect(t, http.StatusNotFound, "/queue-entry-not-found")
		a.do(http.MethodPost, queue, a.organizer, nil).Expect(t, http.StatusForbidden, "/forbidden")
		a.do(http.MethodPost, queue, user{}, nil).Expect(t, http.StatusUnauthorized, "")
		other := a.createEvent(t)
		a.do(http.MethodPost, "/v1/events/"+other.ID+"/queue", a.customer, nil).Expect(t, http.StatusNotFound, "/waiting-room-not-found")

		// Places: stable, and shown with the people ahead.
		a.do(http.MethodPatch, room, a.organizer, map[string]any{"paused": true}).Expect(t, http.StatusOK, "")
		var q1, q2, again queueBody
		a.do(http.MethodPost, queue, a.customer, nil).Expect(t, http.StatusCreated, "").JSON(t, &q1)
		a.do(http.MethodPost, queue, a.customer2, nil).Expect(t, http.StatusCreated, "").JSON(t, &q2)
		a.do(http.MethodPost, queue, a.customer2, nil).Expect(t, http.StatusOK, "").JSON(t, &again)
		if q1.Place == nil || *q1.Place != 1 || q2.Place == nil || *q2.Place != 2 || *again.Place != 2 || q2.Ahead != 1 ||
			q2.Status != "waiting" || q2.Pass != "" || q2.WaitSeconds != nil {
			t.Fatalf("places: %+v, %+v, again %+v", q1, q2, again)
		}
		a.hold(a.customer2, tt.ID, 1, "").Expect(t, http.StatusForbidden, "/queue-pass-required")

		// Admission: both get passes; a pass buys for its owner only.
		a.do(http.MethodPatch, room, a.organizer, map[string]any{"paused": false}).Expect(t, http.StatusOK, "")
		a.admitAll(t)
		a.do(http.MethodGet, me, a.customer, nil).Expect(t, http.StatusOK, "").JSON(t, &q1)
		a.do(http.MethodGet, me, a.customer2, nil).Expect(t, http.StatusOK, "").JSON(t, &q2)
		if q1.Status != "admitted" || len(q1.Pass) < 16 || q1.PassExpiresAt == nil || q2.Pass == "" || q1.Pass == q2.Pass {
			t.Fatalf("admitted: %+v, %+v", q1, q2)
		}
		a.holdWithPass(a.customer2, tt.ID, q1.Pass).Expect(t, http.StatusForbidden, "/queue-pass-invalid")
		a.holdWithPass(a.customer, tt.ID, q1.Pass).Expect(t, http.StatusCreated, "")
		a.do(http.MethodGet, room, a.organizer, nil).Expect(t, http.StatusOK, "").JSON(t, &rb)
		if rb.Live.Admitted != 2 || rb.Live.Waiting != 0 || rb.Live.Shopping != 2 || rb.Live.Places != 2 {
			t.Fatalf("live figures: %+v", rb.Live)
		}

		// Leaving ends the pass.
		a.do(http.MethodDelete, me, a.customer2, nil).Expect(t, http.StatusNoContent, "")
		a.holdWithPass(a.customer2, tt.ID, q2.Pass).Expect(t, http.StatusForbidden, "/queue-pass-expired")
		var gone queueBody
		a.do(http.MethodGet, me, a.customer2, nil).Expect(t, http.StatusOK, "").JSON(t, &gone)
		if gone.Status != "left" || gone.Pass != "" {
			t.Fatalf("after leaving: %+v", gone)
		}

		// Closing the room: holds need no pass, queues are gone.
		a.do(http.MethodDelete, room, a.organizer2, nil).Expect(t, http.StatusForbidden, "/not-event-owner")
		a.do(http.MethodDelete, room, a.organizer, nil).Expect(t, http.StatusNoContent, "")
		a.do(http.MethodDelete, room, a.organizer, nil).Expect(t, http.StatusNotFound, "/waiting-room-not-found")
		a.hold(a.customer2, tt.ID, 1, "").Expect(t, http.StatusCreated, "")
		a.do(http.MethodGet, me, a.customer, nil).Expect(t, http.StatusNotFound, "/waiting-room-not-found")
	})
}

func TestHTTPQueueAddressCap(t *testing.T) {
	t.Parallel()
	forEachAPI(t, func(c *inventory.Config) { c.QueuePerAddress = 1 }, func(t *testing.T, a *api) {
		ev := a.createEvent(t)
		a.do(http.MethodPut, "/v1/events/"+ev.ID+"/waiting-room", a.organizer, map[string]any{"max_shoppers": 10}).Expect(t, http.StatusOK, "")
		queue := "/v1/events/" + ev.ID + "/queue"
		a.do(http.MethodPost, queue, a.customer, nil).Expect(t, http.StatusCreated, "")
		a.do(http.MethodPost, queue, a.customer, nil).Expect(t, http.StatusOK, "")
		a.do(http.MethodPost, queue, a.customer2, nil).Expect(t, http.StatusTooManyRequests, "/queue-address-limit")
	})
}

// TestHTTPQueueStream follows a place live: the stream shows the place at once, and the pass
// when the admission tick reaches it, then ends.
func TestHTTPQueueStream(t *testing.T) {
	t.Parallel()
	forEachAPI(t, nil, func(t *testing.T, a *api) {
		ev := a.createEvent(t)
		room := "/v1/events/" + ev.ID + "/waiting-room"
		a.do(http.MethodPut, room, a.organizer, map[string]any{"admission_rate_per_minute": 60, "paused": true}).Expect(t, http.StatusOK, "")
		a.do(http.MethodPost, "/v1/events/"+ev.ID+"/queue", a.customer, nil).Expect(t, http.StatusCreated, "")

		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, a.srv.URL+"/v1/events/"+ev.ID+"/queue/me/events", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+a.customer.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		events := make(chan queueBody, 8)
		go func() {
			defer close(events)
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
					var q queueBody
					if json.Unmarshal([]byte(data), &q) == nil {
						events <- q
					}
				}
			}
		}()
		first := <-events
		if first.Status != "waiting" || first.Place == nil || *first.Place != 1 || first.Pass != "" {
			t.Fatalf("first event: %+v", first)
		}
		a.do(http.MethodPatch, room, a.organizer, map[string]any{"paused": false}).Expect(t, http.StatusOK, "")
		done := make(chan struct{})
		go func() { // the replica's ticks, until the stream ends
			for {
				select {
				case <-done:
					return
				case <-time.After(20 * time.Millisecond):
					a.clk.Advance(a.cfg.QueueTick)
					_ = a.mod.Admit(context.Background())
				}
			}
		}()
		defer close(done)
		var last queueBody
		for q := range events {
			last = q
		}
		if last.Status != "admitted" || len(last.Pass) < 16 {
			t.Fatalf("the stream ended with %+v, want the pass", last)
		}
	})
}
