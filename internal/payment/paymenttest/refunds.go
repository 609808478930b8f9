package paymenttest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/payment"
)

// runRefunds is the part of the OrderStore suite about refunds and event cancellations.
func runRefunds(t *testing.T, newStore func(t *testing.T) payment.OrderStore) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	confirmed := func(t *testing.T, s payment.OrderStore) (payment.Order, []payment.Ticket) {
		t.Helper()
		o := create(t, s)
		tickets := Tickets(o, 2)
		c, _, err := s.Confirm(ctx, o.ID, "ch_1", tickets)
		if err != nil {
			t.Fatal(err)
		}
		return c, tickets
	}

	t.Run("FailRefundedKeepsTheRefund", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		o := create(t, s)
		r := payment.Refund{ID: uuid.New(), Key: "hold-lapsed", AmountCents: o.AmountCents, Reason: "sold out",
			ProviderRefundID: "re_1", CreatedAt: now, CompletedAt: now}
		failed, changed, err := s.FailRefunded(ctx, o.ID, "gone", r)
		if err != nil || !changed || failed.Status != payment.StatusFailed || failed.StatusDetail != "gone" ||
			failed.RefundedCents != o.AmountCents || len(failed.Refunds) != 1 {
			t.Fatalf("fail refunded: %+v %v %v", failed, changed, err)
		}
		stored := get(t, s, o.ID)
		if stored.RefundedCents != o.AmountCents || len(stored.Refunds) != 1 || stored.Refunds[0].Status != payment.RefundSucceeded ||
			stored.Refunds[0].ID != r.ID || stored.Refunds[0].ProviderRefundID != "re_1" || stored.Refunds[0].Reason != "sold out" {
			t.Fatalf("stored: %+v", stored)
		}
		// Again: nothing changes; a failed order is not refundable through a request either.
		if again, changed, err := s.FailRefunded(ctx, o.ID, "gone", payment.Refund{ID: uuid.New(), Key: "hold-lapsed", AmountCents: 1, CreatedAt: now, CompletedAt: now}); err != nil || changed || again.Version != failed.Version {
			t.Fatalf("repeat: %+v %v %v", again, changed, err)
		}
		if got := get(t, s, o.ID); len(got.Refunds) != 1 || got.RefundedCents != o.AmountCents {
			t.Fatalf("after the repeat: %+v", got)
		}
		if _, err := s.RequestRefund(ctx, payment.RefundRequest{OrderID: o.ID, Key: "x", At: now}); !errors.Is(err, payment.ErrNotRefundable) {
			t.Fatalf("refund of a failed order: %v", err)
		}
		// A confirmed order is not failed.
		c, _ := confirmed(t, s)
		if _, _, err := s.FailRefunded(ctx, c.ID, "gone", payment.Refund{ID: uuid.New(), Key: "hold-lapsed", AmountCents: 1, CreatedAt: now, CompletedAt: now}); !errors.Is(err, payment.ErrOrderTerminal) {
			t.Fatalf("fail a confirmed order: %v", err)
		}
	})

	t.Run("CancelRefundsOnceAndVoids", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		o, tickets := confirmed(t, s)
		req := payment.RefundRequest{OrderID: o.ID, Key: "cancel", Reason: "changed my mind", Cancel: true, At: now}
		res, err := s.RequestRefund(ctx, req)
		if err != nil || !res.Created {
			t.Fatalf("request: %+v %v", res, err)
		}
		r := res.Refund
		if res.Order.Status != payment.StatusRefundPending || !res.Order.Voided || res.Order.Version != o.Version+1 ||
			r.AmountCents != o.AmountCents || r.Status != payment.RefundPending || r.Reason != "changed my mind" || r.Key != "cancel" {
			t.Fatalf("after the request: order %+v refund %+v", res.Order, r)
		}
		if res.Message.ID == 0 || res.Message.OrderID != o.ID || !outboxHas(t, s, now.Add(time.Second), res.Message.ID) {
			t.Fatalf("no outbox message for the refund: %+v", res.Message)
		}
		stored := get(t, s, o.ID)
		if len(stored.Refunds) != 1 || stored.Refunds[0].ID != r.ID || len(stored.Tickets) != 2 {
			t.Fatalf("stored: %+v", stored)
		}
		// A repeat under the same key finds the first refund and changes nothing.
		again, err := s.RequestRefund(ctx, req)
		if err != nil || again.Created || again.Refund.ID != r.ID || again.Order.Version != res.Order.Version {
			t.Fatalf("repeat: %+v %v", again, err)
		}
		// A voided order cannot be refunded again under another key.
		if _, err := s.RequestRefund(ctx, payment.RefundRequest{OrderID: o.ID, Key: "other", Cancel: true, At: now}); !errors.Is(err, payment.ErrNotRefundable) {
			t.Fatalf("second cancellation: want ErrNotRefundable, got %v", err)
		}
		// Its tickets admit nobody.
		if _, _, err := s.CheckIn(ctx, tickets[0].ID, uuid.New(), now); !errors.Is(err, payment.ErrTicketVoid) {
			t.Fatalf("check in a voided ticket: want ErrTicketVoid, got %v", err)
		}
		// A pending refund is stale like a pending payment once nobody tried it.
		publishAll(t, s, o.ID)
		stale, err := s.StalePending(ctx, time.Now().Add(time.Hour), 100_000)
		if err != nil || !slices.Contains(stale, o.ID) {
			t.Fatalf("stale: %v %v; want the refunding order", stale, err)
		}
		done, changed, err := s.CompleteRefund(ctx, r.ID, "re_1", now.Add(time.Second))
		if err != nil || !changed || done.Status != payment.StatusRefunded || done.RefundedCents != o.AmountCents ||
			done.Version != res.Order.Version+1 || len(done.Refunds) != 1 || done.Refunds[0].Status != payment.RefundSucceeded ||
			done.Refunds[0].ProviderRefundID != "re_1" || !done.Refunds[0].CompletedAt.Equal(now.Add(time.Second)) {
			t.Fatalf("complete: %+v changed=%v err=%v", done, changed, err)
		}
		if again, changed, err := s.CompleteRefund(ctx, r.ID, "re_2", now); err != nil || changed || again.Version != done.Version ||
			again.Refunds[0].ProviderRefundID != "re_1" {
			t.Fatalf("complete again: %+v changed=%v err=%v", again, changed, err)
		}
		if _, _, err := s.CompleteRefund(ctx, uuid.New(), "re", now); !errors.Is(err, payment.ErrRefundNotFound) {
			t.Fatalf("unknown refund: want ErrRefundNotFound, got %v", err)
		}
		if stale, _ := s.StalePending(ctx, time.Now().Add(time.Hour), 100_000); slices.Contains(stale, o.ID) {
			t.Fatal("a refunded order is still stale")
		}
		// A confirmation redelivered after all this changes nothing.
		if after, changed, err := s.Confirm(ctx, o.ID, "ch_1", tickets); err != nil || changed || after.Status != payment.StatusRefunded {
			t.Fatalf("confirm a refunded order: %s changed=%v err=%v", after.Status, changed, err)
		}
		if _, _, err := s.Fail(ctx, o.ID, "late"); !errors.Is(err, payment.ErrOrderTerminal) {
			t.Fatalf("fail a refunded order: want ErrOrderTerminal, got %v", err)
		}
	})

	t.Run("PartialRefunds", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		o, tickets := confirmed(t, s)
		res, err := s.RequestRefund(ctx, payment.RefundRequest{OrderID: o.ID, Key: "goodwill", AmountCents: 1000, Reason: "late start", At: now})
		if err != nil || res.Order.Status != payment.StatusRefundPending || res.Order.Voided || res.Refund.AmountCents != 1000 {
			t.Fatalf("partial: %+v %v", res, err)
		}
		if _, err := s.RequestRefund(ctx, payment.RefundRequest{OrderID: o.ID, Key: "too much", AmountCents: 4001, At: now}); !errors.Is(err, payment.ErrRefundTooLarge) {
			t.Fatalf("more than is left: want ErrRefundTooLarge, got %v", err)
		}
		done, _, err := s.CompleteRefund(ctx, res.Refund.ID, "re_1", now)
		if err != nil || done.Status != payment.StatusConfirmed || done.RefundedCents != 1000 {
			t.Fatalf("a partial refund done: %+v %v", done, err)
		}
		// The tickets still admit.
		if _, first, err := s.CheckIn(ctx, tickets[0].ID, uuid.New(), now); err != nil || !first {
			t.Fatalf("check in after a partial refund: %v", err)
		}
		// A cancellation gives back the rest.
		rest, err := s.RequestRefund(ctx, payment.RefundRequest{OrderID: o.ID, Key: "cancel", Cancel: true, At: now})
		if err != nil || rest.Refund.AmountCents != o.AmountCents-1000 || !rest.Order.Voided {
			t.Fatalf("the rest: %+v %v", rest, err)
		}
		done, _, err = s.CompleteRefund(ctx, rest.Refund.ID, "re_2", now)
		if err != nil || done.Status != payment.StatusRefunded || done.RefundedCents != o.AmountCents || len(done.Refunds) != 2 {
			t.Fatalf("all refunded: %+v %v", done, err)
		}
		sales, err := s.Sales(ctx, []uuid.UUID{o.Hold.TicketTypeID})
		if err != nil || len(sales) != 1 || sales[0].Refunded != 1 || sales[0].Confirmed != 0 {
			t.Fatalf("sales: %+v %v", sales, err)
		}
	})

	t.Run("NothingToRefund", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		if _, err := s.RequestRefund(ctx, payment.RefundRequest{OrderID: uuid.New(), Key: "k", At: now}); !errors.Is(err, payment.ErrOrderNotFound) {
			t.Fatalf("unknown order: want ErrOrderNotFound, got %v", err)
		}
		pending := create(t, s)
		if _, err := s.RequestRefund(ctx, payment.RefundRequest{OrderID: pending.ID, Key: "k", Cancel: true, At: now}); !errors.Is(err, payment.ErrNotRefundable) {
			t.Fatalf("a pending order: want ErrNotRefundable, got %v", err)
		}
		// Free tickets: cancelled at once, no refund made.
		o, idem := NewOrder(uuid.New(), now)
		o.AmountCents, o.Hold.UnitPriceCents = 0, 0
		mustCreate(t, s, o, idem)
		if _, _, err := s.Confirm(ctx, o.ID, "", Tickets(o, 1)); err != nil {
			t.Fatal(err)
		}
		res, err := s.RequestRefund(ctx, payment.RefundRequest{OrderID: o.ID, Key: "k", Cancel: true, At: now})
		if err != nil || res.Order.Status != payment.StatusCancelled || !res.Order.Voided || res.Refund.ID != uuid.Nil || res.Message.ID != 0 {
			t.Fatalf("cancel a free order: %+v %v", res, err)
		}
	})

	t.Run("EventCancellations", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		ev, org := uuid.New(), uuid.New()
		c := payment.EventCancellation{EventID: ev, OrganizerID: org, TicketTypes: []uuid.UUID{uuid.New(), uuid.New()}, Reason: "storm", CreatedAt: now}
		got, created, err := s.CancelEvent(ctx, c)
		if err != nil || !created || got.EventID != ev || len(got.TicketTypes) != 2 || got.Reason != "storm" || !got.FinishedAt.IsZero() {
			t.Fatalf("cancel: %+v %v %v", got, created, err)
		}
		again, created, err := s.CancelEvent(ctx, payment.EventCancellation{EventID: ev, OrganizerID: org, Reason: "other", CreatedAt: now.Add(time.Hour)})
		if err != nil || created || again.Reason != "storm" || !again.CreatedAt.Equal(now) {
			t.Fatalf("cancel again: %+v %v %v", again, created, err)
		}
		if _, err := s.EventCancellation(ctx, uuid.New()); !errors.Is(err, payment.ErrCancellationNotFound) {
			t.Fatalf("unknown: want ErrCancellationNotFound, got %v", err)
		}
		open, err := s.OpenCancellations(ctx, 100_000)
		if err != nil || !slices.ContainsFunc(open, func(c payment.EventCancellation) bool { return c.EventID == ev }) {
			t.Fatalf("open: %+v %v", open, err)
		}
		if err := s.FinishCancellation(ctx, ev, now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := s.FinishCancellation(ctx, ev, now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if got, err := s.EventCancellation(ctx, ev); err != nil || !got.FinishedAt.Equal(now.Add(time.Minute)) {
			t.Fatalf("finished: %+v %v", got, err)
		}
		if open, _ := s.OpenCancellations(ctx, 100_000); slices.ContainsFunc(open, func(c payment.EventCancellation) bool { return c.EventID == ev }) {
			t.Fatal("a finished cancellation is still open")
		}
		if err := s.FinishCancellation(ctx, uuid.New(), now); !errors.Is(err, payment.ErrCancellationNotFound) {
			t.Fatalf("finish unknown: want ErrCancellationNotFound, got %v", err)
		}
	})

	t.Run("ConcurrentRefundsNeverExceedThePayment", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		o, _ := confirmed(t, s)
		errs := make(chan error, 8)
		for i := range 8 {
			go func() {
				_, err := s.RequestRefund(ctx, payment.RefundRequest{OrderID: o.ID, Key: uuid.NewString(), AmountCents: 1000 + int64(i), At: now})
				errs <- err
			}()
		}
		made := 0
		for range 8 {
			err := <-errs
			switch {
			case err == nil:
				made++
			case !errors.Is(err, payment.ErrRefundTooLarge):
				t.Fatal(err)
			}
		}
		stored := get(t, s, o.ID)
		if len(stored.Refunds) != made || o.AmountCents-stored.RefundableCents() > o.AmountCents || made > 4 || made < 1 {
			t.Fatalf("%d refunds made, stored %+v", made, stored.Refunds)
		}
	})
}

// publishAll clears the order's outbox messages.
func publishAll(t *testing.T, s payment.OrderStore, order uuid.UUID) {
	t.Helper()
	msgs, err := s.Unpublished(context.Background(), time.Now().Add(time.Hour), 100_000)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, m := range msgs {
		if m.OrderID == order {
			ids = append(ids, m.ID)
		}
	}
	if err := s.Published(context.Background(), ids); err != nil {
		t.Fatal(err)
	}
}
