package memory

import (
	"cmp"
	"context"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/inventory"
)

// room is one waiting room's queue; it has its own lock, as a Redis hash slot would.
type room struct {
	mu sync.Mutex
	// pre holds the pre-queue arrivals; drawn orders them by draw at the first operation after
	// the opening (nil before it).
	pre    map[uuid.UUID]float64
	drawn  []uuid.UUID
	rank   map[uuid.UUID]int64 // place in drawn, from 1
	line   []uuid.UUID         // arrivals after the draw; place len(drawn)+i+1 is line[i]
	places map[uuid.UUID]int64 // arrivals after the draw
	status map[uuid.UUID]inventory.EntryStatus
	passes map[uuid.UUID]time.Time // pass expiry, for everyone admitted
	gone   map[uuid.UUID]bool
	inside map[uuid.UUID]time.Time
	addrs  map[string]int

	through, admitted, expired, left, leftw int64
	tokens                                  int64     // thousandths
	last                                    time.Time // of the last accrual; zero before the first
	tick                                    int64
	hist                                    []sample // newest last
}

type sample struct {
	at       time.Time
	admitted int64
}

// Queue is a QueueStore in memory.
type Queue struct {
	mu    sync.Mutex
	rooms map[uuid.UUID]*room
}

var _ inventory.QueueStore = (*Queue)(nil)

// NewQueue returns an empty queue store.
func NewQueue() *Queue { return &Queue{rooms: map[uuid.UUID]*room{}} }

// room returns an event's room, made on first use, locked.
func (q *Queue) room(event uuid.UUID) *room {
	q.mu.Lock()
	r, ok := q.rooms[event]
	if !ok {
		r = &room{
			pre: map[uuid.UUID]float64{}, places: map[uuid.UUID]int64{}, status: map[uuid.UUID]inventory.EntryStatus{},
			passes: map[uuid.UUID]time.Time{}, gone: map[uuid.UUID]bool{}, inside: map[uuid.UUID]time.Time{}, addrs: map[string]int{},
		}
		q.rooms[event] = r
	}
	q.mu.Unlock()
	r.mu.Lock()
	return r
}

func (r *room) frozen() bool { return r.drawn != nil }

// freeze draws the pre-queue: places 1..n in the order of the arrivals' draws.
func (r *room) freeze() {
	if r.frozen() {
		return
	}
	r.drawn = make([]uuid.UUID, 0, len(r.pre))
	for c := range r.pre {
		r.drawn = append(r.drawn, c)
	}
	slices.SortFunc(r.drawn, func(a, b uuid.UUID) int {
		// Ties broken by id, as a Redis sorted set orders equal scores.
		return cmp.Or(cmp.Compare(r.pre[a], r.pre[b]), cmp.Compare(a.String(), b.String()))
	})
	r.rank = make(map[uuid.UUID]int64, len(r.drawn))
	for i, c := range r.drawn {
		r.rank[c] = int64(i + 1)
	}
}

// placeOf is the customer's place: 0 in the pre-queue before the draw; ok false without one.
func (r *room) placeOf(c uuid.UUID) (int64, bool) {
	if p, ok := r.places[c]; ok {
		return p, true
	}
	if !r.frozen() {
		_, ok := r.pre[c]
		return 0, ok
	}
	p, ok := r.rank[c]
	return p, ok
}

func (r *room) memberAt(p int64) (uuid.UUID, bool) {
	n := int64(len(r.drawn))
	if p <= n {
		return r.drawn[p-1], true
	}
	if i := p - n - 1; i < int64(len(r.line)) {
		return r.line[i], true
	}
	return uuid.Nil, false
}

func (r *room) entry(event, c uuid.UUID, place int64, now time.Time) inventory.QueueEntry {
	e := inventory.QueueEntry{EventID: event, CustomerID: c, Place: place, Through: r.through, PassExpires: r.passes[c]}
	switch s, ok := r.status[c]; {
	case ok:
		e.Status = s
	case place == 0:
		e.Status = inventory.EntryPreQueue
	case place > r.through:
		e.Status = inventory.EntryWaiting
	case e.PassExpires.After(now):
		e.Status = inventory.EntryAdmitted
	default:
		e.Status = inventory.EntryExpired
	}
	return e
}

func (r *room) prune(now time.Time) {
	for c, exp := range r.inside {
		if !exp.After(now) {
			delete(r.inside, c)
			r.expired++
		}
	}
}

// Join implements inventory.QueueStore.
func (q *Queue) Join(_ context.Context, req inventory.JoinRequest) (inventory.QueueEntry, error) {
	r := q.room(req.EventID)
	defer r.mu.Unlock()
	c := req.CustomerID
	opened := !req.Now.Before(req.OpensAt) || r.frozen()
	if opened {
		r.freeze()
	}
	if place, ok := r.placeOf(c); ok {
		e := r.entry(req.EventID, c, place, req.Now)
		if e.Status != inventory.EntryLeft && e.Status != inventory.EntryExpired {
			return e, nil
		}
	}
	if req.Address != "" {
		if r.addrs[req.Address] >= req.MaxPerAddress {
			return inventory.QueueEntry{}, inventory.ErrAddressPlaces.WithDetail("at most %d places may be taken from one address", req.MaxPerAddress)
		}
		r.addrs[req.Address]++
	}
	delete(r.status, c)
	delete(r.passes, c)
	delete(r.gone, c)
	if !opened {
		r.pre[c] = req.Draw
		e := r.entry(req.EventID, c, 0, req.Now)
		e.Created = true
		return e, nil
	}
	r.line = append(r.line, c)
	place := int64(len(r.drawn) + len(r.line))
	r.places[c] = place
	e := r.entry(req.EventID, c, place, req.Now)
	e.Created = true
	return e, nil
}

// Entry implements inventory.QueueStore.
func (q *Queue) Entry(_ context.Context, event, customer uuid.UUID, now time.Time) (inventory.QueueEntry, error) {
	r := q.room(event)
	defer r.mu.Unlock()
	place, ok := r.placeOf(customer)
	if !ok {
		return inventory.QueueEntry{}, inventory.ErrNotInQueue
	}
	return r.entry(event, customer, place, now), nil
}

func (q *Queue) end(event, c uuid.UUID, now time.Time, how inventory.EntryStatus) error {
	r := q.room(event)
	defer r.mu.Unlock()
	place, ok := r.placeOf(c)
	if !ok {
		return inventory.ErrNotInQueue
	}
	e := r.entry(event, c, place, now)
	switch {
	case how == inventory.EntryDone && e.Status != inventory.EntryAdmitted:
		return nil
	case e.Status == inventory.EntryLeft || e.Status == inventory.EntryDone:
		return nil
	case place == 0:
		delete(r.pre, c) // before the draw, leaving takes no place
		return nil
	}
	r.status[c] = how
	if how == inventory.EntryLeft {
		r.left++
	}
	switch e.Status {
	case inventory.EntryWaiting:
		r.leftw++
	case inventory.EntryAdmitted:
		delete(r.inside, c)
		r.gone[c] = true
	}
	return nil
}

// Leave implements inventory.QueueStore.
func (q *Queue) Leave(_ context.Context, event, customer uuid.UUID, now time.Time) error {
	return q.end(event, customer, now, inventory.EntryLeft)
}

// EndPass implements inventory.QueueStore.
func (q *Queue) EndPass(_ context.Context, event, customer uuid.UUID, now time.Time) error {
	if err := q.end(event, customer, now, inventory.EntryDone); err != nil && err != inventory.ErrNotInQueue {
		return err
	}
	return nil
}

// PassEnded implements inventory.QueueStore.
func (q *Queue) PassEnded(_ context.Context, event, customer uuid.UUID) (bool, error) {
	r := q.room(event)
	defer r.mu.Unlock()
	return r.gone[customer], nil
}

// Admit implements inventory.QueueStore.
func (q *Queue) Admit(_ context.Context, req inventory.AdmitRequest) (inventory.RoomState, error) {
	r := q.room(req.EventID)
	defer r.mu.Unlock()
	now := req.Now
	if now.Before(req.OpensAt) && !r.frozen() {
		return r.state(now), nil
	}
	r.freeze()
	r.prune(now)
	tick := now.UnixMilli() / max(req.Tick.Milliseconds(), 1)
	// A tick at or before the last one run (a call that waited, with an earlier clock reading)
	// decides nothing: admission times only move forward.
	if tick <= r.tick {
		return r.state(now), nil
	}
	r.tick = tick
	// Tokens are counted in thousandths, in integers, as the Redis adapter counts them.
	rate := int64(req.RatePerMinute)
	burst := max(1000, rate*1000/60)
	if r.last.IsZero() {
		r.tokens = 1000
	} else if !req.Paused {
		r.tokens = min(r.tokens+max(now.Sub(r.last).Milliseconds(), 0)*rate/60, burst)
	}
	r.last = now
	n := int64(math.MaxInt32)
	if rate > 0 {
		n = r.tokens / 1000
	}
	if req.Paused {
		n = 0
	}
	if req.MaxShoppers > 0 {
		n = min(n, max(int64(req.MaxShoppers-len(r.inside)), 0))
	}
	total := int64(len(r.drawn) + len(r.line))
	for steps := 0; n > 0 && r.through < total && steps < 20000; steps++ {
		r.through++
		c, _ := r.memberAt(r.through)
		_, ended := r.status[c]
		if place, _ := r.placeOf(c); !ended && place == r.through {
			exp := now.Add(req.PassLifetime)
			r.inside[c], r.passes[c] = exp, exp
			n--
			r.admitted++
			if rate > 0 {
				r.tokens -= 1000
			}
		} else if r.leftw > 0 {
			r.leftw--
		}
	}
	if len(r.hist) == 0 || now.Sub(r.hist[len(r.hist)-1].at) >= time.Second {
		r.hist = append(r.hist, sample{now, r.admitted})
		if len(r.hist) > 62 {
			r.hist = r.hist[len(r.hist)-62:]
		}
	}
	return r.state(now), nil
}

func (r *room) state(now time.Time) inventory.RoomState {
	r.prune(now)
	s := inventory.RoomState{
		Opened: r.frozen(), PreQueue: int64(len(r.pre)), Through: r.through, Admitted: r.admitted,
		Shopping: int64(len(r.inside)), Expired: r.expired, Left: r.left, MeasuredPerMinute: -1,
	}
	if r.frozen() {
		s.Places = int64(len(r.drawn) + len(r.line))
		s.Waiting = max(s.Places-r.through-r.leftw, 0)
	}
	for _, h := range r.hist {
		if now.Sub(h.at) <= 61*time.Second {
			if span := now.Sub(h.at).Milliseconds(); span >= 5000 {
				// As the Redis adapter computes it: per minute, to a thousandth.
				s.MeasuredPerMinute = float64((r.admitted-h.admitted)*60000000/span) / 1000
			}
			break
		}
	}
	return s
}

// State implements inventory.QueueStore.
func (q *Queue) State(_ context.Context, event uuid.UUID, now time.Time) (inventory.RoomState, error) {
	r := q.room(event)
	defer r.mu.Unlock()
	return r.state(now), nil
}

// Drop implements inventory.QueueStore.
func (q *Queue) Drop(_ context.Context, event uuid.UUID) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.rooms, event)
	return nil
}
