package inventory

import (
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/onsale-dev/onsale/internal/platform/httpserver"
)

// HoldRecord is a hold as the internal API carries it: every field, whoever owns it.
type HoldRecord struct {
	ID             string     `json:"id"`
	TicketTypeID   uuid.UUID  `json:"ticket_type_id"`
	CustomerID     uuid.UUID  `json:"customer_id"`
	Quantity       int        `json:"quantity"`
	UnitPriceCents int64      `json:"unit_price_cents"`
	Currency       string     `json:"currency"`
	Status         HoldStatus `json:"status"`
	ExpiresAt      time.Time  `json:"expires_at"`
	CreatedAt      time.Time  `json:"created_at"`
	OrderID        *uuid.UUID `json:"order_id,omitempty"`
}

// RecordOf is h as the internal API carries it.
func RecordOf(h Hold) HoldRecord {
	r := HoldRecord{ID: h.ID, TicketTypeID: h.TicketTypeID, CustomerID: h.CustomerID, Quantity: h.Quantity,
		UnitPriceCents: h.UnitPriceCents, Currency: h.Currency, Status: h.Status, ExpiresAt: h.ExpiresAt, CreatedAt: h.CreatedAt}
	if h.OrderID != uuid.Nil {
		id := h.OrderID
		r.OrderID = &id
	}
	return r
}

// Hold is the record as a hold.
func (r HoldRecord) Hold() Hold {
	h := Hold{ID: r.ID, TicketTypeID: r.TicketTypeID, CustomerID: r.CustomerID, Quantity: r.Quantity,
		UnitPriceCents: r.UnitPriceCents, Currency: r.Currency, Status: r.Status, ExpiresAt: r.ExpiresAt, CreatedAt: r.CreatedAt}
	if r.OrderID != nil {
		h.OrderID = *r.OrderID
	}
	return h
}

// TicketList is a hold's tickets as the internal API carries them.
type TicketList struct {
	Tickets []Ticket `json:"tickets"`
}

// InternalRoutes lists what the module serves other processes on the internal listener: the
// operations payment's Inventory port needs.
func (h *Handler) InternalRoutes() []httpserver.Route {
	return []httpserver.Route{
		{Method: http.MethodGet, Path: "/internal/v1/holds/:hold_id", Handler: h.internalGetHold},
		{Method: http.MethodPost, Path: "/internal/v1/holds/:hold_id/checkout", Handler: h.internalCheckout},
		{Method: http.MethodPost, Path: "/internal/v1/holds/:hold_id/commit", Handler: h.internalCommit},
		{Method: http.MethodPost, Path: "/internal/v1/holds/:hold_id/release", Handler: h.internalRelease},
		{Method: http.MethodGet, Path: "/internal/v1/holds/:hold_id/tickets", Handler: h.internalTickets},
		{Method: http.MethodGet, Path: "/internal/v1/events/:event_id/stock", Handler: h.internalEventStock},
		{Method: http.MethodPost, Path: "/internal/v1/holds/:hold_id/return", Handler: h.internalReturn},
		{Method: http.MethodPost, Path: "/internal/v1/events/:event_id/cancel", Handler: h.internalCancelEvent},
		{Method: http.MethodGet, Path: "/internal/v1/ticket-types/:ticket_type_id/event", Handler: h.internalEventOf},
	}
}

func (h *Handler) internalGetHold(c echo.Context) error {
	hold, err := h.m.GetHold(c.Request().Context(), c.Param("hold_id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, RecordOf(hold))
}

func (h *Handler) internalCheckout(c echo.Context) error {
	var in struct {
		OrderID uuid.UUID `json:"order_id"`
		Until   time.Time `json:"until"`
	}
	if err := httpserver.Bind(c, &in); err != nil {
		return err
	}
	hold, err := h.m.CheckoutHold(c.Request().Context(), c.Param("hold_id"), in.OrderID, in.Until)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, RecordOf(hold))
}

func (h *Handler) internalCommit(c echo.Context) error {
	var in struct {
		Hold    HoldRecord `json:"hold"`
		OrderID uuid.UUID  `json:"order_id"`
	}
	if err := httpserver.Bind(c, &in); err != nil {
		return err
	}
	if in.Hold.ID != c.Param("hold_id") {
		return invalid("hold.id", "must be the hold named in the path")
	}
	tickets, err := h.m.CommitHold(c.Request().Context(), in.Hold.Hold(), in.OrderID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, TicketList{Tickets: nonNil(tickets)})
}

func (h *Handler) internalRelease(c echo.Context) error {
	if err := h.m.ReleaseHold(c.Request().Context(), c.Param("hold_id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (h *Handler) internalTickets(c echo.Context) error {
	tickets, err := h.m.SoldTickets(c.Request().Context(), c.Param("hold_id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, TicketList{Tickets: nonNil(tickets)})
}

func (h *Handler) internalEventStock(c echo.Context) error {
	id, err := uuidParam(c, "event_id")
	if err != nil {
		return err
	}
	es, err := h.m.EventStock(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, es)
}

// Returned is what giving a hold's tickets back did, as the internal API carries it.
type Returned struct {
	Tickets int `json:"tickets"`
}

func (h *Handler) internalReturn(c echo.Context) error {
	n, err := h.m.ReturnTickets(c.Request().Context(), c.Param("hold_id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, Returned{Tickets: n})
}

// CancelRequest is who cancels an event, as the internal API carries it.
type CancelRequest struct {
	OrganizerID uuid.UUID `json:"organizer_id"`
}

func (h *Handler) internalCancelEvent(c echo.Context) error {
	id, err := uuidParam(c, "event_id")
	if err != nil {
		return err
	}
	var in CancelRequest
	if err := httpserver.Bind(c, &in); err != nil {
		return err
	}
	cat, err := h.m.CancelEvent(c.Request().Context(), in.OrganizerID, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, cat)
}

func (h *Handler) internalEventOf(c echo.Context) error {
	id, err := uuidParam(c, "ticket_type_id")
	if err != nil {
		return err
	}
	e, err := h.m.EventOf(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, e)
}

func nonNil(ts []Ticket) []Ticket {
	if ts == nil {
		return []Ticket{}
	}
	return ts
}
