package dataplane

import (
	"context"
	"errors"
	"fmt"

	"github.com/agentmesh/meshnode/internal/hub"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/routing"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// frameSource is where an open stream's frames come from: a local agent
// (the hub's Reply) or a peer node (a QUIC stream). Neither buffers more
// than its leg's flow control allows.
type frameSource interface {
	next(ctx context.Context) (*meshnodev1.StreamFrame, error)
	close()
}

// openStream is a stream that delivered its first frame: the router's
// attempt succeeded, and the rest is pumped outside the router.
type openStream struct {
	ctx   context.Context // the stream's own: ends with the call, or when its node is declared dead
	src   frameSource
	first *meshnodev1.StreamFrame
	agent routing.Candidate
}

// CallStream routes a streaming call from a process on the socket, owner,
// and passes its chunks to send as they come, then its end. The router
// owns the attempts until the first frame arrives: until then an attempt
// that fails may be retried elsewhere, as a unary call would be. After the
// first chunk, a failure ends the stream with an error whose StreamBroken
// detail names the last chunk delivered; nothing is replayed.
//
// send blocks while the caller is slow; so does this loop, and so, leg by
// leg, does the agent's handler.
func (p *Plane) CallStream(ctx context.Context, owner hub.Owner, req *meshnodev1.CallRequest, send func(*meshnodev1.CallStreamResponse) error) error {
	c, err := p.plan(ctx, owner, req)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithDeadline(ctx, c.route.Meta.Deadline)
	defer cancel()
	cands, pol, err := p.cfg.Catalog.Resolve(ctx, req.GetCapability())
	if err != nil {
		return err
	}
	c.route.Policy = pol
	ctx = routing.ExtractTraceContext(ctx, req.GetMetadata())
	ctx, span := p.cfg.Tracer.Start(ctx, "stream "+req.GetCapability(), trace.WithSpanKind(trace.SpanKindServer))
	defer span.End()
	start := p.cfg.Clock.Now()
	var open openStream
	var last routing.Attempt
	res, err := p.cfg.Router.Route(ctx, c.route, cands, routing.AnswerFunc(func(actx context.Context, a routing.Attempt) (*meshnodev1.CallResult, bool, error) {
		last = a
		o, started, err := p.openAttempt(ctx, actx, c, a)
		if err != nil {
			return nil, started, err
		}
		open = o
		return &meshnodev1.CallResult{}, true, nil
	}))
	var sent pumped
	if err == nil {
		sent, err = p.pump(open, res, send)
		open.src.close()
	}
	took := p.cfg.Clock.Now().Sub(start)
	p.cfg.Catalog.ObserveCall(took, err == nil)
	p.logCall(ctx, callLine{side: "caller", caller: c.caller, callee: last.Candidate.AgentID, capability: req.GetCapability(),
		attempt: last.Number, latency: took, err: err})
	span.SetAttributes(attribute.Int64("meshnode.stream.chunks", int64(sent.chunks)), attribute.Int64("meshnode.stream.bytes", sent.bytes),
		attribute.String("meshnode.agent_id", last.Candidate.AgentID))
	if err != nil {
		span.SetStatus(otelcodes.Error, err.Error())
	}
	return err
}

// openAttempt starts one attempt's stream and waits for its first frame.
// The stream lives on the call's context, not the attempt's (the router
// ends that when the attempt returns), but the attempt's end cuts it until
// the first frame is in.
func (p *Plane) openAttempt(callCtx, actx context.Context, c *call, a routing.Attempt) (openStream, bool, error) {
	if err := p.authorize(actx, c.caller, c.req.GetCapability(), a.Candidate.AgentID); err != nil {
		return openStream{}, false, err
	}
	cctx, cancelCause := context.WithCancelCause(callCtx)
	sctx, cancelDeadline := context.WithDeadline(cctx, a.Deadline)
	cancel := func() { cancelDeadline(); cancelCause(nil) }
	stop := context.AfterFunc(actx, cancel)
	d := c.delivery(a)
	var (
		src     frameSource
		started bool
		err     error
	)
	if a.Candidate.Node == p.cfg.LocalNode {
		src, started, err = p.localStream(sctx, a.Candidate.AgentID, d, localContext(d, a))
	} else {
		src, started, err = p.remoteStream(sctx, cancelCause, a.Candidate, d, a.Meta.ToProto())
	}
	var first *meshnodev1.StreamFrame
	if err == nil {
		first, err = src.next(sctx)
		if err != nil {
			// As for unary calls, the callee's Unavailable and
			// ResourceExhausted mean the agent never got the call.
			c := status.Code(err)
			started = (c != codes.Unavailable && c != codes.ResourceExhausted) || sctx.Err() != nil
			err = p.sourceError(sctx, a.Candidate, err)
		}
	}
	if err == nil && first.GetError() != nil {
		err = agentErrorFrom(first.GetError())
	}
	if !stop() && err == nil {
		err = ctxStatus(actx, "waiting for the first chunk from "+a.Candidate.AgentID)
	}
	if err != nil {
		if src != nil {
			src.close()
		}
		cancel()
		var ae *agentError
		if errors.As(err, &ae) && ae.retryable {
			err = routing.MarkRetryable(err)
		}
		return openStream{}, started, err
	}
	return openStream{ctx: sctx, src: closing{src, cancel}, first: first, agent: a.Candidate}, true, nil
}

// closing releases the stream's context with its source.
type closing struct {
	frameSource
	cancel context.CancelFunc
}

func (c closing) close() {
	c.frameSource.close()
	c.cancel()
}

// pumped counts what reached the caller.
type pumped struct {
	chunks, last uint64
	bytes        int64
}

// pump passes an open stream's frames to the caller in order until its end.
func (p *Plane) pump(open openStream, res routing.Result, send func(*meshnodev1.CallStreamResponse) error) (pumped, error) {
	var n pumped
	f := open.first
	for {
		switch fr := f.GetFrame().(type) {
		case *meshnodev1.StreamFrame_Chunk:
			if seq := fr.Chunk.GetSeq(); seq != n.last+1 {
				return n, broken(status.Errorf(codes.Internal, "chunk %d arrived where %d was due", seq, n.last+1), n.last, open.agent)
			}
			if err := send(&meshnodev1.CallStreamResponse{Event: &meshnodev1.CallStreamResponse_Chunk{Chunk: fr.Chunk}}); err != nil {
				return n, err // the caller is gone; nobody hears more
			}
			n.chunks++
			n.last = fr.Chunk.GetSeq()
			n.bytes += int64(len(fr.Chunk.GetData()))
		case *meshnodev1.StreamFrame_End:
			end := &meshnodev1.StreamEnd{AgentId: open.agent.AgentID, Node: open.agent.Node, Attempts: uint32(res.Attempts),
				TraceId: res.TraceID, Metadata: fr.End.GetMetadata(), Chunks: n.chunks}
			return n, send(&meshnodev1.CallStreamResponse{Event: &meshnodev1.CallStreamResponse_End{End: end}})
		case *meshnodev1.StreamFrame_Error:
			return n, broken(agentErrorFrom(fr.Error), n.last, open.agent)
		default:
			return n, broken(status.Error(codes.Internal, "an empty stream frame"), n.last, open.agent)
		}
		var err error
		if f, err = open.src.next(open.ctx); err != nil {
			return n, broken(p.sourceError(open.ctx, open.agent, err), n.last, open.agent)
		}
	}
}

// sourceError names what ended a stream's source early.
func (p *Plane) sourceError(ctx context.Context, agent routing.Candidate, err error) error {
	switch {
	case errors.Is(context.Cause(ctx), errNodeDied):
		return status.Errorf(codes.Unavailable, "node %s of agent %s was declared dead while streaming", agent.Node, agent.AgentID)
	case ctx.Err() != nil:
		return ctxStatus(ctx, "streaming from "+agent.AgentID)
	}
	return err
}

// broken adds the StreamBroken detail to a stream's failure, so the caller
// knows the last chunk it holds.
func broken(err error, last uint64, agent routing.Candidate) error {
	st := status.Convert(err)
	msg := st.Message()
	if last > 0 {
		msg = fmt.Sprintf("%s (after chunk %d; the stream is not resumed)", msg, last)
	}
	out, derr := status.New(st.Code(), msg).WithDetails(&meshnodev1.StreamBroken{LastSeq: last, AgentId: agent.AgentID, Node: agent.Node})
	if derr != nil {
		return status.Error(st.Code(), msg)
	}
	return out.Err()
}

// localStream delivers a streaming call to an agent on this node.
func (p *Plane) localStream(ctx context.Context, agentID string, d *meshnodev1.Delivery, cc hub.CallContext) (frameSource, bool, error) {
	r, err := p.cfg.Local.DeliverStream(ctx, agentID, d, cc)
	if err != nil {
		c := status.Code(err)
		return nil, c != codes.Unavailable && c != codes.ResourceExhausted, err
	}
	return hubSource{r}, true, nil
}

type hubSource struct{ r *hub.Reply }

func (h hubSource) next(ctx context.Context) (*meshnodev1.StreamFrame, error) { return h.r.Next(ctx) }
func (h hubSource) close()                                                    { h.r.Close() }

// remoteStream opens one QUIC stream to the agent's node and sends the
// call. cancel (ctx's own) is how NodeGone ends the stream when gossip
// declares the node dead: QUIC alone would hold it until its idle timeout.
func (p *Plane) remoteStream(ctx context.Context, cancel context.CancelCauseFunc, agent routing.Candidate, d *meshnodev1.Delivery, meta *meshnodev1.RoutingMetadata) (frameSource, bool, error) {
	addr, ok := p.cfg.Catalog.NodeAddress(agent.Node)
	if !ok {
		return nil, false, status.Errorf(codes.Unavailable, "node %s of agent %s has no known address", agent.Node, agent.AgentID)
	}
	st, err := p.cfg.Peers.OpenStream(ctx, addr, MethodForwardStream)
	if err != nil {
		return nil, false, err
	}
	d.Streaming = true
	if err := st.Send(&meshnodev1.ForwardCallRequest{TargetAgentId: agent.AgentID, Delivery: d, Routing: meta}); err != nil {
		st.Close()
		return nil, false, err
	}
	st.CloseSend()
	return &peerSource{st: st, forget: p.inflight.track(agent.Node, cancel)}, true, nil
}

// peerSource reads frames from a peer. Its stream is bound to the
// stream's context, which ends a blocked Recv.
type peerSource struct {
	st     PeerStream
	forget func()
}

func (s *peerSource) next(context.Context) (*meshnodev1.StreamFrame, error) {
	f := &meshnodev1.StreamFrame{}
	if err := s.st.Recv(f); err != nil {
		return nil, err
	}
	return f, nil
}

func (s *peerSource) close() {
	s.forget()
	s.st.Close()
}
