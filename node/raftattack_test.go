package node_test

import (
	"context"
	"crypto/tls"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/agentmesh/meshnode/node"
	"github.com/agentmesh/meshnode/pki"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/transport"
)

// attackerEndpoint is a QUIC endpoint that presents creds: a real
// certificate of the cluster, held by someone who runs their own code.
func attackerEndpoint(t *testing.T, creds *pki.Credentials) *transport.Endpoint {
	t.Helper()
	id, err := creds.ID()
	if err != nil {
		t.Fatal(err)
	}
	keeper := pki.NewKeeper(t.TempDir(), creds)
	src, err := pki.NewTLSSource(pki.TLSSourceConfig{TrustDomain: id.TrustDomain, Roots: keeper.Roots, Certificate: keeper.Certificate})
	if err != nil {
		t.Fatal(err)
	}
	cfg := transport.DefaultConfig()
	cfg.BindAddr, cfg.TLS = "127.0.0.1:0", src
	ep, err := transport.Listen(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ep.Close() })
	return ep
}

// joinAnyName joins as name with a token that lets any name join.
func joinAnyName(t *testing.T, seed *testNode, name string) (*pki.Credentials, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := meshnodev1.NewPKIServiceClient(seed.operatorConn(t, seed.dir)).CreateToken(ctx, &meshnodev1.CreateTokenRequest{AnyName: true})
	if err != nil {
		t.Fatal(err)
	}
	return pki.Join(ctx, pki.JoinConfig{
		Seeds: []string{seed.addr}, Token: resp.GetToken(), Name: name,
		Call: func(ctx context.Context, addr string, c *tls.Config, body []byte) ([]byte, error) {
			return transport.CallJoin(ctx, addr, c, "pki.Join", body)
		},
	})
}

// ghostCredentials joins a name nobody registers: a CA-signed certificate
// the registry knows nothing of.
func ghostCredentials(t *testing.T, seed *testNode) *pki.Credentials {
	t.Helper()
	creds, err := joinAnyName(t, seed, "ghost")
	if err != nil {
		t.Fatal(err)
	}
	return creds
}

// An unbound token cannot claim the name of a server (or of any registered
// node): the join is refused as final, and the server keeps its identity
// and its place in Raft.
func TestJoinCannotTakeAServersName(t *testing.T) {
	nodes := startCluster(t)
	for _, name := range []string{"n2", "n3"} {
		_, err := joinAnyName(t, nodes[0], name)
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), name) {
			t.Errorf("join as %s with an unbound token: %v, want PermissionDenied naming it", name, err)
		}
	}
	ctx := context.Background()
	if _, servers := node.RaftView(ctx, nodes[0].Node); !slices.Contains(servers, "n2") {
		t.Errorf("n2 left the Raft configuration: %v", servers)
	}
	if _, err := meshnodev1.NewNodeServiceClient(nodes[1].conn(t)).Status(ctx, &meshnodev1.StatusRequest{}); err != nil {
		t.Errorf("n2 after the refused joins: %v", err)
	}
}

// forgedEntries are what a node that could speak Raft would append: a CA
// record of its own, the revocation of a server and itself as a voter.
func forgedEntries(t *testing.T, index, term uint64, self, selfAddr string) []*raft.Log {
	t.Helper()
	batch, err := proto.Marshal(&meshnodev1.CommandBatch{Version: 1, TimeUnixNano: time.Now().UnixNano(), Commands: []*meshnodev1.Command{
		{Version: 1, IdempotencyKey: "x1", Origin: "n1", Op: &meshnodev1.Command_PutCaRecord{PutCaRecord: &meshnodev1.PutCARecordCommand{Record: &meshnodev1.CARecord{Key: "ca/material", Value: []byte("mine")}}}},
		{Version: 1, IdempotencyKey: "x2", Origin: "n1", Op: &meshnodev1.Command_Revoke{Revoke: &meshnodev1.RevokeCommand{Node: "n2", Reason: "takeover"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	conf := raft.EncodeConfiguration(raft.Configuration{Servers: []raft.Server{
		{ID: "n1", Address: "n1"}, {ID: raft.ServerID(self), Address: raft.ServerAddress(selfAddr)},
	}})
	return []*raft.Log{
		{Index: index + 1, Term: term, Type: raft.LogCommand, Data: batch},
		{Index: index + 2, Term: term, Type: raft.LogConfiguration, Data: conf},
	}
}

// A peer with a valid client certificate, or with a CA-signed certificate
// for a name nobody registered, opens the raft channel of every server and
// sends AppendEntries with a higher term, a CA record, a revocation and a
// membership change: the streams are refused, nothing is applied, the
// leader keeps its term and the configuration is unchanged.
func TestClientCertificateCannotSpeakRaft(t *testing.T) {
	nodes := startCluster(t)
	ctx := context.Background()
	waitFor(t, 30*time.Second, "n2 in the Raft configuration", func() bool {
		_, servers := node.RaftView(ctx, nodes[0].Node)
		return slices.Contains(servers, "n2")
	})
	client, err := pki.LoadCredentials(nodes[2].dir)
	if err != nil {
		t.Fatal(err)
	}
	attackers := map[string]*pki.Credentials{"client n3": client, "unregistered ghost": ghostCredentials(t, nodes[0])}
	for who, creds := range attackers {
		ep := attackerEndpoint(t, creds)
		id, _ := creds.ID()
		trans := raft.NewNetworkTransport(ep.RaftLayer(), 1, 3*time.Second, io.Discard)
		for _, target := range nodes[:2] {
			term, before := node.RaftView(ctx, target.Node)
			req := &raft.AppendEntriesRequest{
				RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(id.Node), Addr: []byte(ep.Addr().String())},
				Term:      term + 100, PrevLogEntry: 0, PrevLogTerm: 0,
				Entries:           forgedEntries(t, 0, term+100, id.Node, ep.Addr().String()),
				LeaderCommitIndex: 1 << 40,
			}
			var resp raft.AppendEntriesResponse
			if err := trans.AppendEntries(raft.ServerID(target.name), raft.ServerAddress(target.addr), req, &resp); err == nil {
				t.Errorf("%s: AppendEntries to %s was answered (term %d, success %v)", who, target.name, resp.Term, resp.Success)
			}
			after, servers := node.RaftView(ctx, target.Node)
			if after != term || !slices.Equal(servers, before) {
				t.Errorf("%s -> %s: term %d -> %d, servers %v -> %v", who, target.name, term, after, before, servers)
			}
		}
		trans.Close()
	}
	for _, n := range nodes[:2] {
		if node.IsRevoked(ctx, n.Node, "n2") {
			t.Errorf("%s: n2 was revoked through forged raft entries", n.name)
		}
	}
}
