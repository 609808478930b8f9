// Package system holds onsale's system tests: each builds the server binary once, starts its own
// replicas on spare ports against the real Redis, PostgreSQL and NATS, puts a real load balancer
// (nginx) in front, drives a whole scenario through it — a flash sale, a replica killed, a rolling
// restart, Redis, NATS, the payment provider or PostgreSQL failing — and ends by checking the
// invariants in PostgreSQL and in the payment provider's ledger.
//
// The helpers live in this package's non-test files: cluster.go (processes: replicas, nginx, the
// simulated provider, private redis-server and nats-server, a cuttable TCP proxy, the
// readiness-following proxy), client.go (an
// HTTP client for customers and organizers that records every answer) and invariants.go (the
// end-of-test checks).
package system

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/onsale-dev/onsale/internal/platform/logging"
	"github.com/onsale-dev/onsale/internal/platform/natsclient"
	"github.com/onsale-dev/onsale/internal/platform/redisclient"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

// ---- the binary ----

var (
	binMu    sync.Mutex
	binPath  string
	binErr   error
	binBuilt bool
	binDir   string // where Binary builds the server on first use (BuildWhenNeeded)
)

// BuildServer builds cmd/server into dir once per package run (without the race detector:
// replicas must be fast); tests get the result from Binary.
func BuildServer(dir string) (string, error) {
	binMu.Lock()
	defer binMu.Unlock()
	return buildLocked(dir)
}

// BuildWhenNeeded makes the first Binary call build the server into dir, so that a run whose
// selected tests start no server (go test -run picking none of them) does not pay for a build.
func BuildWhenNeeded(dir string) {
	binMu.Lock()
	defer binMu.Unlock()
	binDir = dir
}

func buildLocked(dir string) (string, error) {
	if binBuilt {
		return binPath, binErr
	}
	binBuilt = true
	root, err := moduleRoot()
	if err != nil {
		binErr = err
		return "", err
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		if goBin, err = exec.LookPath("go"); err != nil {
			binErr = fmt.Errorf("no go command to build the server: %w", err)
			return "", binErr
		}
	}
	out := filepath.Join(dir, "onsale")
	cmd := exec.Command(goBin, "build", "-o", out, "./cmd/server")
	cmd.Dir = root
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	start := time.Now()
	if err := cmd.Run(); err != nil {
		binErr = fmt.Errorf("go build ./cmd/server: %v\n%s", err, buf.String())
		return "", binErr
	}
	fmt.Fprintf(os.Stderr, "system tests: built %s in %s\n", out, time.Since(start).Round(time.Millisecond))
	binPath = out
	return out, nil
}

// Binary returns the server binary (building it first after BuildWhenNeeded), failing the test
// if the build failed.
func Binary(t testing.TB) string {
	t.Helper()
	binMu.Lock()
	defer binMu.Unlock()
	if !binBuilt {
		if binDir == "" {
			t.Fatal("the server binary was not built: TestMain must call BuildServer or BuildWhenNeeded")
		}
		_, _ = buildLocked(binDir)
	}
	if binErr != nil {
		t.Fatalf("building the server failed: %v", binErr)
	}
	return binPath
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// ---- services and tools ----

// absent skips the test when a service or tool is missing, or fails it under
// ONSALE_TEST_REQUIRE_SERVICES=1 (testenv's convention).
func absent(t testing.TB, what string, err error) {
	t.Helper()
	if testenv.RequireServices() {
		t.Fatalf("%s is required (ONSALE_TEST_REQUIRE_SERVICES=1) but unavailable: %v", what, err)
	}
	t.Skipf("%s unavailable, skipping (set ONSALE_TEST_REQUIRE_SERVICES=1 to fail instead): %v", what, err)
}

// requireReachable dials the server of rawURL, or each server of a comma list of them (a NATS
// cluster's; an item without a scheme takes the first item's).
func requireReachable(t testing.TB, what, rawURL, defPort string) {
	t.Helper()
	if redisclient.IsCluster(rawURL) {
		// A Redis Cluster's seed list: the first seed stands for it.
		opt, err := redisclient.ParseURL(rawURL)
		if err != nil {
			t.Fatalf("%s URL: %v", what, err)
		}
		rawURL = "redis://" + opt.InitAddress[0]
	}
	items := strings.Split(rawURL, ",")
	scheme, _, _ := strings.Cut(items[0], "://")
	for _, item := range items {
		if !strings.Contains(item, "://") {
			item = scheme + "://" + item
		}
		requireReachableOne(t, what, strings.TrimSpace(item), defPort)
	}
}

func requireReachableOne(t testing.TB, what, rawURL, defPort string) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("%s URL %q: %v", what, rawURL, err)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), defPort)
	}
	conn, err := net.DialTimeout("tcp", host, time.Second)
	if err != nil {
		absent(t, what, err)
		return
	}
	_ = conn.Close()
}

func requireTool(t testing.TB, name string, candidates ...string) string {
	t.Helper()
	for _, c := range candidates {
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			return c
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		absent(t, name, fmt.Errorf("%s is not installed (apt-get install -y %s): %w", name, name, err))
	}
	return p
}

func waitPort(addr string, timeout time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return nil
		}
		select {
		case <-exited:
			return errors.New("the process exited")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening after %s: %w", addr, timeout, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// ---- processes ----

// Proc is a child process whose output goes to a log file. It is started in its own process
// group, dies with the test process (Pdeathsig), and can be started again after it stopped.
type Proc struct {
	Name    string
	Path    string
	Args    []string
	Env     []string
	LogPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
	starts int
	// stopped is set when the test signals or kills the process, so an exit it did not cause
	// can be told apart.
	stopped bool
}

// Start starts the process (again).
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("%s is already running", p.Name)
		}
	}
	f, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	p.starts++
	p.stopped = false
	fmt.Fprintf(f, "=== %s start #%d at %s: %s %s\n", p.Name, p.starts, time.Now().Format(time.RFC3339Nano), p.Path, strings.Join(p.Args, " "))
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Env = p.Env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.err = cmd, done, nil
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(f, "=== %s exited at %s: %v\n", p.Name, time.Now().Format(time.RFC3339Nano), describeExit(err))
		f.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

func describeExit(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// Done is closed when the current run ends.
func (p *Proc) Done() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return p.done
}

// Running tells whether the process runs now.
func (p *Proc) Running() bool {
	select {
	case <-p.Done():
		return false
	default:
		return true
	}
}

// Pid is the current run's process id.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Signal sends sig to the process (not its group).
func (p *Proc) Signal(sig syscall.Signal) error {
	if !p.Running() {
		return fmt.Errorf("%s is not running", p.Name)
	}
	p.mu.Lock()
	if sig != syscall.SIGHUP {
		p.stopped = true
	}
	p.mu.Unlock()
	return syscall.Kill(p.Pid(), sig)
}

// ExitedByItself tells whether the process ended without the test stopping it.
func (p *Proc) ExitedByItself() bool {
	p.mu.Lock()
	stopped := p.stopped
	p.mu.Unlock()
	return !p.Running() && !stopped
}

// Wait waits up to timeout for the current run to end and returns its exit code (-1 when killed
// by a signal).
func (p *Proc) Wait(timeout time.Duration) (int, error) {
	select {
	case <-p.Done():
	case <-time.After(timeout):
		return 0, fmt.Errorf("%s still running after %s", p.Name, timeout)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		return 0, nil
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode(), nil
	}
	return -1, p.err
}

// Kill sends SIGKILL to the process group and waits for the process to end.
func (p *Proc) Kill() {
	if !p.Running() {
		return
	}
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
	<-p.Done()
}

// Stop asks the process to stop with sig, and kills it if it has not within timeout.
func (p *Proc) Stop(sig syscall.Signal, timeout time.Duration) {
	if !p.Running() {
		return
	}
	_ = p.Signal(sig)
	select {
	case <-p.Done():
	case <-time.After(timeout):
		p.Kill()
	}
}

// Tail returns the last n lines of the log.
func (p *Proc) Tail(n int) string { return tailFile(p.LogPath, n) }

func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d earlier lines in %s)", len(lines)-n, path)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// grepFile returns the lines of a file containing every one of the words.
func grepFile(path string, words ...string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
lines:
	for sc.Scan() {
		for _, w := range words {
			if !strings.Contains(sc.Text(), w) {
				continue lines
			}
		}
		out = append(out, sc.Text())
	}
	return out
}

// baseEnv is the test process's environment without any ONSALE_ setting, so that nothing from
// the outside leaks into the replicas.
func baseEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ONSALE_") {
			out = append(out, kv)
		}
	}
	return out
}

func envList(m map[string]string) []string {
	out := baseEnv()
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

// ---- the simulated payment provider ----

// Provider is one `onsale admin simulate-provider` process: every replica of a test charges
// through it, so the test reads one ledger.
type Provider struct {
	*Proc
	URL string
}

// StartProvider starts the provider on a spare port with the given latency per call.
func StartProvider(t testing.TB, dir string, latency time.Duration) *Provider {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	p := &Provider{
		Proc: &Proc{
			Name: "provider", Path: Binary(t), Args: []string{"admin", "simulate-provider", "--addr", addr},
			Env:     envList(map[string]string{"ONSALE_SIMULATED_LATENCY": latency.String(), "ONSALE_LOG_LEVEL": "warn", "ONSALE_DATA_DIR": filepath.Join(dir, "provider")}),
			LogPath: filepath.Join(dir, "provider.log"),
		},
		URL: "http://" + addr,
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	if err := waitPort(addr, 15*time.Second, p.Done()); err != nil {
		t.Fatalf("payment provider did not start: %v\n%s", err, p.Tail(30))
	}
	return p
}

var providerClient = &http.Client{Timeout: 10 * time.Second}

// ProviderLedger is what the simulated provider's GET /ledger answers: everything it did. The
// system tests read the provider over HTTP as any client would, so they keep their own copy of
// its wire format.
type ProviderLedger struct {
	Charges       int             `json:"charges"`      // keys charged (money taken), refunded or not
	Declines      int             `json:"declines"`     // keys declined
	Refunds       int             `json:"refunds"`      // refunds made, one per refund key
	OverRefunds   int             `json:"over_refunds"` // refunds refused as more than was charged
	ChargedCents  int64           `json:"charged_cents"`
	RefundedCents int64           `json:"refunded_cents"`
	Calls         int             `json:"calls"` // charge and refund calls, failed ones included
	Entries       []ProviderEntry `json:"entries,omitempty"`
}

// ProviderEntry is one charge key in the ledger.
type ProviderEntry struct {
	Key         string `json:"key"`
	ChargeID    string `json:"charge_id,omitempty"`
	AmountCents int64  `json:"amount_cents"`
	Currency    string `json:"currency"`
	Declined    bool   `json:"declined"`
	Refunded    bool   `json:"refunded"`
	ChargeCalls int    `json:"charge_calls"` // how many times the key was presented
	// RefundedCents is what was given back, by Refunds refunds.
	RefundedCents int64 `json:"refunded_cents"`
	Refunds       int   `json:"refunds"`
}

// ProviderMode is the simulated provider's behaviour (GET and PUT /mode).
type ProviderMode struct {
	LatencyMS   int64   `json:"latency_ms"`
	SlowMS      int64   `json:"slow_ms"`
	DeclineRate float64 `json:"decline_rate"`
	ErrorRate   float64 `json:"error_rate"`
	Outage      bool    `json:"outage"`
	Paused      bool    `json:"paused"`
}

// Ledger reads the provider's ledger with one entry per charge key.
func (p *Provider) Ledger(t testing.TB) ProviderLedger {
	t.Helper()
	var l ProviderLedger
	resp, err := providerClient.Get(p.URL + "/ledger?entries=1")
	if err != nil {
		t.Fatalf("read the provider ledger: %v", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		t.Fatalf("decode the provider ledger: %v", err)
	}
	return l
}

// Mode reads the provider's behaviour.
func (p *Provider) Mode(t testing.TB) ProviderMode {
	t.Helper()
	var m ProviderMode
	resp, err := providerClient.Get(p.URL + "/mode")
	if err != nil {
		t.Fatalf("read the provider mode: %v", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("decode the provider mode: %v", err)
	}
	return m
}

// SetMode changes the provider's behaviour (PUT /mode).
func (p *Provider) SetMode(t testing.TB, m ProviderMode) {
	t.Helper()
	body, _ := json.Marshal(m)
	req, _ := http.NewRequest(http.MethodPut, p.URL+"/mode", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := providerClient.Do(req)
	if err != nil {
		t.Fatalf("set the provider mode: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("set the provider mode: %s %s", resp.Status, b)
	}
	t.Logf("provider mode now %+v", m)
}

// ---- replicas ----

// Replica is one onsale server process.
type Replica struct {
	*Proc
	Index int
	Addr  string // host:port
	URL   string
	// Modules is what the process runs ("all", or a comma list); InternalAddr its internal API.
	Modules      string
	InternalAddr string
}

// Serves tells whether the process runs the module.
func (r *Replica) Serves(module string) bool {
	return r.Modules == "all" || slices.Contains(strings.Split(r.Modules, ","), module)
}

// WaitReady waits until /readyz answers 200, failing fast if the process exits.
func (r *Replica) WaitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: time.Second}
	last := ""
	for {
		resp, err := c.Get(r.URL + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("%s %s", resp.Status, b)
		} else {
			last = err.Error()
		}
		if !r.Running() {
			code, _ := r.Wait(0)
			t.Fatalf("%s exited (code %d) before it was ready:\n%s", r.Name, code, r.Tail(40))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %s (last answer: %s):\n%s", r.Name, timeout, last, r.Tail(40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Ready tells whether /readyz answers 200 now.
func (r *Replica) Ready() bool {
	c := &http.Client{Timeout: 500 * time.Millisecond}
	resp, err := c.Get(r.URL + "/readyz")
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Metric returns the values of a Prometheus metric's series on the replica's /metrics, keyed by
// their label text.
func (r *Replica) Metric(name string) (map[string]float64, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(r.URL + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		labels := ""
		if strings.HasPrefix(rest, "{") {
			end := strings.LastIndex(rest, "}")
			if end < 0 {
				continue
			}
			labels, rest = rest[1:end], rest[end+1:]
		} else if !strings.HasPrefix(rest, " ") {
			continue // another metric whose name starts with this one
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err == nil {
			out[labels] = v
		}
	}
	return out, sc.Err()
}

// MetricSum adds up every series of a metric (0 when absent).
func (r *Replica) MetricSum(name string) float64 {
	m, err := r.Metric(name)
	if err != nil {
		return -1
	}
	var sum float64
	for _, v := range m {
		sum += v
	}
	return sum
}

// ---- the cluster ----

// Options shape a test's cluster.
type Options struct {
	Replicas int
	// RedisURL and NATSURL override the shared services (a test's own redis-server or
	// nats-server).
	RedisURL string
	NATSURL  string
	// PostgresProxy routes the replicas' database connections through a TCP proxy the test
	// can cut (Cluster.PGProxy).
	PostgresProxy bool
	// ProviderLatency is the simulated provider's time per call (default 50ms).
	ProviderLatency time.Duration
	// Env adds or overrides replica settings.
	Env map[string]string
	// ReadinessProxy puts a ReadyProxy in front instead of nginx: a test that needs replicas
	// taken out of rotation exactly when their readiness fails.
	ReadinessProxy bool
	// Topology splits the modules over processes: each tier is Count processes running Modules
	// (a comma list). Empty: Replicas processes running all modules. Split, nginx routes each
	// path to the processes of the module that serves it, and balances each module's internal API
	// for the processes that call it.
	Topology []Tier
	// PgBouncer puts the test PgBouncer (transaction pooling) between the replicas and
	// PostgreSQL; ONSALE_TEST_DATABASE_URL naming one does the same for every test.
	PgBouncer bool
	// InventoryProxy puts a cuttable TCP proxy (Cluster.InvProxy) between the processes that call
	// inventory and inventory's internal API.
	InventoryProxy bool
}

// Tier is Count processes running the same modules.
type Tier struct {
	Modules string
	Count   int
}

// Cluster is a test's deployment: replicas, the provider, nginx in front.
type Cluster struct {
	t   testing.TB
	Dir string

	DatabaseURL string // the test database, directly (for the invariant checks)
	RedisURL    string
	NATSURL     string
	RedisPrefix string
	NATSPrefix  string

	Provider *Provider
	Replicas []*Replica
	LB       Balancer
	PGProxy  *TCPProxy
	InvProxy *TCPProxy
	DB       *pgxpool.Pool

	// InternalSecret is the deployment's internal API secret; ModuleURLs where each module's
	// internal API is for the processes that call it (split topologies only).
	InternalSecret string
	ModuleURLs     map[string]string

	OrganizerEmail, OrganizerPassword string

	replicaEnv map[string]string
}

// NewCluster starts a test's deployment and waits until every replica is ready and nginx
// answers. Everything is stopped when the test ends; on failure the tail of every log is printed.
func NewCluster(t *testing.T, o Options) *Cluster {
	t.Helper()
	bin := Binary(t)
	nginxBin := ""
	if !o.ReadinessProxy {
		nginxBin = requireTool(t, "nginx", "/usr/sbin/nginx")
	}
	if o.Replicas == 0 {
		o.Replicas = 3
	}
	if len(o.Topology) == 0 {
		o.Topology = []Tier{{Modules: "all", Count: o.Replicas}}
	}
	split := o.Topology[0].Modules != "all"
	if o.ProviderLatency == 0 {
		o.ProviderLatency = 50 * time.Millisecond
	}
	c := &Cluster{t: t, Dir: t.TempDir(), RedisURL: o.RedisURL, NATSURL: o.NATSURL,
		OrganizerEmail: "organizer@onsale.test", OrganizerPassword: "organizer-password"}
	sharedRedis, sharedNATS := c.RedisURL == "", c.NATSURL == ""
	if sharedRedis {
		c.RedisURL = testenv.RedisURL()
	}
	if sharedNATS {
		c.NATSURL = testenv.NATSURL()
	}
	requireReachable(t, "Redis", c.RedisURL, "6379")
	requireReachable(t, "NATS", c.NATSURL, "4222")
	// The replicas' database URL, and the same database directly (the invariant checks, and the
	// replicas' migrations when the first is a PgBouncer's); skips or fails when PostgreSQL is absent.
	pooledBase := testenv.DatabaseURL()
	if o.PgBouncer {
		pooledBase = testenv.PgBouncerURL()
		requireReachable(t, "PgBouncer (.ci/pgbouncer.sh)", pooledBase, "6432")
	}
	pooledDB, directDB := testenv.DatabaseURLs(t, pooledBase)
	c.DatabaseURL = directDB
	c.RedisPrefix = testenv.Unique("sys") + ":"
	c.NATSPrefix = testenv.Unique("SYS")

	if sharedRedis {
		prefix := c.RedisPrefix
		t.Cleanup(func() {
			rc, err := redisclient.Open(c.RedisURL)
			if err == nil {
				testenv.DeleteRedisKeys(rc, prefix+"*")
				rc.Close()
			}
		})
	}
	if sharedNATS {
		prefix := c.NATSPrefix
		t.Cleanup(func() {
			nc, err := natsclient.Connect(c.NATSURL, "onsale-system-test-cleanup", logging.Discard())
			if err == nil {
				testenv.DeleteStreams(nc.JS, prefix)
				_ = nc.Close(context.Background())
			}
		})
	}

	// One key set each for access tokens and ticket codes, shared by every replica.
	jwtKeys := filepath.Join(c.Dir, "jwt-keys.json")
	ticketKeys := filepath.Join(c.Dir, "ticket-keys.json")
	for _, f := range []string{jwtKeys, ticketKeys} {
		out, err := exec.Command(bin, "admin", "gen-keys").Output()
		if err != nil {
			t.Fatalf("onsale admin gen-keys: %v", err)
		}
		if err := os.WriteFile(f, out, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	c.Provider = StartProvider(t, c.Dir, o.ProviderLatency)

	replicaDB := pooledDB
	if o.PostgresProxy {
		u, err := url.Parse(replicaDB)
		if err != nil {
			t.Fatal(err)
		}
		c.PGProxy = StartTCPProxy(t, u.Host)
		u.Host = c.PGProxy.Addr
		replicaDB = u.String()
	}

	pcfg, err := pgxpool.ParseConfig(c.DatabaseURL)
	if err != nil {
		t.Fatalf("test database URL: %v", err)
	}
	pcfg.MaxConns = 3
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		t.Fatalf("open the test database: %v", err)
	}
	c.DB = pool

	c.replicaEnv = map[string]string{
		"ONSALE_ENV":                 "production",
		"ONSALE_REDIS_URL":           c.RedisURL,
		"ONSALE_DATABASE_URL":        replicaDB,
		"ONSALE_NATS_URL":            c.NATSURL,
		"ONSALE_REDIS_PREFIX":        c.RedisPrefix,
		"ONSALE_NATS_PREFIX":         c.NATSPrefix,
		"ONSALE_DB_MAX_CONNS":        "8",
		"ONSALE_JWT_KEYS_FILE":       jwtKeys,
		"ONSALE_TICKET_KEYS_FILE":    ticketKeys,
		"ONSALE_PROVIDER_URL":        c.Provider.URL,
		"ONSALE_BOOTSTRAP_ORGANIZER": c.OrganizerEmail + ":" + c.OrganizerPassword,
		"ONSALE_ARGON2_MEMORY_KIB":   "1024",
		"ONSALE_ARGON2_TIME":         "1",
		"ONSALE_DRAIN_DELAY":         "1s",
		"ONSALE_LOG_LEVEL":           "warn",
		// Every simulated customer reaches the replicas from 127.0.0.1 through the proxy: one
		// client address for thousands of buyers would be rate limited at once. The limits have
		// tests of their own.
		"ONSALE_RATE_LIMIT_AUTH":  "0",
		"ONSALE_RATE_LIMIT_HOLDS": "0",
	}
	secretFile := filepath.Join(c.Dir, "internal-secret")
	c.InternalSecret = testenv.Unique("secret") + testenv.Unique("") + testenv.Unique("")
	if err := os.WriteFile(secretFile, []byte(c.InternalSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.replicaEnv["ONSALE_INTERNAL_SECRET_FILE"] = secretFile
	if pooledDB != directDB {
		// Through PgBouncer in transaction pooling: migrations on a direct connection, and no
		// named prepared statements (Debian's PgBouncer 1.18 does not keep them).
		c.replicaEnv["ONSALE_MIGRATE_DATABASE_URL"] = directDB
		c.replicaEnv["ONSALE_DB_QUERY_EXEC_MODE"] = testenv.PgBouncerExecMode
	}
	if sharedNATS {
		// 3 when ONSALE_TEST_NATS_URL is a NATS cluster (ONSALE_TEST_NATS_REPLICAS).
		c.replicaEnv["ONSALE_NATS_REPLICAS"] = strconv.Itoa(testenv.NATSReplicas())
	}
	for k, v := range o.Env {
		c.replicaEnv[k] = v
	}
	for _, tier := range o.Topology {
		for range tier.Count {
			c.Replicas = append(c.Replicas, c.newReplica(t, len(c.Replicas), tier.Modules))
		}
	}
	var nginx *Nginx
	if split {
		if o.ReadinessProxy {
			t.Fatal("a split topology needs nginx in front")
		}
		// nginx first: it balances the modules' internal APIs, which processes need to be ready.
		nginx = newNginx(t, filepath.Join(c.Dir, "nginx"), c.Replicas)
		c.ModuleURLs = map[string]string{}
		for _, m := range []string{"auth", "inventory", "payment"} {
			u := nginx.InternalURL(m)
			if m == "inventory" && o.InventoryProxy {
				c.InvProxy = StartTCPProxy(t, strings.TrimPrefix(u, "http://"))
				u = "http://" + c.InvProxy.Addr
			}
			c.ModuleURLs[m] = u
		}
		for _, r := range c.Replicas {
			for _, m := range []string{"auth", "inventory", "payment"} {
				if !r.Serves(m) {
					r.Env = append(r.Env, "ONSALE_"+strings.ToUpper(m)+"_URL="+c.ModuleURLs[m])
				}
			}
		}
		startNginx(t, nginxBin, nginx)
		c.LB = nginx
	}

	// Cleanups run last-in first-out: this one (registered after the database, Redis and NATS
	// cleanups) stops the processes before those run.
	t.Cleanup(func() {
		if t.Failed() {
			c.DumpLogs()
		}
		if c.LB != nil {
			c.LB.Close()
		}
		for _, r := range c.Replicas {
			r.Kill()
		}
		c.Provider.Kill()
		if c.PGProxy != nil {
			c.PGProxy.Close()
		}
		c.DB.Close()
	})

	start := time.Now()
	for _, r := range c.Replicas {
		if err := r.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range c.Replicas {
		r.WaitReady(t, 60*time.Second)
	}
	t.Logf("%d replicas ready in %s: %s", len(c.Replicas), time.Since(start).Round(time.Millisecond), c.replicaAddrs())

	switch {
	case split:
	case o.ReadinessProxy:
		c.LB = StartReadyProxy(t, c.Replicas)
	default:
		c.LB = StartNginx(t, nginxBin, filepath.Join(c.Dir, "nginx"), c.Replicas)
	}
	return c
}

func (c *Cluster) replicaAddrs() string {
	var s []string
	for _, r := range c.Replicas {
		s = append(s, r.Addr)
	}
	return strings.Join(s, ", ")
}

func (c *Cluster) newReplica(t testing.TB, i int, modules string) *Replica {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	internal := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	env := map[string]string{}
	for k, v := range c.replicaEnv {
		env[k] = v
	}
	env["ONSALE_HTTP_ADDR"] = addr
	env["ONSALE_INTERNAL_ADDR"] = internal
	env["ONSALE_MODULES"] = modules
	env["ONSALE_DATA_DIR"] = filepath.Join(c.Dir, fmt.Sprintf("replica%d", i))
	name := fmt.Sprintf("replica%d", i)
	if modules != "all" {
		name = fmt.Sprintf("%s%d", strings.ReplaceAll(modules, ",", "+"), i)
	}
	return &Replica{
		Proc:  &Proc{Name: name, Path: Binary(t), Env: envList(env), LogPath: filepath.Join(c.Dir, name+".log")},
		Index: i, Addr: addr, URL: "http://" + addr, Modules: modules, InternalAddr: internal,
	}
}

// URL is the load balancer's address: what clients talk to.
func (c *Cluster) URL() string { return c.LB.URL() }

// DumpLogs prints the tail of every process's log.
func (c *Cluster) DumpLogs() {
	for _, r := range c.Replicas {
		c.t.Logf("---- %s log (%s) ----\n%s", r.Name, r.LogPath, r.Tail(60))
	}
	c.t.Logf("---- provider log ----\n%s", c.Provider.Tail(20))
	if c.LB != nil {
		c.t.Logf("---- load balancer log ----\n%s", c.LB.Logs())
	}
}

// CheckAlive fails the test for every replica that exited without the test stopping it.
func (c *Cluster) CheckAlive(t testing.TB) {
	t.Helper()
	for _, r := range c.Replicas {
		if r.ExitedByItself() {
			code, err := r.Wait(0)
			t.Errorf("%s exited on its own (code %d, %v):\n%s", r.Name, code, err, r.Tail(30))
		}
	}
	if c.LB != nil {
		if n, ok := c.LB.(*Nginx); ok && n.ExitedByItself() {
			t.Errorf("nginx exited on its own:\n%s", tailFile(n.ErrorLog(), 20))
		}
	}
}

// Restart starts a stopped replica again (same address and data directory) and waits until it
// is ready.
func (c *Cluster) Restart(t testing.TB, r *Replica) {
	t.Helper()
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	r.WaitReady(t, 60*time.Second)
}

// ---- load balancers ----

// Balancer is what clients talk to.
type Balancer interface {
	URL() string
	// InRotation tells whether the balancer currently sends new requests to replica i.
	InRotation(i int) bool
	// Describe tells what the balancer did, for the test log.
	Describe() string
	// Logs returns the balancer's own log, for a failing test.
	Logs() string
	Close()
}

// Nginx is a real load balancer in front of the replicas: round robin, HTTP/1.1 keep-alive to
// clients, a fresh upstream connection per request (so a replica that stopped listening is a
// connection error nginx retries on the next one), retries only on connection errors and
// timeouts (never a POST a replica already received), and no buffering of event streams.
// nginx (open source) has no active health checks: it does not see readiness.
type Nginx struct {
	*Proc
	dir      string
	url      string
	port     int
	replicas []*Replica
	internal map[string]int // a port balancing each module's internal API (split topologies)
}

// StartNginx writes a configuration for the replicas under dir and runs nginx in the foreground.
func StartNginx(t testing.TB, bin, dir string, replicas []*Replica) *Nginx {
	t.Helper()
	n := newNginx(t, dir, replicas)
	startNginx(t, bin, n)
	return n
}

// newNginx chooses nginx's ports for the replicas, without starting it.
func newNginx(t testing.TB, dir string, replicas []*Replica) *Nginx {
	t.Helper()
	n := &Nginx{dir: dir, port: testenv.FreePort(t), replicas: replicas, internal: map[string]int{}}
	n.url = fmt.Sprintf("http://127.0.0.1:%d", n.port)
	if replicas[0].Modules != "all" {
		for _, m := range []string{"auth", "inventory", "payment"} {
			n.internal[m] = testenv.FreePort(t)
		}
	}
	return n
}

// InternalURL is where nginx balances a module's internal API.
func (n *Nginx) InternalURL(module string) string {
	return fmt.Sprintf("http://127.0.0.1:%d", n.internal[module])
}

// startNginx writes the configuration and runs nginx in the foreground.
func startNginx(t testing.TB, bin string, n *Nginx) {
	t.Helper()
	dir := n.dir
	for _, sub := range []string{"", "logs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.writeConfig(); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "nginx.conf")
	if out, err := exec.Command(bin, "-t", "-q", "-p", dir, "-e", n.ErrorLog(), "-c", conf).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	n.Proc = &Proc{Name: "nginx", Path: bin, Args: []string{"-p", dir, "-e", n.ErrorLog(), "-c", conf, "-g", "daemon off;"},
		Env: baseEnv(), LogPath: filepath.Join(dir, "logs", "stdout.log")}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	if err := waitPort(fmt.Sprintf("127.0.0.1:%d", n.port), 15*time.Second, n.Done()); err != nil {
		t.Fatalf("nginx did not start: %v\n%s\n%s", err, n.Tail(20), tailFile(n.ErrorLog(), 20))
	}
}

// URL implements Balancer.
func (n *Nginx) URL() string { return n.url }

// InRotation implements Balancer: nginx sends to every replica (and retries the next one when a
// connection fails).
func (n *Nginx) InRotation(int) bool { return true }

// Describe implements Balancer.
func (n *Nginx) Describe() string {
	return fmt.Sprintf("nginx: %d upstream errors logged", len(grepFile(n.ErrorLog(), "upstream")))
}

// Logs implements Balancer.
func (n *Nginx) Logs() string { return tailFile(n.ErrorLog(), 40) }

// ErrorLog is nginx's error log.
func (n *Nginx) ErrorLog() string { return filepath.Join(n.dir, "logs", "error.log") }

// Close stops nginx (and its workers).
func (n *Nginx) Close() {
	if n.Proc != nil {
		n.Stop(syscall.SIGTERM, 5*time.Second)
		// Workers left behind by a master that did not stop in time.
		_ = syscall.Kill(-n.Pid(), syscall.SIGKILL)
	}
}

func (n *Nginx) writeConfig() error {
	var b strings.Builder
	if os.Geteuid() == 0 {
		// Workers otherwise run as an unprivileged user who cannot reach the test's temp dir.
		b.WriteString("user root;\n")
	}
	fmt.Fprintf(&b, `worker_processes 2;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %[1]s/tmp/body;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    upstream onsale {
`, n.dir)
	for _, r := range n.replicas {
		fmt.Fprintf(&b, "        server %s max_fails=1 fail_timeout=1s;\n", r.Addr)
	}
	b.WriteString("    }\n")
	// Split: an upstream per module for its public routes, and one for its internal API.
	routes := map[string]string{}
	for _, m := range []string{"auth", "inventory", "payment"} {
		routes[m] = "onsale"
		port, ok := n.internal[m]
		if !ok {
			continue
		}
		var public, internal strings.Builder
		for _, r := range n.replicas {
			if r.Serves(m) {
				fmt.Fprintf(&public, "        server %s max_fails=1 fail_timeout=1s;\n", r.Addr)
				fmt.Fprintf(&internal, "        server %s max_fails=1 fail_timeout=1s;\n", r.InternalAddr)
			}
		}
		if public.Len() == 0 {
			continue
		}
		routes[m] = "onsale_" + m
		fmt.Fprintf(&b, "    upstream onsale_%[1]s {\n%[2]s    }\n    upstream onsale_%[1]s_internal {\n%[3]s    }\n", m, public.String(), internal.String())
		fmt.Fprintf(&b, `    server {
        listen 127.0.0.1:%d backlog=4096;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_connect_timeout 1s;
        proxy_read_timeout 30s;
        proxy_next_upstream error timeout;
        location / { proxy_pass http://onsale_%s_internal; }
    }
`, port, m)
	}
	fmt.Fprintf(&b, `    server {
        listen 127.0.0.1:%d backlog=4096;
        client_max_body_size 1m;
        proxy_http_version 1.1;
        proxy_set_header Connection "close";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_connect_timeout 1s;
        proxy_send_timeout 30s;
        proxy_read_timeout 30s;
        proxy_next_upstream error timeout;
        proxy_next_upstream_tries 0;
        proxy_next_upstream_timeout 15s;
        location / {
            proxy_pass http://onsale;
        }
        location /v1/auth/ { proxy_pass http://%[2]s; }
        location = /v1/me { proxy_pass http://%[2]s; }
        location = /.well-known/jwks.json { proxy_pass http://%[2]s; }
        location /v1/events { proxy_pass http://%[3]s; }
        location /v1/holds { proxy_pass http://%[3]s; }
        location /v1/orders { proxy_pass http://%[4]s; }
        location /v1/checkins { proxy_pass http://%[4]s; }
        location = /.well-known/ticket-keys.json { proxy_pass http://%[4]s; }
        location ~ ^/v1/orders/[^/]+/events$ {
            proxy_pass http://%[4]s;
            proxy_buffering off;
            proxy_read_timeout 1h;
        }
    }
}
`, n.port, routes["auth"], routes["inventory"], routes["payment"])
	return os.WriteFile(filepath.Join(n.dir, "nginx.conf"), []byte(b.String()), 0o644)
}

// ReadyProxy is a small reverse proxy that follows readiness, for a test that must take a
// replica out of rotation precisely when its /readyz fails (as an orchestrator's endpoints do):
// it polls every replica's /readyz every 100 ms and sends each request round robin to a ready
// one. A fresh upstream connection per request; a connection that cannot be made (nothing sent)
// is retried on the next ready replica.
type ReadyProxy struct {
	url      string
	replicas []*Replica
	srv      *http.Server
	tr       *http.Transport

	mu       sync.Mutex
	ready    map[int]bool
	changes  int
	next     int
	retries  int
	stop     chan struct{}
	stopped  chan struct{}
	logLines []string
}

// StartReadyProxy starts the proxy on a spare port.
func StartReadyProxy(t testing.TB, replicas []*Replica) *ReadyProxy {
	t.Helper()
	p := &ReadyProxy{replicas: replicas, ready: map[int]bool{}, stop: make(chan struct{}), stopped: make(chan struct{})}
	for _, r := range replicas {
		p.ready[r.Index] = r.Ready()
	}
	p.tr = &http.Transport{
		Proxy:             nil,
		DialContext:       (&net.Dialer{Timeout: time.Second}).DialContext,
		DisableKeepAlives: true,
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.SetXForwarded()
		},
		Transport:     roundTripFunc(p.roundTrip),
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p.log("proxy error %s %s: %v", r.Method, r.URL.Path, err)
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.url = "http://" + ln.Addr().String()
	p.srv = &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	go p.follow()
	t.Cleanup(p.Close)
	return p
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (p *ReadyProxy) log(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.logLines) < 200 {
		p.logLines = append(p.logLines, time.Now().Format("15:04:05.000 ")+fmt.Sprintf(format, args...))
	}
}

// pick returns the next ready replica after skipping tried ones (all of them when none is ready).
func (p *ReadyProxy) pick(tried map[int]bool) *Replica {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pass := 0; pass < 2; pass++ {
		for range p.replicas {
			r := p.replicas[p.next%len(p.replicas)]
			p.next++
			if !tried[r.Index] && (p.ready[r.Index] || pass == 1) {
				return r
			}
		}
	}
	return nil
}

func (p *ReadyProxy) roundTrip(req *http.Request) (*http.Response, error) {
	tried := map[int]bool{}
	for {
		r := p.pick(tried)
		if r == nil {
			return nil, errors.New("no replica to send to")
		}
		tried[r.Index] = true
		out := req.Clone(req.Context())
		out.URL.Host, out.Host = r.Addr, req.Host
		resp, err := p.tr.RoundTrip(out)
		var op *net.OpError
		if err != nil && errors.As(err, &op) && op.Op == "dial" {
			// Nothing was sent: try the next replica.
			p.mu.Lock()
			p.retries++
			p.mu.Unlock()
			p.log("%s refused a connection (%v); trying the next replica", r.Name, err)
			continue
		}
		return resp, err
	}
}

func (p *ReadyProxy) follow() {
	defer close(p.stopped)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		ready := make([]bool, len(p.replicas))
		var wg sync.WaitGroup
		for i, r := range p.replicas {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ready[i] = r.Ready()
			}()
		}
		wg.Wait()
		for i, r := range p.replicas {
			p.mu.Lock()
			changed := p.ready[r.Index] != ready[i]
			p.ready[r.Index] = ready[i]
			if changed {
				p.changes++
			}
			p.mu.Unlock()
			if changed {
				p.log("%s ready=%v", r.Name, ready[i])
			}
		}
	}
}

// URL implements Balancer.
func (p *ReadyProxy) URL() string { return p.url }

// InRotation implements Balancer.
func (p *ReadyProxy) InRotation(i int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ready[i]
}

// Describe implements Balancer.
func (p *ReadyProxy) Describe() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Sprintf("readiness proxy: %d readiness changes followed, %d refused connections retried on another replica", p.changes, p.retries)
}

// Logs implements Balancer.
func (p *ReadyProxy) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.logLines, "\n")
}

// Close stops the proxy.
func (p *ReadyProxy) Close() {
	select {
	case <-p.stop:
		return
	default:
	}
	close(p.stop)
	<-p.stopped
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = p.srv.Shutdown(ctx)
}

// ---- a private redis-server ----

// RedisServer is a test's own redis-server without persistence: killing it loses every key.
type RedisServer struct {
	*Proc
	Addr string
	URL  string
}

// StartRedis starts a private redis-server on a spare port.
func StartRedis(t testing.TB) *RedisServer {
	t.Helper()
	bin := requireTool(t, "redis-server", "/usr/bin/redis-server")
	dir := t.TempDir()
	port := testenv.FreePort(t)
	r := &RedisServer{Addr: fmt.Sprintf("127.0.0.1:%d", port)}
	r.URL = "redis://" + r.Addr + "/0"
	r.Proc = &Proc{Name: "redis-server", Path: bin,
		Args: []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", dir, "--protected-mode", "no", "--maxclients", "10000"},
		Env: baseEnv(), LogPath: filepath.Join(dir, "redis.log")}
	r.start(t)
	t.Cleanup(r.Kill)
	return r
}

func (r *RedisServer) start(t testing.TB) {
	t.Helper()
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if err := redisPing(r.Addr); err == nil {
			return
		} else if time.Now().After(deadline) || !r.Running() {
			t.Fatalf("redis-server not answering: %v\n%s", err, r.Tail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func redisPing(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// Restart kills redis-server (its state is lost: no persistence), waits down for the given time,
// and starts it again on the same port.
func (r *RedisServer) Restart(t testing.TB, down time.Duration) {
	t.Helper()
	r.Kill()
	time.Sleep(down) // the scenario: Redis is gone for this long
	r.start(t)
}

// ---- a private nats-server ----

// NATSServer is a test's own nats-server with JetStream storing in a directory that survives
// restarts.
type NATSServer struct {
	*Proc
	Addr string
	URL  string
}

// StartNATS starts a private nats-server with JetStream on a spare port.
func StartNATS(t testing.TB) *NATSServer {
	t.Helper()
	bin := requireTool(t, "nats-server", "/usr/sbin/nats-server")
	dir := t.TempDir()
	port := testenv.FreePort(t)
	n := &NATSServer{Addr: fmt.Sprintf("127.0.0.1:%d", port)}
	n.URL = "nats://" + n.Addr
	n.Proc = &Proc{Name: "nats-server", Path: bin,
		Args: []string{"-js", "-sd", filepath.Join(dir, "store"), "-a", "127.0.0.1", "-p", strconv.Itoa(port)},
		Env:  baseEnv(), LogPath: filepath.Join(dir, "nats.log")}
	n.start(t)
	t.Cleanup(n.Kill)
	return n
}

func (n *NATSServer) start(t testing.TB) {
	t.Helper()
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := natsInfo(n.Addr)
		if err == nil {
			return
		}
		if time.Now().After(deadline) || !n.Running() {
			t.Fatalf("nats-server not answering: %v\n%s", err, n.Tail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func natsInfo(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "INFO ") {
		return fmt.Errorf("nats greeted with %q", line)
	}
	return nil
}

// StopServer stops nats-server gracefully (SIGTERM) and waits for it to exit.
func (n *NATSServer) StopServer(t testing.TB) {
	t.Helper()
	n.Stop(syscall.SIGTERM, 10*time.Second)
}

// StartAgain starts nats-server again with the same port and store directory.
func (n *NATSServer) StartAgain(t testing.TB) { n.start(t) }

// ---- a cuttable TCP proxy ----

// TCPProxy forwards connections to a target; Cut closes its listener and every proxied
// connection (the target looks unreachable), Restore listens again on the same address.
type TCPProxy struct {
	Addr   string
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	cut   bool
}

// StartTCPProxy proxies a spare local port to target.
func StartTCPProxy(t testing.TB, target string) *TCPProxy {
	t.Helper()
	p := &TCPProxy{target: target, conns: map[net.Conn]struct{}{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.Addr = ln.Addr().String()
	p.ln = ln
	go p.serve(ln)
	t.Cleanup(p.Close)
	return p
}

func (p *TCPProxy) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go p.pipe(c)
	}
}

func (p *TCPProxy) pipe(c net.Conn) {
	up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		_ = c.Close()
		return
	}
	p.mu.Lock()
	if p.cut {
		p.mu.Unlock()
		_ = c.Close()
		_ = up.Close()
		return
	}
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go cp(up, c)
	go cp(c, up)
	<-done
	_ = c.Close()
	_ = up.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// Cut makes the target unreachable: no listener, every connection closed.
func (p *TCPProxy) Cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	n := len(p.conns) / 2
	for c := range p.conns {
		_ = c.Close()
	}
	return n
}

// Restore listens again on the same address.
func (p *TCPProxy) Restore(t testing.TB) {
	t.Helper()
	var (
		ln  net.Listener
		err error
	)
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", p.Addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("restore the Postgres proxy on %s: %v", p.Addr, err)
	}
	p.mu.Lock()
	p.cut = false
	p.ln = ln
	p.mu.Unlock()
	go p.serve(ln)
}

// Close stops the proxy for good.
func (p *TCPProxy) Close() { p.Cut() }
