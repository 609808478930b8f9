package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/onsale-dev/onsale/internal/platform/clock"
	"github.com/onsale-dev/onsale/internal/platform/problem"
	"github.com/onsale-dev/onsale/internal/platform/text"
)

// Deps are the service's ports and tools.
type Deps struct {
	Users    UserStore
	Sessions SessionStore
	Failures FailureCounter
	Hasher   *Hasher
	Issuer   TokenIssuer
	Tickets  TokenIssuer // signs stream tickets (audience StreamAudience)
	Clock    clock.Clock
	Log      *slog.Logger
	Meter    metric.Meter
}

// service implements Service.
type service struct {
	cfg    Config
	d      Deps
	logins metric.Int64Counter
}

// NewService returns the auth module's Service.
func NewService(cfg Config, d Deps) (Service, error) {
	logins, err := d.Meter.Int64Counter("onsale.auth.logins", metric.WithDescription("Login attempts by result."))
	if err != nil {
		return nil, err
	}
	return &service{cfg: cfg, d: d, logins: logins}, nil
}

var _ Service = (*service)(nil)

func (s *service) Register(ctx context.Context, email, password, name string) (User, error) {
	return s.CreateUser(ctx, email, password, name, RoleCustomer)
}

func (s *service) CreateUser(ctx context.Context, email, password, name string, role Role) (User, error) {
	email, name = strings.TrimSpace(email), strings.TrimSpace(name)
	if err := validateAccount(email, password, name, role); err != nil {
		return User{}, err
	}
	hash, err := s.d.Hasher.Hash(ctx, password)
	if err != nil {
		return User{}, err
	}
	u := User{ID: uuid.New(), Email: email, Name: name, Role: role, PasswordHash: hash, CreatedAt: s.d.Clock.Now().UTC()}
	if err := s.d.Users.Create(ctx, u); err != nil {
		if errors.Is(err, ErrEmailTaken) {
			return User{}, ErrEmailTaken.WithDetail("an account with this email already exists")
		}
		return User{}, unavailable("store user", err)
	}
	return u, nil
}

func (s *service) EnsureUser(ctx context.Context, email, password, name string, role Role) (User, bool, error) {
	// Trimmed as CreateUser trims it, or an email with stray spaces is never found again and the
	// second start fails on its own account.
	email = strings.TrimSpace(email)
	if u, err := s.d.Users.ByEmail(ctx, email); err == nil {
		return u, false, nil
	} else if !errors.Is(err, ErrUserNotFound) {
		return User{}, false, err
	}
	u, err := s.CreateUser(ctx, email, password, name, role)
	if errors.Is(err, ErrEmailTaken) {
		// Another replica created it between our read and our write.
		u, err = s.d.Users.ByEmail(ctx, email)
		return u, false, err
	}
	return u, err == nil, err
}

// checkControl refuses control characters in text the module stores or looks up.
func checkControl(field, v string, multiline bool) error {
	if msg := text.Problem(v, multiline); msg != "" {
		return ErrInvalidAccount.WithDetail("the request body has invalid fields").WithFields(fieldErr(field, msg))
	}
	return nil
}

func validateAccount(email, password, name string, role Role) error {
	if err := errors.Join(checkControl("email", email, false), checkControl("name", name, false)); err != nil {
		return firstErr(err)
	}
	if err := ValidateEmail(email); err != nil {
		return err
	}
	if err := ValidatePassword(password); err != nil {
		return err
	}
	if n := utf8.RuneCountInString(name); n < 1 || n > 100 {
		return ErrInvalidAccount.WithDetail("the request body has invalid fields").WithFields(fieldErr("name", "must be 1 to 100 characters"))
	}
	if !role.Valid() {
		return ErrInvalidAccount.WithDetail("unknown role %q", role).WithFields(fieldErr("role", "must be customer, organizer or staff"))
	}
	return nil
}

// Login throttles guesses in three ways, each decided before the password is hashed:
//   - per account and client address together, a hard limit taken atomically (however many
//     guesses race, at most FailuresPerAccount get a verdict in a window);
//   - per client address, a hard limit across accounts (FailuresPerIP);
//   - per account from anywhere, only a growing delay once failures pass FailuresPerAccount: an
//     attacker elsewhere can slow a customer's next attempt by seconds but never lock them out.
//
// An attempt that succeeds is handed back, so a busy address behind a carrier NAT is only
// charged for its wrong guesses.
func (s *service) Login(ctx context.Context, email, password, ip string) (Tokens, error) {
	email = strings.TrimSpace(email)
	if err := checkControl("email", email, false); err != nil {
		return Tokens{}, err
	}
	acct := strings.ToLower(email)
	if n, left, err := s.d.Failures.Count(ctx, "slow:"+acct); err != nil {
		return Tokens{}, unavailable("check login delay", err)
	} else if n > 0 {
		s.count(ctx, "delayed")
		return Tokens{}, ErrTooManyAttempts.WithDetail("too many failed logins for this account; try again in a few seconds").WithRetryAfter(left)
	}
	pair, perIP := "acct-ip:"+acct+"|"+ip, "ip:"+ip
	if ok, left, err := s.d.Failures.Take(ctx, pair, s.cfg.FailuresPerAccount, s.cfg.FailureWindow); err != nil {
		return Tokens{}, unavailable("count login attempt", err)
	} else if !ok {
		s.count(ctx, "throttled")
		return Tokens{}, ErrTooManyAttempts.WithDetail("too many failed logins from this address; try again later").WithRetryAfter(left)
	}
	if ip != "" {
		if ok, left, err := s.d.Failures.Take(ctx, perIP, s.cfg.FailuresPerIP, s.cfg.FailureWindow); err != nil || !ok {
			s.giveBack(ctx, pair)
			if err != nil {
				return Tokens{}, unavailable("count login attempt", err)
			}
			s.count(ctx, "throttled")
			return Tokens{}, ErrTooManyAttempts.WithDetail("too many failed logins from this address; try again later").WithRetryAfter(left)
		}
	}
	u, err := s.d.Users.ByEmail(ctx, email)
	if err != nil && !errors.Is(err, ErrUserNotFound) {
		s.giveBack(ctx, pair, perIP)
		return Tokens{}, unavailable("find user", err)
	}
	// An unknown email is checked against a dummy hash so it takes as long as a wrong password.
	match, weaker, err := s.d.Hasher.Verify(ctx, password, u.PasswordHash)
	if err != nil {
		// No verdict was given (the pool is full or the caller left): not a guess.
		s.giveBack(ctx, pair, perIP)
		if problem.KindOf(err) == problem.Unavailable {
			s.count(ctx, "busy")
		}
		return Tokens{}, err
	}
	if !match {
		n, _, err := s.d.Failures.Add(ctx, "acct:"+acct, s.cfg.FailureWindow)
		if err != nil {
			return Tokens{}, unavailable("count login failure", err)
		}
		if n >= s.cfg.FailuresPerAccount {
			if _, _, err := s.d.Failures.Add(ctx, "slow:"+acct, s.loginDelay(n)); err != nil {
				return Tokens{}, unavailable("count login failure", err)
			}
		}
		s.count(ctx, "invalid")
		return Tokens{}, ErrInvalidCredentials.WithDetail(credentialsDetail)
	}
	for _, k := range []string{pair, "acct:" + acct} {
		if err := s.d.Failures.Reset(ctx, k); err != nil {
			s.d.Log.WarnContext(ctx, "reset login failures", "err", err)
		}
	}
	if ip != "" {
		s.giveBack(ctx, perIP)
	}
	if weaker {
		s.upgradeHash(ctx, u, password)
	}
	t, err := s.startSession(ctx, u)
	if err == nil {
		s.count(ctx, "ok")
	}
	return t, err
}

// loginDelay is the wait after the nth failure on one account: one second once failures reach
// FailuresPerAccount, doubling with every further FailuresPerAccount, up to LoginDelayMax.
func (s *service) loginDelay(n int) time.Duration {
	d := time.Second
	for i := n / s.cfg.FailuresPerAccount; i > 1 && d < s.cfg.LoginDelayMax; i-- {
		d *= 2
	}
	return min(d, s.cfg.LoginDelayMax)
}

// giveBack returns attempts that ended without a verdict on the password. Best effort: a lost
// give-back only counts one attempt too many until the window ends.
func (s *service) giveBack(ctx context.Context, keys ...string) {
	for _, k := range keys {
		if err := s.d.Failures.Give(ctx, k); err != nil {
			s.d.Log.WarnContext(ctx, "give back login attempt", "err", err)
		}
	}
}

// upgradeHash replaces a hash made with weaker parameters than configured. It is best effort: a
// busy pool or a failed write leaves the old hash, which still verifies.
func (s *service) upgradeHash(ctx context.Context, u User, password string) {
	hash, err := s.d.Hasher.Hash(ctx, password)
	if err == nil {
		err = s.d.Users.SetPasswordHash(ctx, u.ID, hash)
	}
	if err != nil {
		s.d.Log.WarnContext(ctx, "password hash upgrade skipped", "user", u.ID, "err", err)
	}
}

func (s *service) count(ctx context.Context, result string) {
	s.logins.Add(ctx, 1, metric.WithAttributes(attribute.String("result", result)))
}

func (s *service) startSession(ctx context.Context, u User) (Tokens, error) {
	sid, secret := randomToken(16), randomToken(32)
	sess := Session{ID: sid, UserID: u.ID, Role: u.Role, RefreshHash: hashSecret(secret)}
	if err := s.d.Sessions.Create(ctx, sess, s.cfg.RefreshTTL); err != nil {
		return Tokens{}, unavailable("create session", err)
	}
	return s.tokens(sess, secret)
}

func (s *service) tokens(sess Session, secret string) (Tokens, error) {
	access, err := s.d.Issuer.Issue(Claims{
		UserID:    sess.UserID,
		Role:      sess.Role,
		SessionID: sess.ID,
		TokenID:   uuid.NewString(),
		ExpiresAt: s.d.Clock.Now().Add(s.cfg.AccessTTL),
	})
	if err != nil {
		return Tokens{}, err
	}
	return Tokens{AccessToken: access, ExpiresIn: s.cfg.AccessTTL, RefreshToken: sess.ID + "." + secret}, nil
}

func (s *service) Refresh(ctx context.Context, refreshToken string) (Tokens, error) {
	sid, secret, ok := strings.Cut(refreshToken, ".")
	if !ok || sid == "" || secret == "" || len(refreshToken) > 256 {
		return Tokens{}, ErrInvalidRefresh.WithDetail("the refresh token is malformed")
	}
	next := randomToken(32)
	sess, res, err := s.d.Sessions.Rotate(ctx, sid, hashSecret(secret), hashSecret(next), s.cfg.RefreshTTL)
	if err != nil {
		return Tokens{}, unavailable("rotate session", err)
	}
	switch res {
	case Rotated:
		return s.tokens(sess, next)
	case Reused:
		s.d.Log.WarnContext(ctx, "refresh token reused: session revoked", "session", sid)
		return Tokens{}, ErrRefreshReused.WithDetail("this refresh token was already used; the session has been ended, log in again")
	case Revoked:
		return Tokens{}, ErrSessionEnded.WithDetail("the session has ended; log in again")
	default:
		return Tokens{}, ErrInvalidRefresh.WithDetail("the refresh token is not valid")
	}
}

func (s *service) Logout(ctx context.Context, sessionID string) error {
	if err := s.d.Sessions.Revoke(ctx, sessionID); err != nil {
		return unavailable("revoke session", err)
	}
	return nil
}

func (s *service) User(ctx context.Context, id uuid.UUID) (User, error) {
	u, err := s.d.Users.ByID(ctx, id)
	if err != nil && !errors.Is(err, ErrUserNotFound) {
		return User{}, unavailable("find user", err)
	}
	return u, err
}

// firstErr returns the first of joined errors, so the client sees one problem, not a join.
func firstErr(err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok && len(j.Unwrap()) > 0 {
		return j.Unwrap()[0]
	}
	return err
}

// unavailable marks a store failure as a dependency outage: 503, retry shortly.
func unavailable(what string, err error) error {
	if problem.As(err) != nil {
		return err
	}
	return problem.Unavailablef(fmt.Errorf("%s: %w", what, err), time.Second, "the account service is temporarily unavailable")
}

func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
