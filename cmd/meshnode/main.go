package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/agentmesh/meshnode/node"
	"github.com/spf13/cobra"
)

// Exit statuses: 2 for usage and configuration errors, 3 for a node the
// cluster revoked, 1 for other runtime failures.
const (
	exitRuntime = 1
	exitUsage   = 2
	exitRevoked = 3
)

// usageError marks an error the user fixes by changing the command line.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line args and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "meshnode: "+err.Error())
	return exitCode(err)
}

func exitCode(err error) int {
	var ue usageError
	if errors.As(err, &ue) || errors.Is(err, node.ErrInvalidConfig) {
		return exitUsage
	}
	if errors.Is(err, node.ErrRevoked) {
		return exitRevoked
	}
	return exitRuntime
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "meshnode",
		Short: "The agent mesh: one daemon per host, agents call capabilities, not addresses",
		Long: `meshnode runs one daemon per host. Agents on the host talk to it over a Unix
socket: they register capabilities and call capabilities, and the mesh routes
each call to the best agent anywhere in the cluster.

Start a single-node cluster with every default:
  meshnode run
Then, from another terminal:
  meshnode status`,
		Example: `  meshnode run
  meshnode status
  meshnode call demo.echo --data '"hello"'
  meshnode <command> --help      # every command has examples`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.PersistentFlags().StringVar(&operatorKeyFlag, "operator-key", "", "operator key that signs admin commands (env MESHNODE_OPERATOR_KEY; default ~/.config/meshnode/operator.key, then the node's bootstrap key)")
	root.PersistentFlags().StringVar(&operatorNameFlag, "operator", "", "operator name the key belongs to (env MESHNODE_OPERATOR; default: the operator whose record holds the key)")
	root.AddCommand(newRunCmd(), newWaitCmd(), newStatusCmd(), newMembersCmd(), newAgentsCmd(), newDiscoverCmd(), newCallCmd(), newTaskCmd(), newTokenCmd(), newNodeCmd(), newCertCmd(), newPolicyCmd(), newQuorumCmd(), newAuthzCmd(), newPKICmd(), newOperatorCmd(), newTrafficCmd(), newTopCmd(), newStatCmd(), newDashboardCmd(), newVersionCmd())
	usageArgs(root)
	return root
}

// requireSubcommand makes cmd, a group of subcommands, refuse to run
// without one: a missing or unknown subcommand is a usage error (exit 2)
// rather than help on standard output and success.
func requireSubcommand(cmd *cobra.Command) {
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var names []string
		for _, c := range cmd.Commands() {
			if c.IsAvailableCommand() {
				names = append(names, c.Name())
			}
		}
		if len(args) == 0 {
			return usagef("%s needs a command: %s (see '%s --help')", cmd.CommandPath(), strings.Join(names, ", "), cmd.CommandPath())
		}
		hint := ""
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			hint = fmt.Sprintf(" (did you mean %s?)", strings.Join(s, " or "))
		}
		return usagef("unknown command %q for %s%s; its commands are: %s", args[0], cmd.CommandPath(), hint, strings.Join(names, ", "))
	}
}

// usageArgs makes every argument-count error in the tree a usage error,
// and every group of subcommands refuse to run without one.
func usageArgs(cmd *cobra.Command) {
	if cmd.HasSubCommands() && cmd.Run == nil && cmd.RunE == nil {
		requireSubcommand(cmd)
	}
	if check := cmd.Args; check != nil {
		cmd.Args = func(c *cobra.Command, args []string) error {
			if err := check(c, args); err != nil {
				var ue usageError
				if errors.As(err, &ue) {
					return err
				}
				return usageError{fmt.Errorf("%s: %w (see '%s --help')", c.CommandPath(), err, c.CommandPath())}
			}
			return nil
		}
	}
	for _, c := range cmd.Commands() {
		usageArgs(c)
	}
}
