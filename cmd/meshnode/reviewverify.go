package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/operator"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// verifyReview checks a reviewed decision's review against the trust
// bundle (trustFile, else the node's) and the operators' signed records,
// and prints who reviewed, when, and whether the signature verifies.
func verifyReview(cmd *cobra.Command, cf *clientFlags, trustFile string, d *meshnodev1.Decision) error {
	conn, ctx, done, err := cf.open()
	if err != nil {
		return err
	}
	defer done()
	ops := meshnodev1.NewOperatorServiceClient(conn)
	var bundle *meshnodev1.TrustBundle
	if trustFile != "" {
		data, err := os.ReadFile(trustFile)
		if err != nil {
			return usagef("--trust: %v", err)
		}
		if bundle, err = operator.DecodeTrustBundle(data); err != nil {
			return usagef("--trust %s: %v", trustFile, err)
		}
	} else {
		tb, err := ops.GetTrustBundle(ctx, &meshnodev1.GetTrustBundleRequest{})
		if err != nil {
			return rpcError("read the trust bundle", err, cf.socketPath())
		}
		bundle = tb.GetBundle()
	}
	list, err := ops.ListOperators(ctx, &meshnodev1.ListOperatorsRequest{})
	if err != nil {
		return rpcError("list operators", err, cf.socketPath())
	}
	records := operator.Records{}
	for _, o := range list.GetOperators() {
		if o.GetSigned() != nil {
			records[o.GetRecord().GetName()] = o.GetSigned()
		}
	}
	rv := d.GetReview()
	id := d.GetProposal().GetId()
	rec, err := operator.VerifyReview(bundle, records, consensus.ClusterID(bundle), d)
	if err != nil {
		return fmt.Errorf("decision %s does NOT verify: %w", id, err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "decision %s was reviewed: %s by operator %s (roles %s) at %s\nreason: %s\nreview signature verifies against the trust bundle (first admin %s)\n",
		id, enumWord(rv.GetOutcome().String(), "CHOICE_"), rec.GetName(), strings.Join(rec.GetRoles(), ","),
		rv.GetReviewedAt().AsTime().Local().Format(time.RFC3339), rv.GetReason(), bundle.GetFirstAdminName())
	return nil
}
