package token_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/onsale-dev/onsale/internal/auth"
	"github.com/onsale-dev/onsale/internal/auth/authtest"
	"github.com/onsale-dev/onsale/internal/auth/token"
	"github.com/onsale-dev/onsale/internal/platform/clock"
	"github.com/onsale-dev/onsale/internal/platform/keyset"
)

const (
	iss = "onsale-test"
	aud = "onsale-api-test"
)

var start = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func generate(t testing.TB, existing []byte) ([]byte, *keyset.Set) {
	t.Helper()
	data, err := keyset.Generate(existing)
	if err != nil {
		t.Fatal(err)
	}
	set, err := keyset.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return data, set
}

func newVerifier(t testing.TB, keys *keyset.Set, size int, clk clock.Clock) *token.Verifier {
	t.Helper()
	v, err := token.NewVerifier(keys, iss, aud, size, clk)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func claims(clk clock.Clock, ttl time.Duration) auth.Claims {
	return auth.Claims{
		UserID:    uuid.New(),
		Role:      auth.RoleCustomer,
		SessionID: "sess-" + uuid.NewString(),
		TokenID:   uuid.NewString(),
		ExpiresAt: clk.Now().Add(ttl).Truncate(time.Second),
	}
}

func issue(t testing.TB, i *token.Issuer, c auth.Claims) string {
	t.Helper()
	tok, err := i.Issue(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func wantInvalid(t *testing.T, v *token.Verifier, name, tok string) {
	t.Helper()
	c, err := v.Verify(tok)
	if err == nil {
		t.Fatalf("%s: verified, claims %+v", name, c)
	}
	if !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("%s: want ErrInvalidToken, got %v", name, err)
	}
}

func TestIssueVerify(t *testing.T) {
	t.Parallel()
	_, keys := generate(t, nil)
	clk := clock.NewFake(start)
	c := claims(clk, 15*time.Minute)
	tok := issue(t, token.NewIssuer(keys, iss, aud, clk), c)

	// The header names our key and algorithm; the claims are the ones the issue lists.
	var hdr map[string]any
	head, _, _ := strings.Cut(tok, ".")
	data, err := b64decode(head)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &hdr); err != nil {
		t.Fatal(err)
	}
	kid, _ := keys.SigningKey()
	if hdr["alg"] != "EdDSA" || hdr["kid"] != kid {
		t.Fatalf("header %v: want alg EdDSA and kid %s", hdr, kid)
	}
	got := authtest.TokenClaims(t, tok)
	for _, name := range []string{"iss", "aud", "sub", "exp", "iat", "nbf", "jti", "sid", "role"} {
		if _, ok := got[name]; !ok {
			t.Errorf("claim %s missing from %v", name, got)
		}
	}

	v := newVerifier(t, keys, 16, clk)
	for range 2 { // parsed, then from the cache
		out, err := v.Verify(tok)
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		if out.UserID != c.UserID || out.Role != c.Role || out.SessionID != c.SessionID ||
			out.TokenID != c.TokenID || !out.ExpiresAt.Equal(c.ExpiresAt) {
			t.Fatalf("claims: got %+v, want %+v", out, c)
		}
	}
}

func b64decode(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(s)
}

func TestHostileTokens(t *testing.T) {
	t.Parallel()
	_, keys := generate(t, nil)
	clk := clock.NewFake(start)
	valid := issue(t, token.NewIssuer(keys, iss, aud, clk), claims(clk, 15*time.Minute))
	hostile := authtest.HostileTokens(t, keys, valid, clk.Now())
	hostile = append(hostile, authtest.HostileToken{Name: "empty", Token: ""})
	for _, h := range hostile {
		t.Run(h.Name, func(t *testing.T) {
			t.Parallel()
			// A fresh verifier each time, so nothing is answered from a cache.
			v := newVerifier(t, keys, 16, clk)
			wantInvalid(t, v, h.Name, h.Token)
			// Twice: a refusal is not cached as a success.
			wantInvalid(t, v, h.Name, h.Token)
			if _, err := v.Verify(valid); err != nil {
				t.Fatalf("the valid token after %s: %v", h.Name, err)
			}
		})
	}
}

func TestSkew(t *testing.T) {
	t.Parallel()
	_, keys := generate(t, nil)
	clk := clock.NewFake(start)
	c := claims(clk, time.Minute)
	tok := issue(t, token.NewIssuer(keys, iss, aud, clk), c)

	// 20 s past exp: inside the 30 s skew, both when parsed and when cached.
	cached := newVerifier(t, keys, 16, clk)
	if _, err := cached.Verify(tok); err != nil {
		t.Fatal(err)
	}
	clk.Set(c.ExpiresAt.Add(20 * time.Second))
	if _, err := newVerifier(t, keys, 16, clk).Verify(tok); err != nil {
		t.Fatalf("20 s past exp, parsed: %v", err)
	}
	if _, err := cached.Verify(tok); err != nil {
		t.Fatalf("20 s past exp, cached: %v", err)
	}
	// Beyond the skew: refused either way.
	clk.Set(c.ExpiresAt.Add(token.Skew + 2*time.Second))
	wantInvalid(t, newVerifier(t, keys, 16, clk), "31 s past exp, parsed", tok)
	wantInvalid(t, cached, "31 s past exp, cached", tok)

	// A replica whose clock runs 20 s behind the issuer's accepts a fresh token (nbf and iat
	// are 20 s in its future); one 2 minutes behind does not.
	issuerClk := clock.NewFake(start)
	fresh := issue(t, token.NewIssuer(keys, iss, aud, issuerClk), claims(issuerClk, 15*time.Minute))
	if _, err := newVerifier(t, keys, 16, clock.NewFake(start.Add(-20*time.Second))).Verify(fresh); err != nil {
		t.Fatalf("verifier 20 s behind: %v", err)
	}
	wantInvalid(t, newVerifier(t, keys, 16, clock.NewFake(start.Add(-2*time.Minute))), "verifier 2 min behind", fresh)
}

func TestCachedTokenExpires(t *testing.T) {
	t.Parallel()
	_, keys := generate(t, nil)
	clk := clock.NewFake(start)
	c := claims(clk, 15*time.Minute)
	tok := issue(t, token.NewIssuer(keys, iss, aud, clk), c)
	v := newVerifier(t, keys, 16, clk)
	if _, err := v.Verify(tok); err != nil {
		t.Fatal(err)
	}
	clk.Advance(15*time.Minute + token.Skew - time.Second)
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("cached, just inside exp+skew: %v", err)
	}
	clk.Advance(2 * time.Second)
	wantInvalid(t, v, "cached past exp+skew", tok)
	wantInvalid(t, v, "cached past exp+skew, again", tok)
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(start)
	oldData, oldSet := generate(t, nil)
	oldTok := issue(t, token.NewIssuer(oldSet, iss, aud, clk), claims(clk, 15*time.Minute))

	// A new key is added: it signs from now on, and the old one still verifies.
	newData, newSet := generate(t, oldData)
	oldKid, _ := oldSet.SigningKey()
	newKid, _ := newSet.SigningKey()
	if oldKid == newKid {
		t.Fatalf("the new set still signs with %s", oldKid)
	}
	if _, ok := newSet.PublicKey(oldKid); !ok {
		t.Fatal("the new set lost the old key")
	}
	newTok := issue(t, token.NewIssuer(newSet, iss, aud, clk), claims(clk, 15*time.Minute))
	if kid := headerKid(t, newTok); kid != newKid {
		t.Fatalf("new token signed with %s, want %s", kid, newKid)
	}
	v := newVerifier(t, newSet, 16, clk)
	if _, err := v.Verify(oldTok); err != nil {
		t.Fatalf("old token with both keys: %v", err)
	}
	if _, err := v.Verify(newTok); err != nil {
		t.Fatalf("new token with both keys: %v", err)
	}
	// A replica that has not heard of the new key yet refuses the new tokens.
	wantInvalid(t, newVerifier(t, oldSet, 16, clk), "new token, old set", newTok)

	// The old key is dropped: old tokens are refused, new ones still verify.
	onlyNew := withoutKey(t, newData, oldKid)
	v = newVerifier(t, onlyNew, 16, clk)
	wantInvalid(t, v, "old token after the old key is dropped", oldTok)
	if _, err := v.Verify(newTok); err != nil {
		t.Fatalf("new token, new key only: %v", err)
	}
}

func headerKid(t *testing.T, tok string) string {
	t.Helper()
	head, _, _ := strings.Cut(tok, ".")
	data, err := b64decode(head)
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(data, &h); err != nil {
		t.Fatal(err)
	}
	return h.Kid
}

func withoutKey(t *testing.T, data []byte, kid string) *keyset.Set {
	t.Helper()
	set, err := jwk.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	k, ok := set.LookupKeyID(kid)
	if !ok {
		t.Fatalf("no key %s", kid)
	}
	if err := set.RemoveKey(k); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	s, err := keyset.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPublicSetHasNoPrivateParts(t *testing.T) {
	t.Parallel()
	data, _ := generate(t, nil)
	_, keys := generate(t, data)
	doc, err := keys.PublicJSON()
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 2 {
		t.Fatalf("want 2 keys, got %s", doc)
	}
	for _, k := range set.Keys {
		if k["kty"] != "OKP" || k["crv"] != "Ed25519" || k["kid"] == "" || k["x"] == "" || k["alg"] != "EdDSA" {
			t.Errorf("key %v: want OKP Ed25519 with kid, x and alg EdDSA", k)
		}
		if _, ok := k["d"]; ok {
			t.Errorf("key %v has its private part", k)
		}
	}
}

// Benchmarks: the cached check should cost well under 2 µs; an uncached one about one Ed25519
// verification, which BenchmarkEd25519Raw measures alone as the baseline.

func BenchmarkVerifyCached(b *testing.B) {
	_, keys := generate(b, nil)
	clk := clock.System{}
	tok := issue(b, token.NewIssuer(keys, iss, aud, clk), claims(clk, time.Hour))
	v := newVerifier(b, keys, 1024, clk)
	if _, err := v.Verify(tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyUncached(b *testing.B) {
	_, keys := generate(b, nil)
	clk := clock.System{}
	iss := token.NewIssuer(keys, iss, aud, clk)
	// A cache of one entry and two tokens taken in turn: every check misses.
	toks := [2]string{issue(b, iss, claims(clk, time.Hour)), issue(b, iss, claims(clk, time.Hour))}
	v := newVerifier(b, keys, 1, clk)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := v.Verify(toks[i&1]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEd25519Raw(b *testing.B) {
	_, keys := generate(b, nil)
	clk := clock.System{}
	tok := issue(b, token.NewIssuer(keys, iss, aud, clk), claims(clk, time.Hour))
	// The same signing input and signature sizes as a real token.
	input := tok[:strings.LastIndexByte(tok, '.')]
	_, priv := keys.SigningKey()
	pub := priv.Public().(ed25519.PublicKey)
	sig := ed25519.Sign(priv, []byte(input))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if !ed25519.Verify(pub, []byte(input), sig) {
			b.Fatal("verify failed")
		}
	}
}

// TestIssuedTokensAreRemembered: a verifier the issuer reports to knows its tokens without parsing
// them, with the very claims a parse gives; a token changed in any way is still parsed and refused.
func TestIssuedTokensAreRemembered(t *testing.T) {
	t.Parallel()
	_, keys := generate(t, nil)
	clk := clock.NewFake(start)
	v := newVerifier(t, keys, 16, clk)
	i := token.NewIssuer(keys, iss, aud, clk)
	i.RememberIn(v)
	c := claims(clk, 15*time.Minute)
	c.ExpiresAt = c.ExpiresAt.Add(300 * time.Millisecond) // the token carries whole seconds
	tok := issue(t, i, c)
	cached, err := v.Verify(tok)
	if err != nil {
		t.Fatalf("verify a remembered token: %v", err)
	}
	parsed, err := newVerifier(t, keys, 16, clk).Verify(tok)
	if err != nil {
		t.Fatalf("parse the same token: %v", err)
	}
	if cached != parsed {
		t.Fatalf("remembered claims %+v differ from parsed %+v", cached, parsed)
	}
	// Change one character inside the signature (the last one carries padding bits too).
	at := len(tok) - 3
	swap := "A"
	if tok[at] == 'A' {
		swap = "B"
	}
	wantInvalid(t, v, "tampered remembered token", tok[:at]+swap+tok[at+1:])
	clk.Advance(16 * time.Minute)
	wantInvalid(t, v, "remembered token past its expiry", tok)
}
