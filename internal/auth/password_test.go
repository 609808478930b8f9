package auth

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alexedwards/argon2id"

	"github.com/onsale-dev/onsale/internal/platform/problem"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

// Cheap parameters keep the tests fast; the cost itself is under test only where it matters.
const (
	cheapMemoryKiB = 64
	cheapTime      = 1
)

func newHasher(t testing.TB, memoryKiB, iterations, workers, queue int) *Hasher {
	t.Helper()
	h, err := NewHasher(memoryKiB, iterations, 1, workers, queue)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func TestHashVerify(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newHasher(t, cheapMemoryKiB, cheapTime, 2, 8)
	hash, err := h.Hash(ctx, "correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(hash, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("not an argon2id PHC string with the configured parameters: %s", hash)
	}
	again, err := h.Hash(ctx, "correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if again == hash {
		t.Fatal("two hashes of one password are equal: no salt")
	}
	match, weaker, err := h.Verify(ctx, "correct horse battery staple", hash)
	if err != nil || !match || weaker {
		t.Fatalf("right password: match %v weaker %v err %v", match, weaker, err)
	}
	match, _, err = h.Verify(ctx, "correct horse battery stapler", hash)
	if err != nil || match {
		t.Fatalf("wrong password: match %v err %v", match, err)
	}
	// An unknown user: checked against the dummy hash, never a match.
	for _, pw := range []string{"", "onsale-dummy-password", "anything at all"} {
		match, weaker, err := h.Verify(ctx, pw, "")
		if err != nil || match || weaker {
			t.Fatalf("empty hash with %q: match %v weaker %v err %v", pw, match, weaker, err)
		}
	}
	if _, _, err := h.Verify(ctx, "x", "not-a-phc-string"); err == nil {
		t.Fatal("a corrupt stored hash verified without an error")
	}
}

// TestVerifyUnknownUserDoesTheSameWork: an unknown email is checked against a dummy hash made
// with the configured parameters, through the same pool, so it costs what a wrong password costs
// and the answer's timing does not tell which accounts exist. (The work is compared, not timed:
// a timing comparison fails on a busy machine.)
func TestVerifyUnknownUserDoesTheSameWork(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newHasher(t, 4<<10, 2, 1, 4)
	p, _, _, err := argon2id.DecodeHash(h.dummy)
	if err != nil {
		t.Fatalf("the dummy is not an argon2id hash: %v", err)
	}
	if *p != *h.params {
		t.Fatalf("dummy hash parameters %+v, configured %+v", *p, *h.params)
	}
	// Even the dummy's own password does not match "no account".
	if match, _, err := h.Verify(ctx, "onsale-dummy-password", ""); err != nil || match {
		t.Fatalf("verify against no account: match %v, err %v", match, err)
	}
	// It goes through the pool like any check: with the pool cancelled, it is refused.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := h.Verify(cancelled, "wrong password", ""); err == nil {
		t.Fatal("a check against no account ran outside the hash pool")
	}
}

func TestVerifyReportsWeakerParameters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	weak := newHasher(t, 64, 1, 1, 4)
	strong := newHasher(t, 128, 1, 1, 4)
	slow := newHasher(t, 64, 2, 1, 4)
	old, err := weak.Hash(ctx, "correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	for name, h := range map[string]*Hasher{"more memory": strong, "more passes": slow} {
		match, weaker, err := h.Verify(ctx, "correct horse battery staple", old)
		if err != nil || !match || !weaker {
			t.Fatalf("%s: match %v weaker %v err %v; want a match made with weaker parameters", name, match, weaker, err)
		}
		// A wrong password is not a match, whatever the parameters.
		if match, _, _ := h.Verify(ctx, "wrong", old); match {
			t.Fatalf("%s: wrong password matched", name)
		}
	}
	if _, weaker, _ := weak.Verify(ctx, "correct horse battery staple", old); weaker {
		t.Fatal("same parameters reported as weaker")
	}
	current, err := strong.Hash(ctx, "correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	// A stronger stored hash than configured is not weaker.
	if match, weaker, _ := weak.Verify(ctx, "correct horse battery staple", current); !match || weaker {
		t.Fatalf("stronger stored hash: match %v weaker %v", match, weaker)
	}
}

// block occupies the hasher's only worker until release is closed, through the same queue that
// Hash and Verify use.
func block(t *testing.T, h *Hasher) (release func()) {
	t.Helper()
	started, done := make(chan struct{}), make(chan struct{})
	unblock := make(chan struct{})
	go func() {
		defer close(done)
		if err := h.run(context.Background(), func() { close(started); <-unblock }); err != nil {
			t.Errorf("blocking job: %v", err)
		}
	}()
	<-started
	var once sync.Once
	release = func() { once.Do(func() { close(unblock); <-done }) }
	t.Cleanup(release)
	return release
}

func wantBusy(t *testing.T, err error, took time.Duration) {
	t.Helper()
	if !errors.Is(err, ErrHashBusy) {
		t.Fatalf("want ErrHashBusy, got %v", err)
	}
	if pe := problem.As(err); pe == nil || pe.RetryAfter <= 0 || pe.Kind != problem.Unavailable {
		t.Fatalf("busy error %#v: want a 503 with Retry-After", pe)
	}
	if took > 50*time.Millisecond {
		t.Fatalf("the refusal took %s; it must come at once", took)
	}
}

func TestQueueFullRefusesAtOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newHasher(t, cheapMemoryKiB, cheapTime, 1, 1)
	release := block(t, h)

	// The worker is busy; one hash may wait in the queue.
	queued := make(chan error, 1)
	go func() {
		_, err := h.Hash(ctx, "waits its turn")
		queued <- err
	}()
	testenv.Eventually(t, 2*time.Second, func() bool { return len(h.jobs) == 1 }, "the second hash never queued")

	// Any more are refused at once, whether hashing or verifying.
	start := time.Now()
	_, err := h.Hash(ctx, "one too many")
	wantBusy(t, err, time.Since(start))
	start = time.Now()
	_, _, err = h.Verify(ctx, "one too many", "")
	wantBusy(t, err, time.Since(start))

	release()
	if err := <-queued; err != nil {
		t.Fatalf("the queued hash: %v", err)
	}
	// With room again, hashing works.
	if _, err := h.Hash(ctx, "after the storm"); err != nil {
		t.Fatal(err)
	}
}

// TestQueueFullWithRealHashes fills the pool with real, slow hashes (no blocking job): with one
// worker and a queue of one, at most two of six simultaneous hashes are accepted, and the rest
// are refused long before one hash could finish.
func TestQueueFullWithRealHashes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// About 100 ms or more per hash on a test machine.
	h := newHasher(t, 16<<10, 3, 1, 1)
	start := time.Now()
	if _, err := h.Hash(ctx, "measure"); err != nil {
		t.Fatal(err)
	}
	one := time.Since(start)

	const n = 6
	var (
		wg    sync.WaitGroup
		gate  = make(chan struct{})
		errs  = make([]error, n)
		took  = make([]time.Duration, n)
		ready sync.WaitGroup
	)
	ready.Add(n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ready.Done()
			<-gate
			s := time.Now()
			_, errs[i] = h.Hash(ctx, "storm")
			took[i] = time.Since(s)
		}()
	}
	ready.Wait()
	close(gate)
	wg.Wait()
	accepted, busy := 0, 0
	for i, err := range errs {
		switch {
		case err == nil:
			accepted++
		case errors.Is(err, ErrHashBusy):
			busy++
			if pe := problem.As(err); pe.RetryAfter <= 0 {
				t.Errorf("call %d: busy without Retry-After", i)
			}
			if took[i] > one/2 {
				t.Errorf("call %d: refused after %s, one hash takes %s", i, took[i], one)
			}
		default:
			t.Fatalf("call %d: %v", i, err)
		}
	}
	t.Logf("one hash %s; %d accepted, %d refused", one, accepted, busy)
	if accepted < 1 || accepted > 2 || busy < n-2 {
		t.Fatalf("%d accepted and %d refused; want at most 2 accepted (one worker, queue of one)", accepted, busy)
	}
}

func TestCancelledContextIsNotHashed(t *testing.T) {
	t.Parallel()
	h := newHasher(t, cheapMemoryKiB, cheapTime, 1, 4)

	// Already cancelled: refused without work.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.Hash(ctx, "never hashed"); !errors.Is(err, context.Canceled) {
		t.Fatalf("hash with a cancelled context: %v", err)
	}
	if _, _, err := h.Verify(ctx, "never hashed", ""); !errors.Is(err, context.Canceled) {
		t.Fatalf("verify with a cancelled context: %v", err)
	}

	// Cancelled while waiting in the queue: the caller returns at once and the worker skips it.
	release := block(t, h)
	var ran atomic.Bool
	ctx, cancel = context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- h.run(ctx, func() { ran.Store(true) }) }()
	testenv.Eventually(t, 2*time.Second, func() bool { return len(h.jobs) == 1 }, "job never queued")
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("queued job after cancel: %v", err)
	}
	release()
	// The worker has taken the cancelled job off the queue by the time a later one runs.
	if _, err := h.Hash(context.Background(), "later"); err != nil {
		t.Fatal(err)
	}
	if ran.Load() {
		t.Fatal("a job whose caller had gone was hashed")
	}
}

// TestVerifyCancelledWhileHashing gives up on a Verify whose hash is already running; the worker
// finishes the hash afterwards, which must not race with the caller's return.
func TestVerifyCancelledWhileHashing(t *testing.T) {
	t.Parallel()
	// A hash long enough (tens of milliseconds) that the caller, even scheduled late on a busy
	// machine, sees its deadline pass well before the result is ready.
	h := newHasher(t, 32<<10, 2, 1, 4)
	hash, err := h.Hash(context.Background(), "correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		// The worker is idle, so it starts at once; the caller gives up long before it ends.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Millisecond)
		_, _, err := h.Verify(ctx, "correct horse battery staple", hash)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("verify: want the deadline error, got %v", err)
		}
		// Let the worker finish the abandoned hash before the next round.
		if _, err := h.Hash(context.Background(), "later"); err != nil {
			t.Fatal(err)
		}
	}
}

func TestValidateEmail(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		email string
		ok    bool
	}{
		{"ada@example.com", true},
		{"Ada.Lovelace+tickets@Mail.Example.co.uk", true},
		{"a@b.co", true},
		{strings.Repeat("a", 64) + "@" + strings.Repeat("b", 185) + ".com", true},  // 254 characters
		{strings.Repeat("a", 64) + "@" + strings.Repeat("b", 186) + ".com", false}, // 255 characters
		{"", false},
		{"ada", false},
		{"ada@", false},
		{"@example.com", false},
		{"ada@example", false},
		{"ada@example.", false},
		{"ada@@example.com", false},
		{"ada@exa mple.com", false},
		{" ada@example.com", false},
		{"ada@example.com ", false},
		{"Ada <ada@example.com>", false},
		{"<ada@example.com>", false},
		{"ada@example.com, bob@example.com", false},
	} {
		err := ValidateEmail(tc.email)
		if tc.ok && err != nil {
			t.Errorf("%q: %v", tc.email, err)
		}
		if !tc.ok {
			if err == nil {
				t.Errorf("%q accepted", tc.email)
			} else if !errors.Is(err, ErrInvalidAccount) || problem.KindOf(err) != problem.Unprocessable {
				t.Errorf("%q: want a 422 ErrInvalidAccount, got %v", tc.email, err)
			} else if f := problem.As(err).Fields; len(f) != 1 || f[0].Field != "email" {
				t.Errorf("%q: fields %v, want email", tc.email, f)
			}
		}
	}
}

func TestValidatePassword(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		password string
		ok       bool
	}{
		{"8 ASCII", strings.Repeat("a", 8), true},
		{"7 ASCII", strings.Repeat("a", 7), false},
		{"128 ASCII", strings.Repeat("a", 128), true},
		{"129 ASCII", strings.Repeat("a", 129), false},
		{"empty", "", false},
		{"8 two-byte runes (16 bytes)", strings.Repeat("é", 8), true},
		{"7 four-byte runes (28 bytes)", strings.Repeat("🎟", 7), false},
		{"128 two-byte runes (256 bytes)", strings.Repeat("é", 128), true},
		{"129 two-byte runes", strings.Repeat("é", 129), false},
		{"spaces count", "        ", true},
		{"no composition rules", "aaaaaaaaaaaa", true},
	} {
		err := ValidatePassword(tc.password)
		if tc.ok && err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if !tc.ok {
			if err == nil {
				t.Errorf("%s: accepted", tc.name)
			} else if !errors.Is(err, ErrInvalidAccount) {
				t.Errorf("%s: want ErrInvalidAccount, got %v", tc.name, err)
			} else if f := problem.As(err).Fields; len(f) != 1 || f[0].Field != "password" {
				t.Errorf("%s: fields %v, want password", tc.name, f)
			}
		}
	}
}

// OWASP's argon2id parameters, which the configuration defaults to.
var owasp = &argon2id.Params{Memory: 19456, Iterations: 2, Parallelism: 1, SaltLength: 16, KeyLength: 32}

// BenchmarkArgon2idRaw is the baseline: one argon2id hash with the library directly.
func BenchmarkArgon2idRaw(b *testing.B) {
	b.ReportAllocs()
	for range b.N {
		if _, err := argon2id.CreateHash("correct horse battery staple", owasp); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHasherVerify is one password check through the pool with the same parameters; its
// ratio to BenchmarkArgon2idRaw is the pool's overhead.
func BenchmarkHasherVerify(b *testing.B) {
	ctx := context.Background()
	h := newHasher(b, int(owasp.Memory), int(owasp.Iterations), 1, 64)
	hash, err := h.Hash(ctx, "correct horse battery staple")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if match, _, err := h.Verify(ctx, "correct horse battery staple", hash); err != nil || !match {
			b.Fatalf("match %v err %v", match, err)
		}
	}
}

// TestDefaultHashWorkersLeaveRequestsAP: the default pool never takes every P (each worker
// holds one for a whole hash), so requests still run during a login storm, and has at least one
// worker.
func TestDefaultHashWorkersLeaveRequestsAP(t *testing.T) {
	t.Parallel()
	procs := runtime.GOMAXPROCS(0)
	w := DefaultHashWorkers()
	if w < 1 || (procs > 1 && w >= procs) || w < procs/2 {
		t.Fatalf("GOMAXPROCS %d: %d hash workers by default; want at least 1, fewer than GOMAXPROCS, about half", procs, w)
	}
}

// TestClosedHasherRefuses: once closed, the pool runs nothing more, whether the work is asked for
// afterwards or was queued before a worker noticed the close.
func TestClosedHasherRefuses(t *testing.T) {
	h, err := NewHasher(64, 1, 1, 2, 64)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	for i := range 200 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		ran := false
		err := h.run(ctx, func() { ran = true })
		cancel()
		if !errors.Is(err, ErrHashBusy) || ran {
			t.Fatalf("work %d after close: ran %v, err %v; want refused with ErrHashBusy", i, ran, err)
		}
	}
}
