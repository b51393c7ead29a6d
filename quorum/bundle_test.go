package quorum

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"math/big"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/agentmesh/meshnode/operator"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// testTrust is a cluster's trust bundle with its first admin ("root") and a
// policy operator ("pol"), and their signed records.
type testTrust struct {
	bundle  *meshnodev1.TrustBundle
	admin   ed25519.PrivateKey
	pol     ed25519.PrivateKey
	records []*meshnodev1.SignedOperatorRecord
}

func newTestTrust(t testing.TB) *testTrust {
	t.Helper()
	caPub, caKey, _ := ed25519.GenerateKey(rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "root"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, caPub, caKey)
	if err != nil {
		t.Fatal(err)
	}
	adminPub, admin, _ := ed25519.GenerateKey(rand.Reader)
	polPub, pol, _ := ed25519.GenerateKey(rand.Reader)
	tt := &testTrust{bundle: &meshnodev1.TrustBundle{Roots: [][]byte{der}, FirstAdminName: "root", FirstAdminPublicKey: adminPub}, admin: admin, pol: pol}
	sr, err := operator.SignRecord("root", admin, &meshnodev1.OperatorRecord{Name: "pol", PublicKey: polPub, Roles: []string{"policy"}, Issuer: "root", Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	tt.records = append(tt.records, sr)
	return tt
}

func (tt *testTrust) cluster() string { return hex.EncodeToString(operator.ClusterID(tt.bundle)) }

// signedPolicy is pol as the policy operator set it at index.
func (tt *testTrust) signedPolicy(t testing.TB, pol *meshnodev1.QuorumPolicy, index uint64) *meshnodev1.QuorumPolicyRecord {
	t.Helper()
	sc, err := operator.SignCommand("pol", tt.pol, operator.ClusterID(tt.bundle), operator.MethodSetQuorumPolicy, &meshnodev1.SetQuorumPolicyRequest{Policy: pol}, time.Now(), time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &meshnodev1.QuorumPolicyRecord{Policy: pol, Signature: sc, ModifyIndex: index}
}

// decidedBundle is a BFT decision of ms, all approving, committed at index
// 100 under pol, with the members' keys recorded from index 10.
func decidedBundle(t testing.TB, cluster string, ms []member, pol *meshnodev1.QuorumPolicyRecord, ops []*meshnodev1.SignedOperatorRecord) *meshnodev1.QuorumBundle {
	t.Helper()
	return decidedUnder(t, cluster, ms, &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_BFT}, pol, ops)
}

// decidedUnder is decidedBundle with another rule.
func decidedUnder(t testing.TB, cluster string, ms []member, rule *meshnodev1.QuorumRule, pol *meshnodev1.QuorumPolicyRecord, ops []*meshnodev1.SignedOperatorRecord) *meshnodev1.QuorumBundle {
	t.Helper()
	p := newProposal("pay-1", rule, ms)
	tally, err := NewTally(cluster, p, votersOf(ms))
	if err != nil {
		t.Fatal(err)
	}
	b := &meshnodev1.QuorumBundle{Operators: ops}
	for _, m := range ms {
		if err := tally.Add(NewVote(cluster, p, approve, "ok", m.AgentID, m.Node, m.priv)); err != nil {
			t.Fatal(err)
		}
		b.Keys = append(b.Keys, &meshnodev1.AgentKey{AgentId: m.AgentID, PublicKey: m.PublicKey, FromIndex: 10})
	}
	cert, err := tally.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	b.Decision = &meshnodev1.Decision{Proposal: p, Status: meshnodev1.DecisionStatus_DECISION_STATUS_DECIDED, Outcome: approve, Certificate: cert, Policy: pol, CommitIndex: 100}
	return b
}

// A certificate proves itself from the trust bundle alone when the policy
// pins the voters' keys: substituted keys (a server rewriting the registry,
// or certifying new keys with the CA key) fail; the old bundle still
// verifies after its voters re-key (the bundle carries the keys at commit);
// votes and policies from another cluster fail.
func TestVerifyBundle(t *testing.T) {
	tt := newTestTrust(t)
	ms := newMembers(4)
	var pinned [][]byte
	for _, m := range ms {
		pinned = append(pinned, m.PublicKey)
	}
	pol := tt.signedPolicy(t, &meshnodev1.QuorumPolicy{Kind: "payment.approve", MinVoters: 4, EligibleKeys: pinned}, 50)
	b := decidedBundle(t, tt.cluster(), ms, pol, tt.records)
	r, err := VerifyBundle(tt.bundle, b, true)
	if err != nil || !r.KeysPinned || r.PolicySetBy != "pol" || r.N != 4 || r.Q != 3 {
		t.Fatalf("a pinned BFT bundle: %+v, %v", r, err)
	}

	// Re-keyed voters: later keys in the record do not matter.
	rekeyed := proto.CloneOf(b)
	for _, k := range rekeyed.GetKeys() {
		k.UntilIndex = 200
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		rekeyed.Keys = append(rekeyed.Keys, &meshnodev1.AgentKey{AgentId: k.GetAgentId(), PublicKey: pub, FromIndex: 200})
	}
	if _, err := VerifyBundle(tt.bundle, rekeyed, true); err != nil {
		t.Fatalf("a bundle after its voters re-keyed: %v", err)
	}

	// Substituted keys: the same agent ids voting with keys the attacker
	// holds, recorded as theirs.
	forged := make([]member, len(ms))
	for i, m := range ms {
		forged[i] = newMember(m.AgentID, m.Node)
		forged[i].PublicKey, forged[i].priv = func() (ed25519.PublicKey, ed25519.PrivateKey) {
			p, k, _ := ed25519.GenerateKey(rand.Reader)
			return p, k
		}()
	}
	if _, err := VerifyBundle(tt.bundle, decidedBundle(t, tt.cluster(), forged, pol, tt.records), false); !errors.Is(err, ErrBelowPolicy) {
		t.Fatalf("votes by substituted keys: %v, want ErrBelowPolicy (keys not pinned)", err)
	}

	// Unpinned keys are the registry's word: refused offline unless asked.
	def := &meshnodev1.QuorumPolicyRecord{Policy: DefaultPolicy()}
	unpinned := decidedBundle(t, tt.cluster(), ms, def, nil)
	if _, err := VerifyBundle(tt.bundle, unpinned, true); !errors.Is(err, ErrUnpinnedKeys) {
		t.Fatalf("an unpinned bundle, strictly: %v, want ErrUnpinnedKeys", err)
	}
	if r, err := VerifyBundle(tt.bundle, unpinned, false); err != nil || r.KeysPinned {
		t.Fatalf("an unpinned bundle, accepting registry keys: %+v, %v", r, err)
	}

	// Self-approval under the default policy: one voter, unanimous.
	self := decidedUnder(t, tt.cluster(), ms[:1], &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_UNANIMOUS}, def, nil)
	if _, err := VerifyBundle(tt.bundle, self, false); !errors.Is(err, ErrBelowPolicy) {
		t.Fatal("a one-voter self-approval verified")
	}
	// Voters on nodes outside the policy's pinned hosts (what a server's
	// CA key could certify) do not count.
	pinnedNodes := tt.signedPolicy(t, &meshnodev1.QuorumPolicy{Kind: "payment.approve", EligibleNodes: []string{"n00", "n01", "n02", "elsewhere"}}, 60)
	if _, err := VerifyBundle(tt.bundle, decidedBundle(t, tt.cluster(), ms, pinnedNodes, tt.records), false); !errors.Is(err, ErrBelowPolicy) {
		t.Fatalf("a voter outside the pinned nodes: %v, want ErrBelowPolicy", err)
	}

	// Another cluster: the same names and policy, another root.
	other := newTestTrust(t)
	if _, err := VerifyBundle(other.bundle, b, true); err == nil {
		t.Fatal("a bundle verified against another cluster's trust bundle")
	}
	// A policy claimed as the built-in default while weaker, or signed by
	// someone without the policy role.
	weak := proto.CloneOf(unpinned)
	weak.Decision.Policy = &meshnodev1.QuorumPolicyRecord{Policy: &meshnodev1.QuorumPolicy{MinVoters: 1, AllowSharedHosts: true}}
	if _, err := VerifyBundle(tt.bundle, weak, false); !errors.Is(err, ErrBelowPolicy) {
		t.Fatalf("an unsigned weaker policy: %v", err)
	}
	byAdmin := proto.CloneOf(b)
	sc, _ := operator.SignCommand("pol", tt.admin, operator.ClusterID(tt.bundle), operator.MethodSetQuorumPolicy, &meshnodev1.SetQuorumPolicyRequest{Policy: pol.GetPolicy()}, time.Now(), time.Minute, nil)
	byAdmin.Decision.Policy.Signature = sc
	if _, err := VerifyBundle(tt.bundle, byAdmin, true); !errors.Is(err, operator.ErrBadSignature) {
		t.Fatalf("a policy signed with another key: %v", err)
	}
}

// FuzzVerifyBundle: arbitrary bundle bytes never panic, and whatever
// verifies carries a certificate whose votes verify with the bundled keys.
func FuzzVerifyBundle(f *testing.F) {
	tt := newTestTrust(f)
	ms := newMembers(4)
	valid, _ := proto.Marshal(decidedBundle(f, tt.cluster(), ms, &meshnodev1.QuorumPolicyRecord{Policy: DefaultPolicy()}, tt.records))
	f.Add(valid)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeBundle(data)
		if err != nil {
			return
		}
		r, err := VerifyBundle(tt.bundle, b, false)
		if err != nil || r.Reviewer != "" {
			return
		}
		keys := HistoryKeys(b.GetKeys(), b.GetDecision().GetCommitIndex())
		if err := VerifyCertificateSignatures(b.GetDecision().GetCertificate(), keys); err != nil {
			t.Fatalf("a verified bundle whose certificate does not verify: %v", err)
		}
	})
}

// BenchmarkVerifyBundle is the cost of offline verification per vote (a
// pinned 4-voter BFT bundle, 3 votes in the certificate), against a bare
// ed25519.Verify in the same run.
func BenchmarkVerifyBundle(b *testing.B) {
	tt := newTestTrust(b)
	ms := newMembers(4)
	var pinned [][]byte
	for _, m := range ms {
		pinned = append(pinned, m.PublicKey)
	}
	bundle := decidedBundle(b, tt.cluster(), ms, tt.signedPolicy(b, &meshnodev1.QuorumPolicy{Kind: "payment.approve", EligibleKeys: pinned}, 50), tt.records)
	votes := len(bundle.GetDecision().GetCertificate().GetVotes())
	b.Run("bundle", func(b *testing.B) {
		for b.Loop() {
			if _, err := VerifyBundle(tt.bundle, bundle, true); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(votes), "µs/vote")
	})
	b.Run("ed25519_baseline", func(b *testing.B) {
		msg := []byte("baseline")
		sig := ed25519.Sign(ms[0].priv, msg)
		for b.Loop() {
			ed25519.Verify(ms[0].PublicKey, msg, sig)
		}
	})
}
