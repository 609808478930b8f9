package inventory

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
)

// ReturnTickets puts the tickets a hold was sold as back on sale, for a cancelled order. It acts
// once per hold: a repeat returns 0 and changes nothing. ErrHoldNotFound when the hold sold nothing.
func (m *Module) ReturnTickets(ctx context.Context, holdID string) (int, error) {
	tt, n, err := m.d.Store.ReturnTickets(ctx, holdID, m.d.Clock.Now().UTC())
	if errors.Is(err, ErrHoldNotFound) {
		return 0, err
	}
	if err != nil {
		return 0, unavailable("return tickets", err)
	}
	// Configured again even on a repeat: the first call may have failed after the store's write,
	// and the hold store only learns of the returned tickets from the rules.
	rules, err := m.rulesOf(ctx, tt)
	if err != nil {
		return 0, err
	}
	if err := m.d.Holds.Configure(ctx, rules); err != nil {
		return 0, unavailable("configure holds", err)
	}
	m.refreshSoon(tt.EventID)
	return n, nil
}

// refreshDelay is how long returned tickets may take to show in the shared catalogue's figures.
const refreshDelay = 500 * time.Millisecond

// refreshSoon refreshes an event's shared catalogue once within refreshDelay, however many
// changes ask for it meanwhile. Returned tickets change only the capacity and sold figures
// organizers see (what can be held is the hold store's, configured at once), and a cancelled
// event returns thousands in a minute: one refresh each cost more than the returns themselves.
func (m *Module) refreshSoon(eventID uuid.UUID) {
	if m.stock != nil {
		m.stock.remove(eventID)
	}
	if _, pending := m.refreshing.LoadOrStore(eventID, true); pending {
		return
	}
	time.AfterFunc(refreshDelay, func() {
		m.refreshing.Delete(eventID) // first: a return from now on schedules a refresh of its own
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m.publish(ctx, eventID)
	})
}

// CancelEvent cancels an event its organizer owns: sales end now on every ticket type and the
// waiting room closes, so nothing more is sold. It is idempotent: a cancelled event is returned
// as it is, with its ticket types. Refunding the orders is payment's work.
func (m *Module) CancelEvent(ctx context.Context, organizer, id uuid.UUID) (Catalogue, error) {
	now := m.d.Clock.Now().UTC()
	e, err := m.d.Store.UpdateEvent(ctx, id, func(e *Event) error {
		if e.OrganizerID != organizer {
			return ErrNotOwner.WithDetail("only the event's organizer may cancel it")
		}
		if e.CancelledAt.IsZero() {
			e.CancelledAt = now
		}
		return nil
	})
	if err != nil {
		return Catalogue{}, unavailable("cancel event", err)
	}
	types, err := m.d.Store.TicketTypes(ctx, id)
	if err != nil {
		return Catalogue{}, unavailable("read ticket types", err)
	}
	// The steps after the event's row are repeated by every call, so a cancellation cut short
	// by a crash is finished by the organizer's retry (or the payment runner's).
	for i, t := range types {
		if !t.SalesEnd.IsZero() && !t.SalesEnd.After(e.CancelledAt) {
			if err := m.configure(ctx, t.ID); err != nil {
				return Catalogue{}, err
			}
			continue
		}
		updated, err := m.d.Store.UpdateTicketType(ctx, t.ID, func(t *TicketType) error {
			t.SalesEnd = e.CancelledAt
			if !t.SalesStart.IsZero() && !t.SalesStart.Before(t.SalesEnd) {
				t.SalesStart = t.SalesEnd.Add(-time.Second) // sales_end must stay after sales_start
			}
			return nil
		})
		if err != nil {
			return Catalogue{}, unavailable("end sales", err)
		}
		rules, err := m.rulesOf(ctx, updated)
		if err != nil {
			return Catalogue{}, err
		}
		if err := m.d.Holds.Configure(ctx, rules); err != nil {
			return Catalogue{}, unavailable("configure holds", err)
		}
		types[i] = updated
	}
	if err := m.CloseRoom(ctx, organizer, id); err != nil && !errors.Is(err, ErrRoomNotFound) {
		return Catalogue{}, err
	}
	m.publish(ctx, id)
	return Catalogue{Event: e, TicketTypes: types}, nil
}

// refuseCancelled answers ErrEventCancelled for an event that was cancelled.
func refuseCancelled(e Event) error {
	if !e.CancelledAt.IsZero() {
		return ErrEventCancelled.WithDetail("the event was cancelled on %s; it can no longer change", e.CancelledAt.Format(time.RFC3339))
	}
	return nil
}

// EventOf returns the event a ticket type belongs to (ErrTicketTypeNotFound): who to tell about
// its orders.
func (m *Module) EventOf(ctx context.Context, ticketType uuid.UUID) (Event, error) {
	t, err := m.d.Store.TicketType(ctx, ticketType)
	if err != nil {
		return Event{}, unavailable("read ticket type", err)
	}
	c, err := m.Catalogue(ctx, t.EventID)
	if err != nil {
		return Event{}, err
	}
	return c.Event, nil
}
