package node

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/agentmesh/meshnode/gossip"
	"github.com/agentmesh/meshnode/internal/api"
	"github.com/agentmesh/meshnode/internal/background"
	"github.com/agentmesh/meshnode/internal/metrics"
	"github.com/agentmesh/meshnode/internal/traffic"
	"github.com/agentmesh/meshnode/pki"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/transport"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// MethodTraffic is the peer RPC a node answers with its own traffic edges.
const MethodTraffic = "traffic.Edges"

// trafficAskTimeout bounds how long a cluster-wide traffic query waits for
// each peer: a slow or partitioned node is named unreachable, not waited
// out at the caller's deadline.
const trafficAskTimeout = 3 * time.Second

// newObservability builds the registry and the traffic table; nothing
// listens until the metrics component starts.
func (n *Node) newObservability() error {
	reg, err := metrics.New(metrics.Config{Node: n.cfg.Name, Version: Version, MaxAgents: n.cfg.MetricsMaxAgents})
	if err != nil {
		return err
	}
	n.metrics = reg
	n.traffic = traffic.NewTable(n.clock, 0)
	return nil
}

// startMetrics bridges go-metrics (before consensus and gossip start
// emitting), exports what the transport and PKI already count, and opens
// the listener. It runs after the transport and PKI, so the gauges read
// components that exist.
func (n *Node) startMetrics(context.Context, *background.Group) error {
	stop, err := n.metrics.BridgeGoMetrics()
	if err != nil {
		return err
	}
	n.stopBridge = stop
	ep, keeper, tbl := n.ep, n.keeper, n.traffic
	n.metrics.GaugeFunc("meshnode_quic_connections", "Live QUIC connections to peer nodes.", func() float64 { return float64(ep.Stats().Conns) })
	n.metrics.CounterFunc("meshnode_quic_dials_total", "QUIC handshakes this node started.", func() float64 { return float64(ep.Stats().Dials) })
	n.metrics.CounterFunc("meshnode_quic_dial_failures_total", "QUIC handshakes this node started that failed.", func() float64 { return float64(ep.Stats().DialFailures) })
	n.metrics.CounterFunc("meshnode_quic_accepts_total", "QUIC handshakes peers completed with this node.", func() float64 { return float64(ep.Stats().Accepts) })
	n.metrics.CounterFunc("meshnode_quic_refused_identity_total", "Completed QUIC handshakes refused for a non-node identity.", func() float64 { return float64(ep.Stats().RefusedIdentity) })
	refusals := []struct {
		reason string
		count  func(transport.Refusals) uint64
	}{
		{"join_conns_per_ip", func(r transport.Refusals) uint64 { return r.JoinConnsPerIP }},
		{"join_conns", func(r transport.Refusals) uint64 { return r.JoinConns }},
		{"join_streams", func(r transport.Refusals) uint64 { return r.JoinStreams }},
		{"join_idle", func(r transport.Refusals) uint64 { return r.JoinIdle }},
		{"large_frame", func(r transport.Refusals) uint64 { return r.LargeFrames }},
		{"slow_frame", func(r transport.Refusals) uint64 { return r.SlowFrames }},
		{"raft_stream", func(r transport.Refusals) uint64 { return r.RaftStreams }},
		{"raft_dial", func(r transport.Refusals) uint64 { return r.RaftDials }},
		{"unexpected_peer", func(r transport.Refusals) uint64 { return r.UnexpectedPeer }},
	}
	for _, rf := range refusals {
		n.metrics.CounterFunc("meshnode_quic_refusals_total", "Connections, streams and dials the transport refused, by reason.",
			func() float64 { return float64(rf.count(ep.Refusals())) }, "reason", rf.reason)
	}
	n.metrics.GaugeFunc("meshnode_pki_certificate_expiry_seconds", "Seconds until this node's certificate expires (renewed at 2/3 of its life).", func() float64 {
		return keeper.Current().Leaf().NotAfter.Sub(n.clock.Now()).Seconds()
	})
	n.metrics.GaugeFunc("meshnode_traffic_edges", "Edges the traffic matrix tracks on this node.", func() float64 { return float64(tbl.Len()) })
	n.metrics.CounterFunc("meshnode_traffic_dropped_calls_total", "Calls the traffic matrix did not track because it was full.", func() float64 { return float64(tbl.Dropped()) })
	if n.cfg.MetricsBind == "" {
		return nil
	}
	srv, notice, err := metrics.Listen(n.cfg.MetricsBind, n.cfg.MetricsBindChosen, n.metrics.Handler())
	if err != nil {
		return err
	}
	if notice != "" {
		n.log.Warn(notice)
	}
	n.metricsSrv = srv
	return nil
}

// registerLateGauges exports consensus and the gossip view once they run:
// they start after the metrics component, and their fields are set then.
func (n *Node) registerLateGauges() {
	g, h, st := n.gossip, n.hub, n.store
	n.metrics.GaugeFunc("meshnode_raft_term", "This server's current Raft term; 0 on a client.", func() float64 { return float64(st.Term()) })
	n.metrics.GaugeFunc("meshnode_registry_index", "Index of this node's registry replica (Raft log index it has applied).", func() float64 { return float64(st.Index()) })
	for _, st := range []gossip.MemberStatus{gossip.MemberAlive, gossip.MemberSuspect, gossip.MemberDead, gossip.MemberLeft} {
		n.metrics.GaugeFunc("meshnode_gossip_members", "Cluster nodes as this node's gossip sees them, by state.", func() float64 {
			c := 0
			for _, m := range g.Members() {
				if m.Status == st {
					c++
				}
			}
			return float64(c)
		}, "state", st.String())
	}
	n.metrics.GaugeFunc("meshnode_local_agents", "Agents attached to this node.", func() float64 { return float64(len(h.Snapshot())) })
}

func (n *Node) stopMetrics(context.Context) {
	n.metricsSrv.Close()
	if n.stopBridge != nil {
		n.stopBridge()
	}
}

// registerTrafficHandler answers peers' traffic queries with this node's
// own edges, to nodes only.
func (n *Node) registerTrafficHandler() {
	transport.HandleProto(n.ep, MethodTraffic, func() *meshnodev1.PeerTrafficRequest { return &meshnodev1.PeerTrafficRequest{} },
		func(_ context.Context, p transport.Peer, _ *meshnodev1.PeerTrafficRequest) (*meshnodev1.PeerTrafficResponse, error) {
			if p.ID.Kind != pki.KindNode {
				return nil, status.Errorf(codes.PermissionDenied, "peer %s is not a node", p.ID)
			}
			return &meshnodev1.PeerTrafficResponse{Edges: api.LocalTraffic(n.cfg.Name, n.traffic)}, nil
		})
}

// trafficPeers fans a traffic query out to every other live node at once.
type trafficPeers struct{ n *Node }

func (t trafficPeers) AskTraffic(ctx context.Context) (map[string][]*meshnodev1.TrafficEdge, []string) {
	var (
		mu          sync.Mutex
		wg          sync.WaitGroup
		answers     = map[string][]*meshnodev1.TrafficEdge{}
		unreachable []string
	)
	for _, m := range t.n.gossip.Members() {
		if m.Name == t.n.cfg.Name || m.Status == gossip.MemberLeft {
			continue
		}
		if m.Status == gossip.MemberDead || m.Meta.QUICAddr == "" {
			unreachable = append(unreachable, m.Name)
			continue
		}
		wg.Add(1)
		go func(name, addr string) {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, trafficAskTimeout)
			defer cancel()
			var resp meshnodev1.PeerTrafficResponse
			err := transport.Invoke(cctx, t.n.ep, addr, MethodTraffic, &meshnodev1.PeerTrafficRequest{}, &resp)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.n.log.Debug("traffic: a peer did not answer", "node", name, "err", err)
				unreachable = append(unreachable, name)
				return
			}
			answers[name] = resp.GetEdges()
		}(m.Name, m.Meta.QUICAddr)
	}
	wg.Wait()
	return answers, unreachable
}

// MetricsAddr is the metrics listener's address, nil when it is off or
// its default port was taken.
func (n *Node) MetricsAddr() net.Addr {
	if n.metricsSrv == nil {
		return nil
	}
	return n.metricsSrv.Addr()
}
