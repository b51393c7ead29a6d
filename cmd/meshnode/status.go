package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/spf13/cobra"
)

func newStatusCmd() *cobra.Command {
	var cf *clientFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the local node's name, version, role and uptime",
		Example: `  meshnode status
  meshnode status --json --socket /var/lib/meshnode/meshnode.sock
  meshnode status --wait 0      # fail at once if no node answers`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conn, ctx, done, err := cf.open()
			if err != nil {
				return err
			}
			defer done()
			st, err := meshnodev1.NewNodeServiceClient(conn).Status(ctx, &meshnodev1.StatusRequest{})
			if err != nil {
				return rpcError("status", err, cf.socketPath())
			}
			out := cmd.OutOrStdout()
			if cf.json {
				return printJSON(out, st)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "Name:\t%s\n", st.GetName())
			fmt.Fprintf(tw, "Version:\t%s\n", st.GetVersion())
			fmt.Fprintf(tw, "Role:\t%s\n", st.GetRole())
			fmt.Fprintf(tw, "Uptime:\t%s\n", (time.Duration(st.GetUptimeSeconds()) * time.Second).String())
			fmt.Fprintf(tw, "Bind:\t%s\n", st.GetBindAddress())
			fmt.Fprintf(tw, "Data dir:\t%s\n", st.GetDataDir())
			fmt.Fprintf(tw, "Identity:\t%s\n", st.GetSpiffeId())
			if exp := st.GetCertificateExpiresAt(); exp != nil {
				fmt.Fprintf(tw, "Certificate:\texpires %s (in %s)\n", exp.AsTime().Format(time.RFC3339), time.Until(exp.AsTime()).Round(time.Minute))
			}
			fmt.Fprintf(tw, "Leader:\t%s\n", orDash(st.GetLeader()))
			fmt.Fprintf(tw, "Registry index:\t%d\n", st.GetRegistryIndex())
			fmt.Fprintf(tw, "Local agents:\t%d\n", st.GetLocalAgents())
			return tw.Flush()
		},
	}
	cf = addClientFlags(cmd)
	return cmd
}
