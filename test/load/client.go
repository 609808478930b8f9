package main

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Client sends requests to the targets round-robin over bounded pools of keep-alive
// connections, one pool per local source address. A request from a customer (Request.From)
// always leaves from that customer's address, as from a device of its own; other requests take
// the addresses in turn. The servers limit some requests per client address (see tally.go), and
// spreading the load over many addresses lets one machine stand for a crowd.
type Client struct {
	targets []string
	modules moduleTargets // --route: where a routed module's paths go instead of the targets
	rr      atomic.Uint64 // the next target
	anyRR   atomic.Uint64 // the next route for a request from no one in particular
	routes  []route
	timeout time.Duration
	tally   *tally // nil: not counted
}

// route is the connections from one source address.
type route struct {
	src net.IP // nil: the system's choice
	tr  *http.Transport
	hc  *http.Client
}

// newTransport returns a transport with conns connections per host (0: unbounded), dialing from
// src (nil: the system's choice).
func newTransport(conns int, src net.IP) *http.Transport {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if src != nil {
		d.LocalAddr = &net.TCPAddr{IP: src}
	}
	idle := conns
	if idle == 0 {
		idle = 100
	}
	return &http.Transport{
		DialContext:         d.DialContext,
		MaxConnsPerHost:     conns,
		MaxIdleConnsPerHost: idle,
		MaxIdleConns:        0, // no global bound: MaxIdleConnsPerHost per target
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		TLSHandshakeTimeout: 10 * time.Second,
		WriteBufferSize:     4096,
		ReadBufferSize:      4096,
	}
}

// NewClient returns a client with conns keep-alive connections per target (0: unbounded),
// spread over the source addresses (none: the system's choice). With several addresses each
// keeps up to twice its share of conns, so that a customer's requests rarely wait for a
// connection of their address while another address has one idle. The requests of a module in
// routes go to its processes instead of the targets, whatever target a request names. tally, when
// not nil, counts the requests the servers limit per address.
func NewClient(targets []string, routes []Route, conns int, sources []net.IP, timeout time.Duration, t *tally) *Client {
	if len(sources) == 0 {
		sources = []net.IP{nil}
	}
	perRoute := conns
	if conns > 0 && len(sources) > 1 {
		perRoute = max(2, (2*conns+len(sources)-1)/len(sources))
	}
	c := &Client{targets: targets, modules: newModuleTargets(routes), timeout: timeout, tally: t}
	for _, src := range sources {
		tr := newTransport(perRoute, src)
		c.routes = append(c.routes, route{src: src, tr: tr, hc: &http.Client{Transport: tr}})
	}
	return c
}

// route picks the connections for a request from from (0: anyone).
func (c *Client) route(from int) *route {
	if from > 0 {
		return &c.routes[(from-1)%len(c.routes)]
	}
	return &c.routes[(c.anyRR.Add(1)-1)%uint64(len(c.routes))]
}

// Close drops the idle connections.
func (c *Client) Close() {
	for _, r := range c.routes {
		r.tr.CloseIdleConnections()
	}
}

// Next returns the next target in turn.
func (c *Client) Next() string {
	return c.targets[(c.rr.Add(1)-1)%uint64(len(c.targets))]
}

// Target is the server a request for path goes to: a process of the path's module when the
// module is routed (a split deployment's processes serve only their own modules' paths), else
// target, or the next target in turn when target is "".
func (c *Client) Target(target, path string) string {
	if t := c.modules.pick(path); t != "" {
		return t
	}
	if target == "" {
		return c.Next()
	}
	return target
}

// Request is one API call. Target "" means the next target in turn; Path is appended to it.
// From names the sender: requests with the same From > 0 leave from the same source address
// (Customer.From); 0 takes the addresses in turn.
type Request struct {
	Method, Target, Path, Token string
	Body                        any // []byte or a value to encode as JSON
	Header                      map[string]string
	From                        int
}

// Response is an answer, read in full. Status 0 means no answer (Err says why).
type Response struct {
	Status int
	Body   []byte
	Header http.Header
	End    time.Time
	Err    error
}

// Outcome converts the response for a recorder.
func (r Response) Outcome() Outcome { return Outcome{Status: r.Status, Err: r.Err, End: r.End} }

// Decode reads the JSON body into v.
func (r Response) Decode(v any) error {
	if err := json.Unmarshal(r.Body, v); err != nil {
		return fmt.Errorf("HTTP %d: undecodable body %q: %w", r.Status, clip(r.Body), err)
	}
	return nil
}

// Problem describes an unexpected answer for error messages.
func (r Response) Problem() string {
	if r.Status == 0 {
		return fmt.Sprintf("no answer: %v", r.Err)
	}
	return fmt.Sprintf("HTTP %d %s (X-Request-Id %s)", r.Status, clip(r.Body), r.Header.Get("X-Request-Id"))
}

func clip(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// Do sends the request and reads the whole answer (so the connection is reused).
func (c *Client) Do(ctx context.Context, r Request) Response {
	target := c.Target(r.Target, r.Path)
	var body io.Reader
	switch b := r.Body.(type) {
	case nil:
	case []byte:
		body = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return Response{Err: err, End: time.Now()}
		}
		body = bytes.NewReader(data)
	}
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, target+r.Path, body)
	if err != nil {
		return Response{Err: err, End: time.Now()}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if r.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.Token)
	}
	for k, v := range r.Header {
		req.Header.Set(k, v)
	}
	rt := c.route(r.From)
	sent := time.Now()
	resp, err := rt.hc.Do(req)
	if err != nil {
		return Response{Err: err, End: time.Now()}
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	out := Response{Status: resp.StatusCode, Body: data, Header: resp.Header, End: time.Now()}
	c.tally.count(rt.src, target, r.Method, r.Path, sent, out)
	if err != nil {
		out.Status, out.Err = 0, fmt.Errorf("reading the answer to %s %s: %w", r.Method, r.Path, err)
	}
	return out
}

// retryAfter is the wait an answer asks for (at least 100 ms, with jitter so retries spread).
func retryAfter(r Response) time.Duration {
	d := time.Second
	if s, err := strconv.Atoi(r.Header.Get("Retry-After")); err == nil && s >= 0 {
		d = time.Duration(s) * time.Second
	}
	d = max(d, 100*time.Millisecond)
	return d + rand.N(d/4+1)
}

// DoRetry sends the request until it gets an answer other than 503 or 429 (honouring
// Retry-After) or a transport error, up to attempts times; it returns the last answer and how
// many retries it made.
func (c *Client) DoRetry(ctx context.Context, r Request, attempts int) (Response, int) {
	var resp Response
	for i := 0; ; i++ {
		resp = c.Do(ctx, r)
		retry := resp.Status == http.StatusServiceUnavailable || resp.Status == http.StatusTooManyRequests ||
			(resp.Status == 0 && ctx.Err() == nil)
		if !retry || i+1 >= attempts {
			return resp, i
		}
		wait := retryAfter(resp)
		if resp.Status == 0 {
			wait = 200*time.Millisecond + rand.N(200*time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return resp, i
		case <-time.After(wait):
		}
	}
}

// isTimeout tells whether a transport error is a deadline.
func isTimeout(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// newRunID returns a short random id that makes this run's names unique.
func newRunID() string {
	b := make([]byte, 4)
	_, _ = crand.Read(b)
	return hex.EncodeToString(b)
}
