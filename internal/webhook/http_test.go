package webhook_test

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/auth"
	"github.com/onsale-dev/onsale/internal/platform/apitest"
	"github.com/onsale-dev/onsale/internal/platform/clock"
	"github.com/onsale-dev/onsale/internal/platform/logging"
	"github.com/onsale-dev/onsale/internal/webhook"
	"github.com/onsale-dev/onsale/internal/webhook/memory"
)

// tokens is an auth.TokenChecker for tests: a token is the principal's user id.
type tokens struct {
	mu    sync.Mutex
	roles map[string]auth.Role
}

func (tk *tokens) user(role auth.Role) (token string, id uuid.UUID) {
	id = uuid.New()
	tk.mu.Lock()
	tk.roles[id.String()] = role
	tk.mu.Unlock()
	return id.String(), id
}

func (tk *tokens) Authenticate(_ context.Context, header string) (auth.Principal, error) {
	token, ok := strings.CutPrefix(header, "Bearer ")
	tk.mu.Lock()
	role, known := tk.roles[token]
	tk.mu.Unlock()
	if !ok || !known {
		return auth.Principal{}, auth.ErrInvalidToken
	}
	return auth.Principal{UserID: uuid.MustParse(token), Role: role, ExpiresAt: time.Now().Add(time.Hour)}, nil
}

// recorder is a Publisher that keeps what it is given.
type recorder struct{ events []webhook.Event }

func (r *recorder) Publish(_ context.Context, ev webhook.Event) error {
	r.events = append(r.events, ev)
	return nil
}

type httpEnv struct {
	srv   *apitest.Server
	store *memory.Store
	tk    *tokens
}

func newHTTPEnv(t *testing.T, allow ...netip.Prefix) *httpEnv {
	t.Helper()
	e := &httpEnv{store: memory.NewStore(), tk: &tokens{roles: map[string]auth.Role{}}}
	m := webhook.New(webhook.Deps{Store: e.store, Publisher: &recorder{}, Guard: webhook.NewGuard(allow),
		Resolver: net.DefaultResolver, Clock: clock.System{}, Log: logging.Discard()})
	e.srv = apitest.NewServer(t, nil, webhook.NewHandler(m, e.tk).Routes()...)
	return e
}

// doer returns a function making one request as the token's holder.
func (e *httpEnv) doer(t *testing.T) func(method, path, token string, body any) *apitest.Response {
	return func(method, path, token string, body any) *apitest.Response {
		t.Helper()
		return e.srv.Do(apitest.Request{Method: method, Path: path, Token: token, Body: body})
	}
}

type endpointBody struct {
	ID          string   `json:"id"`
	URL         string   `json:"url"`
	EventTypes  []string `json:"event_types"`
	Description string   `json:"description"`
	Secret      string   `json:"secret"`
}

func TestWebhookEndpointsOverHTTP(t *testing.T) {
	t.Parallel()
	e := newHTTPEnv(t)
	org, orgID := e.tk.user(auth.RoleOrganizer)
	do := e.doer(t)
	var created endpointBody
	do(http.MethodPost, "/v1/webhooks", org, map[string]any{
		"url": "https://93.184.215.14/hooks", "event_types": []string{"order.refunded", "order.confirmed"}, "description": "box office",
	}).Expect(t, http.StatusCreated, "").JSON(t, &created)
	if !strings.HasPrefix(created.Secret, "whsec_") || created.URL != "https://93.184.215.14/hooks" ||
		strings.Join(created.EventTypes, ",") != "order.confirmed,order.refunded" || created.Description != "box office" {
		t.Fatalf("created %+v", created)
	}
	if _, err := webhook.ParseSecret(created.Secret); err != nil {
		t.Fatalf("secret: %v", err)
	}
	for i := range 2 {
		do(http.MethodPost, "/v1/webhooks", org, map[string]any{
			"url": "https://93.184.215.14/more/" + string(rune('a'+i)), "event_types": []string{"event.cancelled"},
		}).Expect(t, http.StatusCreated, "")
	}

	// The secret is shown once: never by reads.
	got := do(http.MethodGet, "/v1/webhooks/"+created.ID, org, nil).Expect(t, http.StatusOK, "")
	if strings.Contains(string(got.Body), created.Secret) || strings.Contains(string(got.Body), "secret") {
		t.Fatalf("GET shows the secret: %s", got.Body)
	}
	var page struct {
		Items      []endpointBody `json:"items"`
		NextCursor string         `json:"next_cursor"`
	}
	list := do(http.MethodGet, "/v1/webhooks?limit=2", org, nil).Expect(t, http.StatusOK, "")
	list.JSON(t, &page)
	if len(page.Items) != 2 || page.NextCursor == "" || strings.Contains(string(list.Body), created.Secret) {
		t.Fatalf("first page %s", list.Body)
	}
	var rest struct {
		Items      []endpointBody `json:"items"`
		NextCursor string         `json:"next_cursor"`
	}
	do(http.MethodGet, "/v1/webhooks?limit=2&cursor="+page.NextCursor, org, nil).Expect(t, http.StatusOK, "").JSON(t, &rest)
	if len(rest.Items) != 1 || rest.Items[0].ID != created.ID || rest.NextCursor != "" {
		t.Fatalf("second page %+v, want the first endpoint", rest)
	}

	// Deliveries, with their attempts, and a resend.
	ev := webhook.Event{ID: "order.confirmed:" + uuid.NewString(), Type: webhook.TypeOrderConfirmed, OrganizerID: orgID,
		At: time.Now(), Data: []byte(`{"order_id":"x"}`)}
	if n, err := e.store.Enqueue(t.Context(), ev, time.Now()); err != nil || n != 1 {
		t.Fatalf("enqueue: %d, %v", n, err)
	}
	ds, _ := e.store.Deliveries(t.Context(), uuid.MustParse(created.ID), nil, 10)
	if _, err := e.store.Record(t.Context(), ds[0].ID, webhook.Outcome{Attempt: webhook.Attempt{At: time.Now(), StatusCode: 500,
		Latency: 42 * time.Millisecond, Error: "HTTP 500"}}); err != nil {
		t.Fatal(err)
	}
	var deliveries struct {
		Items []struct {
			ID       string `json:"id"`
			EventID  string `json:"event_id"`
			Status   string `json:"status"`
			Attempts []struct {
				StatusCode int    `json:"status_code"`
				LatencyMS  int64  `json:"latency_ms"`
				Error      string `json:"error"`
			} `json:"attempts"`
			Payload struct {
				Type string `json:"type"`
			} `json:"payload"`
		} `json:"items"`
	}
	do(http.MethodGet, "/v1/webhooks/"+created.ID+"/deliveries", org, nil).Expect(t, http.StatusOK, "").JSON(t, &deliveries)
	if len(deliveries.Items) != 1 {
		t.Fatalf("deliveries %+v", deliveries)
	}
	d := deliveries.Items[0]
	if d.EventID != ev.ID || d.Status != "dead" || len(d.Attempts) != 1 || d.Attempts[0].StatusCode != 500 ||
		d.Attempts[0].LatencyMS != 42 || d.Attempts[0].Error != "HTTP 500" || d.Payload.Type != ev.Type {
		t.Fatalf("delivery %+v", d)
	}
	var resent struct {
		Status string `json:"status"`
	}
	do(http.MethodPost, "/v1/webhooks/"+created.ID+"/deliveries/"+d.ID+"/resend", org, nil).Expect(t, http.StatusAccepted, "").JSON(t, &resent)
	if resent.Status != "pending" {
		t.Fatalf("resent delivery is %s, want pending", resent.Status)
	}

	// Only the organizer who registered it sees it.
	other, _ := e.tk.user(auth.RoleOrganizer)
	do(http.MethodGet, "/v1/webhooks/"+created.ID, other, nil).Expect(t, http.StatusNotFound, "webhook-not-found")
	do(http.MethodDelete, "/v1/webhooks/"+created.ID, other, nil).Expect(t, http.StatusNotFound, "webhook-not-found")
	do(http.MethodGet, "/v1/webhooks/"+created.ID+"/deliveries", other, nil).Expect(t, http.StatusNotFound, "webhook-not-found")
	do(http.MethodPost, "/v1/webhooks/"+created.ID+"/deliveries/"+d.ID+"/resend", other, nil).Expect(t, http.StatusNotFound, "webhook-not-found")
	var none struct {
		Items []endpointBody `json:"items"`
	}
	do(http.MethodGet, "/v1/webhooks", other, nil).Expect(t, http.StatusOK, "").JSON(t, &none)
	if len(none.Items) != 0 {
		t.Fatalf("another organizer lists %d endpoints", len(none.Items))
	}
	do(http.MethodPost, "/v1/webhooks/"+created.ID+"/deliveries/"+uuid.NewString()+"/resend", org, nil).
		Expect(t, http.StatusNotFound, "webhook-delivery-not-found")
	do(http.MethodGet, "/v1/webhooks/"+uuid.NewString(), org, nil).Expect(t, http.StatusNotFound, "webhook-not-found")
	do(http.MethodGet, "/v1/webhooks/not-an-id", org, nil).Expect(t, http.StatusBadRequest, "")
	do(http.MethodGet, "/v1/webhooks?cursor=bogus", org, nil).Expect(t, http.StatusBadRequest, "")

	do(http.MethodDelete, "/v1/webhooks/"+created.ID, org, nil).Expect(t, http.StatusNoContent, "")
	do(http.MethodGet, "/v1/webhooks/"+created.ID, org, nil).Expect(t, http.StatusNotFound, "webhook-not-found")
}

func TestWebhookRegistrationRefusals(t *testing.T) {
	t.Parallel()
	e := newHTTPEnv(t)
	org, _ := e.tk.user(auth.RoleOrganizer)
	customer, _ := e.tk.user(auth.RoleCustomer)
	good := map[string]any{"url": "https://93.184.215.14/hooks", "event_types": []string{"order.confirmed"}}
	post := func(token string, body any) *apitest.Response {
		t.Helper()
		return e.srv.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/webhooks", Token: token, Body: body})
	}
	post("", good).Expect(t, http.StatusUnauthorized, "")
	post(customer, good).Expect(t, http.StatusForbidden, "forbidden")
	e.srv.Do(apitest.Request{Method: http.MethodGet, Path: "/v1/webhooks", Token: customer}).Expect(t, http.StatusForbidden, "forbidden")
	e.srv.Do(apitest.Request{Method: http.MethodGet, Path: "/v1/webhooks"}).Expect(t, http.StatusUnauthorized, "")
	for _, tc := range []struct {
		name   string
		body   map[string]any
		status int
		typ    string
	}{
		{"relative URL", map[string]any{"url": "/hooks", "event_types": []string{"order.confirmed"}}, 422, "validation"},
		{"ftp URL", map[string]any{"url": "ftp://93.184.215.14/x", "event_types": []string{"order.confirmed"}}, 422, "validation"},
		{"credentials", map[string]any{"url": "https://user:pw@93.184.215.14/x", "event_types": []string{"order.confirmed"}}, 422, "validation"},
		{"too long", map[string]any{"url": "https://93.184.215.14/" + strings.Repeat("a", 2000), "event_types": []string{"order.confirmed"}}, 422, "validation"},
		{"unknown event type", map[string]any{"url": "https://93.184.215.14/x", "event_types": []string{"order.lost"}}, 422, "validation"},
		{"no event type", map[string]any{"url": "https://93.184.215.14/x", "event_types": []string{}}, 422, "validation"},
		{"loopback", map[string]any{"url": "http://127.0.0.1:9000/hook", "event_types": []string{"order.confirmed"}}, 422, "webhook-url-not-allowed"},
		{"localhost", map[string]any{"url": "http://localhost:9000/hook", "event_types": []string{"order.confirmed"}}, 422, "webhook-url-not-allowed"},
		{"metadata", map[string]any{"url": "http://169.254.169.254/latest/meta-data/", "event_types": []string{"order.confirmed"}}, 422, "webhook-url-not-allowed"},
		{"private", map[string]any{"url": "https://10.0.0.8/hook", "event_types": []string{"order.confirmed"}}, 422, "webhook-url-not-allowed"},
	} {
		r := post(org, tc.body)
		if r.Status != tc.status || !strings.HasSuffix(r.ProblemType(), "/"+tc.typ) {
			t.Errorf("%s: %d %s, want %d %s", tc.name, r.Status, r.ProblemType(), tc.status, tc.typ)
		}
	}
	var page struct {
		Items []endpointBody `json:"items"`
	}
	e.srv.Do(apitest.Request{Method: http.MethodGet, Path: "/v1/webhooks", Token: org}).Expect(t, http.StatusOK, "").JSON(t, &page)
	if len(page.Items) != 0 {
		t.Fatalf("refused registrations left %d endpoints", len(page.Items))
	}

	// With the operator's allowance, loopback is accepted; the metadata address still is not.
	allowed := newHTTPEnv(t, netip.MustParsePrefix("127.0.0.0/8"))
	org2, _ := allowed.tk.user(auth.RoleOrganizer)
	allowed.srv.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/webhooks", Token: org2,
		Body: map[string]any{"url": "http://127.0.0.1:9000/hook", "event_types": webhook.EventTypes()}}).Expect(t, http.StatusCreated, "")
	allowed.srv.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/webhooks", Token: org2,
		Body: map[string]any{"url": "http://169.254.169.254/", "event_types": []string{"order.confirmed"}}}).
		Expect(t, http.StatusUnprocessableEntity, "webhook-url-not-allowed")
}

func TestWebhookChangesOverHTTP(t *testing.T) {
	t.Parallel()
	e := newHTTPEnv(t)
	org, _ := e.tk.user(auth.RoleOrganizer)
	do := e.doer(t)
	var created endpointBody
	do(http.MethodPost, "/v1/webhooks", org, map[string]any{
		"url": "https://93.184.215.14/hooks", "event_types": []string{"order.confirmed"}, "description": "box office",
	}).Expect(t, http.StatusCreated, "").JSON(t, &created)
	path := "/v1/webhooks/" + created.ID

	type changed struct {
		endpointBody
		Disabled bool `json:"disabled"`
	}
	var got changed
	r := do(http.MethodPatch, path, org, map[string]any{"disabled": true}).Expect(t, http.StatusOK, "")
	r.JSON(t, &got)
	if !got.Disabled || got.URL != created.URL || got.Description != "box office" || strings.Contains(string(r.Body), "secret") {
		t.Fatalf("after disabling: %s", r.Body)
	}
	do(http.MethodPatch, path, org, map[string]any{
		"url": "https://93.184.215.15/moved", "event_types": []string{"event.cancelled", "order.refunded", "event.cancelled"},
		"description": "", "disabled": false,
	}).Expect(t, http.StatusOK, "").JSON(t, &got)
	if got.Disabled || got.URL != "https://93.184.215.15/moved" || got.Description != "" ||
		strings.Join(got.EventTypes, ",") != "order.refunded,event.cancelled" {
		t.Fatalf("after a change of every field: %+v", got)
	}
	var read changed
	do(http.MethodGet, path, org, nil).Expect(t, http.StatusOK, "").JSON(t, &read)
	if read.URL != got.URL || strings.Join(read.EventTypes, ",") != "order.refunded,event.cancelled" || read.Disabled {
		t.Fatalf("read back %+v, want %+v", read, got)
	}

	// Refusals leave the endpoint as it was.
	customer, _ := e.tk.user(auth.RoleCustomer)
	other, _ := e.tk.user(auth.RoleOrganizer)
	for _, tc := range []struct {
		name   string
		token  string
		path   string
		body   any
		status int
		typ    string
	}{
		{"no token", "", path, map[string]any{"disabled": true}, 401, "invalid-token"},
		{"a customer", customer, path, map[string]any{"disabled": true}, 403, "forbidden"},
		{"another organizer's", other, path, map[string]any{"disabled": true}, 404, "webhook-not-found"},
		{"unknown endpoint", org, "/v1/webhooks/" + uuid.NewString(), map[string]any{"disabled": true}, 404, "webhook-not-found"},
		{"nothing to change", org, path, map[string]any{}, 422, "validation"},
		{"unknown field", org, path, map[string]any{"secret": "whsec_eA=="}, 422, "validation"},
		{"unknown event type", org, path, map[string]any{"event_types": []string{"order.lost"}}, 422, "validation"},
		{"no event type", org, path, map[string]any{"event_types": []string{}}, 422, "validation"},
		{"null event types", org, path, map[string]any{"event_types": nil}, 422, "validation"},
		{"relative URL", org, path, map[string]any{"url": "/hooks"}, 422, "validation"},
		{"private URL", org, path, map[string]any{"url": "https://10.0.0.8/hook"}, 422, "webhook-url-not-allowed"},
		{"metadata URL", org, path, map[string]any{"url": "http://169.254.169.254/"}, 422, "webhook-url-not-allowed"},
	} {
		r := do(http.MethodPatch, tc.path, tc.token, tc.body)
		if r.Status != tc.status || !strings.HasSuffix(r.ProblemType(), "/"+tc.typ) {
			t.Errorf("%s: %d %s, want %d %s", tc.name, r.Status, r.ProblemType(), tc.status, tc.typ)
		}
	}
	do(http.MethodGet, path, org, nil).Expect(t, http.StatusOK, "").JSON(t, &read)
	if read.URL != got.URL || strings.Join(read.EventTypes, ",") != "order.refunded,event.cancelled" || read.Disabled {
		t.Fatalf("after the refusals %+v, want %+v", read, got)
	}

	// A rotation shows the new secret once, and when the previous one stops signing.
	before := time.Now()
	var rotated struct {
		endpointBody
		PreviousSecretExpiresAt time.Time `json:"previous_secret_expires_at"`
	}
	do(http.MethodPost, path+"/rotate-secret", org, nil).Expect(t, http.StatusOK, "").JSON(t, &rotated)
	if _, err := webhook.ParseSecret(rotated.Secret); err != nil || rotated.Secret == created.Secret {
		t.Fatalf("rotated secret %q (%v), want a new one", rotated.Secret, err)
	}
	if d := rotated.PreviousSecretExpiresAt.Sub(before); d < webhook.RotationOverlap-time.Minute || d > webhook.RotationOverlap+time.Minute {
		t.Fatalf("previous secret expires %s after the rotation, want %s", d, webhook.RotationOverlap)
	}
	r = do(http.MethodGet, path, org, nil).Expect(t, http.StatusOK, "")
	if strings.Contains(string(r.Body), rotated.Secret) || !strings.Contains(string(r.Body), "previous_secret_expires_at") {
		t.Fatalf("GET after a rotation: %s; want no secret and the previous one's expiry", r.Body)
	}
	do(http.MethodPost, path+"/rotate-secret", other, nil).Expect(t, http.StatusNotFound, "webhook-not-found")
	do(http.MethodPost, path+"/rotate-secret", customer, nil).Expect(t, http.StatusForbidden, "forbidden")
	do(http.MethodPost, "/v1/webhooks/"+uuid.NewString()+"/rotate-secret", org, nil).Expect(t, http.StatusNotFound, "webhook-not-found")
}
