// Package logging builds the process's structured logger (log/slog, JSON) and carries request
// attributes (request id, trace id) through a context so every line of a request can be joined.
package logging

import (
	"context"
	"fmt"
	"go.opentelemetry.io/otel/trace"
	"io"
	"log/slog"
	"strings"
)

// Config selects the log level and format.
type Config struct {
	Level  string `env:"ONSALE_LOG_LEVEL" yaml:"log_level" default:"info" help:"debug, info, warn or error"`
	Format string `env:"ONSALE_LOG_FORMAT" yaml:"log_format" default:"json" help:"json or text"`
}

// Validate checks the level and format.
func (c Config) Validate() error {
	if _, err := parseLevel(c.Level); err != nil {
		return fmt.Errorf("ONSALE_LOG_LEVEL=%q: want debug, info, warn or error", c.Level)
	}
	if c.Format != "json" && c.Format != "text" {
		return fmt.Errorf("ONSALE_LOG_FORMAT=%q: want json or text", c.Format)
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(strings.ToUpper(s)))
	return l, err
}

// New returns a logger writing to w. Attributes stored in a context with WithAttrs are added to
// every record logged with that context.
func New(w io.Writer, c Config) *slog.Logger {
	level, err := parseLevel(c.Level)
	if err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if c.Format == "text" {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(contextHandler{h})
}

type ctxKey struct{}

// WithAttrs returns a context whose log records carry attrs in addition to any already there.
func WithAttrs(ctx context.Context, attrs ...slog.Attr) context.Context {
	var prev []slog.Attr
	if l, ok := ctx.Value(ctxKey{}).(*attrsCtx); ok {
		prev = l.attrs
	}
	l := &attrsCtx{Context: ctx}
	if len(prev)+len(attrs) <= len(l.spare) {
		// The usual case (a request id) fits the node's own room.
		l.attrs = l.spare[:0]
	} else {
		l.attrs = make([]slog.Attr, 0, len(prev)+len(attrs))
	}
	l.attrs = append(append(l.attrs, prev...), attrs...)
	return l
}

// attrsCtx is the context WithAttrs returns: one allocation holding the attributes and room for
// a couple of them, where context.WithValue with a slice would take three (the node, the boxed
// slice and its array), on every request.
type attrsCtx struct {
	context.Context
	attrs []slog.Attr
	spare [2]slog.Attr
}

// Value answers the attributes' key with the node itself and asks the parent for any other.
func (c *attrsCtx) Value(key any) any {
	if _, ok := key.(ctxKey); ok {
		return c
	}
	return c.Context.Value(key)
}

// contextHandler adds the context's attributes to each record, and the id of the trace the
// context is in (read when a record is written, not stored with every request).
type contextHandler struct{ slog.Handler }

func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if l, ok := ctx.Value(ctxKey{}).(*attrsCtx); ok {
		r.AddAttrs(l.attrs...)
	}
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h contextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return contextHandler{h.Handler.WithAttrs(attrs)}
}

func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{h.Handler.WithGroup(name)}
}

// Discard is a logger that writes nothing, for tests.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
