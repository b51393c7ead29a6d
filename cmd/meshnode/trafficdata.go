package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/agentmesh/meshnode/internal/traffic"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
)

// matrix is what traffic, top and stat read: the merged edges, decoded,
// and the registry's agents to tell a quiet agent from an unknown one.
type matrix struct {
	resp   *meshnodev1.TrafficResponse
	edges  []traffic.Reported
	agents []*meshnodev1.Agent
	window int // index into traffic.Spans
}

// parseWindow maps --window to its index in traffic.Spans.
func parseWindow(s string) (int, error) {
	for i, span := range traffic.Spans {
		if s == shortSpan(span) || s == span.String() {
			return i, nil
		}
	}
	return 0, usagef("--window %q: must be 10s, 1m or 10m", s)
}

func shortSpan(d time.Duration) string {
	if d >= time.Minute {
		return fmt.Sprintf("%dm", int(d/time.Minute))
	}
	return fmt.Sprintf("%ds", int(d/time.Second))
}

// matrixFlags are the flags traffic, top and stat share.
type matrixFlags struct {
	cf      *clientFlags
	window  string
	sortKey string // "" for a command that does not sort
	local   bool
}

func addMatrixFlags(cmd *cobra.Command, defWindow string, sorts bool) *matrixFlags {
	f := &matrixFlags{cf: addClientFlags(cmd)}
	cmd.Flags().StringVar(&f.window, "window", defWindow, "rolling window: 10s, 1m or 10m")
	if sorts {
		cmd.Flags().StringVar(&f.sortKey, "sort", "rate", "order: rate, errors, latency or name")
	}
	cmd.Flags().BoolVar(&f.local, "local", false, "this node's calls only; do not ask the other nodes")
	return f
}

// parse checks the flags and returns the window's index.
func (f *matrixFlags) parse() (int, error) {
	w, err := parseWindow(f.window)
	if err != nil {
		return 0, err
	}
	if f.sortKey != "" {
		if err := checkSortKey(f.sortKey); err != nil {
			return 0, err
		}
	}
	return w, nil
}

// open checks the flags, dials the node and loads the matrix; done closes
// the connection.
func (f *matrixFlags) open() (m *matrix, conn grpc.ClientConnInterface, ctx context.Context, done func(), err error) {
	w, err := f.parse()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	c, ctx, done, err := f.cf.open()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if m, err = loadMatrix(ctx, c, f.local, w, f.cf.socketPath()); err != nil {
		done()
		return nil, nil, nil, nil, err
	}
	return m, c, ctx, done, nil
}

// loadMatrix asks the node for the traffic matrix (cluster-wide unless
// local) and the registry's agents.
func loadMatrix(ctx context.Context, conn grpc.ClientConnInterface, local bool, window int, socket string) (*matrix, error) {
	resp, err := meshnodev1.NewTrafficServiceClient(conn).Traffic(ctx, &meshnodev1.TrafficRequest{Local: local})
	if err != nil {
		return nil, rpcError("traffic", err, socket)
	}
	m := &matrix{resp: resp, window: window}
	for _, e := range resp.GetEdges() {
		r, err := traffic.FromProto(e)
		if err != nil {
			return nil, fmt.Errorf("traffic: the node sent an edge this client cannot read (versions differ?): %v", err)
		}
		m.edges = append(m.edges, r)
	}
	agents, err := meshnodev1.NewRegistryServiceClient(conn).ListAgents(ctx, &meshnodev1.ListAgentsRequest{})
	if err != nil {
		return nil, rpcError("list agents", err, socket)
	}
	m.agents = agents.GetAgents()
	return m, nil
}

// resolveAgent turns a user's agent name into an id: an id as given, or a
// bare name that exactly one agent (registered or in the matrix) has.
func (m *matrix) resolveAgent(name string) (string, error) {
	ids := map[string]bool{}
	for _, a := range m.agents {
		ids[a.GetId()] = true
	}
	for _, e := range m.edges {
		ids[e.Caller], ids[e.Callee] = true, true
	}
	delete(ids, "")
	if ids[name] {
		return name, nil
	}
	var found []string
	for id := range ids {
		if strings.HasSuffix(id, "/"+name) {
			found = append(found, id)
		}
	}
	slices.Sort(found)
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return "", fmt.Errorf("agent %q is not registered and appears in no traffic; 'meshnode agents' lists the agents", name)
	}
	return "", fmt.Errorf("agent name %q is ambiguous: %s; give the full id", name, strings.Join(found, ", "))
}

// checkCapability fails for a capability no agent offers and no call used.
func (m *matrix) checkCapability(c string) error {
	for _, e := range m.edges {
		if e.Capability == c {
			return nil
		}
	}
	for _, a := range m.agents {
		for _, ac := range a.GetCapabilities() {
			if ac.GetName() == c {
				return nil
			}
		}
	}
	return fmt.Errorf("capability %q is offered by no agent and appears in no traffic; 'meshnode agents' lists the capabilities", c)
}

// stats is an edge's figures in the chosen window.
func (m *matrix) stats(e *traffic.Reported) *traffic.Stats { return &e.Windows[m.window] }

// active lists the edges with calls in the chosen window.
func (m *matrix) active() []traffic.Reported {
	var out []traffic.Reported
	for _, e := range m.edges {
		if m.stats(&e).Requests > 0 {
			out = append(out, e)
		}
	}
	return out
}

// noIncoming lists the registered agents no call reached in the window.
func (m *matrix) noIncoming() []*meshnodev1.Agent {
	called := map[string]bool{}
	for _, e := range m.active() {
		called[e.Callee] = true
	}
	var out []*meshnodev1.Agent
	for _, a := range m.agents {
		if !called[a.GetId()] {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b *meshnodev1.Agent) int { return strings.Compare(a.GetId(), b.GetId()) })
	return out
}

// sortEdges orders edges by key: rate, errors, p99 latency (highest first)
// or name; ties by name so frames do not jump.
func (m *matrix) sortEdges(edges []traffic.Reported, key string) {
	name := func(e *traffic.Reported) string { return e.Caller + "\x00" + e.Callee + "\x00" + e.Capability }
	slices.SortStableFunc(edges, func(a, b traffic.Reported) int {
		sa, sb := m.stats(&a), m.stats(&b)
		var c int
		switch key {
		case "rate":
			c = cmpDesc(sa.Rate(), sb.Rate())
		case "errors":
			c = cmpDesc(100-sa.SuccessPercent(), 100-sb.SuccessPercent())
		case "latency":
			c = cmpDesc(float64(sa.Quantile(.99)), float64(sb.Quantile(.99)))
		}
		if c != 0 {
			return c
		}
		return strings.Compare(name(&a), name(&b))
	})
}

func cmpDesc(a, b float64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}

// sortKeys are the orders top and traffic know.
var sortKeys = []string{"rate", "errors", "latency", "name"}

func checkSortKey(k string) error {
	if !slices.Contains(sortKeys, k) {
		return usagef("--sort %q: must be one of %s", k, strings.Join(sortKeys, ", "))
	}
	return nil
}

// agentLabel shows "" (a call not made for an agent) readably.
func agentLabel(id string) string {
	if id == "" {
		return "-"
	}
	return id
}

func fmtMs(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	case d < 10*time.Second:
		return fmt.Sprintf("%dms", d/time.Millisecond)
	}
	return fmt.Sprintf("%.0fs", d.Seconds())
}
