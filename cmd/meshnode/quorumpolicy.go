package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func newQuorumPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "The weakest terms each kind of decision may be proposed with",
		Long: `A quorum policy sets, per kind of decision, the weakest terms a proposal may
have: the rule, the fewest voters, whether voters may share hosts, the
capability voters are chosen by, and the nodes whose agents may vote. The
node refuses a weaker proposal before asking anyone, and the servers refuse
to record a decision that does not meet the policy in force. A kind with no
policy gets the cluster default (--default), and without one: BFT, at least
4 voters on distinct hosts. Setting a policy is a policy operator's command.`,
		Example: `  meshnode quorum policy set payment.approve --min-voters 4 --capability payment.review --nodes n1,n2,n3,n4
  meshnode quorum policy set --default --rule k-of-n --k 2 --min-voters 3
  meshnode quorum policy set payment.approve --capability payment.review --pin-registered
  meshnode quorum policy list`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return usagef("quorum policy needs a subcommand: set or list")
		},
	}
	cmd.AddCommand(newQuorumPolicySetCmd(), newQuorumPolicyListCmd())
	return cmd
}

func newQuorumPolicySetCmd() *cobra.Command {
	var cf *clientFlags
	var def, sharedHosts bool
	var rule, capability string
	var k, minVoters uint32
	var nodes, voterKeys []string
	var pinRegistered bool
	c := &cobra.Command{
		Use:   "set (KIND | --default)",
		Short: "Set the quorum policy of a kind of decision, or the cluster default",
		Example: `  meshnode quorum policy set payment.approve --min-voters 7 --nodes n1,n2,n3,n4,n5,n6,n7
  meshnode quorum policy set demo --rule k-of-n --k 2 --min-voters 2
  meshnode quorum policy set --default --rule unanimous --min-voters 3`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind := ""
			switch {
			case def && len(args) == 1:
				return usagef("give KIND or --default, not both")
			case !def && len(args) == 0:
				return usagef("name the kind of decision (KIND), or --default for every kind without its own policy")
			case len(args) == 1:
				kind = args[0]
			}
			r, err := ruleFromFlags(rule, k)
			if err != nil {
				return err
			}
			pol := &meshnodev1.QuorumPolicy{Kind: kind, MinRule: r, MinVoters: minVoters, AllowSharedHosts: sharedHosts, VoterCapability: capability, EligibleNodes: nodes}
			for _, k := range voterKeys {
				raw, err := base64.StdEncoding.DecodeString(k)
				if err != nil || len(raw) != ed25519.PublicKeySize {
					return usagef("--voter-key %q: want a base64 ed25519 public key (32 bytes), as meshnode agents --json shows votePublicKey", k)
				}
				pol.EligibleKeys = append(pol.EligibleKeys, raw)
			}
			conn, ctx, done, err := cf.open()
			if err != nil {
				return err
			}
			defer done()
			if pinRegistered {
				if capability == "" {
					return usagef("--pin-registered pins the keys of the agents offering --capability: give --capability")
				}
				agents, err := meshnodev1.NewRegistryServiceClient(conn).ListAgents(ctx, &meshnodev1.ListAgentsRequest{Capability: capability, Consistency: meshnodev1.Consistency_CONSISTENCY_CONSISTENT})
				if err != nil {
					return rpcError("list the agents offering "+capability, err, cf.socketPath())
				}
				for _, a := range agents.GetAgents() {
					if len(a.GetVotePublicKey()) == ed25519.PublicKeySize && (len(nodes) == 0 || slices.Contains(nodes, a.GetNode())) {
						pol.EligibleKeys = append(pol.EligibleKeys, a.GetVotePublicKey())
					}
				}
			}
			resp, err := meshnodev1.NewQuorumServiceClient(conn).SetQuorumPolicy(ctx, &meshnodev1.SetQuorumPolicyRequest{Policy: pol})
			if err != nil {
				return inFlagWords(rpcError("set quorum policy", err, cf.socketPath()))
			}
			if cf.json {
				return printJSON(cmd.OutOrStdout(), resp)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "quorum policy of %s set at index %d: %s\n", kindWord(kind), resp.GetIndex(), policySummary(pol))
			return nil
		},
	}
	cf = writeClientFlags(c)
	f := c.Flags()
	f.BoolVar(&def, "default", false, "set the cluster default, for every kind without its own policy")
	f.StringVar(&rule, "rule", "bft", "the weakest rule allowed: bft (2f+1 of 3f+1), k-of-n or unanimous")
	f.Uint32Var(&k, "k", 0, "with --rule k-of-n: at least this many matching votes (and a majority)")
	f.Uint32Var(&minVoters, "min-voters", 4, "the fewest voters an electorate may have")
	f.BoolVar(&sharedHosts, "allow-shared-hosts", false, "let several voters sit on one node (default: every voter on a distinct node)")
	f.StringVar(&capability, "capability", "", "voters are chosen by the node among agents offering this capability; proposals cannot name them")
	f.StringSliceVar(&nodes, "nodes", nil, "only agents on these nodes may vote (the pinned hosts)")
	f.StringArrayVar(&voterKeys, "voter-key", nil, "only this vote key may vote (base64, repeat): the pinned voters; certificates then prove themselves from the trust bundle")
	f.BoolVar(&pinRegistered, "pin-registered", false, "pin the vote keys of the agents now offering --capability (on --nodes, if given)")
	return c
}

// ruleFromFlags is the QuorumRule for --rule and --k.
func ruleFromFlags(rule string, k uint32) (*meshnodev1.QuorumRule, error) {
	r := &meshnodev1.QuorumRule{K: k}
	switch rule {
	case "bft":
		r.Kind = meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_BFT
	case "k-of-n":
		r.Kind = meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_K_OF_N
	case "unanimous":
		r.Kind = meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_UNANIMOUS
	default:
		return nil, usagef("--rule %q: use bft, k-of-n or unanimous", rule)
	}
	if k != 0 && r.Kind != meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_K_OF_N {
		return nil, usagef("--k goes with --rule k-of-n")
	}
	return r, nil
}

func kindWord(kind string) string {
	if kind == "" {
		return "the cluster default"
	}
	return "kind " + kind
}

func policySummary(p *meshnodev1.QuorumPolicy) string {
	rule := enumWord(p.GetMinRule().GetKind().String(), "QUORUM_RULE_KIND_")
	if p.GetMinRule().GetKind() == meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_UNSPECIFIED {
		rule = "bft"
	}
	if p.GetMinRule().GetK() > 0 {
		rule += fmt.Sprintf(" (k=%d)", p.GetMinRule().GetK())
	}
	minVoters := p.GetMinVoters()
	if minVoters == 0 {
		minVoters = 4
	}
	parts := []string{"rule " + rule, fmt.Sprintf("at least %d voters", minVoters)}
	if p.GetAllowSharedHosts() {
		parts = append(parts, "hosts may be shared")
	} else {
		parts = append(parts, "distinct hosts")
	}
	if p.GetVoterCapability() != "" {
		parts = append(parts, "voters chosen by capability "+p.GetVoterCapability())
	}
	if len(p.GetEligibleNodes()) > 0 {
		parts = append(parts, "voters only on "+strings.Join(p.GetEligibleNodes(), ","))
	}
	if n := len(p.GetEligibleKeys()); n > 0 {
		parts = append(parts, fmt.Sprintf("%d pinned voter keys", n))
	}
	return strings.Join(parts, ", ")
}

func newQuorumPolicyListCmd() *cobra.Command {
	var cf *clientFlags
	c := &cobra.Command{
		Use:     "list",
		Short:   "List the quorum policies and who set them",
		Example: `  meshnode quorum policy list --json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRPC(cmd, cf, "list quorum policies", func(ctx context.Context, conn *grpc.ClientConn) (*meshnodev1.ListQuorumPoliciesResponse, error) {
				return meshnodev1.NewQuorumServiceClient(conn).ListQuorumPolicies(ctx, &meshnodev1.ListQuorumPoliciesRequest{})
			}, func(w io.Writer, resp *meshnodev1.ListQuorumPoliciesResponse) error {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "KIND\tSET BY\tINDEX\tPOLICY")
				for _, r := range resp.GetPolicies() {
					kind := r.GetPolicy().GetKind()
					if kind == "" {
						kind = "(default)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", kind, r.GetSignature().GetOperator(), r.GetModifyIndex(), policySummary(r.GetPolicy()))
				}
				fmt.Fprintf(tw, "(any other kind)\t\t\t%s\n", policySummary(resp.GetEffectiveDefault()))
				return tw.Flush()
			})
		},
	}
	cf = addClientFlags(c)
	return c
}
