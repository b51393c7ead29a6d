package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/agentmesh/meshnode/authz"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func newAuthzCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "authz",
		Short: "Authorization between agents: roles, call rules, serve rules",
		Long: `The authorization policy grants roles to agents (bindings, by node and agent
name pattern and owner uid), says which calls are allowed or denied (call
rules: from a role or agent pattern to a capability pattern or callee role;
deny wins), and which roles may serve which capabilities (serve rules). In
mode allow (the default) what no rule decides is allowed; in mode deny it is
refused. Roles an agent claims when it registers grant nothing. Applying a
policy is a policy operator's command. See docs/authorization.md.`,
		Example: `  meshnode authz apply -f rbac.yaml
  meshnode authz get
  meshnode authz check --from n1/ingest --to admin.shutdown`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return usagef("authz needs a subcommand: apply, get or check")
		},
	}
	cmd.AddCommand(newAuthzApplyCmd(), newAuthzGetCmd(), newAuthzCheckCmd())
	return cmd
}

// readPolicyFile decodes and validates a policy file; its errors name the
// file, line and field, and are usage errors (nothing was sent).
func readAuthzFile(path string) (*meshnodev1.AuthzPolicy, error) {
	if path == "" {
		return nil, usagef("give the policy file with -f FILE")
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, usagef("-f %s: %v", path, err)
	}
	if fi.Size() > authz.MaxFileSize {
		return nil, usagef("-f %s: %d bytes, over the %d-byte limit", path, fi.Size(), authz.MaxFileSize)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("-f %s: %v", path, err)
	}
	p, err := authz.DecodeYAML(filepath.Base(path), data)
	if err != nil {
		return nil, usagef("%v; nothing was applied", err)
	}
	return p, nil
}

func newAuthzApplyCmd() *cobra.Command {
	var cf *clientFlags
	var file string
	var dryRun bool
	c := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Replace the cluster's authorization policy with a YAML file (signed)",
		Example: `  meshnode authz apply -f rbac.yaml
  meshnode authz apply -f rbac.yaml --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := readAuthzFile(file)
			if err != nil {
				return err
			}
			if dryRun {
				fmt.Fprintf(cmd.OutOrStdout(), "%s is valid: %s\n", p.GetSource(), authzSummary(p))
				return nil
			}
			conn, ctx, done, err := cf.open()
			if err != nil {
				return err
			}
			defer done()
			resp, err := meshnodev1.NewAuthzServiceClient(conn).SetAuthzPolicy(ctx, &meshnodev1.SetAuthzPolicyRequest{Policy: p})
			if err != nil {
				return rpcError("apply "+p.GetSource(), err, cf.socketPath())
			}
			if cf.json {
				return printJSON(cmd.OutOrStdout(), resp)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "authorization policy %s applied at index %d: %s\n", p.GetSource(), resp.GetIndex(), authzSummary(p))
			return nil
		},
	}
	cf = writeClientFlags(c)
	c.Flags().StringVarP(&file, "file", "f", "", "the policy file (YAML; docs/authorization.md)")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "validate the file and print its summary; send nothing")
	return c
}

func authzSummary(p *meshnodev1.AuthzPolicy) string {
	mode := p.GetMode()
	if mode == "" {
		mode = authz.ModeAllow
	}
	return fmt.Sprintf("mode %s, %d bindings, %d call rules, %d serve rules", mode, len(p.GetBindings()), len(p.GetCallRules()), len(p.GetServeRules()))
}

func newAuthzGetCmd() *cobra.Command {
	var cf *clientFlags
	c := &cobra.Command{
		Use:     "get",
		Short:   "Print the authorization policy in force (YAML), and who set it",
		Example: "  meshnode authz get > rbac.yaml\n  meshnode authz get --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conn, ctx, done, err := cf.open()
			if err != nil {
				return err
			}
			defer done()
			resp, err := meshnodev1.NewAuthzServiceClient(conn).GetAuthzPolicy(ctx, &meshnodev1.GetAuthzPolicyRequest{})
			if err != nil {
				return rpcError("get the authorization policy", err, cf.socketPath())
			}
			if cf.json {
				return printJSON(cmd.OutOrStdout(), resp)
			}
			rec := resp.GetRecord()
			if rec == nil {
				fmt.Fprintln(cmd.OutOrStdout(), "# no authorization policy: mode allow, no rules")
				return nil
			}
			out, err := authz.EncodeYAML(rec.GetPolicy())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "# %s, set by operator %s at index %d\n%s", rec.GetPolicy().GetSource(), rec.GetSignature().GetOperator(), rec.GetModifyIndex(), out)
			return nil
		},
	}
	cf = addClientFlags(c)
	return c
}

func newAuthzCheckCmd() *cobra.Command {
	var cf *clientFlags
	var from, to, callee string
	c := &cobra.Command{
		Use:   "check --from AGENT --to CAPABILITY",
		Short: "Say whether an agent may call a capability, and which rule decides",
		Example: `  meshnode authz check --from n1/ingest --to analysis.summarise
  meshnode authz check --from n1/ingest --to admin.shutdown --callee ops/root`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" || to == "" {
				return usagef("give --from AGENT (<node>/<name>) and --to CAPABILITY")
			}
			if !strings.Contains(from, "/") {
				return usagef("--from %q: give the agent's id, <node>/<name>", from)
			}
			conn, ctx, done, err := cf.open()
			if err != nil {
				return err
			}
			defer done()
			resp, err := meshnodev1.NewAuthzServiceClient(conn).CheckAuthz(ctx, &meshnodev1.CheckAuthzRequest{FromAgent: from, Capability: to, ToAgent: callee})
			if err != nil {
				return rpcError("check", err, cf.socketPath())
			}
			if cf.json {
				return printJSON(cmd.OutOrStdout(), resp)
			}
			verdict := "deny"
			if resp.GetAllowed() {
				verdict = "allow"
			}
			roles := strings.Join(resp.GetCallerRoles(), ",")
			if roles == "" {
				roles = "none"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s -> %s (roles of %s: %s)\n  decided by %s\n", verdict, from, to, from, roles, resp.GetRule())
			return nil
		},
	}
	cf = addClientFlags(c)
	c.Flags().StringVar(&from, "from", "", "the calling agent's id, <node>/<name>")
	c.Flags().StringVar(&to, "to", "", "the capability called")
	c.Flags().StringVar(&callee, "callee", "", "the agent that would answer (for rules naming a callee role, and serve rules)")
	return c
}
