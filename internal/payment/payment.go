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

// Order statuses. A confirmed order may still be refunded: refund_pending while the provider
// gives the money back, then confirmed again (a partial refund, the tickets still valid) or
// refunded (the order was cancelled and its tickets are void). An order cancelled with nothing
// to give back (its tickets were free) ends cancelled.
const (
	StatusPending       Status = "pending"
	StatusConfirmed     Status = "confirmed"
	StatusFailed        Status = "failed"
	StatusRefundPending Status = "refund_pending"
	StatusRefunded      Status = "refunded"
	StatusCancelled     Status = "cancelled"
)

// Terminal tells whether the order's payment needs no more work: it failed, or it was confirmed
// (a refund may still be asked for) or finished being refunded. Streams end at a terminal status.
func (s Status) Terminal() bool {
	return s == StatusConfirmed || s == StatusFailed || s == StatusRefunded || s == StatusCancelled
}

// Paid tells whether an order in this status was charged and sold: it has tickets, valid or void.
func (s Status) Paid() bool {
	return s == StatusConfirmed || s == StatusRefundPending || s == StatusRefunded || s == StatusCancelled
}

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
	Version  int
	ChargeID string
	Tickets  []Ticket
	// Voided is set when the order is cancelled: its tickets no longer admit anyone and its seats
	// are back on sale.
	Voided bool
	// RefundedCents is what the provider has given back so far.
	RefundedCents int64
	// Refunds are the refunds asked for, oldest first (Get reads them; lists leave them out).
	Refunds   []Refund
	CreatedAt time.Time
	UpdatedAt time.Time
}

// RefundableCents is what has not been refunded nor asked to be.
func (o Order) RefundableCents() int64 {
	left := o.AmountCents
	for _, r := range o.Refunds {
		left -= r.AmountCents
	}
	return max(left, 0)
}

// RefundStatus is where a refund stands.
type RefundStatus string

// Refund statuses.
const (
	RefundPending   RefundStatus = "pending"
	RefundSucceeded RefundStatus = "succeeded"
)

// Refund is money given back on an order, once: the provider is asked under the refund's id.
type Refund struct {
	ID      uuid.UUID
	OrderID uuid.UUID
	// Key tells what asked for the refund (a request's Idempotency-Key, an event's cancellation);
	// an order has one refund per key, so a repeated request finds the first.
	Key         string
	AmountCents int64
	Reason      string
	Status      RefundStatus
	// ProviderRefundID is the provider's id for the money given back, once it has been.
	ProviderRefundID string
	CreatedAt        time.Time
	CompletedAt      time.Time
}

// RefundRequest asks for money back on an order (RequestRefund).
type RefundRequest struct {
	OrderID uuid.UUID
	Key     string
	// AmountCents is how much; 0 asks for everything not yet refunded.
	AmountCents int64
	Reason      string
	// Cancel voids the order's tickets as well (a cancellation); a refund of part of the price
	// without it leaves them valid.
	Cancel bool
	At     time.Time
}

// RefundResult is what RequestRefund did.
type RefundResult struct {
	Order Order
	// Refund is the refund made (or found, Created false); zero when there was nothing to give
	// back and the order was cancelled outright.
	Refund  Refund
	Created bool
	// Message asks the payment worker to make the refund, like a new order's.
	Message OutboxMessage
}

// EventCancellation is an organizer's cancellation of an event: every paid order of its ticket
// types is refunded in the background.
type EventCancellation struct {
	EventID     uuid.UUID
	OrganizerID uuid.UUID
	TicketTypes []uuid.UUID
	Reason      string
	CreatedAt   time.Time
	// FinishedAt is when the last of its orders was asked to be refunded (zero until then).
	FinishedAt time.Time
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
	// RequestRefund records a refund and its outbox message in one transaction and moves the
	// order to refund_pending (voided as well with req.Cancel). With nothing left to give back a
	// cancellation ends the order at once (cancelled, or refunded when earlier refunds gave back
	// everything) and makes no refund. A key the order has a refund for returns that refund
	// (Created false). ErrNotRefundable unless the order is paid and not voided, ErrRefundTooLarge
	// past what is left.
	RequestRefund(ctx context.Context, req RefundRequest) (RefundResult, error)
	// FailRefunded fails a pending order whose charge was already given back (its tickets were
	// gone when it was paid), recording the refund made in its history; like Fail otherwise.
	FailRefunded(ctx context.Context, id uuid.UUID, reason string, r Refund) (o Order, changed bool, err error)
	// CompleteRefund records that the provider gave a refund back; once none is pending the
	// order is refunded (voided) or confirmed again. Idempotent; ErrRefundNotFound.
	CompleteRefund(ctx context.Context, refundID uuid.UUID, providerRefundID string, at time.Time) (o Order, changed bool, err error)
	// CancelEvent records an event's cancellation unless it is recorded already (created false,
	// and the first one returned).
	CancelEvent(ctx context.Context, c EventCancellation) (EventCancellation, bool, error)
	// EventCancellation returns an event's cancellation; ErrCancellationNotFound.
	EventCancellation(ctx context.Context, eventID uuid.UUID) (EventCancellation, error)
	// OpenCancellations returns the cancellations not finished yet, oldest first.
	OpenCancellations(ctx context.Context, limit int) ([]EventCancellation, error)
	// FinishCancellation records that every order of the cancelled event was asked to be refunded.
	FinishCancellation(ctx context.Context, eventID uuid.UUID, at time.Time) error
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
	Refunding    int   // orders with a refund under way
	Refunded     int   // orders cancelled (refunded or with nothing to refund)
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

// ProviderRefund asks the provider to give back (part of) the charge made under ChargeKey (the
// charge's idempotency key), whatever its id: a charge whose answer was lost can still be refunded.
type ProviderRefund struct {
	IdempotencyKey string
	ChargeKey      string
	AmountCents    int64
}

// Refunded is money the provider gave back.
type Refunded struct {
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
	Refund(ctx context.Context, req ProviderRefund) (Refunded, error)
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
	// ReturnTickets puts a cancelled order's tickets back on sale, once per hold
	// (inventory.ErrHoldNotFound when the hold sold none).
	ReturnTickets(ctx context.Context, holdID string) (int, error)
	// CancelEvent cancels an event for its organizer: sales end and the waiting room closes.
	CancelEvent(ctx context.Context, organizer, eventID uuid.UUID) (inventory.Catalogue, error)
	// EventOf returns the event a ticket type belongs to: whose orders they are.
	EventOf(ctx context.Context, ticketType uuid.UUID) (inventory.Event, error)
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
	ErrOrderNotFound        = problem.New(problem.NotFound, "order-not-found", "Order not found")
	ErrTicketNotFound       = problem.New(problem.NotFound, "ticket-not-found", "Ticket not found")
	ErrDuplicateKey         = problem.New(problem.Conflict, "idempotency-key-in-use", "Idempotency key already used")
	ErrIdempotencyMismatch  = problem.New(problem.Unprocessable, "idempotency-key-reused", "Idempotency key reused with a different request")
	ErrMissingKey           = problem.New(problem.BadRequest, "idempotency-key-required", "Idempotency-Key header required")
	ErrHoldAlreadyOrdered   = problem.New(problem.Conflict, "hold-already-ordered", "Hold already checked out")
	ErrHoldNotUsable        = problem.New(problem.Conflict, "hold-not-usable", "Hold cannot be checked out")
	ErrOrderTerminal        = problem.New(problem.Conflict, "order-finished", "Order already finished")
	ErrInvalidTicketCode    = problem.New(problem.BadRequest, "invalid-ticket-code", "Invalid ticket code")
	ErrAlreadyCheckedIn     = problem.New(problem.Conflict, "already-checked-in", "Ticket already checked in")
	ErrTooManyStreams       = problem.New(problem.TooManyRequests, "too-many-streams", "Too many open streams")
	ErrNotRefundable        = problem.New(problem.Conflict, "order-not-refundable", "Order cannot be refunded")
	ErrRefundTooLarge       = problem.New(problem.Unprocessable, "refund-exceeds-payment", "Refund larger than what is left to refund")
	ErrRefundNotFound       = problem.New(problem.NotFound, "refund-not-found", "Refund not found")
	ErrCancellationNotFound = problem.New(problem.NotFound, "event-not-cancelled", "Event not cancelled")
	ErrTicketVoid           = problem.New(problem.Conflict, "ticket-void", "Ticket void: its order was cancelled and refunded")
	// ErrDeclined is the provider's final "no": the order fails and its hold is released.
	ErrDeclined = errors.New("payment declined")
	// ErrNoCharge is the provider's answer to a refund of a charge it never made.
	ErrNoCharge = errors.New("no such charge")
	// ErrRefundExceedsCharge is the provider's refusal to give back more than it took.
	ErrRefundExceedsCharge = errors.New("refund exceeds the charge")
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
