package auth

import (
	"context"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/onsale-dev/onsale/internal/platform/problem"
)

// StreamTicketTTL is how long a stream ticket opens streams. A browser's EventSource cannot send
// an Authorization header, so it carries a ticket in the URL instead; URLs end up in access logs
// and browser history, so the ticket lives a minute and opens event streams only, never anything
// an access token opens.
const StreamTicketTTL = 60 * time.Second

// StreamTicketParam is the query parameter that carries a stream ticket.
const StreamTicketParam = "ticket"

// StreamAudience is the aud claim of stream tickets for access tokens of audience aud. The
// different audience is what keeps the two apart: an access token's verifier refuses a ticket,
// and a ticket's verifier refuses an access token.
func StreamAudience(aud string) string { return aud + ":stream" }

// StreamTicket is a signed, short-lived credential for opening event streams.
type StreamTicket struct {
	Ticket    string
	ExpiresAt time.Time
}

// StreamTicket signs a ticket for p's account and session.
func (s *service) StreamTicket(_ context.Context, p Principal) (StreamTicket, error) {
	if s.d.Tickets == nil {
		return StreamTicket{}, problem.ErrInternal.WithDetail("stream tickets are not configured")
	}
	exp := s.d.Clock.Now().Add(StreamTicketTTL)
	t, err := s.d.Tickets.Issue(Claims{UserID: p.UserID, Role: p.Role, SessionID: p.SessionID, TokenID: uuid.NewString(), ExpiresAt: exp})
	if err != nil {
		return StreamTicket{}, err
	}
	return StreamTicket{Ticket: t, ExpiresAt: exp.Truncate(time.Second)}, nil
}

// AuthenticateTicket checks a stream ticket: its signature and audience, then, as for an access
// token, that its session is still live (a logout ends what its tickets open). The Principal's
// ExpiresAt is the ticket's, so a stream it opened asks the client to reconnect within a minute.
func (a *Authenticator) AuthenticateTicket(ctx context.Context, ticket string) (Principal, error) {
	if a.tickets == nil {
		return Principal{}, ErrInvalidToken.WithDetail("stream tickets are not accepted here; send an access token: Authorization: Bearer <token>")
	}
	c, err := a.tickets.Verify(ticket)
	if err != nil {
		if problem.KindOf(err) == problem.Unauthorized {
			return Principal{}, ErrInvalidToken.WithDetail("the stream ticket is not valid (a ticket from POST /v1/auth/stream-tickets, not an access token, lasting %s): %s",
				StreamTicketTTL, detailOf(err))
		}
		return Principal{}, err
	}
	if err := a.StillActive(ctx, Principal{SessionID: c.SessionID}); err != nil {
		return Principal{}, err
	}
	return Principal{UserID: c.UserID, Role: c.Role, SessionID: c.SessionID, ExpiresAt: c.ExpiresAt}, nil
}

func detailOf(err error) string {
	if pe := problem.As(err); pe != nil && pe.Detail != "" {
		return pe.Detail
	}
	return "rejected"
}

// StreamChecker is what RequireStream needs: access tokens in the Authorization header, stream
// tickets in the URL.
type StreamChecker interface {
	TokenChecker
	AuthenticateTicket(ctx context.Context, ticket string) (Principal, error)
}

// RequireStream is Require for event streams: a request may authenticate with a stream ticket in
// the ticket query parameter (what a browser's EventSource can send) instead of the
// Authorization header. Only routes that serve event streams use it.
func RequireStream(a StreamChecker, roles ...Role) echo.MiddlewareFunc {
	header := Require(a, roles...)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		withHeader := header(next)
		return func(c echo.Context) error {
			ticket := c.QueryParam(StreamTicketParam)
			if ticket == "" {
				return withHeader(c)
			}
			req := c.Request()
			p, err := a.AuthenticateTicket(req.Context(), ticket)
			if err != nil {
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
