package redis_test

import (
	"testing"

	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/inventory/queuetest"
	invredis "github.com/onsale-dev/onsale/internal/inventory/redis"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

func TestQueue(t *testing.T) {
	t.Parallel()
	queuetest.Run(t, func(t *testing.T) inventory.QueueStore {
		c, prefix := testenv.Redis(t)
		return invredis.NewQueue(c, prefix)
	})
}
