package authtest

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/onsale-dev/onsale/internal/platform/keyset"
)

// HostileToken is an access token that a verifier must refuse.
type HostileToken struct {
	Name  string
	Token string
}

var b64 = base64.RawURLEncoding

// ForgeToken builds a compact JWS by hand from a header and claims and signs it with sign (nil
// leaves the signature empty). Tests use it to make tokens our issuer never would.
func ForgeToken(t testing.TB, header, claims map[string]any, sign func(input []byte) []byte) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	input := b64.EncodeToString(h) + "." + b64.EncodeToString(c)
	var sig []byte
	if sign != nil {
		sig = sign([]byte(input))
	}
	return input + "." + b64.EncodeToString(sig)
}

// EdDSA signs with an Ed25519 private key.
func EdDSA(priv ed25519.PrivateKey) func([]byte) []byte {
	return func(in []byte) []byte { return ed25519.Sign(priv, in) }
}

// HS256 signs with HMAC-SHA256 under secret.
func HS256(secret []byte) func([]byte) []byte {
	return func(in []byte) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write(in)
		return m.Sum(nil)
	}
}

// TokenClaims decodes a token's claims without checking anything.
func TokenClaims(t testing.TB, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %q", token)
	}
	data, err := b64.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("decode claims: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(data, &claims); err != nil {
		t.Fatalf("decode claims: %v", err)
	}
	return claims
}

// HostileTokens derives, from a valid token that keys signed, tokens that must each be refused
// by a verifier whose clock reads now: every attack the issue names, and a few more.
func HostileTokens(t testing.TB, keys *keyset.Set, valid string, now time.Time) []HostileToken {
	t.Helper()
	kid, priv := keys.SigningKey()
	pub := priv.Public().(ed25519.PublicKey)
	claims := TokenClaims(t, valid)
	with := func(changes map[string]any) map[string]any {
		c := maps.Clone(claims)
		for k, v := range changes {
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
		}
		return c
	}
	ours := map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": kid}
	header := func(changes map[string]any) map[string]any {
		h := maps.Clone(ours)
		for k, v := range changes {
			if v == nil {
				delete(h, k)
			} else {
				h[k] = v
			}
		}
		return h
	}
	_, attacker, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	attackerJWK := map[string]any{
		"kty": "OKP", "crv": "Ed25519", "kid": "attacker",
		"x": b64.EncodeToString(attacker.Public().(ed25519.PublicKey)),
	}
	sec := now.Unix()
	parts := strings.Split(valid, ".")
	tampered := with(map[string]any{"role": "organizer"})
	tamperedJSON, _ := json.Marshal(tampered)

	return []HostileToken{
		{"alg none", ForgeToken(t, header(map[string]any{"alg": "none"}), claims, nil)},
		{"alg none with our signature", ForgeToken(t, header(map[string]any{"alg": "none"}), claims, EdDSA(priv))},
		{"HS256 with the public key", ForgeToken(t, header(map[string]any{"alg": "HS256"}), claims, HS256(pub))},
		{"HS256 with the JWKS x", ForgeToken(t, header(map[string]any{"alg": "HS256"}), claims, HS256([]byte(b64.EncodeToString(pub))))},
		{"unknown kid", ForgeToken(t, header(map[string]any{"kid": "no-such-key"}), claims, EdDSA(attacker))},
		{"no kid", ForgeToken(t, header(map[string]any{"kid": nil}), claims, EdDSA(priv))},
		{"our kid, another key", ForgeToken(t, ours, claims, EdDSA(attacker))},
		{"expired", ForgeToken(t, ours, with(map[string]any{"iat": sec - 7200, "nbf": sec - 7200, "exp": sec - 3600}), EdDSA(priv))},
		{"not yet valid", ForgeToken(t, ours, with(map[string]any{"nbf": sec + 3600, "exp": sec + 7200}), EdDSA(priv))},
		{"issued in the future", ForgeToken(t, ours, with(map[string]any{"iat": sec + 3600, "nbf": nil, "exp": sec + 7200}), EdDSA(priv))},
		{"wrong aud", ForgeToken(t, ours, with(map[string]any{"aud": []string{"someone-else"}}), EdDSA(priv))},
		{"wrong iss", ForgeToken(t, ours, with(map[string]any{"iss": "https://evil.example"}), EdDSA(priv))},
		{"missing exp", ForgeToken(t, ours, with(map[string]any{"exp": nil}), EdDSA(priv))},
		{"missing sid", ForgeToken(t, ours, with(map[string]any{"sid": nil}), EdDSA(priv))},
		{"unknown role", ForgeToken(t, ours, with(map[string]any{"role": "root"}), EdDSA(priv))},
		{"tampered payload", parts[0] + "." + b64.EncodeToString(tamperedJSON) + "." + parts[2]},
		{"truncated", valid[:len(valid)-10]},
		{"signature cut off", parts[0] + "." + parts[1] + "."},
		{"garbage", "not-a-token"},
		{"garbage with dots", "aaaa.bbbb.cccc"},
		{"10 KiB", strings.Repeat("A", 10<<10)},
		{"embedded jwk with our kid", ForgeToken(t, header(map[string]any{"jwk": attackerJWK}), claims, EdDSA(attacker))},
		{"embedded jwk with its own kid", ForgeToken(t, header(map[string]any{"kid": "attacker", "jwk": attackerJWK}), claims, EdDSA(attacker))},
		{"jku elsewhere", ForgeToken(t, header(map[string]any{"kid": "attacker", "jku": "http://127.0.0.1:1/jwks.json"}), claims, EdDSA(attacker))},
		{"jku elsewhere with our kid", ForgeToken(t, header(map[string]any{"jku": "http://127.0.0.1:1/jwks.json"}), claims, EdDSA(attacker))},
		{"JSON serialization", `{"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`},
		{"general JSON serialization", `{"payload":"` + parts[1] + `","signatures":[{"protected":"` + parts[0] + `","signature":"` + parts[2] + `"}]}`},
		{"compact with padding", parts[0] + "=." + parts[1] + "." + parts[2]},
		{"four segments", valid + ".AAAA"},
	}
}
