package memory_test

import (
	"testing"

	"github.com/onsale-dev/onsale/internal/payment"
	"github.com/onsale-dev/onsale/internal/payment/memory"
	"github.com/onsale-dev/onsale/internal/payment/paymenttest"
)

func TestStore(t *testing.T) {
	t.Parallel()
	paymenttest.RunOrderStore(t, func(*testing.T) payment.OrderStore { return memory.NewStore() })
}

func TestStoreShared(t *testing.T) {
	t.Parallel()
	// One store for every subtest, as the PostgreSQL suite runs: the suite must not depend on an
	// empty store.
	s := memory.NewStore()
	paymenttest.RunOrderStore(t, func(*testing.T) payment.OrderStore { return s })
}
