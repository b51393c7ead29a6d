package dataplane

import (
	"context"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ReceiveStream is the callee half of a streaming call: a peer node,
// authenticated as fromNode, sends one ForwardCallRequest on st and reads
// the agent's frames back on the same QUIC stream. Checks are Receive's.
// Each frame is sent before the next is read from the agent, so QUIC's
// flow control toward the caller's node is what paces the agent.
func (p *Plane) ReceiveStream(ctx context.Context, fromNode string, st PeerStream) error {
	req := &meshnodev1.ForwardCallRequest{}
	if err := st.Recv(req); err != nil {
		return status.Errorf(codes.InvalidArgument, "reading the forwarded streaming call: %v", status.Convert(err).Message())
	}
	in, err := p.inbound(ctx, fromNode, req)
	if err != nil {
		return err
	}
	ctx, span, done := p.inboundContext(ctx, in)
	defer done()
	start := p.cfg.Clock.Now()
	var chunks int64
	err = p.relay(ctx, in, st, &chunks)
	span.SetAttributes(attribute.Int64("meshnode.stream.chunks", chunks))
	p.logCall(ctx, callLine{side: "callee", fromNode: fromNode, caller: in.d.GetCallerAgentId(), callee: in.target, capability: in.d.GetCapability(),
		attempt: int(in.d.GetAttempt()), latency: p.cfg.Clock.Now().Sub(start), err: err})
	return err
}

// relay delivers the call to the local agent and passes its frames to st
// until the end, an error frame, or a failure (returned as the stream's
// status).
func (p *Plane) relay(ctx context.Context, in inboundCall, st PeerStream, chunks *int64) error {
	r, err := p.cfg.Local.DeliverStream(ctx, in.target, in.d, in.cc)
	if err != nil {
		return err
	}
	defer r.Close()
	for {
		f, err := r.Next(ctx)
		if err != nil {
			return err
		}
		if err := st.Send(f); err != nil {
			return err
		}
		if f.GetChunk() == nil {
			return nil
		}
		*chunks++
	}
}
