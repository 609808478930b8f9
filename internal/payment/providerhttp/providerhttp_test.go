package providerhttp

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/onsale-dev/onsale/internal/payment"
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
