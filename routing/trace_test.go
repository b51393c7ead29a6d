package routing

import (
	"context"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// One call A -> B -> C across three "nodes", each with its own tracer
// provider, linked only by the trace context map carried in the metadata:
// every span of all three nodes is in one trace, parented hop to hop.
func TestTraceSpansThreeNodes(t *testing.T) {
	type node struct {
		exp *tracetest.InMemoryExporter
		tp  *sdktrace.TracerProvider
		r   *Router
	}
	nodes := make([]node, 3)
	for i := range nodes {
		exp := tracetest.NewInMemoryExporter()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
		t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		nodes[i] = node{exp: exp, tp: tp, r: newTestRouter(t, newFakeClock(), uint64(i), func(c *Config) { c.Tracer = tp.Tracer("test") })}
	}
	b := cand("B", "n2")
	c := cand("C", "n3")
	// Node 3 serves C.
	serveC := InvokerFunc(func(ctx context.Context, a Attempt) (bool, error) {
		_, span := StartInbound(context.Background(), nodes[2].tp.Tracer("test"), "cap", a.Meta.TraceContext)
		span.End()
		return true, nil
	})
	// Node 2 serves B, whose handler calls C through node 2's router.
	serveB := InvokerFunc(func(ctx context.Context, a Attempt) (bool, error) {
		sctx, span := StartInbound(context.Background(), nodes[1].tp.Tracer("test"), "cap", a.Meta.TraceContext)
		defer span.End()
		_, err := nodes[1].r.Route(sctx, Request{Capability: "cap", Meta: a.Meta}, []Candidate{c}, serveC)
		return true, err
	})
	res, err := nodes[0].r.Route(context.Background(), Request{Capability: "cap", Meta: Metadata{Chain: []string{"A"}}}, []Candidate{b}, serveB)
	if err != nil {
		t.Fatal(err)
	}
	if res.TraceID == "" {
		t.Fatal("no trace id in result")
	}
	spans := map[trace.SpanID]tracetest.SpanStub{}
	for i, n := range nodes {
		got := n.exp.GetSpans()
		if len(got) == 0 {
			t.Fatalf("node %d recorded no spans", i+1)
		}
		for _, s := range got {
			if s.SpanContext.TraceID().String() != res.TraceID {
				t.Fatalf("node %d span %q in trace %s, want %s", i+1, s.Name, s.SpanContext.TraceID(), res.TraceID)
			}
			spans[s.SpanContext.SpanID()] = s
		}
	}
	if len(spans) != 6 { // route+attempt on n1, serve+route+attempt on n2, serve on n3
		t.Fatalf("got %d spans, want 6", len(spans))
	}
	// Every span but the root has its parent among the recorded spans.
	roots := 0
	for _, s := range spans {
		if !s.Parent.IsValid() {
			roots++
			continue
		}
		if _, ok := spans[s.Parent.SpanID()]; !ok {
			t.Fatalf("span %q has a parent outside the trace", s.Name)
		}
	}
	if roots != 1 {
		t.Fatalf("%d root spans, want 1", roots)
	}
}

func TestNewTracerProvider(t *testing.T) {
	for _, e := range []struct{ exporter, endpoint string }{{"", ""}, {"stdout", ""}, {"otlp-http", "127.0.0.1:4318"}, {"otlp-http", "http://127.0.0.1:4318/v1/traces"}} {
		tp, err := NewTracerProvider(e.exporter, e.endpoint)
		if err != nil {
			t.Fatalf("%q: %v", e.exporter, err)
		}
		if err := tp.Shutdown(context.Background()); err != nil {
			t.Fatalf("%q shutdown: %v", e.exporter, err)
		}
	}
	if _, err := NewTracerProvider("jaeger", ""); err == nil {
		t.Fatal("unknown exporter accepted")
	}
}

// Without an exporter nothing is recorded, but a call must still get a
// trace id and carry W3C context to the next hop.
func TestNoExporterStillAssignsIDs(t *testing.T) {
	tp, err := NewTracerProvider(ExporterNone, "")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tp.Shutdown(context.Background()) }()
	ctx, span := tp.Tracer("t").Start(context.Background(), "call")
	defer span.End()
	if span.IsRecording() {
		t.Error("a span is recorded with no exporter to send it to")
	}
	if !span.SpanContext().TraceID().IsValid() || !span.SpanContext().SpanID().IsValid() {
		t.Fatalf("span context %v has no valid ids", span.SpanContext())
	}
	m := InjectTraceContext(ctx)
	if !strings.Contains(m["traceparent"], span.SpanContext().TraceID().String()) {
		t.Fatalf("traceparent %q does not carry trace id %s", m["traceparent"], span.SpanContext().TraceID())
	}
}

func TestInjectExtractRoundTrip(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	defer func() { _ = tp.Shutdown(context.Background()) }()
	ctx, span := tp.Tracer("t").Start(context.Background(), "x")
	defer span.End()
	m := InjectTraceContext(ctx)
	if m["traceparent"] == "" {
		t.Fatalf("no traceparent: %v", m)
	}
	got := trace.SpanContextFromContext(ExtractTraceContext(context.Background(), m))
	if got.TraceID() != span.SpanContext().TraceID() || got.SpanID() != span.SpanContext().SpanID() {
		t.Fatal("extracted a different span context")
	}
	if InjectTraceContext(context.Background()) != nil {
		t.Fatal("inject without a span produced headers")
	}
}
