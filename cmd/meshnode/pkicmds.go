package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"
)

func newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage one-time join tokens",
		Example: `  meshnode token create --server --name n2 > n2.token
  meshnode token list
  meshnode token revoke ID`,
	}
	var cf *clientFlags
	var ttl time.Duration
	var server bool
	var name string
	var anyName, rejoin bool
	create := &cobra.Command{
		Use:   "create",
		Short: "Print a one-time token a new node joins with",
		Long: `Print a one-time join token. The token carries the cluster root's
fingerprint, so the joining node verifies the cluster without trusting anything
on first use; it is refused once used or after --ttl.

A token names the node that will use it (--name), and a name is claimed once:
a token cannot take the name of a node that is registered, a server or
revoked. --rejoin makes a token for a node that lost its data dir to join
again under its own name; --any-name lets any name not yet claimed use it.`,
		Example: `  meshnode token create --ttl 10m --name n2 > n2.token
  meshnode run --name n2 --join 10.0.0.1:7946 --token-file n2.token     # on the new node
  meshnode token create --server --name n3 --json
  meshnode token create --name n2 --rejoin          # n2 lost its data dir`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ttl <= 0 {
				return usagef("--ttl %v: must be positive", ttl)
			}
			switch {
			case name == "" && !anyName:
				return usagef("--name NAME: a token names the node that will join with it (or pass --any-name)")
			case name != "" && anyName:
				return usagef("--name and --any-name: pass one of them")
			case rejoin && name == "":
				return usagef("--rejoin needs --name: the node that re-joins")
			case anyName:
				fmt.Fprintln(cmd.ErrOrStderr(), "warning: this token lets any new node name join; bind it with --name when you know the name")
			}
			conn, ctx, done, err := cf.open()
			if err != nil {
				return err
			}
			defer done()
			role := meshnodev1.JoinRole_JOIN_ROLE_CLIENT
			if server {
				role = meshnodev1.JoinRole_JOIN_ROLE_SERVER
			}
			resp, err := meshnodev1.NewPKIServiceClient(conn).CreateToken(ctx, &meshnodev1.CreateTokenRequest{Ttl: durationpb.New(ttl), Role: role, NodeName: name, AnyName: anyName, Rejoin: rejoin})
			if err != nil {
				return rpcError("create token", err, cf.socketPath())
			}
			if cf.json {
				return printJSON(cmd.OutOrStdout(), resp)
			}
			fmt.Fprintln(cmd.OutOrStdout(), resp.GetToken())
			return nil
		},
	}
	cf = writeClientFlags(create)
	create.Flags().DurationVar(&ttl, "ttl", time.Hour, "how long the token is valid")
	create.Flags().BoolVar(&server, "server", false, "the token admits a Raft server (default: a client)")
	create.Flags().StringVar(&name, "name", "", "the node that will join with the token (required unless --any-name)")
	create.Flags().BoolVar(&anyName, "any-name", false, "let any name not yet claimed use the token")
	create.Flags().BoolVar(&rejoin, "rejoin", false, "re-join --name, a node already registered (it lost its data dir)")
	cmd.AddCommand(create, newTokenListCmd(), newTokenRevokeCmd())
	return cmd
}

func newNodeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Operate on cluster nodes",
		Example: `  meshnode node revoke n7 --reason "host decommissioned"
  meshnode node remove n7`,
	}
	var cf *clientFlags
	var reason string
	var force bool
	revoke := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke a node's identity: every peer refuses it and the CA refuses its renewals",
		Long: `Revoke a node's identity: every peer refuses it and the CA refuses its
renewals. A revoked name can never join again, so revoking a name that is not
a member of the cluster (a typo, or a node that never joined) needs --force.`,
		Example: `  meshnode node revoke n7 --reason "host decommissioned"
  meshnode node revoke n9 --force --reason "token leaked before n9 joined"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, ctx, done, err := cf.open()
			if err != nil {
				return err
			}
			defer done()
			if !force {
				members, err := meshnodev1.NewNodeServiceClient(conn).Members(ctx, &meshnodev1.MembersRequest{})
				if err != nil {
					return rpcError("members", err, cf.socketPath())
				}
				var names []string
				known := false
				for _, m := range members.GetMembers() {
					names = append(names, m.GetName())
					known = known || m.GetName() == args[0]
				}
				if !known {
					return usagef("no node named %q is a member of the cluster (members: %s); a revoked name can never join, so to revoke it anyway, say --force", args[0], strings.Join(names, ", "))
				}
			}
			resp, err := meshnodev1.NewPKIServiceClient(conn).RevokeNode(ctx, &meshnodev1.RevokeNodeRequest{NodeName: args[0], Reason: reason})
			if err != nil {
				return rpcError("revoke "+args[0], err, cf.socketPath())
			}
			if cf.json {
				return printJSON(cmd.OutOrStdout(), resp)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "node %s revoked\n", args[0])
			return nil
		},
	}
	cf = writeClientFlags(revoke)
	revoke.Flags().StringVar(&reason, "reason", "", "why, for the record")
	revoke.Flags().BoolVar(&force, "force", false, "revoke a name that is not a member of the cluster")
	cmd.AddCommand(revoke, newNodeRemoveCmd())
	return cmd
}

func newCertCmd() *cobra.Command {
	var cf *clientFlags
	cmd := &cobra.Command{
		Use:   "cert",
		Short: "Show the local node's certificate: identity, serial, expiry",
		Example: `  meshnode cert
  meshnode cert --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conn, ctx, done, err := cf.open()
			if err != nil {
				return err
			}
			defer done()
			resp, err := meshnodev1.NewPKIServiceClient(conn).CertificateStatus(ctx, &meshnodev1.CertificateStatusRequest{})
			if err != nil {
				return rpcError("certificate status", err, cf.socketPath())
			}
			if cf.json {
				return printJSON(cmd.OutOrStdout(), resp)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			for _, line := range strings.Split(strings.TrimSpace(protoText(resp)), "\n") {
				fmt.Fprintln(tw, line)
			}
			return tw.Flush()
		},
	}
	cf = addClientFlags(cmd)
	return cmd
}
