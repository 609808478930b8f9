package authtest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/onsale-dev/onsale/internal/auth"
)

// TokenChecker is the auth port other modules declare (inventory's and payment's Authenticator):
// turning an Authorization header into a Principal, and telling a stream whether its session is
// still live.
type TokenChecker interface {
	Authenticate(ctx context.Context, header string) (auth.Principal, error)
	StillActive(ctx context.Context, p auth.Principal) error
}

// SessionFixture makes sessions through the auth module itself, never through the port under
// test.
type SessionFixture interface {
	// Login makes a customer, logs them in and returns the access token.
	Login(t *testing.T) string
	// Logout ends the session of the token.
	Logout(t *testing.T, accessToken string)
}

// AuthenticatorContract is the contract of the auth port. It runs against the auth module in
// process and against a process without it (auth's public keys, sessions shared or asked over
// the internal API): a token is accepted or refused the same way, and a logout ends access
// within revocationBound.
func AuthenticatorContract(t *testing.T, revocationBound time.Duration, newPort func(t *testing.T) (TokenChecker, SessionFixture)) {
	port, fx := newPort(t)
	ctx := context.Background()

	t.Run("ValidToken", func(t *testing.T) {
		tok := fx.Login(t)
		p, err := port.Authenticate(ctx, "Bearer "+tok)
		if err != nil {
			t.Fatalf("authenticate: %v", err)
		}
		if p.Role != auth.RoleCustomer || p.SessionID == "" || p.ExpiresAt.Before(time.Now()) {
			t.Fatalf("principal %+v", p)
		}
		if err := port.StillActive(ctx, p); err != nil {
			t.Fatalf("still active: %v", err)
		}
		// Repeated checks are answered the same (from caches where there are).
		for range 3 {
			if _, err := port.Authenticate(ctx, "Bearer "+tok); err != nil {
				t.Fatalf("authenticate again: %v", err)
			}
		}
	})

	t.Run("RefusedTokens", func(t *testing.T) {
		tok := fx.Login(t)
		parts := strings.Split(tok, ".")
		_, foreign, _ := ed25519.GenerateKey(rand.Reader)
		forged := ForgeToken(t, map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": "someone-else"}, TokenClaims(t, tok), EdDSA(foreign))
		for name, header := range map[string]string{
			"no header":          "",
			"another scheme":     "Basic " + tok,
			"garbage":            "Bearer not-a-token",
			"tampered":           "Bearer " + parts[0] + "." + parts[1] + "x." + parts[2],
			"JSON serialization": `Bearer {"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`,
			"a stranger's key":   "Bearer " + forged,
		} {
			_, err := port.Authenticate(ctx, header)
			if !errors.Is(err, auth.ErrInvalidToken) {
				t.Errorf("%s: got %v, want invalid-token", name, err)
			}
		}
	})

	t.Run("LogoutEndsAccess", func(t *testing.T) {
		tok := fx.Login(t)
		p, err := port.Authenticate(ctx, "Bearer "+tok)
		if err != nil {
			t.Fatalf("authenticate: %v", err)
		}
		fx.Logout(t, tok)
		deadline := time.Now().Add(revocationBound)
		for {
			_, aerr := port.Authenticate(ctx, "Bearer "+tok)
			serr := port.StillActive(ctx, p)
			if errors.Is(aerr, auth.ErrSessionEnded) && errors.Is(serr, auth.ErrSessionEnded) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s after logout: authenticate %v, still active %v; want session-ended", revocationBound, aerr, serr)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}
