package payment

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/onsale-dev/onsale/internal/platform/httpserver"
)

// refundAnswer is a refund request's answer: the order as it now stands and the refund made
// (none for a free order, which is cancelled at once).
type refundAnswer struct {
	Order  orderJSON   `json:"order"`
	Refund *refundJSON `json:"refund,omitempty"`
}

func (h *Handler) refundAnswer(c echo.Context, res RefundResult) error {
	out := refundAnswer{Order: h.toOrderJSON(res.Order)}
	if res.Refund.ID != [16]byte{} {
		r := toRefundJSON(res.Refund)
		out.Refund = &r
	}
	status := http.StatusAccepted
	if !res.Created {
		status = http.StatusOK
		c.Response().Header().Set("Idempotent-Replayed", "true")
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/orders/"+res.Order.ID.String())
	return c.JSON(status, out)
}

func (h *Handler) cancelOrder(c echo.Context) error {
	id, err := orderParam(c)
	if err != nil {
		return err
	}
	var in struct {
		Reason string `json:"reason"`
	}
	if err := httpserver.Bind(c, &in); err != nil {
		return err
	}
	res, err := h.m.CancelOrder(c.Request().Context(), principal(c).UserID, id, in.Reason)
	if err != nil {
		return err
	}
	return h.refundAnswer(c, res)
}

func (h *Handler) refundOrder(c echo.Context) error {
	id, err := orderParam(c)
	if err != nil {
		return err
	}
	var in struct {
		AmountCents int64  `json:"amount_cents"`
		Reason      string `json:"reason"`
		KeepTickets bool   `json:"keep_tickets"`
	}
	if err := httpserver.Bind(c, &in); err != nil {
		return err
	}
	res, err := h.m.RefundOrder(c.Request().Context(), principal(c).UserID, id, in.AmountCents, in.Reason,
		c.Request().Header.Get("Idempotency-Key"), in.KeepTickets)
	if err != nil {
		return err
	}
	return h.refundAnswer(c, res)
}

type cancellationJSON struct {
	EventID    string     `json:"event_id"`
	Status     string     `json:"status"` // refunding, then finished
	Reason     string     `json:"reason"`
	CreatedAt  time.Time  `json:"created_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	// The event's orders by where they stand.
	OrdersPending   int `json:"orders_pending"`
	OrdersConfirmed int `json:"orders_confirmed"`
	OrdersRefunding int `json:"orders_refunding"`
	OrdersCancelled int `json:"orders_cancelled"`
}

func toCancellationJSON(p CancellationProgress) cancellationJSON {
	c := p.Cancellation
	out := cancellationJSON{EventID: c.EventID.String(), Status: "refunding", Reason: c.Reason, CreatedAt: c.CreatedAt,
		OrdersPending: p.Sales.Pending, OrdersConfirmed: p.Sales.Confirmed, OrdersRefunding: p.Sales.Refunding, OrdersCancelled: p.Sales.Refunded}
	if !c.FinishedAt.IsZero() {
		at := c.FinishedAt
		out.Status, out.FinishedAt = "finished", &at
	}
	return out
}

func (h *Handler) cancelEvent(c echo.Context) error {
	event, err := eventParam(c)
	if err != nil {
		return err
	}
	var in struct {
		Reason string `json:"reason"`
	}
	if err := httpserver.Bind(c, &in); err != nil {
		return err
	}
	p, created, err := h.m.CancelEvent(c.Request().Context(), principal(c).UserID, event, in.Reason)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/events/"+event.String()+"/cancellation")
	status := http.StatusAccepted
	if !created {
		status = http.StatusOK
	}
	return c.JSON(status, toCancellationJSON(p))
}

func (h *Handler) eventCancellation(c echo.Context) error {
	event, err := eventParam(c)
	if err != nil {
		return err
	}
	p, err := h.m.Cancellation(c.Request().Context(), principal(c).UserID, event)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, toCancellationJSON(p))
}
