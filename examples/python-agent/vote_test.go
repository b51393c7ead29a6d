package pythonagent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agentmesh/meshnode/agent/agenttest"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/quorum"
)

// withCryptography skips unless python3 can import the ed25519 signer
// vote.py uses; CI installs it (scripts/install-deps.sh).
func withCryptography(t *testing.T) string {
	t.Helper()
	py := python(t)
	cmd := exec.Command(py, "-c", "from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("python3 cannot import cryptography's ed25519 (%v: %s): apt-get install python3-cryptography to run the Python voting tests", err, bytes.TrimSpace(out))
	}
	return py
}

// pySign runs `vote.py sign` on one vote request and returns the vote and
// the public key it printed.
func pySign(t *testing.T, py, keyFile string, req map[string]any) (*meshnodev1.Vote, []byte) {
	t.Helper()
	in, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "vote.py", "sign", "--key", keyFile)
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	cmd.Stdin = bytes.NewReader(in)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("vote.py sign: %v\n%s", err, errOut.String())
	}
	var res struct {
		Vote      json.RawMessage
		PublicKey []byte
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("vote.py sign printed %q: %v", out.String(), err)
	}
	v := &meshnodev1.Vote{}
	if err := protojson.Unmarshal(res.Vote, v); err != nil {
		t.Fatalf("vote.py's vote %s is not a proto3 JSON Vote: %v", res.Vote, err)
	}
	return v, res.PublicKey
}

// protoJSON is how the node's Serve stream spells a proposal (lowerCamel
// names and enum names by default; the proto names when asked).
func protoJSON(t *testing.T, m proto.Message, protoNames bool) json.RawMessage {
	t.Helper()
	b, err := protojson.MarshalOptions{UseProtoNames: protoNames}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Cross-language vectors: the Python signer, given the proposal as the node
// sends it, must produce exactly the vote quorum.NewVote produces with the
// same key (ed25519 signatures are deterministic, so the signature bytes must
// match too), and the vote must verify with quorum.VerifyVote.
func TestPythonVoteMatchesGo(t *testing.T) {
	py := withCryptography(t)
	seed := sha256.Sum256([]byte("python-agent vote vectors"))
	priv := ed25519.NewKeyFromSeed(seed[:])
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "vote.key") // written as the Go SDK writes it
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	electorate := []*meshnodev1.QuorumVoter{{AgentId: "n1/a", Node: "n1"}, {AgentId: "n2/b", Node: "n2"}, {AgentId: "n3/c", Node: "n3"}, {AgentId: "n4/py", Node: "n4"}}
	deadline := timestamppb.New(time.Date(2026, 12, 7, 21, 5, 17, 123456789, time.UTC))
	vectors := []struct {
		name                string
		cluster             string
		p                   *meshnodev1.Proposal
		choice              meshnodev1.Choice
		reason, voter, node string
		protoNames          bool
	}{
		{"bft", "c-7f3a", &meshnodev1.Proposal{Id: "pay-1", Kind: "payment.approve", Payload: []byte(`{"amount":50}`),
			Rule: &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_BFT}, Electorate: electorate, Deadline: deadline,
			Selection: &meshnodev1.VoterSelection{Capability: "payment.review", Count: 4}, ProposerNode: "n1"},
			meshnodev1.Choice_CHOICE_APPROVE, "within limits", "n4/py", "n4", false},
		{"zero values left out of the JSON", "", &meshnodev1.Proposal{Id: "p"},
			meshnodev1.Choice_CHOICE_ABSTAIN, "", "n1/x", "n1", false},
		{"k-of-n, shared hosts, round 7, long multibyte reason", "cluster", &meshnodev1.Proposal{Id: "p-2", Kind: "k", Payload: all, Round: 7,
			Rule: &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_K_OF_N, K: 3, AllowSharedHosts: true}, Electorate: electorate[:3]},
			// 1 + 600*2 bytes: the 1024-byte cut falls inside an "é".
			meshnodev1.Choice_CHOICE_REJECT, "x" + strings.Repeat("é", 600), "n2/b", "n2", false},
		{"unanimous, proto field names, non-ASCII ids", "clüster", &meshnodev1.Proposal{Id: "提案-3", Kind: "déploiement", Payload: []byte("\x00"),
			Rule: &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_UNANIMOUS}, Round: 1,
			Electorate: []*meshnodev1.QuorumVoter{{AgentId: "nœud/a", Node: "nœud"}, {AgentId: "n2/b", Node: "n2"}}},
			meshnodev1.Choice_CHOICE_APPROVE, "d'accord", "nœud/a", "nœud", true},
	}
	pub := priv.Public().(ed25519.PublicKey)
	for _, vec := range vectors {
		t.Run(vec.name, func(t *testing.T) {
			got, gotPub := pySign(t, py, keyFile, map[string]any{
				"clusterId": vec.cluster, "proposal": protoJSON(t, vec.p, vec.protoNames), "choice": vec.choice.String(),
				"reason": vec.reason, "voterAgentId": vec.voter, "voterNode": vec.node,
			})
			if !bytes.Equal(gotPub, pub) {
				t.Fatalf("vote.py read public key %x from the Go-written key file, want %x", gotPub, pub)
			}
			want := quorum.NewVote(vec.cluster, vec.p, vec.choice, vec.reason, vec.voter, vec.node, priv)
			if !bytes.Equal(got.GetPayloadDigest(), want.GetPayloadDigest()) {
				t.Errorf("payload digest %x, want %x", got.GetPayloadDigest(), want.GetPayloadDigest())
			}
			if !bytes.Equal(got.GetTermsDigest(), want.GetTermsDigest()) {
				t.Errorf("terms digest %x, want %x", got.GetTermsDigest(), want.GetTermsDigest())
			}
			if !proto.Equal(got, want) {
				t.Errorf("vote.py signed\n%v\nquorum.NewVote signed\n%v", got, want)
			}
			if err := quorum.VerifyVote(pub, got); err != nil {
				t.Errorf("quorum.VerifyVote of the Python vote: %v", err)
			}
		})
	}
}

// A key vote.py creates is one the Go SDK reads (PKCS#8 PEM, mode 0600), and
// its votes verify with the public key it registers. A key file others can
// read is refused, as the Go SDK refuses it.
func TestPythonVoteKeyFile(t *testing.T) {
	py := withCryptography(t)
	keyFile := filepath.Join(t.TempDir(), "state", "vote.key") // neither exists yet
	p := &meshnodev1.Proposal{Id: "p-key", Kind: "k", Payload: []byte("{}"), Electorate: []*meshnodev1.QuorumVoter{{AgentId: "n1/py", Node: "n1"}}}
	req := map[string]any{"clusterId": "c", "proposal": protoJSON(t, p, false), "choice": "CHOICE_APPROVE", "reason": "ok", "voterAgentId": "n1/py", "voterNode": "n1"}
	v, pub := pySign(t, py, keyFile, req)
	fi, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %#o, want 0600", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(keyFile)
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("key file is not a PEM PRIVATE KEY:\n%s", data)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok || !bytes.Equal(priv.Public().(ed25519.PublicKey), pub) {
		t.Fatalf("key file holds %T, public key %x; vote.py printed %x", k, priv.Public(), pub)
	}
	if err := quorum.VerifyVote(pub, v); err != nil {
		t.Errorf("verify: %v", err)
	}
	if !proto.Equal(v, quorum.NewVote("c", p, meshnodev1.Choice_CHOICE_APPROVE, "ok", "n1/py", "n1", priv)) {
		t.Errorf("vote with the Python-made key differs from quorum.NewVote's")
	}
	// The second run reuses the key: same identity after a restart.
	if _, pub2 := pySign(t, py, keyFile, req); !bytes.Equal(pub2, pub) {
		t.Errorf("second run used key %x, want the stored %x", pub2, pub)
	}

	if err := os.Chmod(keyFile, 0o640); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "vote.py", "sign", "--key", keyFile)
	cmd.Stdin = strings.NewReader("{}")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "chmod 600") {
		t.Errorf("a group-readable key: %v, output %q; want exit 2 asking for chmod 600", err, out)
	}
}

// Without cryptography, --vote stops at once with what to install, and an
// agent that does not vote works as before. A stub package that fails to
// import stands in for the missing one.
func TestPythonVoteWithoutCryptography(t *testing.T) {
	py := python(t)
	stub := t.TempDir()
	if err := os.MkdirAll(filepath.Join(stub, "cryptography"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stub, "cryptography", "__init__.py"), []byte("raise ImportError('hidden by the test')\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "PYTHONPATH="+stub, "XDG_STATE_HOME="+t.TempDir())
	node := agenttest.NewNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "agent.py", "--socket", node.Socket, "--name", "py-voter", "--vote")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "apt-get install python3-cryptography") {
		t.Errorf("--vote without cryptography: %v, output %q; want exit 2 naming python3-cryptography", err, out)
	}
	if n := len(node.Registrations()); n != 0 {
		t.Errorf("--vote without cryptography registered %d times; want it to stop before registering", n)
	}

	// Not voting: it serves as before, registered without a vote key.
	logs := &syncBuffer{}
	cmd = exec.CommandContext(ctx, py, "agent.py", "--socket", node.Socket, "--name", "py-echo")
	cmd.Env, cmd.Stdout, cmd.Stderr = env, logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if err := node.WaitReady(ctx, "py-echo"); err != nil {
		t.Fatalf("serving without cryptography: %v; agent.py output:\n%s", err, logs)
	}
	if reg := node.Registrations()[0]; len(reg.GetVotePublicKey()) != 0 || len(reg.GetRoles()) != 0 {
		t.Errorf("a non-voting agent registered %v", reg)
	}
}

// agent.py --vote against the in-memory node: it registers as a voter with
// its key, signs votes that verify, applies --max-amount, answers a repeat
// request for a proposal (another round and electorate) with its first vote,
// and keeps both its key and its journal across a restart.
func TestPythonAgentVotes(t *testing.T) {
	py := withCryptography(t)
	node := agenttest.NewNode(t)
	state := filepath.Join(t.TempDir(), "state")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := func() func() {
		logs := &syncBuffer{}
		cmd := pyCmd(py, "--socket", node.Socket, "--name", "py-voter", "--vote", "--max-amount", "100", "--state-dir", state)
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		stop := func() { cmd.Process.Kill(); cmd.Wait() }
		t.Cleanup(stop)
		if err := node.WaitReady(ctx, "py-voter"); err != nil {
			t.Fatalf("%v; agent.py output:\n%s", err, logs)
		}
		return stop
	}
	stop := start()
	regs := node.Registrations()
	reg := regs[len(regs)-1]
	pub := ed25519.PublicKey(reg.GetVotePublicKey())
	if len(pub) != ed25519.PublicKeySize || len(reg.GetRoles()) != 1 || reg.GetRoles()[0] != "voter" {
		t.Fatalf("registration %v: want roles [voter] and a 32-byte vote key", reg)
	}
	const id = "test-node/py-voter"
	electorate := []*meshnodev1.QuorumVoter{{AgentId: "n1/a", Node: "n1"}, {AgentId: id, Node: "test-node"}}
	ask := func(pid, payload string, round uint32, voters []*meshnodev1.QuorumVoter) *meshnodev1.Vote {
		t.Helper()
		p := &meshnodev1.Proposal{Id: pid, Kind: "payment.approve", Payload: []byte(payload), Round: round, Electorate: voters,
			Rule: &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_BFT}}
		vr, err := node.AskVote(ctx, "py-voter", &meshnodev1.VoteAsk{Proposal: p, ClusterId: "cluster-1", Deadline: timestamppb.New(time.Now().Add(30 * time.Second))})
		if err != nil {
			t.Fatalf("ask %s: %v", pid, err)
		}
		v := vr.GetVote()
		if err := quorum.VerifyVote(pub, v); err != nil {
			t.Errorf("vote on %s does not verify with the registered key: %v", pid, err)
		}
		return v
	}
	small := ask("pay-small", `{"amount": 50}`, 0, electorate)
	if small.GetChoice() != meshnodev1.Choice_CHOICE_APPROVE || small.GetVoterAgentId() != id || small.GetVoterNode() != "test-node" ||
		small.GetClusterId() != "cluster-1" || !bytes.Equal(small.GetPayloadDigest(), quorum.PayloadDigest([]byte(`{"amount": 50}`))) {
		t.Errorf("vote on a payment of 50: %v", small)
	}
	if big := ask("pay-big", `{"amount": 500}`, 0, electorate); big.GetChoice() != meshnodev1.Choice_CHOICE_REJECT || !strings.Contains(big.GetReason(), "exceeds") {
		t.Errorf("vote on a payment of 500 with --max-amount 100: %v", big)
	}
	// Vote shopping: the same proposal id, another round and electorate.
	if again := ask("pay-small", `{"amount": 50}`, 1, electorate[1:]); !proto.Equal(again, small) {
		t.Errorf("asked again about pay-small, agent.py signed\n%v\nwant its first vote\n%v", again, small)
	}
	sum := sha256.Sum256([]byte("pay-small"))
	if _, err := os.Stat(filepath.Join(state, "votes", hex.EncodeToString(sum[:])+".vote")); err != nil {
		t.Errorf("the vote was not journalled: %v", err)
	}

	stop()
	start()
	regs = node.Registrations()
	if got := regs[len(regs)-1].GetVotePublicKey(); !bytes.Equal(got, pub) {
		t.Errorf("after a restart agent.py registered key %x, want the stored %x", got, pub)
	}
	if again := ask("pay-small", `{"amount": 50}`, 2, electorate); !proto.Equal(again, small) {
		t.Errorf("after a restart, asked about pay-small: %v, want the journalled vote %v", again, small)
	}
}

// The Python unit tests (framing, vote encoding) run with the Go tests, so
// CI runs them.
func TestPythonUnitTests(t *testing.T) {
	py := python(t)
	cmd := exec.Command(py, "-m", "unittest", "-v")
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python3 -m unittest: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
