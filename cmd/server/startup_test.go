package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/onsale-dev/onsale/internal/platform/keyset"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

// These tests start the server the way an operator does (run, as main calls it, or the built
// binary) and look at what the operator sees: the exit code, the output, the HTTP answers.

// runResult is a server started with run in this process.
type runResult struct {
	out  *lockedBuffer // stdout and stderr together
	done chan int      // receives run's exit code
	stop context.CancelFunc
}

// startRun runs the server in this process with exactly env as its environment and waits until
// it logs that it started, or exits. stop (also called when the test ends) shuts it down, as
// SIGTERM would.
func startRun(t *testing.T, args []string, env map[string]string) *runResult {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &runResult{out: &lockedBuffer{}, done: make(chan int, 1), stop: cancel}
	go func() { r.done <- run(ctx, args, envList(env), strings.NewReader(""), r.out, r.out) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-r.done:
			r.done <- code
		case <-time.After(30 * time.Second):
			t.Errorf("the server did not stop within 30s:\n%s", r.out)
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(r.out.String(), "onsale started") {
		select {
		case code := <-r.done:
			r.done <- code
			return r
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server neither started nor exited within 60s:\n%s", r.out)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return r
}

// exitCode waits for run to return.
func (r *runResult) exitCode(t *testing.T) int {
	t.Helper()
	select {
	case code := <-r.done:
		r.done <- code
		return code
	case <-time.After(30 * time.Second):
		t.Fatalf("the server did not exit within 30s:\n%s", r.out)
		return -1
	}
}

// embeddedEnv is a development start on free ports, plus extra.
func embeddedEnv(t *testing.T, extra map[string]string) map[string]string {
	env := map[string]string{
		"ONSALE_HTTP_ADDR":         freeAddr(t),
		"ONSALE_DATA_DIR":          t.TempDir(),
		"ONSALE_DRAIN_DELAY":       "0s",
		"ONSALE_ARGON2_MEMORY_KIB": "1024",
		"ONSALE_ARGON2_TIME":       "1",
		"ONSALE_ACCESS_LOG":        "false",
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// productionEnv is a production start against the test services, with fresh key files, a fresh
// database and prefixes of its own, on a free port; extra is added.
func productionEnv(t *testing.T, extra map[string]string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"jwt.json", "tickets.json"} {
		data, err := keyset.Generate(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, redisPrefix := testenv.Redis(t)
	natsPrefix := testenv.Unique("P")
	testenv.NATS(t, natsPrefix) // deletes the streams when the test ends
	env := map[string]string{
		"ONSALE_ENV":              "production",
		"ONSALE_REDIS_URL":        testenv.RedisURL(),
		"ONSALE_REDIS_PREFIX":     redisPrefix,
		"ONSALE_DATABASE_URL":     testenv.PostgresURL(t),
		"ONSALE_DB_MAX_CONNS":     "4",
		"ONSALE_NATS_URL":         testenv.NATSURL(),
		"ONSALE_NATS_PREFIX":      natsPrefix,
		"ONSALE_JWT_KEYS_FILE":    filepath.Join(dir, "jwt.json"),
		"ONSALE_TICKET_KEYS_FILE": filepath.Join(dir, "tickets.json"),
	}
	for k, v := range embeddedEnv(t, extra) {
		env[k] = v
	}
	return env
}

// TestProductionRefusesSimulatedProvider: production without ONSALE_PROVIDER_URL does not start
// (it would confirm every order through the simulator, charging nobody) and says which setting
// is missing; ONSALE_ALLOW_SIMULATED_PROVIDER=true starts it, loudly, and /readyz says so while
// staying 200.
func TestProductionRefusesSimulatedProvider(t *testing.T) {
	t.Parallel()
	// Refused by validation, before any connection: the URLs need not answer.
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), nil, envList(map[string]string{
		"ONSALE_ENV": "production", "ONSALE_REDIS_URL": "redis://127.0.0.1:1/0", "ONSALE_DATABASE_URL": "postgres://u@127.0.0.1:1/x",
		"ONSALE_NATS_URL": "nats://127.0.0.1:1", "ONSALE_JWT_KEYS_FILE": "/k/jwt.json", "ONSALE_TICKET_KEYS_FILE": "/k/tickets.json",
	}), strings.NewReader(""), &stdout, &stderr)
	if code == 0 || !strings.Contains(stderr.String(), "ONSALE_PROVIDER_URL") || !strings.Contains(stderr.String(), "ONSALE_ALLOW_SIMULATED_PROVIDER") {
		t.Fatalf("production without a provider: exit %d, want non-zero naming ONSALE_PROVIDER_URL and the way out:\n%s%s", code, stdout.String(), stderr.String())
	}

	r := startRun(t, nil, productionEnv(t, map[string]string{"ONSALE_ALLOW_SIMULATED_PROVIDER": "true"}))
	if !strings.Contains(r.out.String(), "onsale started") {
		t.Fatalf("production with ONSALE_ALLOW_SIMULATED_PROVIDER=true did not start:\n%s", r.out)
	}
	var warned bool
	for _, line := range strings.Split(r.out.String(), "\n") {
		warned = warned || (strings.Contains(line, `"level":"WARN"`) && strings.Contains(strings.ToLower(line), "simulated"))
	}
	if !warned {
		t.Errorf("no warning about the simulated provider at start:\n%s", r.out)
	}
	addr := regexp.MustCompile(`"msg":"onsale started","addr":"([^"]+)"`).FindStringSubmatch(r.out.String())
	if addr == nil {
		t.Fatalf("no address in the start line:\n%s", r.out)
	}
	code, body := status("http://" + addr[1] + "/readyz")
	var rep struct {
		Status   string
		Warnings []string
	}
	_ = json.Unmarshal([]byte(body), &rep)
	if code != http.StatusOK || rep.Status != "ready" || len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "simulated provider") {
		t.Errorf("/readyz on the simulated provider = %d %s; want 200, ready, a warning about the simulated provider", code, body)
	}
	r.stop()
	if code := r.exitCode(t); code != 0 {
		t.Errorf("exit %d after the stop:\n%s", code, r.out)
	}
}

// TestPrintConfigHidesCredentials: every URL setting's credentials are masked, a token given
// as the user included, while the rest of each URL still shows.
func TestPrintConfigHidesCredentials(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--print-config"}, envList(map[string]string{
		"ONSALE_NATS_URL":      "nats://tok3n@127.0.0.1:1",
		"ONSALE_REDIS_URL":     "redis://u:R3disPw@127.0.0.1:1/0",
		"ONSALE_DATABASE_URL":  "postgres://u:PgPw99@127.0.0.1:1/x",
		"ONSALE_PROVIDER_URL":  "http://acct:Pr0vPw@127.0.0.1:1",
		"ONSALE_OTLP_ENDPOINT": "http://otel:OtlpPw@127.0.0.1:1",
	}), strings.NewReader(""), &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr.String())
	}
	out := stdout.String() + stderr.String()
	for _, secret := range []string{"tok3n", "R3disPw", "PgPw99", "Pr0vPw", "OtlpPw"} {
		if strings.Contains(out, secret) {
			t.Errorf("--print-config shows %s:\n%s", secret, out)
		}
	}
	for _, want := range []string{
		"ONSALE_NATS_URL=nats://****@127.0.0.1:1\n", "ONSALE_REDIS_URL=redis://u:****@127.0.0.1:1/0\n",
		"ONSALE_DATABASE_URL=postgres://u:****@127.0.0.1:1/x\n", "ONSALE_PROVIDER_URL=http://acct:****@127.0.0.1:1\n",
		"ONSALE_OTLP_ENDPOINT=http://otel:****@127.0.0.1:1\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("--print-config lacks %q:\n%s", want, out)
		}
	}
}

// TestFailedConnectHidesCredentials: a start that cannot reach a configured service exits
// non-zero, naming the service, and no credential of any URL appears in its whole output.
func TestFailedConnectHidesCredentials(t *testing.T) {
	t.Parallel()
	closed := freeAddr(t) // nothing listens there
	for _, tc := range []struct{ env, url, secret string }{
		{"ONSALE_NATS_URL", "nats://user:S3cretPw@" + closed, "S3cretPw"},
		{"ONSALE_NATS_URL", "nats://Tok3nOnly@" + closed, "Tok3nOnly"},
		{"ONSALE_REDIS_URL", "redis://u:R3disPw@" + closed + "/0", "R3disPw"},
		{"ONSALE_DATABASE_URL", "postgres://u:PgPw99@" + closed + "/x?sslmode=disable", "PgPw99"},
	} {
		t.Run(tc.env, func(t *testing.T) {
			t.Parallel()
			r := startRun(t, nil, embeddedEnv(t, map[string]string{tc.env: tc.url, "ONSALE_LOG_LEVEL": "debug"}))
			if code := r.exitCode(t); code == 0 {
				t.Fatalf("started against a closed port:\n%s", r.out)
			}
			out := r.out.String()
			if strings.Contains(out, tc.secret) {
				t.Fatalf("the output shows %s:\n%s", tc.secret, out)
			}
			if !strings.Contains(out, closed) {
				t.Errorf("the output does not say which server failed (%s):\n%s", closed, out)
			}
		})
	}
}

// TestMetricsOnInternalListener: with ONSALE_DEBUG_ADDR, /metrics and pprof are served there and
// the public port answers 404 for /metrics.
func TestMetricsOnInternalListener(t *testing.T) {
	t.Parallel()
	debugAddr := freeAddr(t)
	_, base := startApp(t, map[string]string{"ONSALE_DEBUG_ADDR": debugAddr})
	if code, body := status(base + "/metrics"); code != http.StatusNotFound {
		t.Errorf("GET /metrics on the public port = %d, want 404: %.200s", code, body)
	}
	code, body := status("http://" + debugAddr + "/metrics")
	if code != http.StatusOK || !strings.Contains(body, "# TYPE onsale_http_requests_total") {
		t.Errorf("GET /metrics on the internal listener = %d: %.200s", code, body)
	}
	if code, _ := status("http://" + debugAddr + "/debug/pprof/"); code != http.StatusOK {
		t.Errorf("GET /debug/pprof/ on the internal listener = %d", code)
	}
	if code, _ := status(base + "/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("GET /debug/pprof/ on the public port = %d, want 404", code)
	}

	// Without the internal listener (development), /metrics stays on the public port.
	_, base = startApp(t, nil)
	if code, body := status(base + "/metrics"); code != http.StatusOK || !strings.Contains(body, "# TYPE") {
		t.Errorf("GET /metrics without ONSALE_DEBUG_ADDR = %d: %.200s", code, body)
	}
}

// TestGOMAXPROCSLeftAlone runs the binary as a one-CPU container would (GOMAXPROCS=1) and reads
// the runtime's own figure from /metrics: the server must not raise it.
func TestGOMAXPROCSLeftAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server binary; skipped with -short")
	}
	t.Parallel()
	bin := buildServer(t)
	for _, procs := range []string{"1", "2"} {
		addr, debugAddr := freeAddr(t), freeAddr(t)
		logs := &lockedBuffer{}
		cmd := exec.Command(bin)
		cmd.Env = append(childEnv("ONSALE_HTTP_ADDR="+addr, "ONSALE_DEBUG_ADDR="+debugAddr, "ONSALE_DATA_DIR="+t.TempDir(),
			"ONSALE_DRAIN_DELAY=0s"), "GOMAXPROCS="+procs)
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var metrics string
		testenv.Eventually(t, 60*time.Second, func() bool {
			code, body := status("http://" + debugAddr + "/metrics")
			metrics = body
			return code == http.StatusOK
		}, "no /metrics on the internal listener; output:\n%s", logs)
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		m := regexp.MustCompile(`(?m)^go_sched_gomaxprocs_threads (\d+)$`).FindStringSubmatch(metrics)
		if m == nil {
			t.Fatalf("/metrics has no go_sched_gomaxprocs_threads:\n%.500s", metrics)
		}
		if m[1] != procs {
			t.Errorf("started with GOMAXPROCS=%s, the server runs with GOMAXPROCS %s", procs, m[1])
		}
	}
}

// TestHelp: --help and -h print the usage to standard output and exit 0: the flags and every
// admin command, one line each.
func TestHelp(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"--help", "-h", "-help"} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{arg}, nil, strings.NewReader(""), &stdout, &stderr); code != 0 {
			t.Fatalf("%s: exit %d\n%s", arg, code, stderr.String())
		}
		out := stdout.String()
		if stderr.Len() != 0 {
			t.Errorf("%s wrote to standard error:\n%s", arg, stderr.String())
		}
		for _, want := range []string{"-config", "-print-config", "-version"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s does not list the flag %s:\n%s", arg, want, out)
			}
		}
		for _, c := range adminCommands() {
			if !regexp.MustCompile(`(?m)^\s+admin ` + c.name + `\s+\S`).MatchString(out) {
				t.Errorf("%s does not list admin %s with a line saying what it does:\n%s", arg, c.name, out)
			}
		}
	}
	for _, name := range []string{"create-user", "gen-keys", "simulate-provider"} {
		if !strings.Contains(adminUsage(), "server admin "+name) {
			t.Errorf("admin usage lacks %s", name)
		}
	}
	// A mistake prints the usage to standard error and exits 2.
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--no-such-flag"}, nil, strings.NewReader(""), &stdout, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), "-print-config") || stdout.Len() != 0 {
		t.Errorf("unknown flag: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	// server admin --help too.
	stdout.Reset()
	if code := run(context.Background(), []string{"admin", "--help"}, nil, strings.NewReader(""), &stdout, &stderr); code != 0 ||
		!strings.Contains(stdout.String(), "server admin gen-keys") {
		t.Errorf("admin --help: exit %d:\n%s", code, stdout.String())
	}
}

// TestVersion: --version prints the version and exits 0.
func TestVersion(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--version"}, nil, strings.NewReader(""), &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "onsale "+version) {
		t.Errorf("--version = %q", stdout.String())
	}
}

func TestDescribeBuild(t *testing.T) {
	t.Parallel()
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "3f2a9c1e0b7d5a4c3b2a19f8e7d6c5b4a3928170"}, {Key: "vcs.modified", Value: "true"},
	}}
	if got, want := describeBuild("1.4.0", bi), "1.4.0 (commit 3f2a9c1e0b7d-dirty, go1.26.8)"; got != want {
		t.Errorf("describeBuild = %q, want %q", got, want)
	}
	bi.Settings[2].Value = "false"
	bi.Main.Version = "v1.5.0"
	if got, want := describeBuild("dev", bi), "v1.5.0 (commit 3f2a9c1e0b7d, go1.26.8)"; got != want {
		t.Errorf("describeBuild = %q, want %q", got, want)
	}
	if got := describeBuild("dev", &debug.BuildInfo{}); got != "dev" {
		t.Errorf("describeBuild without build info = %q", got)
	}
}

// TestVersionOfBuiltBinary builds the binary as a release would (-ldflags -X main.version) and
// checks --version shows that version and the commit recorded in the binary.
func TestVersionOfBuiltBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the server binary; skipped with -short")
	}
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "server")
	if out, err := exec.Command("go", "build", "-ldflags", "-X main.version=9.8.7-test", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatalf("--version: %v", err)
	}
	if !strings.HasPrefix(string(out), "onsale 9.8.7-test") {
		t.Errorf("--version = %q, want the -X main.version", out)
	}
	info, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`vcs\.revision=([0-9a-f]{12})`).FindSubmatch(info); m != nil {
		if !bytes.Contains(out, m[1]) {
			t.Errorf("--version = %q does not show the commit %s", out, m[1])
		}
	} else {
		t.Logf("the build records no commit (no VCS information): %q", out)
	}
}

// TestUnknownSettings: a misspelt setting is reported with the name it was probably meant to
// be, on every start; production refuses to start with it. The test suites' ONSALE_TEST_* are
// not settings and are not reported.
func TestUnknownSettings(t *testing.T) {
	t.Parallel()
	const want = "unknown setting ONSALE_HOLDTTL; did you mean ONSALE_HOLD_TTL?"
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--print-config"},
		envList(map[string]string{"ONSALE_HOLDTTL": "5s", "ONSALE_TEST_REDIS_URL": "redis://x"}), strings.NewReader(""), &stdout, &stderr)
	if code != 0 || !strings.Contains(stderr.String(), want) || strings.Contains(stdout.String(), "HOLDTTL") {
		t.Errorf("--print-config with ONSALE_HOLDTTL: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	if strings.Contains(stderr.String(), "ONSALE_TEST_") {
		t.Errorf("ONSALE_TEST_* reported as a setting:\n%s", stderr.String())
	}

	// A development start runs, with the warning in its log.
	r := startRun(t, nil, embeddedEnv(t, map[string]string{"ONSALE_HOLDTTL": "5s"}))
	if !strings.Contains(r.out.String(), "onsale started") || !strings.Contains(r.out.String(), want) {
		t.Errorf("development start with ONSALE_HOLDTTL: want it started, with %q in its log:\n%s", want, r.out)
	}

	// Production stops, with the same message.
	stdout.Reset()
	stderr.Reset()
	code = run(context.Background(), nil, envList(map[string]string{
		"ONSALE_ENV": "production", "ONSALE_REDIS_URL": "redis://127.0.0.1:1/0", "ONSALE_DATABASE_URL": "postgres://u@127.0.0.1:1/x",
		"ONSALE_NATS_URL": "nats://127.0.0.1:1", "ONSALE_JWT_KEYS_FILE": "/k/jwt.json", "ONSALE_TICKET_KEYS_FILE": "/k/tickets.json",
		"ONSALE_PROVIDER_URL": "http://127.0.0.1:1", "ONSALE_HOLDTTL": "5s",
	}), strings.NewReader(""), &stdout, &stderr)
	if code == 0 || !strings.Contains(stderr.String(), want) {
		t.Errorf("production with ONSALE_HOLDTTL: exit %d, want non-zero with %q:\n%s%s", code, want, stdout.String(), stderr.String())
	}
	// Without the typo the same production settings pass validation (and then fail to connect).
	if _, err := loadConfig(envMap(map[string]string{
		"ONSALE_ENV": "production", "ONSALE_REDIS_URL": "redis://127.0.0.1:1/0", "ONSALE_DATABASE_URL": "postgres://u@127.0.0.1:1/x",
		"ONSALE_NATS_URL": "nats://127.0.0.1:1", "ONSALE_JWT_KEYS_FILE": "/k/jwt.json", "ONSALE_TICKET_KEYS_FILE": "/k/tickets.json",
		"ONSALE_PROVIDER_URL": "http://127.0.0.1:1",
	}), "", ""); err != nil {
		t.Errorf("the production settings themselves are refused: %v", err)
	}
}

// TestUnknownSettingsSkipsKubernetesServiceLinks: the variables Kubernetes injects for a
// Service named onsale are not typos.
func TestUnknownSettingsSkipsKubernetesServiceLinks(t *testing.T) {
	t.Parallel()
	got := unknownSettings([]string{"ONSALE_SERVICE_HOST=10.0.0.7", "ONSALE_SERVICE_PORT=80", "ONSALE_SERVICE_PORT_HTTP=80",
		"ONSALE_PORT=tcp://10.0.0.7:80", "ONSALE_PORT_80_TCP_ADDR=10.0.0.7", "ONSALE_ADMIN_PASSWORD=x", "ONSALE_HTTP_ADR=:80"})
	if len(got) != 1 || got[0].String() != "unknown setting ONSALE_HTTP_ADR; did you mean ONSALE_HTTP_ADDR?" {
		t.Errorf("unknownSettings = %v", got)
	}
}

// TestModulesOnTheCommandLine: --list-modules says where each module runs with the settings
// given, --modules chooses them, and a module without what it depends on is refused at start,
// naming the setting that would fix it.
func TestModulesOnTheCommandLine(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--list-modules"}, nil, strings.NewReader(""), &stdout, &stderr); code != 0 {
		t.Fatalf("--list-modules exited %d: %s", code, stderr.String())
	}
	for _, want := range []string{"auth", "inventory", "payment", "local"} {
		if !strings.Contains(stdout.String(), want) {
			t.Fatalf("--list-modules does not say %q:\n%s", want, stdout.String())
		}
	}
	stdout.Reset()
	env := envList(map[string]string{"ONSALE_INVENTORY_URL": "http://inventory.internal:9090", "ONSALE_AUTH_URL": "http://auth.internal:9090",
		"ONSALE_INTERNAL_SECRET_FILE": "/run/secrets/internal"})
	if code := run(context.Background(), []string{"--modules=payment", "--list-modules"}, env, strings.NewReader(""), &stdout, &stderr); code != 0 {
		t.Fatalf("--modules=payment --list-modules exited %d: %s", code, stderr.String())
	}
	lines := stdout.String()
	if !regexp.MustCompile(`(?m)^payment .* local$`).MatchString(lines) || !regexp.MustCompile(`(?m)^inventory .* remote http://inventory.internal:9090$`).MatchString(lines) {
		t.Fatalf("--modules=payment --list-modules:\n%s", lines)
	}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--modules=payment"}, nil, "ONSALE_INVENTORY_URL"},
		{[]string{"--modules=inventory,payments"}, nil, `unknown module "payments"`},
		{[]string{"--modules=inventory"}, map[string]string{"ONSALE_AUTH_URL": "http://auth:9090"}, "ONSALE_INTERNAL_SECRET_FILE"},
		{[]string{"--modules=inventory"}, map[string]string{"ONSALE_AUTH_URL": "auth:9090", "ONSALE_INTERNAL_SECRET_FILE": "/s"}, "ONSALE_AUTH_URL"},
	} {
		stderr.Reset()
		if code := run(context.Background(), tc.args, envList(tc.env), strings.NewReader(""), &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v %v: exit %d, want 2 with %q in:\n%s", tc.args, tc.env, code, tc.want, stderr.String())
		}
	}
}
