package token

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/onsale-dev/onsale/internal/platform/clock"
)

// FetchedKeys is auth's public key set as fetched from the auth module, for a process that does
// not run it: such a process verifies tokens with no private key at all. A kid it does not know
// (auth rotated its keys) makes it fetch the set again at once, at most once per refetchGap, so a
// flood of forged kids costs auth one request a second; Refresh also runs every few minutes.
type FetchedKeys struct {
	fetch func(ctx context.Context) ([]byte, error)
	clock clock.Clock

	mu      sync.Mutex
	keys    map[string]ed25519.PublicKey
	fetched time.Time // last attempt
	failed  bool      // the last attempt failed
}

// refetchGap is the least time between two fetches caused by unknown kids; after a failed
// fetch (auth was still starting, say) the next may come sooner, retryGap.
const (
	refetchGap = time.Second
	retryGap   = 100 * time.Millisecond
)

// fetchTimeout bounds a fetch made while a request waits for its token to be checked.
const fetchTimeout = 2 * time.Second

// NewFetchedKeys returns an empty set that fetch fills (a JWK set document).
func NewFetchedKeys(fetch func(ctx context.Context) ([]byte, error), clk clock.Clock) *FetchedKeys {
	return &FetchedKeys{fetch: fetch, clock: clk, keys: map[string]ed25519.PublicKey{}}
}

// PublicKey implements PublicKeys.
func (k *FetchedKeys) PublicKey(kid string) (ed25519.PublicKey, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if key, ok := k.keys[kid]; ok {
		return key, true
	}
	gap := refetchGap
	if k.failed {
		gap = retryGap
	}
	if k.clock.Now().Sub(k.fetched) < gap {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	_ = k.refreshLocked(ctx) // a failure leaves the known keys; the token is refused
	key, ok := k.keys[kid]
	return key, ok
}

// Refresh fetches the set now.
func (k *FetchedKeys) Refresh(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.refreshLocked(ctx)
}

func (k *FetchedKeys) refreshLocked(ctx context.Context) error {
	k.fetched, k.failed = k.clock.Now(), true
	data, err := k.fetch(ctx)
	if err != nil {
		return fmt.Errorf("fetch auth's public keys: %w", err)
	}
	keys, err := parsePublicSet(data)
	if err != nil {
		return err
	}
	k.keys, k.failed = keys, false
	return nil
}

// parsePublicSet reads the Ed25519 public keys of a JWK set; anything else in it is ignored.
func parsePublicSet(data []byte) (map[string]ed25519.PublicKey, error) {
	set, err := jwk.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("parse auth's public keys: %w", err)
	}
	out := map[string]ed25519.PublicKey{}
	for i := 0; i < set.Len(); i++ {
		key, _ := set.Key(i)
		var raw ed25519.PublicKey
		if key.KeyID() == "" || key.Raw(&raw) != nil {
			continue
		}
		out[key.KeyID()] = raw
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("auth's public key set has no Ed25519 keys")
	}
	return out, nil
}
