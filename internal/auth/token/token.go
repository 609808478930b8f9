// Package token signs and verifies onsale's access tokens: JWTs signed with EdDSA (Ed25519),
// naming their key in the kid header. It is the one place that knows the JWT library, so moving
// to another version of it touches nothing else.
//
// Verification accepts only EdDSA and only keys from our own set: a token's alg, jku, x5u or
// embedded jwk headers can never choose the key. Verified tokens are remembered in a bounded LRU
// keyed by a SHA-256 of the token until they expire, so the common check is a hash and a map
// lookup instead of a signature verification.
package token

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"hash/maphash"
	"strings"
	"time"

	"github.com/google/uuid"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/onsale-dev/onsale/internal/auth"
	"github.com/onsale-dev/onsale/internal/platform/clock"
	"github.com/onsale-dev/onsale/internal/platform/keyset"
	"github.com/onsale-dev/onsale/internal/platform/problem"
)

// Skew is the clock difference tolerated between replicas for exp, nbf and iat.
const Skew = 30 * time.Second

// maxTokenBytes refuses absurd inputs before any parsing.
const maxTokenBytes = 4096

// Issuer signs access tokens with the set's signing key.
type Issuer struct {
	keys     *keyset.Set
	issuer   string
	audience string
	clock    clock.Clock
	verifier *Verifier // told about every token issued, when set
}

// RememberIn makes every token this issuer signs known to v as already verified. Customers log in
// minutes before an on-sale; without this, the on-sale's first request from each of them would pay
// a full signature verification at the very moment the crowd arrives.
func (i *Issuer) RememberIn(v *Verifier) { i.verifier = v }

// NewIssuer returns an issuer for iss and aud.
func NewIssuer(keys *keyset.Set, iss, aud string, clk clock.Clock) *Issuer {
	return &Issuer{keys: keys, issuer: iss, audience: aud, clock: clk}
}

// Issue signs the claims; ExpiresAt must be set.
func (i *Issuer) Issue(c auth.Claims) (string, error) {
	now := i.clock.Now()
	tok, err := jwt.NewBuilder().
		Issuer(i.issuer).
		Audience([]string{i.audience}).
		Subject(c.UserID.String()).
		IssuedAt(now).
		NotBefore(now).
		Expiration(c.ExpiresAt).
		JwtID(c.TokenID).
		Claim("sid", c.SessionID).
		Claim("role", string(c.Role)).
		Build()
	if err != nil {
		return "", fmt.Errorf("build token: %w", err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.EdDSA, i.keys.Signing()))
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	if i.verifier != nil {
		c.ExpiresAt = c.ExpiresAt.Truncate(time.Second) // as the token carries it
		i.verifier.remember(string(signed), c)
	}
	return string(signed), nil
}

// PublicKeys finds the public key a token's kid names: the process's own key set where auth runs,
// or the set fetched from auth (FetchedKeys) where it does not.
type PublicKeys interface {
	PublicKey(kid string) (ed25519.PublicKey, bool)
}

// Verifier checks access tokens locally.
type Verifier struct {
	keys     PublicKeys
	issuer   string
	audience string
	clock    clock.Clock
	// cache maps a token's hash under seed to the token and its claims. The token is kept to be
	// compared on a hit, so a hash collision is a miss, never another token's claims; a fast
	// hash of the token rather than a SHA-256 showed in profiles of every authenticated request.
	cache *lru.Cache[uint64, cached]
	seed  maphash.Seed
}

// cached is a verified token and its claims.
type cached struct {
	token  string
	claims auth.Claims
}

// remember caches the claims of a verified token.
func (v *Verifier) remember(token string, c auth.Claims) {
	v.cache.Add(maphash.String(v.seed, token), cached{token: strings.Clone(token), claims: c})
}

// lookup returns the cached claims of token.
func (v *Verifier) lookup(key uint64, token string) (auth.Claims, bool) {
	e, ok := v.cache.Get(key)
	if !ok || e.token != token {
		return auth.Claims{}, false
	}
	return e.claims, true
}

var _ auth.Verifier = (*Verifier)(nil)

// NewVerifier returns a verifier that remembers up to cacheSize verified tokens.
func NewVerifier(keys PublicKeys, iss, aud string, cacheSize int, clk clock.Clock) (*Verifier, error) {
	cache, err := lru.New[uint64, cached](cacheSize)
	if err != nil {
		return nil, err
	}
	return &Verifier{keys: keys, issuer: iss, audience: aud, clock: clk, cache: cache, seed: maphash.MakeSeed()}, nil
}

// Verify returns the token's claims, or ErrInvalidToken with a detail that says what was wrong
// (never which key or secret). With keys fetched from auth, a token whose kid cannot be looked up
// because the keys cannot be fetched gets an Unavailable problem instead: it may well be good, and
// the client must keep it and retry rather than throw it away.
func (v *Verifier) Verify(token string) (auth.Claims, error) {
	if len(token) == 0 || len(token) > maxTokenBytes {
		return auth.Claims{}, auth.ErrInvalidToken.WithDetail("the token is malformed")
	}
	key := maphash.String(v.seed, token)
	now := v.clock.Now()
	if c, ok := v.lookup(key, token); ok {
		if now.Before(c.ExpiresAt.Add(Skew)) {
			return c, nil
		}
		v.cache.Remove(key)
		return auth.Claims{}, auth.ErrInvalidToken.WithDetail("the token has expired")
	}
	if !compact(token) {
		// jwx would also accept the JWS JSON serializations; a bearer token is compact only.
		return auth.Claims{}, auth.ErrInvalidToken.WithDetail("the token is not a JWS in compact form")
	}
	c, err := v.parse(token, now)
	if err != nil {
		return auth.Claims{}, err
	}
	v.remember(token, c)
	return c, nil
}

// compact tells whether token has the JWS compact form: three non-empty base64url segments
// separated by dots (RFC 7515 section 7.1).
func compact(token string) bool {
	segments := 1
	prev := byte('.')
	for i := 0; i < len(token); i++ {
		b := token[i]
		switch {
		case b == '.':
			if prev == '.' {
				return false
			}
			segments++
		case b >= 'A' && b <= 'Z', b >= 'a' && b <= 'z', b >= '0' && b <= '9', b == '-', b == '_':
		default:
			return false
		}
		prev = b
	}
	return segments == 3 && prev != '.'
}

func (v *Verifier) parse(token string, now time.Time) (auth.Claims, error) {
	tok, err := jwt.ParseString(token,
		jwt.WithKeyProvider(jws.KeyProviderFunc(v.fetchKey)),
		jwt.WithValidate(true),
		jwt.WithIssuer(v.issuer),
		jwt.WithAudience(v.audience),
		jwt.WithAcceptableSkew(Skew),
		jwt.WithRequiredClaim(jwt.ExpirationKey),
		jwt.WithRequiredClaim(jwt.SubjectKey),
		jwt.WithRequiredClaim("sid"),
		jwt.WithRequiredClaim("role"),
		jwt.WithClock(jwt.ClockFunc(func() time.Time { return now })),
	)
	if errors.Is(err, errKeysUnavailable) {
		return auth.Claims{}, problem.Unavailablef(err, time.Second, "access tokens cannot be checked right now")
	}
	if err != nil {
		return auth.Claims{}, auth.ErrInvalidToken.WithDetail("%s", reason(err))
	}
	sid, _ := tok.Get("sid")
	role, _ := tok.Get("role")
	sidStr, _ := sid.(string)
	roleStr, _ := role.(string)
	uid, err := uuid.Parse(tok.Subject())
	if err != nil || sidStr == "" || !auth.Role(roleStr).Valid() {
		return auth.Claims{}, auth.ErrInvalidToken.WithDetail("the token's claims are not ours")
	}
	return auth.Claims{
		UserID:    uid,
		Role:      auth.Role(roleStr),
		SessionID: sidStr,
		TokenID:   tok.JwtID(),
		ExpiresAt: tok.Expiration(),
	}, nil
}

// fetchKey hands jwx the public key that the token's kid names, only when its alg header says
// EdDSA. (With a key set, jwx verifies with the key's own algorithm whatever the header says, so a
// token headed "alg":"none" or "HS256" would pass if its signature happened to be a good EdDSA
// one; the contract is that only EdDSA tokens are accepted.)
func (v *Verifier) fetchKey(_ context.Context, sink jws.KeySink, sig *jws.Signature, _ *jws.Message) error {
	h := sig.ProtectedHeaders()
	if h.Algorithm() != jwa.EdDSA {
		return errors.New("alg is not EdDSA")
	}
	k, err := v.publicKey(h.KeyID())
	if err != nil {
		return err
	}
	sink.Key(jwa.EdDSA, k)
	return nil
}

// publicKey looks kid up; keys fetched from auth can also say that they could not be fetched.
func (v *Verifier) publicKey(kid string) (ed25519.PublicKey, error) {
	if fetched, ok := v.keys.(*FetchedKeys); ok {
		return fetched.lookup(kid)
	}
	if k, ok := v.keys.PublicKey(kid); ok {
		return k, nil
	}
	return nil, errUnknownKid
}

func reason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired()):
		return "the token has expired"
	case errors.Is(err, jwt.ErrTokenNotYetValid()):
		return "the token is not valid yet"
	case errors.Is(err, jwt.ErrInvalidIssuer()):
		return "the token was issued by someone else"
	case errors.Is(err, jwt.ErrInvalidAudience()):
		return "the token is meant for someone else"
	case errors.Is(err, jwt.ErrInvalidIssuedAt()):
		return "the token was issued in the future"
	case errors.Is(err, jwt.ErrRequiredClaim()):
		return "the token lacks a required claim"
	default:
		return "the token's signature or format is not valid"
	}
}
