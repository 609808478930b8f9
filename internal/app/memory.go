package app

import (
	"time"

	authmemory "github.com/onsale-dev/onsale/internal/auth/memory"
	invmemory "github.com/onsale-dev/onsale/internal/inventory/memory"
	paymemory "github.com/onsale-dev/onsale/internal/payment/memory"
	"github.com/onsale-dev/onsale/internal/platform/clock"
	whmemory "github.com/onsale-dev/onsale/internal/webhook/memory"
)

// Memory holds the memory adapters that play Redis's and PostgreSQL's roles in embedded mode.
// A process makes its own; a test that runs two processes over the same state (two replicas in
// one test) gives both the same Memory.
type Memory struct {
	users         *authmemory.Users
	sessions      *authmemory.Sessions
	failures      *authmemory.Failures
	catalogue     *invmemory.Store
	holds         *invmemory.Holds
	customerHolds *invmemory.CustomerHolds
	queue         *invmemory.Queue
	orders        *paymemory.Store
	webhooks      *whmemory.Store
}

// NewMemory returns empty memory adapters that tell time with clk and keep finished holds
// readable for holdRecordKeep.
func NewMemory(clk clock.Clock, holdRecordKeep time.Duration) *Memory {
	return &Memory{
		users: authmemory.NewUsers(), sessions: authmemory.NewSessions(clk), failures: authmemory.NewFailures(clk),
		catalogue: invmemory.NewStore(), holds: invmemory.NewHolds(holdRecordKeep), customerHolds: invmemory.NewCustomerHolds(),
		queue:    invmemory.NewQueue(),
		orders:   paymemory.NewStore(),
		webhooks: whmemory.NewStore(),
	}
}

// FlushHolds forgets every hold, as a restart of Redis without persistence would.
func (m *Memory) FlushHolds() { m.holds.Flush() }
