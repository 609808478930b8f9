package inventory

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/onsale-dev/onsale/internal/platform/ratelimit"
)

// PassHeader carries a waiting room's pass on POST /v1/holds.
const PassHeader = "Queue-Pass"

// queueHeartbeat is the interval of keep-alive comments on queue streams.
const queueHeartbeat = 15 * time.Second

// queueUpdateEvery is the most often a waiting customer's stream repeats their place when only
// the estimate changed.
const queueUpdateEvery = time.Second

type roomLiveJSON struct {
	PreQueue        int64    `json:"pre_queue"`
	Places          int64    `json:"places"`
	Waiting         int64    `json:"waiting"`
	Admitted        int64    `json:"admitted"`
	Shopping        int64    `json:"shopping"`
	PassesExpired   int64    `json:"passes_expired"`
	Left            int64    `json:"left"`
	MeasuredRate    *float64 `json:"measured_rate_per_minute"`
	DrainInSeconds  *int64   `json:"estimated_drain_seconds"`
	AdmissionCursor int64    `json:"admitted_through"`
}

type roomJSON struct {
	EventID       string       `json:"event_id"`
	Status        string       `json:"status"`
	RatePerMinute int          `json:"admission_rate_per_minute"`
	MaxShoppers   int          `json:"max_shoppers"`
	OpensAt       time.Time    `json:"opens_at"`
	PassLifetime  int64        `json:"pass_lifetime_seconds"`
	Paused        bool         `json:"paused"`
	Live          roomLiveJSON `json:"live"`
	CreatedAt     time.Time    `json:"created_at"`
	UpdatedAt     time.Time    `json:"updated_at"`
}

func optSeconds(d time.Duration) *int64 {
	if d < 0 {
		return nil
	}
	s := int64(d / time.Second)
	return &s
}

func optRate(r float64) *float64 {
	if r < 0 {
		return nil
	}
	r = math.Round(r*10) / 10
	return &r
}

func toRoomJSON(v RoomView) roomJSON {
	r, st := v.Room, v.State
	status := "open"
	switch {
	case r.Paused:
		status = "paused"
	case !st.Opened:
		status = "scheduled"
	}
	return roomJSON{
		EventID: r.EventID.String(), Status: status, RatePerMinute: r.RatePerMinute, MaxShoppers: r.MaxShoppers,
		OpensAt: r.OpensAt, PassLifetime: int64(r.PassLifetime / time.Second), Paused: r.Paused,
		Live: roomLiveJSON{
			PreQueue: st.PreQueue, Places: st.Places, Waiting: st.Waiting, Admitted: st.Admitted, Shopping: st.Shopping,
			PassesExpired: st.Expired, Left: st.Left, MeasuredRate: optRate(st.MeasuredPerMinute),
			DrainInSeconds: optSeconds(v.DrainIn), AdmissionCursor: st.Through,
		},
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
	}
}

type queueJSON struct {
	EventID       string      `json:"event_id"`
	Status        EntryStatus `json:"status"`
	Place         *int64      `json:"place"`
	Ahead         int64       `json:"ahead"`
	WaitSeconds   *int64      `json:"estimated_wait_seconds"`
	Rate          *float64    `json:"admission_rate_per_minute"`
	OpensAt       time.Time   `json:"opens_at"`
	Paused        bool        `json:"paused"`
	Pass          string      `json:"pass,omitempty"`
	PassExpiresAt *time.Time  `json:"pass_expires_at,omitempty"`
}

func toQueueJSON(v QueueView) queueJSON {
	e := v.Entry
	out := queueJSON{EventID: e.EventID.String(), Status: e.Status, Ahead: e.Ahead(), WaitSeconds: optSeconds(v.Wait),
		Rate: optRate(v.MeasuredPerMinute), OpensAt: v.OpensAt, Paused: v.Paused, Pass: v.Pass}
	if e.Place > 0 {
		p := e.Place
		out.Place = &p
	}
	if v.Pass != "" {
		out.PassExpiresAt = &e.PassExpires
	}
	return out
}

// ---- organizer ----

func (h *Handler) roomInput(c echo.Context) (RoomInput, error) {
	m, err := decodePatch(c)
	if err != nil {
		return RoomInput{}, err
	}
	var in RoomInput
	if in.RatePerMinute, err = patchField[int](m, "admission_rate_per_minute"); err != nil {
		return RoomInput{}, err
	}
	if in.MaxShoppers, err = patchField[int](m, "max_shoppers"); err != nil {
		return RoomInput{}, err
	}
	if in.Paused, err = patchField[bool](m, "paused"); err != nil {
		return RoomInput{}, err
	}
	secs, err := patchField[int64](m, "pass_lifetime_seconds")
	if err != nil {
		return RoomInput{}, err
	}
	if secs != nil {
		d := time.Duration(*secs) * time.Second
		in.PassLifetime = &d
	}
	if raw, ok := m["opens_at"]; ok {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return RoomInput{}, invalid("opens_at", "must be a date-time string")
		}
		t, err := parseTime("opens_at", s)
		if err != nil {
			return RoomInput{}, err
		}
		in.OpensAt = &t
	}
	return in, nil
}

func (h *Handler) setRoom(replace bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		event, err := uuidParam(c, "event_id")
		if err != nil {
			return err
		}
		in, err := h.roomInput(c)
		if err != nil {
			return err
		}
		v, err := h.m.SetRoom(c.Request().Context(), principal(c).UserID, event, in, replace)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, toRoomJSON(v))
	}
}

func (h *Handler) getRoom(c echo.Context) error {
	event, err := uuidParam(c, "event_id")
	if err != nil {
		return err
	}
	v, err := h.m.RoomFor(c.Request().Context(), principal(c).UserID, event)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, toRoomJSON(v))
}

func (h *Handler) deleteRoom(c echo.Context) error {
	event, err := uuidParam(c, "event_id")
	if err != nil {
		return err
	}
	if err := h.m.CloseRoom(c.Request().Context(), principal(c).UserID, event); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// ---- customer ----

func (h *Handler) joinQueue(c echo.Context) error {
	event, err := uuidParam(c, "event_id")
	if err != nil {
		return err
	}
	v, err := h.m.JoinQueue(c.Request().Context(), principal(c).UserID, event, ratelimit.ClientKey(c.RealIP()))
	if err != nil {
		return err
	}
	status := http.StatusOK
	if v.Entry.Created {
		status = http.StatusCreated
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(status, toQueueJSON(v))
}

func (h *Handler) getQueueEntry(c echo.Context) error {
	event, err := uuidParam(c, "event_id")
	if err != nil {
		return err
	}
	v, err := h.m.QueueEntry(c.Request().Context(), principal(c).UserID, event)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, toQueueJSON(v))
}

func (h *Handler) leaveQueue(c echo.Context) error {
	event, err := uuidParam(c, "event_id")
	if err != nil {
		return err
	}
	if err := h.m.LeaveQueue(c.Request().Context(), principal(c).UserID, event); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// queueEvents streams a customer's place as Server-Sent Events: at once, then whenever it moves
// (at most every second), and a last event with the pass when admitted. The replica's admission
// tick wakes every stream of the room at once; a stream reads the queue store only when its
// status may have changed.
func (h *Handler) queueEvents(c echo.Context) error {
	event, err := uuidParam(c, "event_id")
	if err != nil {
		return err
	}
	p := principal(c)
	ctx := c.Request().Context()
	v, err := h.m.QueueEntry(ctx, p.UserID, event)
	if err != nil {
		return err
	}
	w := c.Response()
	hdr := w.Header()
	hdr.Set(echo.HeaderContentType, "text/event-stream")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Accel-Buffering", "no") // nginx: pass events through as they come
	w.WriteHeader(http.StatusOK)

	var last queueJSON
	var sentAt time.Time
	send := func(v QueueView, force bool) (bool, error) {
		out := toQueueJSON(v)
		if !force && out.Status == last.Status && equalPlace(out, last) && time.Since(sentAt) < queueUpdateEvery {
			return false, nil
		}
		data, err := json.Marshal(out)
		if err != nil {
			return false, err
		}
		if _, err := fmt.Fprintf(w, "event: position\ndata: %s\n\n", data); err != nil {
			return false, err
		}
		w.Flush()
		last, sentAt = out, time.Now()
		return true, nil
	}
	final := func(s EntryStatus) bool { return s != EntryPreQueue && s != EntryWaiting }
	if _, err := send(v, true); err != nil || final(v.Entry.Status) {
		return nil
	}
	beat := time.NewTicker(queueHeartbeat)
	defer beat.Stop()
	expiry := time.NewTimer(time.Until(p.ExpiresAt))
	defer expiry.Stop()
	for {
		changed, ok := h.m.WatchQueue(event)
		if !ok {
			changed = nil // not known here yet (opened on another replica): the heartbeat retries
		}
		select {
		case <-changed:
			next, err := h.m.FollowQueue(ctx, p.UserID, event, v)
			if errors.Is(err, ErrRoomNotFound) {
				// The organizer closed the room: holds need no pass any more.
				_, _ = fmt.Fprint(w, "event: closed\ndata: {\"reason\":\"waiting-room-closed\"}\n\n")
				w.Flush()
				return nil
			}
			if err != nil {
				_, _ = fmt.Fprint(w, "event: reconnect\ndata: {\"reason\":\"queue-unavailable\"}\n\n")
				w.Flush()
				return nil
			}
			v = next
			if _, err := send(v, final(v.Entry.Status)); err != nil || final(v.Entry.Status) {
				return nil
			}
		case <-beat.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return nil
			}
			w.Flush()
		case <-expiry.C:
			_, _ = fmt.Fprint(w, "event: reconnect\ndata: {\"reason\":\"token-expired\"}\n\n")
			w.Flush()
			return nil
		case <-h.streams().Done():
			_, _ = fmt.Fprint(w, "retry: 1000\n\n")
			w.Flush()
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

// equalPlace tells whether two views show the same place and people ahead.
func equalPlace(a, b queueJSON) bool {
	return a.Ahead == b.Ahead && (a.Place == nil) == (b.Place == nil) && (a.Place == nil || *a.Place == *b.Place)
}
