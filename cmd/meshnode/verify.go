package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/agentmesh/meshnode/internal/atomicfile"
	"github.com/agentmesh/meshnode/operator"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/quorum"
)

// readTrust reads a trust bundle file (untrusted bytes).
func readTrust(path string) (*meshnodev1.TrustBundle, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("--trust: %v", err)
	}
	b, err := operator.DecodeTrustBundle(data)
	if err != nil {
		return nil, usagef("--trust %s: %v", path, err)
	}
	return b, nil
}

// fetchBundle builds decision id's QuorumBundle from a node: the decision,
// its electorate's key history, and the operators' signed records. None of
// it is trusted: VerifyBundle checks it against the trust bundle.
func fetchBundle(ctx context.Context, conn grpc.ClientConnInterface, id, socket string) (*meshnodev1.QuorumBundle, error) {
	resp, err := meshnodev1.NewQuorumServiceClient(conn).GetDecision(ctx, &meshnodev1.GetDecisionRequest{Id: id})
	if err != nil {
		return nil, rpcError("get decision "+id, err, socket)
	}
	b := &meshnodev1.QuorumBundle{Decision: resp.GetDecision()}
	var ids []string
	for _, v := range b.GetDecision().GetProposal().GetElectorate() {
		ids = append(ids, v.GetAgentId())
	}
	if len(ids) > 0 {
		keys, err := meshnodev1.NewRegistryServiceClient(conn).ListAgentKeys(ctx, &meshnodev1.ListAgentKeysRequest{AgentIds: ids})
		if err != nil {
			return nil, rpcError("read vote key history", err, socket)
		}
		b.Keys = keys.GetKeys()
	}
	ops, err := meshnodev1.NewOperatorServiceClient(conn).ListOperators(ctx, &meshnodev1.ListOperatorsRequest{})
	if err != nil {
		return nil, rpcError("list operators", err, socket)
	}
	for _, o := range ops.GetOperators() {
		if o.GetSigned() != nil {
			b.Operators = append(b.Operators, o.GetSigned())
		}
	}
	return b, nil
}

// verifyOnline fetches decision id's bundle from the node and verifies it
// against trustFile (or, without one, the node's trust bundle).
func verifyOnline(cmd *cobra.Command, cf *clientFlags, trustFile, id string) error {
	conn, ctx, done, err := cf.open()
	if err != nil {
		return err
	}
	defer done()
	b, err := fetchBundle(ctx, conn, id, cf.socketPath())
	if err != nil {
		return err
	}
	var trust *meshnodev1.TrustBundle
	if trustFile != "" {
		if trust, err = readTrust(trustFile); err != nil {
			return err
		}
	} else {
		tb, err := meshnodev1.NewOperatorServiceClient(conn).GetTrustBundle(ctx, &meshnodev1.GetTrustBundleRequest{})
		if err != nil {
			return rpcError("read the trust bundle", err, cf.socketPath())
		}
		trust = tb.GetBundle()
	}
	return report(cmd.OutOrStdout(), trust, b, false)
}

// verifyOffline checks a bundle file against a trust bundle file, with no
// node: the keys must be pinned by the policy unless acceptRegistryKeys.
func verifyOffline(cmd *cobra.Command, bundleFile, trustFile string, acceptRegistryKeys bool) error {
	if trustFile == "" {
		return usagef("--bundle needs --trust FILE: the cluster's trust bundle (written at bootstrap or by operator init) is what a bundle is verified against")
	}
	trust, err := readTrust(trustFile)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(bundleFile)
	if err != nil {
		return usagef("--bundle: %v", err)
	}
	b, err := quorum.DecodeBundle(data)
	if err != nil {
		return fmt.Errorf("%s does NOT verify: %w", bundleFile, err)
	}
	return report(cmd.OutOrStdout(), trust, b, !acceptRegistryKeys)
}

// report verifies b and prints what it proved.
func report(out io.Writer, trust *meshnodev1.TrustBundle, b *meshnodev1.QuorumBundle, requirePinned bool) error {
	d := b.GetDecision()
	id := d.GetProposal().GetId()
	r, err := quorum.VerifyBundle(trust, b, requirePinned)
	if err != nil {
		return fmt.Errorf("decision %s does NOT verify: %w", id, err)
	}
	if r.Reviewer != "" {
		rv := d.GetReview()
		fmt.Fprintf(out, "decision %s was reviewed: %s by operator %s at %s\nreason: %s\nreview signature verifies against the trust bundle (first admin %s)\n",
			id, enumWord(rv.GetOutcome().String(), "CHOICE_"), r.Reviewer, rv.GetReviewedAt().AsTime().Local().Format(time.RFC3339), rv.GetReason(), trust.GetFirstAdminName())
		return nil
	}
	p, cert := d.GetProposal(), d.GetCertificate()
	setBy := "the built-in default"
	if r.PolicySetBy != "" {
		setBy = "operator " + r.PolicySetBy
	}
	fmt.Fprintf(out, "certificate of %s verifies: %s by %d signed votes\n", id, enumWord(cert.GetChoice().String(), "CHOICE_"), len(cert.GetVotes()))
	fmt.Fprintf(out, "rule %s: n=%d, q=%d; kind %s under %s (index %d, set by %s)\n", enumWord(quorum.RuleKind(p.GetRule()).String(), "QUORUM_RULE_KIND_"),
		r.N, r.Q, p.GetKind(), kindWord(d.GetPolicy().GetPolicy().GetKind()), d.GetPolicy().GetModifyIndex(), setBy)
	for _, v := range cert.GetVotes() {
		fmt.Fprintf(out, "  %s on %s: %s\n", v.GetVoterAgentId(), v.GetVoterNode(), enumWord(v.GetChoice().String(), "CHOICE_"))
	}
	if r.KeysPinned {
		fmt.Fprintln(out, "voter keys: pinned by the operator-signed policy (the trust bundle alone proves them)")
	} else {
		fmt.Fprintln(out, "voter keys: the registry's record at commit (the policy pins none; pin them to need nothing but the trust bundle)")
	}
	return nil
}

func newQuorumExportCmd() *cobra.Command {
	var cf *clientFlags
	var out string
	c := &cobra.Command{
		Use:   "export ID --out FILE",
		Short: "Write a decision as a self-contained bundle to verify offline",
		Long: `Write decision ID with what verifying it needs besides the cluster's trust
bundle: its voters' keys when it was committed and the operators' signed
records. Verify it anywhere with
  meshnode quorum verify --bundle FILE --trust trust-bundle.pb`,
		Example: `  meshnode quorum export pay-42 --out pay-42.bundle
  meshnode quorum verify --bundle pay-42.bundle --trust /var/lib/meshnode/trust-bundle.pb`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usagef("--out FILE: where to write the bundle")
			}
			conn, ctx, done, err := cf.open()
			if err != nil {
				return err
			}
			defer done()
			b, err := fetchBundle(ctx, conn, args[0], cf.socketPath())
			if err != nil {
				return err
			}
			data, err := proto.Marshal(b)
			if err != nil {
				return err
			}
			if err := atomicfile.Write(out, data, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%d bytes): decision %s, %d keys, %d operator records\n", out, len(data), args[0], len(b.GetKeys()), len(b.GetOperators()))
			return nil
		},
	}
	cf = addClientFlags(c)
	c.Flags().StringVar(&out, "out", "", "the bundle file to write")
	return c
}
