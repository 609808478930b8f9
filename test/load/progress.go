package main

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// progress rewrites one status line on stderr every second.
type progress struct {
	stop chan struct{}
	done chan struct{}
}

// startProgress prints label and the recorder's figures every second until the returned
// function is called: elapsed, requests, requests per second over the last second, errors (no
// answer or 5xx) and the p99 so far.
func startProgress(w io.Writer, label string, recs ...*Recorder) func() {
	var last int64
	return startProgressFunc(w, func(elapsed time.Duration) string {
		var n, errs int64
		var p99 float64
		for _, r := range recs {
			c, e, p := r.Live()
			n, errs, p99 = n+c, errs+e, max(p99, p)
		}
		rps := n - last
		last = n
		return fmt.Sprintf("%s %4.0fs  requests %9d  rps %7d  errors %6d  p99 %8.2f ms", label, elapsed.Seconds(), n, rps, errs, p99)
	})
}

// startProgressFunc prints line's text every second until the returned function is called.
func startProgressFunc(w io.Writer, line func(elapsed time.Duration) string) func() {
	if w == nil || w == io.Discard {
		return func() {}
	}
	p := &progress{stop: make(chan struct{}), done: make(chan struct{})}
	t0 := time.Now()
	go func() {
		defer close(p.done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				fmt.Fprintf(w, "\r%-100s\r", "")
				return
			case <-tick.C:
				fmt.Fprintf(w, "\r%-100s", line(time.Since(t0)))
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(p.stop)
			<-p.done
		})
	}
}
