package apispec

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/onsale-dev/onsale/api"
	"github.com/onsale-dev/onsale/internal/platform/problem"
)

const doc = `
openapi: "3.1.0"
info:
  title: apispec test
  version: "1"
paths:
  /livez:
    get:
      operationId: getLivez
      responses:
        "200":
          description: alive
  /v1/events/{event_id}/holds:
    post:
      operationId: createHold
      parameters:
        - name: event_id
          in: path
          required: true
          schema:
            type: integer
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              additionalProperties: false
              required: [quantity]
              properties:
                quantity:
                  type: integer
                  minimum: 1
                  maximum: 8
      responses:
        "201":
          description: held
          content:
            application/json:
              schema:
                $ref: "#/components/schemas/Hold"
        "409":
          description: sold out
          content:
            application/problem+json:
              schema:
                type: object
                required: [type, status]
  /v1/orders:
    get:
      operationId: listOrders
      parameters:
        - name: Idempotency-Key
          in: header
          schema:
            type: string
            description: 1 to 64 printable ASCII characters (0x21 to 0x7E).
            minLength: 1
            maxLength: 64
            pattern: "^[\\x21-\\x7E]+$"
        - name: limit
          in: query
          schema:
            type: integer
            minimum: 1
            maximum: 100
        - name: cursor
          in: query
          schema:
            type: string
            maxLength: 20
        - name: X-Channel
          in: header
          required: true
          schema:
            type: string
            enum: [web, app]
      responses:
        "200":
          description: the orders
  /v1/holds/{hold_id}:
    get:
      operationId: getHold
      parameters:
        - name: hold_id
          in: path
          required: true
          schema:
            type: string
      responses:
        "200":
          description: the hold
          content:
            application/json:
              schema:
                $ref: "#/components/schemas/Hold"
    delete:
      operationId: releaseHold
      parameters:
        - name: hold_id
          in: path
          required: true
          schema:
            type: string
      responses:
        "204":
          description: released
components:
  schemas:
    Hold:
      type: object
      required: [id, quantity, expires_at]
      properties:
        id:
          type: string
        quantity:
          type: integer
        expires_at:
          type: string
          format: date-time
`

func load(t *testing.T) *Spec {
	t.Helper()
	s, err := Load([]byte(doc))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return s
}

func TestLoadRejectsBadDocuments(t *testing.T) {
	t.Parallel()
	for name, d := range map[string]string{
		"not yaml": "openapi: [",
		"no info":  "openapi: \"3.1.0\"\npaths: {}\n",
		"dangling ref": `openapi: "3.1.0"
info: {title: x, version: "1"}
paths:
  /x:
    get:
      responses:
        "200":
          description: x
          content:
            application/json:
              schema:
                $ref: "#/components/schemas/Missing"
`,
	} {
		if _, err := Load([]byte(d)); err == nil {
			t.Errorf("%s: Load accepted it", name)
		}
	}
}

func TestOpenAPIPath(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/livez":                         "/livez",
		"/":                              "/",
		"/v1/holds/:hold_id":             "/v1/holds/{hold_id}",
		"/v1/events/:event_id/holds":     "/v1/events/{event_id}/holds",
		"/v1/events/:event_id/types/:id": "/v1/events/{event_id}/types/{id}",
		"/v1/a:b":                        "/v1/a:b", // a colon inside a segment is not a parameter
		"/.well-known/jwks.json":         "/.well-known/jwks.json",
	} {
		if got := OpenAPIPath(in); got != want {
			t.Errorf("OpenAPIPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOperations(t *testing.T) {
	t.Parallel()
	got := load(t).Operations()
	want := []Operation{
		{Method: "GET", Path: "/livez", ID: "getLivez"},
		{Method: "POST", Path: "/v1/events/{event_id}/holds", ID: "createHold"},
		{Method: "DELETE", Path: "/v1/holds/{hold_id}", ID: "releaseHold"},
		{Method: "GET", Path: "/v1/holds/{hold_id}", ID: "getHold"},
		{Method: "GET", Path: "/v1/orders", ID: "listOrders"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Operations:\n got %+v\nwant %+v", got, want)
	}
}

func TestRoute(t *testing.T) {
	t.Parallel()
	s := load(t)
	if r, ok := s.Route(http.MethodGet, "/v1/holds/:hold_id"); !ok || r.Operation.OperationID != "getHold" {
		t.Fatalf("Route(GET /v1/holds/:hold_id) = %v, %v", r, ok)
	}
	if _, ok := s.Route(http.MethodPut, "/v1/holds/:hold_id"); ok {
		t.Fatal("Route found an undeclared method")
	}
	if _, ok := s.Route(http.MethodGet, "/v1/nothing"); ok {
		t.Fatal("Route found an undeclared path")
	}
	if _, err := s.RequestValidator(http.MethodGet, "/v1/nothing"); err == nil || !strings.Contains(err.Error(), "/v1/nothing") {
		t.Fatalf("RequestValidator for an undeclared route: %v", err)
	}
}

func validate(t *testing.T, s *Spec, method, echoPath, target, body string, params map[string]string) error {
	t.Helper()
	return validateWithHeader(t, s, method, echoPath, target, body, params, nil)
}

func validateWithHeader(t *testing.T, s *Spec, method, echoPath, target, body string, params, header map[string]string) error {
	t.Helper()
	mw, err := s.RequestValidator(method, echoPath)
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	c := e.NewContext(req, httptest.NewRecorder())
	c.SetPath(echoPath)
	var names, values []string
	for k, v := range params {
		names, values = append(names, k), append(values, v)
	}
	c.SetParamNames(names...)
	c.SetParamValues(values...)
	reached := false
	err = mw(func(echo.Context) error { reached = true; return nil })(c)
	if err == nil && !reached {
		t.Fatal("validator neither passed nor failed")
	}
	return err
}

func TestRequestValidator(t *testing.T) {
	t.Parallel()
	s := load(t)
	const path = "/v1/events/:event_id/holds"
	ok := map[string]string{"event_id": "7"}
	if err := validate(t, s, http.MethodPost, path, "/v1/events/7/holds", `{"quantity":2}`, ok); err != nil {
		t.Fatalf("valid request refused: %v", err)
	}
	cases := []struct {
		name, body string
		params     map[string]string
		want       *problem.Error
		field      string
	}{
		{"schema", `{"quantity":9}`, ok, problem.ErrValidation, "quantity"},
		{"type", `{"quantity":"two"}`, ok, problem.ErrValidation, "quantity"},
		{"malformed", `{"quantity":`, ok, problem.ErrMalformedJSON, ""},
		{"missing body", ``, ok, problem.ErrMalformedJSON, ""},
		{"path parameter", `{"quantity":2}`, map[string]string{"event_id": "seven"}, problem.ErrBadRequest, "path:event_id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := validate(t, s, http.MethodPost, path, "/v1/events/x/holds", tc.body, tc.params)
			pe := problem.As(err)
			if pe == nil || !pe.Is(tc.want) {
				t.Fatalf("err = %v; want %s", err, tc.want.Code)
			}
			if tc.field != "" {
				found := false
				for _, f := range pe.Fields {
					found = found || f.Field == tc.field
				}
				if !found {
					t.Fatalf("fields %+v do not name %s", pe.Fields, tc.field)
				}
			}
		})
	}
	// Operations without parameters or body pass straight through.
	if err := validate(t, s, http.MethodGet, "/livez", "/livez", "", nil); err != nil {
		t.Fatalf("livez: %v", err)
	}
}

// A refused parameter says what it accepts, in the document's words: the schema's description
// when it has one, else its type, bounds, lengths, pattern or values.
func TestParameterProblemsSayWhatIsAccepted(t *testing.T) {
	t.Parallel()
	s := load(t)
	ok := map[string]string{"X-Channel": "web"}
	with := func(k, v string) map[string]string {
		h := map[string]string{"X-Channel": "web"}
		h[k] = v
		return h
	}
	if err := validateWithHeader(t, s, http.MethodGet, "/v1/orders", "/v1/orders?limit=5", "", nil, with("Idempotency-Key", "k-1")); err != nil {
		t.Fatalf("valid request refused: %v", err)
	}
	for _, tc := range []struct {
		name, target string
		header       map[string]string
		field, want  string
	}{
		{"description", "/v1/orders", with("Idempotency-Key", "7f3c…"), "header:Idempotency-Key", "must be 1 to 64 printable ASCII characters (0x21 to 0x7E)"},
		{"too long", "/v1/orders", with("Idempotency-Key", strings.Repeat("k", 65)), "header:Idempotency-Key", "must be 1 to 64 printable ASCII characters (0x21 to 0x7E)"},
		{"integer bounds", "/v1/orders?limit=0", ok, "query:limit", "must be an integer from 1 to 100"},
		{"not an integer", "/v1/orders?limit=ten", ok, "query:limit", "must be an integer from 1 to 100"},
		{"length", "/v1/orders?cursor=" + strings.Repeat("c", 21), ok, "query:cursor", "must be a string of at most 20 characters"},
		{"enum", "/v1/orders", map[string]string{"X-Channel": "fax"}, "header:X-Channel", "must be one of web, app"},
		{"required", "/v1/orders", nil, "header:X-Channel", "required; must be one of web, app"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validateWithHeader(t, s, http.MethodGet, "/v1/orders", tc.target, "", nil, tc.header)
			pe := problem.As(err)
			if pe == nil || !pe.Is(problem.ErrBadRequest) {
				t.Fatalf("err = %v; want bad-request", err)
			}
			if !slices.Contains(pe.Fields, problem.FieldError{Field: tc.field, Message: tc.want}) {
				t.Fatalf("fields %+v; want %s: %q", pe.Fields, tc.field, tc.want)
			}
		})
	}
}

// The published document's Idempotency-Key, on the holds and the orders alike, refuses a key
// that is not printable ASCII by saying which characters and how many are allowed.
func TestPublishedIdempotencyKeyRule(t *testing.T) {
	t.Parallel()
	s, err := Load(api.Spec)
	if err != nil {
		t.Fatal(err)
	}
	var messages []string
	for _, path := range []string{"/v1/holds", "/v1/orders", "/v1/events"} {
		err := validateWithHeader(t, s, http.MethodPost, path, path, `{}`, nil, map[string]string{"Idempotency-Key": "7f3c…"})
		pe := problem.As(err)
		if pe == nil || !pe.Is(problem.ErrBadRequest) {
			t.Fatalf("%s: err = %v; want bad-request", path, err)
		}
		i := slices.IndexFunc(pe.Fields, func(f problem.FieldError) bool { return f.Field == "header:Idempotency-Key" })
		if i < 0 {
			t.Fatalf("%s: fields %+v do not name header:Idempotency-Key", path, pe.Fields)
		}
		msg := pe.Fields[i].Message
		if !strings.Contains(msg, "ASCII") || !strings.Contains(msg, "255") {
			t.Errorf("%s: %q does not say which characters and how many are allowed", path, msg)
		}
		messages = append(messages, msg)
	}
	if messages[0] != messages[1] || messages[0] != messages[2] {
		t.Errorf("the operations describe different rules for one key: %q", messages)
	}
}

func TestValidateResponse(t *testing.T) {
	t.Parallel()
	s := load(t)
	req := httptest.NewRequest(http.MethodGet, "/v1/holds/h1", nil)
	jsonHeader := http.Header{"Content-Type": []string{"application/json"}}
	good := `{"id":"h1","quantity":2,"expires_at":"2026-11-27T10:00:00Z"}`

	if err := s.ValidateResponse(req, "/v1/holds/:hold_id", 200, jsonHeader, []byte(good)); err != nil {
		t.Fatalf("conforming response refused: %v", err)
	}
	// Without the route pattern, the concrete path is matched against the document.
	if err := s.ValidateResponse(req, "", 200, jsonHeader, []byte(good)); err != nil {
		t.Fatalf("conforming response refused without the route pattern: %v", err)
	}

	bad := map[string]struct {
		status int
		header http.Header
		body   string
	}{
		"wrong field type":  {200, jsonHeader, `{"id":"h1","quantity":"two","expires_at":"2026-11-27T10:00:00Z"}`},
		"missing field":     {200, jsonHeader, `{"id":"h1","quantity":2}`},
		"undeclared status": {418, jsonHeader, good},
		"not json":          {200, jsonHeader, `{"id":`},
		"wrong media type":  {200, http.Header{"Content-Type": []string{"text/html"}}, `<p>hi</p>`},
	}
	for name, tc := range bad {
		if err := s.ValidateResponse(req, "/v1/holds/:hold_id", tc.status, tc.header, []byte(tc.body)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}

	post := httptest.NewRequest(http.MethodPost, "/v1/events/3/holds", strings.NewReader(`{"quantity":1}`))
	problemHeader := http.Header{"Content-Type": []string{problem.ContentType}}
	if err := s.ValidateResponse(post, "", 409, problemHeader, []byte(`{"type":"https://onsale.dev/problems/sold-out","status":409}`)); err != nil {
		t.Fatalf("declared problem response refused: %v", err)
	}

	unknown := httptest.NewRequest(http.MethodGet, "/v1/unknown/thing", nil)
	if err := s.ValidateResponse(unknown, "", 200, jsonHeader, []byte(`{}`)); err == nil {
		t.Fatal("a response for an undeclared path was accepted")
	}
}
