package auth

import (
	"context"
	"slices"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/labstack/echo/v4"

	"github.com/onsale-dev/onsale/internal/platform/problem"
)

// Authenticator turns a bearer token into a Principal: a local signature check (cached), then a
// revocation check that the session store answers from its coherent local cache.
type Authenticator struct {
	verifier Verifier
	tickets  Verifier // stream tickets; nil refuses them
	sessions SessionChecker
	// ended remembers sessions this replica ended, so its own next request is refused without
	// asking the store.
	ended *lru.Cache[string, struct{}]
}

// SessionChecker tells whether a session is live: the module's SessionStore where auth runs;
// where it does not, the shared session store read directly, or auth's internal API.
type SessionChecker interface {
	Active(ctx context.Context, sessionID string) (bool, error)
}

// NewAuthenticator returns an authenticator of access tokens (v) and, where tickets is not nil,
// of stream tickets.
func NewAuthenticator(v Verifier, s SessionChecker, tickets Verifier) *Authenticator {
	ended, _ := lru.New[string, struct{}](10_000)
	return &Authenticator{verifier: v, tickets: tickets, sessions: s, ended: ended}
}

// Ended records that a session was ended by this replica.
func (a *Authenticator) Ended(sessionID string) { a.ended.Add(sessionID, struct{}{}) }

// Authenticate checks an Authorization header value.
func (a *Authenticator) Authenticate(ctx context.Context, header string) (Principal, error) {
	scheme, token, ok := strings.Cut(header, " ")
	if header == "" {
		return Principal{}, ErrInvalidToken.WithDetail("send an access token: Authorization: Bearer <token>")
	}
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return Principal{}, ErrInvalidToken.WithDetail("use the Bearer scheme")
	}
	c, err := a.verifier.Verify(strings.TrimSpace(token))
	if err != nil {
		return Principal{}, err
	}
	if a.ended.Contains(c.SessionID) {
		return Principal{}, ErrSessionEnded.WithDetail("the session has ended; log in again")
	}
	active, err := a.sessions.Active(ctx, c.SessionID)
	if err != nil {
		return Principal{}, problem.Unavailablef(err, time.Second, "sessions cannot be checked right now")
	}
	if !active {
		return Principal{}, ErrSessionEnded.WithDetail("the session has ended; log in again")
	}
	return Principal{UserID: c.UserID, Role: c.Role, SessionID: c.SessionID, ExpiresAt: c.ExpiresAt}, nil
}

// sessionActive tells whether a session is live, as every request's check would.
func (a *Authenticator) sessionActive(ctx context.Context, sessionID string) (bool, error) {
	if a.ended.Contains(sessionID) {
		return false, nil
	}
	active, err := a.sessions.Active(ctx, sessionID)
	if err != nil {
		return false, problem.Unavailablef(err, time.Second, "sessions cannot be checked right now")
	}
	return active, nil
}

// StillActive tells whether p's session is still live (not logged out, not revoked), for a
// long-lived response that authenticated once and must stop when the session ends. Like every
// request's check, it is answered from the session store's local cache.
func (a *Authenticator) StillActive(ctx context.Context, p Principal) error {
	if a.ended.Contains(p.SessionID) {
		return ErrSessionEnded.WithDetail("the session has ended; log in again")
	}
	active, err := a.sessions.Active(ctx, p.SessionID)
	if err != nil {
		return problem.Unavailablef(err, time.Second, "sessions cannot be checked right now")
	}
	if !active {
		return ErrSessionEnded.WithDetail("the session has ended; log in again")
	}
	return nil
}

// Require lets a request through only with a valid token whose role is one of roles (any role
// when none are given), and puts the Principal in the request context.
func (a *Authenticator) Require(roles ...Role) echo.MiddlewareFunc { return Require(a, roles...) }

// TokenChecker is what Require needs: whatever turns an Authorization header into a Principal.
// Other modules declare their own port with this method; the local Authenticator and one built on
// auth's published keys (in a process without the auth module) both satisfy it.
type TokenChecker interface {
	Authenticate(ctx context.Context, header string) (Principal, error)
}

// Require is middleware that lets a request through only with a token a accepts, whose role is
// one of roles (any role when none are given), and puts the Principal in the request context.
func Require(a TokenChecker, roles ...Role) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			p, err := a.Authenticate(req.Context(), req.Header.Get(echo.HeaderAuthorization))
			if err != nil {
				if problem.KindOf(err) == problem.Unauthorized {
					c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="onsale"`)
				}
				return err
			}
			if len(roles) > 0 && !slices.Contains(roles, p.Role) {
				return ErrRoleForbidden.WithDetail("this needs the %s role", joinRoles(roles))
			}
			c.SetRequest(req.WithContext(WithPrincipal(req.Context(), p)))
			return next(c)
		}
	}
}

func joinRoles(roles []Role) string {
	s := make([]string, len(roles))
	for i, r := range roles {
		s[i] = string(r)
	}
	return strings.Join(s, " or ")
}

type principalKey struct{}

// WithPrincipal returns a context carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return &principalCtx{Context: ctx, p: p}
}

// principalCtx is the context WithPrincipal returns: one allocation holding the principal, where
// context.WithValue would take two (the node and the boxed principal) on every authenticated
// request.
type principalCtx struct {
	context.Context
	p Principal
}

// Value answers the principal's key with a pointer to it (no copy into an interface) and asks the
// parent for any other key.
func (c *principalCtx) Value(key any) any {
	if _, ok := key.(principalKey); ok {
		return &c.p
	}
	return c.Context.Value(key)
}

// PrincipalFrom returns the authenticated caller, if any.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	if !ok {
		return Principal{}, false
	}
	return *p, true
}

// MustPrincipal returns the caller of a route behind Require; it panics if the route forgot it,
// which the recovery middleware turns into a 500.
func MustPrincipal(ctx context.Context) Principal {
	p, ok := PrincipalFrom(ctx)
	if !ok {
		panic("auth: route without Require")
	}
	return p
}
