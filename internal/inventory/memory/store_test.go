package memory_test

import (
	"testing"

	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/inventory/memory"
	"github.com/onsale-dev/onsale/internal/inventory/storetest"
)

func TestStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(*testing.T) inventory.Store { return memory.NewStore() })
}
