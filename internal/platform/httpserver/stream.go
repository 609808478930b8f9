package httpserver

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
)

// streamGroupKey is where the edge middleware leaves, on a stream route's echo context, the
// server's count of streams that own their connections.
const streamGroupKey = "httpserver.streams"

// streamWriteTimeout bounds one write of a stream: a client that stops reading is dropped
// rather than holding the handler.
const streamWriteTimeout = 10 * time.Second

// A Stream is a Server-Sent Events response. Over HTTP/1.1 it owns the connection itself: the
// connection is taken from net/http before the headers are written, so net/http's background
// reader, a second goroutine per response waiting to notice the client leave, and its 4 KiB read
// and write buffers go away. With tens of thousands of customers each watching an order, those
// were most of a stream's memory. The stream then learns that the client left when a write fails
// or when Alive finds the connection closed, which the caller checks on its heartbeat. Where the
// connection cannot be taken (HTTP/2, a test recorder) it writes through the ResponseWriter and
// learns of the client leaving from the request's context, as any handler.
type Stream struct {
	conn    net.Conn            // the taken connection; nil when writing through w
	release func()              // tells the server's Shutdown the stream ended; nil when writing through w
	w       http.ResponseWriter // used when conn is nil
	done    <-chan struct{}     // the request context's; nil (never ready) for a taken connection
}

// OpenStream answers 200 with the event-stream headers (and whatever headers the middleware set
// on the response) and returns the stream. The response counts as written for the middleware.
func OpenStream(c echo.Context) (*Stream, error) {
	res := c.Response()
	hdr := res.Header()
	hdr.Set(echo.HeaderContentType, "text/event-stream")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Accel-Buffering", "no") // nginx: pass events through as they come
	req := c.Request()
	if req.ProtoMajor == 1 {
		conn, brw, err := http.NewResponseController(res).Hijack()
		switch {
		case err == nil:
			return openOnConn(c, conn, brw.Reader.Buffered())
		case !errors.Is(err, http.ErrNotSupported):
			return nil, err
		}
	}
	res.WriteHeader(http.StatusOK)
	res.Flush()
	return &Stream{w: res, done: req.Context().Done()}, nil
}

// openOnConn writes the response head on a taken connection. The body is delimited by the
// connection's end (no length, no chunks), so the head says Connection: close.
func openOnConn(c echo.Context, conn net.Conn, buffered int) (*Stream, error) {
	if buffered > 0 {
		// The client sent more after its GET (a pipelined request): answering it would need
		// net/http, which no longer has the connection.
		_ = conn.Close()
		return nil, errors.New("stream: request pipelined after the stream's")
	}
	_ = conn.SetDeadline(time.Time{}) // the server's read and write timeouts do not apply to a stream
	res := c.Response()
	hdr := res.Header()
	hdr.Set("Connection", "close")
	hdr.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 200 OK\r\n")
	if err := hdr.Write(&head); err != nil {
		_ = conn.Close()
		return nil, err
	}
	head.WriteString("\r\n")
	s := &Stream{conn: conn}
	if err := s.Write(head.Bytes()); err != nil {
		_ = conn.Close()
		return nil, err
	}
	// For the edge middleware (status in metrics and the access log) and echo, which must not
	// write a response of its own.
	res.Status, res.Committed = http.StatusOK, true
	if wg, ok := c.Get(streamGroupKey).(*sync.WaitGroup); ok {
		wg.Add(1)
		s.release = wg.Done
	}
	return s, nil
}

// Write writes p to the client at once.
func (s *Stream) Write(p []byte) error {
	if s.conn == nil {
		if _, err := s.w.Write(p); err != nil {
			return err
		}
		return http.NewResponseController(s.w).Flush()
	}
	if err := s.conn.SetWriteDeadline(time.Now().Add(streamWriteTimeout)); err != nil {
		return err
	}
	_, err := s.conn.Write(p)
	return err
}

// Owned reports whether the stream has its connection to itself: it may then outlive the
// handler, which can return and leave the stream to a goroutine of its own.
func (s *Stream) Owned() bool { return s.conn != nil }

// Done is closed when the client is known to have gone without a write: for a response written
// through net/http, when its request context ends. A stream on its own connection finds out on
// a failed write or from Alive instead, and its Done is never closed.
func (s *Stream) Done() <-chan struct{} { return s.done }

// Alive reports whether the client is still connected, waiting at most a millisecond: on a
// stream's own connection, by a read with a deadline just ahead (a closed connection reads its
// end at once; an open one has nothing to read). A deadline already passed would not read at
// all. Anything the client sends is discarded.
func (s *Stream) Alive() bool {
	if s.conn == nil {
		select {
		case <-s.done:
			return false
		default:
			return true
		}
	}
	if err := s.conn.SetReadDeadline(time.Now().Add(time.Millisecond)); err != nil {
		return false
	}
	var one [1]byte
	_, err := s.conn.Read(one[:])
	return err == nil || errors.Is(err, os.ErrDeadlineExceeded)
}

// Close ends the stream: a stream on its own connection closes the connection, which is how its
// end is told to the client. It is called once.
func (s *Stream) Close() error {
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	if s.release != nil {
		s.release()
	}
	return err
}
