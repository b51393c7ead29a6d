package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/operator"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/quorum"
)

// anchors is what a decision is verified against: the trust bundle (from
// --trust, else the node's) and the operators' signed records, which a
// node serves but cannot forge.
type anchors struct {
	bundle  *meshnodev1.TrustBundle
	records operator.Records
	cluster []byte // what admin commands and votes are signed for
}

func loadAnchors(ctx context.Context, conn grpc.ClientConnInterface, trustFile, socket string) (*anchors, error) {
	ops := meshnodev1.NewOperatorServiceClient(conn)
	a := &anchors{records: operator.Records{}}
	if trustFile != "" {
		data, err := os.ReadFile(trustFile)
		if err != nil {
			return nil, usagef("--trust: %v", err)
		}
		if a.bundle, err = operator.DecodeTrustBundle(data); err != nil {
			return nil, usagef("--trust %s: %v", trustFile, err)
		}
	} else {
		tb, err := ops.GetTrustBundle(ctx, &meshnodev1.GetTrustBundleRequest{})
		if err != nil {
			return nil, rpcError("read the trust bundle", err, socket)
		}
		a.bundle = tb.GetBundle()
	}
	a.cluster = consensus.ClusterID(a.bundle)
	list, err := ops.ListOperators(ctx, &meshnodev1.ListOperatorsRequest{})
	if err != nil {
		return nil, rpcError("list operators", err, socket)
	}
	for _, o := range list.GetOperators() {
		if o.GetSigned() != nil {
			a.records[o.GetRecord().GetName()] = o.GetSigned()
		}
	}
	return a, nil
}

// verifyDecision checks d as `quorum verify` does and prints what it
// proved: a review against the trust bundle, or the certificate's votes,
// the rule, and the quorum policy of its kind and who set it.
func verifyDecision(cmd *cobra.Command, cf *clientFlags, trustFile string, d *meshnodev1.Decision) error {
	conn, ctx, done, err := cf.open()
	if err != nil {
		return err
	}
	defer done()
	a, err := loadAnchors(ctx, conn, trustFile, cf.socketPath())
	if err != nil {
		return err
	}
	id := d.GetProposal().GetId()
	out := cmd.OutOrStdout()
	if d.GetStatus() == meshnodev1.DecisionStatus_DECISION_STATUS_REVIEWED {
		rec, err := operator.VerifyReview(a.bundle, a.records, a.cluster, d)
		if err != nil {
			return fmt.Errorf("decision %s does NOT verify: %w", id, err)
		}
		rv := d.GetReview()
		fmt.Fprintf(out, "decision %s was reviewed: %s by operator %s (roles %s) at %s\nreason: %s\nreview signature verifies against the trust bundle (first admin %s)\n",
			id, enumWord(rv.GetOutcome().String(), "CHOICE_"), rec.GetName(), strings.Join(rec.GetRoles(), ","),
			rv.GetReviewedAt().AsTime().Local().Format(time.RFC3339), rv.GetReason(), a.bundle.GetFirstAdminName())
		return nil
	}
	keys, err := keyHistory(ctx, conn, d, cf.socketPath())
	if err != nil {
		return err
	}
	// Votes sign the cluster id the trust bundle names, never one the
	// answering node or the certificate supplies.
	if err := quorum.VerifyDecision(hex.EncodeToString(a.cluster), d, keys); err != nil {
		return fmt.Errorf("decision %s does NOT verify: %w", id, err)
	}
	setBy, err := checkPolicy(a, d)
	if err != nil {
		return fmt.Errorf("decision %s does NOT verify: %w", id, err)
	}
	printVerified(out, d, setBy)
	return nil
}

// checkPolicy checks that d meets the quorum policy it was decided under,
// and that an operator with the policy role set that policy (the built-in
// default needs no signature). It returns who set it.
func checkPolicy(a *anchors, d *meshnodev1.Decision) (string, error) {
	pol := d.GetPolicy()
	setBy := "built-in default"
	if pol.GetSignature() != nil {
		rec, err := operator.VerifyQuorumPolicy(a.bundle, a.records, a.cluster, pol)
		if err != nil {
			return "", err
		}
		setBy = "operator " + rec.GetName()
	} else if !proto.Equal(pol.GetPolicy(), quorum.DefaultPolicy()) {
		return "", fmt.Errorf("%w: the decision claims an unsigned quorum policy that is not the built-in default", quorum.ErrBelowPolicy)
	}
	if err := quorum.CheckTerms(pol.GetPolicy(), d.GetProposal()); err != nil {
		return "", err
	}
	return setBy, quorum.CheckElectorateAgainst(pol.GetPolicy(), d.GetProposal())
}

func printVerified(out io.Writer, d *meshnodev1.Decision, setBy string) {
	p, cert := d.GetProposal(), d.GetCertificate()
	n := len(p.GetElectorate())
	q, _ := quorum.Threshold(p.GetRule(), n)
	fmt.Fprintf(out, "certificate of %s verifies: %s by %d signed votes\n", p.GetId(), enumWord(cert.GetChoice().String(), "CHOICE_"), len(cert.GetVotes()))
	fmt.Fprintf(out, "rule %s: n=%d, q=%d; kind %s under %s (index %d, set by %s)\n", enumWord(quorum.RuleKind(p.GetRule()).String(), "QUORUM_RULE_KIND_"),
		n, q, p.GetKind(), kindWord(d.GetPolicy().GetPolicy().GetKind()), d.GetPolicy().GetModifyIndex(), setBy)
	for _, v := range cert.GetVotes() {
		fmt.Fprintf(out, "  %s on %s: %s\n", v.GetVoterAgentId(), v.GetVoterNode(), enumWord(v.GetChoice().String(), "CHOICE_"))
	}
}

// keyHistory is the key each electorate member held when d was committed,
// from the registry's key history: a certificate still verifies after its
// voters re-key or deregister.
func keyHistory(ctx context.Context, conn grpc.ClientConnInterface, d *meshnodev1.Decision, socket string) (quorum.KeyLookup, error) {
	var ids []string
	for _, v := range d.GetProposal().GetElectorate() {
		ids = append(ids, v.GetAgentId())
	}
	if len(ids) == 0 {
		return quorum.NewKeyMap(), nil
	}
	resp, err := meshnodev1.NewRegistryServiceClient(conn).ListAgentKeys(ctx, &meshnodev1.ListAgentKeysRequest{AgentIds: ids})
	if err != nil {
		return nil, rpcError("read vote key history", err, socket)
	}
	history := map[string][]*meshnodev1.AgentKey{}
	for _, k := range resp.GetKeys() {
		history[k.GetAgentId()] = append(history[k.GetAgentId()], k)
	}
	return consensus.KeysAt(history, d.GetCommitIndex()), nil
}
