package webhook

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// OrderData is the data of the order.* events.
type OrderData struct {
	OrderID    uuid.UUID `json:"order_id"`
	CustomerID uuid.UUID `json:"customer_id"`
	EventID    uuid.UUID `json:"event_id"`
	// Status is the order's status after the change: confirmed, failed, refund_pending,
	// refunded or cancelled.
	Status        string    `json:"status"`
	AmountCents   int64     `json:"amount_cents"`
	Currency      string    `json:"currency"`
	RefundedCents int64     `json:"refunded_cents"`
	TicketTypeID  uuid.UUID `json:"ticket_type_id"`
	Quantity      int       `json:"quantity"`
	// Reason says why the order failed, was cancelled or refunded, when known.
	Reason string `json:"reason,omitempty"`
	// RefundID and RefundAmountCents are the refund an order.refunded is about (an order may be
	// refunded in parts).
	RefundID          *uuid.UUID `json:"refund_id,omitempty"`
	RefundAmountCents int64      `json:"refund_amount_cents,omitempty"`
}

// TicketData is the data of ticket.checked_in.
type TicketData struct {
	TicketID     uuid.UUID `json:"ticket_id"`
	OrderID      uuid.UUID `json:"order_id"`
	EventID      uuid.UUID `json:"event_id"`
	TicketTypeID uuid.UUID `json:"ticket_type_id"`
	CheckedInAt  time.Time `json:"checked_in_at"`
}

// EventData is the data of event.cancelled.
type EventData struct {
	EventID     uuid.UUID `json:"event_id"`
	Reason      string    `json:"reason"`
	CancelledAt time.Time `json:"cancelled_at"`
}

// OrderEvent builds an order.* event. Its id is "<type>:<order id>", with ":<suffix>" when
// suffix is not empty: an order is confirmed, failed or cancelled once, but may be refunded more
// than once (in parts), so order.refunded takes the refund's id as suffix. Its ordering key is
// the order id, so an order's events reach each endpoint in the order they were published.
func OrderEvent(typ string, organizer uuid.UUID, d OrderData, suffix string, at time.Time) (Event, error) {
	id := typ + ":" + d.OrderID.String()
	if suffix != "" {
		id += ":" + suffix
	}
	return newEvent(id, typ, organizer, d.OrderID.String(), at, d)
}

// TicketCheckedInEvent builds ticket.checked_in; its id is "ticket.checked_in:<ticket id>" (a
// ticket is admitted once) and its ordering key the order id.
func TicketCheckedInEvent(organizer uuid.UUID, d TicketData) (Event, error) {
	return newEvent(TypeTicketCheckedIn+":"+d.TicketID.String(), TypeTicketCheckedIn, organizer, d.OrderID.String(), d.CheckedInAt, d)
}

// EventCancelledEvent builds event.cancelled; its id is "event.cancelled:<event id>".
func EventCancelledEvent(organizer uuid.UUID, d EventData) (Event, error) {
	return newEvent(TypeEventCancelled+":"+d.EventID.String(), TypeEventCancelled, organizer, d.EventID.String(), d.CancelledAt, d)
}

func newEvent(id, typ string, organizer uuid.UUID, key string, at time.Time, data any) (Event, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return Event{}, fmt.Errorf("webhook event %s: %w", id, err)
	}
	ev := Event{ID: id, Type: typ, OrganizerID: organizer, OrderingKey: key, At: at.UTC(), Data: raw}
	if err := ev.Validate(); err != nil {
		return Event{}, err
	}
	return ev, nil
}
