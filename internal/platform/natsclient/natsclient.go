// Package natsclient connects to NATS with JetStream, either an external server or one embedded
// in the process (nats-server as a library, storing under the data directory), and carries trace
// context in message headers.
package natsclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"

	"github.com/onsale-dev/onsale/internal/platform/config"
)

// Conn is a NATS connection with its JetStream context and, in embedded mode, the server.
type Conn struct {
	NC       *nats.Conn
	JS       jetstream.JetStream
	embedded *server.Server
}

// Connect dials an external NATS server. Once connected it reconnects forever, so a NATS restart
// is an outage to ride out, not a crash. url's credentials never reach an error or a log line.
func Connect(url, name string, log *slog.Logger) (*Conn, error) {
	nc, err := nats.Connect(url, options(name, url, log)...)
	if err != nil {
		return nil, fmt.Errorf("connect nats %s: %w", config.RedactURL(url), config.RedactError(err, url))
	}
	return wrap(nc, nil)
}

// StartEmbedded runs a NATS server with JetStream inside the process, storing under dataDir, and
// connects to it in-process (it opens no port).
func StartEmbedded(dataDir, name string, log *slog.Logger) (*Conn, error) {
	ns, err := server.NewServer(&server.Options{
		ServerName: "onsale-embedded",
		JetStream:  true,
		StoreDir:   filepath.Join(dataDir, "nats"),
		DontListen: true,
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("embedded nats: not ready after 10s")
	}
	nc, err := nats.Connect("", append(options(name, "", log), nats.InProcessServer(ns))...)
	if err != nil {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats: connect: %w", err)
	}
	return wrap(nc, ns)
}

func wrap(nc *nats.Conn, ns *server.Server) (*Conn, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		if ns != nil {
			ns.Shutdown()
		}
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &Conn{NC: nc, JS: js, embedded: ns}, nil
}

// options are the connection's settings; url (empty when embedded) is only used to mask its
// credentials in the errors logged, should a library error ever quote it.
func options(name, url string, log *slog.Logger) []nats.Option {
	return []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.Timeout(3 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", config.RedactError(err, url))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			// Not ConnectedUrlRedacted: it keeps a token given as the user name.
			log.Info("nats reconnected", "url", config.RedactURL(nc.ConnectedUrl()))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn("nats async error", "subject", subject, "err", config.RedactError(err, url))
		}),
	}
}

// Embedded tells whether the server runs in this process.
func (c *Conn) Embedded() bool { return c.embedded != nil }

// Close drains the connection (pending messages are delivered and handlers finish) and stops the
// embedded server, if any.
func (c *Conn) Close(ctx context.Context) error {
	var err error
	if c.NC != nil && !c.NC.IsClosed() {
		done := make(chan struct{})
		c.NC.SetClosedHandler(func(*nats.Conn) { close(done) })
		if derr := c.NC.Drain(); derr != nil {
			c.NC.Close()
		} else {
			select {
			case <-done:
			case <-ctx.Done():
				c.NC.Close()
				err = ctx.Err()
			}
		}
	}
	if c.embedded != nil {
		c.embedded.Shutdown()
		c.embedded.WaitForShutdown()
	}
	return err
}

// Check is a readiness check: a round trip to the server.
func (c *Conn) Check(ctx context.Context) error {
	if !c.NC.IsConnected() {
		return fmt.Errorf("nats %s", c.NC.Status())
	}
	return c.NC.FlushWithContext(ctx)
}

// InjectTrace writes ctx's trace context into message headers.
func InjectTrace(ctx context.Context, p propagation.TextMapPropagator, h nats.Header) {
	p.Inject(ctx, propagation.HeaderCarrier(http.Header(h)))
}

// ExtractTrace reads trace context from message headers into a context.
func ExtractTrace(ctx context.Context, p propagation.TextMapPropagator, h nats.Header) context.Context {
	return p.Extract(ctx, propagation.HeaderCarrier(http.Header(h)))
}

// Retry runs a JetStream management call (creating a stream or a consumer) until it succeeds,
// answers a request the server will never accept (a 400: a configuration in conflict, say), or
// within passes (or ctx ends). On a cluster such a call can time out, or answer "cluster not
// available" or "insufficient resources", for a while: just after the cluster starts (NATS 2.9
// before the first meta leader election, and until the nodes have caught up) and while a node
// that held the asset is down and a new leader is being elected. Each attempt gets at most 5 s.
func Retry(ctx context.Context, within time.Duration, call func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	wait := 100 * time.Millisecond
	for {
		actx, cancelAttempt := context.WithTimeout(ctx, 5*time.Second)
		err := call(actx)
		cancelAttempt()
		if err == nil || !transient(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (still failing after %s)", err, within)
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// transient tells whether a JetStream management error may go away by itself.
func transient(err error) bool {
	var api *jetstream.APIError
	if errors.As(err, &api) {
		return api.Code != http.StatusBadRequest
	}
	return true
}
