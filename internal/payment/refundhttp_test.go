package payment_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/auth"
	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/payment"
	"github.com/onsale-dev/onsale/internal/payment/paymenttest"
	"github.com/onsale-dev/onsale/internal/platform/apitest"
)

// setCutoff lets the event's customers cancel until hours before its start (nil: never).
func setCutoff(t *testing.T, s *paymenttest.Stack, tt inventory.TicketType, hours *int) {
	t.Helper()
	if _, err := s.Inv.UpdateEvent(context.Background(), s.Organizer.ID, tt.EventID,
		inventory.EventPatch{SetCancelCutoff: true, CancelCutoffHours: hours}); err != nil {
		t.Fatalf("set cutoff: %v", err)
	}
}

func hours(n int) *int { return &n }

// confirmedOrder buys quantity tickets for u and waits for the confirmation.
func confirmedOrder(t *testing.T, s *paymenttest.Stack, u paymenttest.User, tt inventory.TicketType, quantity int) paymenttest.OrderJSON {
	t.Helper()
	o := s.CheckoutOK(u, s.Hold(u, tt, quantity).ID)
	s.WaitStatus(o.UUID(), payment.StatusConfirmed, 10*time.Second)
	_, got := s.GetOrder(u, o.ID)
	return got
}

type refundAnswer struct {
	Order struct {
		ID            string `json:"id"`
		Status        string `json:"status"`
		RefundedCents int64  `json:"refunded_cents"`
	} `json:"order"`
	Refund *struct {
		ID          string `json:"id"`
		AmountCents int64  `json:"amount_cents"`
		Reason      string `json:"reason"`
	} `json:"refund"`
}

func TestCustomerCancelsAnOrder(t *testing.T) {
	t.Parallel()
	s := httpStack(t, paymenttest.Options{})
	tt := s.TicketType(10)
	o := confirmedOrder(t, s, s.Customer, tt, 2)
	cancel := func(u paymenttest.User, id string, body any) *apitest.Response {
		t.Helper()
		return s.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/orders/" + id + "/cancel", Token: u.Token, Body: body})
	}
	reason := map[string]string{"reason": "cannot make it"}

	// Refused while the event allows no cancellations, or once its window has closed.
	cancel(s.Customer, o.ID, reason).Expect(t, http.StatusConflict, "cancellation-window-closed")
	setCutoff(t, s, tt, hours(31*24)) // the event starts in 30 days: the window closed a day ago
	cancel(s.Customer, o.ID, reason).Expect(t, http.StatusConflict, "cancellation-window-closed")
	setCutoff(t, s, tt, hours(24))

	// Refused to anyone but its customer, and for bad input.
	s.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/orders/" + o.ID + "/cancel", Body: reason}).Expect(t, http.StatusUnauthorized, "")
	cancel(s.Organizer, o.ID, reason).Expect(t, http.StatusForbidden, "")
	cancel(s.Customer2, o.ID, reason).Expect(t, http.StatusNotFound, "order-not-found")
	cancel(s.Customer, uuid.NewString(), reason).Expect(t, http.StatusNotFound, "order-not-found")
	cancel(s.Customer, "not-an-id", reason).Expect(t, http.StatusBadRequest, "")
	if r := cancel(s.Customer, o.ID, map[string]string{"reason": strings.Repeat("x", 501)}); r.Status != http.StatusUnprocessableEntity {
		t.Fatalf("a 501-character reason: %d %s", r.Status, r.Body)
	}
	if r := cancel(s.Customer, o.ID, map[string]any{"reason": "x", "amount_cents": 5}); r.Status != http.StatusUnprocessableEntity && r.Status != http.StatusBadRequest {
		t.Fatalf("an unknown field: %d %s", r.Status, r.Body)
	}
	if got := s.Order(o.UUID()); got.Status != payment.StatusConfirmed || len(got.Refunds) != 0 {
		t.Fatalf("refused cancellations changed the order: %s %+v", got.Status, got.Refunds)
	}

	// Cancelled: void at once, refunded in the background, the seats back on sale.
	var first refundAnswer
	cancel(s.Customer, o.ID, reason).Expect(t, http.StatusAccepted, "").JSON(t, &first)
	if first.Order.Status != string(payment.StatusRefundPending) || first.Refund == nil || first.Refund.AmountCents != 5000 {
		t.Fatalf("cancel answer %+v", first)
	}
	done := s.WaitStatus(o.UUID(), payment.StatusRefunded, 10*time.Second)
	if done.RefundedCents != 5000 || !done.Voided {
		t.Fatalf("cancelled order: refunded %d, voided %v", done.RefundedCents, done.Voided)
	}
	_, view := s.GetOrder(s.Customer, o.ID)
	r := s.Do(apitest.Request{Method: http.MethodGet, Path: "/v1/orders/" + o.ID, Token: s.Customer.Token}).Expect(t, http.StatusOK, "")
	if m := r.Map(t); view.Status != "refunded" || m["refunded_cents"] != float64(5000) {
		t.Fatalf("GET order: %s", r.Body)
	}
	if st := s.Stock(tt); st.Capacity-st.Sold-st.Held != 10 {
		t.Fatalf("after the cancellation %+v: want all 10 available", st)
	}
	s.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/checkins", Token: s.Staff.Token,
		Body: map[string]string{"code": o.Tickets[0].Code}}).Expect(t, http.StatusConflict, "ticket-void")

	// Again: the first cancellation, and nothing more refunded.
	again := cancel(s.Customer, o.ID, map[string]string{}).Expect(t, http.StatusOK, "")
	if again.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("repeat without Idempotent-Replayed")
	}
	l := s.Sim.Ledger(false)
	if l.Refunds != 1 || l.OverRefunds != 0 {
		t.Fatalf("ledger %+v: want one refund", l)
	}
	// The returned seats sell again.
	confirmedOrder(t, s, s.Customer2, tt, 4)

	// An order whose ticket was used at the door is not the customer's to cancel.
	used := confirmedOrder(t, s, s.Customer, tt, 1)
	s.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/checkins", Token: s.Staff.Token,
		Body: map[string]string{"code": used.Tickets[0].Code}}).Expect(t, http.StatusOK, "")
	cancel(s.Customer, used.ID, map[string]string{}).Expect(t, http.StatusConflict, "order-not-refundable")
}

func TestOrganizerRefundsAnOrder(t *testing.T) {
	t.Parallel()
	s := httpStack(t, paymenttest.Options{})
	tt := s.TicketType(10)
	o := confirmedOrder(t, s, s.Customer, tt, 2) // 5000 cents
	refund := func(u paymenttest.User, id, key string, body any) *apitest.Response {
		t.Helper()
		req := apitest.Request{Method: http.MethodPost, Path: "/v1/orders/" + id + "/refunds", Token: u.Token, Body: body}
		if key != "" {
			req.Header = map[string]string{"Idempotency-Key": key}
		}
		return s.Do(req)
	}
	part := map[string]any{"amount_cents": 1000, "reason": "pillar"}

	refund(s.Organizer, o.ID, "", part).Expect(t, http.StatusBadRequest, "")
	refund(s.Customer, o.ID, "k1", part).Expect(t, http.StatusForbidden, "")
	refund(s.NewUser(auth.RoleOrganizer), o.ID, "k1", part).Expect(t, http.StatusNotFound, "order-not-found")
	refund(s.Organizer, o.ID, "k1", map[string]any{"amount_cents": 5001}).Expect(t, http.StatusUnprocessableEntity, "refund-exceeds-payment")
	if r := refund(s.Organizer, o.ID, "k1", map[string]any{"amount_cents": 0}); r.Status != http.StatusUnprocessableEntity {
		t.Fatalf("amount 0: %d %s", r.Status, r.Body)
	}

	// A partial refund: the order stays confirmed, its tickets valid.
	refund(s.Organizer, o.ID, "k1", part).Expect(t, http.StatusAccepted, "")
	testRefunded(t, s, o.UUID(), 1000)
	if got := s.WaitStatus(o.UUID(), payment.StatusConfirmed, 10*time.Second); got.Voided {
		t.Fatal("a partial refund voided the order")
	}
	// The same key: the same refund, even with another amount.
	refund(s.Organizer, o.ID, "k1", map[string]any{"amount_cents": 2000}).Expect(t, http.StatusOK, "")
	refund(s.Organizer, o.ID, "k2", map[string]any{"amount_cents": 4001}).Expect(t, http.StatusUnprocessableEntity, "refund-exceeds-payment")
	// The rest: the order is cancelled.
	refund(s.Organizer, o.ID, "k2", map[string]any{"reason": "show moved"}).Expect(t, http.StatusAccepted, "")
	got := s.WaitStatus(o.UUID(), payment.StatusRefunded, 10*time.Second)
	if got.RefundedCents != 5000 || !got.Voided {
		t.Fatalf("after the full refund: %d refunded, voided %v", got.RefundedCents, got.Voided)
	}
	refund(s.Organizer, o.ID, "k3", part).Expect(t, http.StatusConflict, "order-not-refundable")
	if l := s.Sim.Ledger(false); l.Refunds != 2 || l.OverRefunds != 0 {
		t.Fatalf("ledger %+v: want two refunds", l)
	}
}

func testRefunded(t *testing.T, s *paymenttest.Stack, id uuid.UUID, cents int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Order(id).RefundedCents != cents {
		if time.Now().After(deadline) {
			t.Fatalf("order %s: refunded %d, want %d", id, s.Order(id).RefundedCents, cents)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestOrganizerCancelsAnEvent(t *testing.T) {
	t.Parallel()
	s := httpStack(t, paymenttest.Options{})
	tt := s.TicketType(10)
	var orders []paymenttest.OrderJSON
	for range 3 {
		orders = append(orders, confirmedOrder(t, s, s.NewCustomer(), tt, 1))
	}
	path := "/v1/events/" + tt.EventID.String()
	s.Do(apitest.Request{Method: http.MethodGet, Path: path + "/cancellation", Token: s.Organizer.Token}).Expect(t, http.StatusNotFound, "event-not-cancelled")
	s.Do(apitest.Request{Method: http.MethodPost, Path: path + "/cancel", Token: s.Customer.Token, Body: map[string]string{}}).Expect(t, http.StatusForbidden, "")
	s.Do(apitest.Request{Method: http.MethodPost, Path: path + "/cancel", Token: s.NewUser(auth.RoleOrganizer).Token, Body: map[string]string{}}).Expect(t, http.StatusForbidden, "not-event-owner")
	s.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/events/" + uuid.NewString() + "/cancel", Token: s.Organizer.Token, Body: map[string]string{}}).Expect(t, http.StatusNotFound, "event-not-found")

	var c struct {
		Status          string `json:"status"`
		OrdersConfirmed int    `json:"orders_confirmed"`
		OrdersCancelled int    `json:"orders_cancelled"`
	}
	s.Do(apitest.Request{Method: http.MethodPost, Path: path + "/cancel", Token: s.Organizer.Token,
		Body: map[string]string{"reason": "the band split"}}).Expect(t, http.StatusAccepted, "")
	// Nothing more is sold, and the event refuses changes.
	if _, err := s.TryHold(s.Customer, tt, 1); !errors.Is(err, inventory.ErrSalesClosed) {
		t.Fatalf("hold on a cancelled event: %v, want sales closed", err)
	}
	if _, err := s.Inv.UpdateTicketType(context.Background(), s.Organizer.ID, tt.EventID, tt.ID, inventory.TicketTypePatch{Capacity: hours(20)}); !errors.Is(err, inventory.ErrEventCancelled) {
		t.Fatalf("change a cancelled event's ticket type: %v", err)
	}
	for _, o := range orders {
		s.WaitStatus(o.UUID(), payment.StatusRefunded, 15*time.Second)
	}
	deadline := time.Now().Add(15 * time.Second)
	for c.Status != "finished" {
		if time.Now().After(deadline) {
			t.Fatalf("cancellation %+v not finished", c)
		}
		time.Sleep(50 * time.Millisecond)
		s.Do(apitest.Request{Method: http.MethodGet, Path: path + "/cancellation", Token: s.Organizer.Token}).Expect(t, http.StatusOK, "").JSON(t, &c)
	}
	if c.OrdersConfirmed != 0 || c.OrdersCancelled != 3 {
		t.Fatalf("finished cancellation %+v", c)
	}
	s.Do(apitest.Request{Method: http.MethodPost, Path: path + "/cancel", Token: s.Organizer.Token, Body: map[string]string{}}).Expect(t, http.StatusOK, "")
	// No body at all is refused: the contract asks for {} at least.
	s.Do(apitest.Request{Method: http.MethodPost, Path: path + "/cancel", Token: s.Organizer.Token}).Expect(t, http.StatusBadRequest, "")
	if l := s.Sim.Ledger(false); l.Refunds != 3 || l.OverRefunds != 0 {
		t.Fatalf("ledger %+v: want three refunds", l)
	}
}
