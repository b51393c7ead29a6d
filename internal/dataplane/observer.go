package dataplane

import (
	"errors"
	"time"

	"github.com/agentmesh/meshnode/routing"
	"google.golang.org/grpc/codes"
)

// CallEvent is one finished call as one side of it saw it. It is passed by
// value so that telling an observer costs no allocation on the call path.
type CallEvent struct {
	Caller     string // calling agent id, "" when the call was not made for an agent
	Callee     string // agent that answered or was tried last, "" if none was
	Capability string
	Code       codes.Code    // the outcome: OK, the agent's own code, or the routing or transport error's
	Latency    time.Duration // caller: end to end, all attempts; callee: the handler's time
	Attempts   int           // caller only: attempts the router made (1 when the first succeeded)
}

// Refusal names why the callee half refused a forwarded call before any
// agent saw it.
type Refusal string

// Refusal reasons, the label values of the refusal counter.
const (
	RefusedCycle       Refusal = "cycle"
	RefusedHopLimit    Refusal = "hop_limit"
	RefusedDeadline    Refusal = "deadline"
	RefusedBadMetadata Refusal = "bad_metadata"
	// RefusedCallerIdentity: the call named a caller agent that is not on
	// the peer node that forwarded it.
	RefusedCallerIdentity Refusal = "caller_identity"
	// RefusedAuthz: the authorization policy denied the call.
	RefusedAuthz Refusal = "authz"
	RefusedOther Refusal = "other"
)

// Observer is told about every call on the data plane: metrics and the
// traffic matrix implement it. Every method runs on the call's own
// goroutine, so it must be cheap and must not block.
type Observer interface {
	// CallMade: a Call from this node's socket ended (caller side).
	CallMade(e CallEvent)
	// CallServed: a local agent finished handling one attempt (callee side),
	// whether the call came from this node or a peer.
	CallServed(e CallEvent)
	// Serving moves the count of calls a local agent is handling by delta.
	Serving(agentID string, delta int)
	// Refused: a forwarded call was refused by the inbound checks.
	Refused(r Refusal)
}

// Observers tells each of its members, in order.
type Observers []Observer

func (o Observers) CallMade(e CallEvent) {
	for _, x := range o {
		x.CallMade(e)
	}
}

func (o Observers) CallServed(e CallEvent) {
	for _, x := range o {
		x.CallServed(e)
	}
}

func (o Observers) Serving(agentID string, delta int) {
	for _, x := range o {
		x.Serving(agentID, delta)
	}
}

func (o Observers) Refused(r Refusal) {
	for _, x := range o {
		x.Refused(r)
	}
}

// refusalOf classifies an inbound check's error by the routing sentinel it
// wraps.
func refusalOf(err error) Refusal {
	switch {
	case errors.Is(err, routing.ErrCycle):
		return RefusedCycle
	case errors.Is(err, routing.ErrHopLimit):
		return RefusedHopLimit
	case errors.Is(err, routing.ErrDeadline):
		return RefusedDeadline
	case errors.Is(err, routing.ErrBadMetadata):
		return RefusedBadMetadata
	}
	return RefusedOther
}
