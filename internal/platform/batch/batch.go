// Package batch combines concurrent calls into batches: while one batch runs, the calls that
// arrive wait and then run together in the next. A database round trip or a durable commit then
// serves many callers, and under no load a call runs at once, alone, with no added wait.
package batch

import (
	"context"
	"sync"
	"time"
)

// Combiner runs calls of Req in batches through one function.
type Combiner[Req, Res any] struct {
	run      func(ctx context.Context, reqs []Req) []Res
	max      int           // most calls in one batch
	parallel int           // most batches running at once
	timeout  time.Duration // deadline of one batch

	mu      sync.Mutex
	pending []*call[Req, Res]
	running int
}

type call[Req, Res any] struct {
	req  Req
	res  Res
	done chan struct{}
}

// New returns a combiner. run must return one result per request, in order; it gets a context of
// its own (with timeout), because a batch serves callers whose contexts end at different times.
func New[Req, Res any](max, parallel int, timeout time.Duration, run func(context.Context, []Req) []Res) *Combiner[Req, Res] {
	return &Combiner[Req, Res]{run: run, max: max, parallel: parallel, timeout: timeout}
}

// Do runs req in the next batch and returns its result. If ctx ends first, Do returns ctx's error
// and the call may still run.
func (c *Combiner[Req, Res]) Do(ctx context.Context, req Req) (Res, error) {
	cl := &call[Req, Res]{req: req, done: make(chan struct{})}
	c.mu.Lock()
	c.pending = append(c.pending, cl)
	lead := c.running < c.parallel
	if lead {
		c.running++
	}
	c.mu.Unlock()
	if lead {
		// This caller runs batches until its own call is done; whatever is left then is handed
		// to a goroutine, so no call waits for a caller that is not coming.
		c.drain(cl.done)
	}
	select {
	case <-cl.done:
		return cl.res, nil
	case <-ctx.Done():
		var zero Res
		return zero, ctx.Err()
	}
}

// drain runs batches until stop is closed (nil: until the queue is empty), then releases its
// running slot, handing any remaining calls to a new goroutine.
func (c *Combiner[Req, Res]) drain(stop <-chan struct{}) {
	for {
		c.mu.Lock()
		if len(c.pending) == 0 {
			c.running--
			c.mu.Unlock()
			return
		}
		select {
		case <-stop:
			// Our own call is answered: keep the slot for a goroutine that finishes the queue.
			c.mu.Unlock()
			go c.drain(nil)
			return
		default:
		}
		n := min(len(c.pending), c.max)
		batch := make([]*call[Req, Res], n)
		copy(batch, c.pending)
		c.pending = c.pending[n:]
		c.mu.Unlock()
		c.runBatch(batch)
	}
}

func (c *Combiner[Req, Res]) runBatch(batch []*call[Req, Res]) {
	reqs := make([]Req, len(batch))
	for i, cl := range batch {
		reqs[i] = cl.req
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	results := c.run(ctx, reqs)
	for i, cl := range batch {
		cl.res = results[i]
		close(cl.done)
	}
}
