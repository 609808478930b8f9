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
	fields = append(fields, checkURL(n.URL)...)
	fields = append(fields, checkTypes(n.EventTypes)...)
	fields = append(fields, checkDescription(n.Description)...)
	if len(fields) > 0 {
		return problem.ErrValidation.WithDetail("the webhook endpoint is not valid").WithFields(fields...)
	}
	return nil
}

func checkURL(raw string) []problem.FieldError {
	u, err := url.Parse(raw)
	switch {
	case len(raw) > maxURLLength:
		return []problem.FieldError{{Field: "url", Message: fmt.Sprintf("must be at most %d characters", maxURLLength)}}
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "":
		return []problem.FieldError{{Field: "url", Message: "must be an absolute http or https URL"}}
	case u.User != nil:
		return []problem.FieldError{{Field: "url", Message: "must not carry credentials (user:password@)"}}
	case u.Fragment != "":
		return []problem.FieldError{{Field: "url", Message: "must not have a fragment (#...)"}}
	}
	return nil
}

func checkTypes(types []string) []problem.FieldError {
	if len(types) == 0 {
		return []problem.FieldError{{Field: "event_types", Message: "must list at least one event type"}}
	}
	var fields []problem.FieldError
	for _, t := range types {
		if !KnownType(t) {
			fields = append(fields, problem.FieldError{Field: "event_types",
				Message: fmt.Sprintf("unknown event type %q; known: %s", t, strings.Join(EventTypes(), ", "))})
		}
	}
	return fields
}

func checkDescription(d string) []problem.FieldError {
	if len(d) > maxDescriptionLength {
		return []problem.FieldError{{Field: "description", Message: fmt.Sprintf("must be at most %d characters", maxDescriptionLength)}}
	}
	return nil
}

// inDocumentedOrder returns the types in the order EventTypes lists them, without repeats.
func inDocumentedOrder(types []string) []string {
	out := make([]string, 0, len(types))
	for _, t := range EventTypes() {
		if slices.Contains(types, t) {
			out = append(out, t)
		}
	}
	return out
}

// checkReachable refuses a URL in a network webhooks may not reach.
func (m *Module) checkReachable(ctx context.Context, raw string) error {
	if err := m.d.Guard.CheckURL(ctx, m.d.Resolver, raw); err != nil {
		if errors.Is(err, ErrRefusedAddress) {
			return ErrURLNotAllowed.WithDetail("%s points into a private, loopback, link-local or reserved network; "+
				"webhooks go to public addresses only, unless the operator allows the network", raw)
		}
		return ErrURLNotAllowed.WithDetail("%v", err)
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
	if err := m.checkReachable(ctx, n.URL); err != nil {
		return Endpoint{}, err
	}
	secret, err := NewSecret()
	if err != nil {
		return Endpoint{}, err
	}
	types := inDocumentedOrder(n.EventTypes)
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

// UpdateEndpoint changes an organizer's own endpoint: its URL (checked as at registration), the
// event types it receives, its description, whether it is disabled. Disabling pauses it: no new
// deliveries are made for it, and its pending ones wait until it is enabled again.
func (m *Module) UpdateEndpoint(ctx context.Context, organizer, id uuid.UUID, p EndpointPatch) (Endpoint, error) {
	var fields []problem.FieldError
	if p.URL != nil {
		fields = append(fields, checkURL(*p.URL)...)
	}
	if p.EventTypes != nil {
		fields = append(fields, checkTypes(p.EventTypes)...)
	}
	if p.Description != nil {
		fields = append(fields, checkDescription(*p.Description)...)
	}
	if len(fields) > 0 {
		return Endpoint{}, problem.ErrValidation.WithDetail("the change to the webhook endpoint is not valid").WithFields(fields...)
	}
	if _, err := m.Endpoint(ctx, organizer, id); err != nil {
		return Endpoint{}, err
	}
	if p.URL != nil {
		if err := m.checkReachable(ctx, *p.URL); err != nil {
			return Endpoint{}, err
		}
	}
	if p.EventTypes != nil {
		p.EventTypes = inDocumentedOrder(p.EventTypes)
	}
	e, err := m.d.Store.UpdateEndpoint(ctx, id, p)
	if err != nil {
		return Endpoint{}, err
	}
	m.d.Log.InfoContext(ctx, "webhook endpoint changed", "endpoint", id, "organizer", organizer,
		"url_changed", p.URL != nil, "types", e.EventTypes, "disabled", e.Disabled)
	return e, nil
}

// RotationOverlap is how long the secret a rotation replaces keeps signing deliveries beside the
// new one: a day to deploy the new secret to every receiver.
const RotationOverlap = 24 * time.Hour

// RotateSecret gives an organizer's own endpoint a new signing secret and returns the endpoint
// with it, the one time it is shown. For RotationOverlap, deliveries carry signatures with both
// the new and the previous secret.
func (m *Module) RotateSecret(ctx context.Context, organizer, id uuid.UUID) (Endpoint, error) {
	if _, err := m.Endpoint(ctx, organizer, id); err != nil {
		return Endpoint{}, err
	}
	secret, err := NewSecret()
	if err != nil {
		return Endpoint{}, err
	}
	until := m.d.Clock.Now().UTC().Add(RotationOverlap).Truncate(time.Microsecond)
	e, err := m.d.Store.RotateSecret(ctx, id, secret, until)
	if err != nil {
		return Endpoint{}, err
	}
	m.d.Log.InfoContext(ctx, "webhook secret rotated", "endpoint", id, "organizer", organizer, "previous_until", until)
	return e, nil
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
