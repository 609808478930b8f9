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
	// Appended into one buffer: the answer to every refused request goes through here, and
	// encoding/json's reflection cost several allocations per document.
	out := make([]byte, 0, 256)
	out = append(out, `{"type":`...)
	out = appendString(out, d.Type)
	out = append(out, `,"title":`...)
	out = appendString(out, d.Title)
	out = append(out, `,"status":`...)
	out = strconv.AppendInt(out, int64(d.Status), 10)
	if d.Detail != "" {
		out = append(out, `,"detail":`...)
		out = appendString(out, d.Detail)
	}
	if d.Instance != "" {
		out = append(out, `,"instance":`...)
		out = appendString(out, d.Instance)
	}
	if d.RequestID != "" {
		out = append(out, `,"request_id":`...)
		out = appendString(out, d.RequestID)
	}
	if len(d.Errors) > 0 {
		errs, err := json.Marshal(d.Errors)
		if err != nil {
			return nil, err
		}
		out = append(append(out, `,"errors":`...), errs...)
	}
	if len(d.Extra) == 0 {
		return append(out, '}'), nil
	}
	var spare [4]string // room for the usual few members without a heap slice
	keys := spare[:0]
	for k := range d.Extra {
		if !slices.Contains(standardMembers, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		out = appendString(append(out, ','), k)
		out = append(out, ':')
		switch v := d.Extra[k].(type) {
		case int:
			out = strconv.AppendInt(out, int64(v), 10)
		case int64:
			out = strconv.AppendInt(out, v, 10)
		case string:
			out = appendString(out, v)
		default:
			value, err := json.Marshal(v)
			if err != nil {
				return nil, err
			}
			out = append(out, value...)
		}
	}
	return append(out, '}'), nil
}

// appendString appends s as a JSON string, as encoding/json would write it.
func appendString(out []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			quoted, _ := json.Marshal(s) // a string always encodes
			return append(out, quoted...)
		}
	}
	return append(append(append(out, '"'), s...), '"')
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
