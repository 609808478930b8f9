package payment

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/onsale-dev/onsale/internal/auth"
	"github.com/onsale-dev/onsale/internal/platform/problem"
)

// salesInterval is how often the live sales stream looks at the sale: a few times a second
// whatever the rate of sales, so a dashboard costs the same during a flash crowd as before it.
const salesInterval = 500 * time.Millisecond

// csvPage is how many orders a CSV export reads at a time.
const csvPage = 500

// organizerOnly lets organizers through; each read then checks the event is theirs.
func (h *Handler) organizerOnly() []echo.MiddlewareFunc {
	return []echo.MiddlewareFunc{auth.Require(h.authn, auth.RoleOrganizer)}
}

func eventParam(c echo.Context) (uuid.UUID, error) {
	id, err := uuid.Parse(c.Param("event_id"))
	if err != nil {
		return uuid.Nil, problem.ErrBadRequest.WithDetail("event_id is not a valid id")
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

// wantsCSV tells whether the export was asked for: format=csv, or text/csv preferred in Accept.
func wantsCSV(c echo.Context) bool {
	if f := c.QueryParam("format"); f != "" {
		return f == "csv"
	}
	accept := c.Request().Header.Get(echo.HeaderAccept)
	return strings.Contains(accept, "text/csv") && !strings.Contains(accept, "json")
}

// paymentState is what the organizer's lists call an order's payment: pending, delayed (the
// breaker holds it back), confirmed or failed.
func paymentState(o Order) string {
	if o.Status == StatusPending && o.StatusDetail == DetailDelayed {
		return string(StatusDelayed)
	}
	return string(o.Status)
}

type eventOrderJSON struct {
	orderJSON
	CustomerID   string `json:"customer_id"`
	PaymentState string `json:"payment_state"`
}

func (h *Handler) eventOrders(c echo.Context) error {
	event, err := eventParam(c)
	if err != nil {
		return err
	}
	limit, err := limitParam(c)
	if err != nil {
		return err
	}
	status := Status(c.QueryParam("status"))
	ctx := c.Request().Context()
	organizer := principal(c).UserID
	if wantsCSV(c) {
		return h.writeCSV(c, "orders", []string{"order_id", "created_at", "customer_id", "ticket_type_id", "quantity",
			"amount_cents", "currency", "status", "payment_state", "status_detail", "ticket_codes"},
			func(cursor string) ([][]string, string, error) {
				orders, next, err := h.m.EventOrders(ctx, organizer, event, status, cursor, csvPage)
				rows := make([][]string, len(orders))
				for i, o := range orders {
					codes := make([]string, len(o.Tickets))
					for j, t := range o.Tickets {
						codes[j] = h.m.TicketCode(t)
					}
					rows[i] = []string{o.ID.String(), o.CreatedAt.UTC().Format(time.RFC3339), o.CustomerID.String(),
						o.Hold.TicketTypeID.String(), strconv.Itoa(o.Hold.Quantity), strconv.FormatInt(o.AmountCents, 10),
						o.Currency, string(o.Status), paymentState(o), o.StatusDetail, strings.Join(codes, " ")}
				}
				return rows, next, err
			})
	}
	orders, next, err := h.m.EventOrders(ctx, organizer, event, status, c.QueryParam("cursor"), limit)
	if err != nil {
		return err
	}
	out := struct {
		Items      []eventOrderJSON `json:"items"`
		NextCursor string           `json:"next_cursor,omitempty"`
	}{Items: make([]eventOrderJSON, len(orders)), NextCursor: next}
	for i, o := range orders {
		out.Items[i] = eventOrderJSON{orderJSON: h.toOrderJSON(o), CustomerID: o.CustomerID.String(), PaymentState: paymentState(o)}
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, out)
}

type attendeeJSON struct {
	TicketID     string     `json:"ticket_id"`
	Code         string     `json:"code"`
	OrderID      string     `json:"order_id"`
	CustomerID   string     `json:"customer_id"`
	TicketTypeID string     `json:"ticket_type_id"`
	CheckedInAt  *time.Time `json:"checked_in_at,omitempty"`
}

func (h *Handler) eventAttendees(c echo.Context) error {
	event, err := eventParam(c)
	if err != nil {
		return err
	}
	limit, err := limitParam(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	organizer := principal(c).UserID
	if wantsCSV(c) {
		return h.writeCSV(c, "attendees", []string{"ticket_id", "code", "order_id", "customer_id", "ticket_type_id", "checked_in_at"},
			func(cursor string) ([][]string, string, error) {
				as, next, err := h.m.EventAttendees(ctx, organizer, event, cursor, csvPage)
				rows := make([][]string, len(as))
				for i, a := range as {
					at := ""
					if !a.CheckedInAt.IsZero() {
						at = a.CheckedInAt.UTC().Format(time.RFC3339)
					}
					rows[i] = []string{a.Ticket.ID.String(), h.m.TicketCode(a.Ticket), a.Ticket.OrderID.String(),
						a.CustomerID.String(), a.Ticket.TicketTypeID.String(), at}
				}
				return rows, next, err
			})
	}
	as, next, err := h.m.EventAttendees(ctx, organizer, event, c.QueryParam("cursor"), limit)
	if err != nil {
		return err
	}
	out := struct {
		Items      []attendeeJSON `json:"items"`
		NextCursor string         `json:"next_cursor,omitempty"`
	}{Items: make([]attendeeJSON, len(as)), NextCursor: next}
	for i, a := range as {
		out.Items[i] = attendeeJSON{TicketID: a.Ticket.ID.String(), Code: h.m.TicketCode(a.Ticket), OrderID: a.Ticket.OrderID.String(),
			CustomerID: a.CustomerID.String(), TicketTypeID: a.Ticket.TicketTypeID.String()}
		if !a.CheckedInAt.IsZero() {
			at := a.CheckedInAt.UTC()
			out.Items[i].CheckedInAt = &at
		}
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, out)
}

// writeCSV answers the whole list as CSV, reading it a page at a time. The first page is read
// before anything is written, so a refusal (403, 404) is still a problem document.
func (h *Handler) writeCSV(c echo.Context, name string, header []string, page func(cursor string) ([][]string, string, error)) error {
	rows, next, err := page("")
	if err != nil {
		return err
	}
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-%s.csv"`, name, c.Param("event_id")))
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	cw := csv.NewWriter(w)
	if err := cw.Write(header); err != nil {
		return nil
	}
	for {
		for _, r := range rows {
			if err := cw.Write(r); err != nil {
				return nil // the client went away
			}
		}
		if next == "" {
			break
		}
		if rows, next, err = page(next); err != nil {
			// The status is sent; all that is left is to cut the export short, which the client
			// sees as a truncated download.
			h.m.d.Log.WarnContext(c.Request().Context(), "csv export cut short", "err", err)
			break
		}
	}
	cw.Flush()
	return nil
}

type salesJSON struct {
	EventID         string            `json:"event_id"`
	EventName       string            `json:"event_name"`
	At              time.Time         `json:"at"`
	Totals          salesFiguresJSON  `json:"totals"`
	TicketTypes     []ticketSalesJSON `json:"ticket_types"`
	OrdersPerSecond *float64          `json:"orders_per_second,omitempty"`
}

type salesFiguresJSON struct {
	Capacity        int   `json:"capacity"`
	Sold            int   `json:"sold"`
	Held            int   `json:"held"`
	Available       int   `json:"available"`
	OrdersPending   int   `json:"orders_pending"`
	OrdersDelayed   int   `json:"orders_delayed"`
	OrdersConfirmed int   `json:"orders_confirmed"`
	OrdersFailed    int   `json:"orders_failed"`
	RevenueCents    int64 `json:"revenue_cents"`
	CheckedIn       int   `json:"checked_in"`
}

type ticketSalesJSON struct {
	TicketTypeID string `json:"ticket_type_id"`
	Name         string `json:"name"`
	PriceCents   int64  `json:"price_cents"`
	Currency     string `json:"currency"`
	salesFiguresJSON
}

func (f *salesFiguresJSON) add(g salesFiguresJSON) {
	f.Capacity += g.Capacity
	f.Sold += g.Sold
	f.Held += g.Held
	f.Available += g.Available
	f.OrdersPending += g.OrdersPending
	f.OrdersDelayed += g.OrdersDelayed
	f.OrdersConfirmed += g.OrdersConfirmed
	f.OrdersFailed += g.OrdersFailed
	f.RevenueCents += g.RevenueCents
	f.CheckedIn += g.CheckedIn
}

func toSalesJSON(s SalesSummary) salesJSON {
	out := salesJSON{EventID: s.Event.ID.String(), EventName: s.Event.Name, At: s.At, TicketTypes: make([]ticketSalesJSON, len(s.TicketTypes))}
	for i, t := range s.TicketTypes {
		f := salesFiguresJSON{Capacity: t.Stock.Capacity, Sold: t.Stock.Sold, Held: t.Stock.Held, Available: t.Stock.Available(),
			OrdersPending: t.Sales.Pending, OrdersDelayed: t.Sales.Delayed, OrdersConfirmed: t.Sales.Confirmed,
			OrdersFailed: t.Sales.Failed, RevenueCents: t.Sales.RevenueCents, CheckedIn: t.Sales.CheckedIn}
		out.TicketTypes[i] = ticketSalesJSON{TicketTypeID: t.TicketType.ID.String(), Name: t.TicketType.Name,
			PriceCents: t.TicketType.PriceCents, Currency: t.TicketType.Currency, salesFiguresJSON: f}
		out.Totals.add(f)
	}
	return out
}

func (h *Handler) eventSales(c echo.Context) error {
	event, err := eventParam(c)
	if err != nil {
		return err
	}
	s, err := h.m.EventSales(c.Request().Context(), principal(c).UserID, event)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, toSalesJSON(s))
}

// salesEvents streams an event's sales figures to its organizer: a `sales` event at once, then
// one every salesInterval in which anything changed, never one per sale. orders_per_second is
// the rate of new orders since the previous look.
func (h *Handler) salesEvents(c echo.Context) error {
	event, err := eventParam(c)
	if err != nil {
		return err
	}
	p := principal(c)
	ctx := c.Request().Context()
	s, err := h.m.EventSales(ctx, p.UserID, event)
	if err != nil {
		return err
	}
	w := c.Response()
	hdr := w.Header()
	hdr.Set(echo.HeaderContentType, "text/event-stream")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	var last []byte
	prevOrders, prevAt := -1, time.Now()
	send := func(s SalesSummary) error {
		out := toSalesJSON(s)
		now := time.Now()
		total := out.Totals.OrdersPending + out.Totals.OrdersConfirmed + out.Totals.OrdersFailed
		rate := 0.0
		if prevOrders >= 0 && now.After(prevAt) {
			rate = float64(total-prevOrders) / now.Sub(prevAt).Seconds()
		}
		prevOrders, prevAt = total, now
		rate = float64(int(rate*10+0.5)) / 10
		out.OrdersPerSecond = &rate
		at := out.At
		out.At = time.Time{}
		same, err := json.Marshal(out)
		if err != nil {
			return err
		}
		if bytes.Equal(same, last) {
			return nil
		}
		last = same
		out.At = at
		data, err := json.Marshal(out)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "event: sales\ndata: %s\n\n", data); err != nil {
			return err
		}
		w.Flush()
		return nil
	}
	if err := send(s); err != nil {
		return nil
	}
	tick := time.NewTicker(salesInterval)
	defer tick.Stop()
	beat := time.NewTicker(h.m.cfg.Heartbeat)
	defer beat.Stop()
	expiry := time.NewTimer(time.Until(p.ExpiresAt))
	defer expiry.Stop()
	for {
		select {
		case <-tick.C:
			s, err := h.m.EventSales(ctx, p.UserID, event)
			if err != nil {
				continue // a dependency blinked: the figures stay as they were until it answers
			}
			if err := send(s); err != nil {
				return nil
			}
		case <-beat.C:
			if err := h.authn.StillActive(ctx, p); err != nil && problem.KindOf(err) != problem.Unavailable {
				return nil
			}
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return nil
			}
			w.Flush()
		case <-expiry.C:
			_, _ = fmt.Fprint(w, "event: reconnect\ndata: {\"reason\":\"token-expired\"}\n\n")
			w.Flush()
			return nil
		case <-h.streams().Done():
			_, _ = fmt.Fprint(w, "retry: 1000\n\n")
			w.Flush()
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}
