package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

// ---- unit tests of the tool's parts (fast) ----

func TestMetricsSum(t *testing.T) {
	m := metrics(`# HELP onsale_payment_orders_total Orders.
# TYPE onsale_payment_orders_total counter
onsale_payment_orders_total{otel_scope_name="x",reason="paid",status="confirmed"} 7
onsale_payment_orders_total{otel_scope_name="x",reason="declined",status="failed"} 2
onsale_payment_orders_total{otel_scope_name="y",reason="paid",status="confirmed"} 3
onsale_payment_orders_created_total{otel_scope_name="x"} 12
process_resident_memory_bytes 4.3094016e+07
`)
	if v, ok := m.Sum("onsale_payment_orders_total", map[string]string{"status": "confirmed"}); !ok || v != 10 {
		t.Fatalf("confirmed = %v, %v; want 10", v, ok)
	}
	if v, _ := m.Sum("onsale_payment_orders_total", nil); v != 12 {
		t.Fatalf("all orders = %v; want 12 (and not the _created_total series)", v)
	}
	if v, ok := m.Sum("process_resident_memory_bytes", nil); !ok || v != 43094016 {
		t.Fatalf("rss = %v, %v", v, ok)
	}
	if _, ok := m.Sum("onsale_nothing_total", nil); ok {
		t.Fatal("found a metric that is not there")
	}
}

func TestReadEvents(t *testing.T) {
	stream := "id: 1\nevent: status\ndata: {\"status\":\"pending\",\"version\":1}\n\n: keep-alive\n\n" +
		"id: 2\r\nevent: status\r\ndata: {\"status\":\"confirmed\",\"version\":2}\r\n\r\n"
	var got []string
	err := readEvents(strings.NewReader(stream), func(ev sseEvent) bool {
		var d statusData
		if err := json.Unmarshal([]byte(ev.Data), &d); err != nil {
			t.Fatalf("event %+v: %v", ev, err)
		}
		got = append(got, ev.ID+":"+ev.Event+":"+d.Status)
		return true
	})
	if err != io.EOF {
		t.Fatalf("err = %v, want io.EOF", err)
	}
	if want := "1:status:pending 2:status:confirmed"; strings.Join(got, " ") != want {
		t.Fatalf("events %q, want %q", got, want)
	}
}

// An open loop measures from the intended send time: one stall delays every operation queued
// behind it, and the recorded latencies show it (no coordinated omission).
func TestOpenLoopCountsFromIntendedTime(t *testing.T) {
	rec := NewRecorder("op")
	var once sync.Once
	el := Loop{Workers: 1, Duration: time.Second, Rate: 100}.Run(context.Background(), rec, func(ctx context.Context, w int, i int64) Outcome {
		once.Do(func() { time.Sleep(300 * time.Millisecond) })
		return Outcome{Status: 200}
	})
	l := rec.Latency()
	if l.Count != 100 {
		t.Fatalf("%d operations, want 100", l.Count)
	}
	// 30 operations were due during the stall: the worst waited 300 ms, the 10th worst ~200 ms.
	if l.Max < 250 || l.P90 < 150 {
		t.Fatalf("latencies %+v hide the stall", l)
	}
	if el < time.Second {
		t.Fatalf("ran %s, want about 1s", el)
	}
}

// The series keeps between half of seriesMaxBuckets and seriesMaxBuckets points whatever the
// run's length, and merging buckets loses no answer.
func TestSeriesBucketsFollowTheRunsLength(t *testing.T) {
	for _, run := range []time.Duration{30 * time.Millisecond, 450 * time.Millisecond, 7 * time.Second} {
		rec := NewRecorder("op")
		t0 := time.Now()
		rec.Restart(t0)
		const n = 3000
		for i := range n {
			end := t0.Add(run * time.Duration(i) / n)
			rec.Record(end.Add(-time.Millisecond), Outcome{Status: 200, End: end})
		}
		series, bucket := rec.Series(run)
		var total int64
		for _, p := range series {
			total += p.Requests
		}
		if total != n {
			t.Errorf("%s: %d answers in the series, want %d", run, total, n)
		}
		if want := min(seriesMaxBuckets, int(run/seriesFirstBucket)); len(series) > seriesMaxBuckets || len(series) < want/2 {
			t.Errorf("%s: %d buckets of %s, want %d to %d", run, len(series), bucket, want/2, seriesMaxBuckets)
		}
		rate := float64(n) / run.Seconds()
		if mid := series[len(series)/2]; math.Abs(mid.RPS-rate) > rate/5 {
			t.Errorf("%s: %.0f answers/s in the middle bucket, want about %.0f", run, mid.RPS, rate)
		}
		if mid := series[len(series)/2]; mid.P50 < 0.9 || mid.P50 > 1.1 {
			t.Errorf("%s: p50 %.3f ms, want 1", run, mid.P50)
		}
	}
}

func TestParseArgsDefaults(t *testing.T) {
	sc, o, err := parseArgs([]string{"login", "--target", "http://a/", "--target", "http://b", "--organizer", "o@x.io:password1"}, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if sc != "login" || o.Connections != 200 || o.Duration != 10*time.Second || o.Rate != 200 || o.Customers != 200 {
		t.Fatalf("login defaults not applied: %+v", o)
	}
	if strings.Join(o.Targets, " ") != "http://a http://b" {
		t.Fatalf("targets %q", o.Targets)
	}
	if !o.SourceAuto || len(o.SourceIPs) != 0 {
		t.Fatalf("--source-ips is not auto by default: %+v", o)
	}
	if _, o, _ = parseArgs([]string{"flash-sale", "--target", "http://a", "--organizer", "o@x.io:password1", "--connections", "7", "--source-ips", "127.0.0.2,127.0.0.3"}, io.Discard, io.Discard); o.Connections != 7 || len(o.SourceIPs) != 2 || o.SourceAuto || o.Buyers != 50000 {
		t.Fatalf("explicit flags lost: %+v", o)
	}
	if _, _, err := parseArgs([]string{"holds", "--target", "http://a", "--organizer", "o@x.io:password1", "--source-ips", "127.0.0.9-127.0.0.2"}, io.Discard, io.Discard); err == nil {
		t.Fatal("a backwards range of source addresses was accepted")
	}
	if _, _, err := parseArgs([]string{"nope", "--target", "http://a"}, io.Discard, io.Discard); err == nil {
		t.Fatal("an unknown scenario was accepted")
	}
	if _, _, err := parseArgs([]string{"holds", "--organizer", "o@x.io:password1"}, io.Discard, io.Discard); err == nil {
		t.Fatal("no --target was accepted")
	}
}

// The help lists every scenario on a line of its own that starts with its name, a scenario's
// help shows its own flags with its defaults, and asking for help is not an error.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), args, &out, &errOut); code != 0 {
			t.Fatalf("load %v: exit %d, want 0; stderr %q", args, code, errOut.String())
		}
		lines := strings.Split(out.String(), "\n")
		for _, sc := range scenarios() {
			n := 0
			for _, l := range lines {
				if strings.HasPrefix(strings.TrimSpace(l), sc.name+" ") {
					n++
				}
			}
			if n != 1 {
				t.Errorf("load %v: %d lines start with %q, want 1:\n%s", args, n, sc.name, out.String())
			}
		}
	}
	var out bytes.Buffer
	if code := run(context.Background(), []string{"login", "--help"}, &out, io.Discard); code != 0 {
		t.Fatalf("load login --help: exit %d, want 0", code)
	}
	for _, want := range []string{"-argon2-memory-kib", "-light-workers", "-target", "-connections int", "(default 200)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("load login --help lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "-buyers") {
		t.Errorf("load login --help shows flash-sale's --buyers:\n%s", out.String())
	}
	for _, args := range [][]string{nil, {"nope"}, {"--target", "http://a"}, {"holds", "--no-such-flag"}} {
		if code := run(context.Background(), args, io.Discard, io.Discard); code != 2 {
			t.Errorf("load %v: exit %d, want 2", args, code)
		}
	}
}

func TestParseSources(t *testing.T) {
	for _, c := range []struct {
		spec  string
		n     int
		auto  bool
		first string
	}{
		{"auto", 0, true, ""},
		{"off", 0, false, ""},
		{"127.0.0.2-127.0.0.254", 253, false, "127.0.0.2"},
		{"127.0.0.2, 127.0.0.5-127.0.0.6", 3, false, "127.0.0.2"},
		{"10.0.0.255-10.0.1.1", 3, false, "10.0.0.255"},
		{"::1", 1, false, "::1"},
	} {
		ips, auto, err := parseSources(c.spec)
		if err != nil || len(ips) != c.n || auto != c.auto || (c.n > 0 && ips[0].String() != c.first) {
			t.Errorf("parseSources(%q) = %v, %v, %v; want %d addresses from %s, auto %v", c.spec, ips, auto, err, c.n, c.first, c.auto)
		}
	}
	for _, spec := range []string{"x", "127.0.0.5-127.0.0.2", "::1-::2", "127.0.0.1-", "10.0.0.0-10.1.0.0"} {
		if ips, _, err := parseSources(spec); err == nil {
			t.Errorf("parseSources(%q) = %d addresses, want an error", spec, len(ips))
		}
	}
	for targets, want := range map[string]bool{
		"http://127.0.0.1:8080":                      true,
		"http://localhost:8080 http://127.0.0.9:1":   true,
		"http://127.0.0.1:8080 http://10.0.0.1:8080": false,
		"http://[::1]:8080":                          false,
		"https://onsale.example":                     false,
	} {
		if got := onLoopback(strings.Fields(targets)); got != want {
			t.Errorf("onLoopback(%s) = %v, want %v", targets, got, want)
		}
	}
}

// --route MODULE=URL: what it accepts, what it refuses, and how parseArgs ties it to --metrics.
func TestParseRoutes(t *testing.T) {
	routes, err := parseRoutes([]string{"payment=http://127.0.0.1:8081/", " inventory = https://inv.example:9443", "payment=http://127.0.0.1:8082"})
	if err != nil {
		t.Fatal(err)
	}
	want := []Route{{"payment", "http://127.0.0.1:8081"}, {"inventory", "https://inv.example:9443"}, {"payment", "http://127.0.0.1:8082"}}
	if fmt.Sprint(routes) != fmt.Sprint(want) {
		t.Fatalf("parseRoutes = %v, want %v", routes, want)
	}
	for _, bad := range [][]string{
		{"payment"},                                       // no URL
		{"payment="},                                      // an empty URL
		{"=http://127.0.0.1:8081"},                        // no module
		{"orders=http://127.0.0.1:8081"},                  // not a module
		{"all=http://127.0.0.1:8081"},                     // not one module
		{"payment=127.0.0.1:8081"},                        // no scheme
		{"payment=ftp://127.0.0.1:8081"},                  // not HTTP
		{"payment=http://"},                               // no host
		{"payment=http://127.0.0.1:8081/v1/orders"},       // a path: the request's is appended
		{"payment=http://127.0.0.1:8081?x=1"},             // a query
		{"payment=http://u:p@127.0.0.1:8081"},             // credentials
		{"payment=http://127.0.0.1:%zz"},                  // not a URL
		{"payment=http://a:1", "payment=http://a:1/"},     // the same route twice
		{"inventory=http://a:1", "payment=http://a:1 :2"}, // a second bad one
	} {
		if got, err := parseRoutes(bad); err == nil {
			t.Errorf("parseRoutes(%q) = %v, want an error", bad, got)
		}
	}

	args := []string{"checkout", "--target", "http://127.0.0.1:8080", "--organizer", "o@x.io:password1", "--route", "payment=http://127.0.0.1:8081"}
	_, o, err := parseArgs(args, io.Discard, io.Discard)
	if err != nil || len(o.Routes) != 1 || o.Routes[0] != (Route{"payment", "http://127.0.0.1:8081"}) {
		t.Fatalf("parseArgs(%q) = %+v, %v", args, o, err)
	}
	if _, _, err := parseArgs(append(args, "--route", "nope=http://x"), io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "unknown module") {
		t.Errorf("a bad --route: %v, want an error naming the unknown module", err)
	}
	if _, _, err := parseArgs(append(args, "--metrics", "http://127.0.0.1:6060"), io.Discard, io.Discard); err == nil {
		t.Error("one --metrics for a target and a route was accepted")
	}
	if _, _, err := parseArgs(append(args, "--metrics", "http://127.0.0.1:6060", "--metrics", "http://127.0.0.1:6061"), io.Discard, io.Discard); err != nil {
		t.Errorf("--metrics for the target and the route: %v", err)
	}
}

// The paths of a routed module go to its processes in turn, whatever target a request names;
// the rest go to the targets.
func TestClientRoutesModules(t *testing.T) {
	for path, want := range map[string]string{
		"/v1/auth/login": "auth", "/v1/me": "auth", "/.well-known/jwks.json": "auth",
		"/v1/events": "inventory", "/v1/events/x/queue/me/events": "inventory", "/v1/holds/x?y=1": "inventory",
		"/v1/orders": "payment", "/v1/orders/x/events": "payment", "/v1/checkins": "payment", "/.well-known/ticket-keys.json": "payment",
		"/livez": "", "/metrics": "", "/v1/ordersx": "", "/v1/authx": "", "/provider/mode": "",
	} {
		if got := pathModule(path); got != want {
			t.Errorf("pathModule(%s) = %q, want %q", path, got, want)
		}
	}
	serve := func(name string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, name) }))
	}
	main, pay1, pay2 := serve("main"), serve("pay1"), serve("pay2")
	defer main.Close()
	defer pay1.Close()
	defer pay2.Close()
	c := NewClient([]string{main.URL}, []Route{{"payment", pay1.URL}, {"payment", pay2.URL}}, 4, nil, 5*time.Second, nil)
	defer c.Close()
	var got []string
	for _, r := range []Request{
		{Method: http.MethodPost, Path: "/v1/holds"},
		{Method: http.MethodPost, Path: "/v1/orders"},
		{Method: http.MethodGet, Path: "/v1/orders/x", Target: main.URL}, // a named target: still its module's process
		{Method: http.MethodGet, Path: "/metrics", Target: main.URL},
		{Method: http.MethodPost, Path: "/v1/orders"},
	} {
		resp := c.Do(context.Background(), r)
		if resp.Status != http.StatusOK {
			t.Fatalf("%s %s: %s", r.Method, r.Path, resp.Problem())
		}
		got = append(got, string(resp.Body))
	}
	if strings.Join(got, " ") != "main pay1 pay2 main pay1" {
		t.Errorf("answered by %v, want main pay1 pay2 main pay1", got)
	}
	if u := c.Target("", "/v1/orders/x/events"); u != pay2.URL {
		t.Errorf("the stream of an order goes to %s, want %s", u, pay2.URL)
	}
}

// A customer's requests all leave from one source address, customers are spread over all of
// them, and the tally counts the limited requests per address against the servers' defaults.
func TestClientSpreadsCustomersOverSources(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("only Linux routes all of 127.0.0.0/8 to loopback without setup")
	}
	var mu sync.Mutex
	seen := map[string]map[string]bool{} // the From header → source addresses
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		mu.Lock()
		if seen[r.Header.Get("X-From")] == nil {
			seen[r.Header.Get("X-From")] = map[string]bool{}
		}
		seen[r.Header.Get("X-From")][host] = true
		mu.Unlock()
		if r.URL.Path == "/v1/auth/login" {
			w.Header().Set("RateLimit-Policy", `"auth";q=300;w=60`)
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	sources, _, err := parseSources("127.0.0.2-127.0.0.11")
	if err != nil {
		t.Fatal(err)
	}
	tl := newTally()
	c := NewClient([]string{srv.URL}, nil, 8, sources, 5*time.Second, tl)
	defer c.Close()
	ctx := context.Background()
	start := time.Now()
	for round := range 3 {
		for from := 1; from <= 30; from++ {
			r := c.Do(ctx, Request{Method: http.MethodPost, Path: "/v1/holds", From: from, Header: map[string]string{"X-From": strconv.Itoa(from)}})
			if r.Status != http.StatusCreated {
				t.Fatalf("round %d, from %d: %s", round, from, r.Problem())
			}
		}
	}
	for range 700 { // one address far past the default burst of holds
		c.Do(ctx, Request{Method: http.MethodPost, Path: "/v1/holds", From: 31, Header: map[string]string{"X-From": "31"}})
	}
	elapsed := time.Since(start)
	c.Do(ctx, Request{Method: http.MethodPost, Path: "/v1/auth/login", From: 1, Header: map[string]string{"X-From": "1"}})
	all := map[string]bool{}
	for from := 1; from <= 31; from++ {
		addrs := seen[strconv.Itoa(from)]
		if len(addrs) != 1 {
			t.Errorf("customer %d sent from %v, want one address", from, addrs)
		}
		for a := range addrs {
			all[a] = true
			if want := sources[(from-1)%len(sources)].String(); a != want {
				t.Errorf("customer %d sent from %s, want %s", from, a, want)
			}
		}
	}
	if len(all) != len(sources) {
		t.Errorf("customers sent from %d addresses, want %d", len(all), len(sources))
	}
	figs := tl.figures()
	holds := figs[kindOf(http.MethodPost, "/v1/holds")]
	// Customer 31 shares its address with customers 1, 11 and 21: 9 + 700 holds, of which the
	// default bucket lets through its burst of 600 and 20/s: 109 refused, less the refills while
	// the requests were sent (a slow run, under -race on a busy machine, refills more).
	least := 109 - int64(20*elapsed.Seconds()) - 1
	if holds.Total != 790 || holds.MaxPerSrc != 709 || holds.Refused < least || holds.Refused > 109 {
		t.Errorf("holds tallied %+v, want 790 in all, 709 from the busiest address and %d to 109 refused at the defaults after %v", holds, least, elapsed)
	}
	if auth := figs[kindOf(http.MethodPost, "/v1/auth/login")]; auth.Total != 1 || auth.Refused != 0 {
		t.Errorf("logins tallied %+v, want 1 and none refused", auth)
	}
	if got := tl.limitedAnswers(); got["auth"] != 1 || len(got) != 1 {
		t.Errorf("429s by policy %v, want auth: 1", got)
	}
}

// ---- the real server ----

var (
	buildOnce sync.Once
	serverBin string
	buildErr  error
	binDir    string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// buildServer builds cmd/server once for the whole test binary.
func buildServer(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "onsale-load-test-")
		if buildErr != nil {
			return
		}
		serverBin = filepath.Join(binDir, "server")
		cmd := exec.Command(goTool(), "build", "-o", serverBin, "github.com/onsale-dev/onsale/cmd/server")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/server: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return serverBin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
}

// server is a running cmd/server.
type server struct {
	base     string // API
	provider string // the simulated provider's API on the debug listener
	metrics  string // the debug listener, where the server serves /metrics
	log      string
}

// startServer runs the binary with the smoke-test settings plus extra, and stops it (SIGTERM)
// when the test ends.
func startServer(t *testing.T, bin string, extra ...string) *server {
	t.Helper()
	dir := t.TempDir()
	addr, debug := freeAddr(t), freeAddr(t)
	env := append(os.Environ(),
		"ONSALE_HTTP_ADDR="+addr,
		"ONSALE_DATA_DIR="+filepath.Join(dir, "data"),
		"ONSALE_BOOTSTRAP_ORGANIZER=org@load.test:organizer password",
		"ONSALE_ARGON2_MEMORY_KIB=1024",
		"ONSALE_ARGON2_TIME=1",
		"ONSALE_DEBUG_ADDR="+debug,
		"ONSALE_SIMULATED_LATENCY=5ms",
		"ONSALE_MAX_HOLDS_PER_CUSTOMER=1000",    // live holds per customer, across ticket types
		"ONSALE_MAX_HOLDS_PER_TICKET_TYPE=1000", // and on one ticket type
		"ONSALE_PROVIDER_TIMEOUT=60s",
		"ONSALE_PAYMENT_ACK_WAIT=90s",
		"ONSALE_DRAIN_DELAY=0",
	)
	env = append(env, extra...)
	logPath := filepath.Join(dir, "server.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		logFile.Close()
	})
	s := &server{base: "http://" + addr, provider: "http://" + debug + "/provider", log: logPath}
	s.metrics = "http://" + debug
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.base + "/livez")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case <-exited:
			t.Fatalf("the server exited at start:\n%s", tail(logPath))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server never answered /livez:\n%s", tail(logPath))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tail(path string) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}

// smoke runs one scenario through the tool's own functions and checks that no invariant failed
// and the figures are sane.
func smoke(t *testing.T, s *server, args ...string) *Result {
	t.Helper()
	full := append(args, "--target", s.base, "--organizer", "org@load.test:organizer password", "--quiet")
	scenario, o, err := parseArgs(full, io.Discard, io.Discard)
	if err != nil {
		t.Fatalf("parse %q: %v", full, err)
	}
	o.Metrics = []string{s.metrics} // as --metrics would: with ONSALE_DEBUG_ADDR, /metrics is served there only
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := execute(ctx, scenario, o, &out, io.Discard)
	if err != nil {
		t.Fatalf("%s: %v\n%s\nserver log:\n%s", scenario, err, out.String(), tail(s.log))
	}
	if res.Failed(false) {
		t.Fatalf("%s: an invariant failed:\n%s\nserver log:\n%s", scenario, out.String(), tail(s.log))
	}
	if res.ThroughputRPS <= 0 || res.BaselineRPS <= 0 || res.Ratio <= 0 {
		t.Fatalf("%s: throughput %v, baseline %v, ratio %v: want all positive\n%s", scenario, res.ThroughputRPS, res.BaselineRPS, res.Ratio, out.String())
	}
	if !strings.Contains(out.String(), "result: PASS") {
		t.Fatalf("%s: the table has no PASS line:\n%s", scenario, out.String())
	}
	t.Logf("%s: %.0f/s (ratio %.3f to a %.0f/s baseline), p99 %.2f ms", scenario, res.ThroughputRPS, res.Ratio, res.BaselineRPS, res.P99MS)
	return res
}

// Every scenario at smoke size against an embedded server.
func TestScenariosEmbedded(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server; skipped with -short")
	}
	s := startServer(t, buildServer(t))
	short := []string{"--connections", "50", "--duration", "2s", "--baseline-duration", "1s", "--holds-per-customer", "1000"}
	dir := t.TempDir()

	t.Run("flash-sale", func(t *testing.T) {
		jsonFile, plotFile := filepath.Join(dir, "fs.json"), filepath.Join(dir, "fs.png")
		res := smoke(t, s, append([]string{"flash-sale", "--buyers", "300", "--tickets", "30", "--provider", s.provider,
			"--json", jsonFile, "--plot", plotFile}, short...)...)
		data, err := os.ReadFile(jsonFile)
		if err != nil {
			t.Fatal(err)
		}
		var j map[string]any
		if err := json.Unmarshal(data, &j); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"scenario", "buyers", "capacity", "sold", "oversold", "errors", "unanswered", "throughput_rps", "p99_ms",
			"baseline_rps", "ratio", "confirmed", "charges", "hold_p99_ms", "answered_within_s"} {
			if _, ok := j[k]; !ok {
				t.Errorf("the JSON has no %q", k)
			}
		}
		if j["sold"] != 30.0 || j["oversold"] != 0.0 || j["errors"] != 0.0 || j["unanswered"] != 0.0 || j["confirmed"] != 30.0 || j["charges"] != 30.0 {
			t.Errorf("flash-sale figures: sold %v oversold %v errors %v unanswered %v confirmed %v charges %v",
				j["sold"], j["oversold"], j["errors"], j["unanswered"], j["confirmed"], j["charges"])
		}
		if st, err := os.Stat(plotFile); err != nil || st.Size() < 1000 {
			t.Errorf("no plot: %v", err)
		}
		if res.Scenario != "flash-sale" {
			t.Errorf("scenario %q", res.Scenario)
		}
		// On loopback the buyers come from many addresses, and none of them sends more than the
		// servers' default per-address limits let through.
		if n := fieldOf(res, "source_addresses"); runtime.GOOS == "linux" && n != 253 {
			t.Errorf("source_addresses %v, want 253", n)
		}
		figs, _ := fieldOf(res, "per_source_address").(map[string]kindFigures)
		if len(figs) != 2 {
			t.Errorf("per_source_address %v, want the auth and hold requests", figs)
		}
		for kind, f := range figs {
			if f.Refused != 0 {
				t.Errorf("%s: %+v; the default limits would have refused some", kind, f)
			}
		}
	})
	t.Run("flash-sale-watch", func(t *testing.T) {
		// A slower provider, so that the winners' streams are open before their confirmation.
		ctx := context.Background()
		p := newProvider(s.provider)
		m, err := p.Mode(ctx)
		if err != nil {
			t.Fatal(err)
		}
		slow := maps.Clone(m)
		slow["latency_ms"] = 400
		if err := p.call(ctx, http.MethodPut, "/mode", slow, nil); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = p.call(ctx, http.MethodPut, "/mode", m, nil) }()
		res := smoke(t, s, append([]string{"flash-sale", "--buyers", "100", "--tickets", "20", "--watch", "--provider", s.provider}, short...)...)
		through, before := fieldOf(res, "confirmed_to_stream_count"), fieldOf(res, "confirmed_before_stream_open")
		if c := fieldOf(res, "confirmed"); c != int64(20) {
			t.Errorf("confirmed %v, want 20", c)
		}
		if n, b := through.(int64), before.(int64); n < 1 || n+b != 20 {
			t.Errorf("%v confirmations arrived on open streams and %v before the stream opened; want all 20, most on open streams", n, b)
		}
		p99 := fieldOf(res, "confirmed_to_stream_p99_ms")
		if p99 == nil {
			t.Error("no confirmed_to_stream_p99_ms")
		}
		t.Logf("%v confirmations on open streams (p99 %v ms), %v before the stream opened", through, p99, before)
	})
	t.Run("holds", func(t *testing.T) {
		smoke(t, s, append([]string{"holds", "--customers", "100"}, short...)...)
	})
	t.Run("browse", func(t *testing.T) {
		smoke(t, s, append([]string{"browse"}, short...)...)
	})
	t.Run("checkout", func(t *testing.T) {
		res := smoke(t, s, append([]string{"checkout", "--rate", "100", "--provider", s.provider}, short...)...)
		if c := fieldOf(res, "confirmed"); c != int64(200) {
			t.Errorf("confirmed %v, want 200", c)
		}
	})
	t.Run("confirm", func(t *testing.T) {
		smoke(t, s, append([]string{"confirm", "--orders", "300", "--provider", s.provider}, short...)...)
	})
	t.Run("login", func(t *testing.T) {
		smoke(t, s, append([]string{"login", "--customers", "30", "--rate", "50", "--light-workers", "10",
			"--argon2-memory-kib", "1024", "--argon2-time", "1", "--argon2-seconds", "1s"}, short...)...)
	})
	t.Run("waiting-room", func(t *testing.T) {
		res := smoke(t, s, append([]string{"waiting-room", "--customers", "400", "--tickets", "20", "--admission-rate", "6000",
			"--streams", "40"}, short...)...)
		if a, h := fieldOf(res, "admitted"), fieldOf(res, "held"); a != int64(400) || h != int64(20) {
			t.Errorf("admitted %v, held %v; want all 400 admitted and the 20 tickets held", a, h)
		}
		if u := fieldOf(res, "stream_updates"); u.(int64) < 40 {
			t.Errorf("stream updates %v, want at least one per stream", u)
		}
	})
	t.Run("streams", func(t *testing.T) {
		res := smoke(t, s, append([]string{"streams", "--streams", "200", "--hold-for", "3s", "--provider", s.provider}, short...)...)
		if d := fieldOf(res, "dropped"); d != int64(0) {
			t.Errorf("dropped %v", d)
		}
	})
	// Last: its holds count against the source addresses' per-address limits, which the
	// waiting-room scenario's probes from one address need whole.
	t.Run("refunds", func(t *testing.T) {
		res := smoke(t, s, append([]string{"refunds", "--orders", "100", "--rate", "25", "--provider", s.provider}, short...)...)
		once, twice, over := fieldOf(res, "refunded_once"), fieldOf(res, "refunded_twice"), fieldOf(res, "over_refunds")
		if once != 100 || twice != 0 || over != 0 {
			t.Errorf("refunds figures: once %v, twice %v, over %v", once, twice, over)
		}
	})
}

func fieldOf(r *Result, key string) any {
	for _, f := range r.fields {
		if f.key == key {
			return f.value
		}
	}
	return nil
}

// The flash sale at smoke size against real Redis, PostgreSQL and NATS, with the invariants
// also checked in the database.
func TestFlashSaleExternal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server; skipped with -short")
	}
	_, redisPrefix := testenv.Redis(t)
	dbURL := testenv.PostgresURL(t)
	natsPrefix := testenv.Unique("LOAD")
	testenv.NATS(t, natsPrefix)
	bin := buildServer(t)
	dir := t.TempDir()
	keyFiles := make([]string, 2)
	for i := range keyFiles {
		out, err := exec.Command(bin, "admin", "gen-keys").Output()
		if err != nil {
			t.Fatalf("server admin gen-keys: %v", err)
		}
		keyFiles[i] = filepath.Join(dir, fmt.Sprintf("keys%d.json", i))
		if err := os.WriteFile(keyFiles[i], out, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := startServer(t, bin,
		"ONSALE_REDIS_URL="+testenv.RedisURL(),
		"ONSALE_REDIS_PREFIX="+redisPrefix,
		"ONSALE_DATABASE_URL="+dbURL,
		"ONSALE_DB_MAX_CONNS=8",
		"ONSALE_NATS_URL="+testenv.NATSURL(),
		"ONSALE_NATS_PREFIX="+natsPrefix,
		"ONSALE_JWT_KEYS_FILE="+keyFiles[0],
		"ONSALE_TICKET_KEYS_FILE="+keyFiles[1],
	)
	res := smoke(t, s, "flash-sale", "--buyers", "300", "--tickets", "30", "--connections", "50", "--duration", "2s",
		"--baseline-duration", "1s", "--provider", s.provider, "--database-url", dbURL)
	if v := fieldOf(res, "db_sold"); v != 30 {
		t.Errorf("db_sold %v, want 30", v)
	}
}

// The checkout scenario through a split deployment, on real Redis, PostgreSQL and NATS: payment in
// a process of its own, auth and inventory in another, wired by their internal APIs, the tool
// sending payment's paths there with --route. A correctness smoke of the setup that
// docs/benchmarks.md measures ("The cost of the hop"): every order accepted and confirmed, and
// the servers' CPU counted over both processes.
func TestCheckoutSplit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server; skipped with -short")
	}
	_, redisPrefix := testenv.Redis(t)
	dbURL := testenv.PostgresURL(t)
	natsPrefix := testenv.Unique("LOAD")
	testenv.NATS(t, natsPrefix)
	bin := buildServer(t)
	dir := t.TempDir()
	file := func(name string, data []byte) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	keys := func(name string) string {
		t.Helper()
		out, err := exec.Command(bin, "admin", "gen-keys").Output()
		if err != nil {
			t.Fatalf("server admin gen-keys: %v", err)
		}
		return file(name, out)
	}
	secret := ""
	for range 8 { // 64 random hex digits: the servers want at least 32 characters
		secret += newRunID()
	}
	shared := []string{
		"ONSALE_REDIS_URL=" + testenv.RedisURL(),
		"ONSALE_REDIS_PREFIX=" + redisPrefix,
		"ONSALE_DATABASE_URL=" + dbURL,
		"ONSALE_DB_MAX_CONNS=8",
		"ONSALE_NATS_URL=" + testenv.NATSURL(),
		"ONSALE_NATS_PREFIX=" + natsPrefix,
		"ONSALE_INTERNAL_SECRET_FILE=" + file("internal-secret", []byte(secret+"\n")),
	}
	authInv := freeAddr(t)
	a := startServer(t, bin, append(shared, "ONSALE_MODULES=auth,inventory", "ONSALE_INTERNAL_ADDR="+authInv,
		"ONSALE_JWT_KEYS_FILE="+keys("jwt.json"))...)
	p := startServer(t, bin, append(shared, "ONSALE_MODULES=payment", "ONSALE_INTERNAL_ADDR="+freeAddr(t),
		"ONSALE_AUTH_URL=http://"+authInv, "ONSALE_INVENTORY_URL=http://"+authInv,
		"ONSALE_TICKET_KEYS_FILE="+keys("tickets.json"))...)

	args := []string{"checkout", "--target", a.base, "--route", "payment=" + p.base, "--provider", p.provider,
		"--organizer", "org@load.test:organizer password", "--quiet", "--rate", "100", "--duration", "2s",
		"--connections", "50", "--baseline-duration", "1s", "--holds-per-customer", "1000"}
	scenario, o, err := parseArgs(args, io.Discard, io.Discard)
	if err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	o.Metrics = []string{a.metrics, p.metrics} // as --metrics would, in --target then --route order
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := execute(ctx, scenario, o, &out, io.Discard)
	logs := fmt.Sprintf("auth,inventory log:\n%s\npayment log:\n%s", tail(a.log), tail(p.log))
	if err != nil {
		t.Fatalf("checkout: %v\n%s\n%s", err, out.String(), logs)
	}
	if res.Failed(false) {
		t.Fatalf("checkout: an invariant failed:\n%s\n%s", out.String(), logs)
	}
	if c, e := fieldOf(res, "confirmed"), fieldOf(res, "errors"); c != int64(200) || e != int64(0) {
		t.Errorf("confirmed %v, errors %v; want all 200 orders confirmed and no error\n%s", c, e, out.String())
	}
	if cpu, _ := fieldOf(res, "server_cpu_ms_per_order").(float64); cpu <= 0 {
		t.Errorf("server CPU per order %v, want a positive figure from both processes\n%s", fieldOf(res, "server_cpu_ms_per_order"), out.String())
	}
	// The orders went to the payment process: it confirmed them all, through inventory's
	// internal API on the other.
	scrape := func(s *server) metrics {
		t.Helper()
		resp, err := http.Get(s.metrics + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return metrics(data)
	}
	if v, _ := scrape(p).Sum("onsale_payment_orders_total", map[string]string{"status": "confirmed"}); v != 200 {
		t.Errorf("the payment process confirmed %v orders, want 200", v)
	}
	t.Logf("checkout split: %.0f orders/s, creation p99 %.2f ms, order to confirmed p99 %.2f ms, %.2f ms CPU per order",
		res.ThroughputRPS, fieldOf(res, "creation_p99_ms"), fieldOf(res, "order_to_confirmed_p99_ms"), fieldOf(res, "server_cpu_ms_per_order"))
}
