package inventory

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/onsale-dev/onsale/internal/auth"
	"github.com/onsale-dev/onsale/internal/platform/httpserver"
	"github.com/onsale-dev/onsale/internal/platform/problem"
)

// Handler serves the inventory module's HTTP API: decode, call the module, encode.
type Handler struct {
	m         *Module
	authn     Authenticator
	limitHold echo.MiddlewareFunc
	streams   func() context.Context // ends when the server shuts down
}

// Authenticator is what inventory needs of the auth module: checking a request's access token.
// The auth module satisfies it in process; a process without it checks tokens against auth's
// published keys and shared sessions.
type Authenticator interface {
	Authenticate(ctx context.Context, header string) (auth.Principal, error)
	// AuthenticateTicket checks a stream ticket, which opens event streams only.
	AuthenticateTicket(ctx context.Context, ticket string) (auth.Principal, error)
}

// NewHandler returns the handler. limitHold, when not nil, runs first on POST /v1/holds and on
// joining a queue (a per-client-address rate limit). streams gives the context that ends when
// the server starts shutting down, so open queue streams close and their clients reconnect
// elsewhere.
func NewHandler(m *Module, authn Authenticator, limitHold echo.MiddlewareFunc, streams func() context.Context) *Handler {
	if limitHold == nil {
		limitHold = func(next echo.HandlerFunc) echo.HandlerFunc { return next }
	}
	return &Handler{m: m, authn: authn, limitHold: limitHold, streams: streams}
}

// Routes lists the module's routes.
func (h *Handler) Routes() []httpserver.Route {
	organizer := []echo.MiddlewareFunc{auth.Require(h.authn, auth.RoleOrganizer)}
	customer := []echo.MiddlewareFunc{auth.Require(h.authn, auth.RoleCustomer)}
	return []httpserver.Route{
		{Method: http.MethodPost, Path: "/v1/events", Handler: h.createEvent, Middleware: organizer},
		{Method: http.MethodGet, Path: "/v1/events", Handler: h.listEvents},
		{Method: http.MethodGet, Path: "/v1/events/:event_id", Handler: h.getEvent},
		{Method: http.MethodPatch, Path: "/v1/events/:event_id", Handler: h.patchEvent, Middleware: organizer},
		{Method: http.MethodPost, Path: "/v1/events/:event_id/ticket-types", Handler: h.createTicketType, Middleware: organizer},
		{Method: http.MethodPatch, Path: "/v1/events/:event_id/ticket-types/:ticket_type_id", Handler: h.patchTicketType, Middleware: organizer},
		{Method: http.MethodGet, Path: "/v1/events/:event_id/availability", Handler: h.availability},
		{Method: http.MethodPost, Path: "/v1/holds", Handler: h.createHold, Middleware: []echo.MiddlewareFunc{h.limitHold, customer[0]}},
		{Method: http.MethodGet, Path: "/v1/holds/:hold_id", Handler: h.getHold, Middleware: customer},
		{Method: http.MethodDelete, Path: "/v1/holds/:hold_id", Handler: h.deleteHold, Middleware: customer},
		{Method: http.MethodPut, Path: "/v1/events/:event_id/waiting-room", Handler: h.setRoom(true), Middleware: organizer},
		{Method: http.MethodPatch, Path: "/v1/events/:event_id/waiting-room", Handler: h.setRoom(false), Middleware: organizer},
		{Method: http.MethodGet, Path: "/v1/events/:event_id/waiting-room", Handler: h.getRoom, Middleware: organizer},
		{Method: http.MethodDelete, Path: "/v1/events/:event_id/waiting-room", Handler: h.deleteRoom, Middleware: organizer},
		{Method: http.MethodPost, Path: "/v1/events/:event_id/queue", Handler: h.joinQueue, Middleware: []echo.MiddlewareFunc{h.limitHold, customer[0]}},
		{Method: http.MethodGet, Path: "/v1/events/:event_id/queue/me", Handler: h.getQueueEntry, Middleware: customer},
		{Method: http.MethodDelete, Path: "/v1/events/:event_id/queue/me", Handler: h.leaveQueue, Middleware: customer},
		{Method: http.MethodGet, Path: "/v1/events/:event_id/queue/me/events", Handler: h.queueEvents,
			Middleware: []echo.MiddlewareFunc{auth.RequireStream(h.authn, auth.RoleCustomer)}},
	}
}

// ---- views ----

type eventJSON struct {
	ID          string    `json:"id"`
	OrganizerID string    `json:"organizer_id"`
	Name        string    `json:"name"`
	Venue       string    `json:"venue"`
	Description string    `json:"description"`
	StartsAt    time.Time `json:"starts_at"`
	// CancelCutoffHours is always present: null says customers cannot cancel.
	CancelCutoffHours *int       `json:"cancellation_cutoff_hours"`
	Status            string     `json:"status"`
	CancelledAt       *time.Time `json:"cancelled_at,omitempty"`
	CreatedAt         time.Time  `json:"created_at"`
	UpdatedAt         time.Time  `json:"updated_at"`
}

func toEventJSON(e Event) eventJSON {
	out := eventJSON{ID: e.ID.String(), OrganizerID: e.OrganizerID.String(), Name: e.Name, Venue: e.Venue,
		Description: e.Description, StartsAt: e.StartsAt, CancelCutoffHours: e.CancelCutoffHours, Status: "scheduled",
		CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt}
	if !e.CancelledAt.IsZero() {
		at := e.CancelledAt
		out.Status, out.CancelledAt = "cancelled", &at
	}
	return out
}

type ticketTypeJSON struct {
	ID           string     `json:"id"`
	EventID      string     `json:"event_id"`
	Name         string     `json:"name"`
	PriceCents   int64      `json:"price_cents"`
	Currency     string     `json:"currency"`
	Capacity     int        `json:"capacity"`
	MaxPerOrder  int        `json:"max_per_order"`
	SalesStart   *time.Time `json:"sales_start,omitempty"`
	SalesEnd     *time.Time `json:"sales_end,omitempty"`
	Availability *stockJSON `json:"availability,omitempty"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func toTicketTypeJSON(t TicketType) ticketTypeJSON {
	return ticketTypeJSON{ID: t.ID.String(), EventID: t.EventID.String(), Name: t.Name, PriceCents: t.PriceCents,
		Currency: t.Currency, Capacity: t.Capacity, MaxPerOrder: t.MaxPerOrder,
		SalesStart: optTime(t.SalesStart), SalesEnd: optTime(t.SalesEnd)}
}

type stockJSON struct {
	TicketTypeID string `json:"ticket_type_id"`
	Capacity     int    `json:"capacity"`
	Sold         int    `json:"sold"`
	Held         int    `json:"held"`
	Available    int    `json:"available"`
}

func toStockJSON(s Stock) stockJSON {
	return stockJSON{TicketTypeID: s.TicketTypeID.String(), Capacity: s.Capacity, Sold: s.Sold, Held: s.Held, Available: s.Available()}
}

// writeHold answers with a hold. It is written by hand into a stack buffer: the hold answer is
// the commonest success of a flash sale, and encoding/json's reflection and its compaction of the
// result showed in profiles of the hold request. The tests check it against the spec's Hold.
func writeHold(c echo.Context, status int, h Hold) error {
	var buf [320]byte
	b := append(buf[:0], `{"id":`...)
	b = appendJSONString(b, h.ID)
	b = append(b, `,"ticket_type_id":"`...)
	b = append(b, h.TicketTypeID.String()...)
	b = append(b, `","quantity":`...)
	b = strconv.AppendInt(b, int64(h.Quantity), 10)
	b = append(b, `,"status":`...)
	b = appendJSONString(b, string(h.Status))
	b = append(b, `,"unit_price_cents":`...)
	b = strconv.AppendInt(b, h.UnitPriceCents, 10)
	b = append(b, `,"currency":`...)
	b = appendJSONString(b, h.Currency)
	b = append(b, `,"expires_at":"`...)
	b = h.ExpiresAt.AppendFormat(b, time.RFC3339Nano)
	b = append(b, "\"}\n"...)
	return c.Blob(status, echo.MIMEApplicationJSON, b)
}

// appendJSONString appends s as a JSON string: as it is when it needs no escape (ids, codes,
// statuses), through encoding/json otherwise.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// ---- helpers ----

func principal(c echo.Context) auth.Principal { return auth.MustPrincipal(c.Request().Context()) }

// uuidParam reads a path parameter the request validator has already checked.
func uuidParam(c echo.Context, name string) (uuid.UUID, error) {
	id, err := uuid.Parse(c.Param(name))
	if err != nil {
		return uuid.Nil, problem.ErrBadRequest.WithDetail("%s is not a valid id", name)
	}
	return id, nil
}

func parseTime(field, v string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, invalid(field, "must be an RFC 3339 date-time such as 2027-06-01T20:00:00Z")
	}
	return t, nil
}

// decodePatch reads a JSON object whose members are optional; null means "clear" where allowed.
func decodePatch(c echo.Context) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := httpserver.Bind(c, &m); err != nil {
		return nil, err
	}
	return m, nil
}

func patchField[T any](m map[string]json.RawMessage, name string) (*T, error) {
	raw, ok := m[name]
	if !ok {
		return nil, nil
	}
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, invalid(name, "has the wrong type")
	}
	return &v, nil
}

// patchTime reads an optional date-time; JSON null gives the zero time (clear).
func patchTime(m map[string]json.RawMessage, name string) (*time.Time, error) {
	raw, ok := m[name]
	if !ok {
		return nil, nil
	}
	if string(raw) == "null" {
		return &time.Time{}, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, invalid(name, "must be a date-time string or null")
	}
	t, err := parseTime(name, s)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// ---- events ----

func (h *Handler) createEvent(c echo.Context) error {
	var in struct {
		Name        string `json:"name"`
		Venue       string `json:"venue"`
		StartsAt    string `json:"starts_at"`
		Description string `json:"description"`
		CutoffHours *int   `json:"cancellation_cutoff_hours"`
	}
	if err := httpserver.Bind(c, &in); err != nil {
		return err
	}
	starts, err := parseTime("starts_at", in.StartsAt)
	if err != nil {
		return err
	}
	e, created, err := h.m.CreateEventOnce(c.Request().Context(), principal(c).UserID,
		EventInput{Name: in.Name, Venue: in.Venue, Description: in.Description, StartsAt: starts, CancelCutoffHours: in.CutoffHours},
		c.Request().Header.Get("Idempotency-Key"))
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if !created {
		status = http.StatusOK
		c.Response().Header().Set("Idempotent-Replayed", "true")
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/events/"+e.ID.String())
	return c.JSON(status, toEventJSON(e))
}

func (h *Handler) listEvents(c echo.Context) error {
	limit := 20
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return problem.ErrBadRequest.WithDetail("limit must be from 1 to 100")
		}
		limit = n
	}
	events, next, err := h.m.ListEvents(c.Request().Context(), c.QueryParam("cursor"), limit)
	if err != nil {
		return err
	}
	out := struct {
		Items      []eventJSON `json:"items"`
		NextCursor string      `json:"next_cursor,omitempty"`
	}{Items: make([]eventJSON, len(events)), NextCursor: next}
	for i, e := range events {
		out.Items[i] = toEventJSON(e)
	}
	c.Response().Header().Set("Cache-Control", "public, max-age=5")
	return c.JSON(http.StatusOK, out)
}

func (h *Handler) getEvent(c echo.Context) error {
	id, err := uuidParam(c, "event_id")
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	cat, err := h.m.Catalogue(ctx, id)
	if err != nil {
		return err
	}
	stock, err := h.m.Stock(ctx, cat)
	if err != nil {
		return err
	}
	byType := make(map[uuid.UUID]Stock, len(stock))
	for _, s := range stock {
		byType[s.TicketTypeID] = s
	}
	out := struct {
		eventJSON
		TicketTypes []ticketTypeJSON `json:"ticket_types"`
	}{eventJSON: toEventJSON(cat.Event), TicketTypes: make([]ticketTypeJSON, len(cat.TicketTypes))}
	for i, t := range cat.TicketTypes {
		out.TicketTypes[i] = toTicketTypeJSON(t)
		if s, ok := byType[t.ID]; ok {
			sj := toStockJSON(s)
			out.TicketTypes[i].Availability = &sj
		}
	}
	c.Response().Header().Set("Cache-Control", h.cacheControl())
	return c.JSON(http.StatusOK, out)
}

func (h *Handler) patchEvent(c echo.Context) error {
	id, err := uuidParam(c, "event_id")
	if err != nil {
		return err
	}
	m, err := decodePatch(c)
	if err != nil {
		return err
	}
	var p EventPatch
	if p.Name, err = patchField[string](m, "name"); err != nil {
		return err
	}
	if p.Venue, err = patchField[string](m, "venue"); err != nil {
		return err
	}
	if p.Description, err = patchField[string](m, "description"); err != nil {
		return err
	}
	if raw, ok := m["starts_at"]; ok {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return invalid("starts_at", "must be a date-time string")
		}
		t, err := parseTime("starts_at", s)
		if err != nil {
			return err
		}
		p.StartsAt = &t
	}
	if raw, ok := m["cancellation_cutoff_hours"]; ok {
		p.SetCancelCutoff = true
		if string(raw) != "null" {
			var n int
			if json.Unmarshal(raw, &n) != nil {
				return invalid("cancellation_cutoff_hours", "must be a whole number of hours, or null for no cancelling")
			}
			p.CancelCutoffHours = &n
		}
	}
	e, err := h.m.UpdateEvent(c.Request().Context(), principal(c).UserID, id, p)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toEventJSON(e))
}

// ---- ticket types ----

func (h *Handler) createTicketType(c echo.Context) error {
	eventID, err := uuidParam(c, "event_id")
	if err != nil {
		return err
	}
	var in struct {
		Name        string  `json:"name"`
		PriceCents  int64   `json:"price_cents"`
		Currency    string  `json:"currency"`
		Capacity    int     `json:"capacity"`
		MaxPerOrder int     `json:"max_per_order"`
		SalesStart  *string `json:"sales_start"`
		SalesEnd    *string `json:"sales_end"`
	}
	if err := httpserver.Bind(c, &in); err != nil {
		return err
	}
	input := TicketTypeInput{Name: in.Name, PriceCents: in.PriceCents, Currency: in.Currency,
		Capacity: in.Capacity, MaxPerOrder: in.MaxPerOrder}
	if in.SalesStart != nil {
		if input.SalesStart, err = parseTime("sales_start", *in.SalesStart); err != nil {
			return err
		}
	}
	if in.SalesEnd != nil {
		if input.SalesEnd, err = parseTime("sales_end", *in.SalesEnd); err != nil {
			return err
		}
	}
	t, created, err := h.m.CreateTicketTypeOnce(c.Request().Context(), principal(c).UserID, eventID, input,
		c.Request().Header.Get("Idempotency-Key"))
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if !created {
		status = http.StatusOK
		c.Response().Header().Set("Idempotent-Replayed", "true")
	}
	return c.JSON(status, toTicketTypeJSON(t))
}

func (h *Handler) patchTicketType(c echo.Context) error {
	eventID, err := uuidParam(c, "event_id")
	if err != nil {
		return err
	}
	id, err := uuidParam(c, "ticket_type_id")
	if err != nil {
		return err
	}
	m, err := decodePatch(c)
	if err != nil {
		return err
	}
	var p TicketTypePatch
	if p.Name, err = patchField[string](m, "name"); err != nil {
		return err
	}
	if p.PriceCents, err = patchField[int64](m, "price_cents"); err != nil {
		return err
	}
	if p.Capacity, err = patchField[int](m, "capacity"); err != nil {
		return err
	}
	if p.MaxPerOrder, err = patchField[int](m, "max_per_order"); err != nil {
		return err
	}
	if p.SalesStart, err = patchTime(m, "sales_start"); err != nil {
		return err
	}
	if p.SalesEnd, err = patchTime(m, "sales_end"); err != nil {
		return err
	}
	t, err := h.m.UpdateTicketType(c.Request().Context(), principal(c).UserID, eventID, id, p)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toTicketTypeJSON(t))
}

// ---- availability ----

func (h *Handler) cacheControl() string {
	return fmt.Sprintf("public, max-age=%d", int(h.m.Config().AvailabilityTTL.Seconds()))
}

func (h *Handler) availability(c echo.Context) error {
	id, err := uuidParam(c, "event_id")
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	cat, err := h.m.Catalogue(ctx, id)
	if err != nil {
		return err
	}
	stock, err := h.m.Stock(ctx, cat)
	if err != nil {
		return err
	}
	out := struct {
		EventID     string      `json:"event_id"`
		TicketTypes []stockJSON `json:"ticket_types"`
	}{EventID: id.String(), TicketTypes: make([]stockJSON, len(stock))}
	for i, s := range stock {
		out.TicketTypes[i] = toStockJSON(s)
	}
	body, err := json.Marshal(out)
	if err != nil {
		return err
	}
	sum := fnv.New64a()
	sum.Write(body)
	etag := `"` + strconv.FormatUint(sum.Sum64(), 36) + `"`
	hdr := c.Response().Header()
	hdr.Set("Cache-Control", h.cacheControl())
	hdr.Set("ETag", etag)
	if match := c.Request().Header.Get("If-None-Match"); match != "" && etagMatches(match, etag) {
		return c.NoContent(http.StatusNotModified)
	}
	return c.JSONBlob(http.StatusOK, body)
}

// etagMatches implements If-None-Match's weak comparison over a list of tags.
func etagMatches(header, etag string) bool {
	for _, part := range strings.Split(header, ",") {
		part = strings.TrimSpace(part)
		if part == "*" || part == etag || part == "W/"+etag {
			return true
		}
	}
	return false
}

// ---- holds ----

func (h *Handler) createHold(c echo.Context) error {
	var in struct {
		TicketTypeID string `json:"ticket_type_id"`
		Quantity     int    `json:"quantity"`
	}
	if err := httpserver.Bind(c, &in); err != nil {
		return err
	}
	tt, err := uuid.Parse(in.TicketTypeID)
	if err != nil {
		return invalid("ticket_type_id", "must be a UUID")
	}
	key := c.Request().Header.Get("Idempotency-Key")
	hold, created, err := h.m.HoldWithPass(c.Request().Context(), principal(c).UserID, tt, in.Quantity, key,
		c.Request().Header.Get(PassHeader))
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if !created {
		status = http.StatusOK
		c.Response().Header().Set("Idempotent-Replayed", "true")
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/holds/"+hold.ID)
	return writeHold(c, status, hold)
}

func (h *Handler) getHold(c echo.Context) error {
	hold, err := h.m.HoldFor(c.Request().Context(), principal(c).UserID, c.Param("hold_id"))
	if err != nil {
		return err
	}
	return writeHold(c, http.StatusOK, hold)
}

func (h *Handler) deleteHold(c echo.Context) error {
	if err := h.m.ReleaseFor(c.Request().Context(), principal(c).UserID, c.Param("hold_id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
