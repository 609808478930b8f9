package client_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/app"
	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/payment"
	"github.com/onsale-dev/onsale/internal/platform/config"
	"github.com/onsale-dev/onsale/internal/platform/logging"
)

// BenchmarkInventoryHop is the cost of one hop to inventory: the CommitHold that sells an
// order's hold (payment's worker makes it once per order), called on the module in process
// ("local") and through this client over the internal API of a running process ("remote").
// Both sell from the same embedded process with memory adapters, so the store's own work is
// small and the difference per call is the hop: encoding, the loopback round trip, the internal
// listener's authentication and decoding. Read the two as a ratio, and the difference in µs as
// what each order's commit adds when payment runs apart from inventory.
func BenchmarkInventoryHop(b *testing.B) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		b.Fatal(err)
	}
	value := hex.EncodeToString(secret)
	file := filepath.Join(b.TempDir(), "internal-secret")
	if err := os.WriteFile(file, []byte(value+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	p := startInventory(b, file)
	for _, c := range []struct {
		name string
		port payment.Inventory
	}{
		{"local", p.InventoryPort()},
		{"remote", app.InventoryClient("http://"+p.InternalAddr(), value, 5*time.Second)},
	} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			holds := makeHolds(b, p.Inventory.Module, b.N)
			order := uuid.New()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				ts, err := c.port.CommitHold(ctx, holds[i], order)
				if err != nil || len(ts) != 1 {
					b.Fatalf("commit hold %d: %d tickets, %v", i, len(ts), err)
				}
			}
		})
	}
}

// makeHolds makes n holds of one ticket each on a new ticket type, each for a customer of its
// own (the per-customer limits stay out of the way).
func makeHolds(b *testing.B, mod *inventory.Module, n int) []inventory.Hold {
	b.Helper()
	ctx := context.Background()
	org := uuid.New()
	ev, err := mod.CreateEvent(ctx, org, inventory.EventInput{Name: "Hop", Venue: "Hall", StartsAt: time.Now().Add(24 * time.Hour)})
	if err != nil {
		b.Fatal(err)
	}
	tt, err := mod.CreateTicketType(ctx, org, ev.ID, inventory.TicketTypeInput{Name: "GA", PriceCents: 1500, Currency: "EUR", Capacity: max(n, 1), MaxPerOrder: 1})
	if err != nil {
		b.Fatal(err)
	}
	holds := make([]inventory.Hold, n)
	for i := range holds {
		if holds[i], _, err = mod.Hold(ctx, uuid.New(), tt.ID, 1, ""); err != nil {
			b.Fatalf("hold %d: %v", i, err)
		}
	}
	return holds
}

// startInventory starts an embedded process running auth and inventory, its internal API on a
// free port behind the secret in secretFile, and stops it when the benchmark ends.
func startInventory(b *testing.B, secretFile string) *app.Process {
	b.Helper()
	env := map[string]string{
		"ONSALE_MODULES": "auth,inventory", "ONSALE_DATA_DIR": b.TempDir(), "ONSALE_HTTP_ADDR": "127.0.0.1:0",
		"ONSALE_INTERNAL_ADDR": "127.0.0.1:0", "ONSALE_INTERNAL_SECRET_FILE": secretFile, "ONSALE_DRAIN_DELAY": "0s",
		"ONSALE_ACCESS_LOG": "false", "ONSALE_LOG_LEVEL": "warn",
	}
	cfg := &app.Config{}
	if err := config.Load(cfg, func(k string) string { return env[k] }, ""); err != nil {
		b.Fatalf("config: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		b.Fatalf("config: %v", err)
	}
	p, err := app.New(context.Background(), cfg, logging.Discard(), app.Options{})
	if err != nil {
		b.Fatalf("assemble: %v", err)
	}
	if err := p.Start(context.Background()); err != nil {
		b.Fatalf("start: %v", err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := p.Stop(ctx); err != nil {
			b.Errorf("stop: %v", err)
		}
	})
	return p
}
