package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// sseEvent is one Server-Sent Event.
type sseEvent struct {
	ID, Event string
	Data      string
}

// statusData is the data of an order's "status" event.
type statusData struct {
	OrderID      string    `json:"order_id"`
	Status       string    `json:"status"`
	StatusDetail string    `json:"status_detail"`
	Version      int       `json:"version"`
	At           time.Time `json:"at"`
}

// openStream opens GET /v1/orders/{id}/events for cu, from cu's source address; the caller reads
// and closes the body. The stream lives as long as ctx (the client's request timeout does not
// apply).
func openStream(ctx context.Context, c *Client, target, orderID string, cu Customer) (*http.Response, error) {
	path := "/v1/orders/" + orderID + "/events"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Target(target, path)+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+cu.Token)
	resp, err := c.route(cu.From).hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, fmt.Errorf("HTTP %d %s (X-Request-Id %s)", resp.StatusCode, clip(data), resp.Header.Get("X-Request-Id"))
	}
	return resp, nil
}

// readEvents calls fn for each event until fn returns false (nil), the stream ends (io.EOF) or
// fails.
func readEvents(r io.Reader, fn func(sseEvent) bool) error {
	br := bufio.NewReaderSize(r, 2048)
	var ev sseEvent
	var data []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if err == io.EOF && line == "" {
				return io.EOF
			}
			if err != io.EOF {
				return err
			}
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if len(data) > 0 || ev.Event != "" {
				ev.Data = strings.Join(data, "\n")
				if !fn(ev) {
					return nil
				}
			}
			ev, data = sseEvent{}, nil
		case strings.HasPrefix(line, ":"):
			// a comment: keep-alive
		default:
			name, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch name {
			case "id":
				ev.ID = value
			case "event":
				ev.Event = value
			case "data":
				data = append(data, value)
			}
		}
		if err == io.EOF {
			return io.EOF
		}
	}
}

// followOrder streams an order's status until it is final; it returns the final status and when
// it arrived, or an error if the stream ended first. When the final status is the stream's first
// event (the order was final before the stream opened), the time is the server's "at".
func followOrder(ctx context.Context, c *Client, target, orderID string, cu Customer) (statusData, time.Time, error) {
	resp, err := openStream(ctx, c, target, orderID, cu)
	if err != nil {
		return statusData{}, time.Time{}, err
	}
	defer resp.Body.Close()
	var last statusData
	var at time.Time
	events := 0
	err = readEvents(resp.Body, func(ev sseEvent) bool {
		if ev.Event != "status" {
			return true
		}
		var d statusData
		if json.Unmarshal([]byte(ev.Data), &d) != nil {
			return true
		}
		events++
		last, at = d, time.Now()
		final := d.Status == "confirmed" || d.Status == "failed"
		if final && events == 1 && !d.At.IsZero() && d.At.Before(at) {
			at = d.At
		}
		return !final
	})
	if err == nil {
		return last, at, nil
	}
	return last, time.Time{}, fmt.Errorf("stream of order %s ended at status %q: %w", orderID, last.Status, err)
}
