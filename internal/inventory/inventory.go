// Package inventory is onsale's catalogue and stock module: events, their ticket types, live
// availability, holds (short reservations made in one atomic step that can never oversell), and
// the commit that turns a paid hold into sold tickets.
//
// The root package holds the domain types, the Module with the operations other modules call
// (payment declares what it needs of them as its own port), the ports the module needs (Store
// for the truth in PostgreSQL, HoldStore for live holds in Redis, Catalog for the cross-replica
// catalogue cache) and their errors. Adapters live in sub-packages named for
// their technology; inventory/holdstest and inventory/storetest are the suites they all pass.
package inventory

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/platform/problem"
)

// Event is a show that sells tickets.
type Event struct {
	ID          uuid.UUID
	OrganizerID uuid.UUID
	Name        string
	Venue       string
	Description string
	StartsAt    time.Time
	// CancelCutoffHours is how long before the start customers may still cancel their orders
	// (and be refunded); nil: they may not.
	CancelCutoffHours *int
	// CancelledAt is when the organizer cancelled the event (zero: it was not).
	CancelledAt time.Time
	// Version grows with every change to the event or its ticket types; caches keep the newest.
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// TicketType is one kind of ticket for an event, with its own price and stock.
type TicketType struct {
	ID         uuid.UUID
	EventID    uuid.UUID
	Name       string
	PriceCents int64
	Currency   string // ISO 4217
	Capacity   int
	// Sold counts every ticket ever sold, Returned those given back by cancelled orders: what is
	// sold now is their difference (SoldNow). Both only grow, like the hold store's figures.
	Sold        int // the truth, from the store
	Returned    int
	MaxPerOrder int
	SalesStart  time.Time // zero: on sale from creation
	SalesEnd    time.Time // zero: on sale until the event
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// SoldNow is how many tickets are sold and not given back.
func (t TicketType) SoldNow() int { return t.Sold - t.Returned }

// CancelOpen tells whether customers may cancel their orders at now.
func (e Event) CancelOpen(now time.Time) bool {
	return e.CancelledAt.IsZero() && e.CancelCutoffHours != nil &&
		now.Before(e.StartsAt.Add(-time.Duration(*e.CancelCutoffHours)*time.Hour))
}

// Catalogue is an event with its ticket types: what browsing shows, apart from live stock.
type Catalogue struct {
	Event       Event
	TicketTypes []TicketType
}

// EventStock is an event with its ticket types and their live figures: what an organizer's sales
// view starts from. Its JSON form is the internal API's.
type EventStock struct {
	Catalogue Catalogue
	Stock     []Stock
}

// Stock is a ticket type's live figures. Held+Sold never exceeds Capacity.
type Stock struct {
	TicketTypeID uuid.UUID
	Capacity     int
	Sold         int
	Held         int
}

// Available is what can still be held.
func (s Stock) Available() int { return max(s.Capacity-s.Sold-s.Held, 0) }

// HoldStatus is where a hold stands.
type HoldStatus string

// Hold statuses.
const (
	HoldActive    HoldStatus = "active"    // reserving tickets until it expires
	HoldClaimed   HoldStatus = "claimed"   // being committed into a sale
	HoldCommitted HoldStatus = "committed" // sold; its tickets exist
	HoldReleased  HoldStatus = "released"  // given back by its customer or a failed payment
	HoldExpired   HoldStatus = "expired"   // its time ran out; the tickets went back to the pool
)

// Live tells whether a hold in this status reserves tickets (until it expires).
func (s HoldStatus) Live() bool { return s == HoldActive || s == HoldClaimed }

// Hold reserves tickets of one type for one customer for a short time.
type Hold struct {
	ID             string
	TicketTypeID   uuid.UUID
	CustomerID     uuid.UUID
	Quantity       int
	UnitPriceCents int64 // the price when the hold was made; the customer pays this
	Currency       string
	Status         HoldStatus
	ExpiresAt      time.Time
	CreatedAt      time.Time
	// OrderID is the order that checked the hold out (uuid.Nil before checkout). Once set, only
	// that order may give the tickets back.
	OrderID uuid.UUID
}

// Live tells whether the hold still reserves tickets at now.
func (h Hold) Live(now time.Time) bool {
	return h.Status.Live() && now.Before(h.ExpiresAt)
}

// Ticket is one sold ticket.
// Its JSON form is the internal API's.
type Ticket struct {
	ID           uuid.UUID `json:"id"`
	TicketTypeID uuid.UUID `json:"ticket_type_id"`
	EventID      uuid.UUID `json:"event_id"`
	HoldID       string    `json:"hold_id"`
	OrderID      uuid.UUID `json:"order_id"`
	CustomerID   uuid.UUID `json:"customer_id"`
	Seq          int       `json:"seq"` // 1..quantity within its hold
	CreatedAt    time.Time `json:"created_at"`
}

// HoldRules are a ticket type's rules as the hold store enforces them.
type HoldRules struct {
	TicketTypeID uuid.UUID
	Capacity     int
	Sold         int // the store's truth, used only where the hold store has no figure
	MaxPerOrder  int
	PriceCents   int64
	Currency     string
	SalesStart   time.Time
	SalesEnd     time.Time
	// Room is the event whose waiting room guards holds (uuid.Nil: none): a hold then needs a
	// pass for that event.
	Room uuid.UUID
}

// RulesOf derives the hold rules of a ticket type.
func RulesOf(tt TicketType) HoldRules {
	// The hold store counts every ticket ever sold, so the tickets given back are capacity again.
	return HoldRules{
		TicketTypeID: tt.ID, Capacity: tt.Capacity + tt.Returned, Sold: tt.Sold, MaxPerOrder: tt.MaxPerOrder,
		PriceCents: tt.PriceCents, Currency: tt.Currency, SalesStart: tt.SalesStart, SalesEnd: tt.SalesEnd,
	}
}

// HoldRequest asks for a hold.
type HoldRequest struct {
	ID           string // chosen by the caller; a retry with the same ID returns the same hold
	TicketTypeID uuid.UUID
	CustomerID   uuid.UUID
	Quantity     int
	Now          time.Time
	TTL          time.Duration
	// MaxLive is the most live holds a customer may have on this ticket type.
	MaxLive int
	// Pass is the event of the valid queue pass the customer presented (uuid.Nil: none). Where
	// the rules name a Room, a hold needs a pass for it.
	Pass uuid.UUID
}

// CommitRequest asks the store to sell a claimed hold.
type CommitRequest struct {
	Hold    Hold
	OrderID uuid.UUID
	Now     time.Time
}

// CommitResult is the outcome of one commit in a batch.
type CommitResult struct {
	Tickets []Ticket
	Sold    int // the ticket type's sold count after the commit, for the Redis mirror
	Err     error
}

// CatalogueReader is what catalogue reads need of a store: a read replica's store serves them
// (Deps.Replica), the Store itself otherwise.
type CatalogueReader interface {
	Event(ctx context.Context, id uuid.UUID) (Event, error)
	TicketTypes(ctx context.Context, eventID uuid.UUID) ([]TicketType, error)
	ListEvents(ctx context.Context, after Cursor, limit int) ([]Event, error)
}

// Store keeps the catalogue and the truth about sales (PostgreSQL in production).
type Store interface {
	CreateEvent(ctx context.Context, e Event) error
	// UpdateEvent applies fn to the event inside a transaction and bumps its version.
	UpdateEvent(ctx context.Context, id uuid.UUID, fn func(*Event) error) (Event, error)
	Event(ctx context.Context, id uuid.UUID) (Event, error)
	// ListEvents returns events ordered by (StartsAt, ID) strictly after the cursor position.
	ListEvents(ctx context.Context, after Cursor, limit int) ([]Event, error)
	// CreateTicketType stores a ticket type and bumps its event's version.
	CreateTicketType(ctx context.Context, tt TicketType) error
	// UpdateTicketType applies fn inside a transaction; the store refuses a capacity below sold.
	UpdateTicketType(ctx context.Context, id uuid.UUID, fn func(*TicketType) error) (TicketType, error)
	TicketType(ctx context.Context, id uuid.UUID) (TicketType, error)
	TicketTypes(ctx context.Context, eventID uuid.UUID) ([]TicketType, error)
	// Commit sells holds of ONE ticket type in one transaction: sold grows by their quantities
	// only while sold stays within capacity, and the tickets are written keyed by hold id, so a
	// repeat returns the tickets it made the first time. Results match requests by index; a
	// request that does not fit gets ErrSoldOut and the others still commit.
	Commit(ctx context.Context, reqs []CommitRequest) []CommitResult
	// Tickets returns a hold's tickets, if it was committed.
	Tickets(ctx context.Context, holdID string) ([]Ticket, error)
	// ReturnTickets gives a committed hold's tickets back to its ticket type (its order was
	// cancelled): Returned grows by their number, once. It returns the ticket type as it is
	// after, and how many tickets this call gave back (0 on a repeat, or when nothing was sold).
	ReturnTickets(ctx context.Context, holdID string, at time.Time) (TicketType, int, error)
	// CreateEventKeyed is CreateEvent that records key in the same transaction, so a retry can
	// never make a second event; ErrRequestKeyTaken when the owner's key is live already.
	CreateEventKeyed(ctx context.Context, e Event, key RequestKey) error
	// CreateTicketTypeKeyed is CreateTicketType with key, as CreateEventKeyed.
	CreateTicketTypeKeyed(ctx context.Context, tt TicketType, key RequestKey) error
	// RequestKey returns an owner's key that is live at now; ErrRequestKeyNotFound.
	RequestKey(ctx context.Context, owner uuid.UUID, key string, now time.Time) (RequestKey, error)
	// SaveRoom creates or changes an event's waiting room in one transaction: fn gets the room
	// (found false, and a Room with only EventID set, when there is none yet) and changes it, or
	// returns an error to change nothing. The version grows with each save.
	// ErrEventNotFound when the event does not exist.
	SaveRoom(ctx context.Context, eventID uuid.UUID, fn func(r *Room, found bool) error) (Room, error)
	// Room returns an event's waiting room, closed or not; ErrRoomNotFound.
	Room(ctx context.Context, eventID uuid.UUID) (Room, error)
	// OpenRooms returns every room that is not closed.
	OpenRooms(ctx context.Context) ([]Room, error)
}

// RequestKey ties an organizer's Idempotency-Key to the request it first came with and to what
// that request created.
type RequestKey struct {
	Owner       uuid.UUID
	Key         string
	RequestHash string
	ResourceID  uuid.UUID
	ExpiresAt   time.Time
}

// Cursor is a position in the event listing.
type Cursor struct {
	StartsAt time.Time
	ID       uuid.UUID
}

// HoldStore keeps live holds (Redis in production). Every operation is atomic: at no instant
// can held plus sold exceed capacity, and expired holds return to the pool on the next operation
// on their ticket type, without any background job.
type HoldStore interface {
	// Configure sets a ticket type's rules. The sold figure is raised to rules.Sold if it is
	// lower or missing, never lowered.
	Configure(ctx context.Context, rules HoldRules) error
	// SetCapacity changes capacity; ErrCapacityBelowCommitted when below sold plus held.
	SetCapacity(ctx context.Context, ticketTypeID uuid.UUID, capacity int, now time.Time) error
	// Hold reserves tickets, or returns the hold already made under req.ID (created false).
	// Errors: PassRefused when the rules name a room and req.Pass is not for it (before any other
	// answer), ErrSoldOut (with the number available), ErrOverOrderLimit, ErrSalesClosed,
	// ErrTooManyHolds, ErrIdempotencyMismatch, or ErrNotConfigured when the store has no rules
	// for the ticket type (load them and Configure).
	Hold(ctx context.Context, req HoldRequest) (h Hold, created bool, err error)
	// Get returns a hold, with Status expired once its time has passed; ErrHoldNotFound.
	Get(ctx context.Context, holdID string, now time.Time) (Hold, error)
	// Checkout records that orderID checked a live hold out and moves its expiry to until if
	// that is later, in one step. Repeating it for the same order is harmless; another order gets
	// ErrHoldOrdered, and a hold that no longer reserves tickets ErrHoldNotLive.
	Checkout(ctx context.Context, holdID string, orderID uuid.UUID, until, now time.Time) (Hold, error)
	// Release gives a hold's tickets back at once, checked out or not (its order's payment
	// failed, or its sale could not be made); idempotent, and a no-op once committed.
	Release(ctx context.Context, holdID string, now time.Time) error
	// Cancel is the customer giving a hold back: Release, unless an order checked the hold out
	// (then ErrHoldOrdered: that order gives the tickets back if its payment fails).
	Cancel(ctx context.Context, holdID string, now time.Time) error
	// Claim prepares a hold for commit: a live hold is protected for claimTTL; a hold that is
	// gone (expired, released, or lost with a Redis restart) is reserved again if the tickets
	// are still there, else ErrSoldOut. A committed hold returns Status committed.
	Claim(ctx context.Context, h Hold, now time.Time, claimTTL time.Duration) (Hold, error)
	// Finalize records a commit: the hold stops counting as held and the sold figure is raised
	// to sold (the store's count after the commit, which includes the hold), never lowered: the
	// largest count reported wins whatever order commits finalize in. Until the other holds of
	// the same batch finalize, they count twice (held, and in sold): new holds see fewer tickets
	// than there are, never more, and Stock reports sold only as far as held plus sold fits the
	// capacity. Idempotent.
	Finalize(ctx context.Context, h Hold, sold int, now time.Time) error
	// Stock returns live figures, pruning expired holds first; ErrNotConfigured for a ticket
	// type it has no rules for (and the figures of the others).
	Stock(ctx context.Context, ticketTypeIDs []uuid.UUID, now time.Time) ([]Stock, error)
}

// CustomerHolds keeps what spans all of a customer's holds, whatever their ticket types: the
// Idempotency-Keys they were made with and the live holds counted against the customer's cap.
// The Redis adapter keeps it under the customer's own hash tag, apart from any ticket type's, so
// it is a second step beside the hold store's, never inside the same script.
type CustomerHolds interface {
	// BindKey ties a customer's key to a request fingerprint until ttl passes, unless the key is
	// bound already; it returns the fingerprint the key is bound to (fp itself when it was free).
	BindKey(ctx context.Context, customer uuid.UUID, key, fp string, now time.Time, ttl time.Duration) (string, error)
	// Add counts a live hold until expires unless the customer has max live holds at now
	// already: then ok is false and earliest is when the first of them ends. A hold already
	// counted just has its end moved.
	Add(ctx context.Context, customer uuid.UUID, holdID string, expires, now time.Time, max int) (ok bool, earliest time.Time, err error)
	// Remove stops counting a hold; idempotent.
	Remove(ctx context.Context, customer uuid.UUID, holdID string) error
}

// Catalog caches catalogues across replicas: a write anywhere is seen by every replica.
type Catalog interface {
	// Get returns the cached catalogue, or ok false.
	Get(ctx context.Context, eventID uuid.UUID) (c Catalogue, ok bool, err error)
	// Put stores c unless a newer version is there.
	Put(ctx context.Context, c Catalogue) error
}

// The module's errors; each has a stable problem type.
var (
	ErrEventNotFound          = problem.New(problem.NotFound, "event-not-found", "Event not found")
	ErrTicketTypeNotFound     = problem.New(problem.NotFound, "ticket-type-not-found", "Ticket type not found")
	ErrHoldNotFound           = problem.New(problem.NotFound, "hold-not-found", "Hold not found")
	ErrNotOwner               = problem.New(problem.Forbidden, "not-event-owner", "Not your event")
	ErrSoldOut                = problem.New(problem.Conflict, "sold-out", "Not enough tickets available")
	ErrOverOrderLimit         = problem.New(problem.Unprocessable, "over-order-limit", "Too many tickets for one order")
	ErrSalesClosed            = problem.New(problem.Unprocessable, "sales-closed", "Ticket sales are not open")
	ErrTooManyHolds           = problem.New(problem.TooManyRequests, "too-many-holds", "Too many live holds")
	ErrIdempotencyMismatch    = problem.New(problem.Unprocessable, "idempotency-key-reused", "Idempotency key reused with a different request")
	ErrHoldNotLive            = problem.New(problem.Conflict, "hold-not-live", "Hold no longer reserves tickets")
	ErrHoldOrdered            = problem.New(problem.Conflict, "hold-ordered", "Hold checked out")
	ErrCapacityBelowCommitted = problem.New(problem.Conflict, "capacity-below-committed", "Capacity below tickets sold and held")
	ErrEventCancelled         = problem.New(problem.Conflict, "event-cancelled", "Event cancelled")
	ErrNotConfigured          = problem.New(problem.Internal, "hold-rules-missing", "Hold rules missing")
	ErrInvalid                = problem.New(problem.Unprocessable, "validation", "Validation failed")
)

// The store's answers about request keys; they never reach a client as such.
var (
	ErrRequestKeyTaken    = errors.New("request key already used")
	ErrRequestKeyNotFound = errors.New("no such request key")
)

// PassRefused is the answer to a hold that a waiting room guards, for the pass presented (the event
// of a valid pass for another room, or uuid.Nil for none).
func PassRefused(pass uuid.UUID) error {
	if pass == uuid.Nil {
		return errPassRequiredRule
	}
	return ErrPassInvalid.WithDetail("this queue pass is for another event")
}

// SoldOut reports how many tickets are still available.
func SoldOut(available int) error {
	if available == 0 {
		// The commonest answer of a flash sale, by far: built once, as the sentinels are.
		return errNoneAvailable
	}
	return soldOut(available)
}

var errNoneAvailable = soldOut(0)

func soldOut(available int) *problem.Error {
	e := ErrSoldOut.WithExtra("available", available)
	e.Detail = "only " + strconv.Itoa(available) + " tickets are available"
	return e
}
