package providerhttp

import (
	"context"
	"errors"
	"net"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/onsale-dev/onsale/internal/payment"
	"github.com/onsale-dev/onsale/internal/payment/simulated"
)

// TestErrorsHideCredentials: a provider that cannot be reached gives an error (which the worker
// logs) without the credentials of ONSALE_PROVIDER_URL, a token given as the user included.
func TestErrorsHideCredentials(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for _, tc := range []struct{ base, secret string }{
		{"http://acct:Pr0vPw@" + addr, "Pr0vPw"},
		{"http://Tok3nOnly@" + addr, "Tok3nOnly"},
	} {
		_, err := New(tc.base).Charge(context.Background(), payment.ChargeRequest{IdempotencyKey: "k", AmountCents: 1, Currency: "EUR"})
		if err == nil {
			t.Fatalf("%s: charged", tc.base)
		}
		if strings.Contains(err.Error(), tc.secret) {
			t.Errorf("the error shows %s: %v", tc.secret, err)
		}
		if !strings.Contains(err.Error(), addr) {
			t.Errorf("the error does not name the provider: %v", err)
		}
	}
}

// TestAnswersOverTheWire: the client reads each of the simulated provider's answers as the
// in-process provider gives it: a charge, a pending charge (asked again later) and a decline.
func TestAnswersOverTheWire(t *testing.T) {
	t.Parallel()
	sim := simulated.New(simulated.Mode{PendingAmountCents: 700})
	srv := httptest.NewServer(simulated.Handler(sim))
	defer srv.Close()
	c := New(srv.URL)
	ctx := context.Background()
	ch, err := c.Charge(ctx, payment.ChargeRequest{IdempotencyKey: "a", AmountCents: 500, Currency: "EUR"})
	if err != nil || ch.ID == "" || ch.AmountCents != 500 || ch.Currency != "EUR" {
		t.Fatalf("charge: %+v, %v", ch, err)
	}
	if _, err := c.Charge(ctx, payment.ChargeRequest{IdempotencyKey: "b", AmountCents: 700, Currency: "EUR"}); !errors.Is(err, payment.ErrChargePending) {
		t.Fatalf("a charge of the pending amount: %v, want ErrChargePending", err)
	}
	sim.SetMode(simulated.Mode{})
	if ch, err := c.Charge(ctx, payment.ChargeRequest{IdempotencyKey: "b", AmountCents: 700, Currency: "EUR"}); err != nil || ch.ID == "" {
		t.Fatalf("the same charge once settled: %+v, %v", ch, err)
	}
	sim.SetMode(simulated.Mode{DeclineRate: 1})
	if _, err := c.Charge(ctx, payment.ChargeRequest{IdempotencyKey: "c", AmountCents: 500, Currency: "EUR"}); !errors.Is(err, payment.ErrDeclined) {
		t.Fatalf("a declined charge: %v, want ErrDeclined", err)
	}
	if l := sim.Ledger(false); l.Charges != 2 || l.Declines != 1 || l.Pending != 1 {
		t.Fatalf("ledger %+v", l)
	}
}
