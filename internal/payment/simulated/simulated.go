// Package simulated is a payment provider for development, tests and load runs. It behaves like a
// real one where it matters — every call is idempotent by key, a decline is final, errors are
// transient — and it keeps a ledger of charges and refunds by key so tests can count exactly what
// was taken and given back. Its latency, decline and error rates, an outage switch and a slow mode
// can be changed while it runs, in process or over its HTTP API (Handler).
package simulated

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/onsale-dev/onsale/internal/payment"
)

// Mode is how the provider behaves now.
type Mode struct {
	Latency     time.Duration `json:"latency"`
	Slow        time.Duration `json:"slow"` // added to Latency: the slow mode
	DeclineRate float64       `json:"decline_rate"`
	ErrorRate   float64       `json:"error_rate"`
	Outage      bool          `json:"outage"`
	// Paused holds every call until the provider is resumed: a queue of payments builds up
	// behind it, which a benchmark then releases at once.
	Paused bool `json:"paused"`
	// PendingAmountCents, when not 0, is an amount the provider accepts but does not settle
	// (ErrChargePending), as a bank transfer would: charges of it stay pending until the mode
	// changes. It keeps chosen orders pending for as long as a run needs without holding a worker.
	PendingAmountCents int64 `json:"pending_amount_cents"`
}

// ErrUnavailable is what every call gets during an outage or a simulated error.
var ErrUnavailable = errors.New("simulated provider unavailable")

// Entry is the ledger's record of one charge key.
type Entry struct {
	Key         string `json:"key"`
	ChargeID    string `json:"charge_id,omitempty"`
	AmountCents int64  `json:"amount_cents"`
	Currency    string `json:"currency"`
	Declined    bool   `json:"declined"`
	Refunded    bool   `json:"refunded"` // all of it given back
	// RefundedCents is what was given back, by Refunds refunds (each under a key of its own).
	RefundedCents int64 `json:"refunded_cents"`
	Refunds       int   `json:"refunds"`
	ChargeCalls   int   `json:"charge_calls"` // how many times the key was presented
}

// Ledger is everything the provider did.
type Ledger struct {
	Charges  int `json:"charges"`  // keys charged (money taken), refunded or not
	Declines int `json:"declines"` // keys declined
	Refunds  int `json:"refunds"`  // refunds made, one per refund key
	// OverRefunds counts refunds refused because the charge had been given back already: a
	// refund asked for twice under two keys. It stays 0 while refunds happen exactly once.
	OverRefunds   int     `json:"over_refunds"`
	ChargedCents  int64   `json:"charged_cents"`
	RefundedCents int64   `json:"refunded_cents"`
	Calls         int     `json:"calls"`   // charge and refund calls, failed ones included
	Pending       int     `json:"pending"` // charge calls answered "pending"
	Entries       []Entry `json:"entries,omitempty"`
}

// Provider is the simulated provider; it implements payment.Provider.
type Provider struct {
	mu      sync.Mutex
	mode    Mode
	resumed chan struct{} // closed when not paused
	entries map[string]*Entry
	refunds map[string]refundEntry // by refund key
	over    int
	calls   int
	pending int
	next    int
}

var _ payment.Provider = (*Provider)(nil)

type refundEntry struct {
	chargeKey string
	id        string
}

// New returns a provider in the given mode.
func New(m Mode) *Provider {
	p := &Provider{entries: map[string]*Entry{}, refunds: map[string]refundEntry{}, resumed: make(chan struct{})}
	close(p.resumed)
	p.SetMode(m)
	return p
}

// SetMode changes the behaviour from the next call on; resuming releases paused calls.
func (p *Provider) SetMode(m Mode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case m.Paused && !p.mode.Paused:
		p.resumed = make(chan struct{})
	case !m.Paused && p.mode.Paused:
		close(p.resumed)
	}
	p.mode = m
}

// Mode returns the current behaviour.
func (p *Provider) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// wait spends the call's latency, or returns early if the caller gives up.
func (p *Provider) wait(ctx context.Context) (Mode, error) {
	p.mu.Lock()
	p.calls++
	resumed := p.resumed
	p.mu.Unlock()
	select {
	case <-resumed:
	case <-ctx.Done():
		return Mode{}, ctx.Err()
	}
	p.mu.Lock()
	m := p.mode
	p.mu.Unlock()
	if d := m.Latency + m.Slow; d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return m, ctx.Err()
		}
	}
	if m.Outage || (m.ErrorRate > 0 && rand.Float64() < m.ErrorRate) {
		return m, ErrUnavailable
	}
	return m, nil
}

// Charge implements payment.Provider: the first call for a key decides (charged or declined);
// every later call gets the same answer.
func (p *Provider) Charge(ctx context.Context, req payment.ChargeRequest) (payment.Charge, error) {
	m, err := p.wait(ctx)
	if err != nil {
		return payment.Charge{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.entries[req.IdempotencyKey]
	if !ok && m.PendingAmountCents != 0 && req.AmountCents == m.PendingAmountCents {
		p.pending++
		return payment.Charge{}, payment.ErrChargePending
	}
	if !ok {
		e = &Entry{Key: req.IdempotencyKey, AmountCents: req.AmountCents, Currency: req.Currency}
		if m.DeclineRate > 0 && rand.Float64() < m.DeclineRate {
			e.Declined = true
		} else {
			p.next++
			e.ChargeID = fmt.Sprintf("ch_%08d", p.next)
		}
		p.entries[req.IdempotencyKey] = e
	}
	e.ChargeCalls++
	if e.Declined {
		return payment.Charge{}, payment.ErrDeclined
	}
	return payment.Charge{ID: e.ChargeID, AmountCents: e.AmountCents, Currency: e.Currency}, nil
}

// Refund implements payment.Provider: it gives back req.AmountCents (0: all that is left) of the
// charge made under req.ChargeKey, once per refund key, and never more than was charged.
func (p *Provider) Refund(ctx context.Context, req payment.ProviderRefund) (payment.Refunded, error) {
	if _, err := p.wait(ctx); err != nil {
		return payment.Refunded{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.entries[req.ChargeKey]
	if !ok || e.Declined {
		return payment.Refunded{}, payment.ErrNoCharge
	}
	if r, done := p.refunds[req.IdempotencyKey]; done && r.chargeKey == req.ChargeKey {
		return payment.Refunded{ID: r.id, ChargeID: e.ChargeID}, nil
	}
	amount := req.AmountCents
	if amount <= 0 {
		amount = e.AmountCents - e.RefundedCents
	}
	if e.RefundedCents+amount > e.AmountCents {
		p.over++
		return payment.Refunded{}, payment.ErrRefundExceedsCharge
	}
	e.RefundedCents += amount
	e.Refunds++
	e.Refunded = e.RefundedCents == e.AmountCents
	r := refundEntry{chargeKey: req.ChargeKey, id: fmt.Sprintf("re_%s_%d", e.ChargeID[3:], e.Refunds)}
	p.refunds[req.IdempotencyKey] = r
	return payment.Refunded{ID: r.id, ChargeID: e.ChargeID}, nil
}

// Ledger returns what the provider did, with one entry per key when entries is true.
func (p *Provider) Ledger(entries bool) Ledger {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := Ledger{Calls: p.calls, Pending: p.pending, OverRefunds: p.over}
	for _, e := range p.entries {
		switch {
		case e.Declined:
			l.Declines++
		default:
			l.Charges++
			l.ChargedCents += e.AmountCents
			l.Refunds += e.Refunds
			l.RefundedCents += e.RefundedCents
		}
		if entries {
			l.Entries = append(l.Entries, *e)
		}
	}
	sort.Slice(l.Entries, func(i, j int) bool { return l.Entries[i].Key < l.Entries[j].Key })
	return l
}

// Reset forgets the ledger.
func (p *Provider) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.entries, p.refunds, p.over, p.calls, p.pending, p.next = map[string]*Entry{}, map[string]refundEntry{}, 0, 0, 0, 0
}
