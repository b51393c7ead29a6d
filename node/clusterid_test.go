package node_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/quorum"
)

// Two clusters with the same (default) trust domain and the same agent
// names have different cluster ids, so a vote signed in staging does not
// count in production.
func TestVotesDoNotCrossClusters(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ids [][]byte
	for _, root := range []string{t.TempDir(), t.TempDir()} {
		n := startTestNode(t, root, "n1", true, nil, "")
		tb, err := meshnodev1.NewOperatorServiceClient(n.conn(t)).GetTrustBundle(ctx, &meshnodev1.GetTrustBundleRequest{})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tb.GetClusterId())
		// The id the node signs votes for is the bundle's, not the trust
		// domain (which both clusters share).
		st, err := meshnodev1.NewNodeServiceClient(n.conn(t)).Status(ctx, &meshnodev1.StatusRequest{})
		if err != nil || st.GetClusterId() != hex.EncodeToString(tb.GetClusterId()) {
			t.Fatalf("the node signs votes for cluster %q, want %x (%v)", st.GetClusterId(), tb.GetClusterId(), err)
		}
	}
	if len(ids[0]) != 32 || bytes.Equal(ids[0], ids[1]) {
		t.Fatalf("cluster ids %x and %x: want two different 32-byte ids", ids[0], ids[1])
	}
	staging, production := hex.EncodeToString(ids[0]), hex.EncodeToString(ids[1])
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	voters := []quorum.Voter{{AgentID: "n1/voter", Node: "n1", PublicKey: pub}}
	payload := []byte(`{"amount": 10}`)
	p := &meshnodev1.Proposal{Id: "pay-1", Kind: "payment", Payload: payload, PayloadDigest: quorum.PayloadDigest(payload),
		Selection: &meshnodev1.VoterSelection{AgentIds: []string{"n1/voter"}}, Rule: &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_UNANIMOUS},
		Electorate: quorum.Electorate(voters)}
	tally, err := quorum.NewTally(production, p, voters)
	if err != nil {
		t.Fatal(err)
	}
	if err := tally.Add(quorum.NewVote(staging, p, meshnodev1.Choice_CHOICE_APPROVE, "ok", "n1/voter", "n1", key)); !errors.Is(err, quorum.ErrOtherCluster) {
		t.Fatalf("a staging vote in production: %v, want ErrOtherCluster", err)
	}
}
