package main

import (
	"fmt"
	"os"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Read and set routing policies (per capability, or the cluster default \"*\")",
	}
	var getCF *clientFlags
	get := &cobra.Command{
		Use:   "get [CAPABILITY]",
		Short: "Show the policy in force for a capability, with every default filled in",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, ctx, done, err := getCF.open()
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
				return rpcError("get policy", err, getCF.socketPath())
			}
			if getCF.json {
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
	getCF = addClientFlags(get)

	var setCF *clientFlags
	var file, name, fallback string
	var maxAttempts, maxHops uint32
	var tiers []float64
	set := &cobra.Command{
		Use:   "set CAPABILITY",
		Short: "Validate and store a routing policy; an invalid one is refused and the old one stays",
		Long: `Store a routing policy for CAPABILITY ("*" for the cluster default). Give the
whole policy as JSON with --file (fields as in meshnode.v1.RoutingPolicy), or set
common fields with flags; flags override the file.`,
		Example: `  meshnode policy set inventory.lookup --policy latency --max-attempts 3
  meshnode policy set payment.approve --policy cost --quality-tiers 0.95,0.9
  meshnode policy set '*' --file policy.json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pol := &meshnodev1.RoutingPolicy{}
			if file != "" {
				b, err := os.ReadFile(file)
				if err != nil {
					return usagef("--file: %v", err)
				}
				if err := protojson.Unmarshal(b, pol); err != nil {
					return usagef("--file %s: not a RoutingPolicy in JSON: %v", file, err)
				}
			}
			pol.Capability = args[0]
			if name != "" {
				pol.Policy = name
			}
			if len(tiers) > 0 {
				pol.QualityTiers = tiers
			}
			if fallback != "" {
				pol.FallbackCapability = fallback
			}
			if maxHops > 0 {
				pol.MaxHops = maxHops
			}
			if maxAttempts > 0 {
				if pol.Retry == nil {
					pol.Retry = &meshnodev1.RetrySettings{}
				}
				pol.Retry.MaxAttempts = maxAttempts
			}
			conn, ctx, done, err := setCF.open()
			if err != nil {
				return err
			}
			defer done()
			resp, err := meshnodev1.NewPolicyServiceClient(conn).SetPolicy(ctx, &meshnodev1.SetPolicyRequest{Policy: pol})
			if err != nil {
				return rpcError("set policy", err, setCF.socketPath())
			}
			if setCF.json {
				return printJSON(cmd.OutOrStdout(), resp)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "# policy for %s committed at index %d; in force:\n", args[0], resp.GetIndex())
			return printJSON(cmd.OutOrStdout(), resp.GetEffective())
		},
	}
	setCF = writeClientFlags(set)
	set.Flags().StringVar(&file, "file", "", "JSON file holding a meshnode.v1.RoutingPolicy")
	set.Flags().StringVar(&name, "policy", "", "round_robin, least_loaded, latency or cost")
	set.Flags().Float64SliceVar(&tiers, "quality-tiers", nil, "success-rate floors to try in order, e.g. 0.95,0.9")
	set.Flags().StringVar(&fallback, "fallback", "", "capability to use when every agent's breaker is open")
	set.Flags().Uint32Var(&maxAttempts, "max-attempts", 0, "attempts per call, retries included")
	set.Flags().Uint32Var(&maxHops, "max-hops", 0, "longest agent-to-agent chain (default 8)")
	cmd.AddCommand(get, set)
	return cmd
}
