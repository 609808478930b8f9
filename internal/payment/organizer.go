package payment

import (
	"context"
	"encoding/base64"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/inventory"
)

// TicketTypeSummary is one ticket type's figures in an organizer's sales summary: the live stock
// from inventory and the orders, revenue and check-ins from payment.
type TicketTypeSummary struct {
	TicketType inventory.TicketType
	Stock      inventory.Stock
	Sales      Sales
}

// SalesSummary is an event's sale as its organizer sees it.
type SalesSummary struct {
	Event       inventory.Event
	TicketTypes []TicketTypeSummary
	At          time.Time
}

// Attendee is one sold ticket with its buyer and admission.
type Attendee struct {
	Ticket      Ticket
	CustomerID  uuid.UUID
	CheckedInAt time.Time // zero until admitted
}

// ownEvent returns the event's stock when organizer runs it; inventory.ErrNotOwner otherwise.
func (m *Module) ownEvent(ctx context.Context, organizer, eventID uuid.UUID) (inventory.EventStock, error) {
	es, err := m.d.Inventory.EventStock(ctx, eventID)
	if err != nil {
		return inventory.EventStock{}, unavailable("read event", err)
	}
	if es.Catalogue.Event.OrganizerID != organizer {
		return inventory.EventStock{}, inventory.ErrNotOwner.WithDetail("only the organizer who created the event sees its sale")
	}
	return es, nil
}

func ticketTypeIDs(es inventory.EventStock) []uuid.UUID {
	ids := make([]uuid.UUID, len(es.Catalogue.TicketTypes))
	for i, t := range es.Catalogue.TicketTypes {
		ids[i] = t.ID
	}
	return ids
}

// EventOrders lists an event's orders for its organizer, newest first, optionally of one status
// (StatusDelayed: pending with the payment delayed).
func (m *Module) EventOrders(ctx context.Context, organizer, eventID uuid.UUID, status Status, cursor string, limit int) ([]Order, string, error) {
	after, err := decodeOrderCursor(cursor)
	if err != nil {
		return nil, "", err
	}
	es, err := m.ownEvent(ctx, organizer, eventID)
	if err != nil {
		return nil, "", err
	}
	ids := ticketTypeIDs(es)
	if len(ids) == 0 {
		return nil, "", nil
	}
	orders, err := m.d.Store.TicketTypeOrders(ctx, ids, status, after, limit+1)
	if err != nil {
		return nil, "", unavailable("list event orders", err)
	}
	next := ""
	if len(orders) > limit {
		orders = orders[:limit]
		last := orders[limit-1]
		next = base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(last.CreatedAt.UnixNano(), 10) + "|" + last.ID.String()))
	}
	return orders, next, nil
}

// EventAttendees lists the tickets of an event's confirmed orders, a page of orders at a time
// (newest first), with when each was admitted.
func (m *Module) EventAttendees(ctx context.Context, organizer, eventID uuid.UUID, cursor string, limit int) ([]Attendee, string, error) {
	orders, next, err := m.EventOrders(ctx, organizer, eventID, StatusConfirmed, cursor, limit)
	if err != nil {
		return nil, "", err
	}
	var ids []uuid.UUID
	for _, o := range orders {
		for _, t := range o.Tickets {
			ids = append(ids, t.ID)
		}
	}
	in := map[uuid.UUID]time.Time{}
	if len(ids) > 0 {
		if in, err = m.d.Store.CheckedIn(ctx, ids); err != nil {
			return nil, "", unavailable("read check-ins", err)
		}
	}
	out := make([]Attendee, 0, len(ids))
	for _, o := range orders {
		for _, t := range o.Tickets {
			out = append(out, Attendee{Ticket: t, CustomerID: o.CustomerID, CheckedInAt: in[t.ID]})
		}
	}
	return out, next, nil
}

// EventSales sums an event's sale up per ticket type for its organizer.
func (m *Module) EventSales(ctx context.Context, organizer, eventID uuid.UUID) (SalesSummary, error) {
	es, err := m.ownEvent(ctx, organizer, eventID)
	if err != nil {
		return SalesSummary{}, err
	}
	ids := ticketTypeIDs(es)
	var sales []Sales
	if len(ids) > 0 {
		if sales, err = m.d.Store.Sales(ctx, ids); err != nil {
			return SalesSummary{}, unavailable("sum sales", err)
		}
	}
	out := SalesSummary{Event: es.Catalogue.Event, At: m.d.Clock.Now().UTC()}
	for _, t := range es.Catalogue.TicketTypes {
		s := TicketTypeSummary{TicketType: t, Stock: inventory.Stock{TicketTypeID: t.ID, Capacity: t.Capacity}, Sales: Sales{TicketTypeID: t.ID}}
		if i := slices.IndexFunc(es.Stock, func(st inventory.Stock) bool { return st.TicketTypeID == t.ID }); i >= 0 {
			s.Stock = es.Stock[i]
		}
		if i := slices.IndexFunc(sales, func(sl Sales) bool { return sl.TicketTypeID == t.ID }); i >= 0 {
			s.Sales = sales[i]
		}
		out.TicketTypes = append(out.TicketTypes, s)
	}
	return out, nil
}
