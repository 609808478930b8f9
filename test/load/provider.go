package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// provider talks to the simulated payment provider's API (the debug listener's /provider/ or
// `server admin simulate-provider`): GET /ledger, GET and PUT /mode.
type provider struct {
	base string
	hc   *http.Client
}

func newProvider(base string) *provider {
	if base == "" {
		return nil
	}
	return &provider{base: base, hc: &http.Client{Timeout: 30 * time.Second}}
}

// ledgerEntry is the ledger's record of one charge key (the order id).
type ledgerEntry struct {
	Key           string `json:"key"`
	AmountCents   int64  `json:"amount_cents"`
	Declined      bool   `json:"declined"`
	Refunded      bool   `json:"refunded"`
	RefundedCents int64  `json:"refunded_cents"`
	Refunds       int    `json:"refunds"`
	ChargeCalls   int    `json:"charge_calls"`
}

type ledger struct {
	Charges     int           `json:"charges"`
	Refunds     int           `json:"refunds"`
	OverRefunds int           `json:"over_refunds"`
	Calls       int           `json:"calls"`
	Entries     []ledgerEntry `json:"entries"`
}

func (p *provider) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.hc.Do(req)
	if err != nil {
		return fmt.Errorf("provider %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("provider %s %s: HTTP %d %s", method, path, resp.StatusCode, clip(data))
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// Ledger reads the ledger with one entry per charge key.
func (p *provider) Ledger(ctx context.Context) (ledger, error) {
	var l ledger
	err := p.call(ctx, http.MethodGet, "/ledger?entries=1", nil, &l)
	return l, err
}

// Mode reads the provider's behaviour as the provider sends it (fields kept as they are).
func (p *provider) Mode(ctx context.Context) (map[string]any, error) {
	var m map[string]any
	err := p.call(ctx, http.MethodGet, "/mode", nil, &m)
	return m, err
}

// SetPaused pauses (calls wait) or resumes the provider, keeping the rest of its mode.
func (p *provider) SetPaused(ctx context.Context, paused bool) error {
	m, err := p.Mode(ctx)
	if err != nil {
		return err
	}
	m["paused"] = paused
	return p.call(ctx, http.MethodPut, "/mode", m, nil)
}

// LatencyMS is the provider's configured latency per call.
func (p *provider) LatencyMS(ctx context.Context) (float64, error) {
	m, err := p.Mode(ctx)
	if err != nil {
		return 0, err
	}
	lat, _ := m["latency_ms"].(float64)
	slow, _ := m["slow_ms"].(float64)
	return lat + slow, nil
}

// chargesFor counts, among the given order ids, the ones the ledger charged (not declined), and
// how many of those were refunded.
func chargesFor(l ledger, orders map[string]bool) (charged, refunded int) {
	for _, e := range l.Entries {
		if !orders[e.Key] || e.Declined {
			continue
		}
		charged++
		if e.Refunded {
			refunded++
		}
	}
	return charged, refunded
}
