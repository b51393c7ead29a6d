package node_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/internal/api"
	"github.com/agentmesh/meshnode/node"
	"github.com/agentmesh/meshnode/operator"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// adminMethod is one admin method in the table: how to prepare a target
// for it, the request that acts on the target, how to call it, and what of
// the target the state shows (the observation must change only when the
// command takes effect).
type adminMethod struct {
	method  string
	prepare func(t *testing.T, target string) string // returns the id the request names
	request func(id string) proto.Message
	call    func(ctx context.Context, cc grpc.ClientConnInterface, req proto.Message) error
	observe func(id string) string
}

// adminCase is one way of signing (or not) a request.
type adminCase struct {
	name string
	// sign returns the signature header for req (nil: none) and the
	// request to send (which may differ from the one signed).
	sign func(t *testing.T, m adminMethod, id, otherID string) (*meshnodev1.SignedCommand, proto.Message)
	// want is the refusal's distinct message; "" for the valid case.
	want string
}

// Every admin method, under every way a signature can be wrong, through
// every path a command can enter by: only a valid signature changes state,
// and every other row is refused with PermissionDenied naming the check
// that failed.
func TestAdminMethodsAcceptOnlyValidSignatures(t *testing.T) {
	nodes := startCluster(t)
	server, client := nodes[0], nodes[2]
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	st := node.StoreOf(server.Node)
	admin := server.operatorConn(t, server.dir)
	adminKey, err := operator.ReadKeyFile(operator.BootstrapKeyPath(server.dir))
	if err != nil {
		t.Fatal(err)
	}
	tb, err := meshnodev1.NewOperatorServiceClient(admin).GetTrustBundle(ctx, &meshnodev1.GetTrustBundleRequest{})
	if err != nil {
		t.Fatal(err)
	}
	clusterID := tb.GetClusterId()

	// An operator with only the viewer role.
	viewerPub, viewerKey, _ := ed25519.GenerateKey(rand.Reader)
	rec, err := operator.SignRecord(operator.FirstAdmin, adminKey, &meshnodev1.OperatorRecord{Name: "viewer1", PublicKey: viewerPub, Roles: []string{"viewer"}, Issuer: operator.FirstAdmin, Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := meshnodev1.NewOperatorServiceClient(admin).PutOperator(ctx, &meshnodev1.PutOperatorRequest{Record: rec}); err != nil {
		t.Fatalf("add viewer: %v", err)
	}
	strangerKey := func() ed25519.PrivateKey { _, k, _ := ed25519.GenerateKey(rand.Reader); return k }()
	otherCluster := make([]byte, 32)
	_, _ = rand.Read(otherCluster)

	methods := adminMethods(t, ctx, st, admin, adminKey)
	signed := func(t *testing.T, op string, key ed25519.PrivateKey, cluster []byte, method string, req proto.Message, at time.Time) *meshnodev1.SignedCommand {
		sc, err := operator.SignCommand(op, key, cluster, method, req, at, time.Minute, nil)
		if err != nil {
			t.Fatal(err)
		}
		return sc
	}
	cases := []adminCase{
		{"unsigned", func(t *testing.T, m adminMethod, id, _ string) (*meshnodev1.SignedCommand, proto.Message) {
			return nil, m.request(id)
		}, "needs an operator's signature"},
		{"wrong key", func(t *testing.T, m adminMethod, id, _ string) (*meshnodev1.SignedCommand, proto.Message) {
			return signed(t, operator.FirstAdmin, strangerKey, clusterID, m.method, m.request(id), time.Now()), m.request(id)
		}, operator.ErrBadSignature.Error()},
		{"expired", func(t *testing.T, m adminMethod, id, _ string) (*meshnodev1.SignedCommand, proto.Message) {
			return signed(t, operator.FirstAdmin, adminKey, clusterID, m.method, m.request(id), time.Now().Add(-10*time.Minute)), m.request(id)
		}, operator.ErrExpired.Error()},
		{"wrong role", func(t *testing.T, m adminMethod, id, _ string) (*meshnodev1.SignedCommand, proto.Message) {
			return signed(t, "viewer1", viewerKey, clusterID, m.method, m.request(id), time.Now()), m.request(id)
		}, operator.ErrRoleMissing.Error()},
		{"other cluster", func(t *testing.T, m adminMethod, id, _ string) (*meshnodev1.SignedCommand, proto.Message) {
			return signed(t, operator.FirstAdmin, adminKey, otherCluster, m.method, m.request(id), time.Now()), m.request(id)
		}, operator.ErrWrongCluster.Error()},
		{"body changed", func(t *testing.T, m adminMethod, id, otherID string) (*meshnodev1.SignedCommand, proto.Message) {
			return signed(t, operator.FirstAdmin, adminKey, clusterID, m.method, m.request(id), time.Now()), m.request(otherID)
		}, operator.ErrBodyChanged.Error()},
		{"valid", func(t *testing.T, m adminMethod, id, _ string) (*meshnodev1.SignedCommand, proto.Message) {
			return signed(t, operator.FirstAdmin, adminKey, clusterID, m.method, m.request(id), time.Now()), m.request(id)
		}, ""},
	}

	// The agent path: a connection on which a local process registered an
	// agent, then tries admin methods on the same socket.
	agentConn := server.conn(t)
	if _, err := meshnodev1.NewRegistryServiceClient(agentConn).Register(ctx, &meshnodev1.RegisterRequest{Name: "would-be-admin", Capabilities: []*meshnodev1.Capability{{Name: "x.y"}}}); err != nil {
		t.Fatal(err)
	}
	paths := []struct {
		name string
		conn grpc.ClientConnInterface
	}{{"local agent process", agentConn}, {"client node forwarding", client.conn(t)}, {"server socket", server.conn(t)}}

	row := 0
	for _, p := range paths {
		for _, m := range methods {
			short := m.method[strings.LastIndex(m.method, "/")+1:]
			for _, c := range append(cases, adminCase{name: "replayed", want: "already applied"}) {
				row++
				t.Run(fmt.Sprintf("%s/%s/%s", p.name, short, c.name), func(t *testing.T) {
					id := m.prepare(t, fmt.Sprintf("t%d", row))
					otherID := m.prepare(t, fmt.Sprintf("t%d-other", row))
					before, otherBefore := m.observe(id), m.observe(otherID)
					var sc *meshnodev1.SignedCommand
					var req proto.Message
					if c.name == "replayed" {
						req = m.request(id)
						sc = signed(t, operator.FirstAdmin, adminKey, clusterID, m.method, req, time.Now())
						err := m.call(withSignature(ctx, sc), p.conn, req)
						if notOnClient(t, m, p.name, err) {
							return
						}
						if err != nil {
							t.Fatalf("first send of the command: %v", err)
						}
						before = m.observe(id)
					} else {
						sc, req = c.sign(t, m, id, otherID)
					}
					err := m.call(withSignature(ctx, sc), p.conn, req)
					if notOnClient(t, m, p.name, err) {
						return
					}
					after, otherAfter := m.observe(id), m.observe(otherID)
					if c.want == "" {
						if err != nil {
							t.Fatalf("valid command refused: %v", err)
						}
						if after == before {
							t.Fatalf("valid command changed nothing: %q", after)
						}
						return
					}
					if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), c.want) {
						t.Fatalf("got %v, want PermissionDenied naming %q", err, c.want)
					}
					if after != before || otherAfter != otherBefore {
						t.Fatalf("refused command changed state: %q -> %q, %q -> %q", before, after, otherBefore, otherAfter)
					}
				})
			}
		}
	}
}

// notOnClient reports whether err is a client node's refusal to mint a
// token (only servers hold the CA): that path is checked to refuse every
// row, valid included.
func notOnClient(t *testing.T, m adminMethod, path string, err error) bool {
	t.Helper()
	if m.method != consensus.MethodCreateToken || path != "client node forwarding" {
		return false
	}
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "server") {
		t.Fatalf("a client node asked to mint a join token: %v, want FailedPrecondition sending the operator to a server", err)
	}
	return true
}

func withSignature(ctx context.Context, sc *meshnodev1.SignedCommand) context.Context {
	if sc == nil {
		return ctx
	}
	b, err := proto.Marshal(sc)
	if err != nil {
		panic(err)
	}
	return metadata.AppendToOutgoingContext(ctx, api.SignatureHeader, string(b))
}

// adminMethods is the table's rows: every method in consensus.AdminMethods.
func adminMethods(t *testing.T, ctx context.Context, st *consensus.Store, admin grpc.ClientConnInterface, adminKey ed25519.PrivateKey) []adminMethod {
	same := func(_ *testing.T, target string) string { return target }
	read := consensus.ReadOptions{Consistency: consensus.Consistent}
	dump := func(m proto.Message, err error) string {
		if err != nil {
			return "err: " + status.Code(err).String()
		}
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		return fmt.Sprintf("%x", b)
	}
	invoke := func(method string) func(ctx context.Context, cc grpc.ClientConnInterface, req proto.Message) error {
		return func(ctx context.Context, cc grpc.ClientConnInterface, req proto.Message) error {
			out := map[string]proto.Message{
				consensus.MethodSetPolicy: &meshnodev1.SetPolicyResponse{}, consensus.MethodDeletePolicy: &meshnodev1.DeletePolicyResponse{},
				consensus.MethodPutOperator: &meshnodev1.PutOperatorResponse{}, consensus.MethodRevokeNode: &meshnodev1.RevokeNodeResponse{},
				consensus.MethodReview: &meshnodev1.ReviewResponse{}, consensus.MethodClearFlag: &meshnodev1.ClearFlagResponse{},
				consensus.MethodCreateToken: &meshnodev1.CreateTokenResponse{}, consensus.MethodRevokeToken: &meshnodev1.RevokeTokenResponse{},
				consensus.MethodRemoveNode: &meshnodev1.RemoveNodeResponse{}, consensus.MethodRemoveAgent: &meshnodev1.RemoveAgentResponse{},
				consensus.MethodSetQuorumPolicy: &meshnodev1.SetQuorumPolicyResponse{},
				consensus.MethodSetAuthzPolicy:  &meshnodev1.SetAuthzPolicyResponse{},
			}[method]
			return cc.Invoke(ctx, method, req, out)
		}
	}
	policy := func(id string) proto.Message {
		return &meshnodev1.SetPolicyRequest{Policy: &meshnodev1.RoutingPolicy{Capability: id + ".cap", Policy: "cost"}}
	}
	observePolicy := func(id string) string {
		p, _, err := st.Policy(ctx, read, consensus.PolicyKey(id+".cap"))
		return dump(p, err)
	}
	opKey, _, _ := ed25519.GenerateKey(rand.Reader)
	methods := []adminMethod{
		{consensus.MethodSetPolicy, same, policy, invoke(consensus.MethodSetPolicy), observePolicy},
		{consensus.MethodDeletePolicy, func(t *testing.T, id string) string {
			if _, err := meshnodev1.NewPolicyServiceClient(admin).SetPolicy(ctx, policy(id).(*meshnodev1.SetPolicyRequest)); err != nil {
				t.Fatal(err)
			}
			return id
		}, func(id string) proto.Message { return &meshnodev1.DeletePolicyRequest{Capability: id + ".cap"} }, invoke(consensus.MethodDeletePolicy), observePolicy},
		{consensus.MethodPutOperator, same, func(id string) proto.Message {
			sr, err := operator.SignRecord(operator.FirstAdmin, adminKey, &meshnodev1.OperatorRecord{Name: "op-" + id, PublicKey: opKey, Roles: []string{"viewer"}, Issuer: operator.FirstAdmin, Version: 1})
			if err != nil {
				panic(err)
			}
			return &meshnodev1.PutOperatorRequest{Record: sr}
		}, invoke(consensus.MethodPutOperator), func(id string) string {
			ops, _, err := st.Operators(ctx, read)
			for _, o := range ops {
				if o.GetName() == "op-"+id {
					return dump(o, err)
				}
			}
			return "none"
		}},
		{consensus.MethodRevokeNode, same, func(id string) proto.Message {
			return &meshnodev1.RevokeNodeRequest{NodeName: "gone-" + id, Reason: "test"}
		},
			invoke(consensus.MethodRevokeNode), func(id string) string {
				r, err := st.IsNodeRevoked(ctx, read, "gone-"+id)
				return fmt.Sprint(r, err)
			}},
		{consensus.MethodReview, func(t *testing.T, id string) string {
			blob, _ := proto.Marshal(&meshnodev1.Decision{Proposal: &meshnodev1.Proposal{Id: id, ProposerNode: "n1"}, Status: meshnodev1.DecisionStatus_DECISION_STATUS_NEEDS_REVIEW})
			if _, _, err := st.PutDecision(ctx, &meshnodev1.DecisionRecord{Id: id, Status: consensus.DecisionNeedsReview, Decision: blob}); err != nil {
				t.Fatal(err)
			}
			return id
		}, func(id string) proto.Message {
			return &meshnodev1.ReviewRequest{Id: id, Outcome: meshnodev1.Choice_CHOICE_APPROVE, Reason: "checked by hand"}
		}, invoke(consensus.MethodReview), func(id string) string {
			d, _, err := st.Decision(ctx, read, id)
			return dump(d, err)
		}},
		{consensus.MethodClearFlag, func(t *testing.T, id string) string {
			if _, _, err := st.RegisterAgent(ctx, &meshnodev1.Agent{Id: "n1/f-" + id, Name: "f-" + id, Node: "n1"}); err != nil {
				t.Fatal(err)
			}
			if _, _, err := st.FlagAgent(ctx, "n1/f-"+id, "equivocated", nil); err != nil {
				t.Fatal(err)
			}
			return "n1/f-" + id
		}, func(id string) proto.Message { return &meshnodev1.ClearFlagRequest{AgentId: id, Reason: "understood"} },
			invoke(consensus.MethodClearFlag), func(id string) string {
				a, _, err := st.Agent(ctx, read, id)
				return fmt.Sprint(a.GetFlagged(), err)
			}},
		{consensus.MethodCreateToken, same, func(id string) proto.Message {
			return &meshnodev1.CreateTokenRequest{NodeName: "join-" + id, Ttl: durationpb.New(time.Hour)}
		}, invoke(consensus.MethodCreateToken), func(id string) string {
			toks, _, err := st.IssuedTokens(ctx, read)
			n := 0
			for _, tok := range toks {
				if tok.GetNodeName() == "join-"+id {
					n++
				}
			}
			return fmt.Sprint(n, err)
		}},
		{consensus.MethodRevokeToken, func(t *testing.T, id string) string {
			resp, err := meshnodev1.NewPKIServiceClient(admin).CreateToken(ctx, &meshnodev1.CreateTokenRequest{NodeName: "rt-" + id, Ttl: durationpb.New(time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			return resp.GetId()
		}, func(id string) proto.Message { return &meshnodev1.RevokeTokenRequest{Id: id, Reason: "leaked"} },
			invoke(consensus.MethodRevokeToken), func(id string) string {
				toks, _, err := st.IssuedTokens(ctx, read)
				for _, tok := range toks {
					if tok.GetId() == id {
						return fmt.Sprint(tok.GetRevokedAt() != nil, err)
					}
				}
				return "none"
			}},
		{consensus.MethodRemoveNode, func(t *testing.T, id string) string {
			if _, err := st.RegisterNode(ctx, &meshnodev1.NodeRecord{Name: "old-" + id, Role: "client"}); err != nil {
				t.Fatal(err)
			}
			return "old-" + id
		}, func(id string) proto.Message { return &meshnodev1.RemoveNodeRequest{NodeName: id} },
			invoke(consensus.MethodRemoveNode), func(id string) string {
				n, _, err := st.Node(ctx, read, id)
				return dump(n, err)
			}},
		{consensus.MethodRemoveAgent, func(t *testing.T, id string) string {
			if _, _, err := st.RegisterAgent(ctx, &meshnodev1.Agent{Id: "ghost/" + id, Name: id, Node: "ghost"}); err != nil {
				t.Fatal(err)
			}
			return "ghost/" + id
		}, func(id string) proto.Message { return &meshnodev1.RemoveAgentRequest{Id: id} },
			invoke(consensus.MethodRemoveAgent), func(id string) string {
				a, _, err := st.Agent(ctx, read, id)
				return dump(a, err)
			}},
		{consensus.MethodSetQuorumPolicy, same, func(id string) proto.Message {
			return &meshnodev1.SetQuorumPolicyRequest{Policy: &meshnodev1.QuorumPolicy{Kind: id + ".kind", MinVoters: 5}}
		}, invoke(consensus.MethodSetQuorumPolicy), func(id string) string {
			p, err := st.QuorumPolicy(ctx, read, id+".kind")
			return dump(p, err)
		}},
		// One document for the cluster: the row's id is the policy's
		// source, so the observation is of this row's policy only.
		{consensus.MethodSetAuthzPolicy, same, func(id string) proto.Message {
			return &meshnodev1.SetAuthzPolicyRequest{Policy: &meshnodev1.AuthzPolicy{Mode: "allow", Source: id + ".yaml"}}
		}, invoke(consensus.MethodSetAuthzPolicy), func(id string) string {
			p, err := st.AuthzPolicy(ctx, read)
			if err == nil && p.GetPolicy().GetSource() != id+".yaml" {
				return "another policy"
			}
			return dump(p, err)
		}},
	}
	if len(methods) != len(consensus.AdminMethods) {
		t.Fatalf("the table has %d methods, consensus.AdminMethods %d: add the new method's row", len(methods), len(consensus.AdminMethods))
	}
	return methods
}
