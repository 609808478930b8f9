package apispec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers"
	"github.com/labstack/echo/v4"
)

// compiled is one operation's request rules, compiled at load: its parameters and its JSON body.
// A request they accept goes to the handler with its body read once into memory; a request they
// refuse, or one they cannot judge (a parameter with a default kin-openapi would fill in, a body
// of another media type), goes through kin-openapi, which has the last word and renders the
// problem exactly as before. TestCompiledAgreesWithKin proves the two agree on every operation.
type compiled struct {
	params   []compiledParam
	body     *node // nil: the operation takes no body
	required bool  // the body is required
	closed   bool  // the body's schema refuses unknown members at every level
	hasQuery bool
}

type compiledParam struct {
	in, name string
	required bool
	// deferToKin: the parameter has a default (kin-openapi adds it to the request when absent)
	// or a shape the compiled path does not decode; kin-openapi validates such requests.
	deferToKin bool
	integer    bool // decoded as an integer, not a string
	schema     *node
}

// compileOperation compiles an operation's request rules, or says which rule it cannot.
func compileOperation(route *routers.Route) (*compiled, error) {
	c := &compiled{}
	seen := map[*openapi3.Schema]bool{}
	params := append(openapi3.Parameters{}, route.PathItem.Parameters...)
	params = append(params, route.Operation.Parameters...)
	for _, ref := range params {
		p := ref.Value
		cp := compiledParam{in: p.In, name: p.Name, required: p.Required}
		switch {
		case p.Content != nil || p.Schema == nil || p.Schema.Value == nil || p.In == openapi3.ParameterInCookie:
			cp.deferToKin = true
		default:
			s := p.Schema.Value
			n, err := compileSchema(p.Schema, seen)
			if err != nil {
				return nil, fmt.Errorf("parameter %s %s: %w", p.In, p.Name, err)
			}
			cp.schema = n
			switch {
			case s.Default != nil || len(s.AllOf) > 0 || len(s.Enum) > 0 && s.Type != nil && !s.Type.Is(openapi3.TypeString):
				cp.deferToKin = true
			case s.Type != nil && s.Type.Is(openapi3.TypeInteger):
				cp.integer = true
			case s.Type != nil && s.Type.Is(openapi3.TypeString):
			default:
				cp.deferToKin = true
			}
		}
		if p.In == openapi3.ParameterInQuery {
			c.hasQuery = true
		}
		c.params = append(c.params, cp)
	}
	if rb := route.Operation.RequestBody; rb != nil && rb.Value != nil {
		mt := rb.Value.Content.Get("application/json")
		if mt == nil || len(rb.Value.Content) != 1 {
			return nil, fmt.Errorf("a request body other than application/json alone is not supported")
		}
		n, err := compileSchema(mt.Schema, seen)
		if err != nil {
			return nil, fmt.Errorf("request body: %w", err)
		}
		c.body, c.required, c.closed = n, rb.Value.Required, n.closed()
	}
	return c, nil
}

// paramsValid reports whether every parameter is present when required and valid when present;
// false also when a parameter is for kin-openapi to judge.
func (c *compiled) paramsValid(ec echo.Context) bool {
	req := ec.Request()
	var query map[string][]string
	if c.hasQuery {
		query = req.URL.Query()
	}
	for i := range c.params {
		p := &c.params[i]
		if p.deferToKin {
			return false
		}
		var v string
		var found bool
		switch p.in {
		case openapi3.ParameterInPath:
			v = ec.Param(p.name)
			found = v != ""
		case openapi3.ParameterInHeader:
			vs := req.Header.Values(p.name)
			if found = len(vs) > 0; found {
				v = vs[0]
			}
		case openapi3.ParameterInQuery:
			vs := query[p.name]
			if found = len(vs) > 0; found {
				v = vs[0]
			}
		}
		if !found {
			if p.required {
				return false
			}
			continue
		}
		if p.integer {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || !p.schema.validNumber(float64(n)) {
				return false
			}
			continue
		}
		if !p.schema.validString(v) {
			return false
		}
	}
	return true
}

// bodyBuffer holds a request body while its request is served.
type bodyBuffer struct {
	buf    bytes.Buffer
	reader bytes.Reader
	// strict: the compiled rules accepted the body against a schema that refuses unknown
	// members at every level.
	strict bool
}

// ValidatedJSON returns the body when the compiled rules accepted it against a schema that
// refuses unknown members at every level: a handler may then decode it directly, without a
// strict decoder's second look for unknown members and trailing data.
func (b *bodyBuffer) ValidatedJSON() ([]byte, bool) {
	if !b.strict {
		return nil, false
	}
	return b.buf.Bytes(), true
}

// Close satisfies io.ReadCloser; the buffer goes back to its pool when the request ends.
func (b *bodyBuffer) Close() error { return nil }

// Read reads the buffered body.
func (b *bodyBuffer) Read(p []byte) (int, error) { return b.reader.Read(p) }

var _ io.ReadCloser = (*bodyBuffer)(nil)

// jsonMedia reports whether a Content-Type names JSON, as kin-openapi decides which decoder to use.
func jsonMedia(ct string) bool {
	if ct == "application/json" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

// validate runs the compiled rules; it returns ok false when kin-openapi must judge the request.
// When it returns a buffer, the request's body has been replaced by that buffered copy, which
// goes back to bodies when the request ends.
func (c *compiled) validate(ec echo.Context, bodies *sync.Pool) (ok bool, buf *bodyBuffer, err error) {
	if !c.paramsValid(ec) {
		return false, nil, nil
	}
	req := ec.Request()
	if c.body == nil {
		return true, nil, nil
	}
	if req.Body == nil || req.Body == http.NoBody || !jsonMedia(req.Header.Get(echo.HeaderContentType)) {
		return false, nil, nil
	}
	b := bodies.Get().(*bodyBuffer)
	b.buf.Reset()
	b.strict = false
	if _, err := b.buf.ReadFrom(req.Body); err != nil {
		bodies.Put(b)
		return false, nil, err
	}
	_ = req.Body.Close()
	data := b.buf.Bytes()
	b.reader.Reset(data)
	req.Body = b
	if len(bytes.TrimSpace(data)) == 0 {
		return !c.required, b, nil
	}
	ok = json.Valid(data) && c.body.valid(data)
	b.strict = ok && c.closed
	return ok, b, nil
}
