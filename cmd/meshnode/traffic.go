package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/agentmesh/meshnode/internal/traffic"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/spf13/cobra"
)

func newTrafficCmd() *cobra.Command {
	var mf *matrixFlags
	var agentName, capability string
	var slowest int
	var noIncoming bool
	cmd := &cobra.Command{
		Use:   "traffic",
		Short: "Show the traffic matrix: who calls whom, how often, how well, how fast",
		Long: `Show the traffic matrix: one row per caller agent, callee agent and capability,
with calls per second, success and p50/p99 latency over a rolling window
(10s, 1m or 10m; default 1m). Every live node is asked and the answers are
merged: each call is counted once, by the caller's node (end to end), or by
the callee's node when the caller's did not answer. Nodes that did not answer
are named. A caller shown as "-" made calls not on behalf of an agent.

An unknown --agent or --capability is an error (exit 1): an agent or
capability with no traffic yet shows an empty table.`,
		Example: `  meshnode traffic                              # every pair, busiest first
  meshnode traffic --agent n1/planner           # interactions involving one agent
  meshnode traffic --slowest 10 --window 10m    # the 10 slowest pairs by p99
  meshnode traffic --no-incoming                # agents nobody called
  meshnode traffic --capability inventory.lookup --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if slowest < 0 {
				return usagef("--slowest %d: must not be negative", slowest)
			}
			m, _, _, done, err := mf.open()
			if err != nil {
				return err
			}
			defer done()
			cf := mf.cf
			if noIncoming {
				idle := m.noIncoming()
				if cf.json {
					return printJSON(cmd.OutOrStdout(), &meshnodev1.ListAgentsResponse{Agents: idle})
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "AGENT\tNODE\tSTATUS")
				for _, a := range idle {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", a.GetId(), a.GetNode(), a.GetStatus())
				}
				fmt.Fprintf(tw, "(%d of %d agents had no incoming calls in the last %s%s)\n", len(idle), len(m.agents), shortSpan(traffic.Spans[m.window]), unreachableNote(m))
				return tw.Flush()
			}
			edges, err := m.filter(agentName, capability)
			if err != nil {
				return err
			}
			if slowest > 0 {
				m.sortEdges(edges, "latency")
				edges = edges[:min(slowest, len(edges))]
			} else {
				m.sortEdges(edges, mf.sortKey)
			}
			if cf.json {
				out := &meshnodev1.TrafficResponse{Nodes: m.resp.GetNodes(), UnreachableNodes: m.resp.GetUnreachableNodes(), LatencyBoundsMs: m.resp.GetLatencyBoundsMs()}
				for i := range edges {
					out.Edges = append(out.Edges, traffic.ToProto(&edges[i]))
				}
				return printJSON(cmd.OutOrStdout(), out)
			}
			return m.printEdges(cmd.OutOrStdout(), edges)
		},
	}
	mf = addMatrixFlags(cmd, "1m", true)
	f := cmd.Flags()
	f.StringVar(&agentName, "agent", "", "only calls this agent made or received (id, or a name unique in the cluster)")
	f.StringVar(&capability, "capability", "", "only calls to this capability")
	f.IntVar(&slowest, "slowest", 0, "only the N pairs with the highest p99 latency")
	f.BoolVar(&noIncoming, "no-incoming", false, "list the registered agents no call reached in the window instead")
	return cmd
}

// filter keeps the active edges involving agentName and of capability.
func (m *matrix) filter(agentName, capability string) ([]traffic.Reported, error) {
	id := ""
	if agentName != "" {
		var err error
		if id, err = m.resolveAgent(agentName); err != nil {
			return nil, err
		}
	}
	if capability != "" {
		if err := m.checkCapability(capability); err != nil {
			return nil, err
		}
	}
	var out []traffic.Reported
	for _, e := range m.active() {
		if (id == "" || e.Caller == id || e.Callee == id) && (capability == "" || e.Capability == capability) {
			out = append(out, e)
		}
	}
	return out, nil
}

func (m *matrix) printEdges(w io.Writer, edges []traffic.Reported) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CALLER\tCALLEE\tCAPABILITY\tRPS\tSUCCESS\tP50\tP99\tCALLS")
	for i := range edges {
		e := &edges[i]
		s := m.stats(e)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f\t%.1f%%\t%s\t%s\t%d\n", agentLabel(e.Caller), agentLabel(e.Callee), e.Capability,
			s.Rate(), s.SuccessPercent(), fmtMs(s.Quantile(.5)), fmtMs(s.Quantile(.99)), s.Requests)
	}
	fmt.Fprintf(tw, "(%d pairs over the last %s, from %d nodes%s)\n", len(edges), shortSpan(traffic.Spans[m.window]), len(m.resp.GetNodes()), unreachableNote(m))
	return tw.Flush()
}

func unreachableNote(m *matrix) string {
	if u := m.resp.GetUnreachableNodes(); len(u) > 0 {
		return fmt.Sprintf("; did not answer: %v", u)
	}
	return ""
}
