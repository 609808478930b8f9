// Package queuetest is the conformance suite of inventory.QueueStore: every adapter (memory,
// Redis) runs it, so a waiting room behaves the same in embedded mode and across replicas.
package queuetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/inventory"
)

// opening is when the rooms of the suite open; every case runs its own clock from there.
var opening = time.Date(2027, 3, 1, 10, 0, 0, 0, time.UTC)

const tick = 100 * time.Millisecond

type fixture struct {
	t     *testing.T
	s     inventory.QueueStore
	event uuid.UUID
	now   time.Time
	room  inventory.AdmitRequest
}

func newFixture(t *testing.T, newStore func(t *testing.T) inventory.QueueStore) *fixture {
	event := uuid.New()
	return &fixture{t: t, s: newStore(t), event: event, now: opening,
		room: inventory.AdmitRequest{EventID: event, RatePerMinute: 600, PassLifetime: 10 * time.Minute, OpensAt: opening, Tick: tick}}
}

func (f *fixture) join(c uuid.UUID) inventory.QueueEntry {
	f.t.Helper()
	e, err := f.s.Join(context.Background(), inventory.JoinRequest{EventID: f.event, CustomerID: c, Draw: rand.Float64(),
		OpensAt: f.room.OpensAt, Now: f.now})
	if err != nil {
		f.t.Fatalf("join %s: %v", c, err)
	}
	return e
}

func (f *fixture) entry(c uuid.UUID) inventory.QueueEntry {
	f.t.Helper()
	e, err := f.s.Entry(context.Background(), f.event, c, f.now)
	if err != nil {
		f.t.Fatalf("entry of %s: %v", c, err)
	}
	return e
}

// admit runs one tick at the fixture's time.
func (f *fixture) admit() inventory.RoomState {
	f.t.Helper()
	req := f.room
	req.Now = f.now
	st, err := f.s.Admit(context.Background(), req)
	if err != nil {
		f.t.Fatalf("admit: %v", err)
	}
	return st
}

// run advances the clock tick by tick for d, admitting at each tick, and returns the last state.
func (f *fixture) run(d time.Duration) inventory.RoomState {
	f.t.Helper()
	var st inventory.RoomState
	for end := f.now.Add(d); f.now.Before(end); {
		f.now = f.now.Add(tick)
		st = f.admit()
	}
	return st
}

func (f *fixture) customers(n int) []uuid.UUID {
	out := make([]uuid.UUID, n)
	for i := range out {
		out[i] = uuid.New()
	}
	return out
}

func (f *fixture) wantStatus(c uuid.UUID, want inventory.EntryStatus) inventory.QueueEntry {
	f.t.Helper()
	e := f.entry(c)
	if e.Status != want {
		f.t.Fatalf("customer at place %d is %s, want %s (%+v)", e.Place, e.Status, want, e)
	}
	return e
}

// Run runs the suite. newStore returns a store for one case; it may share state with other
// calls, as every case uses an event of its own.
func Run(t *testing.T, newStore func(t *testing.T) inventory.QueueStore) {
	t.Run("PlacesInOrderOfArrival", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, newStore)
		f.room.Paused = true
		cs := f.customers(10)
		for i, c := range cs {
			e := f.join(c)
			if e.Place != int64(i+1) || e.Status != inventory.EntryWaiting || !e.Created || e.EventID != f.event || e.CustomerID != c {
				t.Fatalf("arrival %d: %+v", i+1, e)
			}
		}
		// Asking again, or reading, gives the same place.
		for i, c := range cs {
			if e := f.join(c); e.Place != int64(i+1) || e.Created {
				t.Fatalf("arrival %d asking again: %+v", i+1, e)
			}
			if e := f.entry(c); e.Place != int64(i+1) || e.Ahead() != int64(i) {
				t.Fatalf("arrival %d read: %+v, ahead %d", i+1, e, e.Ahead())
			}
		}
		if _, err := f.s.Entry(context.Background(), f.event, uuid.New(), f.now); !errors.Is(err, inventory.ErrNotInQueue) {
			t.Fatalf("entry of a stranger: %v", err)
		}
		st := f.admit()
		if !st.Opened || st.Places != 10 || st.Waiting != 10 || st.Through != 0 || st.Admitted != 0 {
			t.Fatalf("paused room: %+v", st)
		}
	})

	t.Run("ConcurrentArrivalsGetDistinctPlaces", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, newStore)
		const n = 400
		cs := f.customers(n)
		places := make([]int64, n)
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i, c := range cs {
			wg.Go(func() {
				for range 2 { // each asks twice, as an impatient client would
					e, err := f.s.Join(context.Background(), inventory.JoinRequest{EventID: f.event, CustomerID: c, OpensAt: opening, Now: opening})
					if err != nil {
						errs <- err
						return
					}
					if places[i] != 0 && places[i] != e.Place {
						errs <- fmt.Errorf("customer %d got place %d, then %d", i, places[i], e.Place)
					}
					places[i] = e.Place
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		slices.Sort(places)
		for i, p := range places {
			if p != int64(i+1) {
				t.Fatalf("places are not 1..%d: %v", n, places)
			}
		}
	})

	t.Run("PreQueueIsDrawnAtTheOpening", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, newStore)
		f.now = opening.Add(-time.Minute)
		const n = 50
		cs := f.customers(n)
		draws := map[uuid.UUID]float64{}
		for i, c := range cs {
			// Draws in reverse arrival order: the draw, not the arrival, decides.
			d := 1 - float64(i+1)/float64(n+1)
			draws[c] = d
			e, err := f.s.Join(context.Background(), inventory.JoinRequest{EventID: f.event, CustomerID: c, Draw: d, OpensAt: opening, Now: f.now})
			if err != nil || e.Status != inventory.EntryPreQueue || e.Place != 0 || !e.Created {
				t.Fatalf("pre-queue arrival %d: %+v, %v", i, e, err)
			}
			f.now = f.now.Add(time.Second / 2)
		}
		if e := f.join(cs[0]); e.Status != inventory.EntryPreQueue || e.Created {
			t.Fatalf("asking again in the pre-queue: %+v", e)
		}
		st := f.admit() // before the opening: nothing happens
		if st.Opened || st.PreQueue != n || st.Through != 0 {
			t.Fatalf("before the opening: %+v", st)
		}
		// One leaves before the draw: takes no place.
		if err := f.s.Leave(context.Background(), f.event, cs[10], f.now); err != nil {
			t.Fatal(err)
		}
		if _, err := f.s.Entry(context.Background(), f.event, cs[10], f.now); !errors.Is(err, inventory.ErrNotInQueue) {
			t.Fatalf("left the pre-queue, entry: %v", err)
		}
		f.now = opening
		late := uuid.New()
		if e := f.join(late); e.Place != n || e.Status != inventory.EntryWaiting {
			t.Fatalf("first arrival after the opening: %+v, want place %d", e, n)
		}
		got := map[int64]uuid.UUID{}
		for i, c := range cs {
			if i == 10 {
				continue
			}
			e := f.entry(c)
			if e.Place < 1 || e.Place > n-1 || got[e.Place] != uuid.Nil {
				t.Fatalf("pre-queue arrival %d after the draw: %+v", i, e)
			}
			got[e.Place] = c
		}
		for p := int64(2); p < n; p++ {
			if draws[got[p-1]] >= draws[got[p]] {
				t.Fatalf("place %d drew %v, place %d drew %v: not in draw order", p-1, draws[got[p-1]], p, draws[got[p]])
			}
		}
		// The last arrival of the pre-queue drew the lowest number: first in line.
		if got[1] != cs[n-1] {
			t.Fatalf("place 1 is not the lowest draw")
		}
		// Joining before the opening once the draw happened still goes to the back.
		f.now = opening.Add(-time.Second)
		if e := f.join(uuid.New()); e.Place != n+1 {
			t.Fatalf("a pre-queue join after the draw (a replica's clock behind): %+v", e)
		}
	})

	t.Run("AdmissionRate", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, newStore)
		cs := f.customers(300)
		for _, c := range cs {
			f.join(c)
		}
		st := f.run(20 * time.Second)
		// 600 a minute for 20 s, and the first one at the opening.
		if st.Admitted < 199 || st.Admitted > 202 || st.Through != st.Admitted || st.Waiting != 300-st.Admitted || st.Shopping != st.Admitted {
			t.Fatalf("after 20 s at 600/min: %+v", st)
		}
		if st.MeasuredPerMinute < 570 || st.MeasuredPerMinute > 630 {
			t.Fatalf("measured rate %.1f/min, want about 600", st.MeasuredPerMinute)
		}
		// Admitted in the order of places.
		for i, c := range cs {
			e := f.entry(c)
			want := inventory.EntryWaiting
			if int64(i) < st.Through {
				want = inventory.EntryAdmitted
				if !e.PassExpires.After(f.now) || e.PassExpires.After(f.now.Add(f.room.PassLifetime)) {
					t.Fatalf("place %d: pass expires %s, now %s", i+1, e.PassExpires, f.now)
				}
			}
			if e.Status != want {
				t.Fatalf("place %d of %d admitted: %s", i+1, st.Through, e.Status)
			}
		}
		// A rate change applies from the next tick.
		f.room.RatePerMinute = 6000
		before := st.Admitted
		st = f.run(time.Second)
		if got := st.Admitted - before; got < 95 || got > 110 {
			t.Fatalf("admitted %d in the second at 6000/min", got)
		}
	})

	t.Run("OneDecisionPerTickWhateverTheReplicas", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, newStore)
		for _, c := range f.customers(200) {
			f.join(c)
		}
		var st inventory.RoomState
		for range 100 { // 10 s, three replicas each asking at every tick, at slightly different times
			f.now = f.now.Add(tick)
			for r := range 3 {
				req := f.room
				req.Now = f.now.Add(time.Duration(r) * 7 * time.Millisecond)
				var err error
				if st, err = f.s.Admit(context.Background(), req); err != nil {
					t.Fatal(err)
				}
			}
		}
		if st.Admitted < 99 || st.Admitted > 103 {
			t.Fatalf("three replicas for 10 s at 600/min admitted %d, want about 101", st.Admitted)
		}
	})

	t.Run("LateTickDecidesNothing", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, newStore)
		cs := f.customers(7)
		for _, c := range cs[:5] {
			f.join(c)
		}
		f.run(time.Second) // all five admitted; the line is empty and tokens build up
		f.now = f.now.Add(tick)
		f.join(cs[5])
		if st := f.admit(); st.Admitted != 6 {
			t.Fatalf("admitted %d, want 6", st.Admitted)
		}
		// A replica whose call waited arrives with an earlier clock reading, in the tick before:
		// it must decide nothing, or the next place would be admitted before this one.
		f.join(cs[6])
		late := f.room
		late.Now = f.now.Add(-5 * time.Millisecond)
		st, err := f.s.Admit(context.Background(), late)
		if err != nil {
			t.Fatal(err)
		}
		if st.Admitted != 6 {
			t.Fatalf("a tick earlier than the last one admitted %d more", st.Admitted-6)
		}
		f.run(tick)
		var last time.Time
		for i, c := range cs {
			e := f.wantStatus(c, inventory.EntryAdmitted)
			if e.PassExpires.Before(last) {
				t.Fatalf("place %d admitted at %s, before place %d at %s", i+1, e.PassExpires, i, last)
			}
			last = e.PassExpires
		}
	})

	t.Run("MaxShoppers", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, newStore)
		f.room.RatePerMinute, f.room.MaxShoppers, f.room.PassLifetime = 0, 5, time.Minute
		cs := f.customers(20)
		for _, c := range cs {
			f.join(c)
		}
		st := f.run(time.Second)
		if st.Admitted != 5 || st.Shopping != 5 || st.Waiting != 15 {
			t.Fatalf("cap of 5: %+v", st)
		}
		// An order completes: the pass ends, a place frees up.
		if err := f.s.EndPass(context.Background(), f.event, cs[0], f.now); err != nil {
			t.Fatal(err)
		}
		f.wantStatus(cs[0], inventory.EntryDone)
		if ended, err := f.s.PassEnded(context.Background(), f.event, cs[0]); err != nil || !ended {
			t.Fatalf("pass ended after the order: %v, %v", ended, err)
		}
		if ended, err := f.s.PassEnded(context.Background(), f.event, cs[1]); err != nil || ended {
			t.Fatalf("a live pass reads as ended: %v, %v", ended, err)
		}
		st = f.run(time.Second)
		if st.Admitted != 6 || st.Shopping != 5 {
			t.Fatalf("after one order: %+v", st)
		}
		f.wantStatus(cs[5], inventory.EntryAdmitted)
		f.wantStatus(cs[6], inventory.EntryWaiting)
		// Passes run out: the next five come in.
		st = f.run(time.Minute)
		if st.Expired < 5 || st.Admitted < 11 || st.Shopping > 5 {
			t.Fatalf("after the passes' lifetime: %+v", st)
		}
		f.wantStatus(cs[1], inventory.EntryExpired)
		// The one who bought cannot join again; one whose pass ran out goes to the back.
		if e := f.join(cs[0]); e.Status != inventory.EntryDone || e.Created {
			t.Fatalf("joining again after buying: %+v", e)
		}
		if e := f.join(cs[1]); e.Status != inventory.EntryWaiting || e.Place != 21 || !e.Created {
			t.Fatalf("joining again after the pass ran out: %+v", e)
		}
		// Ending a pass that is not live changes nothing.
		if err := f.s.EndPass(context.Background(), f.event, cs[19], f.now); err != nil {
			t.Fatal(err)
		}
		f.wantStatus(cs[19], inventory.EntryWaiting)
	})

	t.Run("PauseAndResume", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, newStore)
		for _, c := range f.customers(100) {
			f.join(c)
		}
		st := f.run(time.Second)
		admitted := st.Admitted
		f.room.Paused = true
		if st = f.run(5 * time.Second); st.Admitted != admitted {
			t.Fatalf("paused, admitted went from %d to %d", admitted, st.Admitted)
		}
		f.room.Paused = false
		// No saved-up burst after a pause: about one tick's worth at the next tick.
		if st = f.run(tick); st.Admitted-admitted > 2 {
			t.Fatalf("resumed: %d admitted at once", st.Admitted-admitted)
		}
	})

	t.Run("LeavingSkipsThePlace", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, newStore)
		f.room.RatePerMinute = 60 // one a second
		cs := f.customers(6)
		for _, c := range cs {
			f.join(c)
		}
		if err := f.s.Leave(context.Background(), f.event, cs[1], f.now); err != nil {
			t.Fatal(err)
		}
		f.wantStatus(cs[1], inventory.EntryLeft)
		if err := f.s.Leave(context.Background(), f.event, uuid.New(), f.now); !errors.Is(err, inventory.ErrNotInQueue) {
			t.Fatalf("a stranger leaving: %v", err)
		}
		st := f.admit()
		if st.Left != 1 || st.Waiting != 4 || st.Admitted != 1 {
			t.Fatalf("after a leave and the first admission: %+v", st)
		}
		st = f.run(time.Second) // the next token skips the one who left
		f.wantStatus(cs[2], inventory.EntryAdmitted)
		if st.Admitted != 2 || st.Waiting != 3 {
			t.Fatalf("after skipping: %+v", st)
		}
		// The admitted one leaves: the pass ends at once.
		if err := f.s.Leave(context.Background(), f.event, cs[2], f.now); err != nil {
			t.Fatal(err)
		}
		if ended, err := f.s.PassEnded(context.Background(), f.event, cs[2]); err != nil || !ended {
			t.Fatalf("pass after leaving: %v, %v", ended, err)
		}
		// Coming back goes to the back of the line, with a pass again only when admitted.
		e := f.join(cs[2])
		if e.Place != 7 || e.Status != inventory.EntryWaiting {
			t.Fatalf("rejoining: %+v", e)
		}
		if ended, err := f.s.PassEnded(context.Background(), f.event, cs[2]); err != nil || ended {
			t.Fatalf("pass of a rejoined customer still reads ended: %v, %v", ended, err)
		}
		st = f.run(10 * time.Second)
		if st.Waiting != 0 || st.Through != 7 || st.Admitted != 6 {
			t.Fatalf("after everyone: %+v", st)
		}
		f.wantStatus(cs[2], inventory.EntryAdmitted)
	})

	t.Run("AddressCap", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, newStore)
		join := func(c uuid.UUID, addr string) error {
			_, err := f.s.Join(context.Background(), inventory.JoinRequest{EventID: f.event, CustomerID: c, Address: addr,
				MaxPerAddress: 3, OpensAt: opening, Now: f.now})
			return err
		}
		cs := f.customers(4)
		for _, c := range cs[:3] {
			if err := join(c, "192.0.2.1"); err != nil {
				t.Fatal(err)
			}
		}
		if err := join(cs[0], "192.0.2.1"); err != nil {
			t.Fatalf("asking again from a full address: %v", err)
		}
		if err := join(cs[3], "192.0.2.1"); !errors.Is(err, inventory.ErrAddressPlaces) {
			t.Fatalf("a fourth place from one address: %v", err)
		}
		if _, err := f.s.Entry(context.Background(), f.event, cs[3], f.now); !errors.Is(err, inventory.ErrNotInQueue) {
			t.Fatalf("a refused arrival has an entry: %v", err)
		}
		if err := join(cs[3], "192.0.2.2"); err != nil {
			t.Fatalf("from another address: %v", err)
		}
	})

	t.Run("Drop", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, newStore)
		c := uuid.New()
		f.join(c)
		f.admit()
		if err := f.s.Drop(context.Background(), f.event); err != nil {
			t.Fatal(err)
		}
		if _, err := f.s.Entry(context.Background(), f.event, c, f.now); !errors.Is(err, inventory.ErrNotInQueue) {
			t.Fatalf("entry after the room was dropped: %v", err)
		}
		if st, err := f.s.State(context.Background(), f.event, f.now); err != nil || st.Places != 0 || st.Admitted != 0 {
			t.Fatalf("state after the room was dropped: %+v, %v", st, err)
		}
	})
}
