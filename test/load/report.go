package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"
)

// Check is one invariant (pass, fail or not checked) or one performance target (met, not met or
// not measured), with the figures behind it.
type Check struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail"`
}

type field struct {
	key   string
	value any
}

// Result is a scenario's report.
type Result struct {
	Scenario      string           `json:"scenario"`
	RunID         string           `json:"run_id"`
	Date          string           `json:"date"`
	Servers       []string         `json:"servers"`
	Routes        []string         `json:"routes,omitempty"` // --route MODULE=URL, as given
	Mode          string           `json:"mode"`
	Connections   int              `json:"connections"`
	Rate          float64          `json:"rate,omitempty"`
	Requests      int64            `json:"requests"`
	Statuses      map[string]int64 `json:"statuses"`
	Errors        int64            `json:"errors"`
	ThroughputRPS float64          `json:"throughput_rps"`
	P99MS         float64          `json:"p99_ms"`
	Latency       Latency          `json:"latency"`
	BaselineRPS   float64          `json:"baseline_rps"`
	BaselineP99MS float64          `json:"baseline_p99_ms"`
	Ratio         float64          `json:"ratio"`
	P99Ratio      float64          `json:"p99_ratio"`
	Invariants    []Check          `json:"invariants"`
	Goals         []Check          `json:"targets"`
	Notes         []string         `json:"notes,omitempty"`
	Baseline      Phase            `json:"baseline"`
	Phases        []Phase          `json:"phases"`

	fields []field
	main   string // the phase the headline figures come from
}

func newResult(e *env, scenario string, mode string) *Result {
	return &Result{Scenario: scenario, RunID: e.runID, Date: time.Now().UTC().Format(time.RFC3339),
		Servers: e.o.Targets, Routes: routeSpecs(e.o.Routes), Mode: mode, Connections: e.o.Connections, Statuses: map[string]int64{}}
}

// Set adds a scenario figure; it appears at the top level of the JSON (overriding a common field
// of the same name) and in the table.
func (r *Result) Set(key string, value any) {
	for i := range r.fields {
		if r.fields[i].key == key {
			r.fields[i].value = value
			return
		}
	}
	r.fields = append(r.fields, field{key, value})
}

// SetSale records the event and ticket type the run used.
func (r *Result) SetSale(s sale) {
	r.Set("event_id", s.Event)
	r.Set("ticket_type_id", s.TicketType)
}

// AddPhase adds a measured phase; the main one gives the headline figures.
func (r *Result) AddPhase(p Phase, main bool) {
	r.Phases = append(r.Phases, p)
	if main {
		r.main = p.Name
		r.Requests, r.Statuses, r.ThroughputRPS, r.Latency, r.P99MS = p.Requests, p.Statuses, p.ThroughputRPS, p.Latency, p.Latency.P99
		r.Errors = p.Errors
		for s, n := range p.Statuses {
			if len(s) == 3 && s[0] == '5' {
				r.Errors += n
			}
		}
	}
}

// Invariant records a correctness check; a failed one makes the tool exit non-zero.
func (r *Result) Invariant(name string, ok bool, format string, args ...any) {
	st := "pass"
	if !ok {
		st = "fail"
	}
	r.Invariants = append(r.Invariants, Check{Name: name, Status: st, Detail: fmt.Sprintf(format, args...)})
}

// NotChecked records an invariant that could not be checked in this run.
func (r *Result) NotChecked(name, why string) {
	r.Invariants = append(r.Invariants, Check{Name: name, Status: "not checked", Detail: why})
}

// Target records a performance target (a figure the scenario is meant to reach), met or not.
func (r *Result) Target(name string, met bool, format string, args ...any) {
	st := "met"
	if !met {
		st = "not met"
	}
	r.Goals = append(r.Goals, Check{Name: name, Status: st, Detail: fmt.Sprintf(format, args...)})
}

// NotMeasured records a target this run did not measure (too small a run, say).
func (r *Result) NotMeasured(name, why string) {
	r.Goals = append(r.Goals, Check{Name: name, Status: "not measured", Detail: why})
}

// Note adds a remark to the report.
func (r *Result) Note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// Failed tells whether an invariant failed (or, with targetsToo, a target was missed).
func (r *Result) Failed(targetsToo bool) bool {
	for _, c := range r.Invariants {
		if c.Status == "fail" {
			return true
		}
	}
	if targetsToo {
		for _, c := range r.Goals {
			if c.Status == "not met" {
				return true
			}
		}
	}
	return false
}

// finish computes the ratios to the baseline.
func (r *Result) finish(e *env) {
	r.BaselineRPS, r.BaselineP99MS = r.Baseline.ThroughputRPS, r.Baseline.Latency.P99
	if r.BaselineRPS > 0 {
		r.Ratio = round(r.ThroughputRPS/r.BaselineRPS, 4)
	}
	if r.BaselineP99MS > 0 {
		r.P99Ratio = round(r.P99MS/r.BaselineP99MS, 2)
	}
	if e.o.Rate > 0 && r.Rate == 0 {
		r.Rate = e.o.Rate
	}
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

// MarshalJSON flattens the scenario's figures into the top level.
func (r *Result) MarshalJSON() ([]byte, error) {
	type plain Result
	data, err := json.Marshal((*plain)(r))
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	for _, f := range r.fields {
		m[f.key] = f.value
	}
	return json.Marshal(m)
}

// WriteJSON writes the result to a file.
func (r *Result) WriteJSON(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// PrintTable writes the report for people.
func (r *Result) PrintTable(w io.Writer) {
	fmt.Fprintf(w, "\nonsale load: %s   run %s   %s\n", r.Scenario, r.RunID, r.Date)
	fmt.Fprintf(w, "servers: %s   (%s, %d connections)\n", strings.Join(r.Servers, " "), r.Mode, r.Connections)
	if len(r.Routes) > 0 {
		fmt.Fprintf(w, "routes:  %s\n", strings.Join(r.Routes, " "))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-26s %10s %10s %9s %9s %9s %9s %9s\n", "phase (latency in ms)", "requests", "req/s", "p50", "p90", "p99", "p99.9", "max")
	row := func(p Phase) {
		l := p.Latency
		fmt.Fprintf(w, "%-26s %10d %10.0f %9.2f %9.2f %9.2f %9.2f %9.2f\n", p.Name, p.Requests, p.ThroughputRPS, l.P50, l.P90, l.P99, l.P999, l.Max)
	}
	row(r.Baseline)
	for _, p := range r.Phases {
		row(p)
	}
	fmt.Fprintln(w)
	for _, p := range r.Phases {
		keys := make([]string, 0, len(p.Statuses))
		for k := range p.Statuses {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%s=%d", k, p.Statuses[k])
		}
		fmt.Fprintf(w, "answers %-18s %s\n", p.Name+":", strings.Join(parts, " "))
		for _, s := range p.Samples {
			fmt.Fprintf(w, "   e.g. %s\n", s)
		}
	}
	fmt.Fprintf(w, "\nthroughput %.0f/s = %.3f × baseline (%.0f/s); p99 %.2f ms = %.1f × baseline p99 (%.2f ms)\n",
		r.ThroughputRPS, r.Ratio, r.BaselineRPS, r.P99MS, r.P99Ratio, r.BaselineP99MS)
	if len(r.fields) > 0 {
		fmt.Fprintln(w, "\nfigures")
		for _, f := range r.fields {
			v := f.value
			switch x := v.(type) {
			case float64:
				if x == math.Trunc(x) && math.Abs(x) < 1e15 {
					v = fmt.Sprintf("%.0f", x)
				} else {
					v = fmt.Sprintf("%.2f", x)
				}
			case nil:
				v = "not checked"
			case int, int64, string:
			default:
				if data, err := json.Marshal(x); err == nil {
					v = string(data)
				}
			}
			fmt.Fprintf(w, "  %-28s %v\n", f.key, v)
		}
	}
	fmt.Fprintln(w, "\ninvariants")
	for _, c := range r.Invariants {
		fmt.Fprintf(w, "  %-12s %s: %s\n", strings.ToUpper(c.Status), c.Name, c.Detail)
	}
	if len(r.Goals) > 0 {
		fmt.Fprintln(w, "\nperformance targets (figures from a shared machine are provisional)")
		for _, c := range r.Goals {
			fmt.Fprintf(w, "  %-12s %s: %s\n", strings.ToUpper(c.Status), c.Name, c.Detail)
		}
	}
	if len(r.Notes) > 0 {
		fmt.Fprintln(w, "\nnotes")
		for _, n := range r.Notes {
			fmt.Fprintf(w, "  - %s\n", n)
		}
	}
	if r.Failed(false) {
		fmt.Fprintf(w, "\nresult: FAIL (an invariant failed)\n")
	} else {
		fmt.Fprintf(w, "\nresult: PASS (every invariant checked held)\n")
	}
}
