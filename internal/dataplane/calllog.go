package dataplane

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// callLine is what one debug line says about a call. The caller's node
// writes one per Call (its last attempt's callee and number); the callee's
// node one per forwarded attempt it received.
type callLine struct {
	side       string // "caller" or "callee"
	fromNode   string // callee side: the node that forwarded the call
	caller     string // calling agent id, "" when not made for an agent
	callee     string // agent that answered or was last tried, "" if none was
	capability string
	attempt    int
	latency    time.Duration
	err        error
}

// logCall writes l at Debug level. The check comes first so that a node
// logging at info pays nothing per call beyond it.
func (p *Plane) logCall(ctx context.Context, l callLine) {
	log := p.cfg.Logger
	if !log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	attrs := []slog.Attr{
		slog.String("side", l.side),
		slog.String("caller_agent", l.caller),
		slog.String("callee_agent", l.callee),
		slog.String("capability", l.capability),
		slog.String("outcome", outcomeCode(l.err).String()),
		slog.Duration("latency", l.latency),
		slog.Int("attempt", l.attempt),
	}
	if l.fromNode != "" {
		attrs = append(attrs, slog.String("from_node", l.fromNode))
	}
	if l.err != nil {
		attrs = append(attrs, slog.String("err", l.err.Error()))
	}
	log.LogAttrs(ctx, slog.LevelDebug, "call", attrs...)
}

// outcomeCode is the gRPC code a call ended with: the agent's own code for
// an error the agent reported.
func outcomeCode(err error) codes.Code {
	var ae *agentError
	if errors.As(err, &ae) {
		return ae.code
	}
	return status.Code(err)
}
