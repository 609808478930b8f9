// Package auth is onsale's identity module: accounts with argon2id passwords, short-lived EdDSA
// access tokens that any replica verifies locally, refresh-token sessions that rotate and detect
// reuse, roles, and the middleware other modules put in front of their routes.
//
// This root package holds the domain types, the Service other modules may call, the ports the
// module needs (UserStore, SessionStore, FailureCounter, TokenIssuer, Verifier) and their errors.
// Adapters live in sub-packages named for their technology (auth/postgres, auth/redis,
// auth/memory), each passing the suites in auth/authtest.
package auth

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/platform/problem"
)

// Role is what an account may do.
type Role string

// The roles.
const (
	RoleCustomer  Role = "customer"  // buys tickets
	RoleOrganizer Role = "organizer" // runs events
	RoleStaff     Role = "staff"     // checks tickets in at the door
)

// Valid tells whether r is a known role.
func (r Role) Valid() bool {
	return r == RoleCustomer || r == RoleOrganizer || r == RoleStaff
}

// User is an account.
type User struct {
	ID           uuid.UUID
	Email        string
	Name         string
	Role         Role
	PasswordHash string // argon2id, PHC string format
	CreatedAt    time.Time
}

// Tokens is what a login or a refresh hands out.
type Tokens struct {
	AccessToken  string
	ExpiresIn    time.Duration
	RefreshToken string
}

// Claims are the verified contents of an access token.
type Claims struct {
	UserID    uuid.UUID
	Role      Role
	SessionID string
	TokenID   string
	ExpiresAt time.Time
}

// Principal is the authenticated caller of a request.
type Principal struct {
	UserID    uuid.UUID
	Role      Role
	SessionID string
	// ExpiresAt is when the access token that authenticated the call expires; a long-lived
	// response (an event stream) ends then.
	ExpiresAt time.Time
}

// Session is a login: the refresh-token family that access tokens hang off.
type Session struct {
	ID     string
	UserID uuid.UUID
	Role   Role
	// RefreshHash is the hash of the current refresh secret; only it may be exchanged.
	RefreshHash string
}

// RotateResult tells what presenting a refresh secret did.
type RotateResult int

// The outcomes of presenting a refresh secret.
const (
	Rotated RotateResult = iota // it was current: replaced by the new one
	Reused                      // it was already rotated: the whole session is now revoked
	Unknown                     // no such session, or a secret it never issued
	Revoked                     // the session had been revoked before
)

// UserStore keeps accounts. Email uniqueness is case-insensitive.
type UserStore interface {
	// Create stores a new user; ErrEmailTaken when the email is in use.
	Create(ctx context.Context, u User) error
	// ByEmail finds a user by email, any case; ErrUserNotFound when absent.
	ByEmail(ctx context.Context, email string) (User, error)
	// ByID finds a user; ErrUserNotFound when absent.
	ByID(ctx context.Context, id uuid.UUID) (User, error)
	// SetPasswordHash replaces a user's password hash (used to upgrade old parameters).
	SetPasswordHash(ctx context.Context, id uuid.UUID, hash string) error
}

// SessionStore keeps sessions and their refresh-token families. Every replica must see the same
// sessions, so a logout anywhere takes effect everywhere.
type SessionStore interface {
	// Create starts a session that lives for ttl unless refreshed.
	Create(ctx context.Context, s Session, ttl time.Duration) error
	// Rotate exchanges the refresh secret whose hash is presented for newHash, atomically. A
	// secret that was current before is reuse: the session is revoked.
	Rotate(ctx context.Context, sessionID, presentedHash, newHash string, ttl time.Duration) (Session, RotateResult, error)
	// Revoke ends a session at once; idempotent.
	Revoke(ctx context.Context, sessionID string) error
	// Active tells whether a session exists and is not revoked. It is called on every
	// authenticated request, so adapters answer it from a coherent local cache when they can; a
	// revocation made on any replica must be seen by every call on every replica that starts
	// after Revoke (or a Rotate that found reuse) returned.
	Active(ctx context.Context, sessionID string) (bool, error)
}

// FailureCounter counts login attempts and failures per key in fixed windows, shared by every
// replica. A window opens with the first count and keeps its end however many follow.
type FailureCounter interface {
	// Take counts one attempt against key unless limit attempts are counted in its window
	// already, in one atomic step: however many callers race, at most limit get ok true in a
	// window. When refused it returns the time left in the window.
	Take(ctx context.Context, key string, limit int, window time.Duration) (ok bool, left time.Duration, err error)
	// Give hands back one attempt counted by Take (it succeeded, so it was no guess); the count
	// never goes below zero.
	Give(ctx context.Context, key string) error
	// Count returns the count in the key's current window and the time left in it.
	Count(ctx context.Context, key string) (int, time.Duration, error)
	// Add counts one, opening a window of length window if none is open.
	Add(ctx context.Context, key string, window time.Duration) (int, time.Duration, error)
	// Reset forgets the key's count.
	Reset(ctx context.Context, key string) error
}

// TokenIssuer signs access tokens.
type TokenIssuer interface {
	Issue(c Claims) (string, error)
}

// Verifier checks an access token's signature and claims locally. It does not know about
// revocation; Authenticator adds that. A token it cannot judge because the public keys cannot be
// had (a process without auth that cannot fetch them) gets an Unavailable problem, never
// ErrInvalidToken, so the client keeps the token and retries.
type Verifier interface {
	Verify(token string) (Claims, error)
}

// Service is what the rest of onsale may ask of the auth module.
type Service interface {
	// Register creates a customer account.
	Register(ctx context.Context, email, password, name string) (User, error)
	// Login checks credentials from the client at ip and starts a session.
	Login(ctx context.Context, email, password, ip string) (Tokens, error)
	// Refresh rotates a refresh token; presenting an already-rotated one revokes its session.
	Refresh(ctx context.Context, refreshToken string) (Tokens, error)
	// Logout revokes a session; idempotent.
	Logout(ctx context.Context, sessionID string) error
	// User returns an account.
	User(ctx context.Context, id uuid.UUID) (User, error)
	// CreateUser creates an account with any role (operators and bootstrap only).
	CreateUser(ctx context.Context, email, password, name string, role Role) (User, error)
	// StreamTicket issues a short-lived ticket that opens p's event streams (see StreamTicketTTL).
	StreamTicket(ctx context.Context, p Principal) (StreamTicket, error)
	// EnsureUser creates the account unless the email exists; safe to run on every start of
	// every replica.
	EnsureUser(ctx context.Context, email, password, name string, role Role) (User, bool, error)
}

// The module's errors; each has a stable problem type.
var (
	ErrEmailTaken         = problem.New(problem.Conflict, "email-taken", "Email already registered")
	ErrUserNotFound       = problem.New(problem.NotFound, "user-not-found", "User not found")
	ErrInvalidCredentials = problem.New(problem.Unauthorized, "invalid-credentials", "Invalid credentials")
	ErrTooManyAttempts    = problem.New(problem.TooManyRequests, "too-many-login-attempts", "Too many failed logins")
	ErrHashBusy           = problem.New(problem.Unavailable, "auth-busy", "Too many logins at once")
	ErrInvalidToken       = problem.New(problem.Unauthorized, "invalid-token", "Invalid access token")
	ErrSessionEnded       = problem.New(problem.Unauthorized, "session-ended", "Session ended")
	ErrInvalidRefresh     = problem.New(problem.Unauthorized, "invalid-refresh-token", "Invalid refresh token")
	ErrRefreshReused      = problem.New(problem.Unauthorized, "refresh-token-reused", "Refresh token reused")
	ErrRoleForbidden      = problem.New(problem.Forbidden, "forbidden", "Forbidden")
	ErrInvalidAccount     = problem.New(problem.Unprocessable, "validation", "Validation failed")
)

// credentialsDetail is the same for an unknown email and a wrong password, so the answer does
// not tell which accounts exist.
const credentialsDetail = "the email or the password is not right"
