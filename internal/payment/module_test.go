package payment_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/payment"
	"github.com/onsale-dev/onsale/internal/payment/paymenttest"
	"github.com/onsale-dev/onsale/internal/payment/simulated"
)

// stallingInventory stalls the first GetHold until released.
type stallingInventory struct {
	payment.Inventory
	once             sync.Once
	entered, release chan struct{}
}

func (s *stallingInventory) GetHold(ctx context.Context, id string) (inventory.Hold, error) {
	s.once.Do(func() {
		close(s.entered)
		<-s.release
	})
	return s.Inventory.GetHold(ctx, id)
}

// A request and its retry (same key, same hold) race; the retry wins, and the order's payment
// moves the hold on (sold, or released by a decline) before the first request looks at it. The
// first request must still answer with the order, as any retry with the key does, not with a 409
// about the hold.
func TestCreateOrderRetryRacingPayment(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		mode   simulated.Mode
		status payment.Status
	}{
		{"confirmed", quick(), payment.StatusConfirmed},
		{"declined", simulated.Mode{DeclineRate: 1}, payment.StatusFailed},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := processorStack(t, paymenttest.Options{Mode: c.mode})
			tt := s.TicketType(5)
			h := s.Hold(s.Customer, tt, 1)
			inv := &stallingInventory{Inventory: s.Inv, entered: make(chan struct{}), release: make(chan struct{})}
			slow, err := payment.New(s.Cfg, payment.Deps{Store: s.Store, Inventory: inv, Relay: s.Relay, Hub: s.Hub,
				Signer: s.Signer, Clock: s.Clock, Log: discardLog(), Meter: noopMeter()})
			if err != nil {
				t.Fatal(err)
			}
			type result struct {
				o       payment.Order
				created bool
				err     error
			}
			first := make(chan result, 1)
			go func() {
				o, created, err := slow.CreateOrder(ctx, s.Customer.ID, h.ID, "the-key")
				first <- result{o, created, err}
			}()
			select {
			case <-inv.entered:
			case <-time.After(5 * time.Second):
				t.Fatal("the first request did not reach the hold")
			}
			o, created, err := s.Module.CreateOrder(ctx, s.Customer.ID, h.ID, "the-key")
			if err != nil || !created {
				t.Fatalf("the retry: created=%v err=%v", created, err)
			}
			wantAction(t, process(t, s, o.ID, 1), payment.Done)
			if got := s.Order(o.ID); got.Status != c.status {
				t.Fatalf("order %+v", got)
			}
			close(inv.release)
			r := <-first
			if r.err != nil || r.created || r.o.ID != o.ID {
				t.Fatalf("the first request: order %s created=%v err=%v; want the retry's order %s", r.o.ID, r.created, r.err, o.ID)
			}
			if n := len(s.Orders(s.Customer.ID)); n != 1 {
				t.Fatalf("%d orders", n)
			}
		})
	}
}
