package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/app"
	"github.com/onsale-dev/onsale/internal/auth/authtest"
)

// answer is a public API answer as a client sees it.
type answer struct {
	status     int
	problem    string // the problem type, if any
	retryAfter string
	challenge  string // WWW-Authenticate
	body       string
}

// request sends body (nil for none) as JSON.
func request(t *testing.T, method, url, token string, body any, headers map[string]string) answer {
	t.Helper()
	var in io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		in = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, url, in)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	var doc struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(out, &doc)
	return answer{status: resp.StatusCode, problem: doc.Type, retryAfter: resp.Header.Get("Retry-After"),
		challenge: resp.Header.Get("WWW-Authenticate"), body: string(out)}
}

// wantOutage: the answer is a 503 that asks the client to retry, not a verdict on its token.
func wantOutage(t *testing.T, name string, a answer) {
	t.Helper()
	if a.status != http.StatusServiceUnavailable || a.problem != "https://onsale.dev/problems/unavailable" || a.retryAfter == "" || a.challenge != "" {
		t.Errorf("%s: %d (Retry-After %q, WWW-Authenticate %q) %s; want 503 unavailable with Retry-After", name, a.status, a.retryAfter, a.challenge, a.body)
	}
}

// login makes a customer on the auth module and returns an access token.
func login(t *testing.T, p *app.Process) string {
	t.Helper()
	return sessionFixture{p.Auth.Service}.Login(t)
}

// TestTokensWhenAuthKeysCannotBeFetched: a process without auth that cannot fetch auth's public
// keys (auth refuses its internal secret, or auth is down) cannot judge a valid token, and says so
// with a 503 to retry; it never answers invalid-token, which makes clients throw the token away.
// A token it can judge without the keys is still refused.
func TestTokensWhenAuthKeysCannotBeFetched(t *testing.T) {
	t.Parallel()
	file, _ := secret(t)
	otherFile, _ := secret(t)
	a := startProcess(t, "auth", file, nil)
	remote := map[string]string{"ONSALE_AUTH_URL": "http://" + a.InternalAddr(), "ONSALE_INVENTORY_URL": "http://" + a.InternalAddr()}
	tok := login(t, a)

	// A payment process whose internal secret is not auth's.
	mismatched := startProcess(t, "payment", otherFile, remote)
	wantOutage(t, "a valid token, secrets mismatched", request(t, http.MethodGet, "http://"+mismatched.Addr()+"/v1/orders", tok, nil, nil))
	if got := request(t, http.MethodGet, "http://"+mismatched.Addr()+"/v1/orders", "not-a-token", nil, nil); got.status != http.StatusUnauthorized ||
		got.problem != "https://onsale.dev/problems/invalid-token" {
		t.Errorf("garbage with the secrets mismatched: %d %s; want 401 invalid-token", got.status, got.body)
	}

	// Auth stops, and a payment process starts without ever having had its keys.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	orphan := startProcess(t, "payment", file, remote)
	wantOutage(t, "a valid token, auth down", request(t, http.MethodGet, "http://"+orphan.Addr()+"/v1/orders", tok, nil, nil))
}

// TestInternalRefusalIsUnavailableToCustomers: when inventory's internal API refuses the payment
// process (their internal secrets differ), a customer's checkout on the payment process gets a
// 503 to retry, not inventory's 401 internal-unauthorized, which is about the deployment and
// would read as a verdict on the customer's credentials.
func TestInternalRefusalIsUnavailableToCustomers(t *testing.T) {
	t.Parallel()
	file, _ := secret(t)
	otherFile, _ := secret(t)
	a := startProcess(t, "auth", file, nil)
	inv := startProcess(t, "auth,inventory", otherFile, nil) // an inventory deployed with another secret
	pay := startProcess(t, "payment", file, map[string]string{
		"ONSALE_AUTH_URL": "http://" + a.InternalAddr(), "ONSALE_INVENTORY_URL": "http://" + inv.InternalAddr(),
	})
	tok := login(t, a)
	customer, err := uuid.Parse(authtest.TokenClaims(t, tok)["sub"].(string))
	if err != nil {
		t.Fatal(err)
	}
	fx := inventoryFixture{inv.Inventory.Module}
	h, _, err := inv.Inventory.Module.Hold(context.Background(), customer, fx.TicketType(t, 10), 1, "")
	if err != nil {
		t.Fatal(err)
	}
	got := request(t, http.MethodPost, "http://"+pay.Addr()+"/v1/orders", tok, map[string]string{"hold_id": h.ID},
		map[string]string{"Idempotency-Key": uuid.NewString()})
	wantOutage(t, "a checkout, inventory refusing payment's secret", got)
}
