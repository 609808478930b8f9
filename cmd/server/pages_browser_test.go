package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/onsale-dev/onsale/internal/platform/browsertest"
)

// The pages' tests drive headless Chromium against an in-process server in embedded mode, the
// way a person would: typing into the forms, pressing the buttons, reading what the page shows.

// salePages starts a server with an organizer and door staff, and an event with one ticket type
// of capacity tickets; it returns the API client, the base URL and the event and ticket type ids.
func salePages(t *testing.T, env map[string]string, capacity int) (*client, string, string, string) {
	t.Helper()
	all := map[string]string{
		"ONSALE_BOOTSTRAP_ORGANIZER": "org@example.com:organizer password",
		"ONSALE_BOOTSTRAP_STAFF":     "door@example.com:staff password",
	}
	for k, v := range env {
		all[k] = v
	}
	_, base := startApp(t, all)
	c := &client{t: t, base: base}
	org := c.login("org@example.com", "organizer password")
	ev := c.call("POST", "/v1/events", org, nil, `{"name":"Browser Live","venue":"Hall 6","starts_at":"2031-06-01T20:00:00Z"}`, 201)
	tt := c.call("POST", "/v1/events/"+ev["id"].(string)+"/ticket-types", org, nil,
		fmt.Sprintf(`{"name":"General admission","price_cents":2500,"currency":"EUR","capacity":%d,"max_per_order":4}`, capacity), 201)
	return c, base, ev["id"].(string), tt["id"].(string)
}

// waitFor polls a JavaScript expression in the page until it is truthy and returns its value.
func waitFor[T any](t *testing.T, ctx context.Context, what, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Poll[T](expr, chromedp.WithPollingInterval(50*time.Millisecond)))
	if err != nil {
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string]("document.body.innerText"))
		t.Fatalf("waiting for %s: %v\npage:\n%s", what, err, text)
	}
	return v
}

func do(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string]("document.body.innerText"))
		t.Fatalf("%s: %v\npage:\n%s", what, err, text)
	}
}

// TestStorefrontBuysInBrowser: a customer creates an account on the storefront, holds a ticket,
// checks out, watches the order go from pending to confirmed over the event stream (opened with
// a stream ticket, never the access token in the URL), and gets the ticket as a QR code.
func TestStorefrontBuysInBrowser(t *testing.T) {
	t.Parallel()
	// The simulated payment takes a second, so the page shows pending before confirmed arrives.
	_, base, ev, tt := salePages(t, map[string]string{"ONSALE_SIMULATED_LATENCY": "1s"}, 10)
	ctx := browsertest.New(t, time.Minute)
	requests := browsertest.RecordRequests(t, ctx)
	do(t, ctx, "open the storefront and create an account",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`button[data-event="`+ev+`"]`)),
		chromedp.SendKeys(chromedp.CSS("#email"), "buyer@example.com"),
		chromedp.SendKeys(chromedp.CSS("#password"), "customer password"),
		chromedp.SendKeys(chromedp.CSS("#name"), "Ada"),
		chromedp.Click(chromedp.CSS("#register")),
		chromedp.WaitVisible(chromedp.CSS("#who")),
		chromedp.Click(chromedp.CSS(`button[data-event="`+ev+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[data-hold="`+tt+`"]`)),
	)
	waitFor[bool](t, ctx, "live availability", `document.getElementById("avail-`+tt+`").textContent === "10 available"`)
	do(t, ctx, "hold a ticket", chromedp.Click(chromedp.CSS(`button[data-hold="`+tt+`"]`)), chromedp.WaitVisible(chromedp.CSS("#checkout")))
	countdown := waitFor[string](t, ctx, "the hold's countdown", `document.getElementById("countdown").textContent`)
	if !strings.Contains(countdown, ":") {
		t.Errorf("countdown shows %q", countdown)
	}
	browsertest.Screenshot(t, ctx, "held")
	do(t, ctx, "check out", chromedp.Click(chromedp.CSS("#checkout")))
	waitFor[bool](t, ctx, "the pending order", `document.getElementById("order-status").textContent === "pending"`)
	waitFor[bool](t, ctx, "confirmed, live", `document.getElementById("order-status").textContent === "confirmed"`)
	waitFor[bool](t, ctx, "the ticket's QR code", `document.querySelectorAll("#tickets svg").length === 1`)
	browsertest.Screenshot(t, ctx, "confirmed")

	streamed := false
	for _, r := range requests.All() {
		if strings.Contains(r.URL, "/events?ticket=") {
			streamed = true
		}
		if strings.Contains(r.URL, "access_token") || strings.Contains(r.URL, "Bearer") {
			t.Errorf("a URL carries a credential: %s", r.URL)
		}
	}
	if !streamed {
		t.Errorf("the order's status did not come over an event stream opened with a stream ticket: %+v", requests.All())
	}
	if elsewhere := requests.Elsewhere(base); len(elsewhere) > 0 {
		t.Errorf("the storefront loaded from other hosts: %q", elsewhere)
	}
}

// TestOrganizerDashboardInBrowser: the organizer signs in, creates a ticket type on the
// dashboard, and watches the sold figure change while customers buy through the API.
func TestOrganizerDashboardInBrowser(t *testing.T) {
	t.Parallel()
	c, base, _, tt := salePages(t, nil, 10)
	ctx := browsertest.New(t, time.Minute)
	do(t, ctx, "sign in and add a ticket type",
		chromedp.Navigate(base+"/organizer"),
		chromedp.SendKeys(chromedp.CSS("#email"), "org@example.com"),
		chromedp.SendKeys(chromedp.CSS("#password"), "organizer password"),
		chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("#tt-form")),
		chromedp.SendKeys(chromedp.CSS("#tt-name"), "Balcony"),
		chromedp.SendKeys(chromedp.CSS("#tt-price"), "4000"),
		chromedp.SendKeys(chromedp.CSS("#tt-capacity"), "5"),
		chromedp.Click(chromedp.CSS("#create-tt")),
	)
	waitFor[bool](t, ctx, "both ticket types in the live figures", `document.querySelectorAll("#types-body tr").length === 2 && document.getElementById("f-available").textContent === "15"`)

	c.call("POST", "/v1/auth/register", "", nil, `{"email":"fan@example.com","password":"customer password","name":"Fan"}`, 201)
	fan := c.login("fan@example.com", "customer password")
	for i := range 3 {
		hold := c.call("POST", "/v1/holds", fan, nil, fmt.Sprintf(`{"ticket_type_id":%q,"quantity":2}`, tt), 201)
		order := c.call("POST", "/v1/orders", fan, map[string]string{"Idempotency-Key": fmt.Sprintf("dash-%d", i)},
			fmt.Sprintf(`{"hold_id":%q}`, hold["id"]), 202)
		if final := c.follow(fan, order["id"].(string)); final != "confirmed" {
			t.Fatalf("order ended %q", final)
		}
		want := fmt.Sprint(2 * (i + 1))
		waitFor[bool](t, ctx, "sold "+want, `document.getElementById("f-sold").textContent === "`+want+`"`)
	}
	waitFor[bool](t, ctx, "the revenue", `document.getElementById("f-revenue").textContent.includes("150")`)
	do(t, ctx, "list the confirmed orders",
		chromedp.SetValue(chromedp.CSS("#status-filter"), "confirmed"),
		chromedp.Click(chromedp.CSS("#refresh-orders")))
	waitFor[bool](t, ctx, "three confirmed orders", `document.querySelectorAll("#orders-body tr").length === 3`)
	browsertest.Screenshot(t, ctx, "sale")
}

// TestCheckinInBrowser: door staff paste a ticket's code: admitted; the same code again: refused
// with the time of the first admission; a made-up code: invalid.
func TestCheckinInBrowser(t *testing.T) {
	t.Parallel()
	c, base, _, tt := salePages(t, nil, 10)
	c.call("POST", "/v1/auth/register", "", nil, `{"email":"guest@example.com","password":"customer password","name":"Guest"}`, 201)
	guest := c.login("guest@example.com", "customer password")
	hold := c.call("POST", "/v1/holds", guest, nil, fmt.Sprintf(`{"ticket_type_id":%q,"quantity":1}`, tt), 201)
	order := c.call("POST", "/v1/orders", guest, map[string]string{"Idempotency-Key": "door-1"}, fmt.Sprintf(`{"hold_id":%q}`, hold["id"]), 202)
	if final := c.follow(guest, order["id"].(string)); final != "confirmed" {
		t.Fatalf("order ended %q", final)
	}
	got := c.call("GET", "/v1/orders/"+order["id"].(string), guest, nil, "", 200)
	code := got["tickets"].([]any)[0].(map[string]any)["code"].(string)

	ctx := browsertest.New(t, time.Minute)
	scan := func(code string) {
		t.Helper()
		do(t, ctx, "scan a code",
			chromedp.SetValue(chromedp.CSS("#code"), code),
			chromedp.Click(chromedp.CSS("#check")))
	}
	answer := func(kind string) string {
		t.Helper()
		return waitFor[string](t, ctx, "the answer "+kind,
			`document.getElementById("answer").classList.contains("`+kind+`") && document.getElementById("answer").innerText`)
	}
	do(t, ctx, "sign in",
		chromedp.Navigate(base+"/checkin"),
		chromedp.SendKeys(chromedp.CSS("#email"), "door@example.com"),
		chromedp.SendKeys(chromedp.CSS("#password"), "staff password"),
		chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("#code")))
	scan(code)
	if a := answer("admitted"); !strings.Contains(a, "Admitted") {
		t.Errorf("first scan: %q", a)
	}
	browsertest.Screenshot(t, ctx, "admitted")
	scan(code)
	if a := answer("already"); !strings.Contains(a, "Already checked in") || !strings.Contains(a, "at ") {
		t.Errorf("second scan: %q, want already checked in with the time", a)
	}
	browsertest.Screenshot(t, ctx, "refused")
	scan("not-a-ticket")
	if a := answer("invalid"); !strings.Contains(a, "Invalid") {
		t.Errorf("made-up code: %q", a)
	}
}

// TestStorefrontWaitingRoomInBrowser: the event has a waiting room with people already in line.
// The customer's hold is refused for want of a pass, the page takes a place in the queue and
// shows it, and once admitted holds the tickets with the pass and buys them.
func TestStorefrontWaitingRoomInBrowser(t *testing.T) {
	t.Parallel()
	c, base, ev, tt := salePages(t, nil, 10)
	org := c.login("org@example.com", "organizer password")
	c.call("PUT", "/v1/events/"+ev+"/waiting-room", org, nil, `{"admission_rate_per_minute":60,"max_shoppers":200,"pass_lifetime_seconds":600}`, 200)
	for i := range 3 { // ahead in line
		email := fmt.Sprintf("early%d@example.com", i)
		c.call("POST", "/v1/auth/register", "", nil, `{"email":"`+email+`","password":"customer password","name":"Early"}`, 201)
		c.call("POST", "/v1/events/"+ev+"/queue", c.login(email, "customer password"), nil, "", 201)
	}
	ctx := browsertest.New(t, time.Minute)
	do(t, ctx, "create an account and try to hold",
		chromedp.Navigate(base+"/"),
		chromedp.SendKeys(chromedp.CSS("#email"), "late@example.com"),
		chromedp.SendKeys(chromedp.CSS("#password"), "customer password"),
		chromedp.Click(chromedp.CSS("#register")),
		chromedp.WaitVisible(chromedp.CSS("#who")),
		chromedp.Click(chromedp.CSS(`button[data-event="`+ev+`"]`)),
		chromedp.Click(chromedp.CSS(`button[data-hold="`+tt+`"]`)),
	)
	place := waitFor[string](t, ctx, "the place in line", `(t => t.includes("in line") && t)(document.getElementById("queue-status").textContent)`)
	if !strings.Contains(place, "Estimated wait") {
		t.Errorf("the queue shows %q, want the place and the wait", place)
	}
	browsertest.Screenshot(t, ctx, "in-line")
	do(t, ctx, "get admitted and hold", chromedp.WaitVisible(chromedp.CSS("#checkout")), chromedp.Click(chromedp.CSS("#checkout")))
	waitFor[bool](t, ctx, "confirmed", `document.getElementById("order-status").textContent === "confirmed"`)
}
