package memory_test

import (
	"testing"
	"time"

	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/inventory/holdstest"
	"github.com/onsale-dev/onsale/internal/inventory/memory"
)

func TestHolds(t *testing.T) {
	t.Parallel()
	holdstest.Run(t, func(*testing.T) inventory.HoldStore { return memory.NewHolds(time.Hour) })
}

func TestCustomerHolds(t *testing.T) {
	t.Parallel()
	holdstest.CustomerHolds(t, func(*testing.T) inventory.CustomerHolds { return memory.NewCustomerHolds() })
}
