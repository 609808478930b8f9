// Package payment is onsale's checkout module: orders accepted in milliseconds and paid in the
// background by a worker that never charges a card twice, a circuit breaker around the payment
// provider, live order status for customers, and signed tickets that a door scanner verifies
// offline and checks in once.
//
// The root package holds the domain types, the Service, the ports the module needs (OrderStore,
// Provider, Publisher, StatusBus) and their errors. Adapters live in sub-packages named for their
// technology: payment/postgres and payment/memory keep orders, payment/nats carries payment
// requests and status changes over NATS JetStream, payment/simulated is a provider for
// development and tests, and payment/providerhttp talks to a provider over HTTP.
package payment

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/auth"
	"github.com/onsale-dev/onsale/internal/inventory"
	"github.com/onsale-dev/onsale/internal/platform/problem"
)

// Status is where an order stands.
type Status string

// Order statuses. Confirmed and failed are terminal.
const (
	StatusPending   Status = "pending"
	StatusConfirmed Status = "confirmed"
	StatusFailed    Status = "failed"
)

// Terminal tells whether the status never changes again.
func (s Status) Terminal() bool { return s == StatusConfirmed || s == StatusFailed }

// Order is a customer's checkout of one hold.
type Order struct {
	ID           uuid.UUID
	CustomerID   uuid.UUID
	Hold         inventory.Hold // as it was when the order was accepted
	AmountCents  int64
	Currency     string
	Status       Status
	StatusDetail string
	// Version grows with every status change; it is the id of the order's status events.
	Version   int
	ChargeID  string
	Tickets   []Ticket
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Ticket is one ticket of a confirmed order.
type Ticket struct {
	ID           uuid.UUID
	OrderID      uuid.UUID
	TicketTypeID uuid.UUID
	EventID      uuid.UUID
	Seq          int
}

// StatusEvent tells that an order's status changed.
type StatusEvent struct {
	OrderID      uuid.UUID `json:"order_id"`
	CustomerID   uuid.UUID `json:"customer_id"`
	Status       Status    `json:"status"`
	StatusDetail string    `json:"status_detail,omitempty"`
	Version      int       `json:"version"`
	At           time.Time `json:"at"`
}

// EventOf is the status event describing o now.
func EventOf(o Order) StatusEvent {
	return StatusEvent{OrderID: o.ID, CustomerID: o.CustomerID, Status: o.Status, StatusDetail: o.StatusDetail, Version: o.Version, At: o.UpdatedAt}
}

// OutboxMessage is a payment request waiting to be published; it is written in the same
// transaction as its order, so an accepted order is never lost.
type OutboxMessage struct {
	ID        int64
	OrderID   uuid.UUID
	CreatedAt time.Time
	// TraceParent is the W3C trace context of the request that created the order, so the
	// payment's spans (in a worker, maybe in another process) join that request's trace. Only
	// the relay's fast path has it; a message the sweeper publishes from the outbox starts anew.
	TraceParent string
}

// CheckIn is a ticket's admission at the door.
type CheckIn struct {
	Ticket      Ticket
	StaffID     uuid.UUID
	CheckedInAt time.Time
}

// IdempotencyRecord ties a customer's Idempotency-Key to the order it created.
type IdempotencyRecord struct {
	CustomerID  uuid.UUID
	Key         string
	RequestHash string
	OrderID     uuid.UUID
	ExpiresAt   time.Time
}

// OrderCursor is a position in a customer's order list (newest first).
type OrderCursor struct {
	CreatedAt time.Time
	ID        uuid.UUID
}

// OrderStore keeps orders (PostgreSQL in production).
type OrderStore interface {
	// Create writes the order, its idempotency record and its outbox message in one
	// transaction. ErrDuplicateKey when the customer's key exists (the caller reads it back),
	// ErrHoldAlreadyOrdered when another order has the hold.
	Create(ctx context.Context, o Order, idem IdempotencyRecord) (OutboxMessage, error)
	// ByIdempotencyKey returns the live record for a customer's key; ErrOrderNotFound.
	ByIdempotencyKey(ctx context.Context, customer uuid.UUID, key string, now time.Time) (IdempotencyRecord, error)
	// Get returns an order with its tickets; ErrOrderNotFound.
	Get(ctx context.Context, id uuid.UUID) (Order, error)
	// Statuses returns the status events describing those of the orders that exist, now, in no
	// particular order and without reading tickets: many orders in one call.
	Statuses(ctx context.Context, ids []uuid.UUID) ([]StatusEvent, error)
	// List returns a customer's orders, newest first, strictly after the cursor.
	List(ctx context.Context, customer uuid.UUID, after *OrderCursor, limit int) ([]Order, error)
	// SetDetail changes a pending order's detail; changed is false when it was already so or
	// the order is terminal.
	SetDetail(ctx context.Context, id uuid.UUID, detail string) (o Order, changed bool, err error)
	// Confirm marks a pending order confirmed with its charge and tickets; idempotent.
	// ErrOrderTerminal if it had failed.
	Confirm(ctx context.Context, id uuid.UUID, chargeID string, tickets []Ticket) (o Order, changed bool, err error)
	// Fail marks a pending order failed; idempotent. ErrOrderTerminal if it was confirmed.
	Fail(ctx context.Context, id uuid.UUID, reason string) (o Order, changed bool, err error)
	// Unpublished returns outbox messages created before the given time, oldest first.
	Unpublished(ctx context.Context, before time.Time, limit int) ([]OutboxMessage, error)
	// Published removes published outbox messages.
	Published(ctx context.Context, ids []int64) error
	// StalePending returns pending orders that no worker tried since before (nor since they were
	// created) and that have no message waiting in the outbox, oldest first.
	StalePending(ctx context.Context, before time.Time, limit int) ([]uuid.UUID, error)
	// Touch records that the orders' payments were tried (or requested again) at.
	Touch(ctx context.Context, ids []uuid.UUID, at time.Time) error
	// PurgeIdempotency forgets keys that expired before now.
	PurgeIdempotency(ctx context.Context, now time.Time) (int, error)
	// Ticket returns a sold ticket by id; ErrTicketNotFound.
	Ticket(ctx context.Context, id uuid.UUID) (Ticket, error)
	// CheckIn admits a ticket once: first is false (with the first admission) on a repeat.
	CheckIn(ctx context.Context, ticketID, staff uuid.UUID, at time.Time) (c CheckIn, first bool, err error)
	// TicketTypeOrders returns the orders of any of the ticket types, newest first, strictly
	// after the cursor, with their tickets; only those in status when it is not empty
	// (StatusDelayed: pending orders whose payment is delayed).
	TicketTypeOrders(ctx context.Context, ticketTypes []uuid.UUID, status Status, after *OrderCursor, limit int) ([]Order, error)
	// Sales sums up the orders and check-ins of each ticket type (types without orders are left out).
	Sales(ctx context.Context, ticketTypes []uuid.UUID) ([]Sales, error)
	// CheckedIn returns when each of the tickets that were admitted was admitted.
	CheckedIn(ctx context.Context, ticketIDs []uuid.UUID) (map[uuid.UUID]time.Time, error)
}

// StatusDelayed selects, in a list, the pending orders whose payment waits for the provider
// (the breaker is open); it is never an order's status.
const StatusDelayed Status = "delayed"

// Sales are a ticket type's figures as payment knows them.
type Sales struct {
	TicketTypeID uuid.UUID
	Pending      int   // orders waiting for their payment, delayed ones included
	Delayed      int   // of which the payment is delayed
	Confirmed    int   // orders paid
	Failed       int   // orders that failed
	Tickets      int   // tickets in confirmed orders
	RevenueCents int64 // paid by confirmed orders
	CheckedIn    int   // tickets admitted at the door
}

// ChargeRequest asks the provider to take a payment.
type ChargeRequest struct {
	IdempotencyKey string // the order id: a repeat returns the first outcome
	AmountCents    int64
	Currency       string
	CustomerID     uuid.UUID
	Description    string
}

// Charge is a payment taken.
type Charge struct {
	ID          string
	AmountCents int64
	Currency    string
}

// RefundRequest asks the provider to give back the charge made under ChargeKey (the charge's
// idempotency key), whatever its id: a charge whose answer was lost can still be refunded.
type RefundRequest struct {
	IdempotencyKey string
	ChargeKey      string
	AmountCents    int64
}

// Refund is a charge given back.
type Refund struct {
	ID       string
	ChargeID string
}

// Provider takes and refunds payments. Both calls are idempotent by key. A card decline is
// ErrDeclined and a refund of nothing ErrNoCharge, final answers; ErrChargePending means the
// provider accepted the charge and will settle it later (a bank transfer, a challenge the customer
// has not answered yet), so the same call is made again later; any other error is transient and
// the call may be retried.
type Provider interface {
	Charge(ctx context.Context, req ChargeRequest) (Charge, error)
	Refund(ctx context.Context, req RefundRequest) (Refund, error)
}

// Publisher sends payment requests to the worker queue. Publishing an order twice is harmless:
// the queue drops repeats within its duplicate window and the worker is idempotent beyond it.
type Publisher interface {
	// Publish returns the ids of the messages that were accepted, even when err is not nil.
	Publish(ctx context.Context, msgs []OutboxMessage) ([]int64, error)
}

// StatusBus carries status changes to every replica, for live order streams.
type StatusBus interface {
	Publish(ctx context.Context, ev StatusEvent) error
}

// Authenticator is what payment needs of the auth module: checking a request's access token,
// and whether the session behind a long-lived stream is still live. The auth module satisfies it
// in process; a process without it checks tokens against auth's published keys and shared
// sessions.
type Authenticator interface {
	Authenticate(ctx context.Context, header string) (auth.Principal, error)
	// AuthenticateTicket checks a stream ticket, which opens event streams only.
	AuthenticateTicket(ctx context.Context, ticket string) (auth.Principal, error)
	StillActive(ctx context.Context, p auth.Principal) error
}

// Inventory is what payment needs of the inventory module: read a hold, check it out, sell it,
// give it back. The inventory module satisfies it in process; a client of inventory's internal
// API satisfies it when inventory runs elsewhere. Errors keep their identity either way
// (inventory.ErrHoldNotFound, ErrHoldNotLive, ErrHoldOrdered, ErrSoldOut), and a failure to
// reach inventory is a problem of kind Unavailable, which the callers retry.
type Inventory interface {
	// GetHold returns a hold; inventory.ErrHoldNotFound. Safe to retry.
	GetHold(ctx context.Context, holdID string) (inventory.Hold, error)
	// CheckoutHold binds the hold to orderID and keeps it until at least until. Idempotent for
	// the same order; inventory.ErrHoldOrdered for another, ErrHoldNotLive when it lapsed.
	CheckoutHold(ctx context.Context, holdID string, orderID uuid.UUID, until time.Time) (inventory.Hold, error)
	// CommitHold sells the hold for orderID and returns its tickets. Idempotent by hold id.
	// inventory.ErrSoldOut when the hold lapsed and its tickets are gone.
	CommitHold(ctx context.Context, h inventory.Hold, orderID uuid.UUID) ([]inventory.Ticket, error)
	// ReleaseHold gives the tickets back; idempotent.
	ReleaseHold(ctx context.Context, holdID string) error
	// SoldTickets returns the tickets a hold was sold as, or none. Safe to retry.
	SoldTickets(ctx context.Context, holdID string) ([]inventory.Ticket, error)
	// EventStock returns an event (with its organizer), its ticket types and their live figures,
	// for the organizer's sales view; inventory.ErrEventNotFound. Safe to retry.
	EventStock(ctx context.Context, eventID uuid.UUID) (inventory.EventStock, error)
}

// Service is what other modules (or a future split-out process) may ask of payment.
type Service interface {
	// CreateOrder accepts a checkout of a hold; with the same key and hold it returns the same
	// order (created false).
	CreateOrder(ctx context.Context, customer uuid.UUID, holdID, idempotencyKey string) (o Order, created bool, err error)
	// Order returns a customer's own order.
	Order(ctx context.Context, customer, id uuid.UUID) (Order, error)
}

// The module's errors; each has a stable problem type.
var (
	ErrOrderNotFound       = problem.New(problem.NotFound, "order-not-found", "Order not found")
	ErrTicketNotFound      = problem.New(problem.NotFound, "ticket-not-found", "Ticket not found")
	ErrDuplicateKey        = problem.New(problem.Conflict, "idempotency-key-in-use", "Idempotency key already used")
	ErrIdempotencyMismatch = problem.New(problem.Unprocessable, "idempotency-key-reused", "Idempotency key reused with a different request")
	ErrMissingKey          = problem.New(problem.BadRequest, "idempotency-key-required", "Idempotency-Key header required")
	ErrHoldAlreadyOrdered  = problem.New(problem.Conflict, "hold-already-ordered", "Hold already checked out")
	ErrHoldNotUsable       = problem.New(problem.Conflict, "hold-not-usable", "Hold cannot be checked out")
	ErrOrderTerminal       = problem.New(problem.Conflict, "order-finished", "Order already finished")
	ErrInvalidTicketCode   = problem.New(problem.BadRequest, "invalid-ticket-code", "Invalid ticket code")
	ErrAlreadyCheckedIn    = problem.New(problem.Conflict, "already-checked-in", "Ticket already checked in")
	ErrTooManyStreams      = problem.New(problem.TooManyRequests, "too-many-streams", "Too many open streams")
	// ErrDeclined is the provider's final "no": the order fails and its hold is released.
	ErrDeclined = errors.New("payment declined")
	// ErrNoCharge is the provider's answer to a refund of a charge it never made.
	ErrNoCharge = errors.New("no such charge")
	// ErrChargePending is the provider's "accepted, not settled yet": the order stays pending and
	// its payment is asked for again, under the same key, once it is stale (ONSALE_PAYMENT_STALE_AFTER).
	ErrChargePending = errors.New("charge pending at the provider")
)

// Failure reasons customers see in status_detail.
const (
	DetailDelayed    = "payment delayed"
	DetailDeclined   = "payment declined by the card issuer"
	DetailSoldOut    = "the tickets were no longer available; the payment was refunded"
	DetailGaveUp     = "the payment could not be completed; nothing was charged"
	DetailRefunded   = "the payment could not be completed; the charge was refunded"
	DetailHoldLapsed = "the hold expired or was released before checkout; nothing was charged"
)
