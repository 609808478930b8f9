package payment

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	lru "github.com/hashicorp/golang-lru/v2"
)

// The notice types integrators can subscribe to (webhooks).
const (
	NoticeOrderConfirmed  = "order.confirmed"
	NoticeOrderFailed     = "order.failed"
	NoticeOrderCancelled  = "order.cancelled"
	NoticeOrderRefunded   = "order.refunded"
	NoticeTicketCheckedIn = "ticket.checked_in"
	NoticeEventCancelled  = "event.cancelled"
)

// Notice is something that happened to an order, a ticket or an event, for the organizer's
// integrations. The same happening always has the same ID, so telling it twice is harmless.
type Notice struct {
	ID          string
	Type        string
	OrganizerID uuid.UUID
	// OrderingKey groups notices that must reach an endpoint in order (an order's).
	OrderingKey string
	At          time.Time
	Data        json.RawMessage
}

// Notifier queues notices for delivery; webhooks in production.
type Notifier interface {
	Notify(ctx context.Context, n Notice) error
}

// OrderNoticeData is the data of an order notice.
type OrderNoticeData struct {
	OrderID       uuid.UUID `json:"order_id"`
	CustomerID    uuid.UUID `json:"customer_id"`
	EventID       uuid.UUID `json:"event_id"`
	TicketTypeID  uuid.UUID `json:"ticket_type_id"`
	Quantity      int       `json:"quantity"`
	Status        Status    `json:"status"`
	AmountCents   int64     `json:"amount_cents"`
	Currency      string    `json:"currency"`
	RefundedCents int64     `json:"refunded_cents"`
	// The refund's, for order.refunded.
	RefundID          *uuid.UUID `json:"refund_id,omitempty"`
	RefundAmountCents int64      `json:"refund_amount_cents,omitempty"`
	Reason            string     `json:"reason,omitempty"`
}

// TicketNoticeData is the data of a ticket.checked_in notice.
type TicketNoticeData struct {
	TicketID     uuid.UUID `json:"ticket_id"`
	OrderID      uuid.UUID `json:"order_id"`
	EventID      uuid.UUID `json:"event_id"`
	TicketTypeID uuid.UUID `json:"ticket_type_id"`
	CheckedInAt  time.Time `json:"checked_in_at"`
}

// EventNoticeData is the data of an event.cancelled notice.
type EventNoticeData struct {
	EventID     uuid.UUID `json:"event_id"`
	Reason      string    `json:"reason"`
	CancelledAt time.Time `json:"cancelled_at"`
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("notice data: %v", err)) // plain structs of strings, numbers and times
	}
	return b
}

func eventCancelledNotice(c EventCancellation) Notice {
	return Notice{ID: "event.cancelled:" + c.EventID.String(), Type: NoticeEventCancelled, OrganizerID: c.OrganizerID,
		OrderingKey: c.EventID.String(), At: c.CreatedAt,
		Data: mustJSON(EventNoticeData{EventID: c.EventID, Reason: c.Reason, CancelledAt: c.CreatedAt})}
}

// orderNotices are the notices an order's state implies, oldest happening first: its
// confirmation or failure, its cancellation, and each refund completed. Sent again after a crash,
// they carry the same ids.
func orderNotices(o Order, eventID, organizer uuid.UUID) []Notice {
	data := OrderNoticeData{OrderID: o.ID, CustomerID: o.CustomerID, EventID: eventID, TicketTypeID: o.Hold.TicketTypeID,
		Quantity: o.Hold.Quantity, Status: o.Status, AmountCents: o.AmountCents, Currency: o.Currency, RefundedCents: o.RefundedCents}
	key := o.ID.String()
	var out []Notice
	add := func(typ, id string, at time.Time, d OrderNoticeData) {
		out = append(out, Notice{ID: typ + ":" + id, Type: typ, OrganizerID: organizer, OrderingKey: key, At: at, Data: mustJSON(d)})
	}
	switch {
	case o.Status == StatusFailed:
		d := data
		d.Reason = o.StatusDetail
		add(NoticeOrderFailed, key, o.UpdatedAt, d)
	case o.Status.Paid():
		add(NoticeOrderConfirmed, key, o.CreatedAt, data)
	default:
		return nil
	}
	if o.Voided {
		d := data
		for _, r := range o.Refunds {
			if r.Key == keyCustomerCancel || r.Key == keyEventCancel || (d.Reason == "" && r.Reason != "") {
				d.Reason = r.Reason
			}
		}
		add(NoticeOrderCancelled, key, o.UpdatedAt, d)
	}
	for _, r := range o.Refunds {
		if r.Status != RefundSucceeded {
			continue
		}
		d := data
		id := r.ID
		d.RefundID, d.RefundAmountCents, d.Reason = &id, r.AmountCents, r.Reason
		add(NoticeOrderRefunded, key+":"+r.ID.String(), r.CompletedAt, d)
	}
	return out
}

// Owners finds the event and organizer of a ticket type, remembering them: neither ever changes.
type Owners struct {
	inv   Inventory
	cache *lru.Cache[uuid.UUID, [2]uuid.UUID]
}

// NewOwners returns a lookup that remembers up to n ticket types.
func NewOwners(inv Inventory, n int) *Owners {
	c, err := lru.New[uuid.UUID, [2]uuid.UUID](max(n, 1))
	if err != nil {
		panic(err) // only for a size below 1
	}
	return &Owners{inv: inv, cache: c}
}

// Of returns the event and organizer of a ticket type.
func (w *Owners) Of(ctx context.Context, ticketType uuid.UUID) (eventID, organizer uuid.UUID, err error) {
	if v, ok := w.cache.Get(ticketType); ok {
		return v[0], v[1], nil
	}
	e, err := w.inv.EventOf(ctx, ticketType)
	if err != nil {
		return uuid.Nil, uuid.Nil, fmt.Errorf("owner of ticket type %s: %w", ticketType, err)
	}
	w.cache.Add(ticketType, [2]uuid.UUID{e.ID, e.OrganizerID})
	return e.ID, e.OrganizerID, nil
}

// notifyOrder tells the organizer's integrations what the order's state implies.
func notifyOrder(ctx context.Context, n Notifier, owners *Owners, o Order) error {
	if n == nil {
		return nil
	}
	eventID, organizer, err := owners.Of(ctx, o.Hold.TicketTypeID)
	if err != nil {
		return err
	}
	for _, nt := range orderNotices(o, eventID, organizer) {
		if err := n.Notify(ctx, nt); err != nil {
			return fmt.Errorf("notice %s: %w", nt.ID, err)
		}
	}
	return nil
}
