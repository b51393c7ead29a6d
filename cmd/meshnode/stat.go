package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/agentmesh/meshnode/internal/traffic"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/spf13/cobra"
)

// figures are one direction's totals, as stat prints and --json writes them.
type figures struct {
	Pairs             int     `json:"pairs"`
	Requests          uint64  `json:"requests"`
	Errors            uint64  `json:"errors"`
	RequestsPerSecond float64 `json:"requests_per_second"`
	SuccessPercent    float64 `json:"success_percent"`
	P50Ms             float64 `json:"p50_ms"`
	P99Ms             float64 `json:"p99_ms"`
}

type statReport struct {
	Kind     string   `json:"kind"`
	Name     string   `json:"name"`
	Window   string   `json:"window"`
	Outgoing *figures `json:"outgoing,omitempty"`
	Incoming figures  `json:"incoming"`
	Nodes    []string `json:"nodes"`
	// Unreachable nodes' calls are missing unless the other side answered.
	Unreachable []string `json:"unreachable_nodes"`
}

// total merges edges' windows: counts and histograms add, so the
// quantiles are over every call, not an average of the pairs' quantiles.
func (m *matrix) total(edges []traffic.Reported) figures {
	var st traffic.Stats
	for i := range edges {
		st.Add(m.stats(&edges[i]))
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return figures{Pairs: len(edges), Requests: st.Requests, Errors: st.Errors, RequestsPerSecond: st.Rate(),
		SuccessPercent: st.SuccessPercent(), P50Ms: ms(st.Quantile(.5)), P99Ms: ms(st.Quantile(.99))}
}

func newStatCmd() *cobra.Command {
	var mf *matrixFlags
	cmd := &cobra.Command{
		Use:   "stat agent|capability|node NAME",
		Short: "Sum up the calls of one agent, capability or node",
		Long: `Sum up, over a rolling window (default 1m), the calls one agent made and
received, the calls to one capability, or the calls of the agents on one node:
count, calls per second, success and p50/p99 latency, from the merged
cluster-wide traffic matrix (see 'meshnode traffic'). An unknown agent,
capability or node is an error (exit 1).`,
		Example: `  meshnode stat agent n1/planner
  meshnode stat capability inventory.lookup --window 10m
  meshnode stat node n2 --json`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, name := args[0], args[1]
			if kind != "agent" && kind != "capability" && kind != "node" {
				return usagef("stat %q: the first argument must be agent, capability or node", kind)
			}
			m, conn, ctx, done, err := mf.open()
			if err != nil {
				return err
			}
			defer done()
			cf := mf.cf
			var in, out func(e *traffic.Reported) bool
			switch kind {
			case "agent":
				id, err := m.resolveAgent(name)
				if err != nil {
					return err
				}
				name = id
				out = func(e *traffic.Reported) bool { return e.Caller == id }
				in = func(e *traffic.Reported) bool { return e.Callee == id }
			case "capability":
				if err := m.checkCapability(name); err != nil {
					return err
				}
				in = func(e *traffic.Reported) bool { return e.Capability == name }
			case "node":
				members, err := meshnodev1.NewNodeServiceClient(conn).Members(ctx, &meshnodev1.MembersRequest{})
				if err != nil {
					return rpcError("members", err, cf.socketPath())
				}
				known := false
				for _, mb := range members.GetMembers() {
					known = known || mb.GetName() == name
				}
				if !known {
					return fmt.Errorf("node %q is not a member of the cluster; 'meshnode members' lists them", name)
				}
				prefix := name + "/"
				out = func(e *traffic.Reported) bool { return strings.HasPrefix(e.Caller, prefix) }
				in = func(e *traffic.Reported) bool { return strings.HasPrefix(e.Callee, prefix) }
			}
			pick := func(keep func(*traffic.Reported) bool) []traffic.Reported {
				var sel []traffic.Reported
				for _, e := range m.active() {
					if keep(&e) {
						sel = append(sel, e)
					}
				}
				return sel
			}
			rep := statReport{Kind: kind, Name: name, Window: shortSpan(traffic.Spans[m.window]), Incoming: m.total(pick(in)),
				Nodes: m.resp.GetNodes(), Unreachable: m.resp.GetUnreachableNodes()}
			if out != nil {
				o := m.total(pick(out))
				rep.Outgoing = &o
			}
			if cf.json {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return printStat(cmd.OutOrStdout(), &rep)
		},
	}
	mf = addMatrixFlags(cmd, "1m", false)
	return cmd
}

func printStat(w io.Writer, r *statReport) error {
	fmt.Fprintf(w, "%s %s, last %s\n", r.Kind, r.Name, r.Window)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\tPAIRS\tCALLS\tRPS\tSUCCESS\tP50\tP99")
	row := func(label string, f *figures) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.2f\t%.1f%%\t%s\t%s\n", label, f.Pairs, f.Requests, f.RequestsPerSecond, f.SuccessPercent,
			fmtMs(time.Duration(f.P50Ms*float64(time.Millisecond))), fmtMs(time.Duration(f.P99Ms*float64(time.Millisecond))))
	}
	if r.Outgoing != nil {
		row("outgoing", r.Outgoing)
	}
	row("incoming", &r.Incoming)
	if len(r.Unreachable) > 0 {
		fmt.Fprintf(tw, "(did not answer: %v)\n", r.Unreachable)
	}
	return tw.Flush()
}
