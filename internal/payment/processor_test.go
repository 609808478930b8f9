package payment_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/sony/gobreaker/v2"

	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/payment"
	"github.com/onsale-dev/onsale/internal/payment/paymenttest"
	"github.com/onsale-dev/onsale/internal/payment/simulated"
	"github.com/onsale-dev/onsale/internal/platform/clock"
	"github.com/onsale-dev/onsale/internal/platform/logging"
	"github.com/onsale-dev/onsale/internal/platform/telemetry"
)

// The processor tests drive Processor.Process themselves (no worker), on the memory stack.

func quick() simulated.Mode { return simulated.Mode{Latency: time.Millisecond} }

func processorStack(t *testing.T, o paymenttest.Options) *paymenttest.Stack {
	t.Helper()
	o.NoWorker = true
	return paymenttest.NewStack(t, o)
}

// pendingOrder holds quantity tickets for the stack's customer and checks them out.
func pendingOrder(t *testing.T, s *paymenttest.Stack, tt inventory.TicketType, quantity int) payment.Order {
	t.Helper()
	h := s.Hold(s.Customer, tt, quantity)
	o, created, err := s.Module.CreateOrder(context.Background(), s.Customer.ID, h.ID, uuid.NewString())
	if err != nil || !created {
		t.Fatalf("create order: created=%v err=%v", created, err)
	}
	return o
}

func process(t *testing.T, s *paymenttest.Stack, id uuid.UUID, attempt int) payment.Decision {
	t.Helper()
	return s.Processor.Process(context.Background(), id, attempt)
}

func wantAction(t *testing.T, d payment.Decision, want payment.Action) {
	t.Helper()
	if d.Action != want {
		t.Fatalf("decision %+v, want action %d", d, want)
	}
}

func ticketIDs(ts []payment.Ticket) []uuid.UUID {
	out := make([]uuid.UUID, len(ts))
	for i, tk := range ts {
		out[i] = tk.ID
	}
	return out
}

func TestProcessConfirms(t *testing.T) {
	t.Parallel()
	s := processorStack(t, paymenttest.Options{Mode: quick()})
	tt := s.TicketType(10)
	o := pendingOrder(t, s, tt, 2)
	events, stop := s.Hub.Subscribe(o.ID)
	defer stop()

	wantAction(t, process(t, s, o.ID, 1), payment.Done)
	got := s.Order(o.ID)
	if got.Status != payment.StatusConfirmed || got.StatusDetail != "" || got.ChargeID == "" || len(got.Tickets) != 2 {
		t.Fatalf("order %+v", got)
	}
	for i, tk := range got.Tickets {
		if tk.OrderID != o.ID || tk.TicketTypeID != tt.ID || tk.EventID != tt.EventID || tk.Seq != i+1 {
			t.Fatalf("ticket %+v", tk)
		}
	}
	l := s.Sim.Ledger(true)
	if l.Charges != 1 || l.Refunds != 0 || l.ChargedCents != 5000 || len(l.Entries) != 1 {
		t.Fatalf("ledger %+v", l)
	}
	if e := l.Entries[0]; e.Key != o.ID.String() || e.ChargeID != got.ChargeID || e.AmountCents != 5000 || e.Currency != "EUR" || e.ChargeCalls != 1 {
		t.Fatalf("ledger entry %+v: want the order id as the key", e)
	}
	if sold := s.Sold(tt); sold != 2 {
		t.Fatalf("sold %d, want 2", sold)
	}
	if st := s.Stock(tt); st.Sold != 2 || st.Held != 0 || st.Available() != 8 {
		t.Fatalf("stock %+v", st)
	}
	select {
	case ev := <-events:
		if ev.Status != payment.StatusConfirmed || ev.Version != got.Version || ev.CustomerID != s.Customer.ID {
			t.Fatalf("announced %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the confirmation was not announced")
	}
}

func TestProcessDeclineFailsAndReleases(t *testing.T) {
	t.Parallel()
	s := processorStack(t, paymenttest.Options{Mode: simulated.Mode{DeclineRate: 1}})
	tt := s.TicketType(2)
	o := pendingOrder(t, s, tt, 2)
	if st := s.Stock(tt); st.Available() != 0 {
		t.Fatalf("stock before the decline %+v", st)
	}
	wantAction(t, process(t, s, o.ID, 1), payment.Done)
	got := s.Order(o.ID)
	if got.Status != payment.StatusFailed || got.StatusDetail != payment.DetailDeclined || len(got.Tickets) != 0 {
		t.Fatalf("order %+v", got)
	}
	h, err := s.Inv.GetHold(context.Background(), o.Hold.ID)
	if err != nil || h.Status != inventory.HoldReleased {
		t.Fatalf("hold after a decline: %+v, %v", h, err)
	}
	if st := s.Stock(tt); st.Available() != 2 || st.Sold != 0 {
		t.Fatalf("the tickets did not go back: %+v", st)
	}
	if l := s.Sim.Ledger(false); l.Charges != 0 || l.Declines != 1 || l.ChargedCents != 0 {
		t.Fatalf("ledger %+v", l)
	}
	// Another customer can buy them now.
	other := s.NewCustomer()
	h2 := s.Hold(other, tt, 2)
	s.Sim.SetMode(quick())
	o2, _, err := s.Module.CreateOrder(context.Background(), other.ID, h2.ID, "k")
	if err != nil {
		t.Fatal(err)
	}
	wantAction(t, process(t, s, o2.ID, 1), payment.Done)
	if s.Order(o2.ID).Status != payment.StatusConfirmed || s.Sold(tt) != 2 {
		t.Fatal("the released tickets could not be sold")
	}
	// The declined order stays failed on a redelivery.
	wantAction(t, process(t, s, o.ID, 2), payment.Done)
	if s.Order(o.ID).Status != payment.StatusFailed {
		t.Fatal("a redelivery changed the failed order")
	}
}

func TestProcessRetriesTransientErrors(t *testing.T) {
	t.Parallel()
	s := processorStack(t, paymenttest.Options{Mode: simulated.Mode{ErrorRate: 1}})
	tt := s.TicketType(10)
	o := pendingOrder(t, s, tt, 1)
	for attempt := 1; attempt <= 2; attempt++ {
		d := process(t, s, o.ID, attempt)
		wantAction(t, d, payment.Retry)
		if d.Delay <= 0 || d.Reason == "" {
			t.Fatalf("retry decision %+v", d)
		}
		if got := s.Order(o.ID); got.Status != payment.StatusPending || got.StatusDetail != "" {
			t.Fatalf("order after a transient error: %+v", got)
		}
	}
	s.Sim.SetMode(quick())
	wantAction(t, process(t, s, o.ID, 3), payment.Done)
	if got := s.Order(o.ID); got.Status != payment.StatusConfirmed || len(got.Tickets) != 1 {
		t.Fatalf("order %+v", got)
	}
	l := s.Sim.Ledger(true)
	if l.Charges != 1 || len(l.Entries) != 1 || l.Entries[0].Key != o.ID.String() || l.Entries[0].ChargeCalls < 1 || l.Calls < 3 {
		t.Fatalf("ledger %+v", l)
	}
	if s.Guarded.State() != gobreaker.StateClosed {
		t.Fatalf("two failures opened the breaker")
	}
}

func TestProcessRedeliveryChargesOnce(t *testing.T) {
	t.Parallel()
	s := processorStack(t, paymenttest.Options{Mode: quick()})
	tt := s.TicketType(10)
	o := pendingOrder(t, s, tt, 3)
	wantAction(t, process(t, s, o.ID, 1), payment.Done)
	first := s.Order(o.ID)
	wantAction(t, process(t, s, o.ID, 2), payment.Done)
	second := s.Order(o.ID)
	if second.Status != payment.StatusConfirmed || second.Version != first.Version || second.ChargeID != first.ChargeID ||
		!slices.Equal(ticketIDs(second.Tickets), ticketIDs(first.Tickets)) {
		t.Fatalf("a redelivery changed the order:\n%+v\n%+v", first, second)
	}
	if l := s.Sim.Ledger(false); l.Charges != 1 {
		t.Fatalf("%d charges", l.Charges)
	}
	if s.Sold(tt) != 3 {
		t.Fatalf("sold %d", s.Sold(tt))
	}

	// Two deliveries at once (a redelivery racing a slow first attempt) end the same.
	o2 := pendingOrder(t, s, tt, 2)
	done := make(chan payment.Decision, 2)
	for i := range 2 {
		go func() { done <- s.Processor.Process(context.Background(), o2.ID, i+1) }()
	}
	for range 2 {
		wantAction(t, <-done, payment.Done)
	}
	got := s.Order(o2.ID)
	if got.Status != payment.StatusConfirmed || len(got.Tickets) != 2 {
		t.Fatalf("order %+v", got)
	}
	// Whether the second delivery reached the provider depends on the interleaving (it may find
	// the order confirmed already); either way there is one charge.
	if e, _ := s.Entry(o2.ID.String()); e.ChargeCalls < 1 || e.ChargeCalls > 2 || e.ChargeID != got.ChargeID {
		t.Fatalf("entry %+v", e)
	}
	if l := s.Sim.Ledger(false); l.Charges != 2 {
		t.Fatalf("%d charges for two orders", l.Charges)
	}
	if l := s.Sim.Ledger(false); l.Charges != 2 || s.Sold(tt) != 5 {
		t.Fatalf("ledger %+v, sold %d", l, s.Sold(tt))
	}
}

func TestProcessSoldOutAtCommitRefunds(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(time.Now().UTC().Truncate(time.Millisecond))
	s := processorStack(t, paymenttest.Options{Mode: quick(), Clock: clk})
	tt := s.TicketType(1)
	o := pendingOrder(t, s, tt, 1)
	// A long outage: the payment window passes, the hold lapses, and someone else takes the
	// ticket.
	clk.Advance(s.Cfg.PaymentWindow + time.Minute)
	other := s.NewCustomer()
	h := s.Hold(other, tt, 1)

	wantAction(t, process(t, s, o.ID, 1), payment.Done)
	got := s.Order(o.ID)
	if got.Status != payment.StatusFailed || got.StatusDetail != payment.DetailSoldOut || len(got.Tickets) != 0 {
		t.Fatalf("order %+v", got)
	}
	// The refund is in the order's history, as any other refund is.
	if got.RefundedCents != got.AmountCents || len(got.Refunds) != 1 || got.Refunds[0].Status != payment.RefundSucceeded ||
		got.Refunds[0].AmountCents != got.AmountCents || got.Refunds[0].ProviderRefundID == "" {
		t.Fatalf("the sold-out order's refunds: %d cents, %+v", got.RefundedCents, got.Refunds)
	}
	e, ok := s.Entry(o.ID.String())
	if !ok || !e.Refunded || e.ChargeID == "" {
		t.Fatalf("entry %+v: want a refunded charge", e)
	}
	if l := s.Sim.Ledger(false); l.Charges != 1 || l.Refunds != 1 || l.RefundedCents != l.ChargedCents {
		t.Fatalf("ledger %+v", l)
	}
	if s.Sold(tt) != 0 {
		t.Fatalf("sold %d", s.Sold(tt))
	}
	// The other customer's hold is untouched and sells; nothing is oversold.
	o2, _, err := s.Module.CreateOrder(context.Background(), other.ID, h.ID, "k")
	if err != nil {
		t.Fatal(err)
	}
	wantAction(t, process(t, s, o2.ID, 1), payment.Done)
	if s.Order(o2.ID).Status != payment.StatusConfirmed || s.Sold(tt) != 1 {
		t.Fatal("the other customer's sale failed")
	}
	// A redelivery of the refunded order changes nothing and refunds nothing more.
	wantAction(t, process(t, s, o.ID, 2), payment.Done)
	if l := s.Sim.Ledger(false); l.Refunds != 1 || l.Charges != 2 {
		t.Fatalf("ledger after redelivery %+v", l)
	}
}

func TestProcessLapsedHoldStillSellsWhenTicketsRemain(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(time.Now().UTC().Truncate(time.Millisecond))
	s := processorStack(t, paymenttest.Options{Mode: quick(), Clock: clk})
	tt := s.TicketType(5)
	o := pendingOrder(t, s, tt, 2)
	clk.Advance(s.Cfg.PaymentWindow + time.Minute)
	wantAction(t, process(t, s, o.ID, 1), payment.Done)
	if got := s.Order(o.ID); got.Status != payment.StatusConfirmed || len(got.Tickets) != 2 {
		t.Fatalf("order %+v", got)
	}
	if l := s.Sim.Ledger(false); l.Refunds != 0 || s.Sold(tt) != 2 {
		t.Fatalf("ledger %+v, sold %d", l, s.Sold(tt))
	}
}

func TestGiveUpRefundsACharge(t *testing.T) {
	t.Parallel()
	s := processorStack(t, paymenttest.Options{Mode: quick()})
	tt := s.TicketType(3)
	o := pendingOrder(t, s, tt, 2)
	// The provider took the money but its answer was lost.
	if _, err := s.Sim.Charge(context.Background(), payment.ChargeRequest{IdempotencyKey: o.ID.String(), AmountCents: o.AmountCents, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	events, stop := s.Hub.Subscribe(o.ID)
	defer stop()
	if err := s.Processor.GiveUp(context.Background(), o.ID, "too many attempts"); err != nil {
		t.Fatalf("give up: %v", err)
	}
	got := s.Order(o.ID)
	if got.Status != payment.StatusFailed || got.StatusDetail != payment.DetailRefunded || got.RefundedCents != got.AmountCents || len(got.Refunds) != 1 {
		t.Fatalf("order %+v", got)
	}
	if e, _ := s.Entry(o.ID.String()); !e.Refunded {
		t.Fatalf("entry %+v not refunded", e)
	}
	if st := s.Stock(tt); st.Available() != 3 {
		t.Fatalf("hold not released: %+v", st)
	}
	select {
	case ev := <-events:
		if ev.Status != payment.StatusFailed {
			t.Fatalf("announced %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the failure was not announced")
	}
	// Giving up again, or on an order that does not exist, is harmless.
	if err := s.Processor.GiveUp(context.Background(), o.ID, "again"); err != nil {
		t.Fatal(err)
	}
	if err := s.Processor.GiveUp(context.Background(), uuid.New(), "unknown"); err != nil {
		t.Fatal(err)
	}
	if l := s.Sim.Ledger(false); l.Refunds != 1 {
		t.Fatalf("ledger %+v", l)
	}
}

// TestGiveUpSettlesACommittedSale: when the sale committed but confirming kept failing, giving up
// confirms the order with its tickets and its one charge instead of refunding a sale that stands.
func TestGiveUpSettlesACommittedSale(t *testing.T) {
	t.Parallel()
	s := processorStack(t, paymenttest.Options{Mode: quick()})
	tt := s.TicketType(3)
	o := pendingOrder(t, s, tt, 2)
	ctx := context.Background()
	charge, err := s.Sim.Charge(ctx, payment.ChargeRequest{IdempotencyKey: o.ID.String(), AmountCents: o.AmountCents, Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	sold, err := s.Inv.CommitHold(ctx, o.Hold, o.ID)
	if err != nil || len(sold) != 2 {
		t.Fatalf("commit: %v %v", sold, err)
	}
	if err := s.Processor.GiveUp(ctx, o.ID, "confirm kept failing"); err != nil {
		t.Fatalf("give up: %v", err)
	}
	got := s.Order(o.ID)
	if got.Status != payment.StatusConfirmed || got.ChargeID != charge.ID || len(got.Tickets) != 2 {
		t.Fatalf("order %+v", got)
	}
	for i, tk := range got.Tickets {
		if tk.ID != sold[i].ID {
			t.Fatalf("ticket %d is %s, the sale made %s", i, tk.ID, sold[i].ID)
		}
	}
	if e, _ := s.Entry(o.ID.String()); e.Refunded || e.ChargeID != charge.ID {
		t.Fatalf("entry %+v", e)
	}
	if l := s.Sim.Ledger(false); l.Charges != 1 || l.Refunds != 0 {
		t.Fatalf("ledger %+v", l)
	}
}

// TestReconcileRequestsLostPayments: a pending order whose payment request vanished (nothing in
// the outbox, no attempt for the stale period) is requested again, once per period.
func TestReconcileRequestsLostPayments(t *testing.T) {
	t.Parallel()
	s := processorStack(t, paymenttest.Options{Mode: quick()})
	tt := s.TicketType(3)
	o := pendingOrder(t, s, tt, 1)
	markPublished(t, s, time.Now()) // as if published, then lost
	pub := &countingPublisher{}
	clk := clock.NewFake(time.Now())
	relay := payment.NewRelay(s.Store, pub, clk, logging.Discard(), time.Minute)
	relay.Reconcile()
	if pub.sent(o.ID) != 0 {
		t.Fatal("requested again before the stale period")
	}
	clk.Advance(2 * time.Minute)
	down := true
	relay.ReconcileUnless(func() bool { return down })
	relay.Reconcile()
	if pub.sent(o.ID) != 0 {
		t.Fatal("requested again while the provider was down (every pending order waits then)")
	}
	down = false
	relay.Reconcile()
	if pub.sent(o.ID) != 1 {
		t.Fatalf("requested %d times after the stale period, want 1", pub.sent(o.ID))
	}
	relay.Reconcile()
	if pub.sent(o.ID) != 1 {
		t.Fatal("requested again within the period that followed")
	}
	// The request it sent is a normal one: processing it confirms the order.
	wantAction(t, process(t, s, o.ID, 1), payment.Done)
	if got := s.Order(o.ID); got.Status != payment.StatusConfirmed {
		t.Fatalf("order %+v", got)
	}
	clk.Advance(time.Hour)
	relay.Reconcile()
	if pub.sent(o.ID) != 1 {
		t.Fatal("a confirmed order was requested again")
	}
}

// markPublished marks every outbox message as published, so that only the reconciler can
// request the payments again.
func markPublished(t *testing.T, s *paymenttest.Stack, now time.Time) {
	t.Helper()
	ctx := context.Background()
	msgs, err := s.Store.Unpublished(ctx, now.Add(time.Hour), 100)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, m := range msgs {
		ids = append(ids, m.ID)
	}
	if err := s.Store.Published(ctx, ids); err != nil {
		t.Fatal(err)
	}
}

type countingPublisher struct {
	mu   sync.Mutex
	byID map[uuid.UUID]int
}

func (p *countingPublisher) Publish(_ context.Context, msgs []payment.OutboxMessage) ([]int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byID == nil {
		p.byID = map[uuid.UUID]int{}
	}
	ids := make([]int64, len(msgs))
	for i, m := range msgs {
		p.byID[m.OrderID]++
		ids[i] = m.ID
	}
	return ids, nil
}

func (p *countingPublisher) sent(id uuid.UUID) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.byID[id]
}

func TestGiveUpWithNothingCharged(t *testing.T) {
	t.Parallel()
	s := processorStack(t, paymenttest.Options{Mode: quick()})
	tt := s.TicketType(3)
	o := pendingOrder(t, s, tt, 1)
	if err := s.Processor.GiveUp(context.Background(), o.ID, "provider errors"); err != nil {
		t.Fatalf("give up: %v", err)
	}
	if got := s.Order(o.ID); got.Status != payment.StatusFailed || got.StatusDetail != payment.DetailGaveUp {
		t.Fatalf("order %+v", got)
	}
	if l := s.Sim.Ledger(false); l.Charges != 0 || l.Refunds != 0 {
		t.Fatalf("ledger %+v", l)
	}
	if st := s.Stock(tt); st.Available() != 3 {
		t.Fatalf("hold not released: %+v", st)
	}
	// A confirmed order is never given up.
	o2 := pendingOrder(t, s, tt, 1)
	wantAction(t, process(t, s, o2.ID, 1), payment.Done)
	if err := s.Processor.GiveUp(context.Background(), o2.ID, "late"); err != nil {
		t.Fatal(err)
	}
	if got := s.Order(o2.ID); got.Status != payment.StatusConfirmed {
		t.Fatalf("a confirmed order was given up: %+v", got)
	}
	if e, _ := s.Entry(o2.ID.String()); e.Refunded {
		t.Fatal("a confirmed order was refunded")
	}
}

func TestGiveUpKeepsOrderWhileRefundFails(t *testing.T) {
	t.Parallel()
	s := processorStack(t, paymenttest.Options{Mode: quick()})
	tt := s.TicketType(3)
	o := pendingOrder(t, s, tt, 1)
	if _, err := s.Sim.Charge(context.Background(), payment.ChargeRequest{IdempotencyKey: o.ID.String(), AmountCents: o.AmountCents}); err != nil {
		t.Fatal(err)
	}
	s.Sim.SetMode(simulated.Mode{Outage: true})
	if err := s.Processor.GiveUp(context.Background(), o.ID, "x"); err == nil {
		t.Fatal("gave up an order whose refund failed")
	}
	if got := s.Order(o.ID); got.Status != payment.StatusPending {
		t.Fatalf("an order with the customer's money kept was failed: %+v", got)
	}
	s.Sim.SetMode(quick())
	if err := s.Processor.GiveUp(context.Background(), o.ID, "x"); err != nil {
		t.Fatal(err)
	}
	if got := s.Order(o.ID); got.Status != payment.StatusFailed || got.StatusDetail != payment.DetailRefunded {
		t.Fatalf("order %+v", got)
	}
}

func TestProcessBreakerOpenDelays(t *testing.T) {
	t.Parallel()
	s := processorStack(t, paymenttest.Options{Mode: simulated.Mode{Outage: true},
		Config: func(c *payment.Config) { c.BreakerCooldown = time.Hour }})
	tt := s.TicketType(10)
	o := pendingOrder(t, s, tt, 1)
	events, stop := s.Hub.Subscribe(o.ID)
	defer stop()
	for attempt := 1; attempt <= s.Cfg.BreakerMinRequests; attempt++ {
		wantAction(t, process(t, s, o.ID, attempt), payment.Retry)
	}
	if s.Guarded.State() != gobreaker.StateOpen {
		t.Fatalf("breaker %s after %d failures", s.Guarded.State(), s.Cfg.BreakerMinRequests)
	}
	// The failure that opened the breaker already marked the order delayed, and said so.
	got := s.Order(o.ID)
	if got.Status != payment.StatusPending || got.StatusDetail != payment.DetailDelayed || got.Version != 2 {
		t.Fatalf("order %+v", got)
	}
	select {
	case ev := <-events:
		if ev.Status != payment.StatusPending || ev.StatusDetail != payment.DetailDelayed || ev.Version != 2 {
			t.Fatalf("announced %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the delay was not announced")
	}

	// While open: Wait, the provider is not called, the order stays pending and delayed.
	calls := s.Sim.Ledger(false).Calls
	o2 := pendingOrder(t, s, tt, 1)
	for _, id := range []uuid.UUID{o.ID, o2.ID} {
		d := process(t, s, id, 6)
		wantAction(t, d, payment.Wait)
		if d.Delay < time.Second {
			t.Fatalf("wait %s", d.Delay)
		}
		if got := s.Order(id); got.Status != payment.StatusPending || got.StatusDetail != payment.DetailDelayed {
			t.Fatalf("order %+v", got)
		}
	}
	if n := s.Sim.Ledger(false).Calls - calls; n != 0 {
		t.Fatalf("%d provider calls while the breaker was open", n)
	}
	// Marking delayed twice changes nothing more.
	if got := s.Order(o.ID); got.Version != 2 {
		t.Fatalf("version %d after repeated waits", got.Version)
	}
	// The customer sees it through the API.
	r, view := s.GetOrder(s.Customer, o2.ID.String())
	if r.Status != 200 || view.Status != "pending" || view.StatusDetail != payment.DetailDelayed {
		t.Fatalf("GET: %d %+v", r.Status, view)
	}
}

func TestProcessUnknownOrderIsDiscarded(t *testing.T) {
	t.Parallel()
	s := processorStack(t, paymenttest.Options{Mode: quick()})
	d := process(t, s, uuid.New(), 1)
	wantAction(t, d, payment.Discard)
	if s.Sim.Ledger(false).Calls != 0 {
		t.Fatal("an unknown order reached the provider")
	}
}

func TestProcessFinishedOrderIsAcked(t *testing.T) {
	t.Parallel()
	s := processorStack(t, paymenttest.Options{Mode: quick()})
	tt := s.TicketType(3)
	o := pendingOrder(t, s, tt, 1)
	if _, _, err := s.Store.Fail(context.Background(), o.ID, payment.DetailGaveUp); err != nil {
		t.Fatal(err)
	}
	events, stop := s.Hub.Subscribe(o.ID)
	defer stop()
	wantAction(t, process(t, s, o.ID, 1), payment.Done)
	if s.Sim.Ledger(false).Calls != 0 {
		t.Fatal("a finished order reached the provider")
	}
	// Its status is announced again, in case the first announcement was lost.
	select {
	case ev := <-events:
		if ev.Status != payment.StatusFailed {
			t.Fatalf("announced %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no announcement")
	}
}

// errStore fails Confirm until told otherwise, to show a crash between the sale and the
// confirmation heals on the next delivery.
type errStore struct {
	payment.OrderStore
	fail bool
}

var errConfirm = errors.New("database unavailable")

func (s *errStore) Confirm(ctx context.Context, id uuid.UUID, chargeID string, tickets []payment.Ticket) (payment.Order, bool, error) {
	if s.fail {
		return payment.Order{}, false, errConfirm
	}
	return s.OrderStore.Confirm(ctx, id, chargeID, tickets)
}

func TestProcessConfirmFailureHealsOnRedelivery(t *testing.T) {
	t.Parallel()
	s := processorStack(t, paymenttest.Options{Mode: quick()})
	tt := s.TicketType(3)
	o := pendingOrder(t, s, tt, 2)
	store := &errStore{OrderStore: s.Store, fail: true}
	proc, err := payment.NewProcessor(store, s.Inv, s.Guarded, s.Bus, nil, s.Clock, discardLog(), noopMeter(), 8)
	if err != nil {
		t.Fatal(err)
	}
	wantAction(t, proc.Process(context.Background(), o.ID, 1), payment.Retry)
	if got := s.Order(o.ID); got.Status != payment.StatusPending {
		t.Fatalf("order %+v", got)
	}
	// The sale committed; the redelivery finds the same tickets and the same charge.
	store.fail = false
	wantAction(t, proc.Process(context.Background(), o.ID, 2), payment.Done)
	got := s.Order(o.ID)
	if got.Status != payment.StatusConfirmed || len(got.Tickets) != 2 || s.Sold(tt) != 2 {
		t.Fatalf("order %+v, sold %d", got, s.Sold(tt))
	}
	if l := s.Sim.Ledger(false); l.Charges != 1 {
		t.Fatalf("ledger %+v", l)
	}
}

// countingInventory records how many commits run at once.
type countingInventory struct {
	payment.Inventory
	running, most atomic.Int64
}

func (c *countingInventory) CommitHold(ctx context.Context, h inventory.Hold, orderID uuid.UUID) ([]inventory.Ticket, error) {
	n := c.running.Add(1)
	defer c.running.Add(-1)
	for m := c.most.Load(); n > m && !c.most.CompareAndSwap(m, n); m = c.most.Load() {
	}
	time.Sleep(5 * time.Millisecond) // long enough for the others to pile up
	return c.Inventory.CommitHold(ctx, h, orderID)
}

func TestProcessSettlesAFewAtOnce(t *testing.T) {
	t.Parallel()
	s := processorStack(t, paymenttest.Options{Mode: quick()})
	tt := s.TicketType(100)
	var orders []uuid.UUID
	for range 24 {
		u := s.NewCustomer()
		o, _, err := s.Module.CreateOrder(context.Background(), u.ID, s.Hold(u, tt, 1).ID, uuid.NewString())
		if err != nil {
			t.Fatal(err)
		}
		orders = append(orders, o.ID)
	}
	inv := &countingInventory{Inventory: s.Inv}
	proc, err := payment.NewProcessor(s.Store, inv, s.Guarded, s.Bus, nil, s.Clock, discardLog(), noopMeter(), 3)
	if err != nil {
		t.Fatal(err)
	}
	// A wave of charges answered together, as a slow provider answers them.
	var wg sync.WaitGroup
	for _, id := range orders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The breaker may refuse a call while it ramps; the worker would deliver it again.
			for attempt := 1; attempt <= 50; attempt++ {
				if d := proc.Process(context.Background(), id, attempt); d.Action == payment.Done {
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
			t.Errorf("order %s not settled in 50 attempts", id)
		}()
	}
	wg.Wait()
	if got := inv.most.Load(); got != 3 {
		t.Fatalf("%d payments settled at once, want at most 3 (and the bound reached)", got)
	}
	if sold := s.Sold(tt); sold != len(orders) {
		t.Fatalf("sold %d, want %d", sold, len(orders))
	}
}

// TestProcessingDurationMetric: every attempt's duration reaches /metrics as
// onsale_payment_processing_duration_seconds, labelled by its result; the Kubernetes autoscaler
// scales on it (deploy/k8s/prometheus-adapter), so its name and labels are part of the contract.
func TestProcessingDurationMetric(t *testing.T) {
	t.Parallel()
	tel, err := telemetry.New(context.Background(), telemetry.Config{}, "onsale-test", "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	s := processorStack(t, paymenttest.Options{Mode: simulated.Mode{Latency: 20 * time.Millisecond}, Meters: tel.Meters})
	o := pendingOrder(t, s, s.TicketType(10), 1)
	wantAction(t, process(t, s, o.ID, 1), payment.Done)
	wantAction(t, process(t, s, uuid.New(), 1), payment.Discard)

	rec := httptest.NewRecorder()
	tel.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	series := map[string]float64{} // name{result} → value
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if !strings.HasPrefix(line, "onsale_payment_processing_duration_seconds_") {
			continue
		}
		name, rest, _ := strings.Cut(line, "{")
		labels, value, _ := strings.Cut(rest, "} ")
		result := regexp.MustCompile(`result="([a-z]+)"`).FindStringSubmatch(labels)
		le := regexp.MustCompile(`le="([^"]+)"`).FindStringSubmatch(labels)
		if result == nil {
			t.Fatalf("a series without the result label: %s", line)
		}
		key := name + "{" + result[1]
		if le != nil {
			key += "," + le[1]
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		series[key+"}"] = v
	}
	for key, want := range map[string]float64{
		"onsale_payment_processing_duration_seconds_count{done}":    1,
		"onsale_payment_processing_duration_seconds_count{discard}": 1,
		// The charge alone waits for the provider's 20 ms.
		"onsale_payment_processing_duration_seconds_bucket{done,0.01}":    0,
		"onsale_payment_processing_duration_seconds_bucket{done,+Inf}":    1,
		"onsale_payment_processing_duration_seconds_bucket{discard,+Inf}": 1,
	} {
		if got, ok := series[key]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v; series: %v", key, got, ok, want, series)
		}
	}
	if sum := series["onsale_payment_processing_duration_seconds_sum{done}"]; sum < 0.02 {
		t.Errorf("the confirmed attempt took %.3f s by the metric, less than the provider's 20 ms", sum)
	}
}

// A charge the provider accepts but has not settled (a bank transfer) leaves the order pending
// without holding the request: the reconciler asks again once the order is stale, under the same
// key, and the order is confirmed when the provider has settled. Other amounts are not held up,
// and pending answers are not failures to the breaker.
func TestProcessPendingChargeIsAskedAgainLater(t *testing.T) {
	t.Parallel()
	for _, backend := range []paymenttest.Backend{paymenttest.Memory, paymenttest.Real} {
		t.Run(backend.String(), func(t *testing.T) {
			t.Parallel()
			clk := clock.NewFake(time.Now())
			mode := quick()
			mode.PendingAmountCents = 5000 // two tickets
			s := processorStack(t, paymenttest.Options{Backend: backend, Mode: mode, Clock: clk})
			tt := s.TicketType(10)
			o := pendingOrder(t, s, tt, 2)
			other := pendingOrder(t, s, tt, 1)
			markPublished(t, s, clk.Now())

			for attempt := 1; attempt <= 20; attempt++ {
				d := process(t, s, o.ID, attempt)
				wantAction(t, d, payment.Done)
				if got := s.Order(o.ID); got.Status != payment.StatusPending || got.StatusDetail != "" || got.ChargeID != "" {
					t.Fatalf("order after a pending charge: %+v", got)
				}
			}
			if s.Guarded.State() != gobreaker.StateClosed {
				t.Fatal("pending charges opened the breaker")
			}
			wantAction(t, process(t, s, other.ID, 1), payment.Done)
			if got := s.Order(other.ID); got.Status != payment.StatusConfirmed {
				t.Fatalf("an order of another amount waited too: %+v", got)
			}
			if l := s.Sim.Ledger(false); l.Charges != 1 || l.Pending != 20 {
				t.Fatalf("ledger %+v, want 1 charge and 20 pending answers", l)
			}

			pub := &countingPublisher{}
			relay := payment.NewRelay(s.Store, pub, clk, logging.Discard(), time.Minute)
			relay.Reconcile()
			if pub.sent(o.ID) != 0 {
				t.Fatal("asked again before the stale period")
			}
			clk.Advance(2 * time.Minute)
			relay.Reconcile()
			if pub.sent(o.ID) != 1 || pub.sent(other.ID) != 0 {
				t.Fatalf("asked again %d times after the stale period (the confirmed order %d), want 1 and 0", pub.sent(o.ID), pub.sent(other.ID))
			}

			s.Sim.SetMode(quick()) // the provider settles
			wantAction(t, process(t, s, o.ID, 1), payment.Done)
			got := s.Order(o.ID)
			if got.Status != payment.StatusConfirmed || len(got.Tickets) != 2 {
				t.Fatalf("order once settled: %+v", got)
			}
			l := s.Sim.Ledger(true)
			if l.Charges != 2 || l.ChargedCents != 7500 {
				t.Fatalf("ledger %+v", l)
			}
			for _, e := range l.Entries {
				if e.ChargeCalls != 1 {
					t.Fatalf("charge %s made with %d calls, want 1", e.Key, e.ChargeCalls)
				}
			}
		})
	}
}
