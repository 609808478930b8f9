package payment

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// BoundedStore limits how many of the calls that background work makes one at a time (the
// payment workers' status changes, the relay and the reconciler) run on store at once.
// Background work shares the connection pool with customers' requests, and comes in bursts: when
// the breaker opens or half-opens, hundreds of queued payments arrive together and each writes
// "payment delayed" in a transaction of its own. Unbounded, they took every connection and
// checkouts queued behind them (POST /v1/orders p99 rose from 45 to 108 ms in the provider-outage
// system test); bounded, requests always find a connection. Reads and confirmations are already
// combined into a few statements by the store, and calls that only requests make pass through.
func BoundedStore(store OrderStore, n int) OrderStore {
	return &boundedStore{OrderStore: store, slots: make(chan struct{}, max(n, 1))}
}

type boundedStore struct {
	OrderStore
	slots chan struct{}
}

func (b *boundedStore) acquire(ctx context.Context) error {
	select {
	case b.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *boundedStore) release() { <-b.slots }

func (b *boundedStore) SetDetail(ctx context.Context, id uuid.UUID, detail string) (Order, bool, error) {
	if err := b.acquire(ctx); err != nil {
		return Order{}, false, err
	}
	defer b.release()
	return b.OrderStore.SetDetail(ctx, id, detail)
}

func (b *boundedStore) Fail(ctx context.Context, id uuid.UUID, reason string) (Order, bool, error) {
	if err := b.acquire(ctx); err != nil {
		return Order{}, false, err
	}
	defer b.release()
	return b.OrderStore.Fail(ctx, id, reason)
}

func (b *boundedStore) Statuses(ctx context.Context, ids []uuid.UUID) ([]StatusEvent, error) {
	if err := b.acquire(ctx); err != nil {
		return nil, err
	}
	defer b.release()
	return b.OrderStore.Statuses(ctx, ids)
}

func (b *boundedStore) Touch(ctx context.Context, ids []uuid.UUID, at time.Time) error {
	if err := b.acquire(ctx); err != nil {
		return err
	}
	defer b.release()
	return b.OrderStore.Touch(ctx, ids, at)
}

func (b *boundedStore) Unpublished(ctx context.Context, before time.Time, limit int) ([]OutboxMessage, error) {
	if err := b.acquire(ctx); err != nil {
		return nil, err
	}
	defer b.release()
	return b.OrderStore.Unpublished(ctx, before, limit)
}

func (b *boundedStore) Published(ctx context.Context, ids []int64) error {
	if err := b.acquire(ctx); err != nil {
		return err
	}
	defer b.release()
	return b.OrderStore.Published(ctx, ids)
}

func (b *boundedStore) StalePending(ctx context.Context, before time.Time, limit int) ([]uuid.UUID, error) {
	if err := b.acquire(ctx); err != nil {
		return nil, err
	}
	defer b.release()
	return b.OrderStore.StalePending(ctx, before, limit)
}

func (b *boundedStore) PurgeIdempotency(ctx context.Context, now time.Time) (int, error) {
	if err := b.acquire(ctx); err != nil {
		return 0, err
	}
	defer b.release()
	return b.OrderStore.PurgeIdempotency(ctx, now)
}
