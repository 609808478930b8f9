package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// buildServer compiles this command into a temporary directory. Under -race the binary is built
// with the race detector too: the packages are then already in the build cache from compiling this
// test, and a data race on the shutdown path fails the test (the process exits 66).
func buildServer(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go not on PATH: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "server")
	args := []string{"build", "-o", bin}
	if raceEnabled() {
		args = append(args, "-race")
	}
	cmd := exec.Command(goBin, append(args, ".")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// raceEnabled tells whether this test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// childEnv is the test's environment without any ONSALE_ setting, plus extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ONSALE_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// status GETs url on a fresh connection; 0 means the request failed.
func status(url string) (int, string) {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestGracefulShutdownOnSIGTERM runs the real binary and checks the shutdown promise: readiness
// fails first, a request already in flight gets its normal answer, new connections are refused
// after the drain delay, and the process exits 0.
func TestGracefulShutdownOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server binary; skipped with -short")
	}
	t.Parallel()
	bin := buildServer(t)
	addr := freeAddr(t)
	base := "http://" + addr
	logs := &lockedBuffer{}
	cmd := exec.Command(bin)
	cmd.Env = childEnv(
		"ONSALE_HTTP_ADDR="+addr,
		"ONSALE_DATA_DIR="+t.TempDir(),
		"ONSALE_DRAIN_DELAY=300ms",
		"ONSALE_SHUTDOWN_TIMEOUT=10s",
	)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("server output:\n%s", logs.String())
		}
	})
	isExited := func() bool {
		select {
		case <-exited:
			return true
		default:
			return false
		}
	}

	testenv.Eventually(t, 30*time.Second, func() bool {
		if isExited() {
			t.Fatalf("server exited during start: %v", waitErr)
		}
		code, _ := status(base + "/livez")
		return code == http.StatusOK
	}, "server never answered /livez")
	testenv.Eventually(t, 10*time.Second, func() bool {
		code, _ := status(base + "/readyz")
		return code == http.StatusOK
	}, "server never became ready")

	// The in-flight request: a registration whose body is still being uploaded when SIGTERM
	// arrives. Raw TCP so that every byte goes out when written.
	body := fmt.Sprintf(`{"email":"slow-%d@example.com","password":"correct horse battery staple","name":"Slow Uploader"}`, time.Now().UnixNano())
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	head := fmt.Sprintf("POST /v1/auth/register HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", addr, len(body))
	const pieces = 16 // the first now, then one every 100 ms: 1.5 s of upload, most of it after SIGTERM
	step := len(body) / pieces
	if _, err := io.WriteString(conn, head+body[:step]); err != nil {
		t.Fatal(err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	signalled := time.Now()

	dripErr := make(chan error, 1)
	dripDone := make(chan struct{})
	go func() {
		defer close(dripDone)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for sent := step; sent < len(body); {
			<-tick.C
			end := min(sent+step, len(body))
			if _, err := io.WriteString(conn, body[sent:end]); err != nil {
				dripErr <- err
				return
			}
			sent = end
		}
		dripErr <- nil
	}()

	// (a) Readiness fails during the drain delay, while the server still accepts connections.
	var sawDraining bool
	var last string
	testenv.Eventually(t, 2*time.Second, func() bool {
		code, text := status(base + "/readyz")
		last = fmt.Sprintf("%d %s", code, text)
		if code == http.StatusServiceUnavailable {
			var rep struct{ Status string }
			sawDraining = json.Unmarshal([]byte(text), &rep) == nil && rep.Status == "draining"
			return true
		}
		return code == 0 // the drain delay already passed: fail below
	}, "readyz never changed after SIGTERM")
	if !sawDraining {
		t.Fatalf("after SIGTERM /readyz answered %q; want 503 draining during the 300ms drain delay", last)
	}

	// (c) After the drain delay new connections are refused, while the slow upload goes on.
	testenv.Eventually(t, 3*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return true
		}
		c.Close()
		return false
	}, "still accepting connections after the drain delay")
	refusedAfter := time.Since(signalled)
	select {
	case <-dripDone:
		t.Fatalf("the listener closed only after the upload finished (%s after SIGTERM); the test proves nothing", refusedAfter)
	default:
	}
	if refusedAfter < 300*time.Millisecond {
		t.Fatalf("connections refused %s after SIGTERM, before the 300ms drain delay ended", refusedAfter)
	}

	// (b) The request in flight at SIGTERM gets its normal answer.
	if err := <-dripErr; err != nil {
		t.Fatalf("upload cut off: %v", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/auth/register", nil)
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatalf("in-flight request dropped: %v", err)
	}
	respBody, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && (resp.StatusCode < 400 || resp.StatusCode >= 500) {
		t.Fatalf("in-flight request answered %d %s; want its normal answer (201, or a 4xx problem)", resp.StatusCode, respBody)
	}
	if resp.StatusCode != http.StatusCreated {
		t.Logf("in-flight registration answered %d %s (accepted: not a dropped connection)", resp.StatusCode, respBody)
	}

	// (d) The process exits cleanly.
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		t.Fatal("server did not exit after SIGTERM")
	}
	var ee *exec.ExitError
	if errors.As(waitErr, &ee) {
		t.Fatalf("server exited with code %d", ee.ExitCode())
	} else if waitErr != nil {
		t.Fatalf("server wait: %v", waitErr)
	}
	if !strings.Contains(logs.String(), "onsale stopped cleanly") {
		t.Errorf("no clean-stop log line")
	}
}
