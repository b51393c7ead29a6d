package api

import (
	"context"
	"log/slog"
	"slices"

	"github.com/agentmesh/meshnode/internal/traffic"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// TrafficPeers asks the other live nodes for their own traffic edges.
type TrafficPeers interface {
	// AskTraffic returns each answering node's edges, and the nodes that
	// were expected to answer and did not.
	AskTraffic(ctx context.Context) (answers map[string][]*meshnodev1.TrafficEdge, unreachable []string)
}

// trafficService serves TrafficService from the node's table, merged with
// its peers' unless the caller asks for this node only.
type trafficService struct {
	meshnodev1.UnimplementedTrafficServiceServer
	node  string
	table *traffic.Table
	peers TrafficPeers
	log   *slog.Logger
}

// LocalTraffic is a node's own edges, both sides, unmerged: what it
// answers a peer with.
func LocalTraffic(node string, t *traffic.Table) []*meshnodev1.TrafficEdge {
	var out []*meshnodev1.TrafficEdge
	for _, e := range t.Snapshot() {
		out = append(out, traffic.ToProto(&traffic.Reported{Edge: e, Nodes: []string{node}}))
	}
	return out
}

func (s *trafficService) Traffic(ctx context.Context, req *meshnodev1.TrafficRequest) (*meshnodev1.TrafficResponse, error) {
	var all []traffic.Reported
	for _, e := range s.table.Snapshot() {
		all = append(all, traffic.Reported{Edge: e, Nodes: []string{s.node}})
	}
	resp := &meshnodev1.TrafficResponse{Nodes: []string{s.node}, LatencyBoundsMs: traffic.LatencyBoundsMs()}
	if !req.GetLocal() && s.peers != nil {
		answers, unreachable := s.peers.AskTraffic(ctx)
		resp.UnreachableNodes = unreachable
	nodes:
		for node, edges := range answers {
			var got []traffic.Reported
			for _, pe := range edges {
				r, err := traffic.FromProto(pe)
				if err != nil {
					// A node whose answer does not parse is as good as
					// unreachable: say so rather than merge half of it.
					s.log.Warn("traffic: a peer's edges do not parse", "node", node, "err", err)
					resp.UnreachableNodes = append(resp.UnreachableNodes, node)
					continue nodes
				}
				r.Nodes = []string{node} // a peer answers for itself only
				got = append(got, r)
			}
			all = append(all, got...)
			resp.Nodes = append(resp.Nodes, node)
		}
	}
	for _, r := range traffic.Merge(all) {
		resp.Edges = append(resp.Edges, traffic.ToProto(&r))
	}
	slices.Sort(resp.Nodes)
	slices.Sort(resp.UnreachableNodes)
	return resp, nil
}
