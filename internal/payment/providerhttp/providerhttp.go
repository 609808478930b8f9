// Package providerhttp is a payment.Provider that talks to a payment provider's HTTP API (the
// shape payment/simulated serves), for deployments where the provider is a separate service.
package providerhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/onsale-dev/onsale/internal/payment"
	"github.com/onsale-dev/onsale/internal/payment/simulated"
	"github.com/onsale-dev/onsale/internal/platform/config"
)

// Client calls the provider at a base URL.
type Client struct {
	base string
	http *http.Client
}

var _ payment.Provider = (*Client)(nil)

// New returns a client for the provider at baseURL.
func New(baseURL string) *Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	return &Client{base: strings.TrimRight(baseURL, "/"), http: &http.Client{Transport: tr, Timeout: time.Minute}}
}

func (c *Client) post(ctx context.Context, path string, body, out any) (int, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(data))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		// The error quotes the URL; a token given as its user must not reach the logs.
		return 0, fmt.Errorf("provider %s: %w", path, config.RedactError(err, c.base))
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusCreated && out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, fmt.Errorf("provider %s: %w", path, err)
		}
	}
	return resp.StatusCode, nil
}

// Charge implements payment.Provider.
func (c *Client) Charge(ctx context.Context, req payment.ChargeRequest) (payment.Charge, error) {
	var out struct {
		ID          string `json:"id"`
		AmountCents int64  `json:"amount_cents"`
		Currency    string `json:"currency"`
	}
	status, err := c.post(ctx, "/charges", simulated.ChargeBody{IdempotencyKey: req.IdempotencyKey, AmountCents: req.AmountCents,
		Currency: req.Currency, CustomerID: req.CustomerID, Description: req.Description}, &out)
	switch {
	case err != nil:
		return payment.Charge{}, err
	case status == http.StatusPaymentRequired:
		return payment.Charge{}, payment.ErrDeclined
	case status == http.StatusAccepted:
		return payment.Charge{}, payment.ErrChargePending
	case status != http.StatusCreated:
		return payment.Charge{}, fmt.Errorf("provider charge: status %d", status)
	}
	return payment.Charge{ID: out.ID, AmountCents: out.AmountCents, Currency: out.Currency}, nil
}

// Refund implements payment.Provider.
func (c *Client) Refund(ctx context.Context, req payment.ProviderRefund) (payment.Refunded, error) {
	var out struct {
		ID       string `json:"id"`
		ChargeID string `json:"charge_id"`
	}
	status, err := c.post(ctx, "/refunds", simulated.RefundBody{IdempotencyKey: req.IdempotencyKey, ChargeKey: req.ChargeKey,
		AmountCents: req.AmountCents}, &out)
	switch {
	case err != nil:
		return payment.Refunded{}, err
	case status == http.StatusNotFound:
		return payment.Refunded{}, payment.ErrNoCharge
	case status == http.StatusConflict:
		return payment.Refunded{}, payment.ErrRefundExceedsCharge
	case status != http.StatusCreated:
		return payment.Refunded{}, fmt.Errorf("provider refund: status %d", status)
	}
	return payment.Refunded{ID: out.ID, ChargeID: out.ChargeID}, nil
}
