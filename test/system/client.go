package system

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ---- what clients saw ----

// Sample is one answer (or transport failure) a client got.
type Sample struct {
	Route      string // "POST /v1/holds"
	Status     int    // 0: no HTTP answer (connection error)
	Err        string // the transport error, if any
	RetryAfter string // the Retry-After header
	Type       string // the problem type of an error answer
	Detail     string
	RequestID  string
	Latency    time.Duration
	At         time.Time // when the request was sent
	Phase      string
}

func (s Sample) String() string {
	if s.Status == 0 {
		return fmt.Sprintf("%s [%s] at %s: transport error %s (%s)", s.Route, s.Phase, s.At.Format("15:04:05.000"), s.Err, s.Latency.Round(time.Millisecond))
	}
	return fmt.Sprintf("%s [%s] at %s: %d %s %q retry-after=%q request-id=%s (%s)", s.Route, s.Phase, s.At.Format("15:04:05.000"),
		s.Status, s.Type, s.Detail, s.RetryAfter, s.RequestID, s.Latency.Round(time.Millisecond))
}

// ConnErr tells whether the client got no HTTP answer.
func (s Sample) ConnErr() bool { return s.Status == 0 }

// Unavailable tells whether the answer was a 503 with Retry-After (a dependency down or load
// shed: the client is told when to come back).
func (s Sample) Unavailable() bool {
	return s.Status == http.StatusServiceUnavailable && s.RetryAfter != ""
}

// Recorder keeps every sample of a test.
type Recorder struct {
	mu      sync.Mutex
	samples []Sample
	phase   atomic.Value
}

// NewRecorder returns an empty recorder in phase "setup". When the test fails, the answers
// clients got are logged per phase.
func NewRecorder(t testing.TB) *Recorder {
	r := newRecorder()
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		phases := map[string]bool{}
		for _, s := range r.Samples(nil) {
			phases[s.Phase] = true
		}
		for p := range phases {
			t.Logf("client answers in phase %q:%s", p, r.Counts(func(s Sample) bool { return s.Phase == p }))
		}
		last := r.Samples(func(s Sample) bool { return s.Status == 0 || s.Status >= 400 })
		if len(last) > 10 {
			last = last[len(last)-10:]
		}
		for _, s := range last {
			t.Logf("late error answer: %s", s)
		}
	})
	return r
}

// SetPhase labels the samples of requests sent from now on.
func (r *Recorder) SetPhase(p string) { r.phase.Store(p) }

// newRecorder returns a recorder that logs nothing (for the tests' own checks).
func newRecorder() *Recorder {
	r := &Recorder{}
	r.phase.Store("setup")
	return r
}

// Phase is the current label.
func (r *Recorder) Phase() string { return r.phase.Load().(string) }

func (r *Recorder) add(s Sample) {
	r.mu.Lock()
	r.samples = append(r.samples, s)
	r.mu.Unlock()
}

// Samples returns the samples kept by f (all when f is nil).
func (r *Recorder) Samples(f func(Sample) bool) []Sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Sample
	for _, s := range r.samples {
		if f == nil || f(s) {
			out = append(out, s)
		}
	}
	return out
}

// Counts summarises the answers per route and status, one route per line.
func (r *Recorder) Counts(f func(Sample) bool) string {
	counts := map[string]map[int]int{}
	for _, s := range r.Samples(f) {
		if counts[s.Route] == nil {
			counts[s.Route] = map[int]int{}
		}
		counts[s.Route][s.Status]++
	}
	routes := make([]string, 0, len(counts))
	for k := range counts {
		routes = append(routes, k)
	}
	sort.Strings(routes)
	var b strings.Builder
	for _, route := range routes {
		statuses := make([]int, 0, len(counts[route]))
		for st := range counts[route] {
			statuses = append(statuses, st)
		}
		sort.Ints(statuses)
		fmt.Fprintf(&b, "\n    %-40s", route)
		for _, st := range statuses {
			name := strconv.Itoa(st)
			if st == 0 {
				name = "conn-error"
			}
			fmt.Fprintf(&b, " %s×%d", name, counts[route][st])
		}
	}
	return b.String()
}

// Forbid fails the test if any sample matches bad, listing the first few.
func (r *Recorder) Forbid(t testing.TB, what string, bad func(Sample) bool) {
	t.Helper()
	found := r.Samples(bad)
	if len(found) == 0 {
		return
	}
	var b strings.Builder
	for i, s := range found {
		if i == 15 {
			fmt.Fprintf(&b, "\n    ... and %d more", len(found)-i)
			break
		}
		fmt.Fprintf(&b, "\n    %s", s)
	}
	t.Errorf("clients saw %d %s:%s", len(found), what, b.String())
}

// Percentile returns the q-th quantile (0..1) of the samples' latencies.
func Percentile(samples []Sample, q float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	d := make([]time.Duration, len(samples))
	for i, s := range samples {
		d[i] = s.Latency
	}
	slices.Sort(d)
	i := int(float64(len(d))*q+0.999999) - 1
	return d[max(0, min(i, len(d)-1))]
}

// ---- the client ----

// Client talks to onsale through the load balancer and records every answer. What it retries
// on its own is its policy; every attempt is recorded either way.
type Client struct {
	Base string
	HC   *http.Client
	Rec  *Recorder

	// RetryUnavailable retries 503 and 429 answers that carry Retry-After, after waiting (at
	// most MaxWait).
	RetryUnavailable bool
	// RetryConnErrors retries requests that got no answer or a 502 from the balancer (safe: every
	// write carries an Idempotency-Key or is idempotent).
	RetryConnErrors bool
	// Relogin logs a customer in again when a request answers 401, and retries it.
	Relogin bool
	// MaxWait caps the wait before a retry (default 2s).
	MaxWait time.Duration
	// Header is sent with every request (a waiting room's Queue-Pass, for one).
	Header http.Header

	seq atomic.Int64
}

// NewHTTPClient returns an HTTP client with room for a few hundred keep-alive connections.
func NewHTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        2048,
			MaxIdleConnsPerHost: 1024,
			IdleConnTimeout:     60 * time.Second,
		},
		Timeout: 30 * time.Second,
	}
}

// NewClient returns a client of base with the default policy: retry 503/429 with Retry-After,
// log in again on 401, do not retry connection errors.
func NewClient(base string, rec *Recorder) *Client {
	return &Client{Base: base, HC: NewHTTPClient(), Rec: rec, RetryUnavailable: true, Relogin: true, MaxWait: 2 * time.Second}
}

// With returns a copy of the client (sharing its connections and recorder) changed by f.
func (c *Client) With(f func(*Client)) *Client {
	cp := &Client{Base: c.Base, HC: c.HC, Rec: c.Rec, RetryUnavailable: c.RetryUnavailable,
		RetryConnErrors: c.RetryConnErrors, Relogin: c.Relogin, MaxWait: c.MaxWait, Header: c.Header}
	f(cp)
	return cp
}

// Customer is an account the client acts for.
type Customer struct {
	Email    string
	Password string
	ID       string

	mu     sync.Mutex
	token  string
	Logins atomic.Int64
}

func (u *Customer) bearer() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.token
}

// Resp is the final answer of a call.
type Resp struct {
	Status  int
	Header  http.Header
	Body    []byte
	Err     error
	Latency time.Duration
}

// OK tells whether the status is 2xx.
func (r Resp) OK() bool { return r.Status >= 200 && r.Status < 300 }

// Decode reads the JSON body into v.
func (r Resp) Decode(v any) error {
	if r.Err != nil {
		return r.Err
	}
	return json.Unmarshal(r.Body, v)
}

// ProblemType is the problem type of an error answer.
func (r Resp) ProblemType() string {
	var p struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(r.Body, &p)
	return p.Type
}

func (r Resp) String() string {
	if r.Err != nil {
		return "error: " + r.Err.Error()
	}
	body := string(r.Body)
	if len(body) > 300 {
		body = body[:300] + "..."
	}
	return fmt.Sprintf("%d %s", r.Status, body)
}

func (c *Client) once(ctx context.Context, route, method, path string, token, key string, body []byte) Resp {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, rd)
	if err != nil {
		return Resp{Err: err}
	}
	for k, v := range c.Header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	rid := fmt.Sprintf("sys-%d-%d", time.Now().UnixNano()%1e9, c.seq.Add(1))
	req.Header.Set("X-Request-Id", rid)
	s := Sample{Route: route, At: time.Now(), Phase: c.Rec.Phase(), RequestID: rid}
	resp, err := c.HC.Do(req)
	var out Resp
	if err == nil {
		out.Body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		out.Status, out.Header = resp.StatusCode, resp.Header
	}
	out.Latency = time.Since(s.At)
	s.Latency = out.Latency
	if err != nil {
		out = Resp{Err: err, Latency: out.Latency}
		if ctx.Err() != nil {
			return out // the caller gave up: not something the server did
		}
		s.Err = err.Error()
	} else {
		s.Status = out.Status
		s.RetryAfter = out.Header.Get("Retry-After")
		if out.Status >= 400 {
			var p struct {
				Type   string `json:"type"`
				Detail string `json:"detail"`
			}
			_ = json.Unmarshal(out.Body, &p)
			s.Type, s.Detail = p.Type, p.Detail
			if len(s.Detail) > 200 {
				s.Detail = s.Detail[:200]
			}
		}
	}
	c.Rec.add(s)
	return out
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Call sends a request (as the customer, when given) and applies the client's retry policy. It
// returns the last answer.
func (c *Client) Call(ctx context.Context, route, method, path string, u *Customer, key string, in any) Resp {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return Resp{Err: err}
		}
	}
	relogins := 0
	for {
		token := ""
		if u != nil {
			token = u.bearer()
		}
		r := c.once(ctx, route, method, path, token, key, body)
		if ctx.Err() != nil {
			return r
		}
		switch {
		case (r.Err != nil || r.Status == http.StatusBadGateway) && c.RetryConnErrors:
			if !sleepCtx(ctx, 100*time.Millisecond) {
				return r
			}
		case (r.Status == http.StatusServiceUnavailable || r.Status == http.StatusTooManyRequests) && c.RetryUnavailable && r.Header.Get("Retry-After") != "":
			wait := time.Second
			if s, err := strconv.Atoi(r.Header.Get("Retry-After")); err == nil {
				wait = time.Duration(s) * time.Second
			}
			maxWait := c.MaxWait
			if maxWait == 0 {
				maxWait = 2 * time.Second
			}
			wait = max(100*time.Millisecond, min(wait, maxWait))
			if !sleepCtx(ctx, wait) {
				return r
			}
		case r.Status == http.StatusUnauthorized && u != nil && c.Relogin && relogins < 3:
			relogins++
			if err := c.relogin(ctx, u, token); err != nil {
				return r
			}
		default:
			return r
		}
	}
}

// Login logs the customer in and keeps the access token.
func (c *Client) Login(ctx context.Context, u *Customer) error {
	r := c.Call(ctx, "POST /v1/auth/login", http.MethodPost, "/v1/auth/login", nil, "",
		map[string]string{"email": u.Email, "password": u.Password})
	if r.Status != http.StatusOK {
		return fmt.Errorf("login %s: %s", u.Email, r)
	}
	var tp struct {
		AccessToken string `json:"access_token"`
	}
	if err := r.Decode(&tp); err != nil || tp.AccessToken == "" {
		return fmt.Errorf("login %s: bad token pair %s", u.Email, r)
	}
	u.mu.Lock()
	u.token = tp.AccessToken
	u.mu.Unlock()
	u.Logins.Add(1)
	return nil
}

// relogin logs in again unless another request already did since stale was used.
func (c *Client) relogin(ctx context.Context, u *Customer, stale string) error {
	if u.bearer() != stale {
		return nil
	}
	return c.Login(ctx, u)
}

// Register creates the customer's account (a 409 from a retried attempt counts as done).
func (c *Client) Register(ctx context.Context, u *Customer) error {
	r := c.Call(ctx, "POST /v1/auth/register", http.MethodPost, "/v1/auth/register", nil, "",
		map[string]string{"email": u.Email, "password": u.Password, "name": "Buyer"})
	switch r.Status {
	case http.StatusCreated:
		var out struct {
			ID string `json:"id"`
		}
		_ = r.Decode(&out)
		u.ID = out.ID
		return nil
	case http.StatusConflict:
		return nil
	}
	return fmt.Errorf("register %s: %s", u.Email, r)
}

// RegisterCustomers creates and logs in n customers, concurrency at a time.
func (c *Client) RegisterCustomers(ctx context.Context, tag string, n, concurrency int) ([]*Customer, error) {
	users := make([]*Customer, n)
	for i := range users {
		users[i] = &Customer{Email: fmt.Sprintf("%s-%d@buyers.onsale.test", tag, i), Password: fmt.Sprintf("pw-%s-%d-secret", tag, i)}
	}
	setup := c.With(func(c *Client) { c.RetryUnavailable, c.RetryConnErrors = true, true })
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		errMu sync.Mutex
		errs  []error
	)
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				err := setup.Register(ctx, users[i])
				if err == nil {
					err = setup.Login(ctx, users[i])
				}
				if err != nil {
					errMu.Lock()
					errs = append(errs, err)
					errMu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, fmt.Errorf("%d of %d customers could not register and log in, first: %w", len(errs), n, errs[0])
	}
	return users, nil
}

// ---- the API ----

// Stock is one ticket type's availability.
type Stock struct {
	TicketTypeID string `json:"ticket_type_id"`
	Capacity     int    `json:"capacity"`
	Sold         int    `json:"sold"`
	Held         int    `json:"held"`
	Available    int    `json:"available"`
}

// Order is an order as the API shows it.
type Order struct {
	ID           string `json:"id"`
	Status       string `json:"status"`
	StatusDetail string `json:"status_detail"`
	HoldID       string `json:"hold_id"`
	Quantity     int    `json:"quantity"`
	Tickets      []struct {
		ID string `json:"id"`
	} `json:"tickets"`
}

// Terminal tells whether the order is confirmed or failed.
func (o Order) Terminal() bool { return o.Status == "confirmed" || o.Status == "failed" }

// CreateSale logs the organizer in and creates an event with one ticket type.
func (c *Client) CreateSale(ctx context.Context, org *Customer, capacity, maxPerOrder int, priceCents int64) (eventID, ticketTypeID string, err error) {
	setup := c.With(func(c *Client) { c.RetryUnavailable, c.RetryConnErrors = true, true })
	if err := setup.Login(ctx, org); err != nil {
		return "", "", err
	}
	r := setup.Call(ctx, "POST /v1/events", http.MethodPost, "/v1/events", org, "", map[string]any{
		"name": "System test on-sale", "venue": "Test Arena", "starts_at": time.Now().Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339),
	})
	var ev struct {
		ID string `json:"id"`
	}
	if r.Status != http.StatusCreated || r.Decode(&ev) != nil {
		return "", "", fmt.Errorf("create event: %s", r)
	}
	r = setup.Call(ctx, "POST /v1/events/{id}/ticket-types", http.MethodPost, "/v1/events/"+ev.ID+"/ticket-types", org, "", map[string]any{
		"name": "General admission", "price_cents": priceCents, "currency": "EUR", "capacity": capacity, "max_per_order": maxPerOrder,
	})
	var tt struct {
		ID string `json:"id"`
	}
	if r.Status != http.StatusCreated || r.Decode(&tt) != nil {
		return "", "", fmt.Errorf("create ticket type: %s", r)
	}
	return ev.ID, tt.ID, nil
}

// HoldResult is the answer to a hold request.
type HoldResult struct {
	Resp
	ID        string
	Available int // on 409 sold-out
}

// SoldOut tells whether the answer was 409 sold-out.
func (h HoldResult) SoldOut() bool {
	return h.Status == http.StatusConflict && strings.HasSuffix(h.ProblemType(), "/sold-out")
}

// Hold asks for quantity tickets.
func (c *Client) Hold(ctx context.Context, u *Customer, ticketTypeID string, quantity int, key string) HoldResult {
	r := c.Call(ctx, "POST /v1/holds", http.MethodPost, "/v1/holds", u, key,
		map[string]any{"ticket_type_id": ticketTypeID, "quantity": quantity})
	out := HoldResult{Resp: r}
	switch r.Status {
	case http.StatusCreated, http.StatusOK:
		var h struct {
			ID string `json:"id"`
		}
		_ = r.Decode(&h)
		out.ID = h.ID
	case http.StatusConflict:
		var p struct {
			Available int `json:"available"`
		}
		_ = r.Decode(&p)
		out.Available = p.Available
	}
	return out
}

// Release gives a hold back.
func (c *Client) Release(ctx context.Context, u *Customer, holdID string) Resp {
	return c.Call(ctx, "DELETE /v1/holds/{id}", http.MethodDelete, "/v1/holds/"+holdID, u, "", nil)
}

// Checkout creates an order for a hold.
func (c *Client) Checkout(ctx context.Context, u *Customer, holdID, key string) (Order, Resp) {
	r := c.Call(ctx, "POST /v1/orders", http.MethodPost, "/v1/orders", u, key, map[string]any{"hold_id": holdID})
	var o Order
	if r.Status == http.StatusAccepted {
		_ = r.Decode(&o)
	}
	return o, r
}

// Order reads an order.
func (c *Client) Order(ctx context.Context, u *Customer, id string) (Order, Resp) {
	r := c.Call(ctx, "GET /v1/orders/{id}", http.MethodGet, "/v1/orders/"+id, u, "", nil)
	var o Order
	if r.Status == http.StatusOK {
		_ = r.Decode(&o)
	}
	return o, r
}

// Event reads an event with its ticket types (browsing).
func (c *Client) Event(ctx context.Context, id string) Resp {
	return c.Call(ctx, "GET /v1/events/{id}", http.MethodGet, "/v1/events/"+id, nil, "", nil)
}

// Livez calls the trivial liveness handler: a baseline for latencies measured on a noisy machine.
func (c *Client) Livez(ctx context.Context) Resp {
	return c.Call(ctx, "GET /livez", http.MethodGet, "/livez", nil, "", nil)
}

// Availability reads an event's live figures.
func (c *Client) Availability(ctx context.Context, eventID string) ([]Stock, Resp) {
	r := c.Call(ctx, "GET /v1/events/{id}/availability", http.MethodGet, "/v1/events/"+eventID+"/availability", nil, "", nil)
	var a struct {
		TicketTypes []Stock `json:"ticket_types"`
	}
	if r.Status == http.StatusOK {
		_ = r.Decode(&a)
	}
	return a.TicketTypes, r
}

// Accepted is the set of orders the server accepted (202), with whose they are.
type Accepted struct {
	mu     sync.Mutex
	orders map[string]*Customer
	at     map[string]time.Time
}

// NewAccepted returns an empty set.
func NewAccepted() *Accepted {
	return &Accepted{orders: map[string]*Customer{}, at: map[string]time.Time{}}
}

// Add records an accepted order (the first acceptance time is kept).
func (a *Accepted) Add(id string, u *Customer) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.orders[id]; !ok {
		a.orders[id] = u
		a.at[id] = time.Now()
	}
}

// Customer returns whose order id is.
func (a *Accepted) Customer(id string) (*Customer, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	u, ok := a.orders[id]
	return u, ok
}

// IDs lists the accepted orders.
func (a *Accepted) IDs() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.orders))
	for id := range a.orders {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// Between lists the orders first accepted in [from, to].
func (a *Accepted) Between(from, to time.Time) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for id, at := range a.at {
		if !at.Before(from) && !at.After(to) {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// Len counts the accepted orders.
func (a *Accepted) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.orders)
}

// FinalStatuses reads every accepted order through the API (as its customer) and returns them
// by id; orders that could not be read are reported in the error.
func (c *Client) FinalStatuses(ctx context.Context, a *Accepted, concurrency int) (map[string]Order, error) {
	a.mu.Lock()
	type item struct {
		id string
		u  *Customer
	}
	var items []item
	for id, u := range a.orders {
		items = append(items, item{id, u})
	}
	a.mu.Unlock()
	reader := c.With(func(c *Client) { c.RetryUnavailable, c.RetryConnErrors, c.Relogin = true, true, true })
	var (
		mu   sync.Mutex
		out  = map[string]Order{}
		errs []error
		next atomic.Int64
		wg   sync.WaitGroup
	)
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(items) {
					return
				}
				o, r := reader.Order(ctx, items[i].u, items[i].id)
				mu.Lock()
				if r.Status == http.StatusOK {
					out[items[i].id] = o
				} else {
					errs = append(errs, fmt.Errorf("order %s: %s", items[i].id, r))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}
