package system

import (
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRedisClusterFailoverMidSale: three replicas behind nginx on the test's own Redis Cluster
// (3 masters, 3 replicas, ports 7010-7015). Once a third of the tickets are sold, the master that
// owns the sale's ticket type is killed with SIGKILL; its replica is promoted. The sale goes on
// and sells out, PostgreSQL sells no more than capacity, every accepted order ends confirmed or
// failed, and while the cluster fails over customers get 503 with Retry-After, quickly (within
// a generous multiple of the same run's latency before the kill), never a hang or another 5xx.
// Holds written to the master and not yet replicated may be lost with it: their checkout may
// answer 404, and an order whose hold was lost is either sold (PostgreSQL had room) or refunded.
func TestRedisClusterFailoverMidSale(t *testing.T) {
	systemTest(t)
	rc := StartRedisCluster(t, 7010, 1500*time.Millisecond)
	c := NewCluster(t, Options{Replicas: 3, RedisURL: rc.URL, Env: fastRedelivery})
	rec := NewRecorder(t)
	cl := NewClient(c.URL(), rec).With(func(c *Client) {
		// Customers come back when told to (every attempt is recorded), and log in again if their
		// session was on the lost master and not yet replicated.
		c.RetryUnavailable, c.Relogin, c.MaxWait = true, true, 500*time.Millisecond
	})
	const capacity = 150
	eventID, ttID, customers := setupSale(t, c, cl, 48, capacity, 1, testTag("rcfail"))
	victim := rc.MasterOf(t, "inv:{tt:"+ttID+"}:held")
	heir := rc.ReplicaOf(t, victim)
	t.Logf("the sale's ticket type is on master %s, replicated by %s", victim.Addr, heir.Addr)
	history := watchSold(c, ttID)
	defer history.Stop()

	accepted := NewAccepted()
	problems := &notes{}
	var workers []*worker
	for _, us := range split(customers, 16) {
		workers = append(workers, &worker{cl: cl, users: us, eventID: eventID, tt: ttID, accepted: accepted,
			pause: 150 * time.Millisecond, browse: true, checkoutEvery: 1, follow: true, lostHoldOK: true, notes: problems})
	}
	rec.SetPhase("before")
	tr := startTraffic(workers...)
	defer tr.Stop()
	poll(t, 60*time.Second, 50*time.Millisecond, func() bool { return history.last() >= capacity/3 }, says("a third of the tickets sold"))

	before := rec.Samples(func(s Sample) bool { return s.Phase == "before" && s.Status > 0 })
	base99 := Percentile(before, 0.99)
	rec.SetPhase("failover")
	soldBefore := history.last()
	killedAt := time.Now()
	if err := victim.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := victim.Wait(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	poll(t, 30*time.Second, 50*time.Millisecond, func() bool { return rc.Healthy(heir) },
		func() string { return "the replica promoted and the cluster ok:\n" + rc.Describe() })
	promotedAt := time.Now()
	rec.SetPhase("after")
	t.Logf("master %s killed with SIGKILL with %d of %d sold; %s promoted and cluster_state:ok %s later",
		victim.Addr, soldBefore, capacity, heir.Addr, promotedAt.Sub(killedAt).Round(time.Millisecond))

	if !waitFor(30*time.Second, 100*time.Millisecond, func() bool { return history.last() == capacity }) {
		t.Errorf("the sale did not sell out within 30 s of the failover: PostgreSQL sold %d of %d", history.last(), capacity)
	}
	tr.Stop()
	history.Stop()
	problems.report(t, "unexpected answer")
	t.Logf("traffic: %s", tr)

	rec.SetPhase("settle")
	f := CheckInvariants(t, c, eventID, ttID, accepted, 60*time.Second)
	if f.Sold != capacity {
		t.Errorf("sold %d, want the sale sold out (%d)", f.Sold, capacity)
	}
	t.Logf("client answers:%s", rec.Counts(nil))

	// What customers saw from the kill until 5 s after the promotion.
	window := promotedAt.Add(5 * time.Second)
	during := func(s Sample) bool { return !s.At.Add(s.Latency).Before(killedAt) && s.At.Before(window) }
	duringFailover := rec.Samples(during)
	unavailable := rec.Samples(func(s Sample) bool { return during(s) && s.Unavailable() })
	// Generous (the machine is shared and noisy) yet well under the failover's own time (about
	// node timeout + election, 1.5 s + 1-2 s): a request that waited for the promotion is a hang.
	bound := max(time.Second, 5*base99)
	t.Logf("before the kill: %d answers, p99 %s; during the failover: %d answers, %d of them 503 with Retry-After (p99 %s, slowest %s), p99 of all %s; bound %s",
		len(before), base99.Round(time.Millisecond), len(duringFailover), len(unavailable),
		Percentile(unavailable, 0.99).Round(time.Millisecond), Percentile(unavailable, 1).Round(time.Millisecond),
		Percentile(duringFailover, 0.99).Round(time.Millisecond), bound)
	if len(unavailable) == 0 {
		t.Errorf("no customer got a 503 with Retry-After during the failover: the kill did not reach the sale (%d answers in the window)", len(duringFailover))
	}
	rec.Forbid(t, fmt.Sprintf("answers slower than %s during the failover (a hang)", bound), func(s Sample) bool {
		return during(s) && s.Latency > bound
	})
	rec.Forbid(t, "connection errors", Sample.ConnErr)
	rec.Forbid(t, "5xx answers other than 503 with Retry-After", func(s Sample) bool { return s.Status >= 500 && !s.Unavailable() })
	rec.Forbid(t, "503 answers outside the failover (kill to promotion + 5 s)", func(s Sample) bool {
		return s.Unavailable() && !during(s)
	})
	rec.Forbid(t, "401 answers before the kill", func(s Sample) bool {
		return s.Status == http.StatusUnauthorized && s.At.Add(s.Latency).Before(killedAt)
	})
	rec.Forbid(t, "4xx answers other than 401 (log in again), 409 sold-out and 404 for a hold lost with the master", func(s Sample) bool {
		switch {
		case s.Status < 400 || s.Status >= 500 || s.Status == http.StatusUnauthorized:
			return false
		case s.Status == http.StatusConflict && strings.HasSuffix(s.Type, "/sold-out"):
			return false
		case s.Status == http.StatusNotFound && s.Route == "POST /v1/orders" && !s.At.Add(s.Latency).Before(killedAt):
			return false
		}
		return true
	})
}
