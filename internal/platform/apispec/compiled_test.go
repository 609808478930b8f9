package apispec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/labstack/echo/v4"

	"github.com/onsale-dev/onsale/api"
)

func loadPublished(t *testing.T) *Spec {
	t.Helper()
	s, err := Load(api.Spec)
	if err != nil {
		t.Fatalf("load the published document: %v", err)
	}
	return s
}

// TestEveryOperationCompiles proves the published document holds no rule the compiled validator
// leaves out: Load refuses a keyword it does not implement, and every operation with a body has
// a compiled body.
func TestEveryOperationCompiles(t *testing.T) {
	s := loadPublished(t)
	if len(s.compiled) != len(s.requests) || len(s.compiled) == 0 {
		t.Fatalf("%d compiled operations for %d", len(s.compiled), len(s.requests))
	}
	bodies := 0
	for key, r := range s.requests {
		c := s.compiled[key]
		if c == nil {
			t.Fatalf("%s has no compiled rules", key)
		}
		if (r.Operation.RequestBody != nil) != (c.body != nil) {
			t.Fatalf("%s: compiled body %v, document body %v", key, c.body != nil, r.Operation.RequestBody != nil)
		}
		if c.body != nil {
			bodies++
		}
	}
	if bodies < 10 {
		t.Fatalf("only %d operations with a body", bodies)
	}
	bad := strings.Replace(doc, "minimum: 1\n", "minimum: 1\n                  multipleOf: 2\n", 1)
	if _, err := Load([]byte(bad)); err == nil || !strings.Contains(err.Error(), "multipleOf") {
		t.Fatalf("a document with an unsupported keyword loaded: %v", err)
	}
}

// TestCompiledAgreesWithKin checks, for every operation of the published document, that the
// compiled validator accepts exactly the bodies and parameters kin-openapi accepts: the
// document's own example and its variants with each field removed, added or replaced by values of
// every type and at and beyond each bound.
func TestCompiledAgreesWithKin(t *testing.T) {
	s := loadPublished(t)
	keys := make([]string, 0, len(s.requests))
	for k := range s.requests {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var accepted, refused int
	for _, key := range keys {
		route, c := s.requests[key], s.compiled[key]
		if c.body != nil {
			mt := route.Operation.RequestBody.Value.Content.Get("application/json")
			var bodies [][]byte
			for _, v := range variants(mt.Example, mt.Schema.Value, 3) {
				b, err := json.Marshal(v)
				if err != nil {
					t.Fatal(err)
				}
				bodies = append(bodies, b)
			}
			for _, raw := range []string{``, ` `, `{`, `{}`, `[]`, `null`, `1`, `"x"`, `{"a":}`, `{} {}`, `{"quantity":1`, "\t{}\n"} {
				bodies = append(bodies, []byte(raw))
			}
			for _, b := range bodies {
				req := httptest.NewRequest(route.Method, "/", bytes.NewReader(b))
				req.Header.Set("Content-Type", "application/json")
				in := &openapi3filter.RequestValidationInput{Request: req, Route: route, Options: s.options}
				kinOK := openapi3filter.ValidateRequestBody(req.Context(), in, route.Operation.RequestBody.Value) == nil
				trimmed := bytes.TrimSpace(b)
				fastOK := len(trimmed) == 0 && !c.required || len(trimmed) > 0 && json.Valid(b) && c.body.valid(b)
				// A body that is not one JSON value (trailing data) goes to kin-openapi, which
				// reads its first value; only the handler refuses the rest.
				if kinOK != fastOK && (json.Valid(b) || fastOK) {
					t.Errorf("%s body %.200s: kin-openapi accepts %v, compiled %v", key, b, kinOK, fastOK)
				}
				if kinOK {
					accepted++
				} else {
					refused++
				}
			}
		}
		for _, p := range c.params {
			if p.deferToKin {
				continue
			}
			var param *openapi3.Parameter
			for _, ref := range append(append(openapi3.Parameters{}, route.PathItem.Parameters...), route.Operation.Parameters...) {
				if ref.Value.Name == p.name && ref.Value.In == p.in {
					param = ref.Value
				}
			}
			for _, v := range paramValues(param.Schema.Value) {
				req := httptest.NewRequest(route.Method, "/", nil)
				path := map[string]string{}
				switch p.in {
				case openapi3.ParameterInHeader:
					req.Header.Set(p.name, v)
				case openapi3.ParameterInQuery:
					req.URL.RawQuery = url.Values{p.name: {v}}.Encode()
				case openapi3.ParameterInPath:
					path[p.name] = v
				}
				in := &openapi3filter.RequestValidationInput{Request: req, PathParams: path, Route: route, Options: s.options}
				kinOK := openapi3filter.ValidateParameter(req.Context(), in, param) == nil
				var fastOK bool
				if p.integer {
					var n int64
					_, err := fmt.Sscan(v, &n)
					fastOK = err == nil && fmt.Sprint(n) == v && p.schema.validNumber(float64(n))
				} else {
					fastOK = p.schema.validString(v)
				}
				if fastOK && !kinOK {
					t.Errorf("%s %s %s = %q: compiled accepts what kin-openapi refuses", key, p.in, p.name, v)
				}
				if kinOK != fastOK && v != "" {
					t.Errorf("%s %s %s = %q: kin-openapi accepts %v, compiled %v", key, p.in, p.name, v, kinOK, fastOK)
				}
			}
		}
	}
	if accepted < 20 || refused < 200 {
		t.Fatalf("too few cases: %d accepted, %d refused", accepted, refused)
	}
}

// paramValues are parameter values around a schema's rules.
func paramValues(s *openapi3.Schema) []string {
	out := []string{"", "x", "0", "1", "-1", "20", "100", "101", "1.5", "abc", "e447c48a-0ab4-4b74-b6e2-4411a34ce81a",
		"e447c48a-0ab4-4b74-b6e2-4411a34ce81", "key-1", "has space", "\u00e9t\u00e9", "2031-01-01T20:00:00Z"}
	for _, n := range []int{int(s.MinLength) - 1, int(s.MinLength)} {
		if n >= 0 {
			out = append(out, strings.Repeat("k", n))
		}
	}
	if s.MaxLength != nil {
		out = append(out, strings.Repeat("k", int(*s.MaxLength)), strings.Repeat("k", int(*s.MaxLength)+1))
	}
	for _, e := range s.Enum {
		out = append(out, fmt.Sprint(e), fmt.Sprint(e)+"x")
	}
	if s.Min != nil {
		out = append(out, fmt.Sprint(*s.Min), fmt.Sprint(*s.Min-1))
	}
	if s.Max != nil {
		out = append(out, fmt.Sprint(*s.Max), fmt.Sprint(*s.Max+1))
	}
	return out
}

// variants returns v (a value valid for s, or nil) and values derived from it: each property
// removed, added with the scalar candidates, or replaced by them, to depth levels.
func variants(v any, s *openapi3.Schema, depth int) []any {
	out := []any{v}
	out = append(out, scalars(s)...)
	if depth == 0 {
		return out
	}
	props := map[string]*openapi3.Schema{}
	collect(s, props)
	obj, isObj := v.(map[string]any)
	if isObj || len(props) > 0 {
		if obj == nil {
			obj = map[string]any{}
		}
		names := make([]string, 0, len(props))
		for name := range props {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			without := clone(obj)
			delete(without, name)
			out = append(out, without)
			for _, alt := range variants(obj[name], props[name], depth-1) {
				with := clone(obj)
				with[name] = alt
				out = append(out, with)
			}
		}
		extra := clone(obj)
		extra["zz_unknown"] = 1
		out = append(out, extra, map[string]any{})
	}
	if arr, ok := v.([]any); ok {
		var items *openapi3.Schema
		if s != nil && s.Items != nil {
			items = s.Items.Value
		}
		out = append(out, []any{}, append(append([]any{}, arr...), arr...))
		if len(arr) > 0 {
			for _, alt := range variants(arr[0], items, depth-1) {
				out = append(out, append([]any{alt}, arr[1:]...))
			}
		} else {
			for _, alt := range variants(nil, items, depth-1) {
				out = append(out, []any{alt})
			}
		}
	}
	return out
}

// collect gathers the properties of s and its allOf parts.
func collect(s *openapi3.Schema, props map[string]*openapi3.Schema) {
	if s == nil {
		return
	}
	for name, p := range s.Properties {
		props[name] = p.Value
	}
	for _, sub := range s.AllOf {
		collect(sub.Value, props)
	}
}

// scalars are values of every JSON type, and values at and beyond the bounds of s.
func scalars(s *openapi3.Schema) []any {
	out := []any{nil, true, false, 0, 1, -1, 1.5, 100, 101, 1e12, "", "x", "e447c48a-0ab4-4b74-b6e2-4411a34ce81a",
		"E447C48A-0AB4-4B74-B6E2-4411A34CE81A", "not-a-uuid", "2031-01-01T20:00:00Z", "2031-13-01T20:00:00Z", "2031-01-01",
		"https://example.com/x", "a@b.example", "\u00e9\u00e9", "\U0001F600", []any{}, map[string]any{}}
	if s == nil {
		return out
	}
	for _, e := range s.Enum {
		out = append(out, e, fmt.Sprint(e)+"x")
	}
	for _, n := range []int{int(s.MinLength) - 1, int(s.MinLength)} {
		if n >= 0 {
			out = append(out, strings.Repeat("a", n))
		}
	}
	if s.MaxLength != nil {
		out = append(out, strings.Repeat("a", int(*s.MaxLength)), strings.Repeat("a", int(*s.MaxLength)+1),
			strings.Repeat("\U0001F600", int(*s.MaxLength)/2), strings.Repeat("\U0001F600", int(*s.MaxLength)/2+1))
	}
	if s.Min != nil {
		out = append(out, *s.Min, *s.Min-1, *s.Min-0.5)
	}
	if s.Max != nil {
		out = append(out, *s.Max, *s.Max+1, *s.Max+0.5)
	}
	if s.Example != nil {
		out = append(out, s.Example)
	}
	return out
}

func clone(m map[string]any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// TestClosedBodies: a body whose schema refuses unknown members at every level is handed to the
// handler as validated JSON, to be decoded without a strict decoder; any other is not.
func TestClosedBodies(t *testing.T) {
	s := loadPublished(t)
	if c := s.compiled["POST /v1/holds"]; c == nil || !c.closed {
		t.Fatalf("POST /v1/holds: the HoldCreate body (additionalProperties: false) is not closed")
	}
	for _, tc := range []struct {
		schema string
		closed bool
	}{
		{`{"type":"object","additionalProperties":false,"properties":{"a":{"type":"string"}}}`, true},
		{`{"type":"object","properties":{"a":{"type":"string"}}}`, false},
		{`{"type":"object","additionalProperties":false,"properties":{"a":{"type":"object"}}}`, false},
		{`{"type":"object","additionalProperties":false,"properties":{"a":{"type":"array","items":{"type":"integer"}}}}`, true},
		{`{"type":"object","additionalProperties":false,"properties":{"a":{"type":"array","items":{"type":"object"}}}}`, false},
		{`{"type":"object","additionalProperties":false,"properties":{"a":{}}}`, false},
	} {
		var sch openapi3.Schema
		if err := json.Unmarshal([]byte(tc.schema), &sch); err != nil {
			t.Fatal(err)
		}
		n, err := compileSchema(openapi3.NewSchemaRef("", &sch), map[*openapi3.Schema]bool{})
		if err != nil {
			t.Fatalf("%s: %v", tc.schema, err)
		}
		if n.closed() != tc.closed {
			t.Errorf("%s: closed = %v, want %v", tc.schema, n.closed(), tc.closed)
		}
	}
}

// TestValidatedBodyIsStrictOnly: the handler sees the body as validated JSON only when the
// compiled rules accepted it under a closed schema.
func TestValidatedBodyIsStrictOnly(t *testing.T) {
	s := loadPublished(t)
	h, err := s.RequestValidator("POST", "/v1/holds")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		body   string
		strict bool
	}{
		{`{"ticket_type_id":"e447c48a-0ab4-4b74-b6e2-4411a34ce81a","quantity":2}`, true},
		{`{"ticket_type_id":"e447c48a-0ab4-4b74-b6e2-4411a34ce81a","quantity":2,"extra":1}`, false},
	} {
		req := httptest.NewRequest("POST", "/v1/holds", strings.NewReader(tc.body))
		req.Header.Set("Content-Type", "application/json")
		e := echo.New()
		c := e.NewContext(req, httptest.NewRecorder())
		var got bool
		_ = h(func(c echo.Context) error {
			if vb, ok := c.Request().Body.(interface{ ValidatedJSON() ([]byte, bool) }); ok {
				data, ok := vb.ValidatedJSON()
				got = ok && string(data) == tc.body
			}
			return nil
		})(c)
		if got != tc.strict {
			t.Errorf("%s: handed over as validated JSON = %v, want %v", tc.body, got, tc.strict)
		}
	}
}
