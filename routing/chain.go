package routing

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Metadata travels with a call from hop to hop (meshnodev1.RoutingMetadata).
type Metadata struct {
	// Agents already on the call, outermost first. At the caller's node the
	// last entry is the calling agent; in an Attempt's Meta it is the callee.
	Chain []string
	// Agent-to-agent hops so far (0 for a call made by a top-level agent).
	Hops int
	// Absolute deadline; zero means the policy's default timeout from now.
	Deadline time.Time
	// Attempt number, from 1; set by the router on outgoing attempts.
	Attempt int
	// The caller's idempotency key; a started call is retried only with one
	// (or when Idempotent is set).
	IdempotencyKey string
	// The caller declares the call safe to repeat. Local to the caller's
	// node; not carried on the wire.
	Idempotent bool
	// W3C trace context; the router fills it on outgoing attempts.
	TraceContext map[string]string
}

// Limits on metadata from peers (untrusted).
const (
	maxChain       = maxMaxHops + 1
	maxIDLen       = 256
	maxTraceKeys   = 16
	maxTraceKeyLen = 64
	maxTraceValLen = 8192 // W3C baggage may be this long
)

// MetadataFromProto decodes metadata received from a peer or the socket,
// enforcing size limits. It checks shape only; CheckInbound checks cycles,
// hops and the deadline against the policy.
func MetadataFromProto(m *meshnodev1.RoutingMetadata) (Metadata, error) {
	var out Metadata
	if m == nil {
		return out, nil
	}
	if len(m.GetChain()) > maxChain {
		return out, fieldErr("routing.chain", "at most %d agents, got %d", maxChain, len(m.GetChain()))
	}
	for i, id := range m.GetChain() {
		if id == "" || len(id) > maxIDLen {
			return out, fieldErr(fmt.Sprintf("routing.chain[%d]", i), "agent id must be 1-%d bytes", maxIDLen)
		}
	}
	if m.GetHops() > maxChain {
		return out, fieldErr("routing.hops", "at most %d, got %d", maxChain, m.GetHops())
	}
	if len(m.GetIdempotencyKey()) > maxIDLen {
		return out, fieldErr("routing.idempotency_key", "at most %d bytes", maxIDLen)
	}
	if len(m.GetTraceContext()) > maxTraceKeys {
		return out, fieldErr("routing.trace_context", "at most %d entries", maxTraceKeys)
	}
	for k, v := range m.GetTraceContext() {
		if len(k) == 0 || len(k) > maxTraceKeyLen || len(v) > maxTraceValLen {
			return out, fieldErr("routing.trace_context", "entry %.64q too long or empty", k)
		}
	}
	if d := m.GetDeadline(); d != nil {
		if err := d.CheckValid(); err != nil {
			return out, fieldErr("routing.deadline", "%v", err)
		}
		out.Deadline = d.AsTime()
	}
	out.Chain = slices.Clone(m.GetChain())
	out.Hops = int(m.GetHops())
	out.Attempt = int(m.GetAttempt())
	out.IdempotencyKey = m.GetIdempotencyKey()
	if len(m.GetTraceContext()) > 0 {
		out.TraceContext = make(map[string]string, len(m.GetTraceContext()))
		for k, v := range m.GetTraceContext() {
			out.TraceContext[k] = v
		}
	}
	return out, nil
}

// ToProto encodes metadata for the wire.
func (m Metadata) ToProto() *meshnodev1.RoutingMetadata {
	out := &meshnodev1.RoutingMetadata{
		Chain:          slices.Clone(m.Chain),
		Hops:           uint32(max(m.Hops, 0)),
		Attempt:        uint32(max(m.Attempt, 0)),
		IdempotencyKey: m.IdempotencyKey,
		TraceContext:   m.TraceContext,
	}
	if !m.Deadline.IsZero() {
		out.Deadline = timestamppb.New(m.Deadline)
	}
	return out
}

// formatCycle renders the chain from agent's first appearance back to it: "a -> b -> a".
func formatCycle(chain []string, agent string) string {
	i := slices.Index(chain, agent)
	if i < 0 {
		i = len(chain)
	}
	return strings.Join(append(slices.Clone(chain[i:]), agent), " -> ")
}

func cycleError(chain []string, agent string) error {
	return newStatus(codes.FailedPrecondition, ErrCycle,
		"call cycle %s: agent %q is already on this call's chain; break the recursion or route to another agent", formatCycle(chain, agent), agent)
}

func hopError(chain []string, hops, limit int) error {
	return newStatus(codes.FailedPrecondition, ErrHopLimit,
		"call chain %s would make hop %d; the hop limit is %d (policy max_hops)", strings.Join(chain, " -> "), hops, limit)
}

// checkOutbound refuses a call that would exceed the hop limit, and a chain
// that already holds a cycle.
func checkOutbound(m Metadata, p *Policy) error {
	if m.Hops+1 > p.MaxHops {
		return hopError(m.Chain, m.Hops+1, p.MaxHops)
	}
	for i, id := range m.Chain {
		if slices.Contains(m.Chain[:i], id) {
			return cycleError(m.Chain[:i], id)
		}
	}
	return nil
}

// CheckInbound is the callee node's check of a call arriving from a peer:
// the callee (the chain's last agent) must not already be on the chain, the
// hop count must be within the policy's limit, and enough time must remain.
func CheckInbound(now time.Time, m Metadata, p Policy) error {
	if p.MaxHops == 0 {
		p = DefaultPolicy()
	}
	if m.Hops > p.MaxHops {
		return hopError(m.Chain, m.Hops, p.MaxHops)
	}
	for i, id := range m.Chain {
		if slices.Contains(m.Chain[:i], id) {
			return cycleError(m.Chain[:i], id)
		}
	}
	if !m.Deadline.IsZero() {
		if left := m.Deadline.Sub(now); left < p.Deadline.MinRemaining {
			return newStatus(codes.DeadlineExceeded, ErrDeadline,
				"call arrived with %v left, below the %v minimum; give the caller a longer deadline", left.Round(time.Microsecond), p.Deadline.MinRemaining)
		}
	}
	return nil
}

// CheckForwarded is the callee node's one check of a call a peer forwarded
// to its agent target: the chain must end with the target and the call must
// carry a deadline that has not passed; then CheckInbound's rules (cycles,
// the policy's hop limit and minimum time left).
func CheckForwarded(now time.Time, m Metadata, target string, p Policy) error {
	if len(m.Chain) == 0 || m.Chain[len(m.Chain)-1] != target {
		return newStatus(codes.InvalidArgument, ErrBadMetadata, "routing metadata: chain must end with the target agent %s", target)
	}
	if m.Deadline.IsZero() {
		return newStatus(codes.InvalidArgument, ErrBadMetadata, "routing metadata: no deadline")
	}
	if !m.Deadline.After(now) {
		return newStatus(codes.DeadlineExceeded, ErrDeadline, "deadline passed before the call reached %s", target)
	}
	return CheckInbound(now, m, p)
}

func newStatus(c codes.Code, sentinel error, format string, args ...any) error {
	return &statusError{st: status.Newf(c, format, args...), sentinel: sentinel}
}
