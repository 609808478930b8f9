// Package apispec binds the published OpenAPI document to the server: it validates each request
// against its operation before the handler runs, checks responses in tests, and lists the
// operations so a test can prove the routes and the document agree.
package apispec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/labstack/echo/v4"

	"github.com/onsale-dev/onsale/internal/platform/problem"
)

// Operation is one method on one path of the document.
type Operation struct {
	Method string
	Path   string // OpenAPI form: /v1/holds/{hold_id}
	ID     string
}

// Spec is a loaded, validated OpenAPI document.
type Spec struct {
	doc      *openapi3.T
	routes   map[string]*routers.Route // "GET /v1/holds/{hold_id}"
	requests map[string]*routers.Route // the same, for request validation (see Load)
	compiled map[string]*compiled      // the same, compiled for the fast path
	options  *openapi3filter.Options
	bodies   *sync.Pool // *bodyBuffer: request bodies while their requests are served
}

// Load parses and validates the document.
func Load(data []byte) (*Spec, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("load openapi: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("validate openapi: %w", err)
	}
	// Requests are validated with kin-openapi's own schema visitor: for 3.1 documents it would
	// compile a JSON Schema 2020-12 validator on every request, which profiled at 85% of a hold's
	// CPU. The document only uses keywords both validators share (type lists included), so the
	// requests see the same rules; responses, checked in tests only, keep the 3.1 validator.
	legacy := *doc
	legacy.OpenAPI = "3.0.3"
	s := &Spec{
		doc:      doc,
		routes:   map[string]*routers.Route{},
		requests: map[string]*routers.Route{},
		compiled: map[string]*compiled{},
		bodies:   &sync.Pool{New: func() any { return new(bodyBuffer) }},
		options: &openapi3filter.Options{
			// Authentication is enforced by the routes' own middleware, which runs first.
			AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
			MultiError:         true,
		},
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			s.routes[method+" "+path] = &routers.Route{
				Spec: doc, Path: path, PathItem: item, Method: method, Operation: op,
			}
			// Security is enforced by the routes' own middleware before validation runs; the
			// validator need not walk the requirements again on every request.
			reqOp := *op
			reqOp.Security = &openapi3.SecurityRequirements{}
			s.requests[method+" "+path] = &routers.Route{
				Spec: &legacy, Path: path, PathItem: item, Method: method, Operation: &reqOp,
			}
			c, err := compileOperation(s.requests[method+" "+path])
			if err != nil {
				return nil, fmt.Errorf("compile %s %s: %w", method, path, err)
			}
			s.compiled[method+" "+path] = c
		}
	}
	return s, nil
}

// Operations lists the document's operations, sorted by path then method.
func (s *Spec) Operations() []Operation {
	out := make([]Operation, 0, len(s.routes))
	for _, r := range s.routes {
		out = append(out, Operation{Method: r.Method, Path: r.Path, ID: r.Operation.OperationID})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Method < out[j].Method
	})
	return out
}

// OpenAPIPath turns an echo route path (/v1/holds/:hold_id) into the document's form
// (/v1/holds/{hold_id}).
func OpenAPIPath(echoPath string) string {
	parts := strings.Split(echoPath, "/")
	for i, p := range parts {
		if strings.HasPrefix(p, ":") {
			parts[i] = "{" + p[1:] + "}"
		}
	}
	return strings.Join(parts, "/")
}

// Route finds the document's route for an echo method and path.
func (s *Spec) Route(method, echoPath string) (*routers.Route, bool) {
	r, ok := s.routes[method+" "+OpenAPIPath(echoPath)]
	return r, ok
}

// RequestValidator returns middleware that validates requests to one operation. It fails when the
// document has no such operation, so a route cannot be served without being published.
func (s *Spec) RequestValidator(method, echoPath string) (echo.MiddlewareFunc, error) {
	route, ok := s.requests[method+" "+OpenAPIPath(echoPath)]
	if !ok {
		return nil, fmt.Errorf("route %s %s is not in the OpenAPI document", method, OpenAPIPath(echoPath))
	}
	hasParams := len(route.Operation.Parameters) > 0 || len(route.PathItem.Parameters) > 0
	hasBody := route.Operation.RequestBody != nil
	if !hasParams && !hasBody {
		// Nothing to validate: skip the work on hot paths such as health checks.
		return func(next echo.HandlerFunc) echo.HandlerFunc { return next }, nil
	}
	fast := s.compiled[method+" "+OpenAPIPath(echoPath)]
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			ok, buf, err := fast.validate(c, s.bodies)
			if buf != nil {
				defer s.bodies.Put(buf)
			}
			if err != nil {
				return toProblem(err)
			}
			if ok {
				return next(c)
			}
			params := make(map[string]string, len(c.ParamNames()))
			for i, name := range c.ParamNames() {
				params[name] = c.ParamValues()[i]
			}
			in := &openapi3filter.RequestValidationInput{
				Request:    c.Request(),
				PathParams: params,
				Route:      route,
				Options:    s.options,
			}
			if err := openapi3filter.ValidateRequest(c.Request().Context(), in); err != nil {
				return toProblem(err)
			}
			return next(c)
		}
	}, nil
}

// toProblem maps a validation failure to a problem: malformed JSON is 400, a body of the wrong
// media type 415, a well-formed body that breaks the schema 422 (listing the fields), and a bad
// header, query or path parameter 400 (naming it and saying what it accepts).
func toProblem(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return problem.ErrBodyTooLarge.WithDetail("the body may be at most %d bytes", mbe.Limit)
	}
	var fields []problem.FieldError
	var kind *problem.Error
	for _, e := range flatten(err) {
		var re *openapi3filter.RequestError
		if !errors.As(e, &re) {
			continue
		}
		switch {
		case re.RequestBody != nil:
			var pe *openapi3filter.ParseError
			var se *openapi3.SchemaError
			switch {
			case strings.Contains(re.Reason, "Content-Type") || strings.Contains(re.Reason, "content type"):
				return problem.ErrUnsupportedMedia.WithDetail("send the body as application/json")
			case errors.As(re.Err, &pe):
				return problem.ErrMalformedJSON.WithDetail("the body is not valid JSON")
			case errors.Is(re.Err, openapi3filter.ErrInvalidRequired) || re.Err == nil:
				return problem.ErrMalformedJSON.WithDetail("a JSON body is required")
			case errors.As(re.Err, &se):
				if kind == nil {
					kind = problem.ErrValidation
				}
				for _, inner := range flatten(re.Err) {
					var ise *openapi3.SchemaError
					if errors.As(inner, &ise) {
						for _, leaf := range schemaLeaves(ise) {
							fields = append(fields, schemaField(leaf))
						}
					}
				}
			default:
				if kind == nil {
					kind = problem.ErrValidation
				}
				fields = append(fields, problem.FieldError{Message: re.Err.Error()})
			}
		case re.Parameter != nil:
			kind = problem.ErrBadRequest
			fields = append(fields, problem.FieldError{Field: re.Parameter.In + ":" + re.Parameter.Name, Message: parameterMessage(re)})
		}
	}
	if kind == nil {
		return problem.ErrBadRequest.WithDetail("the request does not match the API contract")
	}
	detail := "the request does not match the API contract"
	if kind == problem.ErrValidation {
		detail = "the request body has invalid fields"
	}
	return kind.WithDetail("%s", detail).WithFields(fields...)
}

// parameterMessage says what a refused header, query or path parameter accepts, so the client
// can fix its request without reading the document: "must be " and the rule from the parameter's
// schema (see acceptedValues); "required" alone when the rule says nothing.
func parameterMessage(re *openapi3filter.RequestError) string {
	var rule string
	if ref := re.Parameter.Schema; ref != nil && ref.Value != nil {
		rule = acceptedValues(ref.Value)
	}
	switch {
	case errors.Is(re.Err, openapi3filter.ErrInvalidRequired) && rule == "":
		return "required"
	case errors.Is(re.Err, openapi3filter.ErrInvalidRequired):
		return "required; must be " + rule
	case rule == "":
		return "invalid value"
	}
	return "must be " + rule
}

// acceptedValues puts a parameter schema's rule in words. The schema's description wins, so a
// schema whose pattern says more than its words can (printable ASCII, say) describes itself, as
// a phrase that completes "must be": "1 to 255 printable ASCII characters (0x21 to 0x7E, no
// spaces)". Otherwise the words come from its enum, type, format, bounds, lengths and pattern.
func acceptedValues(s *openapi3.Schema) string {
	if d := strings.TrimSuffix(strings.TrimSpace(s.Description), "."); d != "" {
		return d
	}
	if len(s.Enum) > 0 {
		values := make([]string, len(s.Enum))
		for i, v := range s.Enum {
			values[i] = fmt.Sprint(v)
		}
		return "one of " + strings.Join(values, ", ")
	}
	var words []string
	switch {
	case s.Type.Is(openapi3.TypeInteger):
		words = append(words, "an integer")
	case s.Type.Is(openapi3.TypeNumber):
		words = append(words, "a number")
	case s.Type.Is(openapi3.TypeBoolean):
		return "true or false"
	case s.Format == "uuid":
		words = append(words, "a UUID")
	case s.Format == "date-time":
		words = append(words, "an RFC 3339 date-time")
	case s.Type.Is(openapi3.TypeString):
		words = append(words, "a string")
	}
	if r := numberRange(s); r != "" {
		words = append(words, r)
	}
	switch max := s.MaxLength; {
	case max != nil && s.MinLength > 0:
		words = append(words, fmt.Sprintf("of %d to %d characters", s.MinLength, *max))
	case max != nil:
		words = append(words, fmt.Sprintf("of at most %d characters", *max))
	case s.MinLength > 0:
		words = append(words, fmt.Sprintf("of at least %d characters", s.MinLength))
	}
	if s.Pattern != "" {
		words = append(words, "matching "+s.Pattern)
	}
	return strings.Join(words, " ")
}

// numberRange puts minimum and maximum (inclusive or exclusive, in 3.0 or 3.1 form) in words.
func numberRange(s *openapi3.Schema) string {
	bound := func(v *float64, exclusive openapi3.ExclusiveBound, incl, excl string) (string, bool) {
		switch {
		case exclusive.Value != nil:
			return excl + " " + strconv.FormatFloat(*exclusive.Value, 'f', -1, 64), false
		case v != nil && exclusive.IsTrue():
			return excl + " " + strconv.FormatFloat(*v, 'f', -1, 64), false
		case v != nil:
			return incl + " " + strconv.FormatFloat(*v, 'f', -1, 64), true
		}
		return "", false
	}
	lo, loIncl := bound(s.Min, s.ExclusiveMin, "at least", "above")
	hi, hiIncl := bound(s.Max, s.ExclusiveMax, "at most", "below")
	switch {
	case loIncl && hiIncl:
		return "from " + strconv.FormatFloat(*s.Min, 'f', -1, 64) + " to " + strconv.FormatFloat(*s.Max, 'f', -1, 64)
	case lo != "" && hi != "":
		return lo + " and " + hi
	}
	return lo + hi
}

func schemaField(se *openapi3.SchemaError) problem.FieldError {
	field := strings.TrimPrefix(strings.Join(se.JSONPointer(), "."), ".")
	msg := se.Reason
	if msg == "" {
		msg = "invalid value"
	}
	return problem.FieldError{Field: field, Message: msg}
}

// schemaLeaves returns the schema errors about single values. The OpenAPI 3.1 (JSON Schema
// 2020-12) validator reports one error for the whole body whose Origin wraps a MultiError with one
// error per failing value; the 3.0 validator reports those directly.
func schemaLeaves(se *openapi3.SchemaError) []*openapi3.SchemaError {
	var me openapi3.MultiError
	if se.Origin == nil || !errors.As(se.Origin, &me) {
		return []*openapi3.SchemaError{se}
	}
	var out []*openapi3.SchemaError
	for _, e := range flatten(me) {
		var inner *openapi3.SchemaError
		if errors.As(e, &inner) {
			out = append(out, schemaLeaves(inner)...)
		}
	}
	if len(out) == 0 {
		return []*openapi3.SchemaError{se}
	}
	return out
}

// flatten expands nested MultiErrors (only those: errors.As would also look inside a
// RequestError, which wraps one, and lose it).
func flatten(err error) []error {
	if me, ok := err.(openapi3.MultiError); ok {
		var out []error
		for _, e := range me {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// ValidateResponse checks a recorded response against the document; tests call it for every
// response they see.
func (s *Spec) ValidateResponse(req *http.Request, echoPath string, status int, header http.Header, body []byte) error {
	route, ok := s.Route(req.Method, echoPath)
	if !ok {
		var err error
		route, _, err = s.findRoute(req)
		if err != nil {
			return fmt.Errorf("no operation for %s %s: %w", req.Method, req.URL.Path, err)
		}
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: req, Route: route, Options: s.options,
		},
		Status:  status,
		Header:  header,
		Body:    io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	return openapi3filter.ValidateResponse(req.Context(), in)
}

// findRoute matches a concrete path against the document's templates, for callers that do not
// know the route pattern.
func (s *Spec) findRoute(req *http.Request) (*routers.Route, map[string]string, error) {
	segs := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	for _, r := range s.routes {
		if r.Method != req.Method {
			continue
		}
		tpl := strings.Split(strings.Trim(r.Path, "/"), "/")
		if len(tpl) != len(segs) {
			continue
		}
		params := map[string]string{}
		match := true
		for i, t := range tpl {
			if strings.HasPrefix(t, "{") && strings.HasSuffix(t, "}") {
				params[t[1:len(t)-1]] = segs[i]
			} else if t != segs[i] {
				match = false
				break
			}
		}
		if match {
			return r, params, nil
		}
	}
	return nil, nil, routers.ErrPathNotFound
}
