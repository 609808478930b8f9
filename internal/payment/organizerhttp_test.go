package payment_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/onsale-dev/onsale/internal/auth"
	"github.com/onsale-dev/onsale/internal/payment"
	"github.com/onsale-dev/onsale/internal/payment/paymenttest"
	"github.com/onsale-dev/onsale/internal/platform/apitest"
)

type eventOrdersBody struct {
	Items []struct {
		ID           string `json:"id"`
		Status       string `json:"status"`
		PaymentState string `json:"payment_state"`
		CustomerID   string `json:"customer_id"`
	} `json:"items"`
	NextCursor string `json:"next_cursor"`
}

func TestOrganizerReadsOfASale(t *testing.T) {
	t.Parallel()
	s := httpStack(t, paymenttest.Options{})
	tt := s.TicketType(10)
	ev := tt.EventID.String()
	var confirmed []string
	for range 3 {
		o := s.CheckoutOK(s.Customer, s.Hold(s.Customer, tt, 1).ID)
		s.WaitStatus(o.UUID(), payment.StatusConfirmed, 10*time.Second)
		confirmed = append(confirmed, o.ID)
	}
	s.Hold(s.NewCustomer(), tt, 2) // held, not ordered
	get := func(u paymenttest.User, path string) *apitest.Response {
		t.Helper()
		return s.Do(apitest.Request{Method: http.MethodGet, Path: path, Token: u.Token})
	}

	// Only the event's organizer.
	other := s.NewUser(auth.RoleOrganizer)
	for _, path := range []string{"/orders", "/attendees", "/sales"} {
		get(s.Customer, "/v1/events/"+ev+path).Expect(t, http.StatusForbidden, "forbidden")
		get(other, "/v1/events/"+ev+path).Expect(t, http.StatusForbidden, "not-event-owner")
		s.Do(apitest.Request{Method: http.MethodGet, Path: "/v1/events/" + ev + path}).Expect(t, http.StatusUnauthorized, "")
	}
	get(s.Organizer, "/v1/events/not-an-id/orders").Expect(t, http.StatusBadRequest, "")
	get(s.Organizer, "/v1/events/"+ev+"/orders?status=lost").Expect(t, http.StatusBadRequest, "")
	get(s.Organizer, "/v1/events/"+ev+"/orders?limit=0").Expect(t, http.StatusBadRequest, "")
	get(s.Organizer, "/v1/events/"+ev+"/orders?cursor=bogus").Expect(t, http.StatusBadRequest, "")
	get(s.Organizer, "/v1/events/6d1f1e0e-2a3b-4c5d-8e9f-0a1b2c3d4e5f/sales").Expect(t, http.StatusNotFound, "event-not-found")

	// Orders: pages, newest first, filtered by state.
	var page eventOrdersBody
	get(s.Organizer, "/v1/events/"+ev+"/orders?limit=2").Expect(t, http.StatusOK, "").JSON(t, &page)
	if len(page.Items) != 2 || page.Items[0].ID != confirmed[2] || page.NextCursor == "" {
		t.Fatalf("first page %+v, want the two newest orders and a cursor", page)
	}
	var rest eventOrdersBody
	get(s.Organizer, "/v1/events/"+ev+"/orders?limit=2&cursor="+page.NextCursor).Expect(t, http.StatusOK, "").JSON(t, &rest)
	if len(rest.Items) != 1 || rest.Items[0].ID != confirmed[0] || rest.NextCursor != "" {
		t.Fatalf("second page %+v, want the oldest order and no cursor", rest)
	}
	if it := rest.Items[0]; it.PaymentState != "confirmed" || it.CustomerID != s.Customer.ID.String() {
		t.Fatalf("order %+v, want confirmed, of the customer", it)
	}
	var none eventOrdersBody
	get(s.Organizer, "/v1/events/"+ev+"/orders?status=pending").Expect(t, http.StatusOK, "").JSON(t, &none)
	if len(none.Items) != 0 {
		t.Fatalf("pending orders %+v, want none", none)
	}

	// Attendees, and the CSV exports.
	var attendees struct {
		Items []struct {
			Code        string     `json:"code"`
			OrderID     string     `json:"order_id"`
			CheckedInAt *time.Time `json:"checked_in_at"`
		} `json:"items"`
	}
	get(s.Organizer, "/v1/events/"+ev+"/attendees").Expect(t, http.StatusOK, "").JSON(t, &attendees)
	if len(attendees.Items) != 3 || attendees.Items[0].Code == "" {
		t.Fatalf("attendees %+v, want the three tickets with codes", attendees)
	}
	s.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/checkins", Token: s.Staff.Token,
		Body: map[string]string{"code": attendees.Items[0].Code}}).Expect(t, http.StatusOK, "")
	csv := get(s.Organizer, "/v1/events/"+ev+"/attendees?format=csv").Expect(t, http.StatusOK, "")
	if ct := csv.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
		t.Fatalf("CSV export Content-Type %q", ct)
	}
	lines := strings.Split(strings.TrimSpace(string(csv.Body)), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "ticket_id,code,") || !strings.Contains(string(csv.Body), attendees.Items[0].Code) {
		t.Fatalf("attendees CSV:\n%s", csv.Body)
	}
	orders := s.Do(apitest.Request{Method: http.MethodGet, Path: "/v1/events/" + ev + "/orders", Token: s.Organizer.Token,
		Header: map[string]string{"Accept": "text/csv"}}).Expect(t, http.StatusOK, "")
	if !strings.Contains(string(orders.Body), confirmed[1]+",") {
		t.Fatalf("orders CSV (Accept: text/csv) lacks order %s:\n%s", confirmed[1], orders.Body)
	}
	get(other, "/v1/events/"+ev+"/orders?format=csv").Expect(t, http.StatusForbidden, "not-event-owner")

	// The summary.
	var sum struct {
		Totals struct {
			Capacity, Sold, Held, Available int
			Confirmed                       int   `json:"orders_confirmed"`
			Revenue                         int64 `json:"revenue_cents"`
			CheckedIn                       int   `json:"checked_in"`
		} `json:"totals"`
		TicketTypes []struct {
			TicketTypeID string `json:"ticket_type_id"`
		} `json:"ticket_types"`
	}
	get(s.Organizer, "/v1/events/"+ev+"/sales").Expect(t, http.StatusOK, "").JSON(t, &sum)
	tot := sum.Totals
	if tot.Capacity != 10 || tot.Sold != 3 || tot.Held != 2 || tot.Available != 5 || tot.Confirmed != 3 || tot.Revenue != 7500 ||
		tot.CheckedIn != 1 || len(sum.TicketTypes) != 1 || sum.TicketTypes[0].TicketTypeID != tt.ID.String() {
		t.Fatalf("summary %+v", sum)
	}
}

func TestOrganizerSalesStream(t *testing.T) {
	t.Parallel()
	s := httpStack(t, paymenttest.Options{})
	tt := s.TicketType(10)
	path := "/v1/events/" + tt.EventID.String() + "/sales/events"
	s.Do(apitest.Request{Method: http.MethodGet, Path: path, Token: s.Customer.Token}).Expect(t, http.StatusForbidden, "forbidden")
	s.Do(apitest.Request{Method: http.MethodGet, Path: path + "?ticket=" + s.Organizer.Token}).Expect(t, http.StatusUnauthorized, "invalid-token")

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.Server.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Organizer.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("sales stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	sold := make(chan int, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var ev struct {
				Totals struct{ Sold int } `json:"totals"`
			}
			if json.Unmarshal([]byte(data), &ev) == nil {
				sold <- ev.Totals.Sold
			}
		}
		close(sold)
	}()
	if n := <-sold; n != 0 {
		t.Fatalf("first event: sold %d, want 0", n)
	}
	o := s.CheckoutOK(s.Customer, s.Hold(s.Customer, tt, 2).ID)
	s.WaitStatus(o.UUID(), payment.StatusConfirmed, 10*time.Second)
	deadline := time.After(10 * time.Second)
	for {
		select {
		case n, ok := <-sold:
			if !ok {
				t.Fatal("the stream ended before the sale showed")
			}
			if n == 2 {
				return
			}
		case <-deadline:
			t.Fatal("the stream never showed the two tickets sold")
		}
	}
}
