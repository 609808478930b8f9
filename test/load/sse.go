package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
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
// apply). It is written and read on a connection of its own, without net/http's transport: a
// transport connection keeps two goroutines and 8 KiB of buffers, and 150,000 streams from the
// tools cost more memory than the servers holding them.
func openStream(ctx context.Context, c *Client, target, orderID string, cu Customer) (*http.Response, error) {
	path := "/v1/orders/" + orderID + "/events"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Target(target, path)+path, nil)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	if src := c.route(cu.From).src; src != nil {
		d.LocalAddr = &net.TCPAddr{IP: src}
	}
	conn, err := d.DialContext(ctx, "tcp", req.URL.Host)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	head := "GET " + path + " HTTP/1.1\r\nHost: " + req.URL.Host + "\r\nAccept: text/event-stream\r\nAuthorization: Bearer " +
		cu.Token + "\r\n\r\n"
	if _, err := io.WriteString(conn, head); err != nil {
		stop()
		conn.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 1024), req)
	if err != nil {
		stop()
		conn.Close()
		return nil, err
	}
	resp.Body = &streamBody{ReadCloser: resp.Body, conn: conn, stop: stop}
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, fmt.Errorf("HTTP %d %s (X-Request-Id %s)", resp.StatusCode, clip(data), resp.Header.Get("X-Request-Id"))
	}
	return resp, nil
}

// streamBody is a stream's body; closing it closes its connection.
type streamBody struct {
	io.ReadCloser
	conn net.Conn
	stop func() bool
}

func (b *streamBody) Close() error {
	b.stop()
	return b.conn.Close()
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
