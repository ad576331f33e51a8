package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Provider holds the process's OpenTelemetry setup.
type Provider struct {
	// Meter is where the binary's instruments live.
	Meter metric.Meter
	// Tracer traces flushes; a no-op tracer unless OTLP is configured
	// (Tracing reports which).
	Tracer  trace.Tracer
	Tracing bool
	// Handler serves /metrics in the Prometheus text format.
	Handler http.Handler

	shutdown []func(context.Context) error
}

// Options configure Setup. The zero value reads everything from the
// standard OTEL_* environment variables.
type Options struct {
	ServiceVersion string
	// SpanExporter, when set, replaces the OTLP exporter (tests use an
	// in-memory one).
	SpanExporter sdktrace.SpanExporter
}

// otlpConfigured reports whether the standard variables ask for OTLP export
// of signal ("TRACES" or "METRICS"): an endpoint is set and the exporter is
// not "none".
func otlpConfigured(signal string) bool {
	if strings.EqualFold(os.Getenv("OTEL_"+signal+"_EXPORTER"), "none") || os.Getenv("OTEL_SDK_DISABLED") == "true" {
		return false
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_"+signal+"_ENDPOINT") != ""
}

// Setup builds the meter provider (always: /metrics; plus OTLP when
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_METRICS_ENDPOINT is set)
// and the tracer provider (only when an OTLP traces endpoint is set, or
// o.SpanExporter is given: nothing is exported unless configured). It sets
// the global tracer provider and the W3C trace-context propagator.
func Setup(ctx context.Context, o Options) (*Provider, error) {
	res, err := resource.New(ctx,
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
		resource.WithAttributes(semconv.ServiceVersion(o.ServiceVersion)),
	)
	if err != nil {
		return nil, fmt.Errorf("building the telemetry resource: %w", err)
	}
	if os.Getenv("OTEL_SERVICE_NAME") == "" {
		res, _ = resource.Merge(res, resource.NewSchemaless(semconv.ServiceName("segwarehouse")))
	}
	p := &Provider{}

	reg := promclient.NewRegistry()
	promExp, err := prometheus.New(prometheus.WithRegisterer(reg), prometheus.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("building the Prometheus exporter: %w", err)
	}
	mopts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(promExp)}
	if otlpConfigured("METRICS") {
		exp, err := otlpmetricgrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("building the OTLP metric exporter (OTEL_EXPORTER_OTLP_*): %w", err)
		}
		mopts = append(mopts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)))
	}
	mp := sdkmetric.NewMeterProvider(mopts...)
	p.shutdown = append(p.shutdown, mp.Shutdown)
	p.Meter = mp.Meter("github.com/segwarehouse/segwarehouse")
	p.Handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})

	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	exp := o.SpanExporter
	if exp == nil && otlpConfigured("TRACES") {
		exp, err = otlptracegrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("building the OTLP trace exporter (OTEL_EXPORTER_OTLP_*): %w", err)
		}
	}
	if exp == nil {
		p.Tracer = noop.NewTracerProvider().Tracer("")
		return p, nil
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithBatcher(exp))
	otel.SetTracerProvider(tp)
	p.shutdown = append(p.shutdown, tp.Shutdown)
	p.Tracer = tp.Tracer("github.com/segwarehouse/segwarehouse")
	p.Tracing = true
	return p, nil
}

// Shutdown flushes and stops the exporters.
func (p *Provider) Shutdown(ctx context.Context) error {
	var errs []error
	for i := len(p.shutdown) - 1; i >= 0; i-- {
		errs = append(errs, p.shutdown[i](ctx))
	}
	return errors.Join(errs...)
}
