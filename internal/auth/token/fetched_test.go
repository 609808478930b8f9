package token_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/onsale-dev/onsale/internal/auth"
	"github.com/onsale-dev/onsale/internal/auth/authtest"
	"github.com/onsale-dev/onsale/internal/auth/token"
	"github.com/onsale-dev/onsale/internal/platform/clock"
	"github.com/onsale-dev/onsale/internal/platform/problem"
)

// authSide plays the auth module's JWKS endpoint: it serves the set, or fails as an unreachable
// auth (or one refusing this process's secret) would.
type authSide struct {
	mu   sync.Mutex
	set  []byte
	down bool
	// stall, when set, holds every fetch until it is closed; entered is told when one waits.
	stall   chan struct{}
	entered chan struct{}
}

func (a *authSide) fetch(context.Context) ([]byte, error) {
	a.mu.Lock()
	stall, entered := a.stall, a.entered
	a.mu.Unlock()
	if stall != nil {
		entered <- struct{}{}
		<-stall
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.down {
		return nil, errors.New("dial tcp 127.0.0.1:9090: connect: connection refused")
	}
	return a.set, nil
}

func (a *authSide) setDown(down bool) {
	a.mu.Lock()
	a.down = down
	a.mu.Unlock()
}

func wantUnavailable(t *testing.T, v *token.Verifier, name, tok string) {
	t.Helper()
	_, err := v.Verify(tok)
	if errors.Is(err, auth.ErrInvalidToken) || problem.KindOf(err) != problem.Unavailable || problem.As(err).RetryAfter <= 0 {
		t.Fatalf("%s: got %v, want an unavailable problem with Retry-After, never invalid-token", name, err)
	}
}

// TestFetchedKeysUnreachable: a process without auth that cannot fetch auth's public keys cannot
// tell a good token from a bad one, so it answers Unavailable (retry later), never invalid-token
// (which makes clients throw their token away). A token it can judge without the keys, or with
// the keys it has, is still refused as invalid.
func TestFetchedKeysUnreachable(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(start)
	oldData, oldSet := generate(t, nil)
	oldJWKS, err := oldSet.PublicJSON()
	if err != nil {
		t.Fatal(err)
	}
	side := &authSide{set: oldJWKS, down: true}
	v := fetchingVerifier(t, token.NewFetchedKeys(side.fetch, clk), clk)
	good := issue(t, token.NewIssuer(oldSet, iss, aud, clk), claims(clk, 15*time.Minute))

	// No keys known yet, auth unreachable: the good token is neither accepted nor refused.
	wantUnavailable(t, v, "no keys yet", good)
	clk.Advance(50 * time.Millisecond) // within the retry gap: no fetch, the last one failed
	wantUnavailable(t, v, "no keys yet, before the next attempt", good)
	wantInvalid(t, v, "garbage while auth is away", "not-a-token")

	// Auth answers again: the same token is good.
	side.setDown(false)
	clk.Advance(time.Second)
	if _, err := v.Verify(good); err != nil {
		t.Fatalf("once auth answers: %v", err)
	}

	// Keys known: a token signed by a stranger with our kid is bad whether or not auth answers,
	// and so is an expired one.
	kid, priv := oldSet.SigningKey()
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	forged := authtest.ForgeToken(t, map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": kid}, authtest.TokenClaims(t, good), authtest.EdDSA(stranger))
	sec := clk.Now().Unix()
	expiredClaims := authtest.TokenClaims(t, good)
	expiredClaims["iat"], expiredClaims["nbf"], expiredClaims["exp"] = sec-7200, sec-7200, sec-3600
	expired := authtest.ForgeToken(t, map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": kid}, expiredClaims, authtest.EdDSA(priv))
	side.setDown(true)
	clk.Advance(time.Second)
	wantInvalid(t, v, "a stranger's signature under our kid, auth away", forged)
	wantInvalid(t, v, "expired, auth away", expired)

	// Auth rotated its key while this process could not reach it: a token under the new kid
	// cannot be judged.
	_, newSet := generate(t, oldData)
	rotated := issue(t, token.NewIssuer(newSet, iss, aud, clk), claims(clk, 15*time.Minute))
	wantUnavailable(t, v, "a new kid, auth away", rotated)

	// With auth answering, an unknown kid is the token's fault.
	side.setDown(false)
	clk.Advance(time.Second)
	_, foreign := generate(t, nil)
	wantInvalid(t, v, "a kid auth does not have", issue(t, token.NewIssuer(foreign, iss, aud, clk), claims(clk, 15*time.Minute)))
	newJWKS, err := newSet.PublicJSON()
	if err != nil {
		t.Fatal(err)
	}
	side.mu.Lock()
	side.set = newJWKS
	side.mu.Unlock()
	clk.Advance(time.Second)
	if _, err := v.Verify(rotated); err != nil {
		t.Fatalf("the new kid once auth publishes it: %v", err)
	}
}

// TestFetchedKeysSlowAuth: while a fetch waits on a slow auth (a token under a new kid asked
// for it), tokens under kids already known are still checked: they never wait for the fetch.
func TestFetchedKeysSlowAuth(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(start)
	_, set := generate(t, nil)
	jwks, err := set.PublicJSON()
	if err != nil {
		t.Fatal(err)
	}
	side := &authSide{set: jwks}
	v := fetchingVerifier(t, token.NewFetchedKeys(side.fetch, clk), clk)
	good := issue(t, token.NewIssuer(set, iss, aud, clk), claims(clk, 15*time.Minute))
	if _, err := v.Verify(good); err != nil {
		t.Fatalf("first token: %v", err)
	}

	side.mu.Lock()
	side.stall, side.entered = make(chan struct{}), make(chan struct{})
	side.mu.Unlock()
	clk.Advance(time.Second)
	_, foreign := generate(t, nil)
	unknown := issue(t, token.NewIssuer(foreign, iss, aud, clk), claims(clk, 15*time.Minute))
	done := make(chan error, 1)
	go func() {
		_, err := v.Verify(unknown)
		done <- err
	}()
	<-side.entered // the fetch for the unknown kid is under way, and stays so

	// A fresh token under the known kid (not in the verifier's cache) is checked meanwhile.
	clk.Advance(time.Millisecond)
	other := issue(t, token.NewIssuer(set, iss, aud, clk), claims(clk, 15*time.Minute))
	checked := make(chan error, 1)
	go func() {
		_, err := v.Verify(other)
		checked <- err
	}()
	select {
	case err := <-checked:
		if err != nil {
			t.Fatalf("a token under a known kid during a fetch: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a token under a known kid waited for a fetch of auth's keys")
	}
	close(side.stall)
	if err := <-done; !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("the unknown kid once auth answered: %v, want invalid-token", err)
	}
}

func fetchingVerifier(t *testing.T, keys token.PublicKeys, clk clock.Clock) *token.Verifier {
	t.Helper()
	v, err := token.NewVerifier(keys, iss, aud, 16, clk)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
