package inventory

import (
	"context"
	"sync"
	"time"
)

// committer groups concurrent commits of one ticket type into one transaction. The row that
// counts a ticket type's sales is hot during an on-sale and a durable commit waits for a disk
// flush, so one transaction per sale tops out near the disk's flush rate; committing everything
// that queued up while the previous transaction ran lifts that ceiling without adding any wait
// when the queue is empty.
type committer struct {
	store    Store
	maxBatch int
	idle     time.Duration
	observe  func(size int)

	mu     sync.Mutex
	queues map[queueKey]*commitQueue
}

type queueKey [16]byte

type commitQueue struct {
	jobs    chan *commitJob
	pending int // jobs promised to the channel; guarded by committer.mu
}

type commitJob struct {
	req  CommitRequest
	done chan CommitResult
}

func newCommitter(store Store, maxBatch int, observe func(int)) *committer {
	return &committer{store: store, maxBatch: maxBatch, idle: time.Minute, observe: observe, queues: map[queueKey]*commitQueue{}}
}

// Commit queues req behind the ticket type's running transaction and waits for its result.
func (c *committer) Commit(ctx context.Context, req CommitRequest) CommitResult {
	key := queueKey(req.Hold.TicketTypeID)
	c.mu.Lock()
	q, ok := c.queues[key]
	if !ok {
		q = &commitQueue{jobs: make(chan *commitJob, c.maxBatch)}
		c.queues[key] = q
		go c.run(key, q)
	}
	q.pending++
	c.mu.Unlock()

	job := &commitJob{req: req, done: make(chan CommitResult, 1)}
	q.jobs <- job // never blocks for long: the runner drains it continuously
	select {
	case r := <-job.done:
		return r
	case <-ctx.Done():
		// The commit may still happen; a retry finds its tickets, as commits are idempotent.
		return CommitResult{Err: ctx.Err()}
	}
}

func (c *committer) run(key queueKey, q *commitQueue) {
	timer := time.NewTimer(c.idle)
	defer timer.Stop()
	for {
		var first *commitJob
		select {
		case first = <-q.jobs:
		case <-timer.C:
			c.mu.Lock()
			if q.pending == 0 {
				delete(c.queues, key)
				c.mu.Unlock()
				return
			}
			c.mu.Unlock()
			timer.Reset(c.idle)
			continue
		}
		batch := []*commitJob{first}
	gather:
		for len(batch) < c.maxBatch {
			select {
			case j := <-q.jobs:
				batch = append(batch, j)
			default:
				break gather
			}
		}
		c.mu.Lock()
		q.pending -= len(batch)
		c.mu.Unlock()
		c.commit(batch)
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(c.idle)
	}
}

// commit runs one batch. Two jobs for the same hold (a redelivered message racing the first) get
// one commit and share its result.
func (c *committer) commit(batch []*commitJob) {
	reqs := make([]CommitRequest, 0, len(batch))
	index := make(map[string]int, len(batch))
	owner := make([]int, len(batch))
	for i, j := range batch {
		if k, seen := index[j.req.Hold.ID]; seen {
			owner[i] = k
			continue
		}
		index[j.req.Hold.ID] = len(reqs)
		owner[i] = len(reqs)
		reqs = append(reqs, j.req)
	}
	if c.observe != nil {
		c.observe(len(reqs))
	}
	// The batch outlives any one caller's context: a caller that gives up must not abort the
	// others' transaction.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	results := c.store.Commit(ctx, reqs)
	for i, j := range batch {
		j.done <- results[owner[i]]
	}
}
