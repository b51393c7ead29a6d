package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
)

// waitGoal is what `meshnode wait` waits for, beyond a node that answers.
type waitGoal struct {
	leader     bool
	voters     int
	capability string
}

func newWaitCmd() *cobra.Command {
	var cf *clientFlags
	var goal waitGoal
	cmd := &cobra.Command{
		Use:   "wait [--leader] [--voters N] [--capability CAP]",
		Short: "Wait until the node answers, and until the cluster is as asked",
		Long: `Wait until the node answers on its socket and, as asked, knows a Raft
leader, sees N Raft voters (the leader included) alive, or sees a ready agent
for a capability. Gives up after --timeout with exit status 1 and says what
was still missing. Scripts use it after 'meshnode run ... &'.

Every other client command already waits up to --wait (30s) for the node to
answer; 'wait' is for the states that take longer, such as new servers
becoming voters.`,
		Example: `  meshnode run --name n1 --data-dir /tmp/n1 &
  meshnode wait --leader --socket /tmp/n1/meshnode.sock
  meshnode wait --voters 3 --timeout 2m
  meshnode wait --capability inventory.lookup`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if goal.voters < 0 {
				return usagef("--voters %d: must not be negative", goal.voters)
			}
			deadline := time.Now().Add(cf.timeout)
			conn, st, err := waitForNode(cf.absSocket(), cf.timeout, goal.leader || goal.voters > 0, false, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer conn.Close()
			var missing string
			for {
				missing, err = goal.missing(conn, time.Until(deadline))
				if err != nil {
					return rpcError("wait", err, cf.socketPath())
				}
				if missing == "" {
					break
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("gave up after %v: %s", cf.timeout, missing)
				}
				time.Sleep(200 * time.Millisecond)
			}
			if !cf.json {
				fmt.Fprintln(cmd.OutOrStdout(), goal.describe(st))
			}
			return nil
		},
	}
	cf = addClientFlags(cmd)
	cmd.Flags().Lookup("wait").Hidden = true // --timeout bounds the whole wait
	cmd.Flags().Lookup("timeout").Usage = "give up after this long"
	cmd.Flags().Lookup("timeout").DefValue = "1m0s"
	cf.timeout = time.Minute
	cmd.Flags().BoolVar(&goal.leader, "leader", false, "until the node knows a Raft leader")
	cmd.Flags().IntVar(&goal.voters, "voters", 0, "until this many alive servers are Raft voters (leader included)")
	cmd.Flags().StringVar(&goal.capability, "capability", "", "until an agent offering this capability is ready")
	return cmd
}

// missing returns what the cluster lacks of the goal, or "" when it is met.
func (g waitGoal) missing(conn *grpc.ClientConn, left time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), max(left, time.Second))
	defer cancel()
	if g.voters > 0 {
		resp, err := meshnodev1.NewNodeServiceClient(conn).Members(ctx, &meshnodev1.MembersRequest{})
		if err != nil {
			return "", err
		}
		var voters []string
		for _, m := range resp.GetMembers() {
			if m.GetStatus() == "alive" && (m.GetRaftRole() == "leader" || m.GetRaftRole() == "voter") {
				voters = append(voters, m.GetName())
			}
		}
		if len(voters) < g.voters {
			return fmt.Sprintf("%d of %d voters alive (%s); new servers become voters once they have caught up", len(voters), g.voters, strings.Join(voters, ", ")), nil
		}
	}
	if g.capability != "" {
		resp, err := meshnodev1.NewRegistryServiceClient(conn).Discover(ctx, &meshnodev1.DiscoverRequest{Capability: g.capability})
		if err != nil {
			return "", err
		}
		for _, d := range resp.GetAgents() {
			if agentStatus(d.GetAgent(), d.GetLoad()) == "ready" {
				return "", nil
			}
		}
		return fmt.Sprintf("no ready agent offers %s (%d registered)", g.capability, len(resp.GetAgents())), nil
	}
	return "", nil
}

func (g waitGoal) describe(st *meshnodev1.StatusResponse) string {
	parts := []string{"ready: node " + st.GetName() + " answers"}
	if g.leader {
		parts = append(parts, "leader known")
	}
	if g.voters > 0 {
		parts = append(parts, fmt.Sprintf("%d voters alive", g.voters))
	}
	if g.capability != "" {
		parts = append(parts, g.capability+" served")
	}
	return strings.Join(parts, ", ")
}
