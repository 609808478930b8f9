package telemetry

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestOTLPExport: with an endpoint configured, sampled spans reach it over OTLP/HTTP.
func TestOTLPExport(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	var body []byte
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		mu.Lock()
		paths = append(paths, r.Method+" "+r.URL.Path)
		body = append(body, data...)
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer collector.Close()

	tel, err := New(context.Background(), Config{OTLPEndpoint: collector.URL, SampleRatio: 1}, "onsale-test", "v0")
	if err != nil {
		t.Fatal(err)
	}
	_, span := tel.Tracers.Tracer("test").Start(context.Background(), "hold-tickets")
	span.End()
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(paths) == 0 || paths[0] != "POST /v1/traces" {
		t.Fatalf("collector saw %v, want POST /v1/traces", paths)
	}
	if !strings.Contains(string(body), "hold-tickets") {
		t.Fatal("the exported spans do not include the one made")
	}
}

// TestNoEndpointStillGivesTraceIDs: without an exporter spans are not recorded, but requests still
// get real trace ids for their log lines.
func TestNoEndpointStillGivesTraceIDs(t *testing.T) {
	tel, err := New(context.Background(), Config{SampleRatio: 0.1}, "onsale-test", "v0")
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	_, span := tel.Tracers.Tracer("test").Start(context.Background(), "x")
	defer span.End()
	if !span.SpanContext().TraceID().IsValid() {
		t.Fatal("no trace id without an exporter")
	}
	if span.IsRecording() {
		t.Fatal("spans recorded with nowhere to send them")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{{SampleRatio: -0.1}, {SampleRatio: 1.5}, {SampleRatio: 1, OTLPEndpoint: "collector:4318"}} {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if err := (Config{SampleRatio: 0.5, OTLPEndpoint: "http://collector:4318"}).Validate(); err != nil {
		t.Errorf("valid config refused: %v", err)
	}
}

// TestOTLPCredentials: user:password@ in the endpoint reaches the collector as basic auth, and a
// rejected endpoint's error does not repeat the password.
func TestOTLPCredentials(t *testing.T) {
	auth := make(chan string, 10)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth <- r.Header.Get("Authorization")
		w.WriteHeader(http.StatusOK)
	}))
	defer collector.Close()
	endpoint := strings.Replace(collector.URL, "http://", "http://otel:OtlpPw@", 1)
	tel, err := New(context.Background(), Config{OTLPEndpoint: endpoint, SampleRatio: 1}, "onsale-test", "v0")
	if err != nil {
		t.Fatal(err)
	}
	_, span := tel.Tracers.Tracer("test").Start(context.Background(), "x")
	span.End()
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := <-auth, "Basic "+base64.StdEncoding.EncodeToString([]byte("otel:OtlpPw")); got != want {
		t.Errorf("Authorization = %q, want %q", got, want)
	}

	err = Config{SampleRatio: 1, OTLPEndpoint: "ftp://otel:OtlpPw@collector:4318"}.Validate()
	if err == nil || strings.Contains(err.Error(), "OtlpPw") || !strings.Contains(err.Error(), "ONSALE_OTLP_ENDPOINT") {
		t.Errorf("Validate of an ftp endpoint with a password: %v", err)
	}
}
