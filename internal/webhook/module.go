package webhook

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/platform/clock"
	"github.com/onsale-dev/onsale/internal/platform/problem"
)

// Deps are the module's ports and tools.
type Deps struct {
	Store     Store
	Publisher Publisher
	Guard     *Guard
	// Resolver resolves endpoint hosts at registration (nil: net.DefaultResolver).
	Resolver *net.Resolver
	Clock    clock.Clock
	Log      *slog.Logger
}

// Module is the webhook module's request side: organizers manage their endpoints and look at
// their deliveries. It is also the Publisher other modules are given.
type Module struct {
	d Deps
}

var _ Publisher = (*Module)(nil)

// New assembles the module.
func New(d Deps) *Module {
	if d.Resolver == nil {
		d.Resolver = net.DefaultResolver
	}
	return &Module{d: d}
}

// Publish implements Publisher through the configured one.
func (m *Module) Publish(ctx context.Context, ev Event) error { return m.d.Publisher.Publish(ctx, ev) }

// NewEndpoint is what an organizer registers.
type NewEndpoint struct {
	URL         string
	EventTypes  []string
	Description string
}

// validate checks what can be checked without the network.
func (n NewEndpoint) validate() error {
	var fields []problem.FieldError
	u, err := url.Parse(n.URL)
	switch {
	case len(n.URL) > maxURLLength:
		fields = append(fields, problem.FieldError{Field: "url", Message: fmt.Sprintf("must be at most %d characters", maxURLLength)})
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "":
		fields = append(fields, problem.FieldError{Field: "url", Message: "must be an absolute http or https URL"})
	case u.User != nil:
		fields = append(fields, problem.FieldError{Field: "url", Message: "must not carry credentials (user:password@)"})
	case u.Fragment != "":
		fields = append(fields, problem.FieldError{Field: "url", Message: "must not have a fragment (#...)"})
	}
	if len(n.EventTypes) == 0 {
		fields = append(fields, problem.FieldError{Field: "event_types", Message: "must list at least one event type"})
	}
	for _, t := range n.EventTypes {
		if !KnownType(t) {
			fields = append(fields, problem.FieldError{Field: "event_types",
				Message: fmt.Sprintf("unknown event type %q; known: %s", t, strings.Join(EventTypes(), ", "))})
		}
	}
	if len(n.Description) > maxDescriptionLength {
		fields = append(fields, problem.FieldError{Field: "description", Message: fmt.Sprintf("must be at most %d characters", maxDescriptionLength)})
	}
	if len(fields) > 0 {
		return problem.ErrValidation.WithDetail("the webhook endpoint is not valid").WithFields(fields...)
	}
	return nil
}

// RegisterEndpoint registers an organizer's endpoint. The answer holds its signing secret, which
// no later read shows. A URL whose host is (or resolves to) an address of the deployment's own
// networks is ErrURLNotAllowed unless the operator allowed that network.
func (m *Module) RegisterEndpoint(ctx context.Context, organizer uuid.UUID, n NewEndpoint) (Endpoint, error) {
	if err := n.validate(); err != nil {
		return Endpoint{}, err
	}
	if err := m.d.Guard.CheckURL(ctx, m.d.Resolver, n.URL); err != nil {
		if errors.Is(err, ErrRefusedAddress) {
			return Endpoint{}, ErrURLNotAllowed.WithDetail("%s points into a private, loopback, link-local or reserved network; "+
				"webhooks go to public addresses only, unless the operator allows the network", n.URL)
		}
		return Endpoint{}, ErrURLNotAllowed.WithDetail("%v", err)
	}
	secret, err := NewSecret()
	if err != nil {
		return Endpoint{}, err
	}
	types := make([]string, 0, len(n.EventTypes))
	for _, t := range EventTypes() { // in the documented order, without repeats
		if slices.Contains(n.EventTypes, t) {
			types = append(types, t)
		}
	}
	e := Endpoint{ID: uuid.New(), OrganizerID: organizer, URL: n.URL, EventTypes: types, Description: n.Description,
		Secret: secret, CreatedAt: m.d.Clock.Now().UTC().Truncate(time.Microsecond)}
	if err := m.d.Store.CreateEndpoint(ctx, e); err != nil {
		return Endpoint{}, fmt.Errorf("register webhook endpoint: %w", err)
	}
	m.d.Log.InfoContext(ctx, "webhook endpoint registered", "endpoint", e.ID, "organizer", organizer, "types", types)
	return e, nil
}

// Endpoints returns a page of an organizer's endpoints, newest first, and the cursor of the next
// page ("" after the last).
func (m *Module) Endpoints(ctx context.Context, organizer uuid.UUID, cursor string, limit int) ([]Endpoint, string, error) {
	after, err := decodeCursor(cursor, false)
	if err != nil {
		return nil, "", err
	}
	es, err := m.d.Store.Endpoints(ctx, organizer, after, limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("list webhook endpoints: %w", err)
	}
	next := ""
	if len(es) > limit {
		es = es[:limit]
		last := es[limit-1]
		next = encodeCursor(Cursor{CreatedAt: last.CreatedAt, ID: last.ID}, false)
	}
	return es, next, nil
}

// Endpoint returns an organizer's own endpoint; another organizer's is ErrEndpointNotFound.
func (m *Module) Endpoint(ctx context.Context, organizer, id uuid.UUID) (Endpoint, error) {
	e, err := m.d.Store.Endpoint(ctx, id)
	if err != nil {
		return Endpoint{}, err
	}
	if e.OrganizerID != organizer {
		return Endpoint{}, ErrEndpointNotFound
	}
	return e, nil
}

// DeleteEndpoint removes an organizer's own endpoint and its deliveries.
func (m *Module) DeleteEndpoint(ctx context.Context, organizer, id uuid.UUID) error {
	if _, err := m.Endpoint(ctx, organizer, id); err != nil {
		return err
	}
	if err := m.d.Store.DeleteEndpoint(ctx, id); err != nil {
		return err
	}
	m.d.Log.InfoContext(ctx, "webhook endpoint deleted", "endpoint", id, "organizer", organizer)
	return nil
}

// Deliveries returns a page of an endpoint's deliveries with their attempts, newest first.
func (m *Module) Deliveries(ctx context.Context, organizer, endpoint uuid.UUID, cursor string, limit int) ([]Delivery, string, error) {
	if _, err := m.Endpoint(ctx, organizer, endpoint); err != nil {
		return nil, "", err
	}
	after, err := decodeCursor(cursor, true)
	if err != nil {
		return nil, "", err
	}
	ds, err := m.d.Store.Deliveries(ctx, endpoint, after, limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("list webhook deliveries: %w", err)
	}
	next := ""
	if len(ds) > limit {
		ds = ds[:limit]
		next = encodeCursor(Cursor{Seq: ds[limit-1].Seq}, true)
	}
	return ds, next, nil
}

// Resend sends a delivery of an organizer's endpoint again, now, with a fresh retry schedule:
// after a dead letter, or to replay one that succeeded.
func (m *Module) Resend(ctx context.Context, organizer, endpoint, delivery uuid.UUID) (Delivery, error) {
	if _, err := m.Endpoint(ctx, organizer, endpoint); err != nil {
		return Delivery{}, err
	}
	d, err := m.d.Store.Delivery(ctx, delivery)
	if err != nil {
		return Delivery{}, err
	}
	if d.EndpointID != endpoint {
		return Delivery{}, ErrDeliveryNotFound
	}
	if _, err := m.d.Store.Resend(ctx, delivery, m.d.Clock.Now().UTC().Truncate(time.Microsecond)); err != nil {
		return Delivery{}, err
	}
	m.d.Log.InfoContext(ctx, "webhook delivery resent", "delivery", delivery, "endpoint", endpoint)
	// Read back with its attempts, as lists show it.
	return m.d.Store.Delivery(ctx, delivery)
}

// encodeCursor writes a position as an opaque token: a delivery's sequence, or an endpoint's
// creation time and id.
func encodeCursor(c Cursor, seq bool) string {
	if seq {
		return base64.RawURLEncoding.EncodeToString([]byte("s" + strconv.FormatInt(c.Seq, 10)))
	}
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.CreatedAt.UnixNano(), 10) + "|" + c.ID.String()))
}

func decodeCursor(s string, seq bool) (*Cursor, error) {
	if s == "" {
		return nil, nil
	}
	bad := problem.ErrBadRequest.WithDetail("the cursor is not one this server gave out").
		WithFields(problem.FieldError{Field: "query:cursor", Message: "invalid cursor"})
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, bad
	}
	if seq {
		n, ok := strings.CutPrefix(string(raw), "s")
		v, err := strconv.ParseInt(n, 10, 64)
		if !ok || err != nil {
			return nil, bad
		}
		return &Cursor{Seq: v}, nil
	}
	ns, id, ok := strings.Cut(string(raw), "|")
	n, nerr := strconv.ParseInt(ns, 10, 64)
	u, uerr := uuid.Parse(id)
	if !ok || nerr != nil || uerr != nil {
		return nil, bad
	}
	return &Cursor{CreatedAt: time.Unix(0, n).UTC(), ID: u}, nil
}
