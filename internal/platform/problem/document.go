package problem

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ContentType is the media type of problem documents.
const ContentType = "application/problem+json"

// Document is an RFC 9457 problem document.
type Document struct {
	Type      string         `json:"type"`
	Title     string         `json:"title"`
	Status    int            `json:"status"`
	Detail    string         `json:"detail,omitempty"`
	Instance  string         `json:"instance,omitempty"`
	RequestID string         `json:"request_id,omitempty"`
	Errors    []FieldError   `json:"errors,omitempty"`
	Extra     map[string]any `json:"-"`
}

// standardMembers are the Document's own JSON members; no extension may take their names.
var standardMembers = []string{"type", "title", "status", "detail", "instance", "request_id", "errors"}

// MarshalJSON flattens Extra into the document, as RFC 9457 extension members, in key order.
// Standard members win over extensions of the same name, even when they are empty and so
// omitted: an extension never stands in for a standard member. (Sold-out answers carry an
// extension and are the commonest answer of a flash sale, so this appends to the encoded
// document instead of decoding and re-encoding it.)
func (d Document) MarshalJSON() ([]byte, error) {
	type plain Document
	base, err := json.Marshal(plain(d))
	if err != nil || len(d.Extra) == 0 {
		return base, err
	}
	keys := make([]string, 0, len(d.Extra))
	for k := range d.Extra {
		if !slices.Contains(standardMembers, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	out := base[:len(base)-1] // drop the closing brace
	for _, k := range keys {
		name, err := json.Marshal(k)
		if err != nil {
			return nil, err
		}
		value, err := json.Marshal(d.Extra[k])
		if err != nil {
			return nil, err
		}
		out = append(append(append(append(out, ','), name...), ':'), value...)
	}
	return append(out, '}'), nil
}

// Resolve turns any error into the *Error a client may see. Errors of this package keep their
// identity; a deadline becomes a 503 timeout; anything else is an internal error whose cause is
// kept for the log and never shown.
func Resolve(err error) *Error {
	if pe := As(err); pe != nil {
		return pe
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ErrTimeout.WithDetail("the request took too long").WithRetryAfter(time.Second).Wrap(err)
	}
	return ErrInternal.Wrap(err)
}

// NewDocument builds the problem document for e; instance is the request path.
func NewDocument(e *Error, instance, requestID string) Document {
	d := Document{
		Type:      e.Type(),
		Title:     e.Title,
		Status:    e.Kind.Status(),
		Detail:    e.Detail,
		Instance:  instance,
		RequestID: requestID,
		Errors:    e.Fields,
		Extra:     e.Extra,
	}
	if e.Kind == Internal {
		// A 500 shows no internals, whatever the error said.
		d.Type, d.Title, d.Detail, d.Errors, d.Extra = ErrInternal.Type(), ErrInternal.Title, "", nil, nil
	}
	return d
}

// Write sends e as a problem document, with Retry-After when the error asks for it.
func Write(w http.ResponseWriter, e *Error, instance, requestID string) error {
	d := NewDocument(e, instance, requestID)
	// Directly, not through json.Marshal, which would scan the result again to compact it.
	body, err := d.MarshalJSON()
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("Cache-Control", "no-store")
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int(math.Ceil(e.RetryAfter.Seconds()))))
	}
	w.WriteHeader(d.Status)
	_, err = w.Write(body)
	return err
}

// KindOfStatus is the kind whose status is status: the inverse of Kind.Status, for problems that
// came over the wire. An unknown status is Internal.
func KindOfStatus(status int) Kind {
	for k, s := range statuses {
		if s == status {
			return k
		}
	}
	return Internal
}

// Decode turns a problem document another onsale process answered with back into the *Error it
// was made from: the same kind and code, so errors.Is matches the sentinels a module declares
// (a sold-out from a remote inventory is inventory.ErrSoldOut here too). Extension members come
// back in Extra and Retry-After in RetryAfter. It returns nil when body is not a problem
// document of this server's.
func Decode(status int, header http.Header, body []byte) *Error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil
	}
	var d Document
	if err := json.Unmarshal(body, &d); err != nil || !strings.HasPrefix(d.Type, TypeBase) {
		return nil
	}
	e := &Error{Kind: KindOfStatus(status), Code: strings.TrimPrefix(d.Type, TypeBase), Title: d.Title, Detail: d.Detail, Fields: d.Errors}
	if s, err := strconv.Atoi(header.Get("Retry-After")); err == nil && s > 0 {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	for k, v := range raw {
		if slices.Contains(standardMembers, k) {
			continue
		}
		var value any
		if err := json.Unmarshal(v, &value); err == nil {
			if e.Extra == nil {
				e.Extra = map[string]any{}
			}
			e.Extra[k] = value
		}
	}
	return e
}
