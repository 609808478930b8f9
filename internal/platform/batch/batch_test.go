package batch

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestAloneRunsAtOnce(t *testing.T) {
	var batches atomic.Int32
	c := New(10, 1, time.Second, func(_ context.Context, reqs []int) []int {
		batches.Add(1)
		out := make([]int, len(reqs))
		for i, r := range reqs {
			out[i] = r * 2
		}
		return out
	})
	for i := range 5 {
		got, err := c.Do(context.Background(), i)
		if err != nil || got != 2*i {
			t.Fatalf("Do(%d) = %d, %v", i, got, err)
		}
	}
	if batches.Load() != 5 {
		t.Fatalf("%d batches for 5 sequential calls", batches.Load())
	}
}

// TestConcurrentCallsShareBatches: while a batch runs, arriving calls queue and run together, and
// every caller gets its own result.
func TestConcurrentCallsShareBatches(t *testing.T) {
	var batches, biggest atomic.Int32
	release := make(chan struct{})
	first := true
	var mu sync.Mutex
	c := New(50, 1, 5*time.Second, func(_ context.Context, reqs []int) []int {
		mu.Lock()
		wait := first
		first = false
		mu.Unlock()
		if wait {
			<-release // hold the first batch so the others queue behind it
		}
		batches.Add(1)
		for {
			b := biggest.Load()
			if int32(len(reqs)) <= b || biggest.CompareAndSwap(b, int32(len(reqs))) {
				break
			}
		}
		out := make([]int, len(reqs))
		for i, r := range reqs {
			out[i] = r + 1000
		}
		return out
	})
	var wg sync.WaitGroup
	results := make([]int, 200)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := c.Do(context.Background(), i)
			if err != nil {
				t.Error(err)
			}
			results[i] = v
		}()
	}
	time.Sleep(50 * time.Millisecond) // let the calls queue behind the held batch
	close(release)
	wg.Wait()
	for i, v := range results {
		if v != i+1000 {
			t.Fatalf("call %d got %d", i, v)
		}
	}
	if b := batches.Load(); b > 10 || biggest.Load() < 20 {
		t.Fatalf("%d batches, biggest %d: the calls were not combined", b, biggest.Load())
	}
	if biggest.Load() > 50 {
		t.Fatalf("a batch of %d exceeded the limit of 50", biggest.Load())
	}
}

func TestCallerGivesUp(t *testing.T) {
	block := make(chan struct{})
	c := New(10, 1, 5*time.Second, func(_ context.Context, reqs []int) []int {
		<-block
		return make([]int, len(reqs))
	})
	go func() { _, _ = c.Do(context.Background(), 1) }() // occupies the only runner
	time.Sleep(10 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.Do(ctx, 2); err == nil {
		t.Fatal("a call whose context ended returned no error")
	}
	close(block)
	// The queue still drains: a later call is answered.
	v, err := c.Do(context.Background(), 3)
	if err != nil || v != 0 {
		t.Fatalf("later call: %d, %v", v, err)
	}
}
