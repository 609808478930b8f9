// Package telemetry sets up OpenTelemetry for the process: metrics exposed at /metrics in the
// Prometheus text format, and traces exported over OTLP when an endpoint is configured. Every
// request gets a trace id either way, so log lines can be joined even when nothing is exported.
package telemetry

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/onsale-dev/onsale/internal/platform/config"
)

// Config selects where traces go.
type Config struct {
	OTLPEndpoint string  `env:"ONSALE_OTLP_ENDPOINT" yaml:"otlp_endpoint" secret:"true" help:"OTLP/HTTP trace collector, e.g. http://otel-collector:4318 (user:password@ in it is sent as basic auth); empty exports nothing"`
	SampleRatio  float64 `env:"ONSALE_TRACE_SAMPLE_RATIO" yaml:"trace_sample_ratio" default:"0.1" help:"fraction of new traces exported (0..1); incoming sampled traces are always kept"`
}

// Validate checks the endpoint and ratio.
func (c Config) Validate() error {
	if c.SampleRatio < 0 || c.SampleRatio > 1 {
		return fmt.Errorf("ONSALE_TRACE_SAMPLE_RATIO=%v: want a number from 0 to 1", c.SampleRatio)
	}
	if c.OTLPEndpoint != "" {
		u, err := url.Parse(c.OTLPEndpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("ONSALE_OTLP_ENDPOINT=%q: want an http(s) URL such as http://collector:4318", config.RedactURL(c.OTLPEndpoint))
		}
	}
	return nil
}

// Telemetry holds the process's meter and tracer providers. It uses no globals: callers pass the
// providers (or the meters and tracers made from them) to whatever needs them.
type Telemetry struct {
	Meters     metric.MeterProvider
	Tracers    trace.TracerProvider
	Propagator propagation.TextMapPropagator
	registry   *prometheus.Registry
	shutdown   []func(context.Context) error
}

// New builds the providers. serviceName and version describe the process in every signal.
func New(ctx context.Context, c Config, serviceName, version string) (*Telemetry, error) {
	res := resource.NewWithAttributes(semconv.SchemaURL,
		semconv.ServiceName(serviceName),
		semconv.ServiceVersion(version),
	)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res))
	t := &Telemetry{
		Meters:     mp,
		registry:   reg,
		Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		shutdown:   []func(context.Context) error{mp.Shutdown},
	}

	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if c.OTLPEndpoint != "" {
		u, _ := url.Parse(c.OTLPEndpoint)
		hopts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(u.Host)}
		if u.Scheme == "http" {
			hopts = append(hopts, otlptracehttp.WithInsecure())
		}
		if u.Path != "" && u.Path != "/" {
			hopts = append(hopts, otlptracehttp.WithURLPath(u.Path))
		}
		// WithEndpoint takes host:port only: credentials in the URL travel as a header instead,
		// and so never appear in the exporter's own error messages.
		if u.User != nil {
			pass, _ := u.User.Password()
			basic := base64.StdEncoding.EncodeToString([]byte(u.User.Username() + ":" + pass))
			hopts = append(hopts, otlptracehttp.WithHeaders(map[string]string{"Authorization": "Basic " + basic}))
		}
		te, err := otlptracehttp.New(ctx, hopts...)
		if err != nil {
			return nil, fmt.Errorf("otlp exporter %s: %w", config.RedactURL(c.OTLPEndpoint), config.RedactError(err, c.OTLPEndpoint))
		}
		opts = append(opts,
			sdktrace.WithBatcher(te),
			sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(c.SampleRatio))),
		)
	} else {
		// Nothing to export to: spans are not recorded, but they still get real ids so that logs
		// and propagated headers carry a trace id.
		opts = append(opts, sdktrace.WithSampler(sdktrace.NeverSample()))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	t.Tracers = tp
	t.shutdown = append(t.shutdown, tp.Shutdown)
	return t, nil
}

// Handler serves the metrics in the Prometheus text format.
func (t *Telemetry) Handler() http.Handler {
	return promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{})
}

// Shutdown flushes pending spans and stops the providers.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	for i := len(t.shutdown) - 1; i >= 0; i-- {
		errs = append(errs, t.shutdown[i](ctx))
	}
	return errors.Join(errs...)
}
