package memory_test

import (
	"testing"

	"github.com/onsale-dev/onsale/internal/webhook"
	"github.com/onsale-dev/onsale/internal/webhook/memory"
	"github.com/onsale-dev/onsale/internal/webhook/webhooktest"
)

func TestStore(t *testing.T) {
	t.Parallel()
	webhooktest.RunStore(t, func(*testing.T) webhook.Store { return memory.NewStore() })
}
