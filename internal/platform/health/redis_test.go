package health_test

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/onsale-dev/onsale/internal/platform/health"
	"github.com/onsale-dev/onsale/internal/platform/redisclient"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

// redisProc is a redis-server owned by one test.
type redisProc struct {
	cmd *exec.Cmd
	out *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startRedis runs redis-server on port and waits until it accepts connections.
func startRedis(t *testing.T, bin string, port int) *redisProc {
	t.Helper()
	out := &syncBuffer{}
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	p := &redisProc{cmd: cmd, out: out}
	t.Cleanup(p.kill)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	testenv.Eventually(t, 5*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}, "redis-server on %s did not accept connections; output:\n%s", addr, out)
	return p
}

// kill stops the server at once (SIGKILL, no shutdown courtesy) and reaps it.
func (p *redisProc) kill() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

// TestRedisOutageTurnsReadinessOff runs its own redis-server so that it can kill and restart it.
func TestRedisOutageTurnsReadinessOff(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if testenv.RequireServices() {
			t.Fatalf("redis-server is required (ONSALE_TEST_REQUIRE_SERVICES=1) but not on PATH: %v", err)
		}
		t.Skipf("redis-server not on PATH, skipping (set ONSALE_TEST_REQUIRE_SERVICES=1 to fail instead): %v", err)
	}
	port := testenv.FreePort(t)
	srv := startRedis(t, bin, port)

	client, err := redisclient.Open("redis://127.0.0.1:" + strconv.Itoa(port) + "/0")
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(client.Close)

	h := health.New(500 * time.Millisecond)
	h.Add("redis", redisclient.Check(client))
	var last health.Report
	ready := func() bool {
		last = h.Check(context.Background())
		return last.Ready()
	}

	testenv.Eventually(t, 2*time.Second, ready, "not ready with redis up: %+v", &last)

	srv.kill()
	testenv.Eventually(t, time.Second, func() bool { return !ready() },
		"still ready 1s after redis-server was killed: %+v", &last)
	if len(last.Checks) != 1 || last.Checks[0].Name != "redis" || last.Checks[0].Status != "failed" || last.Checks[0].Error == "" {
		t.Fatalf("report while redis is down = %+v", last)
	}

	startRedis(t, bin, port)
	testenv.Eventually(t, 5*time.Second, ready, "not ready again after redis-server restarted: %+v", &last)
}
