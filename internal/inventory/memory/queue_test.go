package memory_test

import (
	"testing"

	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/inventory/memory"
	"github.com/onsale-dev/onsale/internal/inventory/queuetest"
)

func TestQueue(t *testing.T) {
	t.Parallel()
	queuetest.Run(t, func(*testing.T) inventory.QueueStore { return memory.NewQueue() })
}
