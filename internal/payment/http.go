package payment

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/onsale-dev/onsale/internal/auth"
	"github.com/onsale-dev/onsale/internal/platform/httpserver"
	"github.com/onsale-dev/onsale/internal/platform/problem"
)

// Handler serves the payment module's HTTP API: decode, call the module, encode.
type Handler struct {
	m       *Module
	hub     *Hub
	authn   Authenticator
	streams func() context.Context // ends when the server shuts down
	keys    []byte

	mu   sync.Mutex
	open map[uuid.UUID]int // order event streams open per customer on this replica
}

// NewHandler returns the handler. streams gives the context that ends when the server starts
// shutting down, so open event streams close and their clients reconnect elsewhere.
func NewHandler(m *Module, hub *Hub, authn Authenticator, streams func() context.Context) (*Handler, error) {
	keys, err := m.d.Signer.PublicKeys()
	if err != nil {
		return nil, err
	}
	return &Handler{m: m, hub: hub, authn: authn, streams: streams, keys: keys, open: map[uuid.UUID]int{}}, nil
}

// Routes lists the module's routes.
func (h *Handler) Routes() []httpserver.Route {
	customer := []echo.MiddlewareFunc{auth.Require(h.authn, auth.RoleCustomer)}
	staff := []echo.MiddlewareFunc{auth.Require(h.authn, auth.RoleStaff)}
	return []httpserver.Route{
		{Method: http.MethodPost, Path: "/v1/orders", Handler: h.createOrder, Middleware: customer},
		{Method: http.MethodGet, Path: "/v1/orders", Handler: h.listOrders, Middleware: customer},
		{Method: http.MethodGet, Path: "/v1/orders/:order_id", Handler: h.getOrder, Middleware: customer},
		{Method: http.MethodPost, Path: "/v1/orders/:order_id/cancel", Handler: h.cancelOrder, Middleware: customer},
		{Method: http.MethodPost, Path: "/v1/orders/:order_id/refunds", Handler: h.refundOrder, Middleware: h.organizerOnly()},
		{Method: http.MethodGet, Path: "/v1/orders/:order_id/events", Handler: h.orderEvents, Stream: true,
			Middleware: []echo.MiddlewareFunc{auth.RequireStream(h.authn, auth.RoleCustomer)}},
		{Method: http.MethodPost, Path: "/v1/checkins", Handler: h.checkIn, Middleware: staff},
		{Method: http.MethodGet, Path: "/v1/events/:event_id/orders", Handler: h.eventOrders, Middleware: h.organizerOnly()},
		{Method: http.MethodGet, Path: "/v1/events/:event_id/attendees", Handler: h.eventAttendees, Middleware: h.organizerOnly()},
		{Method: http.MethodGet, Path: "/v1/events/:event_id/sales", Handler: h.eventSales, Middleware: h.organizerOnly()},
		{Method: http.MethodPost, Path: "/v1/events/:event_id/cancel", Handler: h.cancelEvent, Middleware: h.organizerOnly()},
		{Method: http.MethodGet, Path: "/v1/events/:event_id/cancellation", Handler: h.eventCancellation, Middleware: h.organizerOnly()},
		{Method: http.MethodGet, Path: "/v1/events/:event_id/sales/events", Handler: h.salesEvents, Stream: true,
			Middleware: []echo.MiddlewareFunc{auth.RequireStream(h.authn, auth.RoleOrganizer)}},
		{Method: http.MethodGet, Path: "/.well-known/ticket-keys.json", Handler: h.ticketKeys},
	}
}

type ticketJSON struct {
	ID           string `json:"id"`
	OrderID      string `json:"order_id"`
	TicketTypeID string `json:"ticket_type_id"`
	EventID      string `json:"event_id"`
	Code         string `json:"code,omitempty"`
}

type orderJSON struct {
	ID           string       `json:"id"`
	Status       Status       `json:"status"`
	StatusDetail string       `json:"status_detail"`
	HoldID       string       `json:"hold_id"`
	TicketTypeID string       `json:"ticket_type_id"`
	Quantity     int          `json:"quantity"`
	AmountCents  int64        `json:"amount_cents"`
	Currency     string       `json:"currency"`
	Tickets      []ticketJSON `json:"tickets"`
	// RefundedCents is what has been given back so far; Refunds lists every refund asked for.
	RefundedCents int64        `json:"refunded_cents"`
	Refunds       []refundJSON `json:"refunds"`
	CreatedAt     time.Time    `json:"created_at"`
	UpdatedAt     time.Time    `json:"updated_at"`
}

type refundJSON struct {
	ID          string       `json:"id"`
	AmountCents int64        `json:"amount_cents"`
	Reason      string       `json:"reason"`
	Status      RefundStatus `json:"status"`
	CreatedAt   time.Time    `json:"created_at"`
	CompletedAt *time.Time   `json:"completed_at,omitempty"`
}

func toRefundJSON(r Refund) refundJSON {
	out := refundJSON{ID: r.ID.String(), AmountCents: r.AmountCents, Reason: r.Reason, Status: r.Status, CreatedAt: r.CreatedAt}
	if !r.CompletedAt.IsZero() {
		at := r.CompletedAt
		out.CompletedAt = &at
	}
	return out
}

func (h *Handler) toOrderJSON(o Order) orderJSON {
	out := orderJSON{
		ID: o.ID.String(), Status: o.Status, StatusDetail: o.StatusDetail, HoldID: o.Hold.ID,
		TicketTypeID: o.Hold.TicketTypeID.String(), Quantity: o.Hold.Quantity, AmountCents: o.AmountCents,
		Currency: o.Currency, Tickets: make([]ticketJSON, len(o.Tickets)), RefundedCents: o.RefundedCents,
		Refunds: make([]refundJSON, len(o.Refunds)), CreatedAt: o.CreatedAt, UpdatedAt: o.UpdatedAt,
	}
	for i, r := range o.Refunds {
		out.Refunds[i] = toRefundJSON(r)
	}
	for i, t := range o.Tickets {
		out.Tickets[i] = ticketJSON{ID: t.ID.String(), OrderID: o.ID.String(), TicketTypeID: t.TicketTypeID.String(),
			EventID: t.EventID.String(), Code: h.m.TicketCode(t)}
	}
	return out
}

func principal(c echo.Context) auth.Principal { return auth.MustPrincipal(c.Request().Context()) }

func orderParam(c echo.Context) (uuid.UUID, error) {
	id, err := uuid.Parse(c.Param("order_id"))
	if err != nil {
		return uuid.Nil, problem.ErrBadRequest.WithDetail("order_id is not a valid id")
	}
	return id, nil
}

func (h *Handler) createOrder(c echo.Context) error {
	var in struct {
		HoldID string `json:"hold_id"`
	}
	if err := httpserver.Bind(c, &in); err != nil {
		return err
	}
	o, created, err := h.m.CreateOrder(c.Request().Context(), principal(c).UserID, in.HoldID, c.Request().Header.Get("Idempotency-Key"))
	if err != nil {
		return err
	}
	hdr := c.Response().Header()
	hdr.Set(echo.HeaderLocation, "/v1/orders/"+o.ID.String())
	if !created {
		hdr.Set("Idempotent-Replayed", "true")
	}
	return c.JSON(http.StatusAccepted, h.toOrderJSON(o))
}

func (h *Handler) listOrders(c echo.Context) error {
	limit := 20
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return problem.ErrBadRequest.WithDetail("limit must be from 1 to 100")
		}
		limit = n
	}
	orders, next, err := h.m.Orders(c.Request().Context(), principal(c).UserID, c.QueryParam("cursor"), limit)
	if err != nil {
		return err
	}
	out := struct {
		Items      []orderJSON `json:"items"`
		NextCursor string      `json:"next_cursor,omitempty"`
	}{Items: make([]orderJSON, len(orders)), NextCursor: next}
	for i, o := range orders {
		out.Items[i] = h.toOrderJSON(o)
	}
	return c.JSON(http.StatusOK, out)
}

func (h *Handler) getOrder(c echo.Context) error {
	id, err := orderParam(c)
	if err != nil {
		return err
	}
	o, err := h.m.Order(c.Request().Context(), principal(c).UserID, id)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, h.toOrderJSON(o))
}

// openStream counts a customer's stream unless they have MaxStreams open already; the returned
// function closes it.
func (h *Handler) openStream(customer uuid.UUID) (func(), bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.open[customer] >= h.m.cfg.MaxStreams {
		return nil, false
	}
	h.open[customer]++
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.open[customer]--; h.open[customer] <= 0 {
			delete(h.open, customer)
		}
	}, true
}

// orderEvents streams an order's status as Server-Sent Events: the current status at once, then
// each change until a terminal status. It subscribes before reading the order, so no change can
// fall between the two; heartbeats keep proxies from closing the connection, and the replica's
// Rechecker rereads the orders with open streams in case an announcement was lost.
//
// A stream lives no longer than what let it open: each heartbeat checks the session is still
// live (a logout anywhere ends the stream within one beat), and when the access token expires the
// client is told to reconnect with a fresh one.
func (h *Handler) orderEvents(c echo.Context) error {
	id, err := orderParam(c)
	if err != nil {
		return err
	}
	p := principal(c)
	closeStream, ok := h.openStream(p.UserID)
	if !ok {
		return ErrTooManyStreams.WithDetail("at most %d order streams may be open at once; close one first", h.m.cfg.MaxStreams).
			WithRetryAfter(h.m.cfg.Heartbeat)
	}
	events, unsubscribe := h.hub.Subscribe(id)
	end := func() { unsubscribe(); closeStream() }
	ctx := c.Request().Context()
	o, err := h.m.Order(ctx, p.UserID, id)
	if err != nil {
		end()
		return err
	}
	last, _ := strconv.Atoi(c.Request().Header.Get("Last-Event-ID"))
	st, err := httpserver.OpenStream(c)
	if err != nil {
		end()
		return nil // the client is gone, or sent what a stream cannot answer
	}
	if st.Owned() {
		// The stream has its connection: it goes on in a goroutine of its own, started with a
		// small stack, and the request's goroutine, grown through the middleware, ends. Its
		// context ends with the request, so the stream keeps only its values.
		ctx = context.WithoutCancel(ctx)
		go func() {
			defer end()
			defer st.Close()
			h.streamOrder(ctx, st, p, id, o, last, events)
		}()
		return nil
	}
	defer end()
	defer st.Close()
	h.streamOrder(ctx, st, p, id, o, last, events)
	return nil
}

// streamOrder writes the order's events on st until a terminal status, the client's leaving, the
// end of the token or the server's shutdown.
func (h *Handler) streamOrder(ctx context.Context, st *httpserver.Stream, p auth.Principal, id uuid.UUID, o Order, last int, events <-chan StatusEvent) {
	var buf []byte
	send := func(ev StatusEvent) error {
		if ev.Version <= last {
			return nil
		}
		data, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		buf = append(buf[:0], "id: "...)
		buf = strconv.AppendInt(buf, int64(ev.Version), 10)
		buf = append(buf, "\nevent: status\ndata: "...)
		buf = append(buf, data...)
		buf = append(buf, "\n\n"...)
		if err := st.Write(buf); err != nil {
			return err
		}
		last = ev.Version
		return nil
	}
	if err := send(EventOf(o)); err != nil || o.Status.Terminal() {
		return
	}
	beat := time.NewTicker(h.m.cfg.Heartbeat)
	defer beat.Stop()
	expiry := time.NewTimer(time.Until(p.ExpiresAt))
	defer expiry.Stop()
	for {
		select {
		case <-expiry.C:
			_ = st.Write([]byte("event: reconnect\ndata: {\"reason\":\"token-expired\"}\n\n"))
			return
		case ev := <-events:
			if err := send(ev); err != nil || ev.Status.Terminal() {
				return
			}
		case <-beat.C:
			// A stream that owns its connection learns here that its client left.
			if !st.Alive() {
				return
			}
			if err := h.authn.StillActive(ctx, p); err != nil && problem.KindOf(err) != problem.Unavailable {
				return // logged out or revoked: the client finds out when it reconnects
			}
			if err := st.Write(keepAlive); err != nil {
				return
			}
		case <-h.streams().Done():
			// The server is draining: ask the client to come back in a second (to another replica).
			_ = st.Write([]byte("retry: 1000\n\n"))
			return
		case <-st.Done():
			return
		}
	}
}

// keepAlive is the heartbeat's comment line.
var keepAlive = []byte(": keep-alive\n\n")

func (h *Handler) checkIn(c echo.Context) error {
	var in struct {
		Code string `json:"code"`
	}
	if err := httpserver.Bind(c, &in); err != nil {
		return err
	}
	ci, err := h.m.CheckIn(c.Request().Context(), principal(c).UserID, in.Code)
	if err != nil {
		return err
	}
	t := ci.Ticket
	return c.JSON(http.StatusOK, struct {
		Ticket      ticketJSON `json:"ticket"`
		CheckedInAt time.Time  `json:"checked_in_at"`
	}{
		Ticket: ticketJSON{ID: t.ID.String(), OrderID: t.OrderID.String(), TicketTypeID: t.TicketTypeID.String(),
			EventID: t.EventID.String()},
		CheckedInAt: ci.CheckedInAt,
	})
}

func (h *Handler) ticketKeys(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "public, max-age=300")
	return c.Blob(http.StatusOK, "application/jwk-set+json", h.keys)
}
