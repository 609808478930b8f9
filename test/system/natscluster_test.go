package system

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestNATSClusterFailover: three replicas on a 3-node NATS JetStream cluster of the test's own,
// every stream and consumer on 3 replicas (ONSALE_NATS_REPLICAS=3). Mid-sale one node that does
// not lead the payment stream is killed (SIGKILL), and once it is back and caught up, the
// stream's leader is killed. Orders keep being accepted and confirmed through both; at the end
// every accepted order is confirmed, the provider's ledger shows exactly one charge per order
// (none charged twice), and every customer following an order's status stream, including those
// whose stream was open across a kill, sees it confirmed.
func TestNATSClusterFailover(t *testing.T) {
	systemTest(t)
	nc := StartNATSCluster(t, 3)
	env := map[string]string{"ONSALE_NATS_REPLICAS": "3", "ONSALE_SSE_HEARTBEAT": "2s"}
	maps.Copy(env, fastRedelivery)
	// Each charge takes 1.5 s, so orders are pending (and their status streams open) across the kills.
	c := NewCluster(t, Options{Replicas: 3, NATSURL: nc.URL, Env: env, ProviderLatency: 1500 * time.Millisecond})
	rec := NewRecorder(t)
	cl := NewClient(c.URL(), rec)
	// 20 customers per worker, so each buys about every 5 s: while the stream elects a new leader
	// (6 s or more) payments wait, and a customer's checked-out holds count among its 4 live
	// holds until confirmed. With 10 per worker, customers reached the limit and got 429
	// too-many-holds, the per-customer limit doing its job, not a failover fault.
	eventID, ttID, customers := setupSale(t, c, cl, 200, 100000, 1, testTag("natsha"))
	stream := c.NATSPrefix + "_PAYMENTS"

	accepted := NewAccepted()
	problems := &notes{}
	var workers []*worker
	for _, us := range split(customers, 10) {
		workers = append(workers, &worker{cl: cl, users: us, eventID: eventID, tt: ttID, accepted: accepted,
			pause: 250 * time.Millisecond, checkoutEvery: 1, notes: problems})
	}
	rec.SetPhase("before")
	tr := startTraffic(workers...)
	defer tr.Stop()
	streams := followOrders(cl, accepted, 3)
	defer streams.stop()
	confirmed := func() int {
		n, _ := c.OrderCounts(context.Background())
		return n["confirmed"]
	}
	moreConfirmed := func(what string) {
		t.Helper()
		from := confirmed()
		took := poll(t, 45*time.Second, 100*time.Millisecond, func() bool { return confirmed() >= from+20 }, says("20 more orders confirmed "+what))
		t.Logf("20 more orders confirmed %s in %s", what, took.Round(time.Millisecond))
	}
	poll(t, 30*time.Second, 100*time.Millisecond, func() bool { return confirmed() >= 20 }, says("20 orders confirmed before any node is killed"))

	// One node that does not lead the stream.
	leader := nc.Leader(t, stream, 10*time.Second)
	var follower *NATSNode
	for _, n := range nc.Nodes {
		if n.Name != leader {
			follower = n
			break
		}
	}
	rec.SetPhase("follower-down")
	killedFollower := time.Now()
	follower.Kill()
	t.Logf("killed NATS node %s (stream %s led by %s)", follower.Name, stream, leader)
	moreConfirmed("with a NATS node down")
	follower.Restart(t)
	var health string
	took := poll(t, 30*time.Second, 100*time.Millisecond, func() bool {
		var ok bool
		health, ok = nc.Healthy(stream)
		return ok
	}, func() string { return "stream " + stream + " caught up on every node: " + health })
	t.Logf("%s back; the stream caught up in %s: %s", follower.Name, took.Round(time.Millisecond), health)

	// Then the stream's leader.
	rec.SetPhase("leader-down")
	leader = nc.Leader(t, stream, 10*time.Second)
	killedLeader := time.Now()
	nc.Node(t, leader).Kill()
	var newLeader string
	took = poll(t, 30*time.Second, 100*time.Millisecond, func() bool {
		info, err := nc.StreamInfo(stream)
		if err == nil && info.Cluster != nil && info.Cluster.Leader != "" && info.Cluster.Leader != leader {
			newLeader = info.Cluster.Leader
		}
		return newLeader != ""
	}, says("a new leader for stream "+stream))
	t.Logf("killed the stream's leader %s; %s leads after %s", leader, newLeader, took.Round(time.Millisecond))
	moreConfirmed("after the leader was killed")
	nc.Node(t, leader).Restart(t)

	rec.SetPhase("after")
	tr.Stop()
	problems.report(t, "unexpected answer")
	t.Logf("traffic: %s", tr)

	rec.SetPhase("settle")
	f := CheckInvariants(t, c, eventID, ttID, accepted, 60*time.Second)
	if f.Confirmed != accepted.Len() || f.Failed != 0 {
		t.Errorf("%d orders accepted, want all confirmed: %d confirmed, %d failed %v", accepted.Len(), f.Confirmed, f.Failed, f.FailReasons)
	}
	if f.LedgerCharges != f.Confirmed {
		t.Errorf("the provider charged %d times for %d confirmed orders", f.LedgerCharges, f.Confirmed)
	}

	// Every stream a customer followed ends with the order confirmed, those open across a kill too.
	results := streams.wait(t, 30*time.Second)
	acrossFollower, acrossLeader := 0, 0
	for _, r := range results {
		if r.err != nil || r.status != "confirmed" {
			t.Errorf("order %s's status stream (opened %s) ended with %q: %v", r.id, r.opened.Format(time.TimeOnly), r.status, r.err)
		}
		if r.opened.Before(killedFollower) && r.closed.After(killedFollower) {
			acrossFollower++
		}
		if r.opened.Before(killedLeader) && r.closed.After(killedLeader) {
			acrossLeader++
		}
	}
	t.Logf("%d order status streams followed to the end; %d were open when the first node was killed, %d when the leader was",
		len(results), acrossFollower, acrossLeader)
	if acrossFollower == 0 || acrossLeader == 0 {
		t.Errorf("want order status streams open across each kill: %d across the first, %d across the leader's", acrossFollower, acrossLeader)
	}
	t.Logf("client answers:%s", rec.Counts(nil))
	rec.Forbid(t, "connection errors", Sample.ConnErr)
	rec.Forbid(t, "5xx answers", func(s Sample) bool { return s.Status >= 500 })
	rec.Forbid(t, "4xx answers", func(s Sample) bool { return s.Status >= 400 && s.Status < 500 })
}

// orderStream is what one customer's GET /v1/orders/{id}/events showed.
type orderStream struct {
	id             string
	status         string // the last status event's
	err            error
	opened, closed time.Time
}

// orderFollowers follow the status streams of accepted orders, as customers waiting on the
// order page do.
type orderFollowers struct {
	cancel context.CancelFunc
	done   chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	out    []orderStream
}

// followOrders follows every nth accepted order's status stream until the order is terminal
// (or 90 s pass), until stop.
func followOrders(cl *Client, accepted *Accepted, every int) *orderFollowers {
	ctx, cancel := context.WithCancel(context.Background())
	f := &orderFollowers{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		seen := map[string]bool{}
		for n := 0; ; {
			for _, id := range accepted.IDs() {
				if seen[id] {
					continue
				}
				seen[id] = true
				n++
				if n%every != 0 {
					continue
				}
				u, _ := accepted.Customer(id)
				f.wg.Add(1)
				go func() {
					defer f.wg.Done()
					r := followOrder(cl, u, id)
					f.mu.Lock()
					f.out = append(f.out, r)
					f.mu.Unlock()
				}()
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return f
}

// stop starts no more streams.
func (f *orderFollowers) stop() {
	f.cancel()
	<-f.done
}

// wait stops starting streams and waits up to timeout for those open to end.
func (f *orderFollowers) wait(t *testing.T, timeout time.Duration) []orderStream {
	t.Helper()
	f.stop()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		t.Errorf("order status streams still open %s after the sale", timeout)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]orderStream(nil), f.out...)
}

// followOrder reads an order's status stream until it says the order is terminal.
func followOrder(cl *Client, u *Customer, id string) (r orderStream) {
	r = orderStream{id: id, opened: time.Now()}
	defer func() { r.closed = time.Now() }()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cl.Base+"/v1/orders/"+id+"/events", nil)
	if err != nil {
		r.err = err
		return r
	}
	req.Header.Set("Authorization", "Bearer "+u.bearer())
	req.Header.Set("Accept", "text/event-stream")
	resp, err := streamClient.Do(req)
	if err != nil {
		r.err = err
		return r
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		r.err = fmt.Errorf("stream answered %d", resp.StatusCode)
		return r
	}
	sc := bufio.NewScanner(resp.Body)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: ") && event == "status":
			var o Order
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &o); err != nil {
				r.err = fmt.Errorf("status data %q: %w", line, err)
				return r
			}
			r.status = o.Status
			if o.Terminal() {
				return r
			}
		}
	}
	r.err = fmt.Errorf("stream ended before the order was terminal: %v", sc.Err())
	return r
}
