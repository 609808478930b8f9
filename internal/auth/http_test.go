package auth_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/onsale-dev/onsale/internal/auth"
	"github.com/onsale-dev/onsale/internal/auth/authtest"
	"github.com/onsale-dev/onsale/internal/platform/apitest"
	"github.com/onsale-dev/onsale/internal/platform/httpserver"
	"github.com/onsale-dev/onsale/internal/platform/problem"
)

// Every response these tests see is checked against api/openapi.yaml by apitest.

func newServer(t *testing.T, o moduleOptions) (*module, *apitest.Server) {
	t.Helper()
	m := newModule(t, o)
	return m, apitest.NewServer(t, nil, m.handler.Routes()...)
}

type tokenPair struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
}

type userBody struct {
	ID    string `json:"id"`
	Email string `json:"email"`
	Name  string `json:"name"`
	Role  string `json:"role"`
}

func httpRegister(t *testing.T, srv *apitest.Server, email string) userBody {
	t.Helper()
	var u userBody
	srv.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/auth/register",
		Body: map[string]string{"email": email, "password": password, "name": "Ada Lovelace"}}).
		Expect(t, http.StatusCreated, "").JSON(t, &u)
	return u
}

func httpLogin(t *testing.T, srv *apitest.Server, email string) tokenPair {
	t.Helper()
	var tok tokenPair
	r := srv.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/auth/login",
		Body: map[string]string{"email": email, "password": password}}).Expect(t, http.StatusOK, "")
	r.JSON(t, &tok)
	if tok.TokenType != "Bearer" || tok.ExpiresIn != 900 || tok.AccessToken == "" || tok.RefreshToken == "" {
		t.Fatalf("token pair %+v: want Bearer, 900 s and both tokens", tok)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("tokens sent with Cache-Control %q", cc)
	}
	return tok
}

func me(srv *apitest.Server, access string) *apitest.Response {
	return srv.Do(apitest.Request{Method: http.MethodGet, Path: "/v1/me", Token: access})
}

func refresh(srv *apitest.Server, refreshToken string) *apitest.Response {
	return srv.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/auth/refresh",
		Body: map[string]string{"refresh_token": refreshToken}})
}

func detail(t *testing.T, r *apitest.Response) string {
	t.Helper()
	var p struct {
		Detail string `json:"detail"`
	}
	r.JSON(t, &p)
	return p.Detail
}

// wantUnauthorized checks a 401 problem that tells the client how to authenticate.
func wantUnauthorized(t *testing.T, r *apitest.Response, typeSuffix, what string) {
	t.Helper()
	if r.Status != http.StatusUnauthorized {
		t.Fatalf("%s: want 401, got %d: %s", what, r.Status, r.Body)
	}
	if typeSuffix != "" && !strings.HasSuffix(r.ProblemType(), typeSuffix) {
		t.Fatalf("%s: want problem type ending %q, got %q", what, typeSuffix, r.ProblemType())
	}
	if !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("%s: WWW-Authenticate %q", what, r.Header.Get("WWW-Authenticate"))
	}
}

func TestHTTPRegister(t *testing.T) {
	t.Parallel()
	_, srv := newServer(t, moduleOptions{})
	u := httpRegister(t, srv, "Ada.Lovelace@Example.com")
	if u.Email != "Ada.Lovelace@Example.com" || u.Name != "Ada Lovelace" || u.Role != "customer" || u.ID == "" {
		t.Fatalf("registered %+v", u)
	}
	r := srv.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/auth/register",
		Body: map[string]string{"email": "ADA.LOVELACE@example.COM", "password": password, "name": "Someone"}})
	r.Expect(t, http.StatusConflict, "/email-taken")
}

func TestHTTPBadInput(t *testing.T) {
	t.Parallel()
	_, srv := newServer(t, moduleOptions{})
	httpRegister(t, srv, "taken@example.com")
	ok := map[string]any{"email": "new@example.com", "password": password, "name": "Ada"}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for k2, v2 := range ok {
			m[k2] = v2
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	for _, tc := range []struct {
		name   string
		path   string
		body   any
		header map[string]string
		status int
		typ    string
	}{
		{"invalid email", "/v1/auth/register", with("email", "not-an-email"), nil, 422, "/validation"},
		{"email with a display name", "/v1/auth/register", with("email", "Ada <ada@example.com>"), nil, 422, "/validation"},
		{"7-character password", "/v1/auth/register", with("password", "1234567"), nil, 422, "/validation"},
		{"129-character password", "/v1/auth/register", with("password", strings.Repeat("p", 129)), nil, 422, "/validation"},
		{"7 runes, 14 bytes", "/v1/auth/register", with("password", strings.Repeat("é", 7)), nil, 422, "/validation"},
		{"empty name", "/v1/auth/register", with("name", ""), nil, 422, "/validation"},
		{"blank name", "/v1/auth/register", with("name", "   "), nil, 422, "/validation"},
		{"missing email", "/v1/auth/register", with("email", nil), nil, 422, "/validation"},
		{"missing password", "/v1/auth/register", with("password", nil), nil, 422, "/validation"},
		{"missing name", "/v1/auth/register", with("name", nil), nil, 422, "/validation"},
		{"empty object", "/v1/auth/register", map[string]any{}, nil, 422, "/validation"},
		{"extra field role", "/v1/auth/register", with("role", "organizer"), nil, 422, "/validation"},
		{"number for email", "/v1/auth/register", with("email", 42), nil, 422, "/validation"},
		{"bool for password", "/v1/auth/register", with("password", true), nil, 422, "/validation"},
		{"null name", "/v1/auth/register", `{"email":"n@example.com","password":"` + password + `","name":null}`, nil, 422, "/validation"},
		{"array body", "/v1/auth/register", `[]`, nil, 422, "/validation"},
		{"truncated JSON", "/v1/auth/register", `{"email":"new@example.com","password":"`, nil, 400, ""},
		{"trailing garbage", "/v1/auth/register", `{"email":"new@example.com","password":"` + password + `","name":"Ada"} x`, nil, 400, "/malformed-json"},
		{"two objects", "/v1/auth/register", `{"email":"new@example.com","password":"` + password + `","name":"Ada"}{}`, nil, 400, "/malformed-json"},
		{"not JSON", "/v1/auth/register", `email=new@example.com`, nil, 400, ""},
		{"empty body", "/v1/auth/register", "", nil, 400, ""},
		{"over 64 KiB", "/v1/auth/register", with("name", strings.Repeat("n", 65<<10)), nil, 413, "/body-too-large"},
		{"text/plain", "/v1/auth/register", with("email", "plain@example.com"), map[string]string{"Content-Type": "text/plain"}, 415, "/unsupported-media-type"},
		{"form", "/v1/auth/login", `email=a&password=b`, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415, "/unsupported-media-type"},
		{"login missing password", "/v1/auth/login", map[string]any{"email": "taken@example.com"}, nil, 422, "/validation"},
		{"login extra field", "/v1/auth/login", map[string]any{"email": "taken@example.com", "password": password, "otp": "1"}, nil, 422, "/validation"},
		{"login number for email", "/v1/auth/login", map[string]any{"email": 1, "password": password}, nil, 422, "/validation"},
		{"login truncated", "/v1/auth/login", `{"email":`, nil, 400, ""},
		{"login over 64 KiB", "/v1/auth/login", map[string]any{"email": "taken@example.com", "password": strings.Repeat("p", 65<<10)}, nil, 413, "/body-too-large"},
		{"refresh missing token", "/v1/auth/refresh", map[string]any{}, nil, 422, "/validation"},
		{"refresh empty token", "/v1/auth/refresh", map[string]any{"refresh_token": ""}, nil, 422, "/validation"},
		{"refresh number", "/v1/auth/refresh", map[string]any{"refresh_token": 7}, nil, 422, "/validation"},
		{"refresh trailing garbage", "/v1/auth/refresh", `{"refresh_token":"a.b"}]`, nil, 400, "/malformed-json"},
		{"refresh 257 characters", "/v1/auth/refresh", map[string]any{"refresh_token": strings.Repeat("r", 257)}, nil, 422, "/validation"},
		{"NUL in the name", "/v1/auth/register", with("name", "a\x00b"), nil, 422, "/validation"},
		{"escape sequence in the name", "/v1/auth/register", with("name", "Ada\x1b[2J"), nil, 422, "/validation"},
		{"newline in the name", "/v1/auth/register", with("name", "Ada\nLovelace"), nil, 422, "/validation"},
		{"NUL in the email", "/v1/auth/register", with("email", "nul\x00@example.com"), nil, 422, "/validation"},
		{"login with a NUL in the email", "/v1/auth/login", map[string]any{"email": "taken@example.com\x00", "password": password}, nil, 422, "/validation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv.Do(apitest.Request{Method: http.MethodPost, Path: tc.path, Body: tc.body, Header: tc.header}).
				Expect(t, tc.status, tc.typ)
		})
	}
}

func TestHTTPLogin(t *testing.T) {
	t.Parallel()
	_, srv := newServer(t, moduleOptions{})
	u := httpRegister(t, srv, "Grace@example.com")
	tok := httpLogin(t, srv, "grace@EXAMPLE.com")
	var got userBody
	me(srv, tok.AccessToken).Expect(t, http.StatusOK, "").JSON(t, &got)
	if got != u {
		t.Fatalf("/v1/me: %+v, want %+v", got, u)
	}

	wrong := srv.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/auth/login",
		Body: map[string]string{"email": "grace@example.com", "password": "wrong password"}})
	unknown := srv.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/auth/login",
		Body: map[string]string{"email": "nobody@example.com", "password": password}})
	wrong.Expect(t, http.StatusUnauthorized, "/invalid-credentials")
	unknown.Expect(t, http.StatusUnauthorized, "/invalid-credentials")
	if d := detail(t, wrong); d == "" || d != detail(t, unknown) {
		t.Fatalf("details differ: %q vs %q", d, detail(t, unknown))
	}
}

func TestHTTPLoginThrottled(t *testing.T) {
	t.Parallel()
	_, srv := newServer(t, moduleOptions{cfg: func(c *auth.Config) { c.FailuresPerAccount = 3 }})
	httpRegister(t, srv, "karen@example.com")
	for range 3 {
		srv.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/auth/login",
			Body: map[string]string{"email": "karen@example.com", "password": "wrong password"}}).
			Expect(t, http.StatusUnauthorized, "/invalid-credentials")
	}
	r := srv.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/auth/login",
		Body: map[string]string{"email": "karen@example.com", "password": password}})
	r.Expect(t, http.StatusTooManyRequests, "/too-many-login-attempts")
	if s, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || s < 1 || s > 60 {
		t.Fatalf("Retry-After %q", r.Header.Get("Retry-After"))
	}
}

func TestHTTPControlCharactersNameTheField(t *testing.T) {
	t.Parallel()
	_, srv := newServer(t, moduleOptions{})
	r := srv.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/auth/register",
		Body: map[string]string{"email": "nul@example.com", "password": password, "name": "a\x00b"}}).
		Expect(t, http.StatusUnprocessableEntity, "/validation")
	var p struct {
		Errors []problem.FieldError `json:"errors"`
	}
	r.JSON(t, &p)
	if len(p.Errors) != 1 || p.Errors[0].Field != "name" || !strings.Contains(p.Errors[0].Message, "control") {
		t.Fatalf("field errors %+v: want one naming name and control characters", p.Errors)
	}
}

// behindProxy serves the module behind a trusted proxy on loopback, so that a test can speak for
// many client addresses with X-Forwarded-For.
func behindProxy(t *testing.T, o moduleOptions) (*module, *apitest.Server) {
	t.Helper()
	m := newModule(t, o)
	return m, apitest.NewServer(t, func(c *httpserver.Config) { c.TrustedProxies = []string{"127.0.0.0/8"} }, m.handler.Routes()...)
}

func TestHTTPLoginGuessesFromOneAddress(t *testing.T) {
	t.Parallel()
	_, srv := behindProxy(t, moduleOptions{cfg: func(c *auth.Config) { c.FailuresPerAccount = 10 }})
	httpRegister(t, srv, "victim@example.com")
	const guesses = 40
	statuses := make([]int, guesses)
	var wg sync.WaitGroup
	for i := range guesses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = srv.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/auth/login",
				Header: map[string]string{"X-Forwarded-For": "203.0.113.2"},
				Body:   map[string]string{"email": "victim@example.com", "password": "a wrong guess"}}).Status
		}()
	}
	wg.Wait()
	counts := map[int]int{}
	for _, s := range statuses {
		counts[s]++
	}
	if counts[http.StatusUnauthorized] != 10 || counts[http.StatusTooManyRequests] != guesses-10 {
		t.Fatalf("40 parallel wrong passwords against a limit of 10: %v; want 10 x 401 and 30 x 429", counts)
	}
	// The customer, from another address, gets in, at most after the account's short delay.
	for attempt := 0; ; attempt++ {
		r := srv.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/auth/login",
			Header: map[string]string{"X-Forwarded-For": "203.0.113.3"},
			Body:   map[string]string{"email": "victim@example.com", "password": password}})
		if r.Status == http.StatusOK {
			break
		}
		r.Expect(t, http.StatusTooManyRequests, "/too-many-login-attempts")
		wait, err := strconv.Atoi(r.Header.Get("Retry-After"))
		if err != nil || wait < 1 || wait > 10 || attempt > 0 {
			t.Fatalf("the right password from another address: 429 with Retry-After %q (attempt %d)", r.Header.Get("Retry-After"), attempt+1)
		}
		time.Sleep(time.Duration(wait) * time.Second)
	}
}

func TestHTTPAuthRateLimitedPerAddress(t *testing.T) {
	t.Parallel()
	_, srv := behindProxy(t, moduleOptions{cfg: func(c *auth.Config) { c.RateLimit, c.RateLimitBurst = 1, 20 }})
	send := func(addr string) *apitest.Response {
		return srv.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/auth/login", Body: `{"email":`,
			Header: map[string]string{"X-Forwarded-For": addr}})
	}
	var limited *apitest.Response
	for range 40 {
		if r := send("2001:db8:7:7::1"); r.Status == http.StatusTooManyRequests {
			limited = r
			break
		}
	}
	if limited == nil {
		t.Fatal("40 quick requests from one address with a burst of 20: none limited")
	}
	limited.Expect(t, http.StatusTooManyRequests, "/rate-limited")
	h := limited.Header
	if ra, err := strconv.Atoi(h.Get("Retry-After")); err != nil || ra < 1 {
		t.Fatalf("Retry-After %q", h.Get("Retry-After"))
	}
	if h.Get("RateLimit-Policy") != `"auth";q=20;w=20` || !strings.HasPrefix(h.Get("RateLimit"), `"auth";r=0;t=`) {
		t.Fatalf("RateLimit-Policy %q, RateLimit %q", h.Get("RateLimit-Policy"), h.Get("RateLimit"))
	}
	// The same /64 is the same client; another /64 and another IPv4 address are not.
	send("2001:db8:7:7:ffff::9").Expect(t, http.StatusTooManyRequests, "/rate-limited")
	send("2001:db8:7:8::1").Expect(t, http.StatusBadRequest, "")
	send("198.51.100.20").Expect(t, http.StatusBadRequest, "")
}

func TestHTTPLoginBusy(t *testing.T) {
	t.Parallel()
	// One slow worker and a queue of one: a burst of logins meets 503s with Retry-After at once.
	_, srv := newServer(t, moduleOptions{cfg: func(c *auth.Config) {
		c.Argon2MemoryKiB, c.Argon2Time, c.HashWorkers, c.HashQueue = 8<<10, 3, 1, 1
	}})
	httpRegister(t, srv, "storm@example.com")
	const n = 6
	var wg sync.WaitGroup
	statuses := make([]int, n)
	retry := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := srv.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/auth/login",
				Body: map[string]string{"email": "storm@example.com", "password": password}})
			statuses[i], retry[i] = r.Status, r.Header.Get("Retry-After")
		}()
	}
	wg.Wait()
	busy := 0
	for i, s := range statuses {
		switch s {
		case http.StatusOK:
		case http.StatusServiceUnavailable:
			busy++
			if retry[i] == "" {
				t.Errorf("503 without Retry-After")
			}
		default:
			t.Errorf("login %d: status %d", i, s)
		}
	}
	if busy == 0 {
		t.Fatalf("no login refused: %v", statuses)
	}
}

func TestHTTPRefresh(t *testing.T) {
	t.Parallel()
	_, srv := newServer(t, moduleOptions{})
	httpRegister(t, srv, "lin@example.com")
	first := httpLogin(t, srv, "lin@example.com")
	var second tokenPair
	r := refresh(srv, first.RefreshToken).Expect(t, http.StatusOK, "")
	r.JSON(t, &second)
	if second.TokenType != "Bearer" || second.ExpiresIn != 900 || second.RefreshToken == first.RefreshToken {
		t.Fatalf("refreshed pair %+v", second)
	}
	me(srv, second.AccessToken).Expect(t, http.StatusOK, "")
	refresh(srv, "not-a-refresh-token").Expect(t, http.StatusUnauthorized, "/invalid-refresh-token")

	// The old refresh token again: reuse, and the whole session is over.
	refresh(srv, first.RefreshToken).Expect(t, http.StatusUnauthorized, "/refresh-token-reused")
	wantUnauthorized(t, me(srv, second.AccessToken), "/session-ended", "new access token after reuse")
	wantUnauthorized(t, me(srv, first.AccessToken), "/session-ended", "old access token after reuse")
	refresh(srv, second.RefreshToken).Expect(t, http.StatusUnauthorized, "/session-ended")
}

func TestHTTPLogout(t *testing.T) {
	t.Parallel()
	_, srv := newServer(t, moduleOptions{})
	httpRegister(t, srv, "mary@example.com")
	tok := httpLogin(t, srv, "mary@example.com")
	other := httpLogin(t, srv, "mary@example.com")
	me(srv, tok.AccessToken).Expect(t, http.StatusOK, "")
	wantUnauthorized(t, srv.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/auth/logout"}), "/invalid-token", "logout without a token")
	r := srv.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/auth/logout", Token: tok.AccessToken})
	r.Expect(t, http.StatusNoContent, "")
	if len(r.Body) != 0 {
		t.Fatalf("204 with a body: %s", r.Body)
	}
	wantUnauthorized(t, me(srv, tok.AccessToken), "/session-ended", "/v1/me after logout")
	wantUnauthorized(t, srv.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/auth/logout", Token: tok.AccessToken}),
		"/session-ended", "logout twice")
	refresh(srv, tok.RefreshToken).Expect(t, http.StatusUnauthorized, "/session-ended")
	me(srv, other.AccessToken).Expect(t, http.StatusOK, "")
}

func TestHTTPMeRefusesBadTokens(t *testing.T) {
	t.Parallel()
	m, srv := newServer(t, moduleOptions{})
	httpRegister(t, srv, "hostile@example.com")
	valid := httpLogin(t, srv, "hostile@example.com").AccessToken
	me(srv, valid).Expect(t, http.StatusOK, "")

	wantUnauthorized(t, me(srv, ""), "/invalid-token", "no token")
	for _, h := range []string{"Basic x", "Basic " + valid, valid, "Bearer", "Bearer    "} {
		r := srv.Do(apitest.Request{Method: http.MethodGet, Path: "/v1/me", Header: map[string]string{"Authorization": h}})
		wantUnauthorized(t, r, "/invalid-token", "Authorization: "+h[:min(len(h), 12)])
	}
	// The hostile tokens carry the valid one's user and session, so any that got through would
	// show as a 200.
	for _, h := range authtest.HostileTokens(t, m.keys, valid, time.Now()) {
		t.Run(h.Name, func(t *testing.T) {
			t.Parallel()
			wantUnauthorized(t, me(srv, h.Token), "/invalid-token", h.Name)
		})
	}
}

func TestHTTPJWKS(t *testing.T) {
	t.Parallel()
	_, srv := newServer(t, moduleOptions{})
	r := srv.Do(apitest.Request{Method: http.MethodGet, Path: "/.well-known/jwks.json"}).Expect(t, http.StatusOK, "")
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/jwk-set+json") {
		t.Fatalf("Content-Type %q", ct)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	r.JSON(t, &set)
	if len(set.Keys) == 0 {
		t.Fatalf("no keys: %s", r.Body)
	}
	for _, k := range set.Keys {
		if k["kty"] != "OKP" || k["crv"] != "Ed25519" || k["kid"] == nil || k["kid"] == "" || k["x"] == nil {
			t.Fatalf("key %v", k)
		}
		for _, private := range []string{"d", "p", "q", "k"} {
			if _, ok := k[private]; ok {
				t.Fatalf("key %v carries %q", k, private)
			}
		}
	}
}

// TestRequireRole drives Authenticator.Require directly on an echo instance: the API document has
// no route restricted to a role yet, and apitest serves only documented routes.
func TestRequireRole(t *testing.T) {
	t.Parallel()
	m := newModule(t, moduleOptions{})
	ctx := context.Background()
	tokens := map[auth.Role]string{}
	for _, role := range []auth.Role{auth.RoleCustomer, auth.RoleOrganizer, auth.RoleStaff} {
		email := string(role) + "@example.com"
		if _, err := m.svc.CreateUser(ctx, email, password, "X", role); err != nil {
			t.Fatal(err)
		}
		tok, err := m.svc.Login(ctx, email, password, "")
		if err != nil {
			t.Fatal(err)
		}
		tokens[role] = tok.AccessToken
	}

	e := echo.New()
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		_ = problem.Write(c.Response(), problem.Resolve(err), c.Request().URL.Path, "")
	}
	whoami := func(c echo.Context) error {
		p := auth.MustPrincipal(c.Request().Context())
		return c.String(http.StatusOK, string(p.Role))
	}
	e.GET("/organizers", whoami, m.authn.Require(auth.RoleOrganizer))
	e.GET("/door", whoami, m.authn.Require(auth.RoleOrganizer, auth.RoleStaff))
	e.GET("/anyone", whoami, m.authn.Require())
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)

	get := func(path, token string) (int, string, http.Header) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), resp.Header
	}
	for _, tc := range []struct {
		path   string
		role   auth.Role
		status int
	}{
		{"/organizers", auth.RoleCustomer, 403},
		{"/organizers", auth.RoleStaff, 403},
		{"/organizers", auth.RoleOrganizer, 200},
		{"/door", auth.RoleCustomer, 403},
		{"/door", auth.RoleStaff, 200},
		{"/door", auth.RoleOrganizer, 200},
		{"/anyone", auth.RoleCustomer, 200},
		{"/anyone", auth.RoleStaff, 200},
	} {
		status, body, hdr := get(tc.path, tokens[tc.role])
		if status != tc.status {
			t.Fatalf("%s as %s: %d %s, want %d", tc.path, tc.role, status, body, tc.status)
		}
		switch status {
		case 200:
			if body != string(tc.role) {
				t.Fatalf("%s as %s: principal %q", tc.path, tc.role, body)
			}
		case 403:
			var p problem.Document
			if err := json.Unmarshal([]byte(body), &p); err != nil || !strings.HasSuffix(p.Type, "/forbidden") {
				t.Fatalf("%s as %s: %s", tc.path, tc.role, body)
			}
			if hdr.Get("WWW-Authenticate") != "" {
				t.Fatalf("403 with WWW-Authenticate")
			}
		}
	}
	status, _, hdr := get("/organizers", "")
	if status != 401 || hdr.Get("WWW-Authenticate") == "" {
		t.Fatalf("no token: %d, WWW-Authenticate %q", status, hdr.Get("WWW-Authenticate"))
	}
	if _, ok := auth.PrincipalFrom(ctx); ok {
		t.Fatal("a principal in a bare context")
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("MustPrincipal without Require did not panic")
			}
		}()
		auth.MustPrincipal(ctx)
	}()
}

type streamTicketBody struct {
	Ticket    string    `json:"ticket"`
	ExpiresAt time.Time `json:"expires_at"`
	ExpiresIn int       `json:"expires_in"`
}

func TestStreamTicketOpensStreamsOnly(t *testing.T) {
	m, srv := newServer(t, moduleOptions{})
	httpRegister(t, srv, "stream@example.com")
	tok := httpLogin(t, srv, "stream@example.com")
	ctx := t.Context()

	srv.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/auth/stream-tickets"}).Expect(t, http.StatusUnauthorized, "invalid-token")
	srv.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/auth/stream-tickets", Token: "not.a.token"}).Expect(t, http.StatusUnauthorized, "invalid-token")
	var ticket streamTicketBody
	r := srv.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/auth/stream-tickets", Token: tok.AccessToken}).Expect(t, http.StatusCreated, "")
	r.JSON(t, &ticket)
	if ticket.Ticket == "" || ticket.ExpiresIn != 60 || time.Until(ticket.ExpiresAt) > 61*time.Second || time.Until(ticket.ExpiresAt) < 50*time.Second {
		t.Fatalf("ticket %+v: want one lasting 60 s", ticket)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("ticket sent with Cache-Control %q", cc)
	}

	p, err := m.authn.AuthenticateTicket(ctx, ticket.Ticket)
	if err != nil {
		t.Fatalf("the ticket does not open a stream: %v", err)
	}
	if p.Role != auth.RoleCustomer || p.SessionID == "" || !p.ExpiresAt.Equal(ticket.ExpiresAt) {
		t.Errorf("ticket principal %+v, want the customer's session expiring at %v", p, ticket.ExpiresAt)
	}
	if _, err := m.authn.AuthenticateTicket(ctx, tok.AccessToken); problem.KindOf(err) != problem.Unauthorized {
		t.Errorf("an access token used as a stream ticket: %v, want 401", err)
	}
	me(srv, ticket.Ticket).Expect(t, http.StatusUnauthorized, "invalid-token")
	if _, err := m.authn.Authenticate(ctx, "Bearer "+ticket.Ticket); problem.KindOf(err) != problem.Unauthorized {
		t.Errorf("a stream ticket used as an access token: %v, want 401", err)
	}

	srv.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/auth/logout", Token: tok.AccessToken}).Expect(t, http.StatusNoContent, "")
	if _, err := m.authn.AuthenticateTicket(ctx, ticket.Ticket); problem.KindOf(err) != problem.Unauthorized {
		t.Errorf("a ticket of a logged-out session: %v, want 401", err)
	}
}

func TestStreamTicketExpires(t *testing.T) {
	clk := fakeClock()
	m, srv := newServer(t, moduleOptions{clk: clk})
	httpRegister(t, srv, "expire@example.com")
	tok := httpLogin(t, srv, "expire@example.com")
	var ticket streamTicketBody
	srv.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/auth/stream-tickets", Token: tok.AccessToken}).Expect(t, http.StatusCreated, "").JSON(t, &ticket)
	clk.Advance(auth.StreamTicketTTL + 31*time.Second) // past the tolerated clock skew too
	if _, err := m.authn.AuthenticateTicket(t.Context(), ticket.Ticket); problem.KindOf(err) != problem.Unauthorized {
		t.Errorf("an expired ticket: %v, want 401", err)
	}
}

// TestPrincipalInContext: the principal put in a context comes back whole, the parent's values
// and cancellation still reach through, and a copy read out cannot change the stored one.
func TestPrincipalInContext(t *testing.T) {
	type key struct{}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
	want := auth.Principal{UserID: uuid.New(), Role: auth.RoleCustomer, SessionID: "s1", ExpiresAt: time.Unix(1_900_000_000, 0)}
	ctx := auth.WithPrincipal(parent, want)
	got, ok := auth.PrincipalFrom(ctx)
	if !ok || got != want {
		t.Fatalf("PrincipalFrom = %+v, %v; want %+v", got, ok, want)
	}
	got.SessionID = "changed"
	if again := auth.MustPrincipal(ctx); again != want {
		t.Fatalf("the stored principal changed with a copy read out: %+v", again)
	}
	if ctx.Value(key{}) != "v" {
		t.Fatal("the parent's value is lost")
	}
	cancel()
	if ctx.Err() != context.Canceled {
		t.Fatalf("Err() = %v after the parent was cancelled", ctx.Err())
	}
}
