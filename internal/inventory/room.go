package inventory

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/platform/problem"
)

// Room is an event's waiting room: while it is active, holds on the event's ticket types need a
// pass, and passes are given to the people in the queue in the order of their places, at the
// rate the organizer sets. The settings live in the Store (PostgreSQL); the queue itself lives in
// the QueueStore (Redis).
type Room struct {
	EventID uuid.UUID
	// RatePerMinute is how many people are admitted a minute (0: no rate, only MaxShoppers).
	RatePerMinute int
	// MaxShoppers caps how many admitted people may shop at once (0: no cap).
	MaxShoppers int
	// OpensAt is when the queue starts giving places; arrivals before it are drawn at random.
	OpensAt time.Time
	// PassLifetime is how long an admitted person may shop.
	PassLifetime time.Duration
	// Paused stops admission; passes already given stay valid.
	Paused bool
	// Closed ends the room: holds no longer need a pass. A closed room is not active.
	Closed bool
	// Secret signs the room's passes.
	Secret []byte
	// Version grows with every change.
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Active tells whether the room guards the event's holds.
func (r Room) Active() bool { return !r.Closed }

// EntryStatus is where a person stands in a queue.
type EntryStatus string

// Entry statuses.
const (
	EntryPreQueue EntryStatus = "pre_queue" // arrived before the opening; a place is drawn at opening
	EntryWaiting  EntryStatus = "waiting"   // has a place, not admitted yet
	EntryAdmitted EntryStatus = "admitted"  // may shop until the pass expires
	EntryExpired  EntryStatus = "expired"   // the pass ran out
	EntryDone     EntryStatus = "done"      // bought: the pass ended with the order
	EntryLeft     EntryStatus = "left"      // left the queue
)

// QueueEntry is one person's place in an event's queue, as the queue store knows it.
type QueueEntry struct {
	EventID    uuid.UUID
	CustomerID uuid.UUID
	Status     EntryStatus
	// Place is the position in line from 1 (0 in the pre-queue, before the draw).
	Place int64
	// Through is the room's admission cursor: every place up to it has been admitted.
	Through int64
	// PassExpires is when the pass of an admitted entry ends.
	PassExpires time.Time
	// Created is false when the join found the entry already there.
	Created bool
}

// Ahead is how many places are before this entry's and not admitted yet.
func (e QueueEntry) Ahead() int64 {
	if e.Status != EntryWaiting {
		return 0
	}
	return max(e.Place-e.Through-1, 0)
}

// RoomState is a queue's live figures.
type RoomState struct {
	// Opened is true once the opening time passed and the pre-queue was drawn.
	Opened bool
	// PreQueue counts arrivals waiting for the draw (before the opening), or drawn at it.
	PreQueue int64
	// Places is how many places were given; Through how many of them admission passed.
	Places, Through int64
	// Waiting counts people with a place not admitted yet (those who left excluded).
	Waiting int64
	// Admitted counts admissions ever; Shopping those whose pass is live now.
	Admitted, Shopping int64
	// Expired counts passes that ran out; Left people who left the queue.
	Expired, Left int64
	// MeasuredPerMinute is the admission rate over the last minute, or -1 when there is not yet
	// enough history to tell.
	MeasuredPerMinute float64
}

// JoinRequest asks for a place.
type JoinRequest struct {
	EventID    uuid.UUID
	CustomerID uuid.UUID
	// Address is the client's address (an IPv6 /64), counted against MaxPerAddress ("" counts
	// nothing).
	Address       string
	MaxPerAddress int
	// Draw orders the pre-queue: a random number in [0, 1) the server chose.
	Draw    float64
	OpensAt time.Time
	Now     time.Time
}

// AdmitRequest is one tick of admission.
type AdmitRequest struct {
	EventID       uuid.UUID
	RatePerMinute int
	MaxShoppers   int
	PassLifetime  time.Duration
	Paused        bool
	OpensAt       time.Time
	// Tick is the admission period: the store makes one admission decision per tick, whatever
	// the number of replicas asking.
	Tick time.Duration
	Now  time.Time
}

// QueueStore keeps waiting rooms' queues (Redis in production; every operation on one room is
// atomic). Places are given in order of arrival after the opening; arrivals before it are
// ordered by their Draw at the first operation after the opening.
type QueueStore interface {
	// Join gives the customer a place, or returns the entry they have (Created false). A
	// customer who left or whose pass expired joins again at the back. ErrAddressPlaces when the
	// address has MaxPerAddress places already.
	Join(ctx context.Context, req JoinRequest) (QueueEntry, error)
	// Entry returns the customer's entry; ErrNotInQueue.
	Entry(ctx context.Context, eventID, customerID uuid.UUID, now time.Time) (QueueEntry, error)
	// Leave takes the customer out: a waiting place is skipped, a pass ends. ErrNotInQueue.
	Leave(ctx context.Context, eventID, customerID uuid.UUID, now time.Time) error
	// EndPass ends an admitted customer's pass after a completed order (status done);
	// idempotent, and a no-op for anyone not admitted.
	EndPass(ctx context.Context, eventID, customerID uuid.UUID, now time.Time) error
	// PassEnded tells whether the customer's pass was ended early (left or done): the only
	// question a hold asks of the queue.
	PassEnded(ctx context.Context, eventID, customerID uuid.UUID) (bool, error)
	// Admit runs one tick of admission and returns the room's figures after it.
	Admit(ctx context.Context, req AdmitRequest) (RoomState, error)
	// State returns the room's figures without admitting anyone.
	State(ctx context.Context, eventID uuid.UUID, now time.Time) (RoomState, error)
	// Drop forgets a room's queue (the room was closed).
	Drop(ctx context.Context, eventID uuid.UUID) error
}

// The waiting room's errors.
var (
	ErrRoomNotFound     = problem.New(problem.NotFound, "waiting-room-not-found", "Waiting room not found")
	ErrNotInQueue       = problem.New(problem.NotFound, "queue-entry-not-found", "Not in the queue")
	ErrAddressPlaces    = problem.New(problem.TooManyRequests, "queue-address-limit", "Too many places in the queue from one address")
	ErrPassRequired     = problem.New(problem.Forbidden, "queue-pass-required", "Join the queue: a queue pass is required")
	ErrPassInvalid      = problem.New(problem.Forbidden, "queue-pass-invalid", "Queue pass not valid")
	ErrPassExpired      = problem.New(problem.Forbidden, "queue-pass-expired", "Queue pass expired")
	errPassRequiredRule = ErrPassRequired.WithDetail("this event has a waiting room: join its queue (POST /v1/events/{id}/queue) and present the pass you get in the Queue-Pass header")
)
