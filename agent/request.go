package agent

import (
	"context"
	"maps"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Proficiency is how well an agent performs a capability; routing treats it
// as a floor a caller may demand.
type Proficiency = meshnodev1.Proficiency

// Proficiency levels.
const (
	Novice      = meshnodev1.Proficiency_PROFICIENCY_NOVICE
	Experienced = meshnodev1.Proficiency_PROFICIENCY_EXPERIENCED
	Expert      = meshnodev1.Proficiency_PROFICIENCY_EXPERT
)

// Capability describes one thing an agent can do. Only Name is required.
type Capability struct {
	// Name is the dotted capability name callers ask for, such as
	// "inventory.lookup": 1-128 bytes of UTF-8, no spaces.
	Name string
	// Attributes are free-form key/values callers constrain on
	// ("region": "eu").
	Attributes map[string]string
	// Proficiency is how well this agent does it; zero means unspecified.
	Proficiency Proficiency
	// Cost of one call in the operator's unit; never negative.
	Cost float64
	// MaxConcurrency is how many calls for this capability the agent runs at
	// once; 0 means no per-capability limit (Agent.MaxInFlight still applies).
	MaxConcurrency int
}

func (c Capability) proto() *meshnodev1.Capability {
	return &meshnodev1.Capability{
		Name:           c.Name,
		Attributes:     maps.Clone(c.Attributes),
		Proficiency:    c.Proficiency,
		Cost:           c.Cost,
		MaxConcurrency: uint32(c.MaxConcurrency),
	}
}

// HandlerFunc serves one call. Its ctx is cancelled when the call's deadline
// passes, when the caller gives up, when the Serve stream to the node breaks
// and when Serve's ctx ends: handlers must return promptly once ctx is done.
// The returned error becomes the caller's error; see Error for how it maps.
// A nil *Response with a nil error is an empty successful answer.
type HandlerFunc func(ctx context.Context, req *Request) (*Response, error)

// Request is one delivered call.
type Request struct {
	// CallID identifies this delivery; calls the handler makes with ctx
	// carry it as their parent, so the node can detect cycles.
	CallID string
	// Capability is the capability invoked.
	Capability string
	// Payload is the request body, owned by the handler.
	Payload []byte
	// ContentType is the caller's MIME type for Payload, possibly empty.
	ContentType string
	// Metadata is the caller's metadata, W3C trace context included.
	Metadata map[string]string
	// Deadline is when the caller stops waiting; zero if none was set.
	Deadline time.Time
	// Caller is the calling agent's id ("<node>/<name>"), empty if the
	// caller is not a registered agent.
	Caller string
	// Chain lists the agents already on this call's path, outermost first.
	Chain []string
	// Attempt counts deliveries of this call, starting at 1; above 1 the
	// mesh is retrying, so side effects should honour IdempotencyKey.
	Attempt int
	// IdempotencyKey is the caller's key, if any: at most one execution per
	// key and agent is the contract callers rely on.
	IdempotencyKey string
	// TaskID is the task this call runs (HandleTask), empty for calls.
	TaskID string
}

func requestFromDelivery(d *meshnodev1.Delivery) *Request {
	r := &Request{
		CallID:         d.GetCallId(),
		Capability:     d.GetCapability(),
		Payload:        d.GetPayload(),
		ContentType:    d.GetContentType(),
		Metadata:       d.GetMetadata(),
		Caller:         d.GetCallerAgentId(),
		Chain:          d.GetChain(),
		Attempt:        int(d.GetAttempt()),
		IdempotencyKey: d.GetIdempotencyKey(),
		TaskID:         d.GetTaskId(),
	}
	if r.Metadata == nil {
		r.Metadata = map[string]string{}
	}
	if d.GetDeadline() != nil {
		r.Deadline = d.GetDeadline().AsTime()
	}
	return r
}

// Response is a handler's successful answer.
type Response struct {
	// Payload is the response body.
	Payload []byte
	// ContentType is the MIME type of Payload.
	ContentType string
	// Metadata is returned to the caller.
	Metadata map[string]string
}

// CallResult is the answer to Call.
type CallResult struct {
	// Payload is the response body.
	Payload []byte
	// ContentType is the MIME type of Payload.
	ContentType string
	// Metadata is what the handler returned.
	Metadata map[string]string
	// AgentID is the agent that answered ("<node>/<name>").
	AgentID string
	// Node is the node the answering agent is attached to.
	Node string
	// Attempts is how many deliveries the mesh made; 1 when the first
	// succeeded.
	Attempts int
	// TraceID is the call's OpenTelemetry trace id, hex.
	TraceID string
}

func callResultFromProto(r *meshnodev1.CallResponse) *CallResult {
	return &CallResult{
		Payload:     r.GetPayload(),
		ContentType: r.GetContentType(),
		Metadata:    r.GetMetadata(),
		AgentID:     r.GetAgentId(),
		Node:        r.GetNode(),
		Attempts:    int(r.GetAttempts()),
		TraceID:     r.GetTraceId(),
	}
}

// callInfo rides in a handler's ctx so that calls made from inside a handler
// name their parent call and the calling agent.
type callInfo struct {
	callID  string
	agentID string
}

type callInfoKey struct{}

func withCallInfo(ctx context.Context, ci callInfo) context.Context {
	return context.WithValue(ctx, callInfoKey{}, ci)
}

func callInfoFrom(ctx context.Context) (callInfo, bool) {
	ci, ok := ctx.Value(callInfoKey{}).(callInfo)
	return ci, ok
}

// CallIDFromContext returns the id of the call a handler's ctx belongs to,
// or "" outside a handler.
func CallIDFromContext(ctx context.Context) string {
	ci, _ := callInfoFrom(ctx)
	return ci.callID
}

// GetPayload returns r.Payload, or nil for a nil *Response.
func (r *Response) GetPayload() []byte {
	if r == nil {
		return nil
	}
	return r.Payload
}

// GetContentType returns r.ContentType, or "" for a nil *Response.
func (r *Response) GetContentType() string {
	if r == nil {
		return ""
	}
	return r.ContentType
}

// GetMetadata returns r.Metadata, or nil for a nil *Response.
func (r *Response) GetMetadata() map[string]string {
	if r == nil {
		return nil
	}
	return r.Metadata
}
