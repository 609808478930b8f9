package webhook

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
)

// The schedule spans more than a day in eight attempts, then the delivery is dead.
func TestScheduleLastsADay(t *testing.T) {
	t.Parallel()
	now := time.Now()
	var total time.Duration
	for failed := 1; failed < len(Schedule); failed++ {
		next, ok := NextAttempt(Schedule, failed, now)
		d := next.Sub(now)
		if !ok || d < Schedule[failed] || d > Schedule[failed]+Schedule[failed]/10 {
			t.Fatalf("after %d failures: retry in %s (%v), want %s plus at most a tenth", failed, d, ok, Schedule[failed])
		}
		total += Schedule[failed]
	}
	if _, ok := NextAttempt(Schedule, len(Schedule), now); ok {
		t.Fatal("an attempt after the last one")
	}
	if total < 24*time.Hour || len(Schedule) != 8 || Schedule[0] != 0 {
		t.Fatalf("schedule %v spans %s, want 8 attempts over more than a day, the first at once", Schedule, total)
	}
}

func TestEventBuilders(t *testing.T) {
	t.Parallel()
	org, order := uuid.New(), uuid.New()
	at := time.Date(2027, 6, 1, 18, 0, 0, 0, time.UTC)
	ev, err := OrderEvent(TypeOrderRefunded, org, OrderData{OrderID: order, Status: "refunded", AmountCents: 5000, RefundedCents: 5000, Currency: "EUR"}, "r1", at)
	if err != nil {
		t.Fatal(err)
	}
	if ev.ID != "order.refunded:"+order.String()+":r1" || ev.OrderingKey != order.String() || ev.OrganizerID != org {
		t.Fatalf("event %+v", ev)
	}
	body, err := ev.Body()
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Type      string         `json:"type"`
		Timestamp string         `json:"timestamp"`
		Data      map[string]any `json:"data"`
	}
	if err := json.Unmarshal(body, &got); err != nil || got.Type != TypeOrderRefunded || got.Timestamp != "2027-06-01T18:00:00Z" ||
		got.Data["order_id"] != order.String() || got.Data["refunded_cents"] != float64(5000) {
		t.Fatalf("body %s: %+v %v", body, got, err)
	}
	if _, err := OrderEvent("order.lost", org, OrderData{OrderID: order}, "", at); err == nil {
		t.Fatal("an unknown type was built")
	}
	if _, err := EventCancelledEvent(uuid.Nil, EventData{EventID: uuid.New()}); err == nil {
		t.Fatal("an event without an organizer was built")
	}
	tk, err := TicketCheckedInEvent(org, TicketData{TicketID: uuid.New(), OrderID: order, CheckedInAt: at})
	if err != nil || tk.OrderingKey != order.String() || tk.Type != TypeTicketCheckedIn {
		t.Fatalf("ticket event %+v, %v", tk, err)
	}
}
