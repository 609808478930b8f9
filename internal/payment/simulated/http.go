package simulated

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/payment"
)

// The wire format of the provider API, shared with payment/providerhttp.

// ChargeBody is the body of POST /charges.
type ChargeBody struct {
	IdempotencyKey string    `json:"idempotency_key"`
	AmountCents    int64     `json:"amount_cents"`
	Currency       string    `json:"currency"`
	CustomerID     uuid.UUID `json:"customer_id"`
	Description    string    `json:"description"`
}

// RefundBody is the body of POST /refunds.
type RefundBody struct {
	IdempotencyKey string `json:"idempotency_key"`
	ChargeKey      string `json:"charge_key"`
	AmountCents    int64  `json:"amount_cents"`
}

// ModeBody is the body of PUT /mode and the answer of GET /mode; durations in milliseconds.
type ModeBody struct {
	LatencyMS          int64   `json:"latency_ms"`
	SlowMS             int64   `json:"slow_ms"`
	DeclineRate        float64 `json:"decline_rate"`
	ErrorRate          float64 `json:"error_rate"`
	Outage             bool    `json:"outage"`
	Paused             bool    `json:"paused"`
	PendingAmountCents int64   `json:"pending_amount_cents"`
}

// ModeOf converts a Mode for the wire.
func ModeOf(m Mode) ModeBody {
	return ModeBody{LatencyMS: m.Latency.Milliseconds(), SlowMS: m.Slow.Milliseconds(), DeclineRate: m.DeclineRate, ErrorRate: m.ErrorRate, Outage: m.Outage, Paused: m.Paused,
		PendingAmountCents: m.PendingAmountCents}
}

// Mode converts a wire mode.
func (b ModeBody) Mode() Mode {
	return Mode{Latency: time.Duration(b.LatencyMS) * time.Millisecond, Slow: time.Duration(b.SlowMS) * time.Millisecond,
		DeclineRate: b.DeclineRate, ErrorRate: b.ErrorRate, Outage: b.Outage, Paused: b.Paused,
		PendingAmountCents: b.PendingAmountCents}
}

// Handler serves the provider over HTTP:
//
//	POST /charges  ChargeBody → 201 {id, amount_cents, currency} | 202 pending | 402 declined | 503 unavailable
//	POST /refunds  RefundBody → 201 {id, charge_id} | 404 no such charge | 409 more than was charged | 503 unavailable
//	GET  /ledger[?entries=1]  → Ledger
//	GET  /mode, PUT /mode ModeBody
//	POST /reset    forget the ledger
func Handler(p *Provider) http.Handler {
	mux := http.NewServeMux()
	write := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	fail := func(w http.ResponseWriter, status int, code string) {
		write(w, status, map[string]string{"error": code})
	}
	mux.HandleFunc("POST /charges", func(w http.ResponseWriter, r *http.Request) {
		var b ChargeBody
		if json.NewDecoder(r.Body).Decode(&b) != nil || b.IdempotencyKey == "" {
			fail(w, http.StatusBadRequest, "bad_request")
			return
		}
		c, err := p.Charge(r.Context(), payment.ChargeRequest{IdempotencyKey: b.IdempotencyKey, AmountCents: b.AmountCents,
			Currency: b.Currency, CustomerID: b.CustomerID, Description: b.Description})
		switch {
		case errors.Is(err, payment.ErrDeclined):
			fail(w, http.StatusPaymentRequired, "declined")
		case errors.Is(err, payment.ErrChargePending):
			write(w, http.StatusAccepted, map[string]string{"status": "pending"})
		case err != nil:
			fail(w, http.StatusServiceUnavailable, "unavailable")
		default:
			write(w, http.StatusCreated, map[string]any{"id": c.ID, "amount_cents": c.AmountCents, "currency": c.Currency})
		}
	})
	mux.HandleFunc("POST /refunds", func(w http.ResponseWriter, r *http.Request) {
		var b RefundBody
		if json.NewDecoder(r.Body).Decode(&b) != nil || b.IdempotencyKey == "" || b.ChargeKey == "" {
			fail(w, http.StatusBadRequest, "bad_request")
			return
		}
		rf, err := p.Refund(r.Context(), payment.ProviderRefund{IdempotencyKey: b.IdempotencyKey, ChargeKey: b.ChargeKey, AmountCents: b.AmountCents})
		switch {
		case errors.Is(err, payment.ErrNoCharge):
			fail(w, http.StatusNotFound, "no_charge")
		case errors.Is(err, payment.ErrRefundExceedsCharge):
			fail(w, http.StatusConflict, "refund_exceeds_charge")
		case err != nil:
			fail(w, http.StatusServiceUnavailable, "unavailable")
		default:
			write(w, http.StatusCreated, map[string]any{"id": rf.ID, "charge_id": rf.ChargeID})
		}
	})
	mux.HandleFunc("GET /ledger", func(w http.ResponseWriter, r *http.Request) {
		write(w, http.StatusOK, p.Ledger(r.URL.Query().Get("entries") == "1"))
	})
	mux.HandleFunc("GET /mode", func(w http.ResponseWriter, r *http.Request) {
		write(w, http.StatusOK, ModeOf(p.Mode()))
	})
	mux.HandleFunc("PUT /mode", func(w http.ResponseWriter, r *http.Request) {
		var b ModeBody
		if json.NewDecoder(r.Body).Decode(&b) != nil || b.DeclineRate < 0 || b.DeclineRate > 1 || b.ErrorRate < 0 || b.ErrorRate > 1 || b.PendingAmountCents < 0 {
			fail(w, http.StatusBadRequest, "bad_request")
			return
		}
		p.SetMode(b.Mode())
		write(w, http.StatusOK, ModeOf(p.Mode()))
	})
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, r *http.Request) {
		p.Reset()
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}
