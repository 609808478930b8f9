// Package browsertest gives tests a real, headless Chromium driven through chromedp, so a test can
// prove that a page renders and behaves for a person, not only that the server answers. Each test
// gets its own browser with a fresh profile, stopped and removed when the test ends.
//
// The browser is Debian's Chromium at /usr/bin/chromium, or the program ONSALE_TEST_CHROMIUM
// names. When it is missing the test is skipped, unless ONSALE_TEST_REQUIRE_SERVICES=1, which
// turns the skip into a failure (CI sets it), as for the services of testenv.
package browsertest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

// DefaultChromium is where Debian's chromium package installs the browser.
const DefaultChromium = "/usr/bin/chromium"

// ViewportWidth and ViewportHeight are the size of the tab's viewport in CSS pixels, and so of a
// screenshot: a laptop screen, wide enough for pages that lay out in several columns.
const (
	ViewportWidth  = 1280
	ViewportHeight = 900
)

// Chromium is the browser the tests start: ONSALE_TEST_CHROMIUM, or DefaultChromium.
func Chromium() string {
	if v := os.Getenv("ONSALE_TEST_CHROMIUM"); v != "" {
		return v
	}
	return DefaultChromium
}

// New starts a headless Chromium for this test and returns a context for one tab of it, which
// every chromedp action of the test runs with. The context ends after timeout, so a page that
// never becomes what the test waits for fails the test instead of hanging it. The browser is
// closed and its profile removed when the test ends; if the test failed, a screenshot of the tab
// is saved first (see Screenshot).
func New(t testing.TB, timeout time.Duration) context.Context {
	t.Helper()
	path, err := exec.LookPath(Chromium())
	if err != nil {
		if testenv.RequireServices() {
			t.Fatalf("Chromium is required (ONSALE_TEST_REQUIRE_SERVICES=1) but missing: %v", err)
		}
		t.Skipf("Chromium missing, skipping (set ONSALE_TEST_REQUIRE_SERVICES=1 to fail instead): %v", err)
	}

	// chromedp's defaults (headless, no extensions, no background throttling), then what this
	// sandbox needs: no sandbox (Chromium's refuses to run as root, as tests do here and in CI),
	// no GPU, and none of the browser's own traffic (QUIC, component updates, sync, first-run and
	// background requests), which would try to leave a machine that has no network.
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(filepath.Join(t.TempDir(), "profile")),
	)
	// chromedp ties the browser's life to the context it is started with. The browser outlives
	// the test's deadline a little, so that a failed test can still show what the page was.
	life, cancelLife := context.WithTimeout(context.Background(), timeout+15*time.Second)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(life, opts...)
	tab, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf))
	// Cleanups run last-registered first, so all of this happens before t.TempDir's own cleanup
	// removes the profile the browser was writing: cancelAlloc waits for the process to end.
	started := false
	t.Cleanup(func() {
		if t.Failed() && started {
			ctx, cancel := context.WithTimeout(tab, 5*time.Second)
			if path, err := saveScreenshot(t, ctx, "failure"); err != nil {
				t.Logf("no screenshot of the failure: %v", err)
			} else {
				keep := ""
				if os.Getenv("ONSALE_TEST_ARTIFACTS") == "" {
					keep = " (removed with the test; set ONSALE_TEST_ARTIFACTS to keep it)"
				}
				t.Logf("screenshot of the failure: %s%s", path, keep)
			}
			cancel()
		}
		closing, cancel := context.WithTimeout(tab, 5*time.Second)
		_ = chromedp.Cancel(closing) // closes the browser gracefully; the cancels below make sure
		cancel()
		cancelTab()
		cancelAlloc()
		cancelLife()
	})

	// Start the browser now, so that one that cannot start fails the test here, plainly. The
	// viewport is set rather than the window, whose size includes the invisible browser frame.
	if err := chromedp.Do(tab, chromedp.EmulateViewport(ViewportWidth, ViewportHeight)); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	started = true
	ctx, cancel := context.WithTimeout(tab, timeout)
	t.Cleanup(cancel)
	return ctx
}

// Requests records the requests the tab makes, from the moment each is made.
type Requests struct {
	mu   sync.Mutex
	list []*Request
	byID map[network.RequestID]*Request
}

// Request is one request of the tab.
type Request struct {
	URL string
	// Blocked is why the browser refused to send the request (a Content-Security-Policy, for
	// instance), or empty when it was sent or is still being sent.
	Blocked network.BlockedReason
}

// RecordRequests starts recording the tab's requests; call it before navigating.
func RecordRequests(t testing.TB, ctx context.Context) *Requests {
	t.Helper()
	r := &Requests{byID: map[network.RequestID]*Request{}}
	err := chromedp.Listen(ctx, func(ev any) {
		r.mu.Lock()
		defer r.mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			req := &Request{URL: ev.Request.URL}
			r.list = append(r.list, req)
			r.byID[ev.RequestID] = req
		case *network.EventLoadingFailed:
			if req, ok := r.byID[ev.RequestID]; ok {
				req.Blocked = ev.BlockedReason
			}
		}
	})
	if err != nil {
		t.Fatalf("listen to the tab's requests: %v", err)
	}
	return r
}

// All lists the requests recorded so far, in the order they were made.
func (r *Requests) All() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Request, len(r.list))
	for i, req := range r.list {
		out[i] = *req
	}
	return out
}

// Elsewhere lists the URLs of the recorded requests that the browser sent to a host other than
// origin's (scheme, host and port): what a page that must work without the internet may not do.
// Requests the browser blocked never left it, and URLs it answers itself (data:, blob:, about:)
// are not requests to anyone; both are left out.
func (r *Requests) Elsewhere(origin string) []string {
	o, err := url.Parse(origin)
	if err != nil {
		return []string{fmt.Sprintf("bad origin %q: %v", origin, err)}
	}
	var out []string
	for _, req := range r.All() {
		if req.Blocked != "" {
			continue
		}
		u, err := url.Parse(req.URL)
		if err != nil {
			out = append(out, req.URL)
			continue
		}
		switch u.Scheme {
		case "data", "blob", "about":
			continue
		}
		if u.Scheme != o.Scheme || u.Host != o.Host {
			out = append(out, req.URL)
		}
	}
	return out
}

// ArtifactsDir is where tests leave files for people to look at, such as screenshots:
// ONSALE_TEST_ARTIFACTS if set (created when missing), else a directory of this test that is
// removed when it ends.
func ArtifactsDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("ONSALE_TEST_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artifacts directory: %v", err)
	}
	return dir
}

// Screenshot saves what the tab shows in its viewport as a PNG in ArtifactsDir, named after the
// test and name, logs where it is and returns the path. A test that fails gets one named
// "failure" without asking.
func Screenshot(t testing.TB, ctx context.Context, name string) string {
	t.Helper()
	path, err := saveScreenshot(t, ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	return path
}

func saveScreenshot(t testing.TB, ctx context.Context, name string) (string, error) {
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		return "", fmt.Errorf("screenshot %s: %w", name, err)
	}
	file := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()) + "-" + name + ".png"
	path := filepath.Join(ArtifactsDir(t), file)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		return "", fmt.Errorf("save screenshot %s: %w", name, err)
	}
	return path, nil
}
