// Package apitest drives a module's routes over real HTTP, through the same edge the server uses
// (request validation, problem documents), and checks every response it sees against the OpenAPI
// document, so a handler cannot drift from the contract without a test failing.
package apitest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/onsale-dev/onsale/api"
	"github.com/onsale-dev/onsale/internal/platform/apispec"
	"github.com/onsale-dev/onsale/internal/platform/httpserver"
	"github.com/onsale-dev/onsale/internal/platform/logging"
	"github.com/onsale-dev/onsale/internal/platform/telemetry"
)

// Server is a test server with a module's routes.
type Server struct {
	URL  string
	Spec *apispec.Spec
	HTTP *httpserver.Server
	t    testing.TB
}

// NewServer serves routes on a local port through httpserver with the published document, and
// stops when the test ends. cfg tweaks the server configuration (nil keeps the defaults).
func NewServer(t testing.TB, cfg func(*httpserver.Config), routes ...httpserver.Route) *Server {
	t.Helper()
	spec, err := apispec.Load(api.Spec)
	if err != nil {
		t.Fatalf("load spec: %v", err)
	}
	tel, err := telemetry.New(t.Context(), telemetry.Config{}, "onsale-test", "test")
	if err != nil {
		t.Fatalf("telemetry: %v", err)
	}
	c := httpserver.Config{
		Addr: "127.0.0.1:0", ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second,
		WriteTimeout: 15 * time.Second, IdleTimeout: time.Minute, RequestTimeout: 10 * time.Second,
		BodyLimit: 64 << 10, MaxInFlight: 4096,
	}
	if cfg != nil {
		cfg(&c)
	}
	srv, err := httpserver.New(c, httpserver.Deps{
		Log: logging.Discard(), Meters: tel.Meters, Tracers: tel.Tracers,
		Propagator: propagation.TraceContext{}, Spec: spec,
	})
	if err != nil {
		t.Fatalf("http server: %v", err)
	}
	if err := srv.Register(routes...); err != nil {
		t.Fatalf("register routes: %v", err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &Server{URL: hs.URL, Spec: spec, HTTP: srv, t: t}
}

// Response is a checked response.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v, failing the test if it cannot.
func (r *Response) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// Map decodes the body as a JSON object.
func (r *Response) Map(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	r.JSON(t, &m)
	return m
}

// ProblemType is the body's problem type, or "" when it is not a problem document.
func (r *Response) ProblemType() string {
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/problem+json") {
		return ""
	}
	var p struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(r.Body, &p)
	return p.Type
}

// Request describes one call.
type Request struct {
	Method string
	Path   string
	Token  string // bearer token, if any
	Body   any    // marshalled to JSON; a string or []byte is sent as is
	Header map[string]string
}

// Do sends the request and checks the response: it must match the document (status, headers,
// body), carry an X-Request-Id, and be a problem document when it is an error.
func (s *Server) Do(req Request) *Response {
	s.t.Helper()
	var body io.Reader
	switch b := req.Body.(type) {
	case nil:
	case string:
		body = strings.NewReader(b)
	case []byte:
		body = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			s.t.Fatalf("marshal body: %v", err)
		}
		body = bytes.NewReader(data)
	}
	hreq, err := http.NewRequest(req.Method, s.URL+req.Path, body)
	if err != nil {
		s.t.Fatalf("new request: %v", err)
	}
	if body != nil {
		hreq.Header.Set("Content-Type", "application/json")
	}
	if req.Token != "" {
		hreq.Header.Set("Authorization", "Bearer "+req.Token)
	}
	for k, v := range req.Header {
		hreq.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		s.t.Fatalf("%s %s: %v", req.Method, req.Path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("read body: %v", err)
	}
	r := &Response{Status: resp.StatusCode, Header: resp.Header, Body: data}
	if resp.Header.Get("X-Request-Id") == "" {
		s.t.Errorf("%s %s: no X-Request-Id", req.Method, req.Path)
	}
	if r.Status >= 400 && r.ProblemType() == "" {
		s.t.Errorf("%s %s: %d without a problem document: %s", req.Method, req.Path, r.Status, data)
	}
	if r.Status >= 500 && r.Status != http.StatusServiceUnavailable {
		s.t.Errorf("%s %s: server error %d: %s", req.Method, req.Path, r.Status, data)
	}
	s.check(hreq, r)
	return r
}

func (s *Server) check(hreq *http.Request, r *Response) {
	s.t.Helper()
	if r.Status == http.StatusNotFound && r.ProblemType() == "https://onsale.dev/problems/not-found" {
		return // an unknown path: nothing in the document to hold it to
	}
	if r.Status == http.StatusMethodNotAllowed {
		return
	}
	checkReq, _ := http.NewRequest(hreq.Method, hreq.URL.String(), nil)
	checkReq.Header = hreq.Header.Clone()
	if err := s.Spec.ValidateResponse(checkReq, "", r.Status, r.Header, r.Body); err != nil {
		s.t.Errorf("%s %s: response %d does not match the API document: %v\nbody: %s",
			hreq.Method, hreq.URL.Path, r.Status, firstLine(err.Error()), r.Body)
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Expect fails the test unless the response has the status (and, for problems, the type ending
// with typeSuffix when it is not empty).
func (r *Response) Expect(t testing.TB, status int, typeSuffix string) *Response {
	t.Helper()
	if r.Status != status {
		t.Fatalf("want %d, got %d: %s", status, r.Status, r.Body)
	}
	if typeSuffix != "" && !strings.HasSuffix(r.ProblemType(), typeSuffix) {
		t.Fatalf("want problem type ending %q, got %q: %s", typeSuffix, r.ProblemType(), r.Body)
	}
	return r
}
