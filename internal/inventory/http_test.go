package inventory_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/auth"
	authmemory "github.com/onsale-dev/onsale/internal/auth/memory"
	"github.com/onsale-dev/onsale/internal/auth/token"
	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/platform/apitest"
	"github.com/onsale-dev/onsale/internal/platform/clock"
	"github.com/onsale-dev/onsale/internal/platform/httpserver"
	"github.com/onsale-dev/onsale/internal/platform/keyset"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

// Every response these tests see is checked against api/openapi.yaml by apitest.

// user is a logged-in caller.
type user struct {
	id    uuid.UUID
	token string
}

// api is an inventory module served over HTTP with a few logged-in users.
type api struct {
	*env
	srv                                               *apitest.Server
	customer, customer2, organizer, organizer2, staff user
}

func newAPI(t *testing.T, e *env) *api {
	t.Helper()
	path := filepath.Join(t.TempDir(), "jwt-keys.json")
	data, err := keyset.Generate(nil)
	if err != nil {
		t.Fatalf("generate keys: %v", err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := keyset.Load(path)
	if err != nil {
		t.Fatalf("load keys: %v", err)
	}
	// Tokens live in real time; the inventory module has its own fake clock.
	issuer := token.NewIssuer(keys, "onsale", "onsale-api", clock.System{})
	verifier, err := token.NewVerifier(keys, "onsale", "onsale-api", 1000, clock.System{})
	if err != nil {
		t.Fatalf("verifier: %v", err)
	}
	sessions := authmemory.NewSessions(clock.System{})
	login := func(role auth.Role) user {
		u := user{id: uuid.New()}
		sid := uuid.NewString()
		if err := sessions.Create(context.Background(), auth.Session{ID: sid, UserID: u.id, Role: role}, time.Hour); err != nil {
			t.Fatalf("create session: %v", err)
		}
		u.token, err = issuer.Issue(auth.Claims{UserID: u.id, Role: role, SessionID: sid, TokenID: uuid.NewString(),
			ExpiresAt: time.Now().Add(15 * time.Minute)})
		if err != nil {
			t.Fatalf("issue token: %v", err)
		}
		return u
	}
	a := &api{env: e, customer: login(auth.RoleCustomer), customer2: login(auth.RoleCustomer),
		organizer: login(auth.RoleOrganizer), organizer2: login(auth.RoleOrganizer), staff: login(auth.RoleStaff)}
	h := inventory.NewHandler(e.mod, auth.NewAuthenticator(verifier, sessions, nil), httpserver.LimitPerClient("holds", e.cfg.RateLimit, e.cfg.RateLimitBurst), context.Background)
	a.srv = apitest.NewServer(t, nil, h.Routes()...)
	return a
}

// forEachAPI runs fn against the HTTP API on every backend.
func forEachAPI(t *testing.T, tweak func(*inventory.Config), fn func(t *testing.T, a *api)) {
	forEachBackend(t, tweak, func(t *testing.T, e *env) { fn(t, newAPI(t, e)) })
}

func (a *api) do(method, path string, u user, body any) *apitest.Response {
	return a.srv.Do(apitest.Request{Method: method, Path: path, Token: u.token, Body: body})
}

type eventBody struct {
	ID          string           `json:"id"`
	OrganizerID string           `json:"organizer_id"`
	Name        string           `json:"name"`
	Venue       string           `json:"venue"`
	Description string           `json:"description"`
	StartsAt    time.Time        `json:"starts_at"`
	TicketTypes []ticketTypeBody `json:"ticket_types"`
}

type stockBody struct {
	TicketTypeID string `json:"ticket_type_id"`
	Capacity     int    `json:"capacity"`
	Sold         int    `json:"sold"`
	Held         int    `json:"held"`
	Available    int    `json:"available"`
}

type ticketTypeBody struct {
	ID           string     `json:"id"`
	EventID      string     `json:"event_id"`
	Name         string     `json:"name"`
	PriceCents   int64      `json:"price_cents"`
	Currency     string     `json:"currency"`
	Capacity     int        `json:"capacity"`
	MaxPerOrder  int        `json:"max_per_order"`
	Availability *stockBody `json:"availability"`
}

type holdBody struct {
	ID             string    `json:"id"`
	TicketTypeID   string    `json:"ticket_type_id"`
	Quantity       int       `json:"quantity"`
	Status         string    `json:"status"`
	UnitPriceCents int64     `json:"unit_price_cents"`
	Currency       string    `json:"currency"`
	ExpiresAt      time.Time `json:"expires_at"`
}

func (a *api) eventInput() map[string]any {
	return map[string]any{"name": "Night at the Opera", "venue": "Royal Albert Hall",
		"starts_at": a.clk.Now().Add(30 * 24 * time.Hour).Format(time.RFC3339)}
}

func (a *api) createEvent(t *testing.T) eventBody {
	t.Helper()
	var ev eventBody
	a.do(http.MethodPost, "/v1/events", a.organizer, a.eventInput()).Expect(t, http.StatusCreated, "").JSON(t, &ev)
	return ev
}

func ticketTypeInput(capacity int) map[string]any {
	return map[string]any{"name": "Stalls", "price_cents": 8900, "currency": "EUR", "capacity": capacity, "max_per_order": 4}
}

func (a *api) createTicketType(t *testing.T, eventID string, capacity int) ticketTypeBody {
	t.Helper()
	var tt ticketTypeBody
	a.do(http.MethodPost, "/v1/events/"+eventID+"/ticket-types", a.organizer, ticketTypeInput(capacity)).
		Expect(t, http.StatusCreated, "").JSON(t, &tt)
	return tt
}

func (a *api) getEvent(t *testing.T, id string) eventBody {
	t.Helper()
	var ev eventBody
	a.do(http.MethodGet, "/v1/events/"+id, user{}, nil).Expect(t, http.StatusOK, "").JSON(t, &ev)
	return ev
}

// availability reads a ticket type's figures, bypassing no cache.
func (a *api) availability(t *testing.T, eventID, ttID string) stockBody {
	t.Helper()
	var out struct {
		EventID     string      `json:"event_id"`
		TicketTypes []stockBody `json:"ticket_types"`
	}
	a.do(http.MethodGet, "/v1/events/"+eventID+"/availability", user{}, nil).Expect(t, http.StatusOK, "").JSON(t, &out)
	if out.EventID != eventID {
		t.Fatalf("availability of %s says event %s", eventID, out.EventID)
	}
	for _, s := range out.TicketTypes {
		if s.TicketTypeID == ttID {
			return s
		}
	}
	t.Fatalf("no availability for %s: %+v", ttID, out)
	return stockBody{}
}

func (a *api) wantAvailability(t *testing.T, eventID, ttID string, sold, held, available int) {
	t.Helper()
	s := a.availability(t, eventID, ttID)
	if s.Sold != sold || s.Held != held || s.Available != available || s.Capacity-s.Sold-s.Held != s.Available {
		t.Fatalf("availability %+v; want sold %d held %d available %d", s, sold, held, available)
	}
}

func (a *api) hold(u user, ttID string, quantity any, key string) *apitest.Response {
	req := apitest.Request{Method: http.MethodPost, Path: "/v1/holds", Token: u.token,
		Body: map[string]any{"ticket_type_id": ttID, "quantity": quantity}}
	if key != "" {
		req.Header = map[string]string{"Idempotency-Key": key}
	}
	return a.srv.Do(req)
}

func TestHTTPEvents(t *testing.T) {
	t.Parallel()
	forEachAPI(t, nil, func(t *testing.T, a *api) {
		r := a.do(http.MethodPost, "/v1/events", a.organizer, a.eventInput()).Expect(t, http.StatusCreated, "")
		var ev eventBody
		r.JSON(t, &ev)
		if r.Header.Get("Location") != "/v1/events/"+ev.ID || ev.OrganizerID != a.organizer.id.String() ||
			ev.Name != "Night at the Opera" || ev.Venue != "Royal Albert Hall" {
			t.Fatalf("created %+v at %q", ev, r.Header.Get("Location"))
		}

		// Who may create.
		a.do(http.MethodPost, "/v1/events", a.customer, a.eventInput()).Expect(t, http.StatusForbidden, "/forbidden")
		a.do(http.MethodPost, "/v1/events", a.staff, a.eventInput()).Expect(t, http.StatusForbidden, "/forbidden")
		r = a.do(http.MethodPost, "/v1/events", user{}, a.eventInput()).Expect(t, http.StatusUnauthorized, "/invalid-token")
		if !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Fatalf("401 without WWW-Authenticate")
		}
		a.do(http.MethodPost, "/v1/events", user{token: "not-a-token"}, a.eventInput()).Expect(t, http.StatusUnauthorized, "")

		// Bad bodies.
		with := func(k string, v any) map[string]any {
			m := a.eventInput()
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
			return m
		}
		for _, c := range []struct {
			name string
			body any
		}{
			{"empty name", with("name", "")},
			{"blank name", with("name", "   ")},
			{"long name", with("name", strings.Repeat("n", 201))},
			{"no venue", with("venue", nil)},
			{"starts in the past", with("starts_at", a.clk.Now().Add(-time.Hour).Format(time.RFC3339))},
			{"starts_at not a date", with("starts_at", "tomorrow")},
			{"unknown field", with("capacity", 10)},
			{"name a number", with("name", 5)},
		} {
			a.do(http.MethodPost, "/v1/events", a.organizer, c.body).Expect(t, http.StatusUnprocessableEntity, "/validation")
		}
		a.do(http.MethodPost, "/v1/events", a.organizer, "{not json").Expect(t, http.StatusBadRequest, "")

		// Read it back.
		got := a.getEvent(t, ev.ID)
		if got.ID != ev.ID || got.Name != ev.Name || got.TicketTypes == nil || len(got.TicketTypes) != 0 {
			t.Fatalf("get event: %+v", got)
		}
		a.do(http.MethodGet, "/v1/events/"+uuid.NewString(), user{}, nil).Expect(t, http.StatusNotFound, "/event-not-found")
		a.do(http.MethodGet, "/v1/events/not-an-id", user{}, nil).Expect(t, http.StatusBadRequest, "")

		// Changes: owner only, with at least one valid field.
		path := "/v1/events/" + ev.ID
		a.do(http.MethodPatch, path, a.organizer2, map[string]any{"name": "Stolen"}).Expect(t, http.StatusForbidden, "/not-event-owner")
		a.do(http.MethodPatch, path, a.customer, map[string]any{"name": "Stolen"}).Expect(t, http.StatusForbidden, "/forbidden")
		a.do(http.MethodPatch, path, user{}, map[string]any{"name": "Stolen"}).Expect(t, http.StatusUnauthorized, "")
		a.do(http.MethodPatch, path, a.organizer, map[string]any{}).Expect(t, http.StatusUnprocessableEntity, "/validation")
		a.do(http.MethodPatch, path, a.organizer, map[string]any{"name": ""}).Expect(t, http.StatusUnprocessableEntity, "/validation")
		a.do(http.MethodPatch, path, a.organizer, map[string]any{"venue": 7}).Expect(t, http.StatusUnprocessableEntity, "/validation")
		a.do(http.MethodPatch, path, a.organizer, map[string]any{"organizer_id": a.organizer2.id}).Expect(t, http.StatusUnprocessableEntity, "/validation")
		a.do(http.MethodPatch, path, a.organizer, map[string]any{"starts_at": a.clk.Now().Add(-time.Hour).Format(time.RFC3339)}).
			Expect(t, http.StatusUnprocessableEntity, "/validation")
		a.do(http.MethodPatch, "/v1/events/"+uuid.NewString(), a.organizer, map[string]any{"name": "X"}).Expect(t, http.StatusNotFound, "/event-not-found")
		a.do(http.MethodPatch, "/v1/events/12345", a.organizer, map[string]any{"name": "X"}).Expect(t, http.StatusBadRequest, "")
		if got := a.getEvent(t, ev.ID); got.Name != ev.Name || got.Venue != ev.Venue || !got.StartsAt.Equal(ev.StartsAt) {
			t.Fatalf("refused changes changed the event: %+v", got)
		}

		var up eventBody
		a.do(http.MethodPatch, path, a.organizer, map[string]any{"name": "A Night at the Opera", "description": "Encore"}).
			Expect(t, http.StatusOK, "").JSON(t, &up)
		if up.Name != "A Night at the Opera" || up.Description != "Encore" || up.Venue != ev.Venue {
			t.Fatalf("patched %+v", up)
		}
		if got := a.getEvent(t, ev.ID); got.Name != "A Night at the Opera" {
			t.Fatalf("get after patch: %+v", got)
		}
	})
}

func TestHTTPListEvents(t *testing.T) {
	t.Parallel()
	forEachAPI(t, nil, func(t *testing.T, a *api) {
		made := map[string]bool{}
		for range 5 {
			made[a.createEvent(t).ID] = true
		}
		type page struct {
			Items      []eventBody `json:"items"`
			NextCursor string      `json:"next_cursor"`
		}
		seen := map[string]bool{}
		path := "/v1/events?limit=2"
		var sizes []int
		for range 10 {
			var p page
			a.do(http.MethodGet, path, user{}, nil).Expect(t, http.StatusOK, "").JSON(t, &p)
			sizes = append(sizes, len(p.Items))
			for _, e := range p.Items {
				if seen[e.ID] || !made[e.ID] {
					t.Fatalf("event %s listed twice or never made", e.ID)
				}
				seen[e.ID] = true
			}
			if p.NextCursor == "" {
				break
			}
			path = "/v1/events?limit=2&cursor=" + p.NextCursor
		}
		if fmt.Sprint(sizes) != "[2 2 1]" || len(seen) != 5 {
			t.Fatalf("pages of %v, %d events", sizes, len(seen))
		}
		var all page
		a.do(http.MethodGet, "/v1/events", user{}, nil).Expect(t, http.StatusOK, "").JSON(t, &all)
		if len(all.Items) != 5 || all.NextCursor != "" {
			t.Fatalf("default page: %d items, cursor %q", len(all.Items), all.NextCursor)
		}
		for _, q := range []string{"limit=0", "limit=101", "limit=-1", "limit=abc", "cursor=not-a-cursor", "cursor=" + strings.Repeat("A", 201)} {
			a.do(http.MethodGet, "/v1/events?"+q, user{}, nil).Expect(t, http.StatusBadRequest, "")
		}
		a.do(http.MethodGet, "/v1/events?limit=100", user{}, nil).Expect(t, http.StatusOK, "")
	})
}

func TestHTTPTicketTypes(t *testing.T) {
	t.Parallel()
	forEachAPI(t, nil, func(t *testing.T, a *api) {
		ev := a.createEvent(t)
		path := "/v1/events/" + ev.ID + "/ticket-types"
		tt := a.createTicketType(t, ev.ID, 100)
		if tt.EventID != ev.ID || tt.Capacity != 100 || tt.Currency != "EUR" || tt.PriceCents != 8900 || tt.MaxPerOrder != 4 {
			t.Fatalf("created %+v", tt)
		}
		got := a.getEvent(t, ev.ID)
		if len(got.TicketTypes) != 1 || got.TicketTypes[0].ID != tt.ID || got.TicketTypes[0].Availability == nil ||
			*got.TicketTypes[0].Availability != (stockBody{TicketTypeID: tt.ID, Capacity: 100, Available: 100}) {
			t.Fatalf("event with its ticket type: %+v", got.TicketTypes)
		}

		with := func(k string, v any) map[string]any {
			m := ticketTypeInput(10)
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
			return m
		}
		start := a.clk.Now().Add(time.Hour)
		for _, c := range []struct {
			name string
			body map[string]any
		}{
			{"negative price", with("price_cents", -1)},
			{"negative capacity", with("capacity", -1)},
			{"capacity 0", with("capacity", 0)},
			{"max_per_order 0", with("max_per_order", 0)},
			{"max_per_order 51", with("max_per_order", 51)},
			{"currency EURO", with("currency", "EURO")},
			{"currency eur", with("currency", "eur")},
			{"currency XXY", with("currency", "XXY")},
			{"unknown field", with("sold", 5)},
			{"price as a string", with("price_cents", "8900")},
			{"fractional capacity", with("capacity", 1.5)},
			{"name a number", with("name", 5)},
			{"no currency", with("currency", nil)},
			{"sales end before start", func() map[string]any {
				m := with("sales_start", start.Format(time.RFC3339))
				m["sales_end"] = start.Add(-time.Minute).Format(time.RFC3339)
				return m
			}()},
		} {
			a.do(http.MethodPost, path, a.organizer, c.body).Expect(t, http.StatusUnprocessableEntity, "/validation")
		}
		a.do(http.MethodPost, path, a.customer, ticketTypeInput(10)).Expect(t, http.StatusForbidden, "/forbidden")
		a.do(http.MethodPost, path, a.organizer2, ticketTypeInput(10)).Expect(t, http.StatusForbidden, "/not-event-owner")
		a.do(http.MethodPost, path, user{}, ticketTypeInput(10)).Expect(t, http.StatusUnauthorized, "")
		a.do(http.MethodPost, "/v1/events/"+uuid.NewString()+"/ticket-types", a.organizer, ticketTypeInput(10)).
			Expect(t, http.StatusNotFound, "/event-not-found")
		if got := a.getEvent(t, ev.ID); len(got.TicketTypes) != 1 {
			t.Fatalf("refused ticket types were created: %+v", got.TicketTypes)
		}

		// Capacity: lowered only down to sold plus held.
		a.hold(a.customer, tt.ID, 3, "").Expect(t, http.StatusCreated, "")
		ttPath := path + "/" + tt.ID
		a.do(http.MethodPatch, ttPath, a.organizer, map[string]any{"capacity": 2}).Expect(t, http.StatusConflict, "/capacity-below-committed")
		a.do(http.MethodPatch, ttPath, a.organizer, map[string]any{"capacity": -2}).Expect(t, http.StatusUnprocessableEntity, "/validation")
		a.do(http.MethodPatch, ttPath, a.organizer2, map[string]any{"capacity": 200}).Expect(t, http.StatusForbidden, "/not-event-owner")
		a.wantAvailability(t, ev.ID, tt.ID, 0, 3, 97)
		var up ticketTypeBody
		a.do(http.MethodPatch, ttPath, a.organizer, map[string]any{"capacity": 3}).Expect(t, http.StatusOK, "").JSON(t, &up)
		if up.Capacity != 3 {
			t.Fatalf("patched %+v", up)
		}
		a.wantAvailability(t, ev.ID, tt.ID, 0, 3, 0)
	})
}

func TestHTTPAvailabilityCache(t *testing.T) {
	t.Parallel()
	forEachAPI(t, func(c *inventory.Config) { c.AvailabilityTTL = time.Second }, func(t *testing.T, a *api) {
		ev := a.createEvent(t)
		tt := a.createTicketType(t, ev.ID, 10)
		path := "/v1/events/" + ev.ID + "/availability"
		r := a.do(http.MethodGet, path, user{}, nil).Expect(t, http.StatusOK, "")
		etag := r.Header.Get("ETag")
		if cc := r.Header.Get("Cache-Control"); cc != "public, max-age=1" || etag == "" {
			t.Fatalf("Cache-Control %q, ETag %q", cc, etag)
		}
		for _, match := range []string{etag, "W/" + etag, `"other", ` + etag, "*"} {
			r := a.srv.Do(apitest.Request{Method: http.MethodGet, Path: path, Header: map[string]string{"If-None-Match": match}})
			r.Expect(t, http.StatusNotModified, "")
			if r.Header.Get("ETag") != etag || len(r.Body) != 0 {
				t.Fatalf("304 with ETag %q and body %q", r.Header.Get("ETag"), r.Body)
			}
		}
		a.srv.Do(apitest.Request{Method: http.MethodGet, Path: path, Header: map[string]string{"If-None-Match": `"other"`}}).
			Expect(t, http.StatusOK, "")
		if cc := a.do(http.MethodGet, "/v1/events/"+ev.ID, user{}, nil).Header.Get("Cache-Control"); cc != "public, max-age=1" {
			t.Fatalf("event Cache-Control %q", cc)
		}
		if s := a.availability(t, ev.ID, tt.ID); s.Capacity != 10 || s.Available != 10 {
			t.Fatalf("availability %+v", s)
		}
		a.do(http.MethodGet, "/v1/events/"+uuid.NewString()+"/availability", user{}, nil).Expect(t, http.StatusNotFound, "/event-not-found")
		a.do(http.MethodGet, "/v1/events/nope/availability", user{}, nil).Expect(t, http.StatusBadRequest, "")
	})
}

func TestHTTPAvailabilityChanges(t *testing.T) {
	t.Parallel()
	forEachAPI(t, func(c *inventory.Config) { c.AvailabilityTTL = 20 * time.Millisecond }, func(t *testing.T, a *api) {
		ev := a.createEvent(t)
		tt := a.createTicketType(t, ev.ID, 10)
		path := "/v1/events/" + ev.ID + "/availability"
		etag := a.do(http.MethodGet, path, user{}, nil).Expect(t, http.StatusOK, "").Header.Get("ETag")
		a.hold(a.customer, tt.ID, 2, "").Expect(t, http.StatusCreated, "")
		var last *apitest.Response
		testenv.Eventually(t, 2*time.Second, func() bool {
			last = a.srv.Do(apitest.Request{Method: http.MethodGet, Path: path, Header: map[string]string{"If-None-Match": etag}})
			return last.Status == http.StatusOK
		}, "availability still 304 after a hold")
		if n := last.Header.Get("ETag"); n == "" || n == etag {
			t.Fatalf("ETag %q after a hold, was %q", n, etag)
		}
		a.wantAvailability(t, ev.ID, tt.ID, 0, 2, 8)
	})
}

func TestHTTPHolds(t *testing.T) {
	t.Parallel()
	forEachAPI(t, nil, func(t *testing.T, a *api) {
		ev := a.createEvent(t)
		tt := a.createTicketType(t, ev.ID, 10)

		r := a.hold(a.customer, tt.ID, 2, "").Expect(t, http.StatusCreated, "")
		var h holdBody
		r.JSON(t, &h)
		if h.TicketTypeID != tt.ID || h.Quantity != 2 || h.Status != "active" || h.UnitPriceCents != 8900 || h.Currency != "EUR" ||
			!h.ExpiresAt.Equal(a.clk.Now().Add(a.cfg.HoldTTL)) || r.Header.Get("Location") != "/v1/holds/"+h.ID {
			t.Fatalf("hold %+v at %q", h, r.Header.Get("Location"))
		}
		a.wantAvailability(t, ev.ID, tt.ID, 0, 2, 8)

		// Bad quantities: a clear 422, and nothing held.
		for _, q := range []any{0, -1, 1.5, "two", 9999999999999, 5, 51, nil, true} {
			a.hold(a.customer, tt.ID, q, "").Expect(t, http.StatusUnprocessableEntity, "")
		}
		a.srv.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/holds", Token: a.customer.token,
			Body: `{"ticket_type_id":"` + tt.ID + `","quantity":1e400}`}).Expect(t, http.StatusUnprocessableEntity, "/validation")
		a.wantAvailability(t, ev.ID, tt.ID, 0, 2, 8)
		a.hold(a.customer, tt.ID, 5, "").Expect(t, http.StatusUnprocessableEntity, "/over-order-limit")

		// Bad ticket types.
		a.hold(a.customer, uuid.NewString(), 1, "").Expect(t, http.StatusNotFound, "/ticket-type-not-found")
		a.hold(a.customer, "not-a-uuid", 1, "").Expect(t, http.StatusUnprocessableEntity, "/validation")
		a.hold(a.customer, "", 1, "").Expect(t, http.StatusUnprocessableEntity, "/validation")

		// Who may hold.
		a.hold(user{}, tt.ID, 1, "").Expect(t, http.StatusUnauthorized, "")
		a.hold(a.organizer, tt.ID, 1, "").Expect(t, http.StatusForbidden, "/forbidden")
		a.wantAvailability(t, ev.ID, tt.ID, 0, 2, 8)

		// Idempotency-Key.
		var first, replay holdBody
		a.hold(a.customer, tt.ID, 1, "retry-me").Expect(t, http.StatusCreated, "").JSON(t, &first)
		r = a.hold(a.customer, tt.ID, 1, "retry-me").Expect(t, http.StatusOK, "")
		r.JSON(t, &replay)
		if replay.ID != first.ID || r.Header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay %+v with Idempotent-Replayed %q, first %+v", replay, r.Header.Get("Idempotent-Replayed"), first)
		}
		a.hold(a.customer, tt.ID, 2, "retry-me").Expect(t, http.StatusUnprocessableEntity, "/idempotency-key-reused")
		a.srv.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/holds", Token: a.customer.token,
			Body: map[string]any{"ticket_type_id": tt.ID, "quantity": 1}, Header: map[string]string{"Idempotency-Key": "bad key\t"}}).
			Expect(t, http.StatusBadRequest, "")
		a.wantAvailability(t, ev.ID, tt.ID, 0, 3, 7)

		// Someone else's hold is not found, and stays as it was.
		holdPath := "/v1/holds/" + h.ID
		a.do(http.MethodGet, holdPath, a.customer2, nil).Expect(t, http.StatusNotFound, "/hold-not-found")
		a.do(http.MethodDelete, holdPath, a.customer2, nil).Expect(t, http.StatusNotFound, "/hold-not-found")
		var mine holdBody
		a.do(http.MethodGet, holdPath, a.customer, nil).Expect(t, http.StatusOK, "").JSON(t, &mine)
		if mine.ID != h.ID || mine.Status != "active" {
			t.Fatalf("own hold after someone tried to release it: %+v", mine)
		}
		a.wantAvailability(t, ev.ID, tt.ID, 0, 3, 7)
		a.do(http.MethodGet, holdPath, user{}, nil).Expect(t, http.StatusUnauthorized, "")

		// Ids.
		for _, bad := range []string{"abc", strings.Repeat("A", 42), strings.Repeat("A", 43) + "!"} {
			a.do(http.MethodGet, "/v1/holds/"+bad, a.customer, nil).Expect(t, http.StatusBadRequest, "")
			a.do(http.MethodDelete, "/v1/holds/"+bad, a.customer, nil).Expect(t, http.StatusBadRequest, "")
		}
		unknown := "/v1/holds/" + inventory.NewHoldID(uuid.MustParse(tt.ID))
		a.do(http.MethodGet, unknown, a.customer, nil).Expect(t, http.StatusNotFound, "/hold-not-found")
		a.do(http.MethodDelete, unknown, a.customer, nil).Expect(t, http.StatusNotFound, "/hold-not-found")
		a.do(http.MethodGet, "/v1/holds/"+strings.Repeat("A", 43), a.customer, nil).Expect(t, http.StatusNotFound, "/hold-not-found")

		// Releasing gives the tickets back at once.
		a.do(http.MethodDelete, holdPath, a.customer, nil).Expect(t, http.StatusNoContent, "")
		a.wantAvailability(t, ev.ID, tt.ID, 0, 1, 9)
		a.do(http.MethodGet, holdPath, a.customer, nil).Expect(t, http.StatusOK, "").JSON(t, &mine)
		if mine.Status != "released" {
			t.Fatalf("released hold reads %+v", mine)
		}
		a.do(http.MethodDelete, holdPath, a.customer, nil).Expect(t, http.StatusNoContent, "")
		a.wantAvailability(t, ev.ID, tt.ID, 0, 1, 9)

		// Sold out: 409 saying how many are left.
		for range 2 {
			a.hold(a.customer2, tt.ID, 4, "").Expect(t, http.StatusCreated, "")
		}
		r = a.hold(a.customer, tt.ID, 2, "").Expect(t, http.StatusConflict, "/sold-out")
		var so struct {
			Available any `json:"available"`
		}
		r.JSON(t, &so)
		if n, ok := so.Available.(float64); !ok || n != 1 || strings.Contains(string(r.Body), `"available":1.`) {
			t.Fatalf("sold out says available %#v: %s", so.Available, r.Body)
		}
		a.hold(a.customer, tt.ID, 1, "").Expect(t, http.StatusCreated, "")
		a.wantAvailability(t, ev.ID, tt.ID, 0, 10, 0)
		r = a.hold(a.customer, tt.ID, 1, "").Expect(t, http.StatusConflict, "/sold-out")
		if !strings.Contains(string(r.Body), `"available":0`) {
			t.Fatalf("sold out body %s", r.Body)
		}
	})
}

func TestHTTPHoldLimit(t *testing.T) {
	t.Parallel()
	forEachAPI(t, nil, func(t *testing.T, a *api) {
		ev := a.createEvent(t)
		tt := a.createTicketType(t, ev.ID, 100)
		for range a.cfg.MaxHoldsPerType {
			a.hold(a.customer, tt.ID, 1, "").Expect(t, http.StatusCreated, "")
			a.clk.Advance(time.Second)
		}
		r := a.hold(a.customer, tt.ID, 1, "").Expect(t, http.StatusTooManyRequests, "/too-many-holds")
		// The first hold expires 2 minutes after it was made, 4 seconds ago.
		if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra != int((a.cfg.HoldTTL-4*time.Second)/time.Second) {
			t.Fatalf("Retry-After %q", r.Header.Get("Retry-After"))
		}
		a.wantAvailability(t, ev.ID, tt.ID, 0, 4, 96)
		a.hold(a.customer2, tt.ID, 1, "").Expect(t, http.StatusCreated, "")
		a.clk.Advance(a.cfg.HoldTTL - 4*time.Second)
		a.hold(a.customer, tt.ID, 1, "").Expect(t, http.StatusCreated, "")
	})
}

func TestHTTPControlCharactersRefused(t *testing.T) {
	t.Parallel()
	forEachAPI(t, nil, func(t *testing.T, a *api) {
		ev := a.createEvent(t)
		tt := a.createTicketType(t, ev.ID, 10)
		with := func(base map[string]any, k string, v any) map[string]any {
			m := map[string]any{}
			for k2, v2 := range base {
				m[k2] = v2
			}
			m[k] = v
			return m
		}
		for _, tc := range []struct {
			name, method, path, field string
			body                      map[string]any
		}{
			{"NUL in an event name", http.MethodPost, "/v1/events", "name", with(a.eventInput(), "name", "a\x00b")},
			{"escape in a venue", http.MethodPost, "/v1/events", "venue", with(a.eventInput(), "venue", "Hall\x1b[2J")},
			{"NUL in a description", http.MethodPost, "/v1/events", "description", with(a.eventInput(), "description", "line\x00")},
			{"NUL in a patched name", http.MethodPatch, "/v1/events/" + ev.ID, "name", map[string]any{"name": "x\x00"}},
			{"bell in a patched description", http.MethodPatch, "/v1/events/" + ev.ID, "description", map[string]any{"description": "ding\a"}},
			{"escape in a ticket type name", http.MethodPost, "/v1/events/" + ev.ID + "/ticket-types", "name", with(ticketTypeInput(5), "name", "GA\x1b[2J")},
			{"newline in a ticket type name", http.MethodPost, "/v1/events/" + ev.ID + "/ticket-types", "name", with(ticketTypeInput(5), "name", "GA\nVIP")},
			{"NUL in a patched ticket type name", http.MethodPatch, "/v1/events/" + ev.ID + "/ticket-types/" + tt.ID, "name", map[string]any{"name": "\x00"}},
		} {
			r := a.do(tc.method, tc.path, a.organizer, tc.body).Expect(t, http.StatusUnprocessableEntity, "/validation")
			var p struct {
				Errors []struct{ Field, Message string } `json:"errors"`
			}
			r.JSON(t, &p)
			if len(p.Errors) != 1 || p.Errors[0].Field != tc.field || !strings.Contains(p.Errors[0].Message, "control") {
				t.Fatalf("%s: field errors %+v, want one naming %s", tc.name, p.Errors, tc.field)
			}
		}
		// Descriptions are prose: tabs and line breaks are fine there.
		a.do(http.MethodPatch, "/v1/events/"+ev.ID, a.organizer, map[string]any{"description": "Doors 19:00\r\n\tBar opens 18:30\n"}).
			Expect(t, http.StatusOK, "")
		if got := a.getEvent(t, ev.ID); got.Name != "Night at the Opera" {
			t.Fatalf("a refused patch changed the name to %q", got.Name)
		}
	})
}

func TestHTTPHoldKeyBoundToRequest(t *testing.T) {
	t.Parallel()
	forEachAPI(t, nil, func(t *testing.T, a *api) {
		ev := a.createEvent(t)
		tt := a.createTicketType(t, ev.ID, 10)
		tt2 := a.createTicketType(t, ev.ID, 10)
		a.hold(a.customer, tt.ID, 1, "hold-k").Expect(t, http.StatusCreated, "")
		a.hold(a.customer, tt.ID, 1, "hold-k").Expect(t, http.StatusOK, "")
		a.hold(a.customer, tt.ID, 2, "hold-k").Expect(t, http.StatusUnprocessableEntity, "/idempotency-key-reused")
		a.hold(a.customer, tt2.ID, 1, "hold-k").Expect(t, http.StatusUnprocessableEntity, "/idempotency-key-reused")
		a.wantAvailability(t, ev.ID, tt.ID, 0, 1, 9)
		a.wantAvailability(t, ev.ID, tt2.ID, 0, 0, 10)
		// Another customer's key of the same name is theirs.
		a.hold(a.customer2, tt2.ID, 1, "hold-k").Expect(t, http.StatusCreated, "")
	})
}

func TestHTTPCheckedOutHoldCannotBeReleased(t *testing.T) {
	t.Parallel()
	forEachAPI(t, nil, func(t *testing.T, a *api) {
		ev := a.createEvent(t)
		tt := a.createTicketType(t, ev.ID, 10)
		var h holdBody
		a.hold(a.customer, tt.ID, 2, "").Expect(t, http.StatusCreated, "").JSON(t, &h)
		if _, err := a.mod.CheckoutHold(context.Background(), h.ID, uuid.New(), a.clk.Now().Add(10*time.Minute)); err != nil {
			t.Fatalf("checkout: %v", err)
		}
		a.do(http.MethodDelete, "/v1/holds/"+h.ID, a.customer, nil).Expect(t, http.StatusConflict, "/hold-ordered")
		a.wantAvailability(t, ev.ID, tt.ID, 0, 2, 8)
		var got holdBody
		a.do(http.MethodGet, "/v1/holds/"+h.ID, a.customer, nil).Expect(t, http.StatusOK, "").JSON(t, &got)
		if got.Status != "active" {
			t.Fatalf("after a refused release the hold is %s", got.Status)
		}
	})
}

func TestHTTPHoldsRateLimitedPerAddress(t *testing.T) {
	t.Parallel()
	forEachAPI(t, func(c *inventory.Config) { c.RateLimit, c.RateLimitBurst = 1, 5 }, func(t *testing.T, a *api) {
		ev := a.createEvent(t)
		tt := a.createTicketType(t, ev.ID, 100)
		var limited *apitest.Response
		for range 10 {
			r := a.hold(a.customer, tt.ID, 1, "")
			if r.Status == http.StatusTooManyRequests && strings.HasSuffix(r.ProblemType(), "/rate-limited") {
				limited = r
				break
			}
		}
		if limited == nil {
			t.Fatal("10 quick holds from one address with a burst of 5: none rate limited")
		}
		if limited.Header.Get("Retry-After") == "" || limited.Header.Get("RateLimit-Policy") != `"holds";q=5;w=5` {
			t.Fatalf("429 headers: Retry-After %q, RateLimit-Policy %q", limited.Header.Get("Retry-After"), limited.Header.Get("RateLimit-Policy"))
		}
		// Reads are not limited.
		a.availability(t, ev.ID, tt.ID)
	})
}

func TestHTTPOrganizerCreatesAreIdempotent(t *testing.T) {
	t.Parallel()
	forEachAPI(t, nil, func(t *testing.T, a *api) {
		post := func(path string, body any, key string) *apitest.Response {
			return a.srv.Do(apitest.Request{Method: http.MethodPost, Path: path, Token: a.organizer.token, Body: body,
				Header: map[string]string{"Idempotency-Key": key}})
		}
		in := a.eventInput()
		var first, again eventBody
		r := post("/v1/events", in, "ev-key").Expect(t, http.StatusCreated, "")
		r.JSON(t, &first)
		if r.Header.Get("Idempotent-Replayed") != "" {
			t.Fatal("a first request was marked replayed")
		}
		r = post("/v1/events", in, "ev-key").Expect(t, http.StatusOK, "")
		r.JSON(t, &again)
		if again.ID != first.ID || r.Header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("the retry made %s (replayed %q), want the first event %s", again.ID, r.Header.Get("Idempotent-Replayed"), first.ID)
		}
		other := a.eventInput()
		other["name"] = "Twice"
		post("/v1/events", other, "ev-key").Expect(t, http.StatusUnprocessableEntity, "/idempotency-key-reused")
		// Another organizer's key of the same name is theirs.
		var theirs eventBody
		a.srv.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/events", Token: a.organizer2.token, Body: in,
			Header: map[string]string{"Idempotency-Key": "ev-key"}}).Expect(t, http.StatusCreated, "").JSON(t, &theirs)
		if theirs.ID == first.ID {
			t.Fatal("two organizers share a key")
		}

		path := "/v1/events/" + first.ID + "/ticket-types"
		var tt, ttAgain ticketTypeBody
		post(path, ticketTypeInput(10), "tt-key").Expect(t, http.StatusCreated, "").JSON(t, &tt)
		r = post(path, ticketTypeInput(10), "tt-key").Expect(t, http.StatusOK, "")
		r.JSON(t, &ttAgain)
		if ttAgain.ID != tt.ID || r.Header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("the ticket type retry made %s, want %s", ttAgain.ID, tt.ID)
		}
		post(path, ticketTypeInput(11), "tt-key").Expect(t, http.StatusUnprocessableEntity, "/idempotency-key-reused")
		if got := a.getEvent(t, first.ID); len(got.TicketTypes) != 1 {
			t.Fatalf("%d ticket types after retries, want 1", len(got.TicketTypes))
		}
	})
}

func TestHTTPEventCancellationWindow(t *testing.T) {
	t.Parallel()
	forEachAPI(t, nil, func(t *testing.T, a *api) {
		in := a.eventInput()
		in["cancellation_cutoff_hours"] = 48
		var ev map[string]any
		a.do(http.MethodPost, "/v1/events", a.organizer, in).Expect(t, http.StatusCreated, "").JSON(t, &ev)
		if ev["cancellation_cutoff_hours"] != float64(48) || ev["status"] != "scheduled" {
			t.Fatalf("created %v", ev)
		}
		id := ev["id"].(string)
		for _, bad := range []any{-1, 8761, 1.5, "24h", true} {
			in := a.eventInput()
			in["cancellation_cutoff_hours"] = bad
			if r := a.do(http.MethodPost, "/v1/events", a.organizer, in); r.Status != http.StatusUnprocessableEntity && r.Status != http.StatusBadRequest {
				t.Fatalf("create with cutoff %v: %d %s", bad, r.Status, r.Body)
			}
			if r := a.do(http.MethodPatch, "/v1/events/"+id, a.organizer, map[string]any{"cancellation_cutoff_hours": bad}); r.Status != http.StatusUnprocessableEntity && r.Status != http.StatusBadRequest {
				t.Fatalf("patch with cutoff %v: %d %s", bad, r.Status, r.Body)
			}
		}
		// null: customers may no longer cancel; the other fields stay.
		a.do(http.MethodPatch, "/v1/events/"+id, a.organizer, map[string]any{"cancellation_cutoff_hours": nil}).Expect(t, http.StatusOK, "").JSON(t, &ev)
		if v, ok := ev["cancellation_cutoff_hours"]; !ok || v != nil || ev["name"] != "Night at the Opera" {
			t.Fatalf("after clearing the cutoff %v", ev)
		}
		a.do(http.MethodPatch, "/v1/events/"+id, a.organizer, map[string]any{"cancellation_cutoff_hours": 0}).Expect(t, http.StatusOK, "").JSON(t, &ev)
		if ev["cancellation_cutoff_hours"] != float64(0) {
			t.Fatalf("after a cutoff of 0 %v", ev)
		}
		got := a.getEvent(t, id)
		if got.ID != id {
			t.Fatalf("read %+v", got)
		}
	})
}
