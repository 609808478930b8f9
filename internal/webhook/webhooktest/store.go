// Package webhooktest holds the webhook Store conformance suite, which every adapter runs.
package webhooktest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/webhook"
)

// NewEndpoint returns an endpoint of organizer subscribed to types (all when none), created at.
func NewEndpoint(organizer uuid.UUID, at time.Time, types ...string) webhook.Endpoint {
	if len(types) == 0 {
		types = webhook.EventTypes()
	}
	return webhook.Endpoint{ID: uuid.New(), OrganizerID: organizer, URL: "https://hooks.example.com/" + uuid.NewString(),
		EventTypes: types, Description: "test", Secret: "whsec_c2VjcmV0", CreatedAt: at}
}

// NewEvent returns an event of organizer with a fresh id.
func NewEvent(organizer uuid.UUID, typ, key string, at time.Time) webhook.Event {
	data, _ := json.Marshal(map[string]string{"order_id": key})
	return webhook.Event{ID: typ + ":" + uuid.NewString(), Type: typ, OrganizerID: organizer, OrderingKey: key, At: at, Data: data}
}

// RunStore runs the Store conformance suite. newStore must return an empty store for each
// subtest: a claim takes every due delivery of the store, so subtests running in parallel on one
// store would take each other's.
func RunStore(t *testing.T, newStore func(t *testing.T) webhook.Store) {
	ctx := context.Background()
	// Databases keep microseconds; times they can hold compare equal after a round trip.
	now := time.Now().UTC().Truncate(time.Microsecond)

	create := func(t *testing.T, s webhook.Store, e webhook.Endpoint) webhook.Endpoint {
		t.Helper()
		if err := s.CreateEndpoint(ctx, e); err != nil {
			t.Fatalf("create endpoint: %v", err)
		}
		return e
	}
	enqueue := func(t *testing.T, s webhook.Store, ev webhook.Event, at time.Time) int {
		t.Helper()
		n, err := s.Enqueue(ctx, ev, at)
		if err != nil {
			t.Fatalf("enqueue %s: %v", ev.ID, err)
		}
		return n
	}
	list := func(t *testing.T, s webhook.Store, endpoint uuid.UUID) []webhook.Delivery {
		t.Helper()
		ds, err := s.Deliveries(ctx, endpoint, nil, 100)
		if err != nil {
			t.Fatalf("deliveries: %v", err)
		}
		return ds
	}
	// claimMine claims and keeps the deliveries of the endpoints given.
	claimMine := func(t *testing.T, s webhook.Store, at time.Time, lease time.Duration, endpoints ...uuid.UUID) []webhook.Due {
		t.Helper()
		ds, err := s.Claim(ctx, webhook.Claim{Now: at, Lease: lease, Limit: 1000})
		if err != nil {
			t.Fatalf("claim: %v", err)
		}
		var mine []webhook.Due
		for _, d := range ds {
			if slices.Contains(endpoints, d.EndpointID) {
				mine = append(mine, d)
			}
		}
		return mine
	}

	t.Run("Endpoints", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		org := uuid.New()
		var made []webhook.Endpoint
		for i := range 3 {
			made = append(made, create(t, s, NewEndpoint(org, now.Add(time.Duration(i)*time.Second), webhook.TypeOrderConfirmed)))
		}
		create(t, s, NewEndpoint(uuid.New(), now)) // another organizer's
		got, err := s.Endpoint(ctx, made[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.URL != made[0].URL || got.Secret != made[0].Secret || !slices.Equal(got.EventTypes, made[0].EventTypes) ||
			got.OrganizerID != org || !got.CreatedAt.Equal(made[0].CreatedAt) || got.Description != "test" || got.Disabled {
			t.Fatalf("endpoint %+v, want %+v", got, made[0])
		}
		page, err := s.Endpoints(ctx, org, nil, 2)
		if err != nil || len(page) != 2 || page[0].ID != made[2].ID || page[1].ID != made[1].ID {
			t.Fatalf("first page %v, %v; want the two newest", page, err)
		}
		rest, err := s.Endpoints(ctx, org, &webhook.Cursor{CreatedAt: page[1].CreatedAt, ID: page[1].ID}, 2)
		if err != nil || len(rest) != 1 || rest[0].ID != made[0].ID {
			t.Fatalf("second page %v, %v; want the oldest", rest, err)
		}
		if err := s.DeleteEndpoint(ctx, made[1].ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Endpoint(ctx, made[1].ID); !errors.Is(err, webhook.ErrEndpointNotFound) {
			t.Fatalf("deleted endpoint: %v, want not found", err)
		}
		if err := s.DeleteEndpoint(ctx, made[1].ID); !errors.Is(err, webhook.ErrEndpointNotFound) {
			t.Fatalf("deleting twice: %v, want not found", err)
		}
		if all, _ := s.Endpoints(ctx, org, nil, 10); len(all) != 2 {
			t.Fatalf("%d endpoints after a delete, want 2", len(all))
		}
	})

	t.Run("UpdateEndpoint", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		org := uuid.New()
		e := create(t, s, NewEndpoint(org, now, webhook.TypeOrderConfirmed))
		url := "https://hooks.example.com/moved"
		got, err := s.UpdateEndpoint(ctx, e.ID, webhook.EndpointPatch{URL: &url})
		if err != nil {
			t.Fatal(err)
		}
		if got.URL != url || !slices.Equal(got.EventTypes, e.EventTypes) || got.Description != e.Description ||
			got.Disabled || got.Secret != e.Secret || !got.CreatedAt.Equal(e.CreatedAt) {
			t.Fatalf("after a URL change %+v; want only the URL changed from %+v", got, e)
		}
		types := []string{webhook.TypeOrderRefunded, webhook.TypeEventCancelled}
		desc, off := "", true
		got, err = s.UpdateEndpoint(ctx, e.ID, webhook.EndpointPatch{EventTypes: types, Description: &desc, Disabled: &off})
		if err != nil {
			t.Fatal(err)
		}
		if got.URL != url || !slices.Equal(got.EventTypes, types) || got.Description != "" || !got.Disabled {
			t.Fatalf("after a change of types, description and disabled: %+v", got)
		}
		if read, _ := s.Endpoint(ctx, e.ID); read.URL != url || !slices.Equal(read.EventTypes, types) || !read.Disabled {
			t.Fatalf("read back %+v, want the changes kept", read)
		}
		if got, err = s.UpdateEndpoint(ctx, e.ID, webhook.EndpointPatch{}); err != nil || got.URL != url || !got.Disabled {
			t.Fatalf("empty patch: %+v, %v; want the endpoint unchanged", got, err)
		}
		if _, err := s.UpdateEndpoint(ctx, uuid.New(), webhook.EndpointPatch{Disabled: &off}); !errors.Is(err, webhook.ErrEndpointNotFound) {
			t.Fatalf("unknown endpoint: %v, want not found", err)
		}
	})

	t.Run("DisabledEndpointWaits", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		org := uuid.New()
		e := create(t, s, NewEndpoint(org, now))
		before := NewEvent(org, webhook.TypeOrderConfirmed, uuid.NewString(), now)
		enqueue(t, s, before, now)
		off, on := true, false
		if _, err := s.UpdateEndpoint(ctx, e.ID, webhook.EndpointPatch{Disabled: &off}); err != nil {
			t.Fatal(err)
		}
		if n := enqueue(t, s, NewEvent(org, webhook.TypeOrderConfirmed, uuid.NewString(), now), now); n != 0 {
			t.Fatalf("a disabled endpoint got %d new deliveries, want none", n)
		}
		if got := claimMine(t, s, now.Add(time.Second), time.Minute, e.ID); len(got) != 0 {
			t.Fatalf("claimed %d deliveries of a disabled endpoint, want none", len(got))
		}
		if _, err := s.UpdateEndpoint(ctx, e.ID, webhook.EndpointPatch{Disabled: &on}); err != nil {
			t.Fatal(err)
		}
		got := claimMine(t, s, now.Add(time.Second), time.Minute, e.ID)
		if len(got) != 1 || got[0].EventID != before.ID {
			t.Fatalf("after enabling, claimed %+v; want the delivery made before it was disabled", got)
		}
	})

	t.Run("RotateSecret", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		org := uuid.New()
		e := create(t, s, NewEndpoint(org, now))
		until := now.Add(time.Hour)
		got, err := s.RotateSecret(ctx, e.ID, "whsec_bmV3", until)
		if err != nil {
			t.Fatal(err)
		}
		if got.Secret != "whsec_bmV3" || got.PreviousSecret != e.Secret || !got.PreviousSecretUntil.Equal(until) {
			t.Fatalf("after a rotation %+v; want the new secret with the old one until %s", got, until)
		}
		enqueue(t, s, NewEvent(org, webhook.TypeOrderConfirmed, uuid.NewString(), now), now)
		due := claimMine(t, s, now, time.Second, e.ID)
		if len(due) != 1 || due[0].Secret != "whsec_bmV3" || due[0].PreviousSecret != e.Secret {
			t.Fatalf("claimed during the overlap %+v; want both secrets", due)
		}
		due = claimMine(t, s, until.Add(time.Second), time.Second, e.ID)
		if len(due) != 1 || due[0].Secret != "whsec_bmV3" || due[0].PreviousSecret != "" {
			t.Fatalf("claimed after the overlap %+v; want the new secret alone", due)
		}
		// A second rotation keeps the secret it replaces, not the first's previous one.
		got, err = s.RotateSecret(ctx, e.ID, "whsec_dGhpcmQ=", until.Add(time.Hour))
		if err != nil || got.Secret != "whsec_dGhpcmQ=" || got.PreviousSecret != "whsec_bmV3" {
			t.Fatalf("second rotation %+v, %v", got, err)
		}
		if read, _ := s.Endpoint(ctx, e.ID); read.Secret != got.Secret || read.PreviousSecret != got.PreviousSecret ||
			!read.PreviousSecretUntil.Equal(got.PreviousSecretUntil) {
			t.Fatalf("read back %+v, want %+v", read, got)
		}
		if _, err := s.RotateSecret(ctx, uuid.New(), "whsec_eA==", until); !errors.Is(err, webhook.ErrEndpointNotFound) {
			t.Fatalf("unknown endpoint: %v, want not found", err)
		}
	})

	t.Run("EnqueueIsIdempotentAndFiltered", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		org := uuid.New()
		all := create(t, s, NewEndpoint(org, now))
		refunds := create(t, s, NewEndpoint(org, now, webhook.TypeOrderRefunded))
		off := NewEndpoint(org, now)
		off.Disabled = true
		create(t, s, off)
		other := create(t, s, NewEndpoint(uuid.New(), now))

		ev := NewEvent(org, webhook.TypeOrderConfirmed, uuid.NewString(), now)
		if n := enqueue(t, s, ev, now); n != 1 {
			t.Fatalf("enqueue created %d deliveries, want 1 (the subscribed, enabled endpoint)", n)
		}
		if n := enqueue(t, s, ev, now.Add(time.Minute)); n != 0 {
			t.Fatalf("enqueue again created %d deliveries, want none", n)
		}
		ds := list(t, s, all.ID)
		if len(ds) != 1 {
			t.Fatalf("%d deliveries, want 1", len(ds))
		}
		d := ds[0]
		body, _ := ev.Body()
		if d.EventID != ev.ID || d.Type != ev.Type || d.OrderingKey != ev.OrderingKey || string(d.Payload) != string(body) ||
			d.Status != webhook.StatusPending || d.Attempts != 0 || !d.NextAttemptAt.Equal(now) || !d.CreatedAt.Equal(now) ||
			!d.LastAttemptAt.IsZero() || len(d.History) != 0 {
			t.Fatalf("delivery %+v", d)
		}
		var payload struct {
			Type, Timestamp string
			Data            map[string]string
		}
		if err := json.Unmarshal(d.Payload, &payload); err != nil || payload.Type != ev.Type || payload.Data["order_id"] != ev.OrderingKey ||
			payload.Timestamp != now.Format(time.RFC3339) {
			t.Fatalf("payload %s: %+v %v", d.Payload, payload, err)
		}
		for _, e := range []webhook.Endpoint{refunds, off, other} {
			if got := list(t, s, e.ID); len(got) != 0 {
				t.Fatalf("endpoint %s got %d deliveries, want none", e.Description, len(got))
			}
		}
		got, err := s.Delivery(ctx, d.ID)
		if err != nil || got.ID != d.ID || got.EndpointID != all.ID {
			t.Fatalf("delivery by id: %+v, %v", got, err)
		}
		if _, err := s.Delivery(ctx, uuid.New()); !errors.Is(err, webhook.ErrDeliveryNotFound) {
			t.Fatalf("unknown delivery: %v", err)
		}
		// A second event reaches both subscribed endpoints.
		if n := enqueue(t, s, NewEvent(org, webhook.TypeOrderRefunded, "", now), now); n != 2 {
			t.Fatalf("refund event created %d deliveries, want 2", n)
		}
	})

	t.Run("AttemptsSucceedRetryAndDie", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		org := uuid.New()
		e := create(t, s, NewEndpoint(org, now))
		past := now.Add(-24 * time.Hour)
		enqueue(t, s, NewEvent(org, webhook.TypeOrderConfirmed, "", past), past)
		enqueue(t, s, NewEvent(org, webhook.TypeOrderFailed, "", past), past)
		due := claimMine(t, s, now, time.Minute, e.ID)
		if len(due) != 2 || due[0].URL != e.URL || due[0].Secret != e.Secret || due[0].Seq >= due[1].Seq {
			t.Fatalf("claimed %+v, want both deliveries, oldest first, with the endpoint's URL and secret", due)
		}
		if again := claimMine(t, s, now, time.Minute, e.ID); len(again) != 0 {
			t.Fatalf("claimed %d deliveries again within the lease", len(again))
		}
		ok, failing := due[0], due[1]
		d, err := s.Record(ctx, ok.ID, webhook.Outcome{Succeeded: true,
			Attempt: webhook.Attempt{At: now, StatusCode: 204, Latency: 12 * time.Millisecond}})
		if err != nil || d.Status != webhook.StatusSucceeded || d.Attempts != 1 || !d.LastAttemptAt.Equal(now) {
			t.Fatalf("after success: %+v, %v", d, err)
		}
		at := now
		for i := range 3 {
			at = at.Add(time.Second)
			next := at.Add(time.Hour)
			if i == 2 {
				next = time.Time{} // no attempt left
			}
			d, err = s.Record(ctx, failing.ID, webhook.Outcome{Next: next,
				Attempt: webhook.Attempt{At: at, StatusCode: 500, Latency: time.Second, Error: fmt.Sprintf("HTTP 500 #%d", i)}})
			if err != nil || d.Attempts != i+1 {
				t.Fatalf("failure %d: %+v, %v", i, d, err)
			}
			if i < 2 && (d.Status != webhook.StatusPending || !d.NextAttemptAt.Equal(next)) {
				t.Fatalf("failure %d: %s due %s, want pending due %s", i, d.Status, d.NextAttemptAt, next)
			}
		}
		if d.Status != webhook.StatusDead {
			t.Fatalf("after the last failure: %s, want dead", d.Status)
		}
		// A late duplicate attempt (a lease that ran out) is recorded but changes nothing.
		if d, err = s.Record(ctx, ok.ID, webhook.Outcome{Attempt: webhook.Attempt{At: at, Error: "late"}, Next: at}); err != nil || d.Status != webhook.StatusSucceeded {
			t.Fatalf("late attempt: %+v, %v", d, err)
		}
		if _, err := s.Record(ctx, uuid.New(), webhook.Outcome{Succeeded: true, Attempt: webhook.Attempt{At: now}}); !errors.Is(err, webhook.ErrDeliveryNotFound) {
			t.Fatalf("record of an unknown delivery: %v", err)
		}
		ds := list(t, s, e.ID)
		if len(ds) != 2 || ds[0].ID != failing.ID || ds[1].ID != ok.ID {
			t.Fatalf("deliveries %+v, want newest first", ds)
		}
		h := ds[0].History
		if len(h) != 3 || h[0].StatusCode != 500 || h[0].Error != "HTTP 500 #0" || h[0].Latency != time.Second || !h[0].At.Equal(now.Add(time.Second)) ||
			h[0].DeliveryID != failing.ID || h[2].Error != "HTTP 500 #2" {
			t.Fatalf("history %+v", h)
		}
		if len(ds[1].History) != 2 || ds[1].History[0].StatusCode != 204 || ds[1].History[0].Latency != 12*time.Millisecond {
			t.Fatalf("history of the success %+v", ds[1].History)
		}
		page, err := s.Deliveries(ctx, e.ID, &webhook.Cursor{Seq: ds[0].Seq}, 10)
		if err != nil || len(page) != 1 || page[0].ID != ok.ID {
			t.Fatalf("page after the newest: %+v, %v", page, err)
		}
		// The dead delivery is resent: pending, due now, a fresh schedule, its history kept.
		later := now.Add(time.Hour)
		r, err := s.Resend(ctx, failing.ID, later)
		if err != nil || r.Status != webhook.StatusPending || r.Attempts != 0 || !r.NextAttemptAt.Equal(later) {
			t.Fatalf("resend: %+v, %v", r, err)
		}
		if due := claimMine(t, s, later, time.Minute, e.ID); len(due) != 1 || due[0].ID != failing.ID {
			t.Fatalf("after resend claimed %+v", due)
		}
		if _, err := s.Resend(ctx, uuid.New(), later); !errors.Is(err, webhook.ErrDeliveryNotFound) {
			t.Fatalf("resend of an unknown delivery: %v", err)
		}
		if got := list(t, s, e.ID)[0]; len(got.History) != 3 {
			t.Fatalf("history after resend: %d attempts, want 3", len(got.History))
		}
		// Deleting the endpoint deletes its deliveries.
		if err := s.DeleteEndpoint(ctx, e.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Delivery(ctx, ok.ID); !errors.Is(err, webhook.ErrDeliveryNotFound) {
			t.Fatalf("delivery of a deleted endpoint: %v", err)
		}
	})

	t.Run("LeaseRunsOut", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		org := uuid.New()
		e := create(t, s, NewEndpoint(org, now))
		past := now.Add(-24 * time.Hour)
		enqueue(t, s, NewEvent(org, webhook.TypeOrderConfirmed, "", past), past)
		// Claimed in the past by a sender that never recorded anything: it comes back once the
		// lease is over.
		if due := claimMine(t, s, past, time.Minute, e.ID); len(due) != 1 {
			t.Fatalf("claimed %d, want 1", len(due))
		}
		if due := claimMine(t, s, past.Add(30*time.Second), time.Minute, e.ID); len(due) != 0 {
			t.Fatal("claimed again within the lease")
		}
		if due := claimMine(t, s, past.Add(2*time.Minute), time.Minute, e.ID); len(due) != 1 {
			t.Fatal("not claimed again after the lease ran out")
		}
	})

	t.Run("InOrderPerKey", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		org := uuid.New()
		e := create(t, s, NewEndpoint(org, now))
		create(t, s, NewEndpoint(org, now)) // another endpoint of the organizer
		past := now.Add(-24 * time.Hour)
		key, other := uuid.NewString(), uuid.NewString()
		first := NewEvent(org, webhook.TypeOrderConfirmed, key, past)
		enqueue(t, s, first, past)
		enqueue(t, s, NewEvent(org, webhook.TypeOrderRefunded, key, past), past)
		enqueue(t, s, NewEvent(org, webhook.TypeOrderConfirmed, other, past), past)
		enqueue(t, s, NewEvent(org, webhook.TypeOrderConfirmed, "", past), past)
		enqueue(t, s, NewEvent(org, webhook.TypeOrderFailed, "", past), past)
		// Each endpoint's deliveries of a key are on their own: the other's first is due.
		fdue, err := s.Claim(ctx, webhook.Claim{Now: now, Lease: time.Hour, Limit: 100, Skip: []uuid.UUID{e.ID}})
		if err != nil || len(fdue) != 4 {
			t.Fatalf("the other endpoint: claimed %d, %v; want 4", len(fdue), err)
		}
		due := claimMine(t, s, now, time.Hour, e.ID)
		byType := func(ds []webhook.Due) map[string]int {
			m := map[string]int{}
			for _, d := range ds {
				m[d.Type+"/"+d.OrderingKey]++
			}
			return m
		}
		got := byType(due)
		if len(due) != 4 || got["order.confirmed/"+key] != 1 || got["order.refunded/"+key] != 0 || got["order.confirmed/"+other] != 1 {
			t.Fatalf("claimed %v: want all but the second event of the key", got)
		}
		// The first of the key fails and waits for its retry: the second still waits.
		var firstAt webhook.Due
		for _, d := range due {
			if d.EventID == first.ID {
				firstAt = d
			}
		}
		if _, err := s.Record(ctx, firstAt.ID, webhook.Outcome{Next: now.Add(time.Second), Attempt: webhook.Attempt{At: now, StatusCode: 500}}); err != nil {
			t.Fatal(err)
		}
		if due := claimMine(t, s, now.Add(2*time.Minute), time.Minute, e.ID); len(due) != 1 || due[0].EventID != first.ID {
			t.Fatalf("claimed %+v, want only the key's first event again", due)
		}
		if _, err := s.Record(ctx, firstAt.ID, webhook.Outcome{Next: time.Time{}, Attempt: webhook.Attempt{At: now, StatusCode: 500}}); err != nil {
			t.Fatal(err)
		}
		// Dead, it no longer holds the second back.
		due = claimMine(t, s, now.Add(3*time.Minute), time.Minute, e.ID)
		if len(due) != 1 || due[0].Type != webhook.TypeOrderRefunded {
			t.Fatalf("claimed %+v, want the key's second event", due)
		}
	})

	t.Run("ClaimLimits", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		org := uuid.New()
		e := create(t, s, NewEndpoint(org, now))
		f := create(t, s, NewEndpoint(org, now))
		// Due in a future of this subtest's own, so no other subtest's claim takes them.
		at := now.Add(1000 * time.Hour)
		for range 5 {
			enqueue(t, s, NewEvent(org, webhook.TypeOrderConfirmed, "", at), at)
		}
		due, err := s.Claim(ctx, webhook.Claim{Now: at, Lease: time.Minute, Limit: 100, PerEndpoint: 2, Skip: []uuid.UUID{f.ID}})
		if err != nil {
			t.Fatal(err)
		}
		var mine []webhook.Due
		for _, d := range due {
			if d.EndpointID == f.ID {
				t.Fatal("claimed a delivery of a skipped endpoint")
			}
			if d.EndpointID == e.ID {
				mine = append(mine, d)
			}
		}
		if len(mine) != 2 {
			t.Fatalf("claimed %d of the endpoint, want 2 (PerEndpoint)", len(mine))
		}
		due, err = s.Claim(ctx, webhook.Claim{Now: at, Lease: time.Minute, Limit: 1, Skip: []uuid.UUID{f.ID}})
		if err != nil || len(due) != 1 {
			t.Fatalf("claim of 1: %d, %v", len(due), err)
		}
		if d := claimMine(t, s, at, time.Minute, f.ID); len(d) != 5 {
			t.Fatalf("the skipped endpoint: %d claimed, want 5", len(d))
		}
	})

	t.Run("ConcurrentClaimsAreExclusive", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		org := uuid.New()
		e := create(t, s, NewEndpoint(org, now))
		at := now.Add(2000 * time.Hour)
		const n = 60
		for range n {
			enqueue(t, s, NewEvent(org, webhook.TypeOrderConfirmed, "", at), at)
		}
		var (
			mu   sync.Mutex
			seen = map[uuid.UUID]int{}
			wg   sync.WaitGroup
			errs = make(chan error, 8)
		)
		for range 8 {
			wg.Go(func() {
				for range 20 {
					due, err := s.Claim(ctx, webhook.Claim{Now: at, Lease: time.Hour, Limit: 3})
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					for _, d := range due {
						if d.EndpointID == e.ID {
							seen[d.ID]++
						}
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("claim: %v", err)
		}
		if len(seen) != n {
			t.Fatalf("%d deliveries claimed, want all %d", len(seen), n)
		}
		for id, c := range seen {
			if c != 1 {
				t.Fatalf("delivery %s claimed %d times", id, c)
			}
		}
	})
}
