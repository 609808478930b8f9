package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/platform/clock"
)

// UserAgent is the User-Agent of every delivery.
const UserAgent = "onsale-webhooks"

// SenderConfig tunes the sender; zero fields take the defaults.
type SenderConfig struct {
	// Concurrency bounds the deliveries in flight on this replica (16).
	Concurrency int
	// PerEndpoint bounds the deliveries in flight to one endpoint (2), so a slow endpoint
	// takes at most that many of the Concurrency slots and the others keep going.
	PerEndpoint int
	// Timeout bounds one attempt, connection to last byte read (10 s).
	Timeout time.Duration
	// Poll is how often the store is asked for due deliveries when nothing wakes the sender (1 s).
	Poll time.Duration
	// Schedule is the retry schedule (Schedule).
	Schedule []time.Duration
	// MaxResponse is how much of a response is read (4 KiB): receivers are asked for a status,
	// and a huge or endless body must not hold a slot.
	MaxResponse int64
}

func (c SenderConfig) withDefaults() SenderConfig {
	if c.Concurrency <= 0 {
		c.Concurrency = 16
	}
	if c.PerEndpoint <= 0 {
		c.PerEndpoint = 2
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Poll <= 0 {
		c.Poll = time.Second
	}
	if len(c.Schedule) == 0 {
		c.Schedule = Schedule
	}
	if c.MaxResponse <= 0 {
		c.MaxResponse = 4 << 10
	}
	return c
}

// lease is how long a claim keeps a delivery from other senders: time to wait for a slot of its
// endpoint behind another attempt, then its own attempt, with room to spare. A sender that dies
// mid-attempt gives its deliveries back when it runs out.
func (c SenderConfig) lease() time.Duration { return 3*c.Timeout + 30*time.Second }

// Sender POSTs due deliveries to their endpoints and records each attempt. Any number of
// replicas may run one on the same store.
type Sender struct {
	store  Store
	client *http.Client
	cfg    SenderConfig
	clock  clock.Clock
	log    *slog.Logger
	wake   chan struct{}

	mu       sync.Mutex
	inFlight map[uuid.UUID]int           // per endpoint, waiting for its slot or sending
	slots    map[uuid.UUID]chan struct{} // per endpoint with deliveries in flight
	total    int
	finished chan struct{}
	cancel   context.CancelFunc
	done     chan struct{}
	sends    sync.WaitGroup
}

// NewSender returns a sender whose connections go only where guard allows: the check is made on
// the address each connection is about to use, after resolution, so a name that resolves
// elsewhere than at registration (DNS rebinding) is refused too.
func NewSender(store Store, guard *Guard, clk clock.Clock, log *slog.Logger, cfg SenderConfig) *Sender {
	cfg = cfg.withDefaults()
	dialer := &net.Dialer{Timeout: 5 * time.Second, Control: guard.Control}
	transport := &http.Transport{
		// No proxy: a proxy would connect on our behalf and the guard would see its address only.
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: cfg.Timeout,
		MaxIdleConnsPerHost:   cfg.PerEndpoint,
		IdleConnTimeout:       90 * time.Second,
	}
	client := &http.Client{
		Transport: transport,
		Timeout:   cfg.Timeout,
		// A redirect is not followed: it could lead anywhere, and the receiver is asked for a
		// 2xx at the URL it registered.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &Sender{store: store, client: client, cfg: cfg, clock: clk, log: log, wake: make(chan struct{}, 1),
		inFlight: map[uuid.UUID]int{}, slots: map[uuid.UUID]chan struct{}{}, finished: make(chan struct{}, 1)}
}

// Wake asks the sender to look for due deliveries now (new ones were enqueued).
func (s *Sender) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Start runs the sender until Stop.
func (s *Sender) Start(context.Context) error {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go func() {
		defer close(s.done)
		s.run(ctx)
	}()
	return nil
}

// Stop stops claiming and waits (within ctx) for the attempts in flight to be recorded.
func (s *Sender) Stop(ctx context.Context) error {
	if s.cancel == nil {
		return nil
	}
	s.cancel()
	<-s.done
	finished := make(chan struct{})
	go func() { s.sends.Wait(); close(finished) }()
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("webhook sender: %w", ctx.Err())
	}
}

func (s *Sender) run(ctx context.Context) {
	poll := time.NewTicker(s.cfg.Poll)
	defer poll.Stop()
	for {
		more := s.claim(ctx)
		if more {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-s.finished:
		case <-poll.C:
		}
	}
}

// claim takes as many due deliveries as there are free slots and starts them; it tells whether
// it filled every slot (more may be due).
func (s *Sender) claim(ctx context.Context) bool {
	s.mu.Lock()
	free := s.cfg.Concurrency - s.total
	var skip []uuid.UUID
	for id, n := range s.inFlight {
		if n >= s.cfg.PerEndpoint {
			skip = append(skip, id)
		}
	}
	s.mu.Unlock()
	if free <= 0 || ctx.Err() != nil {
		return false
	}
	due, err := s.store.Claim(ctx, Claim{Now: s.clock.Now().UTC(), Lease: s.cfg.lease(), Limit: free, PerEndpoint: s.cfg.PerEndpoint, Skip: skip})
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("webhook deliveries: claim failed", "err", err)
		}
		return false
	}
	for _, d := range due {
		s.mu.Lock()
		s.total++
		s.inFlight[d.EndpointID]++
		slot, ok := s.slots[d.EndpointID]
		if !ok {
			slot = make(chan struct{}, s.cfg.PerEndpoint)
			s.slots[d.EndpointID] = slot
		}
		s.mu.Unlock()
		s.sends.Add(1)
		go func() {
			defer s.sends.Done()
			slot <- struct{}{}
			s.deliver(d)
			<-slot
			s.mu.Lock()
			s.total--
			if s.inFlight[d.EndpointID]--; s.inFlight[d.EndpointID] == 0 {
				delete(s.inFlight, d.EndpointID)
				delete(s.slots, d.EndpointID)
			}
			s.mu.Unlock()
			select {
			case s.finished <- struct{}{}:
			default:
			}
		}()
	}
	return len(due) == free
}

// deliver makes one attempt and records it. It runs to its end even when the sender stops: the
// attempt is bounded by the timeout, and an attempt that is made but not recorded would be made
// again after the lease.
func (s *Sender) deliver(d Due) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout+5*time.Second)
	defer cancel()
	a := s.attempt(ctx, d)
	o := Outcome{Attempt: a, Succeeded: a.Error == ""}
	if !o.Succeeded {
		o.Next, _ = NextAttempt(s.cfg.Schedule, d.Attempts+1, a.At)
	}
	rec, err := s.store.Record(ctx, d.ID, o)
	switch {
	case errors.Is(err, ErrDeliveryNotFound):
		// The endpoint was deleted meanwhile.
	case err != nil:
		s.log.Warn("webhook attempt not recorded; it is made again after its lease", "delivery", d.ID, "err", err)
	case rec.Status == StatusDead:
		s.log.Warn("webhook delivery dead after its last attempt", "delivery", d.ID, "endpoint", d.EndpointID,
			"type", d.Type, "attempts", rec.Attempts, "err", a.Error)
	default:
		s.log.Debug("webhook attempt", "delivery", d.ID, "endpoint", d.EndpointID, "status", a.StatusCode, "err", a.Error)
	}
}

// attempt POSTs the delivery once, signed for this moment.
func (s *Sender) attempt(ctx context.Context, d Due) Attempt {
	at := s.clock.Now().UTC()
	a := Attempt{DeliveryID: d.ID, At: at.Truncate(time.Microsecond)}
	key, err := ParseSecret(d.Secret)
	if err != nil {
		a.Error = "the endpoint's signing secret is unusable"
		return a
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(d.Payload))
	if err != nil {
		a.Error = "bad URL: " + err.Error()
		return a
	}
	h := req.Header
	h.Set(HeaderID, d.EventID)
	h.Set(HeaderTimestamp, strconv.FormatInt(at.Unix(), 10))
	sig := Sign(key, d.EventID, at, d.Payload)
	if d.PreviousSecret != "" {
		// During a rotation both signatures go, space-separated, as Standard Webhooks has it:
		// a receiver still on the previous secret accepts the delivery, and so does one that
		// has switched.
		if prev, err := ParseSecret(d.PreviousSecret); err == nil {
			sig += " " + Sign(prev, d.EventID, at, d.Payload)
		}
	}
	h.Set(HeaderSignature, sig)
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", UserAgent)
	start := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		a.Latency = time.Since(start)
		a.Error = describe(err)
		return a
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, s.cfg.MaxResponse))
	resp.Body.Close()
	a.Latency = time.Since(start)
	a.StatusCode = resp.StatusCode
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		a.Error = fmt.Sprintf("HTTP %d", resp.StatusCode)
		if snippet := printable(body, 200); snippet != "" {
			a.Error += ": " + snippet
		}
	}
	return a
}

// describe says why a request failed, for the organizer's delivery log.
func describe(err error) string {
	switch {
	case errors.Is(err, ErrRefusedAddress):
		return "refused: the URL resolves to an address webhooks may not reach"
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timed out"
	}
	return err.Error()
}

// printable returns the start of a response body as text, or "" when it is not text.
func printable(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	for len(b) > 0 && !utf8.Valid(b) {
		b = b[:len(b)-1] // a rune cut in two at the end
	}
	return string(bytes.TrimSpace(b))
}
