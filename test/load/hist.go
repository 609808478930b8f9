package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds from 1 µs to 60 s with three significant digits.
const (
	histLowest  = 1
	histHighest = 60_000_000
	histDigits  = 3
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histLowest, histHighest, histDigits) }

// Latency is a summary of a histogram, in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

func ms(us int64) float64 { return float64(us) / 1000 }

func summarize(h *hdrhistogram.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	return Latency{
		Count: h.TotalCount(), Mean: h.Mean() / 1000,
		P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)), P99: ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max()),
	}
}

// The series over time starts with buckets of seriesFirstBucket and doubles their width whenever
// the run outgrows seriesMaxBuckets, so a sale over in half a second and a run of ten minutes
// both get between half of seriesMaxBuckets and seriesMaxBuckets points.
const (
	seriesFirstBucket = time.Millisecond
	seriesMaxBuckets  = 100
)

// Point is one bucket of a run's series: the answers that came within it.
type Point struct {
	T        float64 `json:"t_s"` // the bucket's start, in seconds from the phase's start
	Requests int64   `json:"requests"`
	RPS      float64 `json:"rps"` // answers per second within the bucket
	P50      float64 `json:"p50_ms"`
	P99      float64 `json:"p99_ms"`
}

// Outcome is what a recorded operation gave: its answer's status (0: none), the transport error,
// and when the answer came (zero: when the operation returned).
type Outcome struct {
	Status int
	Err    error
	End    time.Time
}

// Recorder collects the latencies and answers of one kind of request, overall and over time.
// It is safe for concurrent use.
type Recorder struct {
	name     string
	mu       sync.Mutex
	t0       time.Time
	all      *hdrhistogram.Histogram
	bucket   time.Duration             // the width of the series' buckets
	buckets  []*hdrhistogram.Histogram // nil: nothing answered within the bucket
	last     time.Duration             // the latest answer, from t0
	status   map[int]int64
	count    int64
	errors   int64 // no answer: transport errors and timeouts
	timeouts int64
	samples  []string
}

// NewRecorder returns a recorder whose series starts now.
func NewRecorder(name string) *Recorder {
	return &Recorder{name: name, t0: time.Now(), all: newHist(), bucket: seriesFirstBucket, status: map[int]int64{}}
}

// Restart moves the start of the series to t; call it before recording.
func (r *Recorder) Restart(t time.Time) {
	r.mu.Lock()
	r.t0 = t
	r.mu.Unlock()
}

// Record adds one operation that started (or was meant to start) at start.
func (r *Recorder) Record(start time.Time, o Outcome) {
	end := o.End
	if end.IsZero() {
		end = time.Now()
	}
	us := end.Sub(start).Microseconds()
	us = min(max(us, histLowest), histHighest)
	timeout := isTimeout(o.Err)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.count++
	if o.Status == 0 {
		r.errors++
		if timeout {
			r.timeouts++
		}
		if len(r.samples) < 5 && o.Err != nil {
			r.samples = append(r.samples, o.Err.Error())
		}
	} else {
		r.status[o.Status]++
	}
	if o.Status == 0 && !timeout {
		return // a refused connection says nothing about latency
	}
	_ = r.all.RecordValue(us)
	at := max(end.Sub(r.t0), 0)
	r.last = max(r.last, at)
	i := int(at / r.bucket)
	for i >= seriesMaxBuckets {
		r.widen()
		i = int(at / r.bucket)
	}
	for len(r.buckets) <= i {
		r.buckets = append(r.buckets, nil)
	}
	if r.buckets[i] == nil {
		r.buckets[i] = hdrhistogram.New(histLowest, histHighest, 2)
	}
	_ = r.buckets[i].RecordValue(us)
}

// widen doubles the width of the series' buckets, merging them in pairs.
func (r *Recorder) widen() {
	merged := make([]*hdrhistogram.Histogram, (len(r.buckets)+1)/2)
	for i, h := range r.buckets {
		switch m := merged[i/2]; {
		case h == nil:
		case m == nil:
			merged[i/2] = h
		default:
			m.Merge(h)
		}
	}
	r.buckets = merged
	r.bucket *= 2
}

// Note records a problem that is not a transport error (an unexpected answer, say), for the
// report's samples.
func (r *Recorder) Note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) < 5 {
		r.samples = append(r.samples, fmt.Sprintf(format, args...))
	}
}

// Count returns how many operations were recorded.
func (r *Recorder) Count() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// Live returns figures for the progress line: operations, errors and the p99 so far.
func (r *Recorder) Live() (count, errs int64, p99 float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for s, n := range r.status {
		if s >= 500 {
			errs += n
		}
	}
	return r.count, errs + r.errors, ms(r.all.ValueAtQuantile(99))
}

// StatusCount returns how many answers had the given status.
func (r *Recorder) StatusCount(status int) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status[status]
}

// Unexpected counts answers whose status is not among ok, plus operations with no answer.
func (r *Recorder) Unexpected(ok ...int) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.errors
	for s, c := range r.status {
		if !slices.Contains(ok, s) {
			n += c
		}
	}
	return n
}

// Latency summarizes the whole run.
func (r *Recorder) Latency() Latency {
	r.mu.Lock()
	defer r.mu.Unlock()
	return summarize(r.all)
}

// Series returns the answers per second, p50 and p99 of each bucket, and the buckets' width.
// A phase that lasted elapsed ends within its last bucket: that bucket's rate counts only the
// part of it the phase (or its last answer) reached, but at least a quarter of it, so that a
// straggler just past a bucket's start does not look like a burst.
func (r *Recorder) Series(elapsed time.Duration) ([]Point, time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Point, 0, len(r.buckets))
	for i, h := range r.buckets {
		start := time.Duration(i) * r.bucket
		p := Point{T: start.Seconds()}
		if h != nil {
			width := r.bucket
			if i == len(r.buckets)-1 {
				width = min(width, max(elapsed-start, r.last-start, width/4))
			}
			p.Requests = h.TotalCount()
			p.RPS = float64(p.Requests) / width.Seconds()
			p.P50, p.P99 = ms(h.ValueAtQuantile(50)), ms(h.ValueAtQuantile(99))
		}
		out = append(out, p)
	}
	return out, r.bucket
}

// Phase is the report of one recorder over a measured interval.
type Phase struct {
	Name          string           `json:"name"`
	Requests      int64            `json:"requests"`
	Statuses      map[string]int64 `json:"statuses"`
	Errors        int64            `json:"no_answer"`
	Timeouts      int64            `json:"timeouts"`
	DurationS     float64          `json:"duration_s"`
	ThroughputRPS float64          `json:"throughput_rps"`
	Latency       Latency          `json:"latency"`
	BucketS       float64          `json:"bucket_s,omitempty"` // the width of the series' buckets
	Series        []Point          `json:"series,omitempty"`
	Samples       []string         `json:"error_samples,omitempty"`
}

// Phase reports the recorder as a phase that lasted elapsed.
func (r *Recorder) Phase(elapsed time.Duration) Phase {
	lat := r.Latency()
	series, bucket := r.Series(elapsed)
	r.mu.Lock()
	defer r.mu.Unlock()
	p := Phase{Name: r.name, Requests: r.count, Statuses: map[string]int64{}, Errors: r.errors, Timeouts: r.timeouts,
		DurationS: elapsed.Seconds(), Latency: lat, BucketS: bucket.Seconds(), Series: series, Samples: slices.Clone(r.samples)}
	for s, n := range r.status {
		p.Statuses[strconv.Itoa(s)] = n
	}
	if r.errors > 0 {
		p.Statuses["no answer"] = r.errors
	}
	if elapsed > 0 {
		p.ThroughputRPS = float64(r.count) / elapsed.Seconds()
	}
	return p
}

// Op is one operation of a load loop: worker w, operation number i.
type Op func(ctx context.Context, w int, i int64) Outcome

// Loop says how operations are sent: Workers concurrent workers, for Duration, either as fast
// as they can (Rate 0, closed loop) or at Rate operations per second (open loop: each operation
// has an intended start time and its latency counts from then, so a stall shows up in full
// instead of delaying the next requests: no coordinated omission). Limit > 0 stops after that
// many operations.
type Loop struct {
	Workers  int
	Duration time.Duration
	Rate     float64
	Limit    int64
}

// Mode names the loop's mode.
func (l Loop) Mode() string {
	if l.Rate > 0 {
		return fmt.Sprintf("open loop, %.0f/s", l.Rate)
	}
	return "closed loop"
}

// Run drives op and records every operation in rec; it returns how long the loop ran (until the
// last operation finished). A loop stops after Duration or after Limit operations: without
// either it does nothing.
func (l Loop) Run(ctx context.Context, rec *Recorder, op Op) time.Duration {
	if l.Duration <= 0 && l.Limit <= 0 {
		return 0
	}
	var next atomic.Int64
	take := func() int64 { return next.Add(1) - 1 }
	t0 := time.Now()
	rec.Restart(t0)
	deadline := t0.Add(l.Duration)
	total := l.Limit
	if l.Rate > 0 {
		n := int64(l.Rate * l.Duration.Seconds())
		if total == 0 || n < total {
			total = n
		}
	}
	interval := time.Duration(0)
	if l.Rate > 0 {
		interval = time.Duration(float64(time.Second) / l.Rate)
	}
	var wg sync.WaitGroup
	for w := range max(l.Workers, 1) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := take()
				if total > 0 && i >= total {
					return
				}
				var start time.Time
				if l.Rate > 0 {
					start = t0.Add(time.Duration(i) * interval)
					if d := time.Until(start); d > 0 {
						select {
						case <-time.After(d):
						case <-ctx.Done():
							return
						}
					}
				} else {
					start = time.Now()
					if l.Duration > 0 && !start.Before(deadline) {
						return
					}
				}
				rec.Record(start, op(ctx, w, i))
			}
		})
	}
	wg.Wait()
	el := time.Since(t0)
	if l.Rate > 0 && el < l.Duration {
		el = l.Duration // the last operation was due just before the end
	}
	return el
}
