package dashboard_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/quorum"
	"google.golang.org/protobuf/encoding/protojson"
)

// TestUI runs the UI's unit tests (ui/test, node --test) so `make test`
// covers them. It hands them a vote signed over quorum.VoteMessage, so the
// browser's encoding of the signed bytes is checked against the Go one.
func TestUI(t *testing.T) {
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the UI's unit tests (ui/test) need Node.js 20 or later")
	}
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	cluster := []byte("cluster-0123")
	v := &meshnodev1.Vote{
		ClusterId: hex.EncodeToString(cluster), ProposalId: "pay-42", PayloadDigest: make([]byte, 32), TermsDigest: []byte{1, 2, 3},
		Round: 3, Choice: meshnodev1.Choice_CHOICE_REJECT, VoterAgentId: "n2/voter", VoterNode: "n2", Reason: "too large – überprüfen",
	}
	v.Signature = ed25519.Sign(priv, quorum.VoteMessage(v))
	vote, err := protojson.MarshalOptions{UseEnumNumbers: true}.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	fixture, _ := json.Marshal(map[string]any{
		"vote": json.RawMessage(vote), "publicKey": base64.StdEncoding.EncodeToString(pub),
		"clusterIdB64": base64.StdEncoding.EncodeToString(cluster),
	})
	path := filepath.Join(t.TempDir(), "vote.json")
	if err := os.WriteFile(path, fixture, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nodeBin, "--test", "test/")
	cmd.Dir = filepath.Join("..", "..", "ui")
	cmd.Env = append(os.Environ(), "MESHNODE_VOTE_FIXTURE="+path)
	out, err := cmd.CombinedOutput()
	t.Logf("node --test:\n%s", out)
	if err != nil {
		t.Fatalf("UI unit tests failed: %v", err)
	}
}
