package payment_test

import (
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/payment"
)

func TestHubDeliversNewerOnly(t *testing.T) {
	t.Parallel()
	h := payment.NewHub()
	a, b, nobody := uuid.New(), uuid.New(), uuid.New()
	chA, stopA := h.Subscribe(a)
	chA2, stopA2 := h.Subscribe(a)
	chB, stopB := h.Subscribe(b)
	ids := h.Orders()
	slices.SortFunc(ids, func(x, y uuid.UUID) int { return slices.Compare(x[:], y[:]) })
	want := []uuid.UUID{a, b}
	slices.SortFunc(want, func(x, y uuid.UUID) int { return slices.Compare(x[:], y[:]) })
	if !slices.Equal(ids, want) || h.Streams() != 3 {
		t.Fatalf("orders %v, streams %d; want %v and 3", ids, h.Streams(), want)
	}
	got := func(ch <-chan payment.StatusEvent) []int {
		var v []int
		for {
			select {
			case ev := <-ch:
				v = append(v, ev.Version)
			default:
				return v
			}
		}
	}
	// A reread delivers what the listeners have not been given, and nothing twice.
	h.DeliverNewer([]payment.StatusEvent{{OrderID: a, Version: 1}, {OrderID: b, Version: 1}, {OrderID: nobody, Version: 1}})
	h.Deliver(payment.StatusEvent{OrderID: a, Version: 2})
	h.DeliverNewer([]payment.StatusEvent{{OrderID: a, Version: 2}, {OrderID: b, Version: 1}})
	h.DeliverNewer([]payment.StatusEvent{{OrderID: a, Version: 3}})
	if v := got(chA); !slices.Equal(v, []int{1, 2, 3}) {
		t.Fatalf("a got versions %v, want 1 2 3", v)
	}
	if v := got(chA2); !slices.Equal(v, []int{1, 2, 3}) {
		t.Fatalf("a's second stream got versions %v, want 1 2 3", v)
	}
	if v := got(chB); !slices.Equal(v, []int{1}) {
		t.Fatalf("b got versions %v, want 1", v)
	}
	stopA()
	stopB()
	if ids := h.Orders(); len(ids) != 1 || ids[0] != a || h.Streams() != 1 {
		t.Fatalf("after two closes: orders %v, streams %d", ids, h.Streams())
	}
	stopA2()
	if len(h.Orders()) != 0 || h.Streams() != 0 {
		t.Fatal("the hub kept an order nobody watches")
	}
	// Watched again, the order starts afresh.
	chA3, stopA3 := h.Subscribe(a)
	defer stopA3()
	h.DeliverNewer([]payment.StatusEvent{{OrderID: a, Version: 3}})
	if v := got(chA3); !slices.Equal(v, []int{3}) {
		t.Fatalf("a new stream got versions %v, want 3", v)
	}
}
