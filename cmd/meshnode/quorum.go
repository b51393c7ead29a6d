package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func newQuorumCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "quorum",
		Short: "Propose, inspect, verify and review signed quorum decisions",
		Example: `  meshnode quorum propose --id pay-42 --kind payment.approve --data '{"amount":900}' --capability payment.review
  meshnode quorum list
  meshnode quorum verify pay-42`,
	}
	cmd.AddCommand(newQuorumProposeCmd(), newQuorumGetCmd(), newQuorumListCmd(), newQuorumVerifyCmd(), newQuorumReviewCmd(), newQuorumClearFlagCmd(), newQuorumPolicyCmd(), newQuorumExportCmd())
	return cmd
}

func newQuorumProposeCmd() *cobra.Command {
	var cf *clientFlags
	var id, kind, data, capability, rule, onNoQuorum string
	var agents []string
	var count, k uint32
	var deadline time.Duration
	var wait bool
	cmd := &cobra.Command{
		Use:   "propose",
		Short: "Ask independent agents on distinct hosts to vote on a decision",
		Long: `Propose a decision. Voters are chosen by capability and count, or named
with --agents. The default rule is BFT: n = 3f+1 voters on distinct hosts,
decided by 2f+1 matching signed votes. Without a quorum by the deadline the
decision is rejected, or escalated to operator review with --on-no-quorum escalate.`,
		Example: `  meshnode quorum propose --id pay-42 --kind payment.approve --data '{"amount":900}' \
      --capability payment.review --count 4 --wait`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			payload, err := readData(data, cmd.InOrStdin())
			if err != nil {
				return err
			}
			sel, err := voterSelection(capability, agents, count, cmd.Flags().Changed("count"))
			if err != nil {
				return err
			}
			p := &meshnodev1.Proposal{
				Id:        id,
				Kind:      kind,
				Payload:   payload,
				Selection: sel,
				Rule:      &meshnodev1.QuorumRule{K: k},
				Deadline:  timestamppb.New(time.Now().Add(deadline)),
			}
			switch rule {
			case "bft":
				p.Rule.Kind = meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_BFT
			case "k-of-n":
				p.Rule.Kind = meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_K_OF_N
			case "unanimous":
				p.Rule.Kind = meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_UNANIMOUS
			default:
				return usagef("--rule %q: use bft, k-of-n or unanimous", rule)
			}
			switch onNoQuorum {
			case "reject":
				p.OnNoQuorum = meshnodev1.NoQuorumAction_NO_QUORUM_ACTION_REJECT
			case "escalate":
				p.OnNoQuorum = meshnodev1.NoQuorumAction_NO_QUORUM_ACTION_ESCALATE
			default:
				return usagef("--on-no-quorum %q: use reject or escalate", onNoQuorum)
			}
			conn, err := cf.dial()
			if err != nil {
				return err
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), deadline+cf.timeout)
			defer cancel()
			resp, err := meshnodev1.NewQuorumServiceClient(conn).Propose(ctx, &meshnodev1.ProposeRequest{Proposal: p, Wait: wait})
			if err != nil {
				return inFlagWords(rpcError("propose", err, cf.socketPath()))
			}
			return printDecision(cmd, cf, resp.GetDecision())
		},
	}
	cf = addClientFlagsNoWait(cmd)
	cf.needLeader = true
	f := cmd.Flags()
	f.StringVar(&id, "id", "", "proposal id; proposing an id again returns the same decision")
	f.StringVar(&kind, "kind", "", "what is decided, for example payment.approve")
	f.StringVar(&data, "data", "", "payload: inline, @FILE or - for standard input")
	f.StringVar(&capability, "capability", "", "choose voters among agents offering this capability")
	f.Uint32Var(&count, "count", 4, "how many voters to choose by --capability")
	f.StringSliceVar(&agents, "agents", nil, "explicit voter agent ids instead of --capability (their number is the count)")
	f.StringVar(&rule, "rule", "bft", "bft (2f+1 of 3f+1), k-of-n or unanimous")
	f.Uint32Var(&k, "k", 0, "votes needed with --rule k-of-n")
	f.StringVar(&onNoQuorum, "on-no-quorum", "reject", "reject or escalate (to operator review)")
	f.DurationVar(&deadline, "deadline", 30*time.Second, "voting closes after this long")
	f.BoolVar(&wait, "wait", true, "wait for the decision instead of returning at once")
	return cmd
}

// voterSelection builds the selection from the flags: --agents names the
// voters and so their count; --count goes with --capability.
func voterSelection(capability string, agents []string, count uint32, countGiven bool) (*meshnodev1.VoterSelection, error) {
	switch {
	case capability != "" && len(agents) > 0:
		return nil, usagef("give --capability (with --count) or --agents, not both")
	case capability == "" && len(agents) == 0:
		return nil, usagef("name the voters: --capability CAP (with --count N) or --agents a,b,c")
	case len(agents) > 0:
		if countGiven && int(count) != len(agents) {
			return nil, usagef("--count %d but --agents names %d voters; leave --count out with --agents", count, len(agents))
		}
		return &meshnodev1.VoterSelection{AgentIds: agents}, nil
	}
	return &meshnodev1.VoterSelection{Capability: capability, Count: count}, nil
}

// flagWords turns the proposal's field and enum names in a node's error
// into the flags and values of 'quorum propose'.
var flagWords = strings.NewReplacer(
	"selection.capability", "--capability",
	"selection.agent_ids", "--agents",
	"selection.count", "--count",
	"rule.allow_shared_hosts", "shared hosts",
	"rule.kind", "--rule",
	"rule.k", "--k",
	"QUORUM_RULE_KIND_K_OF_N", "k-of-n",
	"QUORUM_RULE_KIND_BFT", "bft",
	"QUORUM_RULE_KIND_UNANIMOUS", "unanimous",
	"K_OF_N", "k-of-n",
	"agent_ids", "--agents",
)

// inFlagWords rewrites an error's message with flagWords, keeping whether
// it is a usage error.
func inFlagWords(err error) error {
	msg := flagWords.Replace(err.Error())
	var ue usageError
	if errors.As(err, &ue) {
		return usageError{errors.New(msg)}
	}
	return errors.New(msg)
}

func printDecision(cmd *cobra.Command, cf *clientFlags, d *meshnodev1.Decision) error {
	if cf.json {
		return printJSON(cmd.OutOrStdout(), d)
	}
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	// What the node says, not what anyone signed: only the certificate's
	// votes and a review carry signatures, and `quorum verify` checks them.
	fmt.Fprintln(tw, "(as the node reports it; [unsigned] fields prove nothing: run meshnode quorum verify)")
	fmt.Fprintf(tw, "Proposal:\t%s (%s), proposed by %s on %s [unsigned]\n", d.GetProposal().GetId(), d.GetProposal().GetKind(),
		orDash(d.GetProposal().GetProposerAgentId()), orDash(d.GetProposal().GetProposerNode()))
	fmt.Fprintf(tw, "Status:\t%s\n", enumWord(d.GetStatus().String(), "DECISION_STATUS_"))
	fmt.Fprintf(tw, "Outcome:\t%s\n", enumWord(d.GetOutcome().String(), "CHOICE_"))
	fmt.Fprintf(tw, "Votes:\t%d received [unsigned list of signed votes], %d in certificate [signed]\n", len(d.GetVotes()), len(d.GetCertificate().GetVotes()))
	for _, v := range d.GetVotes() {
		fmt.Fprintf(tw, "  %s\t%s on %s\t%s\n", enumWord(v.GetChoice().String(), "CHOICE_"), v.GetVoterAgentId(), v.GetVoterNode(), v.GetReason())
	}
	for _, e := range d.GetEquivocations() {
		fmt.Fprintf(tw, "Equivocation:\t%s signed two different votes\n", e.GetAgentId())
	}
	if r := d.GetReview(); r != nil {
		fmt.Fprintf(tw, "Review:\t%s by %s: %s [signed by the operator]\n", enumWord(r.GetOutcome().String(), "CHOICE_"), r.GetOperator(), r.GetReason())
	}
	if d.GetDetail() != "" {
		fmt.Fprintf(tw, "Detail:\t%s [unsigned]\n", d.GetDetail())
	}
	if c := d.GetClosedAt(); c != nil {
		fmt.Fprintf(tw, "Closed:\t%s [unsigned]\n", c.AsTime().Local().Format(time.RFC3339))
	}
	return tw.Flush()
}

func enumWord(s, prefix string) string { return strings.ToLower(strings.TrimPrefix(s, prefix)) }

func newQuorumGetCmd() *cobra.Command {
	var cf *clientFlags
	cmd := &cobra.Command{
		Use:   "get ID",
		Short: "Show a decision, its votes and its certificate",
		Example: `  meshnode quorum get pay-42
  meshnode quorum get pay-42 --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := getDecision(cf, args[0])
			if err != nil {
				return err
			}
			return printDecision(cmd, cf, d)
		},
	}
	cf = addClientFlags(cmd)
	return cmd
}

func getDecision(cf *clientFlags, id string) (*meshnodev1.Decision, error) {
	conn, ctx, done, err := cf.open()
	if err != nil {
		return nil, err
	}
	defer done()
	resp, err := meshnodev1.NewQuorumServiceClient(conn).GetDecision(ctx, &meshnodev1.GetDecisionRequest{Id: id})
	if err != nil {
		return nil, rpcError("get decision "+id, err, cf.socketPath())
	}
	return resp.GetDecision(), nil
}

func newQuorumListCmd() *cobra.Command {
	var cf *clientFlags
	var kind string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List decisions, newest first",
		Example: `  meshnode quorum list
  meshnode quorum list --kind payment.approve --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conn, ctx, done, err := cf.open()
			if err != nil {
				return err
			}
			defer done()
			resp, err := meshnodev1.NewQuorumServiceClient(conn).ListDecisions(ctx, &meshnodev1.ListDecisionsRequest{Kind: kind})
			if err != nil {
				return rpcError("list decisions", err, cf.socketPath())
			}
			if cf.json {
				return printJSON(cmd.OutOrStdout(), resp)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tKIND\tSTATUS\tOUTCOME\tVOTES")
			for _, d := range resp.GetDecisions() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", d.GetProposal().GetId(), d.GetProposal().GetKind(),
					enumWord(d.GetStatus().String(), "DECISION_STATUS_"), enumWord(d.GetOutcome().String(), "CHOICE_"), len(d.GetVotes()))
			}
			return tw.Flush()
		},
	}
	cf = addClientFlags(cmd)
	cmd.Flags().StringVar(&kind, "kind", "", "only decisions of this kind")
	return cmd
}

func newQuorumVerifyCmd() *cobra.Command {
	var cf *clientFlags
	var trustFile, bundleFile string
	var acceptRegistryKeys bool
	cmd := &cobra.Command{
		Use:   "verify (ID | --bundle FILE --trust FILE)",
		Short: "Check a decision yourself, against the cluster's trust bundle",
		Long: `Check a decision locally instead of trusting the node: every vote's ed25519
signature with the key its voter held when the decision was committed, the
electorate, the rule's threshold and distinct hosts, the quorum policy of the
kind (signed by a policy operator, checked against the trust bundle) and that
the decision meets it; or, for a reviewed decision, the reviewer's signature.
It prints the rule, n, q, the policy and who set it, and each voter and host.

With ID it asks the node for the decision, keys and operator records (none of
which it trusts) and anchors on --trust (default: the node's trust bundle).
With --bundle it needs no node: a file from 'meshnode quorum export' and
--trust. Offline, the voters' keys must be pinned by the kind's policy (then
nothing but the trust bundle proves them); --accept-registry-keys takes the
bundled registry keys instead.`,
		Example: `  meshnode quorum verify pay-42
  meshnode quorum verify pay-42 --trust ./ca/trust-bundle.pb
  meshnode quorum verify --bundle pay-42.bundle --trust trust-bundle.pb`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case bundleFile != "" && len(args) > 0:
				return usagef("give a decision ID or --bundle FILE, not both")
			case bundleFile != "":
				return verifyOffline(cmd, bundleFile, trustFile, acceptRegistryKeys)
			case len(args) == 0:
				return usagef("name the decision (ID), or verify a file with --bundle FILE --trust FILE")
			}
			return verifyOnline(cmd, cf, trustFile, args[0])
		},
	}
	cmd.Flags().StringVar(&trustFile, "trust", "", "trust bundle file to anchor on (default with ID: the node's; required with --bundle)")
	cmd.Flags().StringVar(&bundleFile, "bundle", "", "verify this exported bundle offline, without a node")
	cmd.Flags().BoolVar(&acceptRegistryKeys, "accept-registry-keys", false, "with --bundle: accept voter keys the policy does not pin (the registry's record)")
	cf = addClientFlags(cmd)
	return cmd
}

func newQuorumReviewCmd() *cobra.Command {
	var cf *clientFlags
	var approve, reject bool
	var reason string
	cmd := &cobra.Command{
		Use:     "review ID (--approve | --reject) --reason TEXT",
		Short:   "Record an operator's decision on a proposal escalated for review",
		Example: `  meshnode quorum review pay-42 --approve --reason "verified with the customer"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if approve == reject {
				return usagef("give exactly one of --approve or --reject")
			}
			if strings.TrimSpace(reason) == "" {
				return usagef("--reason is required: say why, for the record")
			}
			outcome := meshnodev1.Choice_CHOICE_APPROVE
			if reject {
				outcome = meshnodev1.Choice_CHOICE_REJECT
			}
			conn, ctx, done, err := cf.open()
			if err != nil {
				return err
			}
			defer done()
			resp, err := meshnodev1.NewQuorumServiceClient(conn).Review(ctx, &meshnodev1.ReviewRequest{Id: args[0], Outcome: outcome, Reason: reason})
			if err != nil {
				return rpcError("review "+args[0], err, cf.socketPath())
			}
			return printDecision(cmd, cf, resp.GetDecision())
		},
	}
	cf = writeClientFlags(cmd)
	cmd.Flags().BoolVar(&approve, "approve", false, "approve the proposal")
	cmd.Flags().BoolVar(&reject, "reject", false, "reject the proposal")
	cmd.Flags().StringVar(&reason, "reason", "", "why (required)")
	return cmd
}
