package auth

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/onsale-dev/onsale/internal/platform/httpserver"
)

// Handler serves the auth module's HTTP API: decode, call the service, encode.
type Handler struct {
	svc   Service
	authn *Authenticator
	jwks  []byte
	limit echo.MiddlewareFunc
}

// NewHandler returns the handler; jwks is the public key set document. limit, when not nil, runs
// first on every /v1/auth route (a per-client-address rate limit).
func NewHandler(svc Service, authn *Authenticator, jwks []byte, limit echo.MiddlewareFunc) *Handler {
	if limit == nil {
		limit = func(next echo.HandlerFunc) echo.HandlerFunc { return next }
	}
	return &Handler{svc: svc, authn: authn, jwks: jwks, limit: limit}
}

// Routes lists the module's routes.
func (h *Handler) Routes() []httpserver.Route {
	limited := []echo.MiddlewareFunc{h.limit}
	return []httpserver.Route{
		{Method: http.MethodPost, Path: "/v1/auth/register", Handler: h.register, Middleware: limited},
		{Method: http.MethodPost, Path: "/v1/auth/login", Handler: h.login, Middleware: limited},
		{Method: http.MethodPost, Path: "/v1/auth/refresh", Handler: h.refresh, Middleware: limited},
		{Method: http.MethodPost, Path: "/v1/auth/logout", Handler: h.logout, Middleware: []echo.MiddlewareFunc{h.limit, h.authn.Require()}},
		{Method: http.MethodPost, Path: "/v1/auth/stream-tickets", Handler: h.streamTicket, Middleware: []echo.MiddlewareFunc{h.authn.Require()}},
		{Method: http.MethodGet, Path: "/v1/me", Handler: h.me, Middleware: []echo.MiddlewareFunc{h.authn.Require()}},
		{Method: http.MethodGet, Path: "/.well-known/jwks.json", Handler: h.keys},
	}
}

type userJSON struct {
	ID    string `json:"id"`
	Email string `json:"email"`
	Name  string `json:"name"`
	Role  Role   `json:"role"`
}

func toUserJSON(u User) userJSON {
	return userJSON{ID: u.ID.String(), Email: u.Email, Name: u.Name, Role: u.Role}
}

type tokensJSON struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
}

func writeTokens(c echo.Context, t Tokens) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, tokensJSON{
		AccessToken: t.AccessToken, TokenType: "Bearer",
		ExpiresIn: int64(t.ExpiresIn.Seconds()), RefreshToken: t.RefreshToken,
	})
}

func (h *Handler) register(c echo.Context) error {
	var in struct {
		Email    string `json:"email"`
		Password string `json:"password"`
		Name     string `json:"name"`
	}
	if err := httpserver.Bind(c, &in); err != nil {
		return err
	}
	u, err := h.svc.Register(c.Request().Context(), in.Email, in.Password, in.Name)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, toUserJSON(u))
}

func (h *Handler) login(c echo.Context) error {
	var in struct {
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	if err := httpserver.Bind(c, &in); err != nil {
		return err
	}
	t, err := h.svc.Login(c.Request().Context(), in.Email, in.Password, c.RealIP())
	if err != nil {
		return err
	}
	return writeTokens(c, t)
}

func (h *Handler) refresh(c echo.Context) error {
	var in struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := httpserver.Bind(c, &in); err != nil {
		return err
	}
	t, err := h.svc.Refresh(c.Request().Context(), in.RefreshToken)
	if err != nil {
		return err
	}
	return writeTokens(c, t)
}

func (h *Handler) logout(c echo.Context) error {
	p := MustPrincipal(c.Request().Context())
	if err := h.svc.Logout(c.Request().Context(), p.SessionID); err != nil {
		return err
	}
	h.authn.Ended(p.SessionID)
	return c.NoContent(http.StatusNoContent)
}

func (h *Handler) streamTicket(c echo.Context) error {
	t, err := h.svc.StreamTicket(c.Request().Context(), MustPrincipal(c.Request().Context()))
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusCreated, struct {
		Ticket    string    `json:"ticket"`
		ExpiresAt time.Time `json:"expires_at"`
		ExpiresIn int64     `json:"expires_in"`
	}{t.Ticket, t.ExpiresAt.UTC(), int64(StreamTicketTTL.Seconds())})
}

func (h *Handler) me(c echo.Context) error {
	p := MustPrincipal(c.Request().Context())
	u, err := h.svc.User(c.Request().Context(), p.UserID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toUserJSON(u))
}

// InternalRoutes lists what the module serves other processes on the internal listener: its
// public keys, and whether a session is live (for processes sharing no session store).
func (h *Handler) InternalRoutes() []httpserver.Route {
	return []httpserver.Route{
		{Method: http.MethodGet, Path: "/internal/v1/jwks.json", Handler: h.keys},
		{Method: http.MethodGet, Path: "/internal/v1/sessions/:session_id", Handler: h.session},
	}
}

func (h *Handler) session(c echo.Context) error {
	active, err := h.authn.sessionActive(c.Request().Context(), c.Param("session_id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, struct {
		Active bool `json:"active"`
	}{active})
}

func (h *Handler) keys(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "public, max-age=300")
	return c.Blob(http.StatusOK, "application/jwk-set+json", h.jwks)
}
