package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onsale-dev/onsale/api"
	"github.com/onsale-dev/onsale/internal/app"
	"github.com/onsale-dev/onsale/internal/platform/apispec"
	"github.com/onsale-dev/onsale/internal/platform/config"
	"github.com/onsale-dev/onsale/internal/platform/logging"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

// startApp assembles and starts the whole process in-process with env on top of test defaults,
// and stops it when the test ends. It returns the app and its base URL.
func startApp(t *testing.T, env map[string]string) (*app.Process, string) {
	t.Helper()
	all := map[string]string{
		"ONSALE_HTTP_ADDR":         "127.0.0.1:0",
		"ONSALE_DATA_DIR":          t.TempDir(),
		"ONSALE_DRAIN_DELAY":       "0s",
		"ONSALE_ARGON2_MEMORY_KIB": "1024",
		"ONSALE_ARGON2_TIME":       "1",
		"ONSALE_SIMULATED_LATENCY": "1ms",
		"ONSALE_ACCESS_LOG":        "false",
	}
	for k, v := range env {
		all[k] = v
	}
	cfg, err := loadConfig(envMap(all), "", "")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	proc, err := app.New(context.Background(), cfg, logging.Discard(), app.Options{})
	if err != nil {
		t.Fatalf("new app: %v", err)
	}
	if err := proc.Start(context.Background()); err != nil {
		t.Fatalf("start app: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := proc.Stop(ctx); err != nil {
			t.Errorf("stop app: %v", err)
		}
	})
	return proc, "http://" + proc.Addr()
}

// TestSpecAndRoutesAgree fails when the server has a route the published document lacks, or the
// document has an operation no route serves.
func TestSpecAndRoutesAgree(t *testing.T) {
	proc, _ := startApp(t, nil)
	served := map[string]bool{}
	for _, r := range proc.Public().Routes() {
		served[r.Method+" "+apispec.OpenAPIPath(r.Path)] = true
	}
	documented := map[string]bool{}
	spec, err := apispec.Load(api.Spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range spec.Operations() {
		documented[op.Method+" "+op.Path] = true
		if !served[op.Method+" "+op.Path] {
			t.Errorf("the document has %s %s (%s) but no route serves it", op.Method, op.Path, op.ID)
		}
	}
	for r := range served {
		if !documented[r] {
			t.Errorf("route %s is served but not in api/openapi.yaml", r)
		}
	}
	if len(documented) < 25 {
		t.Errorf("only %d operations documented; the API has more", len(documented))
	}
}

// TestEmbeddedSale walks the whole sale through the assembled embedded process: an organizer
// sets up a show, a customer holds, checks out, follows the order to confirmed, and staff admit
// the ticket once.
func TestEmbeddedSale(t *testing.T) {
	_, base := startApp(t, map[string]string{
		"ONSALE_BOOTSTRAP_ORGANIZER": "org@example.com:organizer password",
		"ONSALE_BOOTSTRAP_STAFF":     "door@example.com:staff password",
	})
	c := &client{t: t, base: base}
	org := c.login("org@example.com", "organizer password")
	ev := c.call("POST", "/v1/events", org, nil, `{"name":"Embedded Live","venue":"Hall","starts_at":"2031-01-01T20:00:00Z"}`, 201)
	tt := c.call("POST", "/v1/events/"+ev["id"].(string)+"/ticket-types", org, nil,
		`{"name":"GA","price_cents":4200,"currency":"EUR","capacity":3,"max_per_order":2}`, 201)
	c.call("POST", "/v1/auth/register", "", nil, `{"email":"buyer@example.com","password":"buyer password","name":"B"}`, 201)
	buyer := c.login("buyer@example.com", "buyer password")
	hold := c.call("POST", "/v1/holds", buyer, nil, fmt.Sprintf(`{"ticket_type_id":%q,"quantity":2}`, tt["id"]), 201)
	order := c.call("POST", "/v1/orders", buyer, map[string]string{"Idempotency-Key": "embedded-1"},
		fmt.Sprintf(`{"hold_id":%q}`, hold["id"]), 202)
	if order["status"] != "pending" || order["amount_cents"].(float64) != 8400 {
		t.Fatalf("order: %v", order)
	}
	if final := c.follow(buyer, order["id"].(string)); final != "confirmed" {
		t.Fatalf("order ended %q", final)
	}
	got := c.call("GET", "/v1/orders/"+order["id"].(string), buyer, nil, "", 200)
	tickets := got["tickets"].([]any)
	if len(tickets) != 2 {
		t.Fatalf("tickets: %v", got)
	}
	avail := c.call("GET", "/v1/events/"+ev["id"].(string)+"/availability", "", nil, "", 200)
	stock := avail["ticket_types"].([]any)[0].(map[string]any)
	if stock["sold"].(float64) != 2 || stock["available"].(float64) != 1 {
		t.Fatalf("availability after the sale: %v", stock)
	}
	door := c.login("door@example.com", "staff password")
	code := tickets[0].(map[string]any)["code"].(string)
	c.call("POST", "/v1/checkins", door, nil, fmt.Sprintf(`{"code":%q}`, code), 200)
	c.call("POST", "/v1/checkins", door, nil, fmt.Sprintf(`{"code":%q}`, code), 409)

	metrics := c.raw("GET", "/metrics")
	for _, want := range []string{"onsale_http_requests_total", "http_server_request_duration_seconds_bucket",
		"onsale_inventory_holds_created_total", "onsale_payment_orders_total", "onsale_payment_breaker_state"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestReadinessFollowsRedis runs the process against real services with a Redis the test owns:
// /readyz lists each dependency, turns 503 within a second of Redis stopping, and 200 again once
// it is back.
func TestReadinessFollowsRedis(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if testenv.RequireServices() {
			t.Fatalf("redis-server not found: %v", err)
		}
		t.Skip("redis-server not installed")
	}
	port := testenv.FreePort(t)
	stopRedis := startRedis(t, bin, port)
	_, base := startApp(t, map[string]string{
		"ONSALE_REDIS_URL":    fmt.Sprintf("redis://127.0.0.1:%d/0", port),
		"ONSALE_DATABASE_URL": testenv.PostgresURL(t),
		"ONSALE_NATS_URL":     testenv.NATSURL(),
		"ONSALE_NATS_PREFIX":  testenv.Unique("R"),
		"ONSALE_DB_MAX_CONNS": "4",
	})
	ready := func() (int, map[string]string) {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatalf("readyz: %v", err)
		}
		defer resp.Body.Close()
		var rep struct {
			Checks []struct{ Name, Status string }
		}
		_ = json.NewDecoder(resp.Body).Decode(&rep)
		checks := map[string]string{}
		for _, c := range rep.Checks {
			checks[c.Name] = c.Status
		}
		return resp.StatusCode, checks
	}
	code, checks := ready()
	if code != 200 || checks["redis"] != "ok" || checks["postgres"] != "ok" || checks["nats"] != "ok" {
		t.Fatalf("readyz with all services up: %d %v", code, checks)
	}
	stopRedis()
	stopped := time.Now()
	testenv.Eventually(t, time.Second, func() bool { c, _ := ready(); return c == 503 }, "readyz still 200 after Redis stopped")
	t.Logf("readyz turned 503 %s after Redis stopped", time.Since(stopped).Round(time.Millisecond))
	startRedis(t, bin, port)
	testenv.Eventually(t, 10*time.Second, func() bool { c, _ := ready(); return c == 200 }, "readyz not 200 after Redis came back")
}

// startRedis runs a throwaway redis-server and returns a function that kills it.
func startRedis(t *testing.T, bin string, port int) func() {
	t.Helper()
	cmd := exec.Command(bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis: %v", err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}
	t.Cleanup(stop)
	testenv.Eventually(t, 5*time.Second, func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err == nil
	}, "redis on port %d did not start", port)
	return stop
}

// TestReadmeDocumentsEverySetting keeps the README's configuration table complete.
func TestReadmeDocumentsEverySetting(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatalf("read README: %v", err)
	}
	for _, f := range config.Fields(&app.Config{}) {
		if !regexp.MustCompile("`" + f.Env + "`").Match(readme) {
			t.Errorf("README.md does not document %s", f.Env)
		}
		// The README promises YAML keys are the variable names without the prefix, lower-cased.
		if want := strings.ToLower(strings.TrimPrefix(f.Env, "ONSALE_")); f.YAML != want {
			t.Errorf("%s has YAML key %q, want %q", f.Env, f.YAML, want)
		}
	}
}

// TestExampleConfigLoads keeps configs/example.yaml valid.
func TestExampleConfigLoads(t *testing.T) {
	if _, err := loadConfig(envMap(nil), "../../configs/example.yaml", ""); err != nil {
		t.Fatalf("configs/example.yaml: %v", err)
	}
}

type client struct {
	t    *testing.T
	base string
}

func (c *client) do(method, path, token string, header map[string]string, body string) *http.Response {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

func (c *client) call(method, path, token string, header map[string]string, body string, want int) map[string]any {
	c.t.Helper()
	resp := c.do(method, path, token, header, body)
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		c.t.Fatalf("%s %s: want %d, got %d: %s", method, path, want, resp.StatusCode, data)
	}
	var m map[string]any
	_ = json.Unmarshal(data, &m)
	return m
}

func (c *client) raw(method, path string) string {
	c.t.Helper()
	resp := c.do(method, path, "", nil, "")
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return string(data)
}

func (c *client) login(email, password string) string {
	c.t.Helper()
	m := c.call("POST", "/v1/auth/login", "", nil, fmt.Sprintf(`{"email":%q,"password":%q}`, email, password), 200)
	return m["access_token"].(string)
}

// follow reads the order's event stream to its end and returns the last status.
func (c *client) follow(token, orderID string) string {
	c.t.Helper()
	resp := c.do("GET", "/v1/orders/"+orderID+"/events", token, map[string]string{"Accept": "text/event-stream"}, "")
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		c.t.Fatalf("event stream content type %q", ct)
	}
	var statuses []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			var ev struct{ Status string }
			_ = json.Unmarshal([]byte(data), &ev)
			statuses = append(statuses, ev.Status)
		}
	}
	if len(statuses) == 0 || !slices.Contains([]string{"confirmed", "failed"}, statuses[len(statuses)-1]) {
		c.t.Fatalf("stream ended without a terminal status: %v", statuses)
	}
	return statuses[len(statuses)-1]
}
