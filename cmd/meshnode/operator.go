package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/agentmesh/meshnode/operator"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func newOperatorCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "operator",
		Short: "Operators: the people whose keys sign admin commands",
		Long: `Operators sign admin commands (policy, tokens, revocations, operators) with
their own ed25519 key; the servers verify each signature where the command
takes effect. Every operator record is signed by an admin, back to the first
admin whose key is in the cluster's trust bundle (docs/operators.md).`,
		Example: `  meshnode operator keygen --out ~/.config/meshnode/operator.key
  meshnode operator add alice --role policy --pubkey alice.pub
  meshnode operator remove alice
  meshnode operator list`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usagef("operator needs a subcommand: init, keygen, add, remove, list or whoami")
		},
	}
	cmd.AddCommand(newOperatorInitCmd(), newOperatorKeygenCmd(), newOperatorAddCmd(), newOperatorRemoveCmd(), newOperatorListCmd(), newOperatorWhoamiCmd())
	return cmd
}

func newOperatorKeygenCmd() *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:   "keygen",
		Short: "Create an operator key pair: the private key (0600) and FILE.pub",
		Example: `  meshnode operator keygen --out ~/.config/meshnode/operator.key
  # give ~/.config/meshnode/operator.key.pub to an admin`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				home, err := os.UserHomeDir()
				if err != nil {
					return usagef("--out FILE: no home directory to default to")
				}
				out = filepath.Join(home, ".config", "meshnode", "operator.key")
			}
			key, err := operator.GenerateKey()
			if err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
				return err
			}
			if err := operator.WriteKeyFile(out, key); err != nil {
				return err
			}
			if err := operator.WritePublicKeyFile(out+".pub", key.Public().(ed25519.PublicKey)); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "private key: %s (keep it on this machine)\npublic key:  %s.pub (give it to an admin: meshnode operator add NAME --role ROLE --pubkey %s.pub)\n", out, out, filepath.Base(out))
			return nil
		},
	}
	c.Flags().StringVar(&out, "out", "", "where to write the private key (default ~/.config/meshnode/operator.key)")
	return c
}

func newOperatorAddCmd() *cobra.Command {
	var cf *clientFlags
	var roles []string
	var pubFile string
	var ttl time.Duration
	var version uint64
	c := &cobra.Command{
		Use:   "add NAME",
		Short: "Add an operator (or replace its record) with roles, signed by your admin key",
		Example: `  meshnode operator add alice --role policy --role reviewer --pubkey alice.pub
  meshnode operator add alice --role viewer --pubkey alice.pub --version 2   # narrow alice's roles`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if pubFile == "" {
				return usagef("--pubkey FILE: the operator's public key (from meshnode operator keygen)")
			}
			if len(roles) == 0 {
				return usagef("--role: at least one of %s", roleList())
			}
			for _, r := range roles {
				if !operator.ValidRole(operator.Role(r)) {
					return usagef("--role %q: want one of %s", r, roleList())
				}
			}
			pub, err := operator.ReadPublicKeyFile(pubFile)
			if err != nil {
				return err
			}
			conn, ctx, done, err := cf.open()
			if err != nil {
				return err
			}
			defer done()
			key, issuer, from, err := recordSigner(ctx, conn, cf)
			if err != nil {
				return err
			}
			rec := &meshnodev1.OperatorRecord{Name: args[0], PublicKey: pub, Roles: roles, Issuer: issuer, Version: version}
			if ttl > 0 {
				rec.NotAfterUnixNano = time.Now().Add(ttl).UnixNano()
			}
			sr, err := operator.SignRecord(issuer, key, rec)
			if err != nil {
				return err
			}
			resp, err := meshnodev1.NewOperatorServiceClient(conn).PutOperator(ctx, &meshnodev1.PutOperatorRequest{Record: sr})
			if err != nil {
				return rpcError("add operator", err, cf.socketPath())
			}
			if cf.json {
				return printJSON(cmd.OutOrStdout(), resp)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "operator %s (%s) added at index %d, signed by %s (%s)\n", args[0], strings.Join(roles, ","), resp.GetIndex(), issuer, from)
			return nil
		},
	}
	cf = writeClientFlags(c)
	c.Flags().StringArrayVar(&roles, "role", nil, "a role to grant: "+roleList()+" (repeat)")
	c.Flags().StringVar(&pubFile, "pubkey", "", "the operator's public key file")
	c.Flags().DurationVar(&ttl, "ttl", 0, "the record expires after this long (default: never)")
	c.Flags().Uint64Var(&version, "version", 1, "record version; a newer version replaces an older one")
	return c
}

func roleList() string {
	var out []string
	for _, r := range operator.Roles() {
		out = append(out, string(r))
	}
	return strings.Join(out, ", ")
}

func newOperatorListCmd() *cobra.Command {
	var cf *clientFlags
	c := &cobra.Command{
		Use:     "list",
		Short:   "List operators, their roles and whether each record verifies",
		Example: `  meshnode operator list --json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRPC(cmd, cf, "list operators", func(ctx context.Context, conn *grpc.ClientConn) (*meshnodev1.ListOperatorsResponse, error) {
				return meshnodev1.NewOperatorServiceClient(conn).ListOperators(ctx, &meshnodev1.ListOperatorsRequest{})
			}, func(w io.Writer, resp *meshnodev1.ListOperatorsResponse) error {
				fmt.Fprintf(w, "%-20s %-40s %-10s %s\n", "NAME", "ROLES", "ISSUER", "STATUS")
				for _, o := range resp.GetOperators() {
					st := "valid"
					if o.GetProblem() != "" {
						st = o.GetProblem()
					}
					r := o.GetRecord()
					fmt.Fprintf(w, "%-20s %-40s %-10s %s\n", r.GetName(), strings.Join(r.GetRoles(), ","), r.GetIssuer(), st)
				}
				return nil
			})
		},
	}
	cf = addClientFlags(c)
	return c
}

func newOperatorWhoamiCmd() *cobra.Command {
	var cf *clientFlags
	c := &cobra.Command{
		Use:     "whoami",
		Short:   "Show which operator key admin commands from here are signed with",
		Example: `  meshnode operator whoami`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, name, from, err := operatorKey(cf.absSocket())
			if err != nil {
				return err
			}
			if key == nil {
				fmt.Fprintln(cmd.OutOrStdout(), "no operator key: admin commands from here are refused (create one with meshnode operator keygen)")
				return nil
			}
			if conn, ctx, done, err := cf.open(); err == nil {
				name, err = signerName(ctx, conn, key, name)
				done()
				if err != nil {
					return err
				}
			} else if name == "" {
				name = "(unknown: the node is not reachable to look the key up)"
			}
			pub, _ := operator.MarshalPublicKey(key.Public().(ed25519.PublicKey))
			fmt.Fprintf(cmd.OutOrStdout(), "operator %s, key %s\n%s", name, from, pub)
			return nil
		},
	}
	cf = addClientFlags(c)
	return c
}
