package token

import (
	"context"
	"crypto/ed25519"
	"errors"
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
//
// A kid the set lacks is the token's fault only when the set could be fetched: while auth cannot
// be reached (or refuses this process's internal secret), such a token may be perfectly good, and
// the Verifier answers Unavailable rather than invalid-token.
type FetchedKeys struct {
	fetch func(ctx context.Context) ([]byte, error)
	clock clock.Clock

	// fetching lets one fetch run at a time; mu guards what it leaves. They are apart so that
	// tokens under known kids are checked while a fetch waits on a slow auth.
	fetching sync.Mutex
	mu       sync.RWMutex
	keys     map[string]ed25519.PublicKey
	fetched  time.Time // last attempt
	failure  error     // why the last attempt failed; nil when it succeeded
}

// errKeysUnavailable marks a kid that could not be looked up because auth's keys could not be
// fetched; errUnknownKid, one that auth's current set does not have.
var (
	errKeysUnavailable = errors.New("auth's public keys cannot be fetched")
	errUnknownKid      = errors.New("no key with this kid")
)

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
	key, err := k.lookup(kid)
	return key, err == nil
}

// lookup returns the key kid names, fetching the set again for a kid it does not know. The error
// is errUnknownKid when auth's set, freshly fetched, lacks kid, and wraps errKeysUnavailable when
// the set could not be fetched (now, or at the last attempt, too recent to try again).
func (k *FetchedKeys) lookup(kid string) (ed25519.PublicKey, error) {
	if key, ok := k.known(kid); ok {
		return key, nil
	}
	k.fetching.Lock()
	defer k.fetching.Unlock()
	// Another request may have fetched the set while this one waited.
	k.mu.RLock()
	key, ok := k.keys[kid]
	fetched, failure := k.fetched, k.failure
	k.mu.RUnlock()
	if ok {
		return key, nil
	}
	gap := refetchGap
	if failure != nil {
		gap = retryGap
	}
	if k.clock.Now().Sub(fetched) >= gap {
		ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
		defer cancel()
		failure = k.refresh(ctx) // a failure leaves the known keys
		if key, ok := k.known(kid); ok {
			return key, nil
		}
	}
	if failure != nil {
		return nil, fmt.Errorf("%w: %w", errKeysUnavailable, failure)
	}
	return nil, errUnknownKid
}

func (k *FetchedKeys) known(kid string) (ed25519.PublicKey, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	key, ok := k.keys[kid]
	return key, ok
}

// Refresh fetches the set now.
func (k *FetchedKeys) Refresh(ctx context.Context) error {
	k.fetching.Lock()
	defer k.fetching.Unlock()
	return k.refresh(ctx)
}

// refresh fetches the set, with k.fetching held, and keeps the keys or the failure.
func (k *FetchedKeys) refresh(ctx context.Context) error {
	at := k.clock.Now()
	data, err := k.fetch(ctx)
	var keys map[string]ed25519.PublicKey
	if err != nil {
		err = fmt.Errorf("fetch auth's public keys: %w", err)
	} else {
		keys, err = parsePublicSet(data)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.fetched, k.failure = at, err
	if err == nil {
		k.keys = keys
	}
	return err
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
