package memory_test

import (
	"testing"
	"time"

	"github.com/onsale-dev/onsale/internal/auth"
	"github.com/onsale-dev/onsale/internal/auth/authtest"
	"github.com/onsale-dev/onsale/internal/auth/memory"
	"github.com/onsale-dev/onsale/internal/platform/clock"
)

func TestUsers(t *testing.T) {
	t.Parallel()
	authtest.UserStore(t, func(*testing.T) auth.UserStore { return memory.NewUsers() })
}

func TestSessions(t *testing.T) {
	t.Parallel()
	authtest.SessionStore(t, func(*testing.T) (auth.SessionStore, func(time.Duration)) {
		clk := clock.NewFake(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC))
		return memory.NewSessions(clk), clk.Advance
	})
}

func TestFailures(t *testing.T) {
	t.Parallel()
	authtest.FailureCounter(t, func(*testing.T) (auth.FailureCounter, func(time.Duration)) {
		clk := clock.NewFake(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC))
		return memory.NewFailures(clk), clk.Advance
	})
}
