// Package webhook is onsale's organizer webhooks: organizers register HTTPS endpoints, and the
// happenings of their sales (orders confirmed, failed, cancelled or refunded, tickets checked in,
// events cancelled) are delivered to them as signed POST requests, retried for more than a day
// and kept, dead-lettered, when they never succeed.
//
// Other modules announce a happening through Publisher. The event travels over NATS JetStream
// (webhook/nats) to a fan-out that records one pending delivery per subscribed endpoint in the
// Store (webhook/postgres, webhook/memory); a Sender claims due deliveries and POSTs them.
//
// Deliveries are signed the Standard Webhooks way (https://www.standardwebhooks.com), which
// receivers verify with any of its libraries, and a Guard keeps them away from the deployment's
// own network.
package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/platform/problem"
)

// The event types an endpoint may subscribe to.
const (
	TypeOrderConfirmed   = "order.confirmed"
	TypeOrderFailed      = "order.failed"
	TypeOrderCancelled   = "order.cancelled"
	TypeOrderRefunded    = "order.refunded"
	TypeTicketCheckedIn  = "ticket.checked_in"
	TypeEventCancelled   = "event.cancelled"
	maxURLLength         = 2000
	maxDescriptionLength = 500
)

// EventTypes lists every event type, in the order the documentation shows them.
func EventTypes() []string {
	return []string{TypeOrderConfirmed, TypeOrderFailed, TypeOrderCancelled, TypeOrderRefunded, TypeTicketCheckedIn, TypeEventCancelled}
}

// KnownType tells whether t is an event type endpoints may subscribe to.
func KnownType(t string) bool { return slices.Contains(EventTypes(), t) }

// Event is one happening to tell an organizer about.
type Event struct {
	// ID is the happening's stable id: publishing it again (a retry, a redelivery) delivers
	// nothing new, and receivers see it as the webhook-id header to drop repeats.
	ID   string `json:"id"`
	Type string `json:"type"`
	// OrganizerID is whose endpoints receive it.
	OrganizerID uuid.UUID `json:"organizer_id"`
	// OrderingKey groups events that must arrive in order at an endpoint (an order's id): an
	// event is not sent while an earlier one with the same key is still pending there.
	OrderingKey string    `json:"ordering_key,omitempty"`
	At          time.Time `json:"at"`
	// Data is the payload's data object (see the webhooks section of api/openapi.yaml).
	Data json.RawMessage `json:"data"`
}

// Validate checks that the event can be delivered: an id, a known type, an organizer.
func (ev Event) Validate() error {
	switch {
	case ev.ID == "":
		return errors.New("webhook event without an id")
	case !KnownType(ev.Type):
		return fmt.Errorf("webhook event %s: unknown type %q", ev.ID, ev.Type)
	case ev.OrganizerID == uuid.Nil:
		return fmt.Errorf("webhook event %s: no organizer", ev.ID)
	case len(ev.Data) > 0 && !json.Valid(ev.Data):
		return fmt.Errorf("webhook event %s: data is not JSON", ev.ID)
	}
	return nil
}

// Body is what a delivery of the event sends: {"type", "timestamp", "data"}, the Standard
// Webhooks payload. Every endpoint gets the same bytes, so it is built once.
func (ev Event) Body() ([]byte, error) {
	data := ev.Data
	if len(data) == 0 {
		data = json.RawMessage("{}")
	}
	body, err := json.Marshal(struct {
		Type      string          `json:"type"`
		Timestamp string          `json:"timestamp"`
		Data      json.RawMessage `json:"data"`
	}{ev.Type, ev.At.UTC().Format(time.RFC3339), data})
	if err != nil {
		return nil, fmt.Errorf("webhook body of %s: %w", ev.ID, err)
	}
	return body, nil
}

// Publisher announces events to organizers' endpoints. Publishing is idempotent by Event.ID:
// an event published twice is delivered once to each endpoint. A nil error means the event is
// stored durably and will be delivered.
type Publisher interface {
	Publish(ctx context.Context, ev Event) error
}

// Endpoint is a URL an organizer receives events at.
type Endpoint struct {
	ID          uuid.UUID
	OrganizerID uuid.UUID
	URL         string
	EventTypes  []string
	Description string
	// Secret signs the deliveries ("whsec_" and base64); the organizer sees it once.
	Secret string
	// PreviousSecret is the secret a rotation replaced. Deliveries carry a signature with it
	// too until PreviousSecretUntil, so receivers can switch to the new one without refusing
	// deliveries meanwhile.
	PreviousSecret      string
	PreviousSecretUntil time.Time
	CreatedAt           time.Time
	// Disabled endpoints receive nothing new, and their pending deliveries wait until the
	// endpoint is enabled again.
	Disabled bool
}

// EndpointPatch is a change to an endpoint; nil fields stay as they are.
type EndpointPatch struct {
	URL         *string
	EventTypes  []string
	Description *string
	Disabled    *bool
}

// Subscribed tells whether the endpoint receives events of type t.
func (e Endpoint) Subscribed(t string) bool { return !e.Disabled && slices.Contains(e.EventTypes, t) }

// DeliveryStatus is where a delivery stands.
type DeliveryStatus string

// Delivery statuses. A dead delivery ran out of attempts; it is kept and may be resent.
const (
	StatusPending   DeliveryStatus = "pending"
	StatusSucceeded DeliveryStatus = "succeeded"
	StatusDead      DeliveryStatus = "dead"
)

// Delivery is one event on its way to one endpoint.
type Delivery struct {
	ID          uuid.UUID
	EndpointID  uuid.UUID
	EventID     string
	Type        string
	OrderingKey string
	Payload     []byte
	Status      DeliveryStatus
	// Attempts counts the attempts since the delivery was created or last resent: it decides the
	// next retry's delay.
	Attempts      int
	NextAttemptAt time.Time
	LastAttemptAt time.Time // zero before the first attempt
	CreatedAt     time.Time
	// Seq orders the deliveries of a store: a later delivery has a greater one.
	Seq int64
	// History is the attempts made, oldest first (filled by Store.Deliveries only).
	History []Attempt
}

// Attempt is one POST of a delivery.
type Attempt struct {
	DeliveryID uuid.UUID
	At         time.Time
	// StatusCode is the receiver's HTTP status, 0 when none came back.
	StatusCode int
	Latency    time.Duration
	// Error says why the attempt failed ("" when it succeeded).
	Error string
}

// Due is a claimed delivery with what sending it needs.
type Due struct {
	Delivery
	URL    string
	Secret string
	// PreviousSecret signs the delivery as well while a rotation's grace period runs ("" after).
	PreviousSecret string
}

// Outcome is what an attempt leads to.
type Outcome struct {
	Attempt Attempt
	// Succeeded ends the delivery; otherwise it is tried again at Next, or is dead when Next is
	// zero.
	Succeeded bool
	Next      time.Time
}

// Claim asks for due deliveries.
type Claim struct {
	Now time.Time
	// Lease is how long the claimed deliveries are kept from other claimers: a sender that
	// crashes mid-attempt gives them back when it runs out.
	Lease time.Duration
	Limit int
	// PerEndpoint bounds the deliveries of one endpoint in one claim.
	PerEndpoint int
	// Skip are endpoints the claimer has enough of in flight.
	Skip []uuid.UUID
}

// Cursor is a position in a list, newest first: a delivery's Seq, or an endpoint's creation.
type Cursor struct {
	CreatedAt time.Time
	ID        uuid.UUID
	Seq       int64
}

// Store keeps endpoints and deliveries (PostgreSQL in production). Every method is safe with
// several replicas using the same store.
type Store interface {
	// CreateEndpoint stores a new endpoint.
	CreateEndpoint(ctx context.Context, e Endpoint) error
	// Endpoints returns an organizer's endpoints, newest first, strictly after the cursor.
	Endpoints(ctx context.Context, organizer uuid.UUID, after *Cursor, limit int) ([]Endpoint, error)
	// Endpoint returns one endpoint; ErrEndpointNotFound.
	Endpoint(ctx context.Context, id uuid.UUID) (Endpoint, error)
	// DeleteEndpoint removes an endpoint with its deliveries; ErrEndpointNotFound.
	DeleteEndpoint(ctx context.Context, id uuid.UUID) error
	// UpdateEndpoint applies the patch's fields in one step and returns the endpoint as it is
	// now; ErrEndpointNotFound.
	UpdateEndpoint(ctx context.Context, id uuid.UUID, p EndpointPatch) (Endpoint, error)
	// RotateSecret makes secret the endpoint's signing secret and keeps the one it replaces as
	// PreviousSecret until previousUntil, in one step, so two rotations at once leave the
	// second's secret with the first's as the previous one; ErrEndpointNotFound.
	RotateSecret(ctx context.Context, id uuid.UUID, secret string, previousUntil time.Time) (Endpoint, error)
	// Enqueue creates one pending delivery, due at now, per enabled endpoint of ev's organizer
	// subscribed to ev's type, and returns how many it created. Idempotent by (endpoint, event
	// id): an event enqueued again creates nothing for endpoints that have it.
	Enqueue(ctx context.Context, ev Event, now time.Time) (int, error)
	// Claim returns pending deliveries due at c.Now, oldest first, and moves their next attempt
	// to c.Now+c.Lease so no other claimer gets them meanwhile. Deliveries of disabled endpoints
	// are not due; a Due carries the endpoint's previous secret while it is valid at c.Now. A delivery is not due while an
	// earlier delivery of its endpoint with the same non-empty ordering key is pending.
	Claim(ctx context.Context, c Claim) ([]Due, error)
	// Record stores an attempt and what it led to. A delivery that is no longer pending (a
	// duplicate attempt after a lease ran out) keeps its status; ErrDeliveryNotFound when it
	// is gone.
	Record(ctx context.Context, id uuid.UUID, o Outcome) (Delivery, error)
	// Deliveries returns an endpoint's deliveries with their attempts, newest first, strictly
	// after the cursor.
	Deliveries(ctx context.Context, endpoint uuid.UUID, after *Cursor, limit int) ([]Delivery, error)
	// Delivery returns one delivery with its attempts; ErrDeliveryNotFound.
	Delivery(ctx context.Context, id uuid.UUID) (Delivery, error)
	// Resend makes a delivery pending again, due at now, with a fresh retry schedule;
	// ErrDeliveryNotFound.
	Resend(ctx context.Context, id uuid.UUID, now time.Time) (Delivery, error)
}

// The module's errors; each has a stable problem type.
var (
	ErrEndpointNotFound = problem.New(problem.NotFound, "webhook-not-found", "Webhook endpoint not found")
	ErrDeliveryNotFound = problem.New(problem.NotFound, "webhook-delivery-not-found", "Webhook delivery not found")
	ErrURLNotAllowed    = problem.New(problem.Unprocessable, "webhook-url-not-allowed", "Webhook URL not allowed")
)

// Schedule is the delay before each attempt of a delivery: the first at once, then 5 seconds,
// 5 minutes, 30 minutes, 2, 5, 10 and 10 hours after the previous failure (about 27.5 hours in
// all, as Standard Webhooks senders do). After the last, the delivery is dead.
var Schedule = []time.Duration{0, 5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}

// NextAttempt returns when to try again after the given number of failed attempts (of schedule),
// or false when there is no attempt left. The delay varies by up to a tenth, so endpoints that
// failed together (an outage) are not all tried again in the same second.
func NextAttempt(schedule []time.Duration, failed int, now time.Time) (time.Time, bool) {
	if failed >= len(schedule) {
		return time.Time{}, false
	}
	d := schedule[failed]
	if d > 0 {
		d += time.Duration(rand.Int64N(int64(d)/10 + 1))
	}
	return now.Add(d), true
}
