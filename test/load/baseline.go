package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"
)

// The baseline: before each scenario the tool serves a minimal JSON handler itself and drives it
// in the scenario's mode with the same client settings (connections, source addresses, rate), on
// the same machine. Its throughput is what this machine and this client can do at best, so a
// scenario's figures divided by it survive a noisy or smaller machine.

// startBaselineServer serves {"ok":true} on 127.0.0.1:0.
func startBaselineServer() (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	body := []byte(`{"ok":true}` + "\n")
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(body)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

// runBaseline drives the baseline handler with loop (its duration replaced by the baseline's)
// using a client with the same settings as the scenario's.
func (e *env) runBaseline(ctx context.Context, loop Loop) (Phase, error) {
	url, stop, err := startBaselineServer()
	if err != nil {
		return Phase{}, fmt.Errorf("baseline server: %w", err)
	}
	defer stop()
	c := NewClient([]string{url}, nil, loop.Workers, e.sources, e.o.Timeout, nil)
	defer c.Close()
	loop.Duration = e.o.baselineDuration()
	loop.Limit = 0
	rec := NewRecorder("baseline")
	stopProgress := startProgress(e.prog, "baseline  ", rec)
	el := loop.Run(ctx, rec, func(ctx context.Context, w int, i int64) Outcome {
		return c.Do(ctx, Request{Method: http.MethodGet, Path: "/"}).Outcome()
	})
	stopProgress()
	if ctx.Err() != nil {
		return Phase{}, ctx.Err()
	}
	p := rec.Phase(el)
	e.logf("baseline (%s, %d connections, %s): %.0f requests/s, p99 %.2f ms", loop.Mode(), loop.Workers, loop.Duration, p.ThroughputRPS, p.Latency.P99)
	return p, nil
}
