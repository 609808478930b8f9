package system

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Waiting-room sale: how many customers queue, the admission rate the organizer sets, and how
// many customers follow their place on a stream rather than by asking.
const (
	roomCustomers     = 5000
	roomRatePerMinute = 18000 // 300 a second: the 5,000 are through in about 17 s
	roomStreams       = 150
	roomPassLifetime  = 600 // seconds: no pass runs out during the test
)

// queuePlace is a customer's place as GET …/queue/me shows it.
type queuePlace struct {
	Status        string     `json:"status"`
	Place         *int64     `json:"place"`
	Ahead         int64      `json:"ahead"`
	Pass          string     `json:"pass"`
	PassExpiresAt *time.Time `json:"pass_expires_at"`
}

// TestWaitingRoomThreeReplicas: an organizer opens a waiting room on an event served by three
// replicas behind nginx. Half of 5,000 customers arrive before the opening and are drawn into
// random places at it; the rest arrive after, in two waves, and queue behind in order of arrival.
// Every replica ticks admission, yet the queue admits at the organizer's rate (one decision per
// tick across replicas), strictly in the order of places; streams on any replica deliver the
// pass; a hold needs the customer's own pass.
func TestWaitingRoomThreeReplicas(t *testing.T) {
	systemTest(t)
	c := NewCluster(t, Options{Replicas: 3, Env: map[string]string{
		"ONSALE_QUEUE_TICK": "100ms",
		// Every simulated customer comes from 127.0.0.1: the per-address cap has tests of its own.
		"ONSALE_QUEUE_PLACES_PER_ADDRESS": "0",
	}})
	rec := NewRecorder(t)
	cl := NewClient(c.URL(), rec)
	eventID, ttID, customers := setupSale(t, c, cl, roomCustomers, 100, 1, testTag("room"))
	org := &Customer{Email: c.OrganizerEmail, Password: c.OrganizerPassword}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	roomPath := "/v1/events/" + eventID + "/waiting-room"
	queuePath := "/v1/events/" + eventID + "/queue"

	rec.SetPhase("room")
	r := cl.Call(ctx, "PUT /v1/events/{id}/waiting-room", http.MethodPut, roomPath, org, "", map[string]any{
		"admission_rate_per_minute": roomRatePerMinute, "pass_lifetime_seconds": roomPassLifetime,
		"opens_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
	})
	if r.Status != http.StatusOK {
		t.Fatalf("turn the waiting room on: %s", r)
	}
	// A hold on the event needs a pass from now on, on every replica once it has read the room.
	mustWait(t, 10*time.Second, "every replica to ask for a pass", func() bool {
		for range 6 {
			if h := cl.Hold(ctx, customers[0], ttID, 1, ""); h.ProblemType() != problemPrefix+"queue-pass-required" {
				return false
			}
		}
		return true
	})

	// Wave 0 arrives before the opening, waves 1 and 2 after it, one after the other.
	half := roomCustomers / 2
	waves := [][]*Customer{customers[:half], customers[half : half+half/2], customers[half+half/2:]}
	rec.SetPhase("pre-queue")
	join := func(wave []*Customer, want string) time.Duration {
		start := time.Now()
		forEach(ctx, wave, 48, func(u *Customer) {
			r := cl.Call(ctx, "POST /v1/events/{id}/queue", http.MethodPost, queuePath, u, "", nil)
			var q queuePlace
			if r.Status != http.StatusCreated || r.Decode(&q) != nil {
				t.Errorf("%s joins: %s", u.Email, r)
				return
			}
			if want == "pre_queue" && q.Status != want {
				t.Errorf("%s joined before the opening: status %q, want pre_queue", u.Email, q.Status)
			}
			// Asking again gives the same place.
			again := cl.Call(ctx, "POST /v1/events/{id}/queue", http.MethodPost, queuePath, u, "", nil)
			var q2 queuePlace
			if again.Status != http.StatusOK || again.Decode(&q2) != nil || !samePlace(q, q2) {
				t.Errorf("%s joins again: %s, want 200 and the same place as %+v", u.Email, again, q)
			}
		})
		return time.Since(start)
	}
	took := join(waves[0], "pre_queue")
	t.Logf("%d customers joined the pre-queue in %s", len(waves[0]), took.Round(time.Millisecond))
	if t.Failed() {
		t.FailNow()
	}

	rec.SetPhase("opening")
	opened := time.Now()
	r = cl.Call(ctx, "PATCH /v1/events/{id}/waiting-room", http.MethodPatch, roomPath, org, "", map[string]any{
		"opens_at": opened.UTC().Format(time.RFC3339Nano),
	})
	if r.Status != http.StatusOK {
		t.Fatalf("open the waiting room now: %s", r)
	}
	// Once the first place is admitted the draw is done, and whoever comes now queues behind.
	mustWait(t, 10*time.Second, "the room to open", func() bool {
		var room struct {
			Status string `json:"status"`
			Live   struct {
				Admitted int `json:"admitted"`
			} `json:"live"`
		}
		r := cl.Call(ctx, "GET /v1/events/{id}/waiting-room", http.MethodGet, roomPath, org, "", nil)
		return r.Decode(&room) == nil && room.Status == "open" && room.Live.Admitted > 0
	})
	// Some follow their place on a stream, spread over the replicas by nginx.
	streamed := make(map[*Customer]*queuePlace)
	var streamMu sync.Mutex
	var streams sync.WaitGroup
	follow := func(who []*Customer) {
		for _, u := range who {
			streams.Go(func() {
				q, err := followQueue(ctx, cl, u, queuePath+"/me/events")
				if err != nil {
					t.Errorf("%s follows the queue: %v", u.Email, err)
					return
				}
				streamMu.Lock()
				streamed[u] = q
				streamMu.Unlock()
			})
		}
	}
	follow(customers[:roomStreams/2])
	rec.SetPhase("arrivals")
	for i, w := range waves[1:] {
		took := join(w, "")
		t.Logf("wave %d: %d customers joined in %s", i+1, len(w), took.Round(time.Millisecond))
	}
	follow(waves[2][len(waves[2])-roomStreams/2:])

	// Everyone else asks now and then until admitted.
	rec.SetPhase("admission")
	places := make([]queuePlace, len(customers))
	var admitted atomic.Int64
	for round := 0; admitted.Load() < int64(len(customers)); round++ {
		if ctx.Err() != nil {
			t.Fatalf("%d of %d customers admitted when time ran out", admitted.Load(), len(customers))
		}
		idx := make([]int, 0, len(customers))
		for i := range customers {
			if places[i].Status != "admitted" {
				idx = append(idx, i)
			}
		}
		forEach(ctx, idx, 48, func(i int) {
			r := cl.Call(ctx, "GET /v1/events/{id}/queue/me", http.MethodGet, queuePath+"/me", customers[i], "", nil)
			var q queuePlace
			if r.Status != http.StatusOK || r.Decode(&q) != nil {
				t.Errorf("%s reads its place: %s", customers[i].Email, r)
				return
			}
			if q.Status == "waiting" && (q.Place == nil || q.Ahead >= *q.Place) {
				t.Errorf("%s waits with place %v and %d ahead", customers[i].Email, q.Place, q.Ahead)
			}
			places[i] = q
			if q.Status == "admitted" {
				admitted.Add(1)
			}
		})
		if t.Failed() {
			t.FailNow()
		}
		sleepCtx(ctx, 500*time.Millisecond)
	}
	streams.Wait()

	// Places: 1 to N, each once; the pre-queue drawn at random into the first places, the waves
	// after it behind, in order.
	byPlace := make([]int, len(customers)+1)
	for i, q := range places {
		if q.Place == nil || *q.Place < 1 || *q.Place > int64(len(customers)) || q.Pass == "" || q.PassExpiresAt == nil {
			t.Fatalf("%s: admitted with place %v, pass %t", customers[i].Email, q.Place, q.Pass != "")
		}
		if byPlace[*q.Place] != 0 {
			t.Fatalf("place %d given twice", *q.Place)
		}
		byPlace[*q.Place] = i + 1
	}
	for i, w := range []struct{ from, to int }{{0, half}, {half, half + half/2}, {half + half/2, roomCustomers}} {
		for j := w.from; j < w.to; j++ {
			if p := int(*places[j].Place); p <= w.from || p > w.to {
				t.Fatalf("wave %d: %s has place %d, want from %d to %d", i, customers[j].Email, p, w.from+1, w.to)
			}
		}
	}
	if rho := rankCorrelation(places[:half]); math.Abs(rho) > 0.1 {
		t.Errorf("the pre-queue's places follow its order of arrival (rank correlation %.3f): the draw is not random", rho)
	}

	// Admission in the order of places: the pass of a later place never starts before the pass
	// of an earlier one (the pass starts when its place is admitted).
	admittedAt := make([]time.Time, len(customers)+1)
	for p := 1; p <= len(customers); p++ {
		admittedAt[p] = places[byPlace[p]-1].PassExpiresAt.Add(-roomPassLifetime * time.Second)
		if p > 1 && admittedAt[p].Before(admittedAt[p-1]) {
			t.Fatalf("place %d admitted at %s, before place %d at %s", p, admittedAt[p].Format(time.StampMilli), p-1, admittedAt[p-1].Format(time.StampMilli))
		}
	}
	// At the set rate: the pre-queue was all there from the opening, so its admission measures
	// the rate alone.
	span := admittedAt[half].Sub(admittedAt[1])
	rate := float64(half-1) / span.Minutes()
	t.Logf("admission: places 1 to %d in %s, %.0f a minute (set %d); all %d admitted %s after the opening",
		half, span.Round(time.Millisecond), rate, roomRatePerMinute, len(customers), admittedAt[len(customers)].Sub(opened).Round(time.Millisecond))
	if rate < 0.95*roomRatePerMinute || rate > 1.05*roomRatePerMinute {
		t.Errorf("admission rate %.0f a minute, want %d ± 5 %%", rate, roomRatePerMinute)
	}

	// Streams got the same pass the customer reads.
	if len(streamed) != roomStreams {
		t.Fatalf("%d of %d streams ended with a pass", len(streamed), roomStreams)
	}
	for u, q := range streamed {
		i := slices.Index(customers, u)
		if *q.Place != *places[i].Place || !q.PassExpiresAt.Equal(*places[i].PassExpiresAt) {
			t.Errorf("%s: the stream admitted place %d until %s, reading says place %d until %s", u.Email, *q.Place, q.PassExpiresAt, *places[i].Place, places[i].PassExpiresAt)
		}
	}

	// A hold needs the customer's own pass for this event.
	rec.SetPhase("holds")
	first, second := customers[byPlace[1]-1], customers[byPlace[2]-1]
	if h := cl.Hold(ctx, first, ttID, 1, ""); h.ProblemType() != problemPrefix+"queue-pass-required" {
		t.Errorf("hold without a pass: %s, want 403 queue-pass-required", h.Resp)
	}
	withPass := func(pass string) *Client {
		return cl.With(func(c *Client) { c.Header = http.Header{"Queue-Pass": {pass}} })
	}
	if h := withPass(places[byPlace[2]-1].Pass).Hold(ctx, first, ttID, 1, ""); h.ProblemType() != problemPrefix+"queue-pass-invalid" {
		t.Errorf("hold with another customer's pass: %s, want 403 queue-pass-invalid", h.Resp)
	}
	var held atomic.Int64
	forEach(ctx, customers[:200], 24, func(u *Customer) {
		i := slices.Index(customers, u)
		h := withPass(places[i].Pass).Hold(ctx, u, ttID, 1, "")
		switch {
		case h.Status == http.StatusCreated:
			held.Add(1)
		case !h.SoldOut():
			t.Errorf("%s holds with its pass: %s", u.Email, h.Resp)
		}
	})
	if held.Load() != 100 {
		t.Errorf("%d holds with passes, want the 100 tickets", held.Load())
	}
	if h := withPass(places[byPlace[1]-1].Pass).Hold(ctx, second, ttID, 1, ""); h.ProblemType() != problemPrefix+"queue-pass-invalid" {
		t.Errorf("hold with another customer's pass after the sale: %s, want 403 queue-pass-invalid", h.Resp)
	}
	rec.Forbid(t, "5xx answers other than 503 with Retry-After", func(s Sample) bool { return s.Status >= 500 && !s.Unavailable() })
	rec.Forbid(t, "connection errors", Sample.ConnErr)
}

// problemPrefix starts every problem type.
const problemPrefix = "https://onsale.dev/problems/"

// samePlace tells whether two answers show the same place.
func samePlace(a, b queuePlace) bool {
	if a.Status != b.Status || (a.Place == nil) != (b.Place == nil) {
		return false
	}
	return a.Place == nil || *a.Place == *b.Place
}

// forEach calls f for every item, n at a time.
func forEach[T any](ctx context.Context, items []T, n int, f func(T)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(items) || ctx.Err() != nil {
					return
				}
				f(items[i])
			}
		}()
	}
	wg.Wait()
}

// mustWait waits for cond, failing the test after timeout.
func mustWait(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !waitFor(timeout, 100*time.Millisecond, cond) {
		t.Fatalf("waited %s for %s", timeout, what)
	}
}

// rankCorrelation is Spearman's correlation between the order of the entries (their order of
// arrival) and their places.
func rankCorrelation(entries []queuePlace) float64 {
	ranks := make([]int, len(entries))
	for i := range ranks {
		ranks[i] = i
	}
	slices.SortFunc(ranks, func(a, b int) int { return int(*entries[a].Place - *entries[b].Place) })
	n := float64(len(entries))
	var d2 float64
	for placeRank, arrival := range ranks {
		d := float64(placeRank - arrival)
		d2 += d * d
	}
	return 1 - 6*d2/(n*(n*n-1))
}

// followQueue reads a customer's queue stream until it admits them, and returns the last place
// it showed.
func followQueue(ctx context.Context, cl *Client, u *Customer, path string) (*queuePlace, error) {
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, cl.Base+path, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+u.bearer())
		req.Header.Set("Accept", "text/event-stream")
		resp, err := streamClient.Do(req)
		if err != nil {
			return nil, err
		}
		q, err := readQueueEvents(resp)
		if q != nil || attempt == 3 {
			return q, err
		}
		// The stream ended without a pass (a replica asked to reconnect): follow again.
	}
}

// streamClient has no overall timeout: a stream lasts until the customer is admitted.
var streamClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: roomStreams}}

func readQueueEvents(resp *http.Response) (*queuePlace, error) {
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return nil, fmt.Errorf("stream answered %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: ") && event == "position":
			var q queuePlace
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &q); err != nil {
				return nil, fmt.Errorf("stream data %q: %w", line, err)
			}
			if q.Status == "admitted" {
				return &q, nil
			}
		case strings.HasPrefix(line, "data: ") && event == "reconnect":
			return nil, nil
		case strings.HasPrefix(line, "data: "):
			return nil, fmt.Errorf("stream event %s: %s", event, line)
		}
	}
	return nil, sc.Err()
}
