package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// metrics is one scrape of a target's /metrics (Prometheus text format).
type metrics string

// scrape reads /metrics from one target.
func (e *env) scrape(ctx context.Context, target string) (metrics, error) {
	r := e.admin.Do(ctx, Request{Method: http.MethodGet, Target: target, Path: "/metrics"})
	if r.Status != http.StatusOK {
		return "", fmt.Errorf("GET %s/metrics: %s", target, r.Problem())
	}
	return metrics(r.Body), nil
}

// scrapeAll reads /metrics from every target and every --route process (from its --metrics URL
// when given: a server with ONSALE_DEBUG_ADDR serves /metrics there only).
func (e *env) scrapeAll(ctx context.Context) ([]metrics, error) {
	servers := append(slices.Clone(e.o.Targets), routeURLs(e.o.Routes)...)
	out := make([]metrics, len(servers))
	for i, t := range servers {
		if len(e.o.Metrics) > 0 {
			t = strings.TrimRight(e.o.Metrics[i], "/")
		}
		m, err := e.scrape(ctx, t)
		if err != nil && len(e.o.Metrics) == 0 && len(servers) == 1 && e.o.Provider != "" {
			// A server with ONSALE_DEBUG_ADDR serves /metrics there only, where --provider
			// already points (http://DEBUG_ADDR/provider).
			if pm, perr := e.scrape(ctx, strings.TrimSuffix(strings.TrimRight(e.o.Provider, "/"), "/provider")); perr == nil {
				m, err = pm, nil
			}
		}
		if err != nil {
			return nil, err
		}
		out[i] = m
	}
	return out, nil
}

// serverCPU is the CPU time every target and --route process has used so far, in seconds: the
// sum of their process_cpu_seconds_total.
func (e *env) serverCPU(ctx context.Context) (float64, error) {
	ms, err := e.scrapeAll(ctx)
	if err != nil {
		return 0, err
	}
	v, ok := sumAll(ms, "process_cpu_seconds_total", nil)
	if !ok {
		return 0, errors.New("no process_cpu_seconds_total in /metrics")
	}
	return v, nil
}

// sumAll adds up a series over several scrapes.
func sumAll(ms []metrics, name string, labels map[string]string) (float64, bool) {
	var total float64
	found := false
	for _, m := range ms {
		v, ok := m.Sum(name, labels)
		total += v
		found = found || ok
	}
	return total, found
}

// Sum adds up every sample of the metric whose labels include the given ones; ok says whether
// any sample matched.
func (m metrics) Sum(name string, labels map[string]string) (total float64, ok bool) {
	sc := bufio.NewScanner(strings.NewReader(string(m)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		var lbls string
		switch {
		case strings.HasPrefix(rest, "{"):
			end := strings.LastIndex(rest, "}")
			if end < 0 {
				continue
			}
			lbls, rest = rest[1:end], rest[end+1:]
		case strings.HasPrefix(rest, " "):
		default:
			continue // another metric whose name starts with this one
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		if !labelsMatch(lbls, labels) {
			continue
		}
		total += v
		ok = true
	}
	return total, ok
}

func labelsMatch(lbls string, want map[string]string) bool {
	for k, v := range want {
		if !strings.Contains(lbls, k+"="+strconv.Quote(v)) {
			return false
		}
	}
	return true
}
