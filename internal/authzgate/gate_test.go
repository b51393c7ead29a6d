package authzgate

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentmesh/meshnode/consensus"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

type fakeRegistry struct {
	index  uint64
	rec    *meshnodev1.AuthzPolicyRecord
	agents map[string]*meshnodev1.Agent
	reads  int
}

func (r *fakeRegistry) Index() uint64 { return r.index }
func (r *fakeRegistry) AuthzPolicy(context.Context, consensus.ReadOptions) (*meshnodev1.AuthzPolicyRecord, error) {
	r.reads++
	return r.rec, nil
}
func (r *fakeRegistry) Agent(_ context.Context, _ consensus.ReadOptions, id string) (*meshnodev1.Agent, uint64, error) {
	if a, ok := r.agents[id]; ok {
		return a, r.index, nil
	}
	return nil, r.index, consensus.ErrNotFound
}

func uid(u uint32) *uint32 { return &u }

// The policy is read once per applied index and compiled once per policy
// version; uid bindings use the owner uid the registry holds; serve rules
// stop an agent registered before them from answering.
func TestGateCompilesOncePerVersion(t *testing.T) {
	pol := &meshnodev1.AuthzPolicy{Mode: "deny", Source: "rbac.yaml",
		Bindings:   []*meshnodev1.RoleBinding{{Uid: uid(1000), Roles: []string{"ops"}}, {Agent: "svc", Roles: []string{"svc"}}},
		CallRules:  []*meshnodev1.CallRule{{FromRole: "ops", ToCapability: "*", Action: "allow"}},
		ServeRules: []*meshnodev1.ServeRule{{Capability: "pay.*", Roles: []string{"svc"}}}}
	reg := &fakeRegistry{index: 5, agents: map[string]*meshnodev1.Agent{
		"n1/alice": {Id: "n1/alice", OwnerUid: 1000, OwnerPid: 7},
		"n1/bob":   {Id: "n1/bob", OwnerUid: 1001, OwnerPid: 8},
		"n2/svc":   {Id: "n2/svc"}, "n2/old": {Id: "n2/old"},
	}}
	g := New(reg)
	if err := g.AuthorizeCall(context.Background(), "n1/bob", "pay.x", "n2/svc"); err != nil {
		t.Fatalf("no policy stored: %v", err)
	}
	reg.rec = &meshnodev1.AuthzPolicyRecord{Policy: pol, ModifyIndex: 6}
	reg.index = 6
	if err := g.AuthorizeCall(context.Background(), "n1/alice", "pay.x", "n2/svc"); err != nil {
		t.Fatalf("uid 1000 is bound to ops: %v", err)
	}
	e1, _ := g.Engine(context.Background())
	err := g.AuthorizeCall(context.Background(), "n1/bob", "pay.x", "n2/svc")
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "mode deny") {
		t.Fatalf("uid 1001: %v", err)
	}
	err = g.AuthorizeCall(context.Background(), "n1/alice", "pay.x", "n2/old")
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "serve_rules[0]") {
		t.Fatalf("an agent without the serve role answering: %v", err)
	}
	reads := reg.reads
	reg.index = 9 // another write, same policy version
	if err := g.AuthorizeCall(context.Background(), "n1/alice", "pay.x", "n2/svc"); err != nil {
		t.Fatal(err)
	}
	e2, _ := g.Engine(context.Background())
	if e1 != e2 || reg.reads != reads+1 {
		t.Fatalf("recompiled on an unrelated write (same engine %v), reads %d -> %d", e1 == e2, reads, reg.reads)
	}
}
