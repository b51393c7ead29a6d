package dataplane

import (
	"context"
)

// Authorizer decides whether a call may go from caller to capability,
// answered by callee. *authzgate.Gate implements it. It runs on every
// call, on the caller's node before any network and on the callee's node
// before delivery, so it must be cheap and must not block on the network.
// Its refusals are PermissionDenied naming the rule that decided.
type Authorizer interface {
	AuthorizeCall(ctx context.Context, caller, capability, callee string) error
}

// authorize asks the configured Authorizer; none allows everything.
// caller is always an identity this node verified: an agent the calling
// process owns (caller's node) or an agent of the forwarding peer
// (callee's node, verifyCaller).
func (p *Plane) authorize(ctx context.Context, caller, capability, callee string) error {
	if p.cfg.Authz == nil {
		return nil
	}
	return p.cfg.Authz.AuthorizeCall(ctx, caller, capability, callee)
}
