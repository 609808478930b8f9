package payment_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/payment"
	"github.com/onsale-dev/onsale/internal/payment/paymenttest"
	"github.com/onsale-dev/onsale/internal/platform/apitest"
	"github.com/onsale-dev/onsale/internal/platform/clock"
)

// Every response these tests see is checked against api/openapi.yaml by apitest. The worker
// runs: an order wrongly created by a bad request would be charged, and the ledger would show it.

func httpStack(t *testing.T, o paymenttest.Options) *paymenttest.Stack {
	t.Helper()
	if o.Mode == (paymenttest.Options{}).Mode {
		o.Mode = quick()
	}
	return paymenttest.NewStack(t, o)
}

// nothingElse fails unless the customers' orders are exactly want (by id) and the provider was
// asked to charge exactly those orders: no bad request created or charged anything.
func nothingElse(t *testing.T, s *paymenttest.Stack, customers []paymenttest.User, want ...uuid.UUID) {
	t.Helper()
	for _, id := range want {
		o := s.Order(id)
		if !o.Status.Terminal() {
			s.WaitStatus(id, payment.StatusConfirmed, 10*time.Second)
		}
	}
	var got []uuid.UUID
	for _, c := range customers {
		for _, o := range s.Orders(c.ID) {
			got = append(got, o.ID)
		}
	}
	slices.SortFunc(got, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
	want = slices.Clone(want)
	slices.SortFunc(want, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
	if !slices.Equal(got, want) {
		t.Fatalf("orders %v, want %v", got, want)
	}
	var charged []uuid.UUID
	for _, e := range s.Sim.Ledger(true).Entries {
		charged = append(charged, uuid.MustParse(e.Key))
	}
	slices.SortFunc(charged, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
	if !slices.Equal(charged, want) {
		t.Fatalf("charged %v, want %v", charged, want)
	}
}

func TestCreateOrderBadInput(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(time.Now().UTC().Truncate(time.Millisecond))
	s := httpStack(t, paymenttest.Options{Clock: clk})
	cust, other := s.Customer, s.Customer2
	tt := s.TicketType(100)
	h := s.Hold(cust, tt, 2)
	everyone := []paymenttest.User{cust, other}

	// Missing or oversized Idempotency-Key.
	s.Checkout(cust, h.ID, "").Expect(t, http.StatusBadRequest, "")
	s.Checkout(cust, h.ID, strings.Repeat("k", 256)).Expect(t, http.StatusBadRequest, "")
	s.Checkout(cust, h.ID, "bad key with spaces").Expect(t, http.StatusBadRequest, "")
	// Not a customer, or no token.
	s.Checkout(s.Staff, h.ID, "k-staff").Expect(t, http.StatusForbidden, "")
	s.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/orders", Body: map[string]string{"hold_id": h.ID},
		Header: map[string]string{"Idempotency-Key": "k"}}).Expect(t, http.StatusUnauthorized, "")
	// Someone else's hold is as good as none.
	s.Checkout(other, h.ID, "k-other").Expect(t, http.StatusNotFound, "hold-not-found")
	// An unknown but well-formed hold id, on a real and on an unknown ticket type.
	s.Checkout(cust, inventory.NewHoldID(tt.ID), "k-unknown").Expect(t, http.StatusNotFound, "hold-not-found")
	s.Checkout(cust, inventory.NewHoldID(uuid.New()), "k-unknown2").Expect(t, http.StatusNotFound, "hold-not-found")
	// Malformed hold ids and bodies.
	for _, bad := range []string{"", "short", strings.Repeat("!", 43), h.ID + "A", strings.Repeat("A", 500)} {
		if r := s.Checkout(cust, bad, "k-malformed"); r.Status != http.StatusBadRequest && r.Status != http.StatusUnprocessableEntity {
			t.Fatalf("hold id %q: %d %s", bad, r.Status, r.Body)
		}
	}
	for _, body := range []any{`{"hold_id":`, `[]`, map[string]any{"hold_id": 42}, map[string]any{"hold_id": h.ID, "extra": 1}, map[string]any{}} {
		r := s.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/orders", Token: cust.Token, Body: body,
			Header: map[string]string{"Idempotency-Key": "k-body"}})
		if r.Status != http.StatusBadRequest && r.Status != http.StatusUnprocessableEntity {
			t.Fatalf("body %v: %d %s", body, r.Status, r.Body)
		}
	}
	// A released hold.
	released := s.Hold(cust, tt, 1)
	if err := s.Inv.ReleaseHold(context.Background(), released.ID); err != nil {
		t.Fatal(err)
	}
	s.Checkout(cust, released.ID, "k-released").Expect(t, http.StatusConflict, "hold-not-usable")
	nothingElse(t, s, everyone)

	// The one good order; then the same hold again with a new key.
	good := s.CheckoutOK(cust, h.ID)
	s.Checkout(cust, h.ID, "k-again").Expect(t, http.StatusConflict, "hold-already-ordered")
	s.WaitStatus(good.UUID(), payment.StatusConfirmed, 10*time.Second)
	s.Checkout(cust, h.ID, "k-after-commit").Expect(t, http.StatusConflict, "hold-already-ordered")

	// An expired hold (its 2 minutes pass without a checkout).
	expiring := s.Hold(cust, tt, 1)
	clk.Advance(s.InvCfg.HoldTTL + time.Second)
	s.Checkout(cust, expiring.ID, "k-expired").Expect(t, http.StatusConflict, "hold-not-usable")

	nothingElse(t, s, everyone, good.UUID())
	// A refused key was not spent: it works for a good request.
	h2 := s.Hold(cust, tt, 1)
	r := s.Checkout(cust, h2.ID, "k-other").Expect(t, http.StatusAccepted, "")
	if r.Header.Get("Idempotent-Replayed") != "" {
		t.Fatal("a first use of a key was marked replayed")
	}
	var second paymenttest.OrderJSON
	r.JSON(t, &second)
	nothingElse(t, s, everyone, good.UUID(), second.UUID())
}

func TestCreateOrderIdempotency(t *testing.T) {
	t.Parallel()
	s := httpStack(t, paymenttest.Options{})
	tt := s.TicketType(100)
	h := s.Hold(s.Customer, tt, 2)
	r := s.Checkout(s.Customer, h.ID, "key-1").Expect(t, http.StatusAccepted, "")
	var o paymenttest.OrderJSON
	r.JSON(t, &o)
	if o.Status != "pending" || o.HoldID != h.ID || o.AmountCents != 5000 || o.Currency != "EUR" || o.Quantity != 2 ||
		o.TicketTypeID != tt.ID.String() || o.CreatedAt.IsZero() || len(o.Tickets) != 0 {
		t.Fatalf("order %+v", o)
	}
	if loc := r.Header.Get("Location"); loc != "/v1/orders/"+o.ID {
		t.Fatalf("Location %q", loc)
	}
	// The same key and hold: the same order, marked replayed (also after it was paid).
	for range 2 {
		again := s.Checkout(s.Customer, h.ID, "key-1").Expect(t, http.StatusAccepted, "")
		var o2 paymenttest.OrderJSON
		again.JSON(t, &o2)
		if o2.ID != o.ID || again.Header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay: %+v, Idempotent-Replayed %q", o2, again.Header.Get("Idempotent-Replayed"))
		}
		s.WaitStatus(o.UUID(), payment.StatusConfirmed, 10*time.Second)
	}
	// The same key with another hold: refused, nothing made.
	h2 := s.Hold(s.Customer, tt, 1)
	s.Checkout(s.Customer, h2.ID, "key-1").Expect(t, http.StatusUnprocessableEntity, "idempotency-key-reused")
	// Keys belong to the customer: another one may use the same key for their own hold.
	h3 := s.Hold(s.Customer2, tt, 1)
	other := s.Checkout(s.Customer2, h3.ID, "key-1").Expect(t, http.StatusAccepted, "")
	var o3 paymenttest.OrderJSON
	other.JSON(t, &o3)
	if o3.ID == o.ID || other.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("another customer's key replayed %s", o3.ID)
	}
	nothingElse(t, s, []paymenttest.User{s.Customer, s.Customer2}, o.UUID(), o3.UUID())
	if e, _ := s.Entry(o.ID); e.ChargeCalls != 1 {
		t.Fatalf("the replayed order was charged %d times", e.ChargeCalls)
	}
}

func TestGetOrder(t *testing.T) {
	t.Parallel()
	s := httpStack(t, paymenttest.Options{})
	tt := s.TicketType(100)
	o := s.CheckoutOK(s.Customer, s.Hold(s.Customer, tt, 2).ID)
	s.WaitStatus(o.UUID(), payment.StatusConfirmed, 10*time.Second)
	r, got := s.GetOrder(s.Customer, o.ID)
	r.Expect(t, http.StatusOK, "")
	if got.ID != o.ID || got.Status != "confirmed" || got.StatusDetail != "" || len(got.Tickets) != 2 || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("order %+v", got)
	}
	for _, tk := range got.Tickets {
		if tk.OrderID != o.ID || tk.TicketTypeID != tt.ID.String() || tk.EventID != tt.EventID.String() || tk.Code == "" {
			t.Fatalf("ticket %+v", tk)
		}
		if tid, eid, err := s.Signer.Verify(tk.Code); err != nil || tid.String() != tk.ID || eid.String() != tk.EventID {
			t.Fatalf("ticket code: %s %s %v", tid, eid, err)
		}
	}
	// Another customer's order, an unknown one and a malformed id.
	r, _ = s.GetOrder(s.Customer2, o.ID)
	r.Expect(t, http.StatusNotFound, "order-not-found")
	r, _ = s.GetOrder(s.Customer, uuid.NewString())
	r.Expect(t, http.StatusNotFound, "order-not-found")
	r, _ = s.GetOrder(s.Customer, "not-a-uuid")
	r.Expect(t, http.StatusBadRequest, "")
	r, _ = s.GetOrder(s.Staff, o.ID)
	r.Expect(t, http.StatusForbidden, "")
	s.Do(apitest.Request{Method: http.MethodGet, Path: "/v1/orders/" + o.ID}).Expect(t, http.StatusUnauthorized, "")
	// The event stream of someone else's order is not theirs either.
	s.Do(apitest.Request{Method: http.MethodGet, Path: "/v1/orders/" + o.ID + "/events", Token: s.Customer2.Token}).
		Expect(t, http.StatusNotFound, "order-not-found")
	s.Do(apitest.Request{Method: http.MethodGet, Path: "/v1/orders/nope/events", Token: s.Customer.Token}).
		Expect(t, http.StatusBadRequest, "")
}

func TestListOrdersPaginated(t *testing.T) {
	t.Parallel()
	s := httpStack(t, paymenttest.Options{})
	tt := s.TicketType(100)
	var made []string
	for range 5 {
		o := s.CheckoutOK(s.Customer, s.Hold(s.Customer, tt, 1).ID)
		// A checked-out hold counts among the customer's live holds (4 at most) until its order
		// is confirmed: on a busy machine the fifth hold came before the first confirmation.
		s.WaitStatus(o.UUID(), payment.StatusConfirmed, 10*time.Second)
		made = append(made, o.ID)
	}
	s.CheckoutOK(s.Customer2, s.Hold(s.Customer2, tt, 1).ID)
	type page struct {
		Items      []paymenttest.OrderJSON `json:"items"`
		NextCursor string                  `json:"next_cursor"`
	}
	list := func(u paymenttest.User, query string) (*apitest.Response, page) {
		t.Helper()
		r := s.Do(apitest.Request{Method: http.MethodGet, Path: "/v1/orders" + query, Token: u.Token})
		var p page
		if r.Status == http.StatusOK {
			r.JSON(t, &p)
		}
		return r, p
	}
	r, all := list(s.Customer, "")
	r.Expect(t, http.StatusOK, "")
	if len(all.Items) != 5 || all.NextCursor != "" {
		t.Fatalf("first page of all: %d items, cursor %q", len(all.Items), all.NextCursor)
	}
	for i := 1; i < len(all.Items); i++ {
		if all.Items[i].CreatedAt.After(all.Items[i-1].CreatedAt) {
			t.Fatal("not newest first")
		}
	}
	var seen []string
	query := "?limit=2"
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		r, p := list(s.Customer, query)
		r.Expect(t, http.StatusOK, "")
		if len(p.Items) > 2 {
			t.Fatalf("page of %d with limit 2", len(p.Items))
		}
		for _, o := range p.Items {
			seen = append(seen, o.ID)
		}
		if p.NextCursor == "" {
			break
		}
		query = "?limit=2&cursor=" + url.QueryEscape(p.NextCursor)
	}
	want := make([]string, len(all.Items))
	for i, o := range all.Items {
		want[i] = o.ID
	}
	if !slices.Equal(seen, want) {
		t.Fatalf("paged %v, want %v", seen, want)
	}
	slices.Sort(made)
	slices.Sort(seen)
	if !slices.Equal(made, seen) {
		t.Fatalf("listed %v, made %v", seen, made)
	}
	r, p := list(s.Customer2, "")
	r.Expect(t, http.StatusOK, "")
	if len(p.Items) != 1 {
		t.Fatalf("other customer sees %d orders", len(p.Items))
	}
	r, p = list(s.NewCustomer(), "")
	r.Expect(t, http.StatusOK, "")
	if len(p.Items) != 0 || p.NextCursor != "" {
		t.Fatalf("a new customer sees %+v", p)
	}
	for _, q := range []string{"?limit=0", "?limit=101", "?limit=x", "?cursor=%21%21", "?cursor=" + url.QueryEscape("bm90LWEtY3Vyc29y")} {
		r, _ := list(s.Customer, q)
		r.Expect(t, http.StatusBadRequest, "")
	}
	s.Do(apitest.Request{Method: http.MethodGet, Path: "/v1/orders"}).Expect(t, http.StatusUnauthorized, "")
}

func TestCheckIn(t *testing.T) {
	t.Parallel()
	s := httpStack(t, paymenttest.Options{})
	tt := s.TicketType(100)
	o := s.CheckoutOK(s.Customer, s.Hold(s.Customer, tt, 2).ID)
	s.WaitStatus(o.UUID(), payment.StatusConfirmed, 10*time.Second)
	_, got := s.GetOrder(s.Customer, o.ID)
	code := got.Tickets[0].Code
	checkIn := func(u paymenttest.User, code string) *apitest.Response {
		t.Helper()
		return s.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/checkins", Token: u.Token, Body: map[string]string{"code": code}})
	}

	// Only staff.
	checkIn(s.Customer, code).Expect(t, http.StatusForbidden, "")
	checkIn(s.Organizer, code).Expect(t, http.StatusForbidden, "")
	s.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/checkins", Body: map[string]string{"code": code}}).Expect(t, http.StatusUnauthorized, "")

	// Forged codes.
	last := code[len(code)-1]
	swapped := byte('A')
	if last == 'A' {
		swapped = 'B'
	}
	_, otherKeys := newKeys(t, nil)
	tk := payment.Ticket{ID: uuid.MustParse(got.Tickets[0].ID), EventID: tt.EventID}
	for name, bad := range map[string]string{
		"last character changed": code[:len(code)-1] + string(swapped),
		"another key":            payment.NewTicketSigner(otherKeys).Code(tk),
		"garbage":                "garbage",
		"another ticket's ids":   strings.Replace(code, strings.Split(code, ".")[1], strings.Split(got.Tickets[1].Code, ".")[1], 1),
	} {
		if r := checkIn(s.Staff, bad); r.Status != http.StatusBadRequest || !strings.HasSuffix(r.ProblemType(), "invalid-ticket-code") {
			t.Fatalf("%s: %d %s", name, r.Status, r.Body)
		}
	}
	for _, body := range []any{map[string]string{"code": ""}, map[string]string{"code": strings.Repeat("A", 513)}, map[string]any{}, `{"code":`} {
		r := s.Do(apitest.Request{Method: http.MethodPost, Path: "/v1/checkins", Token: s.Staff.Token, Body: body})
		if r.Status != http.StatusBadRequest && r.Status != http.StatusUnprocessableEntity {
			t.Fatalf("body %v: %d %s", body, r.Status, r.Body)
		}
	}
	// A genuine signature naming a sold ticket under another event: refused, and the ticket is
	// not spent by it.
	checkIn(s.Staff, s.Signer.Code(payment.Ticket{ID: tk.ID, EventID: uuid.New()})).Expect(t, http.StatusBadRequest, "invalid-ticket-code")
	// A genuine signature on a ticket that was never sold.
	unsold := s.Signer.Code(payment.Ticket{ID: uuid.New(), EventID: tt.EventID})
	checkIn(s.Staff, unsold).Expect(t, http.StatusNotFound, "ticket-not-found")

	// The first scan admits; every later one is 409 with the first admission's time.
	r := checkIn(s.Staff, code).Expect(t, http.StatusOK, "")
	var first struct {
		Ticket      paymenttest.TicketJSON `json:"ticket"`
		CheckedInAt time.Time              `json:"checked_in_at"`
	}
	r.JSON(t, &first)
	if first.Ticket.ID != got.Tickets[0].ID || first.Ticket.OrderID != o.ID || first.CheckedInAt.IsZero() {
		t.Fatalf("check-in %+v", first)
	}
	for _, staff := range []paymenttest.User{s.Staff, s.NewUser("staff")} {
		again := checkIn(staff, code).Expect(t, http.StatusConflict, "already-checked-in")
		var p map[string]any
		again.JSON(t, &p)
		at, err := time.Parse(time.RFC3339Nano, p["checked_in_at"].(string))
		if err != nil || !at.Equal(first.CheckedInAt) {
			t.Fatalf("409 checked_in_at %v (%v), want %s", p["checked_in_at"], err, first.CheckedInAt)
		}
	}
	// The order's other ticket is admitted on its own.
	checkIn(s.Staff, got.Tickets[1].Code).Expect(t, http.StatusOK, "")
}

func TestTicketKeysArePublicOnly(t *testing.T) {
	t.Parallel()
	s := httpStack(t, paymenttest.Options{})
	r := s.Do(apitest.Request{Method: http.MethodGet, Path: "/.well-known/ticket-keys.json"}).Expect(t, http.StatusOK, "")
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/jwk-set+json") {
		t.Fatalf("Content-Type %q", ct)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	r.JSON(t, &set)
	if len(set.Keys) != 1 {
		t.Fatalf("%d keys", len(set.Keys))
	}
	kid, _ := s.Keys.SigningKey()
	for _, k := range set.Keys {
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
			if _, ok := k[private]; ok {
				t.Fatalf("published key has private member %q: %v", private, k)
			}
		}
		if k["kid"] != kid || k["kty"] != "OKP" || k["crv"] != "Ed25519" || k["x"] == "" {
			t.Fatalf("key %v", k)
		}
	}
}

// TestRefusedCheckoutChangesNothing: a checkout the server refuses must not move the hold's
// expiry (repeating it would keep tickets off sale without paying), and a checked-out hold is no
// longer the customer's to release.
func TestRefusedCheckoutChangesNothing(t *testing.T) {
	t.Parallel()
	for _, backend := range []paymenttest.Backend{paymenttest.Memory, paymenttest.Real} {
		t.Run(backend.String(), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clk := clock.NewFake(time.Now().UTC().Truncate(time.Millisecond))
			s := httpStack(t, paymenttest.Options{Backend: backend, Clock: clk, NoWorker: true})
			cust := s.Customer
			tt := s.TicketType(100)
			a, b := s.Hold(cust, tt, 1), s.Hold(cust, tt, 1)
			expiry := func(id string) time.Time {
				t.Helper()
				h, err := s.Inv.GetHold(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				return h.ExpiresAt
			}
			s.Checkout(cust, a.ID, "hardening-k").Expect(t, http.StatusAccepted, "")
			paid := expiry(a.ID)
			if !paid.After(a.ExpiresAt) {
				t.Fatalf("the checkout did not extend the hold to the payment window: %s", paid)
			}
			bBefore := expiry(b.ID)
			for range 3 {
				clk.Advance(10 * time.Second)
				// The key already used for hold a, now with hold b.
				s.Checkout(cust, b.ID, "hardening-k").Expect(t, http.StatusUnprocessableEntity, "idempotency-key-reused")
				// Hold a again under another key.
				s.Checkout(cust, a.ID, "hardening-k2").Expect(t, http.StatusConflict, "hold-already-ordered")
			}
			if got := expiry(b.ID); !got.Equal(bBefore) {
				t.Fatalf("refused checkouts moved hold b's expiry from %s to %s", bBefore, got)
			}
			if got := expiry(a.ID); !got.Equal(paid) {
				t.Fatalf("refused checkouts moved hold a's expiry from %s to %s", paid, got)
			}
			// The checked-out hold stays with its order.
			if err := s.Inv.ReleaseFor(ctx, cust.ID, a.ID); !errors.Is(err, inventory.ErrHoldOrdered) {
				t.Fatalf("the customer releases a checked-out hold: %v, want hold-ordered", err)
			}
			// Hold b is still the customer's to check out, with a fresh key.
			s.Checkout(cust, b.ID, "hardening-k3").Expect(t, http.StatusAccepted, "")
			nothingElseBut(t, s, 2)
		})
	}
}

// nothingElseBut fails unless the stack's customer has exactly n orders.
func nothingElseBut(t *testing.T, s *paymenttest.Stack, n int) {
	t.Helper()
	if got := len(s.Orders(s.Customer.ID)); got != n {
		t.Fatalf("%d orders, want %d", got, n)
	}
}
