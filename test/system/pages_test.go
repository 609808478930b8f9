package system

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/onsale-dev/onsale/internal/platform/browsertest"
)

// TestThreeReplicasPurchaseOnPages: three replicas behind nginx. A stream ticket issued by one
// replica opens an order's stream on another (tickets are signed, not kept per replica), and a
// customer buys on the storefront served through nginx, seeing confirmed arrive live whichever
// replicas the page's requests reach.
func TestThreeReplicasPurchaseOnPages(t *testing.T) {
	systemTest(t)
	c := NewCluster(t, Options{Replicas: 3})
	rec := NewRecorder(t)
	cl := NewClient(c.URL(), rec)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	org := &Customer{Email: c.OrganizerEmail, Password: c.OrganizerPassword}
	eventID, ttID, err := cl.CreateSale(ctx, org, 10, 4, 4900)
	if err != nil {
		t.Fatalf("set up the sale: %v", err)
	}
	buyers, err := cl.RegisterCustomers(ctx, testTag("pages"), 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	buyer := buyers[0]

	// A ticket from replica 0 opens a stream on replica 2.
	hold := cl.Call(ctx, "hold", http.MethodPost, "/v1/holds", buyer, "pages-hold-1", map[string]any{"ticket_type_id": ttID, "quantity": 1})
	var h struct{ ID string }
	if !hold.OK() || hold.Decode(&h) != nil {
		t.Fatalf("hold: %s", hold)
	}
	order := cl.Call(ctx, "order", http.MethodPost, "/v1/orders", buyer, "pages-order-1", map[string]any{"hold_id": h.ID})
	var o struct{ ID string }
	if !order.OK() || order.Decode(&o) != nil {
		t.Fatalf("order: %s", order)
	}
	issue := NewClient(c.Replicas[0].URL, rec).Call(ctx, "ticket", http.MethodPost, "/v1/auth/stream-tickets", buyer, "", nil)
	var tk struct{ Ticket string }
	if !issue.OK() || issue.Decode(&tk) != nil || tk.Ticket == "" {
		t.Fatalf("stream ticket: %s", issue)
	}
	if got := streamStatus(t, ctx, c.Replicas[2].URL+"/v1/orders/"+o.ID+"/events?ticket="+tk.Ticket); got != "confirmed" {
		t.Fatalf("the order's stream on another replica, opened with the ticket, ended at %q", got)
	}

	// The storefront through nginx.
	bctx := browsertest.New(t, time.Minute)
	requests := browsertest.RecordRequests(t, bctx)
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, actions...); err != nil {
			text, _ := chromedp.Run(bctx, chromedp.Evaluate[string]("document.body.innerText"))
			t.Fatalf("%s: %v\npage:\n%s", what, err, text)
		}
	}
	poll := func(what, expr string) {
		t.Helper()
		if _, err := chromedp.Run(bctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
			text, _ := chromedp.Run(bctx, chromedp.Evaluate[string]("document.body.innerText"))
			t.Fatalf("waiting for %s: %v\npage:\n%s", what, err, text)
		}
	}
	run("sign in and hold a ticket",
		chromedp.Navigate(c.URL()+"/"),
		chromedp.SendKeys(chromedp.CSS("#email"), buyer.Email),
		chromedp.SendKeys(chromedp.CSS("#password"), buyer.Password),
		chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("#who")),
		chromedp.Click(chromedp.CSS(`button[data-event="`+eventID+`"]`)),
		chromedp.Click(chromedp.CSS(`button[data-hold="`+ttID+`"]`)),
		chromedp.WaitVisible(chromedp.CSS("#checkout")),
		chromedp.Click(chromedp.CSS("#checkout")),
	)
	poll("confirmed", `document.getElementById("order-status").textContent === "confirmed"`)
	poll("the ticket's QR code", `document.querySelectorAll("#tickets svg").length === 1`)
	browsertest.Screenshot(t, bctx, "confirmed")
	if elsewhere := requests.Elsewhere(c.URL()); len(elsewhere) > 0 {
		t.Errorf("the storefront loaded from other hosts: %q", elsewhere)
	}
}

// streamStatus reads an order's event stream to its end and returns the last status.
func streamStatus(t *testing.T, ctx context.Context, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	last := ""
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			var ev struct{ Status string }
			if err := json.Unmarshal([]byte(data), &ev); err != nil {
				t.Fatal(fmt.Errorf("event %q: %w", data, err))
			}
			last = ev.Status
		}
	}
	return last
}
