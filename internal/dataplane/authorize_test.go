package dataplane

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agentmesh/meshnode/authz"
	"github.com/agentmesh/meshnode/internal/hub"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// engineAuthorizer decides with a compiled policy and records what it was
// asked, so a test can see which caller each end judged.
type engineAuthorizer struct {
	e     *authz.Engine
	asked []string
}

func (a *engineAuthorizer) AuthorizeCall(_ context.Context, caller, capability, callee string) error {
	a.asked = append(a.asked, caller+">"+capability+">"+callee)
	if d := a.e.Call(authz.Subject{ID: caller}, capability, &authz.Subject{ID: callee}); !d.Allowed {
		return status.Errorf(codes.PermissionDenied, "denied by %s", d.Rule)
	}
	return nil
}

// The caller's node refuses a denied call before delivering it anywhere;
// the callee's node judges a forwarded call with the caller it verified,
// refuses it naming itself, and counts it.
func TestAuthorizationAtBothEnds(t *testing.T) {
	p0, err := authz.DecodeYAML("rbac.yaml", []byte("mode: deny\nbindings:\n  - agent: proc\n    roles: [processing]\ncall_rules:\n  - from_role: processing\n    to_capability: \"ca*\"\n    action: allow\n"))
	if err != nil {
		t.Fatal(err)
	}
	e, _ := authz.Compile(p0, 1)
	az := &engineAuthorizer{e: e}
	l := &fakeLocal{owners: map[string]hub.Owner{"n1/proc": me, "n1/other": me}}
	p := newPlane(t, l, "n1/b")
	p.cfg.Authz = az
	var refusals []Refusal
	p.cfg.Observer = refusalRecorder{&refusals}

	if _, err := p.Call(context.Background(), me, &meshnodev1.CallRequest{Capability: "cap", CallerAgentId: "proc"}); err != nil {
		t.Fatalf("allowed call: %v", err)
	}
	_, err = p.Call(context.Background(), me, &meshnodev1.CallRequest{Capability: "cap", CallerAgentId: "other"})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "mode deny") {
		t.Fatalf("denied call: %v", err)
	}
	if len(l.delivered) != 1 {
		t.Fatalf("%d deliveries, want only the allowed call's", len(l.delivered))
	}
	later := timestamppb.New(time.Now().Add(time.Minute))
	_, err = p.Receive(context.Background(), "n0", &meshnodev1.ForwardCallRequest{TargetAgentId: "n1/b",
		Delivery: &meshnodev1.Delivery{Capability: "cap", CallerAgentId: "n0/other"},
		Routing:  &meshnodev1.RoutingMetadata{Chain: []string{"n0/proc", "n0/other", "n1/b"}, Hops: 2, Deadline: later}})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "refused at node n1, the callee's") {
		t.Fatalf("forwarded call from n0/other: %v", err)
	}
	if len(refusals) != 1 || refusals[0] != RefusedAuthz || len(l.delivered) != 1 {
		t.Fatalf("refusals %v, deliveries %d", refusals, len(l.delivered))
	}
	// The earlier chain entry n0/proc (processing) lends nothing: the
	// verified caller is n0/other.
	if last := az.asked[len(az.asked)-1]; last != "n0/other>cap>n1/b" {
		t.Fatalf("callee judged %q", last)
	}
}
