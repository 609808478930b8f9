package auth_test

// These tests are in package auth_test rather than auth: they need the memory adapters and the
// token package, which import auth, so an internal test importing them would be an import cycle.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alexedwards/argon2id"
	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/auth"
	"github.com/onsale-dev/onsale/internal/auth/memory"
	"github.com/onsale-dev/onsale/internal/platform/clock"
	"github.com/onsale-dev/onsale/internal/platform/problem"
)

const password = "correct horse battery staple"

func fakeClock() *clock.Fake {
	return clock.NewFake(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC))
}

func register(t *testing.T, m *module, email string) auth.User {
	t.Helper()
	u, err := m.svc.Register(context.Background(), email, password, "Ada Lovelace")
	if err != nil {
		t.Fatalf("register %s: %v", email, err)
	}
	return u
}

func login(t *testing.T, m *module, email, pw, ip string) auth.Tokens {
	t.Helper()
	tok, err := m.svc.Login(context.Background(), email, pw, ip)
	if err != nil {
		t.Fatalf("login %s: %v", email, err)
	}
	return tok
}

func wantErr(t *testing.T, what string, err, want error) *problem.Error {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: want %v, got %v", what, want, err)
	}
	return problem.As(err)
}

func authenticate(m *module, access string) (auth.Principal, error) {
	return m.authn.Authenticate(context.Background(), "Bearer "+access)
}

func TestRegister(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newModule(t, moduleOptions{clk: fakeClock()})
	u, err := m.svc.Register(ctx, "  Ada.Lovelace@Example.COM ", password, " Ada Lovelace ")
	if err != nil {
		t.Fatal(err)
	}
	if u.Role != auth.RoleCustomer || u.Email != "Ada.Lovelace@Example.COM" || u.Name != "Ada Lovelace" || u.ID == uuid.Nil {
		t.Fatalf("registered %+v: want a customer with the email as typed (trimmed)", u)
	}
	stored, err := m.users.ByID(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Email != u.Email || !strings.HasPrefix(stored.PasswordHash, "$argon2id$") || strings.Contains(stored.PasswordHash, password) {
		t.Fatalf("stored %+v", stored)
	}
	if ok, err := argon2id.ComparePasswordAndHash(password, stored.PasswordHash); err != nil || !ok {
		t.Fatalf("stored hash does not verify: %v", err)
	}

	for _, email := range []string{"ada.lovelace@example.com", "ADA.LOVELACE@EXAMPLE.COM"} {
		_, err := m.svc.Register(ctx, email, password, "Someone Else")
		pe := wantErr(t, "register "+email, err, auth.ErrEmailTaken)
		if pe.Kind.Status() != 409 {
			t.Fatalf("email taken: status %d", pe.Kind.Status())
		}
	}

	for _, tc := range []struct{ name, email, password, userName, field string }{
		{"invalid email", "not-an-email", password, "Ada", "email"},
		{"7 characters", "a7@example.com", "1234567", "Ada", "password"},
		{"129 characters", "a129@example.com", strings.Repeat("x", 129), "Ada", "password"},
		{"empty name", "noname@example.com", password, "   ", "name"},
		{"101-character name", "longname@example.com", password, strings.Repeat("n", 101), "name"},
	} {
		_, err := m.svc.Register(ctx, tc.email, tc.password, tc.userName)
		pe := wantErr(t, tc.name, err, auth.ErrInvalidAccount)
		if pe.Kind.Status() != 422 || len(pe.Fields) != 1 || pe.Fields[0].Field != tc.field {
			t.Fatalf("%s: %d %v, want 422 on %s", tc.name, pe.Kind.Status(), pe.Fields, tc.field)
		}
	}
}

func TestCreateUserRoles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newModule(t, moduleOptions{})
	for _, role := range []auth.Role{auth.RoleCustomer, auth.RoleOrganizer, auth.RoleStaff} {
		email := string(role) + "@example.com"
		u, err := m.svc.CreateUser(ctx, email, password, "Someone", role)
		if err != nil {
			t.Fatalf("%s: %v", role, err)
		}
		if u.Role != role {
			t.Fatalf("created %+v, want role %s", u, role)
		}
		tok := login(t, m, email, password, "")
		p, err := authenticate(m, tok.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		if p.Role != role || p.UserID != u.ID {
			t.Fatalf("principal %+v, want %s %s", p, u.ID, role)
		}
	}
	for _, role := range []auth.Role{"admin", "", "Customer"} {
		_, err := m.svc.CreateUser(ctx, "x-"+string(role)+"@example.com", password, "X", role)
		pe := wantErr(t, "role "+string(role), err, auth.ErrInvalidAccount)
		if len(pe.Fields) != 1 || pe.Fields[0].Field != "role" {
			t.Fatalf("role %q: fields %v", role, pe.Fields)
		}
	}
}

func TestEnsureUser(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newModule(t, moduleOptions{})
	first, created, err := m.svc.EnsureUser(ctx, "ops@example.com", password, "Ops", auth.RoleOrganizer)
	if err != nil || !created {
		t.Fatalf("first: created %v err %v", created, err)
	}
	for _, email := range []string{"ops@example.com", "OPS@example.com", " ops@example.com "} {
		again, created, err := m.svc.EnsureUser(ctx, email, "another password", "Ops", auth.RoleOrganizer)
		if err != nil || created || again.ID != first.ID {
			t.Fatalf("again with %q: %+v created %v err %v; want the first account", email, again, created, err)
		}
	}
	// The password of the existing account is kept.
	login(t, m, "ops@example.com", password, "")
	if _, _, err := m.svc.EnsureUser(ctx, "bad", password, "X", auth.RoleStaff); !errors.Is(err, auth.ErrInvalidAccount) {
		t.Fatalf("invalid email: %v", err)
	}
}

func TestLogin(t *testing.T) {
	t.Parallel()
	m := newModule(t, moduleOptions{clk: fakeClock()})
	u := register(t, m, "Grace@Example.com")
	tok := login(t, m, "grace@example.COM", password, "192.0.2.1")
	if tok.ExpiresIn != 15*time.Minute || tok.AccessToken == "" || !strings.Contains(tok.RefreshToken, ".") {
		t.Fatalf("tokens %+v", tok)
	}
	p, err := authenticate(m, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if p.UserID != u.ID || p.Role != auth.RoleCustomer || p.SessionID == "" {
		t.Fatalf("principal %+v", p)
	}
	if !strings.HasPrefix(tok.RefreshToken, p.SessionID+".") {
		t.Fatalf("refresh token %q does not name session %s", tok.RefreshToken, p.SessionID)
	}
	got, err := m.svc.User(context.Background(), p.UserID)
	if err != nil || got.Email != "Grace@Example.com" {
		t.Fatalf("user: %+v %v", got, err)
	}
	if _, err := m.svc.User(context.Background(), uuid.New()); !errors.Is(err, auth.ErrUserNotFound) {
		t.Fatalf("unknown user: %v", err)
	}
	// Two logins are two sessions.
	other := login(t, m, "grace@example.com", password, "")
	p2, err := authenticate(m, other.AccessToken)
	if err != nil || p2.SessionID == p.SessionID {
		t.Fatalf("second login: %+v %v", p2, err)
	}
}

func TestLoginUnknownEmailAndWrongPasswordLookAlike(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newModule(t, moduleOptions{clk: fakeClock()})
	register(t, m, "hedy@example.com")
	_, errWrong := m.svc.Login(ctx, "hedy@example.com", "wrong password", "")
	_, errUnknown := m.svc.Login(ctx, "nobody@example.com", password, "")
	wrong := wantErr(t, "wrong password", errWrong, auth.ErrInvalidCredentials)
	unknown := wantErr(t, "unknown email", errUnknown, auth.ErrInvalidCredentials)
	if wrong.Detail == "" || wrong.Detail != unknown.Detail || wrong.Error() != unknown.Error() ||
		wrong.Type() != unknown.Type() || wrong.Kind.Status() != 401 {
		t.Fatalf("answers differ: %#v vs %#v", wrong, unknown)
	}
}

func TestLoginThrottledPerAccount(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := fakeClock()
	m := newModule(t, moduleOptions{clk: clk, cfg: func(c *auth.Config) {
		c.FailuresPerAccount, c.FailureWindow = 3, time.Minute
	}})
	register(t, m, "Karen@example.com")
	for range 3 {
		_, err := m.svc.Login(ctx, "karen@example.com", "wrong password", "")
		wantErr(t, "failure", err, auth.ErrInvalidCredentials)
		clk.Advance(time.Second)
	}
	// Even the right password, in any case of the email, is refused until the window passes.
	for _, email := range []string{"Karen@example.com", "KAREN@EXAMPLE.COM"} {
		_, err := m.svc.Login(ctx, email, password, "")
		pe := wantErr(t, "throttled login", err, auth.ErrTooManyAttempts)
		if pe.RetryAfter <= 0 || pe.RetryAfter > time.Minute || pe.Kind.Status() != 429 {
			t.Fatalf("throttled: retry after %s, status %d", pe.RetryAfter, pe.Kind.Status())
		}
	}
	// Another account is not affected.
	register(t, m, "other@example.com")
	login(t, m, "other@example.com", password, "")

	clk.Advance(time.Minute)
	login(t, m, "karen@example.com", password, "")
}

func TestLoginThrottledPerIP(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := fakeClock()
	m := newModule(t, moduleOptions{clk: clk, cfg: func(c *auth.Config) {
		c.FailuresPerAccount, c.FailuresPerIP, c.FailureWindow = 10, 4, time.Minute
	}})
	register(t, m, "victim@example.com")
	const ip = "203.0.113.7"
	// One failure each on four accounts (known or not): no account reaches its limit.
	for _, email := range []string{"a@example.com", "b@example.com", "c@example.com", "victim@example.com"} {
		_, err := m.svc.Login(ctx, email, "wrong password", ip)
		wantErr(t, "failure", err, auth.ErrInvalidCredentials)
	}
	_, err := m.svc.Login(ctx, "victim@example.com", password, ip)
	pe := wantErr(t, "from the address", err, auth.ErrTooManyAttempts)
	if pe.RetryAfter <= 0 {
		t.Fatalf("no Retry-After: %#v", pe)
	}
	_, err = m.svc.Login(ctx, "fresh@example.com", password, ip)
	wantErr(t, "another account from the address", err, auth.ErrTooManyAttempts)
	// Other addresses, and callers without one, are not affected.
	login(t, m, "victim@example.com", password, "198.51.100.9")
	login(t, m, "victim@example.com", password, "")
	clk.Advance(time.Minute + time.Second)
	login(t, m, "victim@example.com", password, ip)
}

func TestLoginAttemptsTakenAtomically(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newModule(t, moduleOptions{cfg: func(c *auth.Config) { c.FailuresPerAccount = 10 }})
	register(t, m, "victim@example.com")
	// 40 guesses at once from one address: the limit is decided before any password is hashed,
	// so only 10 get a verdict, however the guesses interleave.
	const guesses = 40
	errs := make([]error, guesses)
	var wg sync.WaitGroup
	for i := range guesses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = m.svc.Login(ctx, "victim@example.com", "a wrong guess", "203.0.113.66")
		}()
	}
	wg.Wait()
	verdicts, throttled := 0, 0
	for _, err := range errs {
		switch {
		case errors.Is(err, auth.ErrInvalidCredentials):
			verdicts++
		case errors.Is(err, auth.ErrTooManyAttempts):
			throttled++
		default:
			t.Fatalf("guess answered %v", err)
		}
	}
	if verdicts != 10 || throttled != guesses-10 {
		t.Fatalf("%d parallel guesses against a limit of 10: %d verdicts and %d throttled", guesses, verdicts, throttled)
	}
}

func TestLoginNotLockedOutFromAnotherAddress(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := fakeClock()
	m := newModule(t, moduleOptions{clk: clk, cfg: func(c *auth.Config) {
		c.FailuresPerAccount, c.FailuresPerIP, c.LoginDelayMax = 3, 1000, 10*time.Second
	}})
	register(t, m, "victim@example.com")
	// An attacker guesses from address after address: each gets its own 3 verdicts.
	failures := 0
	for i := range 4 {
		ip := fmt.Sprintf("198.51.100.%d", i+1)
		for {
			_, err := m.svc.Login(ctx, "victim@example.com", "a wrong guess", ip)
			if errors.Is(err, auth.ErrInvalidCredentials) {
				failures++
				continue
			}
			pe := wantErr(t, "guess", err, auth.ErrTooManyAttempts)
			if strings.Contains(pe.Detail, "this address") {
				break // this address has had its verdicts
			}
			// The account's own delay: wait it out as a patient attacker would.
			if pe.RetryAfter <= 0 || pe.RetryAfter > 10*time.Second {
				t.Fatalf("account delay: Retry-After %s", pe.RetryAfter)
			}
			clk.Advance(pe.RetryAfter)
		}
	}
	if failures != 12 {
		t.Fatalf("4 addresses with a limit of 3 each: %d verdicts", failures)
	}
	// The customer, from an address that never failed, is at most delayed, never locked out.
	_, err := m.svc.Login(ctx, "victim@example.com", password, "192.0.2.10")
	if err != nil {
		pe := wantErr(t, "the customer's login", err, auth.ErrTooManyAttempts)
		if pe.RetryAfter <= 0 || pe.RetryAfter > 10*time.Second {
			t.Fatalf("the customer is told to wait %s", pe.RetryAfter)
		}
		clk.Advance(pe.RetryAfter)
		login(t, m, "victim@example.com", password, "192.0.2.10")
	}
	// The attacker's addresses stay refused for the window.
	_, err = m.svc.Login(ctx, "victim@example.com", password, "198.51.100.1")
	wantErr(t, "a spent address", err, auth.ErrTooManyAttempts)
}

func TestLoginDelayGrowsAndIsBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := fakeClock()
	m := newModule(t, moduleOptions{clk: clk, cfg: func(c *auth.Config) {
		c.FailuresPerAccount, c.FailuresPerIP, c.FailureWindow, c.LoginDelayMax = 2, 1000, time.Hour, 4*time.Second
	}})
	register(t, m, "slow@example.com")
	var delays []time.Duration
	for i := 0; len(delays) < 6; i++ {
		_, err := m.svc.Login(ctx, "slow@example.com", "a wrong guess", fmt.Sprintf("198.51.100.%d", i+1))
		if errors.Is(err, auth.ErrInvalidCredentials) {
			continue
		}
		pe := wantErr(t, "guess", err, auth.ErrTooManyAttempts)
		delays = append(delays, pe.RetryAfter)
		clk.Advance(pe.RetryAfter)
	}
	for i := 1; i < len(delays); i++ {
		if delays[i] < delays[i-1] {
			t.Fatalf("the delay shrank as failures grew: %v", delays)
		}
	}
	if delays[0] > time.Second || delays[len(delays)-1] != 4*time.Second {
		t.Fatalf("delays %v: want from 1s up to the 4s maximum", delays)
	}
}

func TestLoginSuccessResetsAccountCounter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newModule(t, moduleOptions{clk: fakeClock(), cfg: func(c *auth.Config) { c.FailuresPerAccount = 3 }})
	register(t, m, "typo@example.com")
	for range 3 {
		for range 2 {
			_, err := m.svc.Login(ctx, "typo@example.com", "wrong password", "")
			wantErr(t, "failure", err, auth.ErrInvalidCredentials)
		}
		// 2, 4, then 6 failures in the window, but never 3 since the last success.
		login(t, m, "typo@example.com", password, "")
	}
}

func TestRefresh(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newModule(t, moduleOptions{clk: fakeClock()})
	u := register(t, m, "lin@example.com")
	first := login(t, m, "lin@example.com", password, "")
	p1, err := authenticate(m, first.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	second, err := m.svc.Refresh(ctx, first.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if second.RefreshToken == first.RefreshToken || second.AccessToken == first.AccessToken {
		t.Fatal("refresh returned the same tokens")
	}
	p2, err := authenticate(m, second.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if p2.SessionID != p1.SessionID || p2.UserID != u.ID || p2.Role != auth.RoleCustomer {
		t.Fatalf("refreshed principal %+v, want session %s user %s", p2, p1.SessionID, u.ID)
	}
	third, err := m.svc.Refresh(ctx, second.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}

	// Tokens that are not ours are refused and end nothing.
	for _, bad := range []string{"", "no-dot", ".secret", p1.SessionID + ".", p1.SessionID + ".never-issued",
		"no-such-session.secret", strings.Repeat("x", 200) + "." + strings.Repeat("y", 100)} {
		_, err := m.svc.Refresh(ctx, bad)
		wantErr(t, "refresh "+bad, err, auth.ErrInvalidRefresh)
	}
	if _, err := authenticate(m, third.AccessToken); err != nil {
		t.Fatalf("the session ended after bad refresh tokens: %v", err)
	}

	// The first refresh token was used already: presenting it again is reuse, and the whole
	// session ends, its access tokens with it.
	_, err = m.svc.Refresh(ctx, first.RefreshToken)
	wantErr(t, "reuse", err, auth.ErrRefreshReused)
	for name, access := range map[string]string{"first": first.AccessToken, "second": second.AccessToken, "third": third.AccessToken} {
		_, err := authenticate(m, access)
		wantErr(t, name+" access token after reuse", err, auth.ErrSessionEnded)
	}
	_, err = m.svc.Refresh(ctx, third.RefreshToken)
	wantErr(t, "the newest refresh token after reuse", err, auth.ErrSessionEnded)
	_, err = m.svc.Refresh(ctx, second.RefreshToken)
	wantErr(t, "a used refresh token after reuse", err, auth.ErrSessionEnded)

	// Other sessions of the same user live on.
	other := login(t, m, "lin@example.com", password, "")
	if _, err := authenticate(m, other.AccessToken); err != nil {
		t.Fatal(err)
	}
}

func TestRefreshKeepsRole(t *testing.T) {
	t.Parallel()
	m := newModule(t, moduleOptions{clk: fakeClock()})
	if _, err := m.svc.CreateUser(context.Background(), "org@example.com", password, "Org", auth.RoleOrganizer); err != nil {
		t.Fatal(err)
	}
	tok := login(t, m, "org@example.com", password, "")
	next, err := m.svc.Refresh(context.Background(), tok.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	p, err := authenticate(m, next.AccessToken)
	if err != nil || p.Role != auth.RoleOrganizer {
		t.Fatalf("principal %+v %v, want organizer", p, err)
	}
}

func TestLogout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newModule(t, moduleOptions{clk: fakeClock()})
	register(t, m, "mary@example.com")
	tok := login(t, m, "mary@example.com", password, "")
	keep := login(t, m, "mary@example.com", password, "")
	p, err := authenticate(m, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.svc.Logout(ctx, p.SessionID); err != nil {
		t.Fatal(err)
	}
	// The store alone refuses it (a second replica has no local memory of the logout).
	other := auth.NewAuthenticator(m.verifier, m.sessions, nil)
	for _, a := range []*auth.Authenticator{m.authn, other} {
		_, err := a.Authenticate(ctx, "Bearer "+tok.AccessToken)
		wantErr(t, "access token after logout", err, auth.ErrSessionEnded)
	}
	_, err = m.svc.Refresh(ctx, tok.RefreshToken)
	wantErr(t, "refresh after logout", err, auth.ErrSessionEnded)
	if err := m.svc.Logout(ctx, p.SessionID); err != nil {
		t.Fatalf("logout twice: %v", err)
	}
	if _, err := authenticate(m, keep.AccessToken); err != nil {
		t.Fatalf("another session ended with the logout: %v", err)
	}
}

func TestAuthenticatorEndedIsLocal(t *testing.T) {
	t.Parallel()
	m := newModule(t, moduleOptions{clk: fakeClock()})
	register(t, m, "local@example.com")
	tok := login(t, m, "local@example.com", password, "")
	p, err := authenticate(m, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	// Ended refuses at once on this replica, even before the store knows.
	m.authn.Ended(p.SessionID)
	_, err = authenticate(m, tok.AccessToken)
	wantErr(t, "ended locally", err, auth.ErrSessionEnded)
}

func TestAuthenticateHeaders(t *testing.T) {
	t.Parallel()
	m := newModule(t, moduleOptions{clk: fakeClock()})
	register(t, m, "hdr@example.com")
	tok := login(t, m, "hdr@example.com", password, "")
	for _, h := range []string{"bearer " + tok.AccessToken, "BEARER  " + tok.AccessToken + " "} {
		if _, err := m.authn.Authenticate(context.Background(), h); err != nil {
			t.Fatalf("%q: %v", h[:9], err)
		}
	}
	for _, h := range []string{"", "Bearer", "Bearer ", "Basic x", "Basic " + tok.AccessToken, tok.AccessToken, "Token " + tok.AccessToken} {
		_, err := m.authn.Authenticate(context.Background(), h)
		wantErr(t, "header "+h, err, auth.ErrInvalidToken)
	}
}

func TestAccessTokenExpires(t *testing.T) {
	t.Parallel()
	clk := fakeClock()
	m := newModule(t, moduleOptions{clk: clk})
	register(t, m, "exp@example.com")
	tok := login(t, m, "exp@example.com", password, "")
	clk.Advance(15*time.Minute + 10*time.Second)
	if _, err := authenticate(m, tok.AccessToken); err != nil {
		t.Fatalf("inside the skew: %v", err)
	}
	clk.Advance(time.Minute)
	_, err := authenticate(m, tok.AccessToken)
	wantErr(t, "expired", err, auth.ErrInvalidToken)
	// The session lives on: refresh gives a fresh access token.
	next, err := m.svc.Refresh(context.Background(), tok.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := authenticate(m, next.AccessToken); err != nil {
		t.Fatal(err)
	}
}

func TestRehashOnLogin(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	users := memory.NewUsers()
	old := newModule(t, moduleOptions{users: users, cfg: func(c *auth.Config) { c.Argon2MemoryKiB = 64 }})
	u := register(t, old, "legacy@example.com")
	before, err := users.ByID(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(before.PasswordHash, "m=64,") {
		t.Fatalf("hash %s", before.PasswordHash)
	}
	// The operators raise the memory cost; the next login upgrades the hash.
	upgraded := newModule(t, moduleOptions{users: users, cfg: func(c *auth.Config) { c.Argon2MemoryKiB = 128 }})
	login(t, upgraded, "legacy@example.com", password, "")
	after, err := users.ByID(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if after.PasswordHash == before.PasswordHash || !strings.Contains(after.PasswordHash, "m=128,") {
		t.Fatalf("hash not upgraded: %s", after.PasswordHash)
	}
	if ok, err := argon2id.ComparePasswordAndHash(password, after.PasswordHash); err != nil || !ok {
		t.Fatalf("upgraded hash does not verify: %v", err)
	}
	// Logging in again keeps it (no upgrade needed), and a wrong password upgrades nothing.
	login(t, upgraded, "legacy@example.com", password, "")
	if _, err := upgraded.svc.Login(ctx, "legacy@example.com", "wrong password", ""); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatal(err)
	}
	again, _ := users.ByID(ctx, u.ID)
	if again.PasswordHash != after.PasswordHash {
		t.Fatal("the hash changed again")
	}
	// A replica still on the old parameters does not downgrade it.
	login(t, old, "legacy@example.com", password, "")
	if again, _ := users.ByID(ctx, u.ID); again.PasswordHash != after.PasswordHash {
		t.Fatal("an old replica downgraded the hash")
	}
}

func TestLoginBusy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// One worker, a queue of one, and slow hashes: a storm of logins gets 503s with Retry-After.
	m := newModule(t, moduleOptions{cfg: func(c *auth.Config) {
		c.Argon2MemoryKiB, c.Argon2Time, c.HashWorkers, c.HashQueue = 8<<10, 3, 1, 1
	}})
	register(t, m, "storm@example.com")
	const n = 6
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := m.svc.Login(ctx, "storm@example.com", password, "")
			errs <- err
		}()
	}
	busy := 0
	for range n {
		err := <-errs
		switch {
		case err == nil:
		case errors.Is(err, auth.ErrHashBusy):
			busy++
			if pe := problem.As(err); pe.RetryAfter <= 0 || pe.Kind.Status() != 503 {
				t.Fatalf("busy: %#v", pe)
			}
		default:
			t.Fatalf("login: %v", err)
		}
	}
	if busy == 0 {
		t.Fatalf("%d simultaneous logins on one worker with a queue of one, none refused", n)
	}
	// A busy refusal is not a failed login: the account is not throttled by it.
	login(t, m, "storm@example.com", password, "")
}

// BenchmarkLogin measures a whole login (store lookups, one argon2id check with OWASP
// parameters, a session and a signed token), to compare with BenchmarkArgon2idRaw.
func BenchmarkLogin(b *testing.B) {
	m := newModule(b, moduleOptions{cfg: func(c *auth.Config) {
		c.Argon2MemoryKiB, c.Argon2Time, c.Argon2Threads, c.HashWorkers = 19456, 2, 1, 1
	}})
	ctx := context.Background()
	if _, err := m.svc.Register(ctx, "bench@example.com", password, "Bench"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := m.svc.Login(ctx, "bench@example.com", password, "192.0.2.1"); err != nil {
			b.Fatal(err)
		}
	}
}
