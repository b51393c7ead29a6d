package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Read and set routing policies (per capability, or the cluster default \"*\")",
		Example: `  meshnode policy list
  meshnode policy get inventory.lookup
  meshnode policy set inventory.lookup --max-attempts 2
  meshnode policy delete inventory.lookup`,
	}
	cmd.AddCommand(newPolicyGetCmd(), newPolicySetCmd(), newPolicyListCmd(), newPolicyDeleteCmd())
	return cmd
}

func newPolicyGetCmd() *cobra.Command {
	var cf *clientFlags
	get := &cobra.Command{
		Use:   "get [CAPABILITY]",
		Short: "Show the policy in force for a capability, with every default filled in",
		Example: `  meshnode policy get                    # the cluster default "*"
  meshnode policy get inventory.lookup --json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, ctx, done, err := cf.open()
			if err != nil {
				return err
			}
			defer done()
			capability := "*"
			if len(args) == 1 {
				capability = args[0]
			}
			resp, err := meshnodev1.NewPolicyServiceClient(conn).GetPolicy(ctx, &meshnodev1.GetPolicyRequest{Capability: capability})
			if err != nil {
				return rpcError("get policy", err, cf.socketPath())
			}
			if cf.json {
				return printJSON(cmd.OutOrStdout(), resp)
			}
			src := resp.GetSource()
			if src == "" {
				src = "built-in defaults"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "# policy for %s (from %s, index %d)\n", capability, src, resp.GetIndex())
			return printJSON(cmd.OutOrStdout(), resp.GetEffective())
		},
	}
	cf = addClientFlags(get)
	return get
}

// policyFlags are the fields `policy set` can change one by one.
type policyFlags struct {
	file, name, fallback, locality string
	maxAttempts, maxHops           uint32
	maxCost                        float64
	tiers                          []float64
}

func newPolicySetCmd() *cobra.Command {
	var cf *clientFlags
	var pf policyFlags
	set := &cobra.Command{
		Use:   "set CAPABILITY",
		Short: "Change a routing policy; an invalid one is refused and the old one stays",
		Long: `Change the routing policy of CAPABILITY ("*" for the cluster default).

Flags are a patch: they change only the fields they name and keep every other
field of the policy in force for CAPABILITY (its own, else the cluster
default's). --file replaces the whole policy instead: fields the file leaves
out take the built-in defaults. The file is JSON with the fields of
meshnode.v1.RoutingPolicy (see 'meshnode policy get --json'); enum values may
be written as on the command line (locality "local-only"). Flags given with
--file change the file's policy.`,
		Example: `  meshnode policy set inventory.lookup --max-attempts 2       # the routing policy stays
  meshnode policy set payment.approve --policy cost --quality-tiers 0.95,0.9
  meshnode policy set eu.records --locality local-only        # data residency
  meshnode policy set '*' --file policy.json                  # replaces the whole policy`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			changed := pf.changed(cmd)
			if pf.file == "" && len(changed) == 0 {
				return usagef("nothing to change: give --file or at least one of --policy, --quality-tiers, --fallback, --max-attempts, --max-hops, --max-cost, --locality")
			}
			conn, ctx, done, err := cf.open()
			if err != nil {
				return err
			}
			defer done()
			client := meshnodev1.NewPolicyServiceClient(conn)
			var pol *meshnodev1.RoutingPolicy
			var basis string
			if pf.file != "" {
				if pol, err = readPolicyFile(pf.file); err != nil {
					return err
				}
				basis = fmt.Sprintf("replaced by %s; fields it leaves out take the built-in defaults", pf.file)
			} else {
				cur, err := client.GetPolicy(ctx, &meshnodev1.GetPolicyRequest{Capability: args[0], Consistency: meshnodev1.Consistency_CONSISTENCY_CONSISTENT})
				if err != nil {
					return rpcError("read the policy in force", err, cf.socketPath())
				}
				pol = proto.Clone(cur.GetPolicy()).(*meshnodev1.RoutingPolicy)
				switch src := cur.GetSource(); src {
				case "":
					basis = "other fields: the built-in defaults"
				case policyKey(args[0]):
					basis = "other fields kept"
				default:
					basis = fmt.Sprintf("other fields copied from the policy of %q", src)
				}
				basis = "changed " + strings.Join(changed, ", ") + "; " + basis
			}
			if err := pf.apply(pol); err != nil {
				return err
			}
			pol.Capability = args[0]
			resp, err := client.SetPolicy(ctx, &meshnodev1.SetPolicyRequest{Policy: pol})
			if err != nil {
				return rpcError("set policy", err, cf.socketPath())
			}
			if cf.json {
				return printJSON(cmd.OutOrStdout(), resp)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "# policy for %s committed at index %d, applied here (%s); effective policy:\n", args[0], resp.GetIndex(), basis)
			return printJSON(cmd.OutOrStdout(), resp.GetEffective())
		},
	}
	cf = writeClientFlags(set)
	f := set.Flags()
	f.StringVar(&pf.file, "file", "", "JSON file holding a whole meshnode.v1.RoutingPolicy; replaces the policy")
	f.StringVar(&pf.name, "policy", "", "round_robin, least_loaded, latency or cost")
	f.Float64SliceVar(&pf.tiers, "quality-tiers", nil, "success-rate floors to try in order, e.g. 0.95,0.9")
	f.StringVar(&pf.fallback, "fallback", "", "capability to use when every agent's breaker is open")
	f.Uint32Var(&pf.maxAttempts, "max-attempts", 0, "attempts per call, retries included (1-10)")
	f.Uint32Var(&pf.maxHops, "max-hops", 0, "longest agent-to-agent chain (1-64)")
	f.Float64Var(&pf.maxCost, "max-cost", 0, "highest per-call cost accepted")
	f.StringVar(&pf.locality, "locality", "", "none, prefer-local or local-only")
	return set
}

// policyFlagFields maps each patch flag to the policy field it sets.
var policyFlagFields = map[string]string{
	"policy": "policy", "quality-tiers": "quality_tiers", "fallback": "fallback_capability",
	"max-attempts": "retry.max_attempts", "max-hops": "max_hops", "max-cost": "max_cost", "locality": "locality",
}

// changed lists the policy fields the command line sets, sorted.
func (pf *policyFlags) changed(cmd *cobra.Command) []string {
	var out []string
	for flag, field := range policyFlagFields {
		if cmd.Flags().Changed(flag) {
			out = append(out, field)
		}
	}
	sort.Strings(out)
	return out
}

// apply sets the fields whose flags were given; a zero value is never
// mistaken for "not given" because only changed flags hold one.
func (pf *policyFlags) apply(pol *meshnodev1.RoutingPolicy) error {
	if pf.name != "" {
		pol.Policy = pf.name
	}
	if len(pf.tiers) > 0 {
		pol.QualityTiers = pf.tiers
	}
	if pf.fallback != "" {
		pol.FallbackCapability = pf.fallback
	}
	if pf.maxHops > 0 {
		pol.MaxHops = pf.maxHops
	}
	if pf.maxCost > 0 {
		pol.MaxCost = proto.Float64(pf.maxCost)
	}
	if pf.maxAttempts > 0 {
		if pol.Retry == nil {
			pol.Retry = &meshnodev1.RetrySettings{}
		}
		pol.Retry.MaxAttempts = pf.maxAttempts
	}
	if pf.locality != "" {
		v, err := parseEnum(meshnodev1.LocalityPreference(0).Descriptor(), "--locality", pf.locality)
		if err != nil {
			return err
		}
		pol.Locality = meshnodev1.LocalityPreference(v.Number())
	}
	return nil
}

func readPolicyFile(file string) (*meshnodev1.RoutingPolicy, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, usagef("--file: %v", err)
	}
	pol := &meshnodev1.RoutingPolicy{}
	b, err = normalizeEnums(b, pol.ProtoReflect().Descriptor())
	if err != nil {
		return nil, usagef("--file %s: %v", file, err)
	}
	if err := protojson.Unmarshal(b, pol); err != nil {
		return nil, usagef("--file %s: not a RoutingPolicy in JSON: %v", file, err)
	}
	return pol, nil
}

func newPolicyListCmd() *cobra.Command {
	var cf *clientFlags
	list := &cobra.Command{
		Use:   "list",
		Short: "List the stored policies (capabilities without one follow \"*\")",
		Example: `  meshnode policy list
  meshnode policy list --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conn, ctx, done, err := cf.open()
			if err != nil {
				return err
			}
			defer done()
			resp, err := meshnodev1.NewPolicyServiceClient(conn).ListPolicies(ctx, &meshnodev1.ListPoliciesRequest{})
			if err != nil {
				return rpcError("list policies", err, cf.socketPath())
			}
			if cf.json {
				return printJSON(cmd.OutOrStdout(), resp)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CAPABILITY\tPOLICY\tMAX-ATTEMPTS\tLOCALITY\tFALLBACK")
			for _, p := range resp.GetPolicies() {
				loc := "-"
				if p.GetLocality() != 0 {
					loc = friendlyName(p.GetLocality().Descriptor(), p.GetLocality().Descriptor().Values().ByNumber(p.GetLocality().Number()))
				}
				attempts := "-"
				if n := p.GetRetry().GetMaxAttempts(); n > 0 {
					attempts = fmt.Sprint(n)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.GetCapability(), orDash(p.GetPolicy()), attempts, loc, orDash(p.GetFallbackCapability()))
			}
			fmt.Fprintf(tw, "(%d policies at index %d; '-' is the built-in default)\n", len(resp.GetPolicies()), resp.GetIndex())
			return tw.Flush()
		},
	}
	cf = addClientFlags(list)
	return list
}

func newPolicyDeleteCmd() *cobra.Command {
	var cf *clientFlags
	del := &cobra.Command{
		Use:   "delete CAPABILITY",
		Short: "Remove a capability's policy, so the cluster default applies to it again",
		Example: `  meshnode policy delete inventory.lookup
  meshnode policy delete '*'             # back to the built-in defaults`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, ctx, done, err := cf.open()
			if err != nil {
				return err
			}
			defer done()
			resp, err := meshnodev1.NewPolicyServiceClient(conn).DeletePolicy(ctx, &meshnodev1.DeletePolicyRequest{Capability: args[0]})
			if err != nil {
				return rpcError("delete policy "+args[0], err, cf.socketPath())
			}
			if cf.json {
				return printJSON(cmd.OutOrStdout(), resp)
			}
			now := `the cluster default "*" applies to it`
			if policyKey(args[0]) == "*" {
				now = "capabilities without a policy of their own follow the built-in defaults"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "policy for %s deleted at index %d, applied here; %s\n", args[0], resp.GetIndex(), now)
			return nil
		},
	}
	cf = writeClientFlags(del)
	return del
}

func policyKey(capability string) string {
	if capability == "" {
		return "*"
	}
	return capability
}
