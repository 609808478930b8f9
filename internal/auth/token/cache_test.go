package token

import (
	"hash/maphash"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/auth"
)

// TestCacheCollisionIsAMiss: the cache is keyed by a 64-bit hash of the token, so two tokens can
// share a key; the entry's own token decides, and another token's claims are never returned.
func TestCacheCollisionIsAMiss(t *testing.T) {
	v, err := NewVerifier(nil, "iss", "aud", 16, nil)
	if err != nil {
		t.Fatal(err)
	}
	alice := auth.Claims{UserID: uuid.New(), ExpiresAt: time.Now().Add(time.Hour)}
	v.remember("token-of-alice", alice)
	if got, ok := v.lookup(maphash.String(v.seed, "token-of-alice"), "token-of-alice"); !ok || got != alice {
		t.Fatalf("lookup of a remembered token = %+v, %v", got, ok)
	}
	// Bob's token under the key Alice's entry holds, as a collision would put it.
	v.cache.Add(maphash.String(v.seed, "token-of-bob"), cached{token: "token-of-alice", claims: alice})
	if got, ok := v.lookup(maphash.String(v.seed, "token-of-bob"), "token-of-bob"); ok {
		t.Fatalf("a colliding entry answered another token's claims: %+v", got)
	}
}
