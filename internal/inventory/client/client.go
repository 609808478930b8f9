// Package client reaches the inventory module over its internal API, for a process that does not
// run it. Client has the method set of payment's Inventory port, so payment cannot tell it from
// the module in process: the same errors come back (a sold-out is inventory.ErrSoldOut), and a
// failure to reach inventory is an Unavailable problem that payment's callers retry.
package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/platform/internalapi"
)

// Client is inventory's internal API.
type Client struct {
	api *internalapi.Client
}

// New returns a client over api.
func New(api *internalapi.Client) *Client { return &Client{api: api} }

func holdPath(id, op string) string { return "/internal/v1/holds/" + url.PathEscape(id) + op }

// GetHold returns a hold; inventory.ErrHoldNotFound.
func (c *Client) GetHold(ctx context.Context, holdID string) (inventory.Hold, error) {
	var r inventory.HoldRecord
	if err := c.api.Do(ctx, http.MethodGet, holdPath(holdID, ""), nil, &r); err != nil {
		return inventory.Hold{}, fmt.Errorf("get hold %s: %w", holdID, err)
	}
	return r.Hold(), nil
}

// CheckoutHold binds the hold to orderID and keeps it until at least until.
func (c *Client) CheckoutHold(ctx context.Context, holdID string, orderID uuid.UUID, until time.Time) (inventory.Hold, error) {
	in := struct {
		OrderID uuid.UUID `json:"order_id"`
		Until   time.Time `json:"until"`
	}{orderID, until.UTC()}
	var r inventory.HoldRecord
	if err := c.api.Do(ctx, http.MethodPost, holdPath(holdID, "/checkout"), in, &r); err != nil {
		return inventory.Hold{}, fmt.Errorf("check out hold %s: %w", holdID, err)
	}
	return r.Hold(), nil
}

// CommitHold sells the hold for orderID and returns its tickets.
func (c *Client) CommitHold(ctx context.Context, h inventory.Hold, orderID uuid.UUID) ([]inventory.Ticket, error) {
	in := struct {
		Hold    inventory.HoldRecord `json:"hold"`
		OrderID uuid.UUID            `json:"order_id"`
	}{inventory.RecordOf(h), orderID}
	var out inventory.TicketList
	if err := c.api.Do(ctx, http.MethodPost, holdPath(h.ID, "/commit"), in, &out); err != nil {
		return nil, fmt.Errorf("commit hold %s: %w", h.ID, err)
	}
	return out.Tickets, nil
}

// ReleaseHold gives the tickets back; idempotent.
func (c *Client) ReleaseHold(ctx context.Context, holdID string) error {
	if err := c.api.Do(ctx, http.MethodPost, holdPath(holdID, "/release"), nil, nil); err != nil {
		return fmt.Errorf("release hold %s: %w", holdID, err)
	}
	return nil
}

// SoldTickets returns the tickets a hold was sold as, or none.
func (c *Client) SoldTickets(ctx context.Context, holdID string) ([]inventory.Ticket, error) {
	var out inventory.TicketList
	if err := c.api.Do(ctx, http.MethodGet, holdPath(holdID, "/tickets"), nil, &out); err != nil {
		return nil, fmt.Errorf("sold tickets of hold %s: %w", holdID, err)
	}
	if len(out.Tickets) == 0 {
		return nil, nil
	}
	return out.Tickets, nil
}

// EventStock returns an event, its ticket types and their live figures; inventory.ErrEventNotFound.
func (c *Client) EventStock(ctx context.Context, eventID uuid.UUID) (inventory.EventStock, error) {
	var out inventory.EventStock
	if err := c.api.Do(ctx, http.MethodGet, "/internal/v1/events/"+eventID.String()+"/stock", nil, &out); err != nil {
		return inventory.EventStock{}, fmt.Errorf("stock of event %s: %w", eventID, err)
	}
	return out, nil
}

// ReturnTickets puts a hold's sold tickets back on sale, once; inventory.ErrHoldNotFound when it
// sold none.
func (c *Client) ReturnTickets(ctx context.Context, holdID string) (int, error) {
	var out inventory.Returned
	if err := c.api.Do(ctx, http.MethodPost, holdPath(holdID, "/return"), nil, &out); err != nil {
		return 0, fmt.Errorf("return tickets of hold %s: %w", holdID, err)
	}
	return out.Tickets, nil
}

// CancelEvent cancels an event for its organizer and returns it with its ticket types.
func (c *Client) CancelEvent(ctx context.Context, organizer, eventID uuid.UUID) (inventory.Catalogue, error) {
	var out inventory.Catalogue
	if err := c.api.Do(ctx, http.MethodPost, "/internal/v1/events/"+eventID.String()+"/cancel",
		inventory.CancelRequest{OrganizerID: organizer}, &out); err != nil {
		return inventory.Catalogue{}, fmt.Errorf("cancel event %s: %w", eventID, err)
	}
	return out, nil
}

// EventOf returns the event a ticket type belongs to; inventory.ErrTicketTypeNotFound.
func (c *Client) EventOf(ctx context.Context, ticketType uuid.UUID) (inventory.Event, error) {
	var out inventory.Event
	if err := c.api.Do(ctx, http.MethodGet, "/internal/v1/ticket-types/"+ticketType.String()+"/event", nil, &out); err != nil {
		return inventory.Event{}, fmt.Errorf("event of ticket type %s: %w", ticketType, err)
	}
	return out, nil
}
