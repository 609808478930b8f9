package inventory

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Waiting room limits.
const (
	maxRatePerMinute   = 1_000_000
	maxShoppersLimit   = 10_000_000
	minPassLifetime    = time.Minute
	maxPassLifetime    = 24 * time.Hour
	defaultPassLife    = 10 * time.Minute
	roomsRefreshPeriod = 2 * time.Second
)

// RoomInput sets a waiting room; nil fields keep their value (or take the default for a new
// room, or when the whole room is replaced).
type RoomInput struct {
	RatePerMinute *int
	MaxShoppers   *int
	OpensAt       *time.Time
	PassLifetime  *time.Duration
	Paused        *bool
}

// RoomView is a room with its live figures.
type RoomView struct {
	Room  Room
	State RoomState
	// DrainIn estimates when everyone waiting will have been admitted (-1: cannot tell, e.g.
	// paused or nothing measured yet).
	DrainIn time.Duration
}

// QueueView is what a customer sees of their place.
type QueueView struct {
	Entry   QueueEntry
	OpensAt time.Time
	Paused  bool
	// Wait estimates the time until admission from the measured rate (-1: cannot tell).
	Wait time.Duration
	// MeasuredPerMinute is the admission rate the estimate is based on (-1: none yet).
	MeasuredPerMinute float64
	// Pass is the signed pass of an admitted entry ("" otherwise).
	Pass string
}

// rooms is a replica's copy of the open waiting rooms and their last known figures: what
// admission ticks over, what passes are verified against and what stream watchers are told.
type rooms struct {
	mu      sync.RWMutex
	open    map[uuid.UUID]*liveRoom
	fetched time.Time
}

type liveRoom struct {
	room  Room
	state RoomState
	known bool // state has been read at least once
	// changed is closed and replaced whenever state changes: stream watchers wait on it.
	changed chan struct{}
}

func newRooms() *rooms { return &rooms{open: map[uuid.UUID]*liveRoom{}} }

// get returns the open room of an event, from the copy.
func (rs *rooms) get(event uuid.UUID) (Room, RoomState, bool) {
	rs.mu.RLock()
	defer rs.mu.RUnlock()
	lr, ok := rs.open[event]
	if !ok {
		return Room{}, RoomState{}, false
	}
	return lr.room, lr.state, true
}

func (rs *rooms) any() bool {
	rs.mu.RLock()
	defer rs.mu.RUnlock()
	return len(rs.open) > 0
}

// put records a room as saved: open rooms are kept (with their figures), closed ones dropped.
func (rs *rooms) put(r Room) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.putLocked(r)
}

func (rs *rooms) putLocked(r Room) {
	lr, ok := rs.open[r.EventID]
	switch {
	case r.Closed && ok:
		close(lr.changed) // watchers find the room gone
		delete(rs.open, r.EventID)
	case r.Closed:
	case ok:
		if r.Version >= lr.room.Version {
			lr.room = r
		}
	default:
		rs.open[r.EventID] = &liveRoom{room: r, state: RoomState{MeasuredPerMinute: -1}, changed: make(chan struct{})}
	}
}

// replace sets the copy to the store's open rooms.
func (rs *rooms) replace(open []Room, at time.Time) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	seen := make(map[uuid.UUID]bool, len(open))
	for _, r := range open {
		seen[r.EventID] = true
		rs.putLocked(r)
	}
	for id, lr := range rs.open {
		if !seen[id] {
			close(lr.changed)
			delete(rs.open, id)
		}
	}
	rs.fetched = at
}

func (rs *rooms) stale(now time.Time) bool {
	rs.mu.RLock()
	defer rs.mu.RUnlock()
	return now.Sub(rs.fetched) >= roomsRefreshPeriod
}

func (rs *rooms) list() []Room {
	rs.mu.RLock()
	defer rs.mu.RUnlock()
	out := make([]Room, 0, len(rs.open))
	for _, lr := range rs.open {
		out = append(out, lr.room)
	}
	return out
}

// setState records a room's figures and wakes its watchers when they changed.
func (rs *rooms) setState(event uuid.UUID, st RoomState) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	lr, ok := rs.open[event]
	if !ok {
		return
	}
	if lr.known && lr.state == st {
		return
	}
	lr.state, lr.known = st, true
	close(lr.changed)
	lr.changed = make(chan struct{})
}

// watch returns a channel closed at the room's next change (or when it closes); ok false when
// the room is not open.
func (rs *rooms) watch(event uuid.UUID) (<-chan struct{}, bool) {
	rs.mu.RLock()
	defer rs.mu.RUnlock()
	lr, ok := rs.open[event]
	if !ok {
		return nil, false
	}
	return lr.changed, true
}

// ---- organizer ----

func (m *Module) checkRoom(r Room) error {
	var errs []error
	if r.RatePerMinute < 0 || r.RatePerMinute > maxRatePerMinute {
		errs = append(errs, invalid("admission_rate_per_minute", fmt.Sprintf("must be from 0 to %d", maxRatePerMinute)))
	}
	if r.MaxShoppers < 0 || r.MaxShoppers > maxShoppersLimit {
		errs = append(errs, invalid("max_shoppers", fmt.Sprintf("must be from 0 to %d", maxShoppersLimit)))
	}
	if r.RatePerMinute == 0 && r.MaxShoppers == 0 {
		errs = append(errs, invalid("admission_rate_per_minute", "set an admission rate, a cap on shoppers, or both"))
	}
	if r.PassLifetime < minPassLifetime || r.PassLifetime > maxPassLifetime {
		errs = append(errs, invalid("pass_lifetime_seconds", fmt.Sprintf("must be from %d to %d", int(minPassLifetime.Seconds()), int(maxPassLifetime.Seconds()))))
	}
	if err := errors.Join(errs...); err != nil {
		return firstErr(err)
	}
	return nil
}

// SetRoom turns an event's waiting room on or changes it. With replace, fields the input leaves
// out take their defaults; without, they keep their values, and the room must exist (PATCH).
func (m *Module) SetRoom(ctx context.Context, organizer, event uuid.UUID, in RoomInput, replace bool) (RoomView, error) {
	if err := m.ownedOpenEvent(ctx, organizer, event); err != nil {
		return RoomView{}, err
	}
	now := m.d.Clock.Now().UTC()
	room, err := m.d.Store.SaveRoom(ctx, event, func(r *Room, found bool) error {
		fresh := !found || r.Closed
		if fresh && !replace {
			return ErrRoomNotFound.WithDetail("this event has no waiting room; create it with PUT first")
		}
		if fresh || replace {
			r.RatePerMinute, r.MaxShoppers, r.OpensAt, r.PassLifetime, r.Paused = 0, 0, now, defaultPassLife, false
		}
		if in.RatePerMinute != nil {
			r.RatePerMinute = *in.RatePerMinute
		}
		if in.MaxShoppers != nil {
			r.MaxShoppers = *in.MaxShoppers
		}
		if in.OpensAt != nil {
			r.OpensAt = in.OpensAt.UTC()
		}
		if in.PassLifetime != nil {
			r.PassLifetime = *in.PassLifetime
		}
		if in.Paused != nil {
			r.Paused = *in.Paused
		}
		if err := m.checkRoom(*r); err != nil {
			return err
		}
		if fresh {
			// A new room, or one opened again after it closed: a new secret, so no pass of the
			// old one is worth anything.
			r.Closed = false
			r.Secret = make([]byte, 32)
			_, _ = rand.Read(r.Secret)
		}
		return nil
	})
	if err != nil {
		return RoomView{}, unavailable("save waiting room", err)
	}
	m.rooms.put(room)
	if err := m.guardHolds(ctx, event, event); err != nil {
		return RoomView{}, err
	}
	return m.roomView(ctx, room)
}

// guardHolds makes every ticket type of the event need a pass for room (uuid.Nil: none).
func (m *Module) guardHolds(ctx context.Context, event, room uuid.UUID) error {
	tts, err := m.d.Store.TicketTypes(ctx, event)
	if err != nil {
		return unavailable("read ticket types", err)
	}
	for _, t := range tts {
		r := RulesOf(t)
		r.Room = room
		if err := m.d.Holds.Configure(ctx, r); err != nil {
			return unavailable("configure holds", err)
		}
	}
	return nil
}

// rulesOf is RulesOf with the event's waiting room, read from the store.
func (m *Module) rulesOf(ctx context.Context, t TicketType) (HoldRules, error) {
	r := RulesOf(t)
	room, err := m.d.Store.Room(ctx, t.EventID)
	switch {
	case errors.Is(err, ErrRoomNotFound):
	case err != nil:
		return HoldRules{}, unavailable("read waiting room", err)
	case room.Active():
		r.Room = t.EventID
	}
	return r, nil
}

// CloseRoom turns an event's waiting room off: holds no longer need a pass, and the queue is
// forgotten.
func (m *Module) CloseRoom(ctx context.Context, organizer, event uuid.UUID) error {
	if err := m.ownedEvent(ctx, organizer, event); err != nil {
		return err
	}
	room, err := m.d.Store.SaveRoom(ctx, event, func(r *Room, found bool) error {
		if !found || r.Closed {
			return ErrRoomNotFound
		}
		r.Closed = true
		return nil
	})
	if err != nil {
		return unavailable("close waiting room", err)
	}
	m.rooms.put(room)
	if err := m.guardHolds(ctx, event, uuid.Nil); err != nil {
		return err
	}
	if err := m.d.Queue.Drop(ctx, event); err != nil {
		m.d.Log.WarnContext(ctx, "forget a closed room's queue", "event", event, "err", err)
	}
	return nil
}

// RoomFor returns an event's open waiting room with its live figures, for its organizer.
func (m *Module) RoomFor(ctx context.Context, organizer, event uuid.UUID) (RoomView, error) {
	if err := m.ownedEvent(ctx, organizer, event); err != nil {
		return RoomView{}, err
	}
	room, err := m.d.Store.Room(ctx, event)
	if err == nil && !room.Active() {
		err = ErrRoomNotFound
	}
	if err != nil {
		return RoomView{}, unavailable("read waiting room", err)
	}
	return m.roomView(ctx, room)
}

func (m *Module) roomView(ctx context.Context, room Room) (RoomView, error) {
	now := m.d.Clock.Now()
	st, err := m.d.Queue.State(ctx, room.EventID, now)
	if err != nil {
		return RoomView{}, unavailable("read queue", err)
	}
	// Open from the opening time, even before the first tick drew the pre-queue.
	st.Opened = st.Opened || !now.Before(room.OpensAt)
	v := RoomView{Room: room, State: st, DrainIn: -1}
	if rate := rateOf(room, st); rate > 0 && !room.Paused {
		v.DrainIn = durationFor(st.Waiting, rate)
	}
	return v, nil
}

// rateOf is the admission rate (per minute) an estimate can rely on: the measured one, or the
// setting until there is a measurement; 0 when neither tells.
func rateOf(room Room, st RoomState) float64 {
	if st.MeasuredPerMinute > 0 {
		return st.MeasuredPerMinute
	}
	if st.MeasuredPerMinute < 0 && room.RatePerMinute > 0 {
		return float64(room.RatePerMinute)
	}
	return 0
}

// durationFor is how long n admissions take at rate a minute, to the second above.
func durationFor(n int64, rate float64) time.Duration {
	return time.Duration(math.Ceil(float64(n)*60/rate)) * time.Second
}

// ---- customer ----

// openRoom returns an event's open room: from the replica's copy, else from the store (a room
// another replica opened moments ago). ErrRoomNotFound.
func (m *Module) openRoom(ctx context.Context, event uuid.UUID) (Room, RoomState, error) {
	if r, st, ok := m.rooms.get(event); ok {
		return r, st, nil
	}
	v, err, _ := m.loads.Do("room:"+event.String(), func() (any, error) {
		r, err := m.d.Store.Room(ctx, event)
		if err != nil {
			return nil, err
		}
		m.rooms.put(r)
		return r, nil
	})
	if errors.Is(err, ErrRoomNotFound) {
		return Room{}, RoomState{}, ErrRoomNotFound.WithDetail("this event has no waiting room: hold tickets directly")
	}
	if err != nil {
		return Room{}, RoomState{}, unavailable("read waiting room", err)
	}
	r := v.(Room)
	if !r.Active() {
		return Room{}, RoomState{}, ErrRoomNotFound.WithDetail("this event has no waiting room: hold tickets directly")
	}
	_, st, _ := m.rooms.get(event)
	return r, st, nil
}

// JoinQueue gives a customer a place in an event's queue, or the one they have. address is the
// client's address, counted against the per-address cap.
func (m *Module) JoinQueue(ctx context.Context, customer, event uuid.UUID, address string) (QueueView, error) {
	room, st, err := m.openRoom(ctx, event)
	if err != nil {
		return QueueView{}, err
	}
	req := JoinRequest{EventID: event, CustomerID: customer, Draw: mrand.Float64(), OpensAt: room.OpensAt, Now: m.d.Clock.Now()}
	if m.cfg.QueuePerAddress > 0 {
		req.Address, req.MaxPerAddress = address, m.cfg.QueuePerAddress
	}
	e, err := m.d.Queue.Join(ctx, req)
	if err != nil {
		return QueueView{}, unavailable("join queue", err)
	}
	if e.Created {
		m.m.joined.Add(ctx, 1)
	}
	return m.queueView(room, st, e)
}

// QueueEntry returns a customer's place in an event's queue (with their pass once admitted).
func (m *Module) QueueEntry(ctx context.Context, customer, event uuid.UUID) (QueueView, error) {
	room, st, err := m.openRoom(ctx, event)
	if err != nil {
		return QueueView{}, err
	}
	e, err := m.d.Queue.Entry(ctx, event, customer, m.d.Clock.Now())
	if err != nil {
		return QueueView{}, unavailable("read queue entry", err)
	}
	return m.queueView(room, st, e)
}

// LeaveQueue takes a customer out of an event's queue; their pass, if any, ends.
func (m *Module) LeaveQueue(ctx context.Context, customer, event uuid.UUID) error {
	if _, _, err := m.openRoom(ctx, event); err != nil {
		return err
	}
	if err := m.d.Queue.Leave(ctx, event, customer, m.d.Clock.Now()); err != nil {
		return unavailable("leave queue", err)
	}
	return nil
}

func (m *Module) queueView(room Room, st RoomState, e QueueEntry) (QueueView, error) {
	v := QueueView{Entry: e, OpensAt: room.OpensAt, Paused: room.Paused, Wait: -1, MeasuredPerMinute: st.MeasuredPerMinute}
	switch e.Status {
	case EntryWaiting:
		if rate := rateOf(room, st); rate > 0 && !room.Paused {
			v.Wait = durationFor(v.Entry.Ahead()+1, rate)
		}
	case EntryAdmitted:
		pass, err := signPass(room.Secret, passClaims{Customer: e.CustomerID, Event: e.EventID, Place: e.Place,
			Issued: e.PassExpires.Add(-room.PassLifetime), Expires: e.PassExpires})
		if err != nil {
			return QueueView{}, err
		}
		v.Pass, v.Wait = pass, 0
	}
	return v, nil
}

// checkPass verifies the pass a customer presented with a hold and returns the event it admits
// to, or uuid.Nil when there is no pass or its room is no longer open (then the hold needs none
// from that room).
func (m *Module) checkPass(ctx context.Context, customer uuid.UUID, pass string) (uuid.UUID, error) {
	if pass == "" {
		return uuid.Nil, nil
	}
	event, err := passEvent(pass)
	if err != nil {
		return uuid.Nil, err
	}
	room, _, err := m.openRoom(ctx, event)
	if errors.Is(err, ErrRoomNotFound) {
		return uuid.Nil, nil
	}
	if err != nil {
		return uuid.Nil, err
	}
	if err := verifyPass(room.Secret, pass, customer, m.d.Clock); err != nil {
		return uuid.Nil, err
	}
	ended, err := m.d.Queue.PassEnded(ctx, event, customer)
	if err != nil {
		return uuid.Nil, unavailable("read queue pass", err)
	}
	if ended {
		return uuid.Nil, ErrPassExpired.WithDetail("your queue pass ended with your order or when you left the queue")
	}
	return event, nil
}

// endPass ends the pass a customer shopped with, once their order for a ticket type of event is
// sold. Best effort: a pass left running ends at its lifetime.
func (m *Module) endPass(ctx context.Context, ticketType, customer uuid.UUID) {
	if !m.rooms.any() {
		return
	}
	event, err := m.eventOf(ctx, ticketType)
	if err != nil {
		m.d.Log.WarnContext(ctx, "end a queue pass: event of the ticket type", "ticket_type", ticketType, "err", err)
		return
	}
	if _, _, ok := m.rooms.get(event); !ok {
		return
	}
	if err := m.d.Queue.EndPass(ctx, event, customer, m.d.Clock.Now()); err != nil {
		m.d.Log.WarnContext(ctx, "end a queue pass", "event", event, "err", err)
	}
}

// eventOf returns a ticket type's event. A ticket type never moves, so the answer is kept.
func (m *Module) eventOf(ctx context.Context, ticketType uuid.UUID) (uuid.UUID, error) {
	if v, ok := m.ttEvents.Load(ticketType); ok {
		return v.(uuid.UUID), nil
	}
	t, err := m.d.Store.TicketType(ctx, ticketType)
	if err != nil {
		return uuid.Nil, err
	}
	m.ttEvents.Store(ticketType, t.EventID)
	return t.EventID, nil
}

// ---- admission ----

// Admit runs one admission tick for every open room (refreshing the replica's copy of the rooms
// when it is due) and returns the first error. Every replica runs it every QueueTick; the queue
// store makes one decision per tick across them.
func (m *Module) Admit(ctx context.Context) error {
	now := m.d.Clock.Now()
	if m.rooms.stale(time.Now()) {
		open, err := m.d.Store.OpenRooms(ctx)
		if err != nil {
			return fmt.Errorf("read open rooms: %w", err)
		}
		m.rooms.replace(open, time.Now())
	}
	var first error
	for _, r := range m.rooms.list() {
		st, err := m.d.Queue.Admit(ctx, AdmitRequest{
			EventID: r.EventID, RatePerMinute: r.RatePerMinute, MaxShoppers: r.MaxShoppers, PassLifetime: r.PassLifetime,
			Paused: r.Paused, OpensAt: r.OpensAt, Tick: m.cfg.QueueTick, Now: now,
		})
		if err != nil {
			if first == nil {
				first = fmt.Errorf("admit to %s: %w", r.EventID, err)
			}
			continue
		}
		m.rooms.setState(r.EventID, st)
	}
	return first
}

// RunAdmission ticks admission until ctx ends: the runner every inventory process starts.
func (m *Module) RunAdmission(ctx context.Context) error {
	t := time.NewTicker(m.cfg.QueueTick)
	defer t.Stop()
	var failing bool
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		err := m.Admit(ctx)
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			m.d.Log.WarnContext(ctx, "waiting room admission failed; retrying every tick", "err", err)
			failing = true
		case err == nil && failing:
			m.d.Log.InfoContext(ctx, "waiting room admission recovered")
			failing = false
		}
	}
}

// FollowQueue returns a customer's view after prev as the replica's figures show it now: the
// queue store is read only when the entry's status may have changed (drawn, admitted, pass run
// out), so a stream costs nothing per tick but arithmetic.
func (m *Module) FollowQueue(ctx context.Context, customer, event uuid.UUID, prev QueueView) (QueueView, error) {
	room, st, err := m.openRoom(ctx, event)
	if err != nil {
		return QueueView{}, err
	}
	e := prev.Entry
	switch {
	case e.Status == EntryPreQueue && st.Opened,
		e.Status == EntryWaiting && e.Place <= st.Through,
		e.Status == EntryAdmitted && !m.d.Clock.Now().Before(e.PassExpires):
		return m.QueueEntry(ctx, customer, event)
	}
	e.Through = max(e.Through, st.Through)
	return m.queueView(room, st, e)
}

// WatchQueue returns a channel closed when the event's room changes next (its figures after a
// tick, or the room closing); ok false when the room is not open here.
func (m *Module) WatchQueue(event uuid.UUID) (<-chan struct{}, bool) {
	return m.rooms.watch(event)
}
