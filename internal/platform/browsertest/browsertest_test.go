package browsertest

import (
	"bytes"
	"fmt"
	"image/color"
	"image/png"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestRequestsElsewhereInBrowser loads a page that shows images from its own server, from the
// page itself (data:), from a second server its Content-Security-Policy allows, and from a third
// origin the policy forbids, and checks that only the request the browser really sent to the
// second server counts as going elsewhere.
func TestRequestsElsewhereInBrowser(t *testing.T) {
	pixel := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/gif")
		// The smallest transparent GIF.
		w.Write([]byte("GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"))
	})
	other := httptest.NewServer(pixel)
	t.Cleanup(other.Close)
	allowed := other.URL + "/allowed.gif"
	// The same server under another name is another origin, so the policy below forbids it.
	u, err := url.Parse(other.URL)
	if err != nil {
		t.Fatal(err)
	}
	forbidden := "http://localhost:" + u.Port() + "/forbidden.gif"

	mux := http.NewServeMux()
	mux.Handle("/own.gif", pixel)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "img-src 'self' data: "+other.URL)
		fmt.Fprintf(w, `<!DOCTYPE html><title>t</title>
<img src="/own.gif"><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw="><img src="%s"><img src="%s">`,
			allowed, forbidden)
	})
	page := httptest.NewServer(mux)
	t.Cleanup(page.Close)

	ctx := New(t, 30*time.Second)
	requests := RecordRequests(t, ctx)
	// Navigate returns once the page has loaded, images included.
	if err := chromedp.Do(ctx, chromedp.Navigate(page.URL)); err != nil {
		t.Fatal(err)
	}

	all := requests.All()
	blocked := map[string]string{}
	for _, r := range all {
		blocked[r.URL] = string(r.Blocked)
	}
	for _, want := range []string{page.URL + "/", page.URL + "/own.gif", allowed, forbidden} {
		if _, ok := blocked[want]; !ok {
			t.Errorf("no request for %s recorded; got %+v", want, all)
		}
	}
	if blocked[forbidden] != "csp" || blocked[allowed] != "" {
		t.Errorf("blocked: %s %q, %s %q; want only the second, by the policy",
			allowed, blocked[allowed], forbidden, blocked[forbidden])
	}
	if got := requests.Elsewhere(page.URL); !slices.Equal(got, []string{allowed}) {
		t.Errorf("Elsewhere(%s) = %q; want only %s (all: %+v)", page.URL, got, allowed, all)
	}
}

// TestScreenshotInBrowser checks that a screenshot is a PNG of what the viewport shows, saved in
// ONSALE_TEST_ARTIFACTS under the test's name.
func TestScreenshotInBrowser(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("ONSALE_TEST_ARTIFACTS", filepath.Join(dir, "artifacts"))
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!DOCTYPE html><title>t</title><body style="background: #123456">`)
	}))
	t.Cleanup(page.Close)

	ctx := New(t, 30*time.Second)
	if err := chromedp.Do(ctx, chromedp.Navigate(page.URL)); err != nil {
		t.Fatal(err)
	}
	path := Screenshot(t, ctx, "page")
	if want := filepath.Join(dir, "artifacts", "TestScreenshotInBrowser-page.png"); path != want {
		t.Errorf("screenshot saved at %s; want %s", path, want)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("the screenshot is no PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != ViewportWidth || b.Dy() != ViewportHeight {
		t.Errorf("screenshot is %dx%d; want the viewport, %dx%d", b.Dx(), b.Dy(), ViewportWidth, ViewportHeight)
	}
	want := color.RGBA{R: 0x12, G: 0x34, B: 0x56, A: 0xff}
	if got := color.RGBAModel.Convert(img.At(ViewportWidth/2, ViewportHeight/2)); got != want {
		t.Errorf("the middle of the screenshot is %v; want the page's background %v", got, want)
	}
}
