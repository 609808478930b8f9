package app_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/app"
	"github.com/onsale-dev/onsale/internal/auth"
	"github.com/onsale-dev/onsale/internal/auth/authtest"
	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/payment"
	"github.com/onsale-dev/onsale/internal/payment/paymenttest"
	"github.com/onsale-dev/onsale/internal/platform/config"
	"github.com/onsale-dev/onsale/internal/platform/logging"
)

// startProcess starts a process running modules, embedded, with its internal API on a free
// port behind secret; settings override the test's defaults.
func startProcess(t *testing.T, modules, secretFile string, settings map[string]string) *app.Process {
	t.Helper()
	env := map[string]string{
		"ONSALE_MODULES": modules, "ONSALE_DATA_DIR": t.TempDir(), "ONSALE_HTTP_ADDR": "127.0.0.1:0",
		"ONSALE_INTERNAL_ADDR": "127.0.0.1:0", "ONSALE_INTERNAL_SECRET_FILE": secretFile, "ONSALE_DRAIN_DELAY": "0s",
		"ONSALE_ARGON2_MEMORY_KIB": "64", "ONSALE_ARGON2_TIME": "1", "ONSALE_ACCESS_LOG": "false",
		"ONSALE_RATE_LIMIT_AUTH": "0", "ONSALE_RATE_LIMIT_HOLDS": "0", "ONSALE_SIMULATED_LATENCY": "1ms",
	}
	for k, v := range settings {
		env[k] = v
	}
	cfg := &app.Config{}
	if err := config.Load(cfg, func(k string) string { return env[k] }, ""); err != nil {
		t.Fatalf("config: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	p, err := app.New(context.Background(), cfg, logging.Discard(), app.Options{})
	if err != nil {
		t.Fatalf("assemble: %v", err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := p.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return p
}

// secret writes a shared internal secret and returns its file.
func secret(t *testing.T) (file, value string) {
	t.Helper()
	value = strings.ReplaceAll(uuid.NewString()+uuid.NewString(), "-", "")
	file = filepath.Join(t.TempDir(), "internal-secret")
	if err := os.WriteFile(file, []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, value
}

// inventoryFixture makes ticket types and holds with the inventory module itself.
type inventoryFixture struct{ mod *inventory.Module }

func (f inventoryFixture) TicketType(t *testing.T, capacity int) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	org := uuid.New()
	ev, err := f.mod.CreateEvent(ctx, org, inventory.EventInput{Name: "Contract", Venue: "Hall", StartsAt: time.Now().Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	tt, err := f.mod.CreateTicketType(ctx, org, ev.ID, inventory.TicketTypeInput{Name: "GA", PriceCents: 1500, Currency: "EUR", Capacity: capacity, MaxPerOrder: 4})
	if err != nil {
		t.Fatal(err)
	}
	return tt.ID
}

func (f inventoryFixture) Hold(t *testing.T, tt uuid.UUID, quantity int) inventory.Hold {
	t.Helper()
	h, _, err := f.mod.Hold(context.Background(), uuid.New(), tt, quantity, "")
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestInventoryPortContract runs payment's Inventory port contract against the inventory module
// in process and against the client of its internal API, served by a running process.
func TestInventoryPortContract(t *testing.T) {
	t.Parallel()
	file, value := secret(t)
	p := startProcess(t, "auth,inventory", file, nil)
	fx := inventoryFixture{p.Inventory.Module}
	t.Run("local", func(t *testing.T) {
		paymenttest.InventoryContract(t, func(*testing.T) (payment.Inventory, paymenttest.InventoryFixture) {
			return p.InventoryPort(), fx
		})
	})
	t.Run("remote", func(t *testing.T) {
		paymenttest.InventoryContract(t, func(*testing.T) (payment.Inventory, paymenttest.InventoryFixture) {
			return app.InventoryClient("http://"+p.InternalAddr(), value, 5*time.Second), fx
		})
	})
}

// sessionFixture logs customers in and out with the auth module itself.
type sessionFixture struct{ svc auth.Service }

func (f sessionFixture) Login(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	email := "contract-" + uuid.NewString()[:8] + "@example.com"
	if _, err := f.svc.Register(ctx, email, "contract password", "Contract"); err != nil {
		t.Fatal(err)
	}
	tok, err := f.svc.Login(ctx, email, "contract password", "")
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken
}

func (f sessionFixture) Logout(t *testing.T, access string) {
	t.Helper()
	// The session id is the token's sid claim.
	sid, _ := authtest.TokenClaims(t, access)["sid"].(string)
	if err := f.svc.Logout(context.Background(), sid); err != nil {
		t.Fatal(err)
	}
}

// TestAuthPortContract runs the auth port's contract against the auth module in process and
// against a process without it: auth's public keys fetched over the internal API (no private key)
// and sessions asked of auth's internal API (this process has no Redis to share).
func TestAuthPortContract(t *testing.T) {
	t.Parallel()
	file, value := secret(t)
	p := startProcess(t, "auth", file, nil)
	fx := sessionFixture{p.Auth.Service}
	t.Run("local", func(t *testing.T) {
		authtest.AuthenticatorContract(t, 100*time.Millisecond, func(*testing.T) (authtest.TokenChecker, authtest.SessionFixture) {
			return p.Auth.Authn, fx
		})
	})
	t.Run("remote", func(t *testing.T) {
		var cfg app.Config
		if err := config.Load(&cfg, func(string) string { return "" }, ""); err != nil {
			t.Fatal(err)
		}
		ra, err := app.NewRemoteAuth(cfg.Auth, "http://"+p.InternalAddr(), value, 5*time.Second, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		authtest.AuthenticatorContract(t, 2*time.Second, func(*testing.T) (authtest.TokenChecker, authtest.SessionFixture) {
			return ra, fx
		})
	})
}

// TestInternalAPIIsGuarded: the internal API answers only with the deployment's secret, on its
// own listener; the public port does not serve it, and the internal listener serves nothing
// public.
func TestInternalAPIIsGuarded(t *testing.T) {
	t.Parallel()
	file, value := secret(t)
	p := startProcess(t, "auth,inventory", file, nil)
	internal, public := "http://"+p.InternalAddr(), "http://"+p.Addr()
	get := func(url, bearer string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get(internal+"/internal/v1/livez", value); code != http.StatusOK || !strings.Contains(body, "inventory") {
		t.Fatalf("livez with the secret: %d %s", code, body)
	}
	for name, bearer := range map[string]string{"no secret": "", "a wrong secret": value[:len(value)-1] + "x", "a user's token": "eyJ.x.y"} {
		code, body := get(internal+"/internal/v1/jwks.json", bearer)
		if code != http.StatusUnauthorized || !strings.Contains(body, "internal-unauthorized") {
			t.Errorf("%s: %d %s", name, code, body)
		}
	}
	if code, _ := get(public+"/internal/v1/livez", value); code != http.StatusNotFound {
		t.Errorf("the public port serves the internal API: %d", code)
	}
	if code, _ := get(internal+"/v1/events", value); code != http.StatusNotFound {
		t.Errorf("the internal listener serves a public route: %d", code)
	}
}

// TestOnlyTheModulesHere: a process serves the routes of its own modules, and /readyz names the
// modules it depends on elsewhere.
func TestOnlyTheModulesHere(t *testing.T) {
	t.Parallel()
	file, _ := secret(t)
	a := startProcess(t, "auth,inventory", file, nil)
	pay := startProcess(t, "payment", file, map[string]string{
		"ONSALE_AUTH_URL": "http://" + a.InternalAddr(), "ONSALE_INVENTORY_URL": "http://" + a.InternalAddr(),
	})
	if pay.Auth != nil || pay.Inventory != nil || pay.Payment == nil {
		t.Fatalf("a payment process assembled auth %v, inventory %v", pay.Auth != nil, pay.Inventory != nil)
	}
	status := func(base, path string) int {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	base := "http://" + pay.Addr()
	for _, path := range []string{"/v1/events", "/.well-known/jwks.json"} {
		if got := status(base, path); got != http.StatusNotFound {
			t.Errorf("GET %s on the payment process: %d, want 404", path, got)
		}
	}
	if got := status(base, "/.well-known/ticket-keys.json"); got != http.StatusOK {
		t.Errorf("payment's own route: %d", got)
	}
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "auth (remote") || !strings.Contains(string(body), "inventory (remote") {
		t.Fatalf("payment's /readyz: %d %s", resp.StatusCode, body)
	}
}

// TestFailedStartStopsWhatStarted: a module that fails to start (payment, with ticket keys it
// cannot read) leaves nothing running: the modules already started are stopped (auth's hash pool
// does no more work) and no listener opens.
func TestFailedStartStopsWhatStarted(t *testing.T) {
	t.Parallel()
	file, _ := secret(t)
	env := map[string]string{
		"ONSALE_MODULES": "all", "ONSALE_DATA_DIR": t.TempDir(), "ONSALE_HTTP_ADDR": "127.0.0.1:0",
		"ONSALE_INTERNAL_ADDR": "127.0.0.1:0", "ONSALE_INTERNAL_SECRET_FILE": file, "ONSALE_DRAIN_DELAY": "0s",
		"ONSALE_ARGON2_MEMORY_KIB": "64", "ONSALE_ARGON2_TIME": "1",
		"ONSALE_TICKET_KEYS_FILE": filepath.Join(t.TempDir(), "no-such-keys.json"),
	}
	cfg := &app.Config{}
	if err := config.Load(cfg, func(k string) string { return env[k] }, ""); err != nil {
		t.Fatal(err)
	}
	p, err := app.New(context.Background(), cfg, logging.Discard(), app.Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = p.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no-such-keys.json") {
		t.Fatalf("start with unreadable ticket keys: %v", err)
	}
	if p.Addr() != "" || p.InternalAddr() != "" {
		t.Fatalf("a failed start left listeners open: %q %q", p.Addr(), p.InternalAddr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := p.Auth.Service.Register(ctx, "late@example.com", "late password", "Late"); err == nil {
		t.Fatal("auth still hashes passwords after the start failed")
	}
}
