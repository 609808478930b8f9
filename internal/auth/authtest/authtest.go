// Package authtest holds the conformance suites that every adapter of the auth module's ports
// runs (memory, Redis, PostgreSQL), so that they all behave the same, and helpers that forge
// hostile access tokens for the token and HTTP tests.
package authtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/auth"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

// uniqueEmail returns an address no other test uses, so suites never depend on an empty store.
func uniqueEmail(local string) string {
	return local + "." + strings.ReplaceAll(uuid.NewString(), "-", "")[:12] + "@Example.COM"
}

func newUser(email string, role auth.Role) auth.User {
	return auth.User{
		ID:           uuid.New(),
		Email:        email,
		Name:         "Ada Lovelace",
		Role:         role,
		PasswordHash: "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
		// Databases keep microseconds; a value they can hold compares equal after a round trip.
		CreatedAt: time.Now().UTC().Truncate(time.Microsecond),
	}
}

func sameUser(t *testing.T, got, want auth.User) {
	t.Helper()
	if got.ID != want.ID || got.Email != want.Email || got.Name != want.Name || got.Role != want.Role ||
		got.PasswordHash != want.PasswordHash || !got.CreatedAt.Equal(want.CreatedAt) {
		t.Fatalf("user differs:\n got %+v\nwant %+v", got, want)
	}
}

// UserStore runs the UserStore conformance suite. newStore may return a store shared with other
// calls: the suite only uses emails and ids it made up itself.
func UserStore(t *testing.T, newStore func(t *testing.T) auth.UserStore) {
	t.Run("CreateAndFind", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := newStore(t)
		for _, role := range []auth.Role{auth.RoleCustomer, auth.RoleOrganizer, auth.RoleStaff} {
			u := newUser(uniqueEmail("Ada."+string(role)), role)
			if err := s.Create(ctx, u); err != nil {
				t.Fatalf("create %s: %v", role, err)
			}
			got, err := s.ByID(ctx, u.ID)
			if err != nil {
				t.Fatalf("by id: %v", err)
			}
			sameUser(t, got, u)
			// Any case finds it, and the email comes back as it was typed.
			for _, e := range []string{u.Email, strings.ToLower(u.Email), strings.ToUpper(u.Email)} {
				got, err := s.ByEmail(ctx, e)
				if err != nil {
					t.Fatalf("by email %q: %v", e, err)
				}
				sameUser(t, got, u)
			}
		}
	})

	t.Run("EmailTakenInAnyCase", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := newStore(t)
		u := newUser(uniqueEmail("Grace"), auth.RoleCustomer)
		if err := s.Create(ctx, u); err != nil {
			t.Fatal(err)
		}
		for _, e := range []string{u.Email, strings.ToLower(u.Email), strings.ToUpper(u.Email)} {
			err := s.Create(ctx, newUser(e, auth.RoleCustomer))
			if !errors.Is(err, auth.ErrEmailTaken) {
				t.Fatalf("create with %q: want ErrEmailTaken, got %v", e, err)
			}
		}
		// The first account is untouched.
		got, err := s.ByEmail(ctx, u.Email)
		if err != nil {
			t.Fatal(err)
		}
		sameUser(t, got, u)
	})

	t.Run("Unknown", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := newStore(t)
		if _, err := s.ByID(ctx, uuid.New()); !errors.Is(err, auth.ErrUserNotFound) {
			t.Fatalf("by id: want ErrUserNotFound, got %v", err)
		}
		if _, err := s.ByEmail(ctx, uniqueEmail("nobody")); !errors.Is(err, auth.ErrUserNotFound) {
			t.Fatalf("by email: want ErrUserNotFound, got %v", err)
		}
		if _, err := s.ByEmail(ctx, ""); !errors.Is(err, auth.ErrUserNotFound) {
			t.Fatalf("by empty email: want ErrUserNotFound, got %v", err)
		}
		if err := s.SetPasswordHash(ctx, uuid.New(), "x"); !errors.Is(err, auth.ErrUserNotFound) {
			t.Fatalf("set hash: want ErrUserNotFound, got %v", err)
		}
	})

	t.Run("SetPasswordHash", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := newStore(t)
		u := newUser(uniqueEmail("Hedy"), auth.RoleCustomer)
		other := newUser(uniqueEmail("Karen"), auth.RoleCustomer)
		for _, x := range []auth.User{u, other} {
			if err := s.Create(ctx, x); err != nil {
				t.Fatal(err)
			}
		}
		const next = "$argon2id$v=19$m=19456,t=2,p=1$bmV3c2FsdG5ld3NhbHQ$bmV3aGFzaG5ld2hhc2huZXdoYXNobmV3aGFzaG5ldw"
		if err := s.SetPasswordHash(ctx, u.ID, next); err != nil {
			t.Fatal(err)
		}
		got, err := s.ByEmail(ctx, u.Email)
		if err != nil {
			t.Fatal(err)
		}
		want := u
		want.PasswordHash = next
		sameUser(t, got, want)
		got, err = s.ByID(ctx, other.ID)
		if err != nil {
			t.Fatal(err)
		}
		sameUser(t, got, other)
	})

	t.Run("ConcurrentCreatesOfOneEmail", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := newStore(t)
		email := uniqueEmail("Race")
		const n = 8
		var (
			wg     sync.WaitGroup
			start  = make(chan struct{})
			errs   = make([]error, n)
			users  = make([]auth.User, n)
			casing = []func(string) string{strings.ToLower, strings.ToUpper, func(s string) string { return s }}
		)
		for i := range n {
			users[i] = newUser(casing[i%len(casing)](email), auth.RoleCustomer)
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = s.Create(ctx, users[i])
			}()
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil:
				if winner >= 0 {
					t.Fatalf("creates %d and %d both succeeded", winner, i)
				}
				winner = i
			case !errors.Is(err, auth.ErrEmailTaken):
				t.Fatalf("create %d: want nil or ErrEmailTaken, got %v", i, err)
			}
		}
		if winner < 0 {
			t.Fatal("no create succeeded")
		}
		got, err := s.ByEmail(ctx, email)
		if err != nil {
			t.Fatal(err)
		}
		sameUser(t, got, users[winner])
		for i, u := range users {
			if i == winner {
				continue
			}
			if _, err := s.ByID(ctx, u.ID); !errors.Is(err, auth.ErrUserNotFound) {
				t.Fatalf("loser %d was stored: %v", i, err)
			}
		}
	})
}

// SessionStore runs the SessionStore conformance suite. newStore returns a store and a function
// that lets time pass for it: a fake clock's Advance for in-memory stores, a sleep for stores on
// a real server. Time-dependent checks use TTLs of a few hundred milliseconds and poll.
func SessionStore(t *testing.T, newStore func(t *testing.T) (auth.SessionStore, func(time.Duration))) {
	const long = time.Hour // for sessions that must not expire during a subtest

	newSession := func(t *testing.T, s auth.SessionStore, ttl time.Duration) auth.Session {
		t.Helper()
		sess := auth.Session{
			ID:          strings.ReplaceAll(uuid.NewString(), "-", ""),
			UserID:      uuid.New(),
			Role:        auth.RoleOrganizer,
			RefreshHash: "h0-" + uuid.NewString(),
		}
		if err := s.Create(context.Background(), sess, ttl); err != nil {
			t.Fatalf("create session: %v", err)
		}
		return sess
	}
	active := func(t *testing.T, s auth.SessionStore, id string) bool {
		t.Helper()
		ok, err := s.Active(context.Background(), id)
		if err != nil {
			t.Fatalf("active: %v", err)
		}
		return ok
	}
	rotate := func(t *testing.T, s auth.SessionStore, id, presented, next string, ttl time.Duration) (auth.Session, auth.RotateResult) {
		t.Helper()
		got, res, err := s.Rotate(context.Background(), id, presented, next, ttl)
		if err != nil {
			t.Fatalf("rotate: %v", err)
		}
		return got, res
	}
	wantResult := func(t *testing.T, what string, got, want auth.RotateResult) {
		t.Helper()
		if got != want {
			t.Fatalf("%s: want %s, got %s", what, resultName(want), resultName(got))
		}
	}

	t.Run("CreateThenActive", func(t *testing.T) {
		t.Parallel()
		s, _ := newStore(t)
		sess := newSession(t, s, long)
		if !active(t, s, sess.ID) {
			t.Fatal("a new session is not active")
		}
		if active(t, s, "no-such-session") {
			t.Fatal("an unknown session is active")
		}
	})

	t.Run("RotateThenReuse", func(t *testing.T) {
		t.Parallel()
		s, _ := newStore(t)
		sess := newSession(t, s, long)
		got, res := rotate(t, s, sess.ID, sess.RefreshHash, "h1", long)
		wantResult(t, "rotate with the current hash", res, auth.Rotated)
		if got.ID != sess.ID || got.UserID != sess.UserID || got.Role != sess.Role || got.RefreshHash != "h1" {
			t.Fatalf("rotated session: got %+v, want id %s user %s role %s hash h1", got, sess.ID, sess.UserID, sess.Role)
		}
		if !active(t, s, sess.ID) {
			t.Fatal("a rotated session is not active")
		}
		_, res = rotate(t, s, sess.ID, "h1", "h2", long)
		wantResult(t, "rotate again with the new hash", res, auth.Rotated)

		// The first hash was used already: reuse, and the whole session ends.
		_, res = rotate(t, s, sess.ID, sess.RefreshHash, "h3", long)
		wantResult(t, "rotate with a used hash", res, auth.Reused)
		if active(t, s, sess.ID) {
			t.Fatal("the session is still active after reuse")
		}
		_, res = rotate(t, s, sess.ID, "h2", "h4", long)
		wantResult(t, "rotate with the newest hash after reuse", res, auth.Revoked)
		_, res = rotate(t, s, sess.ID, "h1", "h5", long)
		wantResult(t, "rotate with a used hash after reuse", res, auth.Revoked)
	})

	t.Run("UnknownHash", func(t *testing.T) {
		t.Parallel()
		s, _ := newStore(t)
		sess := newSession(t, s, long)
		_, res := rotate(t, s, sess.ID, "never-issued", "h1", long)
		wantResult(t, "rotate with a hash never issued", res, auth.Unknown)
		if !active(t, s, sess.ID) {
			t.Fatal("an unknown hash ended the session")
		}
		_, res = rotate(t, s, sess.ID, sess.RefreshHash, "h1", long)
		wantResult(t, "rotate with the current hash after an unknown one", res, auth.Rotated)
		_, res = rotate(t, s, "no-such-session", sess.RefreshHash, "h2", long)
		wantResult(t, "rotate an unknown session", res, auth.Unknown)
	})

	t.Run("Revoke", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s, _ := newStore(t)
		sess := newSession(t, s, long)
		other := newSession(t, s, long)
		if err := s.Revoke(ctx, sess.ID); err != nil {
			t.Fatal(err)
		}
		if active(t, s, sess.ID) {
			t.Fatal("a revoked session is active")
		}
		_, res := rotate(t, s, sess.ID, sess.RefreshHash, "h1", long)
		wantResult(t, "rotate a revoked session", res, auth.Revoked)
		if err := s.Revoke(ctx, sess.ID); err != nil {
			t.Fatalf("revoke twice: %v", err)
		}
		if err := s.Revoke(ctx, "no-such-session"); err != nil {
			t.Fatalf("revoke an unknown session: %v", err)
		}
		if !active(t, s, other.ID) {
			t.Fatal("revoking one session ended another")
		}
		_, res = rotate(t, s, other.ID, other.RefreshHash, "h1", long)
		wantResult(t, "rotate another session", res, auth.Rotated)
	})

	t.Run("Expiry", func(t *testing.T) {
		t.Parallel()
		s, advance := newStore(t)
		const ttl = 300 * time.Millisecond
		sess := newSession(t, s, ttl)
		if !active(t, s, sess.ID) {
			t.Fatal("a new session is not active")
		}
		advance(ttl + 50*time.Millisecond)
		testenv.Eventually(t, 3*time.Second, func() bool { return !active(t, s, sess.ID) },
			"session %s still active after its TTL", sess.ID)
		_, res := rotate(t, s, sess.ID, sess.RefreshHash, "h1", long)
		wantResult(t, "rotate an expired session", res, auth.Unknown)
	})

	t.Run("RotateExtendsTTL", func(t *testing.T) {
		t.Parallel()
		s, advance := newStore(t)
		const ttl = 400 * time.Millisecond
		sess := newSession(t, s, ttl)
		advance(250 * time.Millisecond)
		_, res := rotate(t, s, sess.ID, sess.RefreshHash, "h1", 900*time.Millisecond)
		wantResult(t, "rotate", res, auth.Rotated)
		// Past the first TTL, well within the one the rotation set.
		advance(300 * time.Millisecond)
		if !active(t, s, sess.ID) {
			t.Fatal("the session expired with its first TTL although a rotation extended it")
		}
		_, res = rotate(t, s, sess.ID, "h1", "h2", ttl)
		wantResult(t, "rotate after the first TTL", res, auth.Rotated)
		advance(ttl + 50*time.Millisecond)
		testenv.Eventually(t, 3*time.Second, func() bool { return !active(t, s, sess.ID) },
			"session still active after the extended TTL")
	})

	t.Run("ConcurrentRotate", func(t *testing.T) {
		t.Parallel()
		s, _ := newStore(t)
		sess := newSession(t, s, long)
		const n = 8
		var (
			wg      sync.WaitGroup
			start   = make(chan struct{})
			results = make([]auth.RotateResult, n)
			errs    = make([]error, n)
		)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, results[i], errs[i] = s.Rotate(context.Background(), sess.ID, sess.RefreshHash, fmt.Sprintf("next-%d", i), long)
			}()
		}
		close(start)
		wg.Wait()
		winner, reused := -1, 0
		for i, res := range results {
			if errs[i] != nil {
				t.Fatalf("rotate %d: %v", i, errs[i])
			}
			switch res {
			case auth.Rotated:
				if winner >= 0 {
					t.Fatalf("rotations %d and %d both succeeded with the same hash", winner, i)
				}
				winner = i
			case auth.Reused:
				reused++
			case auth.Revoked:
				// It came after another one's reuse had ended the session.
			default:
				t.Fatalf("rotate %d: got %s", i, resultName(res))
			}
		}
		// The store is atomic: one of the presentations was first and rotated; every other one
		// presented a hash that had just been used.
		if winner < 0 {
			t.Fatalf("no rotation succeeded: %v", results)
		}
		if reused == 0 {
			t.Fatalf("%d presentations of one hash and no reuse detected: %v", n, results)
		}
		if active(t, s, sess.ID) {
			t.Fatal("the session is still active although reuse was detected")
		}
		_, res := rotate(t, s, sess.ID, fmt.Sprintf("next-%d", winner), "after", long)
		wantResult(t, "rotate with the winner's hash after reuse", res, auth.Revoked)
	})
}

func resultName(r auth.RotateResult) string {
	switch r {
	case auth.Rotated:
		return "Rotated"
	case auth.Reused:
		return "Reused"
	case auth.Unknown:
		return "Unknown"
	case auth.Revoked:
		return "Revoked"
	}
	return fmt.Sprintf("RotateResult(%d)", int(r))
}

// FailureCounter runs the FailureCounter conformance suite. newCounter returns a counter and a
// function that lets time pass for it, as for SessionStore.
func FailureCounter(t *testing.T, newCounter func(t *testing.T) (auth.FailureCounter, func(time.Duration))) {
	count := func(t *testing.T, f auth.FailureCounter, key string) (int, time.Duration) {
		t.Helper()
		n, left, err := f.Count(context.Background(), key)
		if err != nil {
			t.Fatalf("count: %v", err)
		}
		return n, left
	}
	add := func(t *testing.T, f auth.FailureCounter, key string, window time.Duration) (int, time.Duration) {
		t.Helper()
		n, left, err := f.Add(context.Background(), key, window)
		if err != nil {
			t.Fatalf("add: %v", err)
		}
		return n, left
	}
	key := func(name string) string { return name + ":" + uuid.NewString() }

	t.Run("AddCounts", func(t *testing.T) {
		t.Parallel()
		f, _ := newCounter(t)
		k := key("acct")
		if n, left := count(t, f, k); n != 0 || left != 0 {
			t.Fatalf("fresh key: got %d failures, %s left; want 0, 0", n, left)
		}
		const window = time.Minute
		for want := 1; want <= 3; want++ {
			n, left := add(t, f, k, window)
			if n != want {
				t.Fatalf("add %d: count %d", want, n)
			}
			if left <= 0 || left > window {
				t.Fatalf("add %d: %s left in a %s window", want, left, window)
			}
		}
		n, left := count(t, f, k)
		if n != 3 || left <= 0 || left > window {
			t.Fatalf("count: got %d, %s left; want 3 and time left in the window", n, left)
		}
		// Count only reads.
		if n, _ := count(t, f, k); n != 3 {
			t.Fatalf("count changed the count: %d", n)
		}
	})

	t.Run("FixedWindow", func(t *testing.T) {
		t.Parallel()
		f, advance := newCounter(t)
		k := key("ip")
		const window = 400 * time.Millisecond
		add(t, f, k, window)
		advance(200 * time.Millisecond)
		// A later failure does not move the window's end.
		n, left := add(t, f, k, window)
		if n != 2 {
			t.Fatalf("second add: count %d", n)
		}
		if left > window-200*time.Millisecond {
			t.Fatalf("second add: %s left; the window was extended", left)
		}
	})

	t.Run("WindowExpires", func(t *testing.T) {
		t.Parallel()
		f, advance := newCounter(t)
		k := key("acct")
		const window = 300 * time.Millisecond
		add(t, f, k, window)
		add(t, f, k, window)
		advance(window + 50*time.Millisecond)
		testenv.Eventually(t, 3*time.Second, func() bool { n, _ := count(t, f, k); return n == 0 },
			"failures still counted after the window")
		if n, left := count(t, f, k); n != 0 || left != 0 {
			t.Fatalf("after the window: %d failures, %s left", n, left)
		}
		// A new failure opens a new window.
		n, left := add(t, f, k, time.Minute)
		if n != 1 || left <= window {
			t.Fatalf("after the window: add gave %d with %s left; want 1 in a new one-minute window", n, left)
		}
	})

	t.Run("Reset", func(t *testing.T) {
		t.Parallel()
		f, _ := newCounter(t)
		k := key("acct")
		for range 4 {
			add(t, f, k, time.Minute)
		}
		if err := f.Reset(context.Background(), k); err != nil {
			t.Fatal(err)
		}
		if n, left := count(t, f, k); n != 0 || left != 0 {
			t.Fatalf("after reset: %d failures, %s left", n, left)
		}
		if n, _ := add(t, f, k, time.Minute); n != 1 {
			t.Fatalf("add after reset: %d", n)
		}
		if err := f.Reset(context.Background(), key("never-seen")); err != nil {
			t.Fatalf("reset an unknown key: %v", err)
		}
	})

	t.Run("TakeIsAtomic", func(t *testing.T) {
		t.Parallel()
		f, _ := newCounter(t)
		k := key("acct-ip")
		const limit, racers = 10, 40
		var taken atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, racers)
		for range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, _, err := f.Take(context.Background(), k, limit, time.Minute)
				if err != nil {
					errs <- err
					return
				}
				if ok {
					taken.Add(1)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("take: %v", err)
		}
		if got := taken.Load(); got != limit {
			t.Fatalf("%d racers against a limit of %d: %d took an attempt", racers, limit, got)
		}
		ok, left, err := f.Take(context.Background(), k, limit, time.Minute)
		if err != nil || ok || left <= 0 || left > time.Minute {
			t.Fatalf("take over the limit: ok %v, %s left, err %v; want refused with time left in the window", ok, left, err)
		}
		if n, _ := count(t, f, k); n != limit {
			t.Fatalf("count after refusals: %d, want %d (refused attempts are not counted)", n, limit)
		}
	})

	t.Run("GiveHandsBack", func(t *testing.T) {
		t.Parallel()
		f, _ := newCounter(t)
		k := key("ip")
		for range 2 {
			if ok, _, err := f.Take(context.Background(), k, 2, time.Minute); err != nil || !ok {
				t.Fatalf("take: ok %v err %v", ok, err)
			}
		}
		if ok, _, _ := f.Take(context.Background(), k, 2, time.Minute); ok {
			t.Fatal("third take against a limit of 2 succeeded")
		}
		if err := f.Give(context.Background(), k); err != nil {
			t.Fatal(err)
		}
		if ok, _, err := f.Take(context.Background(), k, 2, time.Minute); err != nil || !ok {
			t.Fatalf("take after give: ok %v err %v", ok, err)
		}
		// Giving never goes below zero, and a key never seen stays unseen.
		for range 5 {
			if err := f.Give(context.Background(), k); err != nil {
				t.Fatal(err)
			}
		}
		if n, _ := count(t, f, k); n != 0 {
			t.Fatalf("count after giving more than was taken: %d", n)
		}
		unseen := key("never")
		if err := f.Give(context.Background(), unseen); err != nil {
			t.Fatal(err)
		}
		if n, left := count(t, f, unseen); n != 0 || left != 0 {
			t.Fatalf("give on an unseen key made %d with %s left", n, left)
		}
	})

	t.Run("TakeWindowExpires", func(t *testing.T) {
		t.Parallel()
		f, advance := newCounter(t)
		k := key("acct-ip")
		const window = 300 * time.Millisecond
		if ok, _, _ := f.Take(context.Background(), k, 1, window); !ok {
			t.Fatal("first take refused")
		}
		if ok, left, _ := f.Take(context.Background(), k, 1, window); ok || left <= 0 || left > window {
			t.Fatalf("second take: ok %v with %s left; want refused within the window", ok, left)
		}
		advance(window + 50*time.Millisecond)
		testenv.Eventually(t, 3*time.Second, func() bool {
			ok, _, err := f.Take(context.Background(), k, 1, window)
			return err == nil && ok
		}, "still refused after the window")
	})

	t.Run("KeysIndependent", func(t *testing.T) {
		t.Parallel()
		f, _ := newCounter(t)
		a, b := key("acct"), key("ip")
		for range 3 {
			add(t, f, a, time.Minute)
		}
		add(t, f, b, time.Minute)
		if n, _ := count(t, f, a); n != 3 {
			t.Fatalf("key a: %d", n)
		}
		if n, _ := count(t, f, b); n != 1 {
			t.Fatalf("key b: %d", n)
		}
		if err := f.Reset(context.Background(), a); err != nil {
			t.Fatal(err)
		}
		if n, _ := count(t, f, b); n != 1 {
			t.Fatalf("resetting a changed b: %d", n)
		}
	})
}
