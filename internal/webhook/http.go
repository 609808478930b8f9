package webhook

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/onsale-dev/onsale/internal/auth"
	"github.com/onsale-dev/onsale/internal/platform/httpserver"
	"github.com/onsale-dev/onsale/internal/platform/problem"
)

// Handler serves the webhook module's HTTP API to organizers: decode, call the module, encode.
type Handler struct {
	m     *Module
	authn auth.TokenChecker
}

// NewHandler returns the handler.
func NewHandler(m *Module, authn auth.TokenChecker) *Handler { return &Handler{m: m, authn: authn} }

// Routes lists the module's routes; every one is for organizers, each seeing only their own.
func (h *Handler) Routes() []httpserver.Route {
	organizer := []echo.MiddlewareFunc{auth.Require(h.authn, auth.RoleOrganizer)}
	return []httpserver.Route{
		{Method: http.MethodPost, Path: "/v1/webhooks", Handler: h.create, Middleware: organizer},
		{Method: http.MethodGet, Path: "/v1/webhooks", Handler: h.list, Middleware: organizer},
		{Method: http.MethodGet, Path: "/v1/webhooks/:webhook_id", Handler: h.get, Middleware: organizer},
		{Method: http.MethodPatch, Path: "/v1/webhooks/:webhook_id", Handler: h.update, Middleware: organizer},
		{Method: http.MethodDelete, Path: "/v1/webhooks/:webhook_id", Handler: h.delete, Middleware: organizer},
		{Method: http.MethodPost, Path: "/v1/webhooks/:webhook_id/rotate-secret", Handler: h.rotate, Middleware: organizer},
		{Method: http.MethodGet, Path: "/v1/webhooks/:webhook_id/deliveries", Handler: h.deliveries, Middleware: organizer},
		{Method: http.MethodPost, Path: "/v1/webhooks/:webhook_id/deliveries/:delivery_id/resend", Handler: h.resend, Middleware: organizer},
	}
}

type endpointJSON struct {
	ID          string    `json:"id"`
	URL         string    `json:"url"`
	EventTypes  []string  `json:"event_types"`
	Description string    `json:"description"`
	Disabled    bool      `json:"disabled"`
	CreatedAt   time.Time `json:"created_at"`
	// PreviousSecretExpiresAt is when the secret the last rotation replaced stops signing.
	PreviousSecretExpiresAt *time.Time `json:"previous_secret_expires_at,omitempty"`
	// Secret is shown in the answers to the registration and to a rotation only.
	Secret string `json:"secret,omitempty"`
}

func toEndpointJSON(e Endpoint) endpointJSON {
	out := endpointJSON{ID: e.ID.String(), URL: e.URL, EventTypes: e.EventTypes, Description: e.Description,
		Disabled: e.Disabled, CreatedAt: e.CreatedAt}
	if !e.PreviousSecretUntil.IsZero() {
		until := e.PreviousSecretUntil
		out.PreviousSecretExpiresAt = &until
	}
	return out
}

type attemptJSON struct {
	At         time.Time `json:"at"`
	StatusCode int       `json:"status_code"`
	LatencyMS  int64     `json:"latency_ms"`
	Error      string    `json:"error,omitempty"`
}

type deliveryJSON struct {
	ID            string          `json:"id"`
	EventID       string          `json:"event_id"`
	Type          string          `json:"type"`
	Status        DeliveryStatus  `json:"status"`
	AttemptCount  int             `json:"attempt_count"`
	NextAttemptAt *time.Time      `json:"next_attempt_at,omitempty"`
	LastAttemptAt *time.Time      `json:"last_attempt_at,omitempty"`
	CreatedAt     time.Time       `json:"created_at"`
	Payload       json.RawMessage `json:"payload"`
	Attempts      []attemptJSON   `json:"attempts"`
}

func toDeliveryJSON(d Delivery) deliveryJSON {
	out := deliveryJSON{ID: d.ID.String(), EventID: d.EventID, Type: d.Type, Status: d.Status, AttemptCount: d.Attempts,
		CreatedAt: d.CreatedAt, Payload: d.Payload, Attempts: make([]attemptJSON, len(d.History))}
	if d.Status == StatusPending {
		next := d.NextAttemptAt
		out.NextAttemptAt = &next
	}
	if !d.LastAttemptAt.IsZero() {
		last := d.LastAttemptAt
		out.LastAttemptAt = &last
	}
	if !json.Valid(out.Payload) {
		out.Payload = json.RawMessage("{}")
	}
	for i, a := range d.History {
		out.Attempts[i] = attemptJSON{At: a.At, StatusCode: a.StatusCode, LatencyMS: a.Latency.Milliseconds(), Error: a.Error}
	}
	return out
}

func organizerOf(c echo.Context) uuid.UUID { return auth.MustPrincipal(c.Request().Context()).UserID }

func idParam(c echo.Context, name string) (uuid.UUID, error) {
	id, err := uuid.Parse(c.Param(name))
	if err != nil {
		return uuid.Nil, problem.ErrBadRequest.WithDetail("%s is not a valid id", name)
	}
	return id, nil
}

func limitParam(c echo.Context) (int, error) {
	limit := 20
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return 0, problem.ErrBadRequest.WithDetail("limit must be from 1 to 100")
		}
		limit = n
	}
	return limit, nil
}

func (h *Handler) create(c echo.Context) error {
	var in struct {
		URL         string   `json:"url"`
		EventTypes  []string `json:"event_types"`
		Description string   `json:"description"`
	}
	if err := httpserver.Bind(c, &in); err != nil {
		return err
	}
	e, err := h.m.RegisterEndpoint(c.Request().Context(), organizerOf(c), NewEndpoint{URL: in.URL, EventTypes: in.EventTypes, Description: in.Description})
	if err != nil {
		return err
	}
	out := toEndpointJSON(e)
	out.Secret = e.Secret
	c.Response().Header().Set(echo.HeaderLocation, "/v1/webhooks/"+e.ID.String())
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusCreated, out)
}

func (h *Handler) list(c echo.Context) error {
	limit, err := limitParam(c)
	if err != nil {
		return err
	}
	es, next, err := h.m.Endpoints(c.Request().Context(), organizerOf(c), c.QueryParam("cursor"), limit)
	if err != nil {
		return err
	}
	out := struct {
		Items      []endpointJSON `json:"items"`
		NextCursor string         `json:"next_cursor,omitempty"`
	}{Items: make([]endpointJSON, len(es)), NextCursor: next}
	for i, e := range es {
		out.Items[i] = toEndpointJSON(e)
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, out)
}

func (h *Handler) get(c echo.Context) error {
	id, err := idParam(c, "webhook_id")
	if err != nil {
		return err
	}
	e, err := h.m.Endpoint(c.Request().Context(), organizerOf(c), id)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, toEndpointJSON(e))
}

func (h *Handler) update(c echo.Context) error {
	id, err := idParam(c, "webhook_id")
	if err != nil {
		return err
	}
	// Absent fields decode to nil and stay as they are; the spec refuses null for any of them,
	// and an empty event_types list decodes as empty, not nil, and is refused by the module.
	var in struct {
		URL         *string  `json:"url"`
		EventTypes  []string `json:"event_types"`
		Description *string  `json:"description"`
		Disabled    *bool    `json:"disabled"`
	}
	if err := httpserver.Bind(c, &in); err != nil {
		return err
	}
	e, err := h.m.UpdateEndpoint(c.Request().Context(), organizerOf(c), id,
		EndpointPatch{URL: in.URL, EventTypes: in.EventTypes, Description: in.Description, Disabled: in.Disabled})
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, toEndpointJSON(e))
}

func (h *Handler) rotate(c echo.Context) error {
	id, err := idParam(c, "webhook_id")
	if err != nil {
		return err
	}
	e, err := h.m.RotateSecret(c.Request().Context(), organizerOf(c), id)
	if err != nil {
		return err
	}
	out := toEndpointJSON(e)
	out.Secret = e.Secret
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, out)
}

func (h *Handler) delete(c echo.Context) error {
	id, err := idParam(c, "webhook_id")
	if err != nil {
		return err
	}
	if err := h.m.DeleteEndpoint(c.Request().Context(), organizerOf(c), id); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (h *Handler) deliveries(c echo.Context) error {
	id, err := idParam(c, "webhook_id")
	if err != nil {
		return err
	}
	limit, err := limitParam(c)
	if err != nil {
		return err
	}
	ds, next, err := h.m.Deliveries(c.Request().Context(), organizerOf(c), id, c.QueryParam("cursor"), limit)
	if err != nil {
		return err
	}
	out := struct {
		Items      []deliveryJSON `json:"items"`
		NextCursor string         `json:"next_cursor,omitempty"`
	}{Items: make([]deliveryJSON, len(ds)), NextCursor: next}
	for i, d := range ds {
		out.Items[i] = toDeliveryJSON(d)
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, out)
}

func (h *Handler) resend(c echo.Context) error {
	id, err := idParam(c, "webhook_id")
	if err != nil {
		return err
	}
	delivery, err := idParam(c, "delivery_id")
	if err != nil {
		return err
	}
	d, err := h.m.Resend(c.Request().Context(), organizerOf(c), id, delivery)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, toDeliveryJSON(d))
}
