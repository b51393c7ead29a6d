package main

import (
	"fmt"
	"text/tabwriter"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/spf13/cobra"
)

func newMembersCmd() *cobra.Command {
	var cf *clientFlags
	cmd := &cobra.Command{
		Use:   "members",
		Short: "List the cluster's nodes: address, role, gossip status, Raft role, agents, load",
		Long: `List the cluster's nodes: address, role, gossip status, Raft role, agents, load.

RAFT is a server's place in Raft: leader, voter, non-voter (catching up, or a
standby once the cluster has its voters), none (not yet added), or
not-admitted: the node runs with --server but joined with a client token, so
it is never added. To make it a server, remove its data directory and join it
again with a token from 'meshnode token create --server'.`,
		Example: `  meshnode members
  meshnode members --json
  meshnode wait --voters 3 && meshnode members     # after starting new servers`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conn, ctx, done, err := cf.open()
			if err != nil {
				return err
			}
			defer done()
			resp, err := meshnodev1.NewNodeServiceClient(conn).Members(ctx, &meshnodev1.MembersRequest{})
			if err != nil {
				return rpcError("members", err, cf.socketPath())
			}
			if cf.json {
				return printJSON(cmd.OutOrStdout(), resp)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tADDRESS\tROLE\tSTATUS\tRAFT\tAGENTS\tIN-FLIGHT\tVERSION")
			for _, m := range resp.GetMembers() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", m.GetName(), m.GetAddress(), m.GetRole(), m.GetStatus(),
					orDash(m.GetRaftRole()), m.GetAgents(), m.GetInFlight(), orDash(m.GetVersion()))
			}
			return tw.Flush()
		},
	}
	cf = addClientFlags(cmd)
	return cmd
}
