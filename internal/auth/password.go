package auth

import (
	"context"
	"fmt"
	"net/mail"
	"runtime"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/alexedwards/argon2id"

	"github.com/onsale-dev/onsale/internal/platform/problem"
)

// Hasher computes and checks argon2id password hashes on a fixed pool of workers with a bounded
// queue. A login storm therefore uses at most the pool's CPUs; when the queue is full the caller
// is refused at once (ErrHashBusy) instead of waiting, so holds and checkouts keep their share of
// the machine.
type Hasher struct {
	params *argon2id.Params
	jobs   chan hashJob
	dummy  string // a hash of nothing in particular, checked when the email is unknown
	stop   chan struct{}
}

type hashJob struct {
	ctx  context.Context
	work func()
	done chan error // buffered: the worker never waits for a caller that gave up
}

// NewHasher starts workers hashing with the configured parameters. workers 0 means
// DefaultHashWorkers.
func NewHasher(memoryKiB, iterations, threads, workers, queue int) (*Hasher, error) {
	if workers <= 0 {
		workers = DefaultHashWorkers()
	}
	h := &Hasher{
		params: &argon2id.Params{
			Memory: uint32(memoryKiB), Iterations: uint32(iterations), Parallelism: uint8(threads),
			SaltLength: 16, KeyLength: 32,
		},
		jobs: make(chan hashJob, queue),
		stop: make(chan struct{}),
	}
	for range workers {
		go h.work()
	}
	dummy, err := argon2id.CreateHash("onsale-dummy-password", h.params)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("dummy hash: %w", err)
	}
	h.dummy = dummy
	return h, nil
}

// DefaultHashWorkers is the hash pool's size when none is configured: half of GOMAXPROCS, at
// least one. A worker holds a Go P (one of GOMAXPROCS, which follows the container's CPU limit)
// for the whole of a hash, and the process does not add Ps for them: more Ps than CPUs would
// have the CPU quota throttle every request. So during a login storm the workers must leave Ps
// free, or requests (holds, checkouts, the logins' own I/O) would wait for one; half keeps logins
// going at half the CPUs while the other half serves everything else. With one CPU the single
// worker and the requests share it, and the worker's lowered thread priority lets the kernel run
// requests first.
func DefaultHashWorkers() int {
	return max(1, runtime.GOMAXPROCS(0)/2)
}

// work runs on its own OS thread of lowered priority: when requests and hashes compete for the
// CPUs the kernel serves the requests first, and when nothing else runs the hashes get it all.
// The pool is smaller than GOMAXPROCS (see DefaultHashWorkers), so a hashing worker does not keep
// a request waiting for a P.
func (h *Hasher) work() {
	runtime.LockOSThread() // never unlocked: the thread ends with the worker
	lowerThreadPriority()
	for {
		select {
		case j := <-h.jobs:
			// select picks at random among ready cases, so a job can be taken after Close:
			// it must not run then.
			select {
			case <-h.stop:
				j.done <- errHasherClosed
				return
			default:
			}
			// A caller that gave up (client gone, deadline passed) costs no CPU.
			if err := j.ctx.Err(); err != nil {
				j.done <- err
				continue
			}
			j.work()
			j.done <- nil
		case <-h.stop:
			return
		}
	}
}

// errHasherClosed answers work asked of a hasher that has been closed.
var errHasherClosed = ErrHashBusy.WithDetail("the server is shutting down")

// Close stops the workers; work queued or asked for afterwards is refused.
func (h *Hasher) Close() { close(h.stop) }

// run queues work and waits for it; a full queue refuses at once.
func (h *Hasher) run(ctx context.Context, work func()) error {
	select {
	case <-h.stop:
		return errHasherClosed
	default:
	}
	j := hashJob{ctx: ctx, work: work, done: make(chan error, 1)}
	select {
	case h.jobs <- j:
	default:
		return ErrHashBusy.WithDetail("too many logins are in progress; retry shortly").WithRetryAfter(time.Second)
	}
	select {
	case err := <-j.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-h.stop:
		// The job may still be running; the callers read its results only after a nil error.
		return errHasherClosed
	}
}

// Hash returns the PHC string of password.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	var (
		out string
		err error
	)
	if qerr := h.run(ctx, func() { out, err = argon2id.CreateHash(password, h.params) }); qerr != nil {
		return "", qerr
	}
	return out, err
}

// Verify checks password against a stored hash (or against a dummy when hash is empty, so an
// unknown email costs as much as a known one). It also reports whether the stored hash uses
// weaker parameters than configured and should be replaced.
func (h *Hasher) Verify(ctx context.Context, password, hash string) (match, weaker bool, err error) {
	stored := hash
	if stored == "" {
		stored = h.dummy
	}
	// The worker writes these even when the caller has given up and returned, so they must not
	// be the named results (which the early return writes too).
	var (
		ok   bool
		cerr error
	)
	if qerr := h.run(ctx, func() { ok, cerr = argon2id.ComparePasswordAndHash(password, stored) }); qerr != nil {
		return false, false, qerr
	}
	if cerr != nil {
		return false, false, fmt.Errorf("compare password: %w", cerr)
	}
	match = ok
	if hash == "" {
		return false, false, nil
	}
	if p, _, _, derr := argon2id.DecodeHash(hash); derr == nil {
		weaker = p.Memory < h.params.Memory || p.Iterations < h.params.Iterations || p.Parallelism < h.params.Parallelism
	}
	return match, weaker, nil
}

// ValidateEmail accepts a plain address (no display name) with a dotted domain, at most 254
// characters.
func ValidateEmail(email string) error {
	invalid := ErrInvalidAccount.WithDetail("the request body has invalid fields")
	if len(email) > 254 {
		return invalid.WithFields(fieldErr("email", "at most 254 characters"))
	}
	a, err := mail.ParseAddress(email)
	if err != nil || a.Name != "" || a.Address != email {
		return invalid.WithFields(fieldErr("email", "not an email address"))
	}
	_, domain, _ := strings.Cut(email, "@")
	if !strings.Contains(domain, ".") || strings.HasSuffix(domain, ".") {
		return invalid.WithFields(fieldErr("email", "not an email address"))
	}
	return nil
}

// ValidatePassword applies NIST SP 800-63B: 8 to 128 characters, no composition rules.
func ValidatePassword(password string) error {
	n := utf8.RuneCountInString(password)
	if n < 8 || n > 128 {
		return ErrInvalidAccount.WithDetail("the request body has invalid fields").
			WithFields(fieldErr("password", "must be 8 to 128 characters"))
	}
	return nil
}

func fieldErr(field, msg string) problem.FieldError {
	return problem.FieldError{Field: field, Message: msg}
}
