package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/agentmesh/meshnode/node"
	"github.com/spf13/cobra"
)

// Exit statuses: 2 for usage and configuration errors, 1 for runtime failures.
const (
	exitRuntime = 1
	exitUsage   = 2
)

// usageError marks an error the user fixes by changing the command line.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

func main() {
	root := newRootCmd()
	err := root.Execute()
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "meshnode: "+err.Error())
	var ue usageError
	if errors.As(err, &ue) || errors.Is(err, node.ErrInvalidConfig) {
		os.Exit(exitUsage)
	}
	os.Exit(exitRuntime)
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
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newRunCmd(), newStatusCmd(), newMembersCmd(), newAgentsCmd(), newDiscoverCmd(), newCallCmd(), newTokenCmd(), newNodeCmd(), newCertCmd(), newPolicyCmd(), newQuorumCmd(), newPKICmd(), newVersionCmd())
	return root
}
