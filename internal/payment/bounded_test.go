package payment_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/payment"
	"github.com/onsale-dev/onsale/internal/payment/memory"
)

// slowStore records how many SetDetail calls run at once and lets them finish on release.
type slowStore struct {
	payment.OrderStore
	running, most atomic.Int64
	gate          chan struct{}
}

func (s *slowStore) SetDetail(ctx context.Context, id uuid.UUID, detail string) (payment.Order, bool, error) {
	n := s.running.Add(1)
	for {
		m := s.most.Load()
		if n <= m || s.most.CompareAndSwap(m, n) {
			break
		}
	}
	<-s.gate
	s.running.Add(-1)
	return payment.Order{}, false, nil
}

func TestBoundedStoreLeavesRoomForRequests(t *testing.T) {
	t.Parallel()
	inner := &slowStore{OrderStore: memory.NewStore(), gate: make(chan struct{})}
	bounded := payment.BoundedStore(inner, 2)
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, _ = bounded.SetDetail(context.Background(), uuid.New(), payment.DetailDelayed)
		}()
	}
	// While 50 background writes wait, a request's call passes straight through.
	deadline := time.Now().Add(5 * time.Second)
	for inner.running.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if _, err := bounded.ByIdempotencyKey(context.Background(), uuid.New(), "k", time.Now()); !errors.Is(err, payment.ErrOrderNotFound) {
		t.Fatalf("a request's read behind a burst: %v", err)
	}
	// A background call whose caller gives up stops waiting.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, _, err := bounded.SetDetail(ctx, uuid.New(), payment.DetailDelayed); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a waiting call whose context ended: %v", err)
	}
	close(inner.gate)
	wg.Wait()
	if got := inner.most.Load(); got != 2 {
		t.Fatalf("at most %d background writes ran at once, want 2", got)
	}
}
