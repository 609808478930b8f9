package system

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/onsale-dev/onsale/internal/platform/redisclient"
)

// Figures are what the end-of-test checks counted, in PostgreSQL and in the provider's ledger.
type Figures struct {
	Capacity, Sold, Tickets, OrderTickets int
	Orders, Confirmed, Failed, Pending    int
	ConfirmedQuantity                     int
	FailedRefunded, FailedNotCharged      int
	FailReasons                           map[string]int
	Outbox                                int
	Availability                          Stock // as a replica showed it at rest

	LedgerEntries, LedgerCharges, LedgerRefunds, LedgerDeclines, LedgerCalls int
	RepeatedChargeCalls                                                      int // keys presented more than once (retries, answered idempotently)
}

func (f Figures) String() string {
	reasons := make([]string, 0, len(f.FailReasons))
	for k, v := range f.FailReasons {
		reasons = append(reasons, fmt.Sprintf("%q×%d", k, v))
	}
	sort.Strings(reasons)
	return fmt.Sprintf("availability at rest: sold=%d held=%d available=%d | postgres: capacity=%d sold=%d tickets=%d order_tickets=%d | orders=%d confirmed=%d (quantity %d) failed=%d (refunded %d, never charged %d) pending=%d outbox=%d fail-reasons=[%s] | "+
		"ledger: entries=%d charges=%d refunds=%d declines=%d calls=%d keys-presented-more-than-once=%d",
		f.Availability.Sold, f.Availability.Held, f.Availability.Available, f.Capacity, f.Sold, f.Tickets, f.OrderTickets, f.Orders, f.Confirmed, f.ConfirmedQuantity, f.Failed, f.FailedRefunded, f.FailedNotCharged,
		f.Pending, f.Outbox, strings.Join(reasons, " "), f.LedgerEntries, f.LedgerCharges, f.LedgerRefunds, f.LedgerDeclines, f.LedgerCalls, f.RepeatedChargeCalls)
}

type dbOrder struct {
	ID, Status, Detail, ChargeID, TicketTypeID string
	Quantity                                   int
	CreatedAt, UpdatedAt                       time.Time
}

func (c *Cluster) orders(ctx context.Context) ([]dbOrder, error) {
	rows, err := c.DB.Query(ctx, `SELECT id::text, status, status_detail, charge_id, ticket_type_id::text, quantity, created_at, updated_at
		FROM payment.orders ORDER BY created_at`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []dbOrder
	for rows.Next() {
		var o dbOrder
		if err := rows.Scan(&o.ID, &o.Status, &o.Detail, &o.ChargeID, &o.TicketTypeID, &o.Quantity, &o.CreatedAt, &o.UpdatedAt); err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// Sold reads the ticket type's sold count and capacity from PostgreSQL (the truth).
func (c *Cluster) Sold(ctx context.Context, ticketTypeID string) (sold, capacity int, err error) {
	err = c.DB.QueryRow(ctx, `SELECT sold, capacity FROM inventory.ticket_types WHERE id = $1`, ticketTypeID).Scan(&sold, &capacity)
	return sold, capacity, err
}

// OrderCounts counts the orders by status.
func (c *Cluster) OrderCounts(ctx context.Context) (map[string]int, error) {
	rows, err := c.DB.Query(ctx, `SELECT status, count(*) FROM payment.orders GROUP BY status`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			return nil, err
		}
		out[s] = n
	}
	return out, rows.Err()
}

// WaitTerminal waits until no order is pending; it returns the pending ones left at the deadline.
func (c *Cluster) WaitTerminal(ctx context.Context, deadline time.Duration) ([]dbOrder, time.Duration) {
	start := time.Now()
	var pending []dbOrder
	for {
		all, err := c.orders(ctx)
		if err == nil {
			pending = pending[:0]
			for _, o := range all {
				if o.Status == "pending" {
					pending = append(pending, o)
				}
			}
			if len(pending) == 0 {
				return nil, time.Since(start)
			}
		}
		if time.Since(start) > deadline || ctx.Err() != nil {
			return pending, time.Since(start)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// CheckInvariants waits (up to deadline) for every order to be terminal, then checks, and logs
// the figures it checked:
//   - PostgreSQL: sold == tickets issued <= capacity; the confirmed orders' quantities add up to
//     sold; every order the clients saw accepted exists; nothing is left pending or in the outbox;
//   - the provider's ledger: each confirmed order has exactly one charge (not declined, not
//     refunded, the one the order recorded); every failed order that was charged was refunded;
//     no charge is for anything but an order; charges == confirmed + refunded failed orders.
//   - the availability clients see at rest (GET /v1/events/{id}/availability, served from Redis):
//     sold equals PostgreSQL's, nothing held, available = capacity - sold.
func CheckInvariants(t *testing.T, c *Cluster, eventID, ticketTypeID string, accepted *Accepted, deadline time.Duration) Figures {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline+time.Minute)
	defer cancel()
	var f Figures
	f.FailReasons = map[string]int{}

	pending, waited := c.WaitTerminal(ctx, deadline)
	if len(pending) > 0 {
		var b strings.Builder
		for i, o := range pending {
			if i == 10 {
				fmt.Fprintf(&b, "\n    ... and %d more", len(pending)-i)
				break
			}
			fmt.Fprintf(&b, "\n    order %s pending (detail %q) since %s, last change %s", o.ID, o.Detail,
				o.CreatedAt.Format("15:04:05.000"), o.UpdatedAt.Format("15:04:05.000"))
		}
		t.Errorf("INVARIANT every accepted order terminal within %s: %d still pending:%s", deadline, len(pending), b.String())
	} else {
		t.Logf("every order terminal %s after the traffic stopped", waited.Round(time.Millisecond))
	}

	orders, err := c.orders(ctx)
	if err != nil {
		t.Fatalf("read orders: %v", err)
	}
	byID := map[string]dbOrder{}
	for _, o := range orders {
		byID[o.ID] = o
		switch o.Status {
		case "confirmed":
			f.Confirmed++
			f.ConfirmedQuantity += o.Quantity
		case "failed":
			f.Failed++
			f.FailReasons[o.Detail]++
		default:
			f.Pending++
		}
		if o.TicketTypeID != ticketTypeID {
			t.Errorf("order %s is for ticket type %s, not the sale's %s", o.ID, o.TicketTypeID, ticketTypeID)
		}
	}
	f.Orders = len(orders)
	if accepted != nil {
		var missing []string
		for _, id := range accepted.IDs() {
			if _, ok := byID[id]; !ok {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			t.Errorf("INVARIANT accepted orders exist: %d orders answered 202 are not in payment.orders: %v", len(missing), missing)
		}
	}

	if f.Sold, f.Capacity, err = c.Sold(ctx, ticketTypeID); err != nil {
		t.Fatalf("read ticket type: %v", err)
	}
	if err := c.DB.QueryRow(ctx, `SELECT count(*) FROM inventory.tickets WHERE ticket_type_id = $1`, ticketTypeID).Scan(&f.Tickets); err != nil {
		t.Fatalf("count tickets: %v", err)
	}
	if err := c.DB.QueryRow(ctx, `SELECT count(*) FROM payment.order_tickets ot JOIN payment.orders o ON o.id = ot.order_id
		WHERE o.status = 'confirmed' AND ot.ticket_type_id = $1`, ticketTypeID).Scan(&f.OrderTickets); err != nil {
		t.Fatalf("count order tickets: %v", err)
	}
	if f.Sold != f.Tickets {
		t.Errorf("INVARIANT sold == tickets issued: inventory.ticket_types.sold=%d but inventory.tickets has %d rows", f.Sold, f.Tickets)
	}
	if f.Sold > f.Capacity {
		t.Errorf("INVARIANT sold <= capacity: OVERSOLD, sold=%d capacity=%d", f.Sold, f.Capacity)
	}
	if f.ConfirmedQuantity != f.Sold {
		t.Errorf("INVARIANT confirmed orders == sale: confirmed orders hold %d tickets but sold=%d", f.ConfirmedQuantity, f.Sold)
	}
	if f.OrderTickets != f.Tickets {
		t.Errorf("INVARIANT confirmed orders carry their tickets: payment.order_tickets of confirmed orders=%d, inventory.tickets=%d", f.OrderTickets, f.Tickets)
	}

	// The outbox empties once JetStream has every payment request (the relay clears a row just
	// after its publish is acknowledged, which can trail the order's completion slightly).
	outboxDeadline := time.Now().Add(10 * time.Second)
	for {
		if err := c.DB.QueryRow(ctx, `SELECT count(*) FROM payment.outbox`).Scan(&f.Outbox); err != nil {
			t.Fatalf("count outbox: %v", err)
		}
		if f.Outbox == 0 || time.Now().After(outboxDeadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if f.Outbox != 0 {
		t.Errorf("INVARIANT outbox drained: %d payment requests still in payment.outbox", f.Outbox)
	}

	c.CheckAlive(t)

	// At rest, the availability every replica serves agrees with PostgreSQL (its answers are
	// reused for up to 1 s, hence the polling).
	for _, r := range c.Replicas {
		if !r.Running() || !r.Serves("inventory") {
			continue
		}
		api := NewClient(r.URL, newRecorder())
		var last string
		ok := waitFor(10*time.Second, 200*time.Millisecond, func() bool {
			stocks, resp := api.Availability(ctx, eventID)
			if resp.Status != 200 || len(stocks) != 1 {
				last = resp.String()
				return false
			}
			s := stocks[0]
			last = fmt.Sprintf("%+v", s)
			f.Availability = s
			return s.Sold == f.Sold && s.Held == 0 && s.Available == f.Capacity-f.Sold && s.Capacity == f.Capacity
		})
		if !ok {
			t.Errorf("INVARIANT availability at rest agrees with PostgreSQL: %s answers %s, PostgreSQL has sold=%d of %d and no order pending",
				r.Name, last, f.Sold, f.Capacity)
			c.explainHolds(t, ctx, ticketTypeID)
			break
		}
	}

	ledger := c.Provider.Ledger(t)
	f.LedgerEntries, f.LedgerCharges, f.LedgerRefunds, f.LedgerDeclines, f.LedgerCalls = len(ledger.Entries), ledger.Charges, ledger.Refunds, ledger.Declines, ledger.Calls
	entries := map[string]ProviderEntry{}
	for _, e := range ledger.Entries {
		if _, dup := entries[e.Key]; dup {
			t.Errorf("INVARIANT no key charged twice: the ledger lists key %s twice", e.Key)
		}
		entries[e.Key] = e
		if e.ChargeCalls > 1 {
			f.RepeatedChargeCalls++
		}
		o, ok := byID[e.Key]
		switch {
		case !ok:
			t.Errorf("INVARIANT charges are for orders: ledger key %s (charge %q, refunded %v) is no order's id", e.Key, e.ChargeID, e.Refunded)
		case o.Status == "pending":
			// Reported above.
		case o.Status == "failed" && !e.Declined && !e.Refunded:
			t.Errorf("INVARIANT refund for a failed order: order %s failed (%q) but its charge %s was not refunded", o.ID, o.Detail, e.ChargeID)
		}
	}
	for _, o := range orders {
		e, ok := entries[o.ID]
		switch o.Status {
		case "confirmed":
			switch {
			case !ok:
				t.Errorf("INVARIANT one charge per confirmed order: order %s is confirmed but the provider has no charge for it", o.ID)
			case e.Declined:
				t.Errorf("INVARIANT one charge per confirmed order: order %s is confirmed but its charge was declined", o.ID)
			case e.Refunded:
				t.Errorf("INVARIANT one charge per confirmed order: order %s is confirmed but its charge %s was refunded", o.ID, e.ChargeID)
			case o.ChargeID != e.ChargeID:
				t.Errorf("INVARIANT one charge per confirmed order: order %s records charge %q, the provider charged %q", o.ID, o.ChargeID, e.ChargeID)
			}
		case "failed":
			if ok && !e.Declined {
				f.FailedRefunded++ // (an unrefunded one is reported above)
			} else {
				f.FailedNotCharged++
			}
		}
	}
	if want := f.Confirmed + f.FailedRefunded; ledger.Charges != want {
		t.Errorf("INVARIANT charges == confirmed + refunded failed orders: the ledger has %d charges, want %d confirmed + %d refunded = %d",
			ledger.Charges, f.Confirmed, f.FailedRefunded, want)
	}
	if ledger.Refunds != f.FailedRefunded {
		t.Errorf("INVARIANT refunds only for failed orders: the ledger has %d refunds, %d failed orders were charged", ledger.Refunds, f.FailedRefunded)
	}
	t.Logf("INVARIANTS checked: %s", f)
	return f
}

// explainHolds logs the holds Redis still counts as live for the ticket type, with the order (if
// any) PostgreSQL has for each: the evidence when the availability at rest is off.
func (c *Cluster) explainHolds(t *testing.T, ctx context.Context, ticketTypeID string) {
	t.Helper()
	rc, err := redisclient.Open(c.RedisURL)
	if err != nil {
		t.Logf("explain holds: %v", err)
		return
	}
	defer rc.Close()
	base := c.RedisPrefix + "inv:{tt:" + ticketTypeID + "}:"
	for _, k := range []string{"sold", "held"} {
		v, _ := rc.Do(ctx, rc.B().Get().Key(base+k).Build()).ToString()
		t.Logf("redis %s%s = %s", base, k, v)
	}
	ids, err := rc.Do(ctx, rc.B().Zrange().Key(base+"live").Min("0").Max("-1").Build()).AsStrSlice()
	if err != nil {
		t.Logf("explain holds: %v", err)
		return
	}
	t.Logf("redis %slive has %d holds", base, len(ids))
	for i, id := range ids {
		if i == 20 {
			t.Logf("... and %d more", len(ids)-i)
			break
		}
		h, _ := rc.Do(ctx, rc.B().Hgetall().Key(base+"h:"+id).Build()).AsStrMap()
		var order, status, detail string
		var created, updated time.Time
		err := c.DB.QueryRow(ctx, `SELECT id::text, status, status_detail, created_at, updated_at FROM payment.orders WHERE hold_id = $1`, id).
			Scan(&order, &status, &detail, &created, &updated)
		desc := "no order"
		if err == nil {
			desc = fmt.Sprintf("order %s %s %q created %s updated %s", order, status, detail, created.Format("15:04:05.000"), updated.Format("15:04:05.000"))
		}
		exp := ""
		if ms, err := time.ParseDuration(h["expires"] + "ms"); err == nil {
			exp = time.UnixMilli(ms.Milliseconds()).Format("15:04:05.000")
		}
		t.Logf("  live hold %s: status=%s qty=%s created=%s expires=%s; %s", id, h["status"], h["qty"], h["created"], exp, desc)
	}
}

// waitFor waits until cond holds, checking every interval; false at the deadline.
func waitFor(timeout, interval time.Duration, cond func() bool) bool {
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			return false
		}
		time.Sleep(interval)
	}
	return true
}
