// Package memory holds in-process adapters for the auth module's ports, for embedded mode and
// tests. They keep the same semantics as the Redis and PostgreSQL adapters (the suites in
// auth/authtest prove it) but live and die with the process.
package memory

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/auth"
	"github.com/onsale-dev/onsale/internal/platform/clock"
)

// Users is a UserStore in memory.
type Users struct {
	mu      sync.RWMutex
	byID    map[uuid.UUID]auth.User
	byEmail map[string]uuid.UUID // lower-cased email
}

var _ auth.UserStore = (*Users)(nil)

// NewUsers returns an empty store.
func NewUsers() *Users {
	return &Users{byID: map[uuid.UUID]auth.User{}, byEmail: map[string]uuid.UUID{}}
}

// Create implements auth.UserStore.
func (s *Users) Create(_ context.Context, u auth.User) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := strings.ToLower(u.Email)
	if _, taken := s.byEmail[key]; taken {
		return auth.ErrEmailTaken
	}
	s.byID[u.ID] = u
	s.byEmail[key] = u.ID
	return nil
}

// ByEmail implements auth.UserStore.
func (s *Users) ByEmail(_ context.Context, email string) (auth.User, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	id, ok := s.byEmail[strings.ToLower(email)]
	if !ok {
		return auth.User{}, auth.ErrUserNotFound
	}
	return s.byID[id], nil
}

// ByID implements auth.UserStore.
func (s *Users) ByID(_ context.Context, id uuid.UUID) (auth.User, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u, ok := s.byID[id]
	if !ok {
		return auth.User{}, auth.ErrUserNotFound
	}
	return u, nil
}

// SetPasswordHash implements auth.UserStore.
func (s *Users) SetPasswordHash(_ context.Context, id uuid.UUID, hash string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.byID[id]
	if !ok {
		return auth.ErrUserNotFound
	}
	u.PasswordHash = hash
	s.byID[id] = u
	return nil
}

type session struct {
	s       auth.Session
	used    map[string]bool
	revoked bool
	expires time.Time
}

// Sessions is a SessionStore in memory.
type Sessions struct {
	clock clock.Clock
	mu    sync.Mutex
	m     map[string]*session
}

var _ auth.SessionStore = (*Sessions)(nil)

// NewSessions returns an empty store that tells time with clk.
func NewSessions(clk clock.Clock) *Sessions {
	return &Sessions{clock: clk, m: map[string]*session{}}
}

func (s *Sessions) live(id string) *session {
	sess, ok := s.m[id]
	if !ok {
		return nil
	}
	if !s.clock.Now().Before(sess.expires) {
		delete(s.m, id)
		return nil
	}
	return sess
}

// Create implements auth.SessionStore.
func (s *Sessions) Create(_ context.Context, sess auth.Session, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[sess.ID] = &session{s: sess, used: map[string]bool{}, expires: s.clock.Now().Add(ttl)}
	return nil
}

// Rotate implements auth.SessionStore.
func (s *Sessions) Rotate(_ context.Context, id, presented, next string, ttl time.Duration) (auth.Session, auth.RotateResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.live(id)
	switch {
	case sess == nil:
		return auth.Session{}, auth.Unknown, nil
	case sess.revoked:
		return auth.Session{}, auth.Revoked, nil
	case sess.s.RefreshHash == presented:
		sess.used[presented] = true
		sess.s.RefreshHash = next
		sess.expires = s.clock.Now().Add(ttl)
		return sess.s, auth.Rotated, nil
	case sess.used[presented]:
		sess.revoked = true
		return auth.Session{}, auth.Reused, nil
	default:
		return auth.Session{}, auth.Unknown, nil
	}
}

// Revoke implements auth.SessionStore.
func (s *Sessions) Revoke(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess := s.live(id); sess != nil {
		sess.revoked = true
	}
	return nil
}

// Active implements auth.SessionStore.
func (s *Sessions) Active(_ context.Context, id string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.live(id)
	return sess != nil && !sess.revoked, nil
}

type window struct {
	n       int
	expires time.Time
}

// Failures is a FailureCounter in memory.
type Failures struct {
	clock clock.Clock
	mu    sync.Mutex
	m     map[string]window
}

var _ auth.FailureCounter = (*Failures)(nil)

// NewFailures returns an empty counter that tells time with clk.
func NewFailures(clk clock.Clock) *Failures {
	return &Failures{clock: clk, m: map[string]window{}}
}

// Count implements auth.FailureCounter.
func (f *Failures) Count(_ context.Context, key string) (int, time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w, ok := f.m[key]
	now := f.clock.Now()
	if !ok || !now.Before(w.expires) {
		delete(f.m, key)
		return 0, 0, nil
	}
	return w.n, w.expires.Sub(now), nil
}

// Add implements auth.FailureCounter.
func (f *Failures) Add(_ context.Context, key string, d time.Duration) (int, time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.clock.Now()
	w, ok := f.m[key]
	if !ok || !now.Before(w.expires) {
		w = window{expires: now.Add(d)}
	}
	w.n++
	f.m[key] = w
	return w.n, w.expires.Sub(now), nil
}

// Take implements auth.FailureCounter.
func (f *Failures) Take(_ context.Context, key string, limit int, d time.Duration) (bool, time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.clock.Now()
	w, ok := f.m[key]
	if !ok || !now.Before(w.expires) {
		w = window{expires: now.Add(d)}
	}
	if w.n >= limit {
		return false, w.expires.Sub(now), nil
	}
	w.n++
	f.m[key] = w
	return true, 0, nil
}

// Give implements auth.FailureCounter.
func (f *Failures) Give(_ context.Context, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if w, ok := f.m[key]; ok && w.n > 0 {
		w.n--
		f.m[key] = w
	}
	return nil
}

// Reset implements auth.FailureCounter.
func (f *Failures) Reset(_ context.Context, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, key)
	return nil
}
