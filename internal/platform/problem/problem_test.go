package problem

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

var errSoldOut = New(Conflict, "sold-out", "Sold out")

func TestIsMatchesSentinelAndDetailedCopies(t *testing.T) {
	t.Parallel()
	detailed := errSoldOut.WithDetail("only %d left", 2).WithRetryAfter(time.Second).WithExtra("available", 2)
	wrapped := fmt.Errorf("hold: %w", detailed)
	for name, err := range map[string]error{"sentinel": errSoldOut, "detailed": detailed, "wrapped": wrapped} {
		if !errors.Is(err, errSoldOut) {
			t.Errorf("%s: errors.Is(err, errSoldOut) = false", name)
		}
		if errors.Is(err, ErrNotFound) {
			t.Errorf("%s: matches ErrNotFound", name)
		}
	}
	// Same kind, other code: no match.
	if errors.Is(ErrMalformedJSON, ErrBadRequest) || errors.Is(ErrOverloaded, ErrUnavailable) {
		t.Error("errors of one kind but different codes match")
	}
	// Same code, other kind: no match.
	if errors.Is(New(NotFound, "sold-out", "x"), errSoldOut) {
		t.Error("errors of one code but different kinds match")
	}
	if errors.Is(errors.New("sold-out"), errSoldOut) {
		t.Error("a plain error matches")
	}
	if got := As(wrapped); got != detailed {
		t.Errorf("As(wrapped) = %v, want the detailed copy", got)
	}
	if As(errors.New("x")) != nil {
		t.Error("As(plain error) != nil")
	}
	if KindOf(wrapped) != Conflict || KindOf(errors.New("x")) != Internal {
		t.Error("KindOf wrong")
	}
}

func TestWithNeverMutatesTheSentinel(t *testing.T) {
	t.Parallel()
	sentinel := New(Unprocessable, "too-many", "Too many tickets")
	sentinel.Extra = map[string]any{"max": 6}
	sentinel.Fields = []FieldError{{Field: "quantity", Message: "too big"}}
	before := *sentinel
	beforeExtra := map[string]any{"max": 6}

	cause := errors.New("boom")
	a := sentinel.WithDetail("asked for %d", 9)
	b := sentinel.WithRetryAfter(3 * time.Second)
	c := sentinel.WithFields(FieldError{Field: "x", Message: "y"})
	d := sentinel.WithExtra("asked", 9)
	e := sentinel.Wrap(cause)
	d.WithExtra("more", 1) // a copy of a copy leaves the copy alone too
	c.Fields[0].Message = "changed"

	if sentinel.Detail != before.Detail || sentinel.RetryAfter != before.RetryAfter || sentinel.Err != nil {
		t.Fatalf("sentinel mutated: %+v", sentinel)
	}
	if !reflect.DeepEqual(sentinel.Extra, beforeExtra) {
		t.Fatalf("sentinel Extra mutated: %v", sentinel.Extra)
	}
	if !reflect.DeepEqual(sentinel.Fields, []FieldError{{Field: "quantity", Message: "too big"}}) {
		t.Fatalf("sentinel Fields mutated: %v", sentinel.Fields)
	}
	if !reflect.DeepEqual(d.Extra, map[string]any{"max": 6, "asked": 9}) {
		t.Fatalf("copy's Extra = %v", d.Extra)
	}
	if a.Detail != "asked for 9" || b.RetryAfter != 3*time.Second || e.Err != cause || !errors.Is(e, cause) {
		t.Fatal("copies lack their changes")
	}
	for _, x := range []*Error{a, b, c, d, e} {
		if x == sentinel || !errors.Is(x, sentinel) {
			t.Fatalf("copy %v is the sentinel or does not match it", x)
		}
	}
}

func TestErrorString(t *testing.T) {
	t.Parallel()
	if got := errSoldOut.Error(); got != "Sold out" {
		t.Errorf("Error() = %q", got)
	}
	if got := errSoldOut.WithDetail("none left").Wrap(errors.New("script")).Error(); got != "none left: script" {
		t.Errorf("Error() = %q", got)
	}
	if got := errSoldOut.Type(); got != "https://onsale.dev/problems/sold-out" {
		t.Errorf("Type() = %q", got)
	}
}

func TestKindStatus(t *testing.T) {
	t.Parallel()
	cases := map[Kind]int{
		Internal: 500, BadRequest: 400, Unauthorized: 401, Forbidden: 403, NotFound: 404, Conflict: 409,
		Gone: 410, PayloadTooLarge: 413, UnsupportedMedia: 415, Unprocessable: 422, TooManyRequests: 429,
		Unavailable: 503, MethodNotAllowed: 405, PreconditionFailed: 412, Kind(999): 500,
	}
	for k, want := range cases {
		if got := k.Status(); got != want {
			t.Errorf("Kind(%d).Status() = %d, want %d", k, got, want)
		}
	}
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	return m
}

func TestDocumentJSON(t *testing.T) {
	t.Parallel()
	e := errSoldOut.WithDetail("only 2 left").
		WithExtra("available", 2).
		WithExtra("status", 999).        // a standard member: must not be overridden
		WithExtra("type", "evil").       // likewise
		WithExtra("instance", "/other"). // likewise, even when the standard member is empty
		WithExtra("errors", "nope")
	d := NewDocument(e, "/v1/holds", "req-1")
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, b)
	want := map[string]any{
		"type": "https://onsale.dev/problems/sold-out", "title": "Sold out", "status": float64(409),
		"detail": "only 2 left", "instance": "/v1/holds", "request_id": "req-1", "available": float64(2),
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("document:\n got %v\nwant %v", m, want)
	}

	// An extension named like an empty standard member does not take its place either.
	d = NewDocument(errSoldOut.WithExtra("detail", "sneaky").WithExtra("request_id", "forged"), "", "")
	b, _ = json.Marshal(d)
	m = decode(t, b)
	if _, ok := m["detail"]; ok {
		t.Errorf("extension filled the empty detail member: %s", b)
	}
	if _, ok := m["request_id"]; ok {
		t.Errorf("extension filled the empty request_id member: %s", b)
	}

	// Without extensions the plain encoding is used, empty members omitted.
	b, _ = json.Marshal(NewDocument(ErrNotFound, "", ""))
	if got := string(b); got != `{"type":"https://onsale.dev/problems/not-found","title":"Not found","status":404}` {
		t.Errorf("plain document = %s", got)
	}

	// Field errors.
	b, _ = json.Marshal(NewDocument(ErrValidation.WithFields(FieldError{Field: "quantity", Message: "must be at least 1"}), "", ""))
	m = decode(t, b)
	if !reflect.DeepEqual(m["errors"], []any{map[string]any{"field": "quantity", "message": "must be at least 1"}}) {
		t.Errorf("errors member = %v", m["errors"])
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	t.Run("problem keeps identity", func(t *testing.T) {
		t.Parallel()
		e := errSoldOut.WithDetail("x")
		if got := Resolve(fmt.Errorf("ctx: %w", e)); got != e {
			t.Fatalf("Resolve = %v, want the same *Error", got)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), -time.Second)
		defer cancel()
		<-ctx.Done()
		cause := fmt.Errorf("query: %w", ctx.Err())
		got := Resolve(cause)
		if !errors.Is(got, ErrTimeout) || got.Kind.Status() != 503 || got.RetryAfter <= 0 || !errors.Is(got, context.DeadlineExceeded) {
			t.Fatalf("Resolve(deadline) = %+v", got)
		}
		rec := httptest.NewRecorder()
		if err := Write(rec, got, "/v1/x", "rid"); err != nil {
			t.Fatal(err)
		}
		if rec.Code != 503 || rec.Header().Get("Retry-After") != "1" {
			t.Fatalf("status %d, Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
		}
		if m := decode(t, rec.Body.Bytes()); m["type"] != ErrTimeout.Type() {
			t.Fatalf("type = %v", m["type"])
		}
	})
	t.Run("unknown error", func(t *testing.T) {
		t.Parallel()
		cause := errors.New("pq: password authentication failed for user onsale")
		got := Resolve(cause)
		if !errors.Is(got, ErrInternal) || got.Kind.Status() != 500 || !errors.Is(got, cause) {
			t.Fatalf("Resolve(unknown) = %+v", got)
		}
	})
	t.Run("ErrInternal sentinel untouched", func(t *testing.T) {
		t.Parallel()
		Resolve(errors.New("x"))
		if ErrInternal.Err != nil || ErrTimeout.Err != nil || ErrTimeout.RetryAfter != 0 {
			t.Fatal("Resolve mutated a sentinel")
		}
	})
}

func TestInternalDocumentShowsNothing(t *testing.T) {
	t.Parallel()
	secret := "dial tcp 10.1.2.3:5432: password=hunter2"
	for name, e := range map[string]*Error{
		"resolved":     Resolve(errors.New(secret)),
		"detailed":     ErrInternal.WithDetail("%s", secret).WithExtra("dsn", secret).WithFields(FieldError{Field: "f", Message: secret}).Wrap(errors.New(secret)),
		"custom code":  New(Internal, "db-broke", "DB broke: "+secret).WithDetail("%s", secret),
		"zero value":   {Err: errors.New(secret), Detail: secret},
		"wrapped 500s": Resolve(fmt.Errorf("outer: %w", ErrInternal.WithDetail("%s", secret))),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			if err := Write(rec, e, "/v1/orders", "rid-1"); err != nil {
				t.Fatal(err)
			}
			body := rec.Body.String()
			if rec.Code != 500 {
				t.Fatalf("status = %d", rec.Code)
			}
			if strings.Contains(body, "hunter2") || strings.Contains(body, "10.1.2.3") {
				t.Fatalf("500 document shows internals: %s", body)
			}
			m := decode(t, rec.Body.Bytes())
			want := map[string]any{"type": ErrInternal.Type(), "title": ErrInternal.Title, "status": float64(500),
				"instance": "/v1/orders", "request_id": "rid-1"}
			if !reflect.DeepEqual(m, want) {
				t.Fatalf("document:\n got %v\nwant %v", m, want)
			}
		})
	}
}

func TestWrite(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	e := ErrRateLimited.WithDetail("slow down").WithRetryAfter(1500 * time.Millisecond)
	if err := Write(rec, e, "/v1/holds", "abc"); err != nil {
		t.Fatal(err)
	}
	h := rec.Header()
	if rec.Code != http.StatusTooManyRequests || h.Get("Content-Type") != ContentType ||
		h.Get("Cache-Control") != "no-store" || h.Get("Retry-After") != "2" {
		t.Fatalf("status %d, headers %v", rec.Code, h)
	}
	rec = httptest.NewRecorder()
	_ = Write(rec, ErrNotFound, "/x", "")
	if _, ok := rec.Header()["Retry-After"]; ok {
		t.Fatal("Retry-After sent without RetryAfter")
	}
}

func TestUnavailablef(t *testing.T) {
	t.Parallel()
	cause := errors.New("redis down")
	e := Unavailablef(cause, 2*time.Second, "holds are unavailable")
	if !errors.Is(e, ErrUnavailable) || !errors.Is(e, cause) || e.RetryAfter != 2*time.Second || e.Detail != "holds are unavailable" {
		t.Fatalf("Unavailablef = %+v", e)
	}
}

func TestDecodeKeepsIdentity(t *testing.T) {
	soldOut := New(Conflict, "sold-out", "Not enough tickets available")
	sent := soldOut.WithDetail("only 3 tickets are available").WithExtra("available", 3).WithRetryAfter(2 * time.Second)
	rec := httptest.NewRecorder()
	if err := Write(rec, sent, "/v1/holds", "req-1"); err != nil {
		t.Fatal(err)
	}
	got := Decode(rec.Code, rec.Header(), rec.Body.Bytes())
	if got == nil {
		t.Fatalf("not decoded: %s", rec.Body)
	}
	if !errors.Is(got, soldOut) || got.Kind != Conflict || got.Detail != sent.Detail || got.RetryAfter != 2*time.Second {
		t.Fatalf("decoded %+v, want the sold-out problem with its detail and Retry-After", got)
	}
	if n, ok := got.Extra["available"].(float64); !ok || n != 3 {
		t.Fatalf("extension members %v", got.Extra)
	}
	for _, body := range []string{`not json`, `{"type":"https://example.com/other","status":409}`, `[]`} {
		if d := Decode(409, http.Header{}, []byte(body)); d != nil {
			t.Fatalf("Decode(%s) = %+v, want nil", body, d)
		}
	}
	for k := range statuses {
		if KindOfStatus(k.Status()) != k {
			t.Fatalf("KindOfStatus(%d) = %v, want %v", k.Status(), KindOfStatus(k.Status()), k)
		}
	}
}

// TestDocumentEncodingMatchesEncodingJSON checks the hand-written encoder against encoding/json,
// escapes included, for documents with and without fields and extensions.
func TestDocumentEncodingMatchesEncodingJSON(t *testing.T) {
	type plain struct {
		Type      string       `json:"type"`
		Title     string       `json:"title"`
		Status    int          `json:"status"`
		Detail    string       `json:"detail,omitempty"`
		Instance  string       `json:"instance,omitempty"`
		RequestID string       `json:"request_id,omitempty"`
		Errors    []FieldError `json:"errors,omitempty"`
		Available int          `json:"available,omitempty"`
		Note      string       `json:"note,omitempty"`
	}
	for _, p := range []plain{
		{Type: "https://x/sold-out", Title: "Sold out", Status: 409, Available: 3},
		{Type: "t", Title: "a \"quoted\" <title> & \\ \u2028 é \x01", Status: 400, Detail: "d", Instance: "/v1/x?a=<b>", RequestID: "r-1",
			Errors: []FieldError{{Field: "f", Message: "m <"}}, Note: "n\n"},
	} {
		want, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		d := Document{Type: p.Type, Title: p.Title, Status: p.Status, Detail: p.Detail, Instance: p.Instance,
			RequestID: p.RequestID, Errors: p.Errors, Extra: map[string]any{"status": 1}}
		if p.Available != 0 {
			d.Extra["available"] = p.Available
		}
		if p.Note != "" {
			d.Extra["note"] = p.Note
		}
		got, err := d.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("got  %s\nwant %s", got, want)
		}
	}
}

// TestTypeFollowsCode: the type of a declared error is its code under TypeBase, and a copy
// whose code was changed gets the type of its new code, not the cached one.
func TestTypeFollowsCode(t *testing.T) {
	e := New(Conflict, "sold-out", "Not enough tickets available")
	if got := e.Type(); got != TypeBase+"sold-out" {
		t.Fatalf("Type() = %q", got)
	}
	c := *e
	c.Code = "gone-away"
	if got := c.Type(); got != TypeBase+"gone-away" {
		t.Fatalf("a copy with code gone-away has Type() %q", got)
	}
	literal := &Error{Kind: NotFound, Code: "no-such"}
	if got := literal.Type(); got != TypeBase+"no-such" {
		t.Fatalf("an Error built as a literal has Type() %q", got)
	}
}
