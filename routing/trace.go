package routing

import (
	"context"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
)

// Propagator is the W3C trace context plus baggage, the format the agent API
// and the SDK carry in call metadata.
var Propagator propagation.TextMapPropagator = propagation.NewCompositeTextMapPropagator(
	propagation.TraceContext{}, propagation.Baggage{})

// InjectTraceContext returns the W3C headers (traceparent, tracestate,
// baggage) of ctx's span as a map for call metadata; nil when ctx has none.
func InjectTraceContext(ctx context.Context) map[string]string {
	c := propagation.MapCarrier{}
	Propagator.Inject(ctx, c)
	if len(c) == 0 {
		return nil
	}
	return c
}

// ExtractTraceContext returns ctx with the remote span context found in the
// carrier (untrusted: malformed headers are ignored, never an error).
func ExtractTraceContext(ctx context.Context, carrier map[string]string) context.Context {
	if len(carrier) == 0 {
		return ctx
	}
	return Propagator.Extract(ctx, propagation.MapCarrier(carrier))
}

// StartInbound starts the span a callee node opens for a call arriving with
// the given trace context; its parent is the caller's attempt span.
func StartInbound(ctx context.Context, tracer trace.Tracer, capability string, carrier map[string]string) (context.Context, trace.Span) {
	ctx = ExtractTraceContext(ctx, carrier)
	return tracer.Start(ctx, "serve "+capability, trace.WithSpanKind(trace.SpanKindServer))
}

func traceID(s trace.Span) string {
	if sc := s.SpanContext(); sc.HasTraceID() {
		return sc.TraceID().String()
	}
	return ""
}

// Exporter names accepted by NewTracerProvider.
const (
	ExporterNone     = ""
	ExporterStdout   = "stdout"
	ExporterOTLPHTTP = "otlp-http"
)

// NewTracerProvider builds the node's tracer provider. exporter "" records
// nothing, but calls still get trace and span ids and propagate W3C trace
// context; "stdout" writes JSON spans to stdout (endpoint unused);
// "otlp-http" sends OTLP/HTTP to endpoint ("host:port" or a URL; "" uses
// the OTEL_EXPORTER_* environment). Shut it down with its Shutdown method.
func NewTracerProvider(exporter, endpoint string) (*sdktrace.TracerProvider, error) {
	res := resource.NewSchemaless(semconv.ServiceName("meshnode"))
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	sampler := sdktrace.ParentBased(sdktrace.AlwaysSample())
	switch exporter {
	case ExporterNone:
		// Nothing would read a recorded span, and recording them was 6-7%
		// of a busy node's CPU. Unsampled spans still get ids.
		sampler = sdktrace.NeverSample()
	case ExporterStdout:
		exp, err := stdouttrace.New(stdouttrace.WithWriter(os.Stdout))
		if err != nil {
			return nil, fmt.Errorf("stdout trace exporter: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	case ExporterOTLPHTTP:
		var eo []otlptracehttp.Option
		switch {
		case strings.Contains(endpoint, "://"):
			eo = append(eo, otlptracehttp.WithEndpointURL(endpoint))
		case endpoint != "":
			eo = append(eo, otlptracehttp.WithEndpoint(endpoint), otlptracehttp.WithInsecure())
		}
		exp, err := otlptracehttp.New(context.Background(), eo...)
		if err != nil {
			return nil, fmt.Errorf("OTLP/HTTP trace exporter for %q: %w", endpoint, err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	default:
		return nil, fmt.Errorf("unknown trace exporter %q; use \"\", %q or %q", exporter, ExporterStdout, ExporterOTLPHTTP)
	}
	return sdktrace.NewTracerProvider(append(opts, sdktrace.WithSampler(sampler))...), nil
}
