package payment

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/onsale-dev/onsale/internal/webhook"
)

func eventCancelledNotice(c EventCancellation) (webhook.Event, error) {
	return webhook.EventCancelledEvent(c.OrganizerID, webhook.EventData{EventID: c.EventID, Reason: c.Reason, CancelledAt: c.CreatedAt})
}

// orderNotices are the webhook events an order's state implies, oldest happening first: its
// confirmation or failure, its cancellation, and each refund completed. Sent again after a crash,
// they carry the same ids.
func orderNotices(o Order, eventID, organizer uuid.UUID) ([]webhook.Event, error) {
	data := webhook.OrderData{OrderID: o.ID, CustomerID: o.CustomerID, EventID: eventID, TicketTypeID: o.Hold.TicketTypeID,
		Quantity: o.Hold.Quantity, Status: string(o.Status), AmountCents: o.AmountCents, Currency: o.Currency, RefundedCents: o.RefundedCents}
	var out []webhook.Event
	add := func(typ string, d webhook.OrderData, suffix string) error {
		at := o.UpdatedAt
		if typ == webhook.TypeOrderConfirmed {
			at = o.CreatedAt
		}
		ev, err := webhook.OrderEvent(typ, organizer, d, suffix, at)
		out = append(out, ev)
		return err
	}
	var err error
	switch {
	case o.Status == StatusFailed:
		d := data
		d.Reason = o.StatusDetail
		err = add(webhook.TypeOrderFailed, d, "")
	case o.Status.Paid():
		err = add(webhook.TypeOrderConfirmed, data, "")
	default:
		return nil, nil
	}
	if err == nil && o.Voided {
		d := data
		for _, r := range o.Refunds {
			if r.Key == keyCustomerCancel || r.Key == keyEventCancel || (d.Reason == "" && r.Reason != "") {
				d.Reason = r.Reason
			}
		}
		err = add(webhook.TypeOrderCancelled, d, "")
	}
	for _, r := range o.Refunds {
		if err != nil || r.Status != RefundSucceeded {
			continue
		}
		d := data
		id := r.ID
		d.RefundID, d.RefundAmountCents, d.Reason = &id, r.AmountCents, r.Reason
		err = add(webhook.TypeOrderRefunded, d, r.ID.String())
	}
	if err != nil {
		return nil, fmt.Errorf("notices of order %s: %w", o.ID, err)
	}
	return out, nil
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

// notifyOrder tells the organizer's webhook endpoints what the order's state implies.
func notifyOrder(ctx context.Context, hooks webhook.Publisher, owners *Owners, o Order) error {
	if hooks == nil {
		return nil
	}
	eventID, organizer, err := owners.Of(ctx, o.Hold.TicketTypeID)
	if err != nil {
		return err
	}
	evs, err := orderNotices(o, eventID, organizer)
	if err != nil {
		return err
	}
	for _, ev := range evs {
		if err := hooks.Publish(ctx, ev); err != nil {
			return fmt.Errorf("webhook event %s: %w", ev.ID, err)
		}
	}
	return nil
}
