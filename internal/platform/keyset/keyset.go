// Package keyset keeps Ed25519 signing keys as JWK sets: loaded from a file in production,
// generated once and kept in the data directory in embedded mode. The last key of a set signs;
// every key verifies, so a new key can be added while tokens signed with the previous one stay
// valid until they expire.
package keyset

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// Set is a set of Ed25519 private keys.
type Set struct {
	private jwk.Set
	public  jwk.Set
	signing jwk.Key
	byKID   map[string]ed25519.PublicKey
}

// Parse reads a JWK set of Ed25519 private keys. Every key needs a kid.
func Parse(data []byte) (*Set, error) {
	priv, err := jwk.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("parse key set: %w", err)
	}
	if priv.Len() == 0 {
		return nil, errors.New("key set is empty")
	}
	s := &Set{private: priv, byKID: map[string]ed25519.PublicKey{}}
	for i := 0; i < priv.Len(); i++ {
		k, _ := priv.Key(i)
		if k.KeyID() == "" {
			return nil, fmt.Errorf("key %d has no kid", i)
		}
		var raw ed25519.PrivateKey
		if err := k.Raw(&raw); err != nil {
			return nil, fmt.Errorf("key %s is not an Ed25519 private key", k.KeyID())
		}
		if _, dup := s.byKID[k.KeyID()]; dup {
			return nil, fmt.Errorf("kid %s appears twice", k.KeyID())
		}
		if err := k.Set(jwk.AlgorithmKey, jwa.EdDSA); err != nil {
			return nil, err
		}
		s.byKID[k.KeyID()] = raw.Public().(ed25519.PublicKey)
		s.signing = k
	}
	pub, err := jwk.PublicSetOf(priv)
	if err != nil {
		return nil, fmt.Errorf("public key set: %w", err)
	}
	s.public = pub
	return s, nil
}

// Load reads a key set file.
func Load(path string) (*Set, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key set: %w", err)
	}
	s, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// LoadOrCreate reads the key set at path, creating it with one new key (mode 0600) if the file
// does not exist.
func LoadOrCreate(path string) (*Set, error) {
	s, err := Load(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return s, err
	}
	data, err := Generate(nil)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create key directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return Load(path) // another process created it first
	}
	if err != nil {
		return nil, fmt.Errorf("create key set: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, fmt.Errorf("write key set: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return Parse(data)
}

// Generate returns a JWK set JSON with a new Ed25519 key appended to existing (nil for a new
// set). The new key signs from then on; the old ones keep verifying.
func Generate(existing []byte) ([]byte, error) {
	set := jwk.NewSet()
	if existing != nil {
		var err error
		if set, err = jwk.Parse(existing); err != nil {
			return nil, fmt.Errorf("parse existing key set: %w", err)
		}
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	k, err := jwk.FromRaw(priv)
	if err != nil {
		return nil, err
	}
	kid := time.Now().UTC().Format("20060102T150405") + "-" + randomSuffix()
	for _, kv := range [][2]any{{jwk.KeyIDKey, kid}, {jwk.AlgorithmKey, jwa.EdDSA}, {jwk.KeyUsageKey, "sig"}} {
		if err := k.Set(kv[0].(string), kv[1]); err != nil {
			return nil, err
		}
	}
	if err := set.AddKey(k); err != nil {
		return nil, err
	}
	return json.MarshalIndent(set, "", "  ")
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// Signing returns the key that signs, as a JWK.
func (s *Set) Signing() jwk.Key { return s.signing }

// SigningKey returns the signing key's id and raw private key.
func (s *Set) SigningKey() (string, ed25519.PrivateKey) {
	var raw ed25519.PrivateKey
	_ = s.signing.Raw(&raw)
	return s.signing.KeyID(), raw
}

// PublicKey returns the public key with the given id.
func (s *Set) PublicKey(kid string) (ed25519.PublicKey, bool) {
	k, ok := s.byKID[kid]
	return k, ok
}

// Public returns the public keys as a JWK set (never private parts).
func (s *Set) Public() jwk.Set { return s.public }

// PublicJSON renders the public keys as a JWK set document.
func (s *Set) PublicJSON() ([]byte, error) { return json.Marshal(s.public) }
