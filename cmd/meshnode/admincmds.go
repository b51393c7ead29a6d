package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Admin commands that retire things: tokens, nodes, agents and flags. Each
// is signed with the operator key (see sign.go) and verified by the state
// machine; none has a local shortcut.

func newTokenListCmd() *cobra.Command {
	var cf *clientFlags
	c := &cobra.Command{
		Use:   "list",
		Short: "List the join tokens operators issued that have not expired",
		Long: `List the join tokens operators issued that have not expired: id, bound
name, role, who issued it, when it expires, and whether it was used or
revoked. The tokens themselves are never stored, so they cannot be shown.`,
		Example: `  meshnode token list
  meshnode token list --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRPC(cmd, cf, "list tokens", func(ctx context.Context, conn *grpc.ClientConn) (*meshnodev1.ListTokensResponse, error) {
				return meshnodev1.NewPKIServiceClient(conn).ListTokens(ctx, &meshnodev1.ListTokensRequest{})
			}, printTokens)
		},
	}
	cf = addClientFlags(c)
	return c
}

func printTokens(w io.Writer, resp *meshnodev1.ListTokensResponse) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tROLE\tISSUED BY\tEXPIRES\tSTATE")
	now := time.Now()
	for _, t := range resp.GetTokens() {
		name := t.GetNodeName()
		if name == "" {
			name = "(any)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.GetId(), name, roleWord(t.GetRole()), t.GetOperator(),
			t.GetExpiresAt().AsTime().Local().Format(time.DateTime), tokenState(t, now))
	}
	return tw.Flush()
}

func roleWord(r meshnodev1.JoinRole) string {
	if r == meshnodev1.JoinRole_JOIN_ROLE_SERVER {
		return "server"
	}
	return "client"
}

func tokenState(t *meshnodev1.IssuedToken, now time.Time) string {
	switch {
	case t.GetRevokedAt() != nil:
		return "revoked by " + t.GetRevokedBy()
	case t.GetUsedBy() != "":
		return "used by " + t.GetUsedBy()
	case t.GetExpiresAt().AsTime().Before(now):
		return "expired"
	}
	return "unused"
}

func newTokenRevokeCmd() *cobra.Command {
	var cf *clientFlags
	var reason string
	c := &cobra.Command{
		Use:   "revoke ID",
		Short: "Stop an issued join token from admitting anyone",
		Example: `  meshnode token list
  meshnode token revoke 3f2a9c... --reason "sent to the wrong channel"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRPC(cmd, cf, "revoke token "+args[0], func(ctx context.Context, conn *grpc.ClientConn) (*meshnodev1.RevokeTokenResponse, error) {
				return meshnodev1.NewPKIServiceClient(conn).RevokeToken(ctx, &meshnodev1.RevokeTokenRequest{Id: args[0], Reason: reason})
			}, func(w io.Writer, resp *meshnodev1.RevokeTokenResponse) error {
				_, err := fmt.Fprintf(w, "token %s revoked\n", args[0])
				return err
			})
		},
	}
	cf = writeClientFlags(c)
	c.Flags().StringVar(&reason, "reason", "", "why, for the record")
	return c
}

func newNodeRemoveCmd() *cobra.Command {
	var cf *clientFlags
	c := &cobra.Command{
		Use:   "remove NAME",
		Short: "Forget a node that is gone: its record and its agents",
		Long: `Forget a node that is gone: its record and its agents leave the registry.
A Raft server is refused (autopilot removes a dead server from the
configuration; revoke it if it must never come back). A live node registers
itself again when it next writes: to keep a node out, revoke it.`,
		Example: `  meshnode node remove n7
  meshnode node remove n7 --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRPC(cmd, cf, "remove node "+args[0], func(ctx context.Context, conn *grpc.ClientConn) (*meshnodev1.RemoveNodeResponse, error) {
				return meshnodev1.NewPKIServiceClient(conn).RemoveNode(ctx, &meshnodev1.RemoveNodeRequest{NodeName: args[0]})
			}, func(w io.Writer, resp *meshnodev1.RemoveNodeResponse) error {
				_, err := fmt.Fprintf(w, "node %s removed with %d agents\n", args[0], resp.GetAgentsRemoved())
				return err
			})
		},
	}
	cf = writeClientFlags(c)
	return c
}

func newAgentsRemoveCmd() *cobra.Command {
	var cf *clientFlags
	c := &cobra.Command{
		Use:   "remove NODE/NAME",
		Short: "Remove an agent from the registry, whoever owns it",
		Long: `Remove an agent from the registry, whoever owns it: for agents whose node is
gone or that are retired. A live agent on a live node registers again when
it reconnects.`,
		Example: `  meshnode agents remove n2/summarizer`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRPC(cmd, cf, "remove agent "+args[0], func(ctx context.Context, conn *grpc.ClientConn) (*meshnodev1.RemoveAgentResponse, error) {
				return meshnodev1.NewRegistryServiceClient(conn).RemoveAgent(ctx, &meshnodev1.RemoveAgentRequest{Id: args[0]})
			}, func(w io.Writer, resp *meshnodev1.RemoveAgentResponse) error {
				_, err := fmt.Fprintf(w, "agent %s removed\n", args[0])
				return err
			})
		},
	}
	cf = writeClientFlags(c)
	return c
}

func newQuorumClearFlagCmd() *cobra.Command {
	var cf *clientFlags
	var reason string
	c := &cobra.Command{
		Use:   "clear-flag NODE/NAME --reason TEXT",
		Short: "Let a flagged agent's votes count again (a reviewer's command)",
		Long: `An agent that signed two different votes on one proposal is flagged, and its
votes stop counting. A reviewer clears the flag once the cause is understood
(a restored key, a fixed model); the reason is kept in the log.`,
		Example: `  meshnode quorum clear-flag n2/voter-1 --reason "restored from backup; equivocation was the restore"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if reason == "" {
				return usagef("--reason TEXT: say why the agent's votes may count again")
			}
			return runRPC(cmd, cf, "clear flag of "+args[0], func(ctx context.Context, conn *grpc.ClientConn) (*meshnodev1.ClearFlagResponse, error) {
				return meshnodev1.NewQuorumServiceClient(conn).ClearFlag(ctx, &meshnodev1.ClearFlagRequest{AgentId: args[0], Reason: reason})
			}, func(w io.Writer, resp *meshnodev1.ClearFlagResponse) error {
				_, err := fmt.Fprintf(w, "flag of %s cleared\n", args[0])
				return err
			})
		},
	}
	cf = writeClientFlags(c)
	c.Flags().StringVar(&reason, "reason", "", "why the agent's votes may count again (required)")
	return c
}
