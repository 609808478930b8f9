// Package problem defines onsale's error values: each has a kind (which decides the HTTP status)
// and a stable code (which becomes the RFC 9457 `type` URI). Modules declare their domain errors
// with it; the HTTP layer turns any error into a problem document in one place (see Write).
package problem

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// TypeBase prefixes every problem code to form the problem document's `type` URI.
const TypeBase = "https://onsale.dev/problems/"

// Kind classifies an error by what the caller can do about it; it decides the HTTP status.
type Kind int

// The kinds of error. Internal is the zero value so that an unclassified error is never shown
// to a client as anything but a 500 without details.
const (
	Internal           Kind = iota // a bug: 500, details hidden
	BadRequest                     // malformed request: 400
	Unauthorized                   // no valid credentials: 401
	Forbidden                      // valid credentials, not allowed: 403
	NotFound                       // no such resource (or not yours): 404
	Conflict                       // conflicts with current state: 409
	Gone                           // existed, no longer usable: 410
	PayloadTooLarge                // body too large: 413
	UnsupportedMedia               // wrong content type: 415
	Unprocessable                  // well-formed but invalid content: 422
	TooManyRequests                // rate or quota limit: 429
	Unavailable                    // a dependency is down or load is shed: 503
	MethodNotAllowed               // route exists, method does not: 405
	PreconditionFailed             // conditional request failed: 412
)

var statuses = map[Kind]int{
	Internal:           http.StatusInternalServerError,
	BadRequest:         http.StatusBadRequest,
	Unauthorized:       http.StatusUnauthorized,
	Forbidden:          http.StatusForbidden,
	NotFound:           http.StatusNotFound,
	Conflict:           http.StatusConflict,
	Gone:               http.StatusGone,
	PayloadTooLarge:    http.StatusRequestEntityTooLarge,
	UnsupportedMedia:   http.StatusUnsupportedMediaType,
	Unprocessable:      http.StatusUnprocessableEntity,
	TooManyRequests:    http.StatusTooManyRequests,
	Unavailable:        http.StatusServiceUnavailable,
	MethodNotAllowed:   http.StatusMethodNotAllowed,
	PreconditionFailed: http.StatusPreconditionFailed,
}

// Status is the HTTP status code for the kind.
func (k Kind) Status() int {
	if s, ok := statuses[k]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// FieldError names one rejected field of a request.
type FieldError struct {
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// Error is an error a client may see. Declare the reusable ones as package variables and compare
// with errors.Is, which matches on Kind and Code so that a copy with another Detail still matches.
type Error struct {
	Kind  Kind
	Code  string // stable slug, e.g. "sold-out"; the problem type is TypeBase + Code
	Title string // short, the same for every occurrence
	// Detail says what went wrong this time. Empty means Title.
	Detail string
	// RetryAfter, when positive, is sent as the Retry-After header.
	RetryAfter time.Duration
	// Fields lists rejected fields for validation problems.
	Fields []FieldError
	// Extra adds members to the problem document (e.g. "available": 3).
	Extra map[string]any
	// Err is the underlying cause; it is logged, never shown.
	Err error

	// typ caches TypeBase + Code for errors made by New, so writing their document does not
	// build the string again on every refused request.
	typ string
}

// New declares an error of a kind with a stable code and a title.
func New(kind Kind, code, title string) *Error {
	return &Error{Kind: kind, Code: code, Title: title, typ: TypeBase + code}
}

// Error implements error.
func (e *Error) Error() string {
	msg := e.Title
	if e.Detail != "" {
		msg = e.Detail
	}
	if e.Err != nil {
		return fmt.Sprintf("%s: %v", msg, e.Err)
	}
	return msg
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is matches errors of the same kind and code, so a sentinel matches its detailed copies.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Kind == e.Kind && t.Code == e.Code
}

// Type is the problem document's `type` URI.
func (e *Error) Type() string {
	// A copy whose Code was changed keeps a stale cache: check it still belongs to Code.
	if len(e.typ) == len(TypeBase)+len(e.Code) && e.typ[len(TypeBase):] == e.Code {
		return e.typ
	}
	return TypeBase + e.Code
}

// clone returns a shallow copy so sentinels are never mutated.
func (e *Error) clone() *Error {
	c := *e
	return &c
}

// WithDetail returns a copy with the detail set.
func (e *Error) WithDetail(format string, args ...any) *Error {
	c := e.clone()
	c.Detail = fmt.Sprintf(format, args...)
	return c
}

// WithRetryAfter returns a copy that asks the client to wait d.
func (e *Error) WithRetryAfter(d time.Duration) *Error {
	c := e.clone()
	c.RetryAfter = d
	return c
}

// WithFields returns a copy listing rejected fields.
func (e *Error) WithFields(fields ...FieldError) *Error {
	c := e.clone()
	c.Fields = append([]FieldError(nil), fields...)
	return c
}

// WithExtra returns a copy with an extra member in the problem document.
func (e *Error) WithExtra(key string, value any) *Error {
	c := e.clone()
	c.Extra = make(map[string]any, len(e.Extra)+1)
	for k, v := range e.Extra {
		c.Extra[k] = v
	}
	c.Extra[key] = value
	return c
}

// Wrap returns a copy carrying cause, which is logged but never shown to clients.
func (e *Error) Wrap(cause error) *Error {
	c := e.clone()
	c.Err = cause
	return c
}

// Common errors shared by every module.
var (
	ErrInternal         = New(Internal, "internal", "Internal server error")
	ErrNotFound         = New(NotFound, "not-found", "Not found")
	ErrMethodNotAllowed = New(MethodNotAllowed, "method-not-allowed", "Method not allowed")
	ErrMalformedJSON    = New(BadRequest, "malformed-json", "Malformed JSON")
	ErrBadRequest       = New(BadRequest, "bad-request", "Bad request")
	ErrValidation       = New(Unprocessable, "validation", "Validation failed")
	ErrBodyTooLarge     = New(PayloadTooLarge, "body-too-large", "Request body too large")
	ErrUnsupportedMedia = New(UnsupportedMedia, "unsupported-media-type", "Unsupported media type")
	ErrUnauthorized     = New(Unauthorized, "unauthorized", "Unauthorized")
	ErrForbidden        = New(Forbidden, "forbidden", "Forbidden")
	ErrRateLimited      = New(TooManyRequests, "rate-limited", "Too many requests")
	ErrOverloaded       = New(Unavailable, "overloaded", "Server busy")
	ErrUnavailable      = New(Unavailable, "unavailable", "Service temporarily unavailable")
	ErrTimeout          = New(Unavailable, "timeout", "Request timed out")
)

// As returns the *Error in err's chain, or nil.
func As(err error) *Error {
	// AsType, unlike errors.As, needs no pointer that escapes: no allocation on the hot path of
	// every refused request.
	pe, _ := errors.AsType[*Error](err)
	return pe
}

// KindOf returns the kind of the first *Error in err's chain, or Internal.
func KindOf(err error) Kind {
	if pe := As(err); pe != nil {
		return pe.Kind
	}
	return Internal
}

// Unavailablef wraps a dependency failure as a 503 that asks the client to retry after d.
func Unavailablef(cause error, retryAfter time.Duration, format string, args ...any) *Error {
	return ErrUnavailable.WithDetail(format, args...).WithRetryAfter(retryAfter).Wrap(cause)
}
