package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/agent"
	"github.com/agentmesh/meshnode/node"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestOneTraceAcrossThreeNodes: a call from n1 to an agent on n2, whose
// handler calls an agent on n3, produces one trace with spans recorded by
// all three nodes.
func TestOneTraceAcrossThreeNodes(t *testing.T) {
	exporters := map[string]*tracetest.InMemoryExporter{}
	nodes := startCluster(t, func(name string) func(*node.Node) {
		exp := tracetest.NewInMemoryExporter()
		exporters[name] = exp
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
		t.Cleanup(func() { tp.Shutdown(context.Background()) })
		return func(n *node.Node) { n.SetTracerProvider(tp) }
	})
	var mid *agent.Agent
	mid, _ = serveAgent(t, nodes[1], "mid", map[string]agent.HandlerFunc{"mid": func(ctx context.Context, req *agent.Request) (*agent.Response, error) {
		res, err := mid.Call(ctx, "leaf", req.Payload)
		if err != nil {
			return nil, err
		}
		return &agent.Response{Payload: res.Payload}, nil
	}})
	serveAgent(t, nodes[2], "leaf", map[string]agent.HandlerFunc{"leaf": echoFrom("n3")})
	waitFor(t, 20*time.Second, "n1 and n2 see mid and leaf ready", func() bool {
		return len(readyAgents(t, nodes[0], "mid")) == 1 && len(readyAgents(t, nodes[1], "leaf")) == 1
	})
	resp, err := meshnodev1.NewInvokeServiceClient(nodes[0].conn(t)).Call(context.Background(), &meshnodev1.CallRequest{Capability: "mid", Payload: []byte("p")})
	if err != nil {
		t.Fatal(err)
	}
	if string(resp.GetPayload()) != "n3:p" || resp.GetTraceId() == "" {
		t.Fatalf("answer %q with trace %q, want n3:p and a trace id", resp.GetPayload(), resp.GetTraceId())
	}
	for _, name := range []string{"n1", "n2", "n3"} {
		found := 0
		for _, s := range exporters[name].GetSpans() {
			if s.SpanContext.TraceID().String() == resp.GetTraceId() {
				found++
			}
		}
		if found == 0 {
			var names []string
			for _, s := range exporters[name].GetSpans() {
				names = append(names, s.Name+"@"+s.SpanContext.TraceID().String())
			}
			t.Errorf("node %s recorded no span of trace %s; it has %v", name, resp.GetTraceId(), names)
		}
	}
}
