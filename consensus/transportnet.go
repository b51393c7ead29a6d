package consensus

import (
	"context"

	"github.com/hashicorp/raft"

	"github.com/agentmesh/meshnode/transport"
)

// NetworkFromTransport adapts the node's QUIC endpoint to Network. Peers are
// named by the node name in their certificate's SPIFFE id (mutual TLS has
// verified it).
func NetworkFromTransport(ep *transport.Endpoint) Network { return endpointNet{ep} }

type endpointNet struct{ ep *transport.Endpoint }

func (n endpointNet) StreamLayer() raft.StreamLayer { return n.ep.RaftLayer() }

func (n endpointNet) Call(ctx context.Context, addr, method string, req []byte) ([]byte, error) {
	return n.ep.Call(ctx, addr, method, req)
}

func (n endpointNet) Handle(method string, h Handler) {
	n.ep.Handle(method, func(ctx context.Context, p transport.Peer, req []byte) ([]byte, error) {
		return h(ctx, p.ID.Node, req)
	})
}

func (n endpointNet) OpenStream(ctx context.Context, addr, method string) (Stream, error) {
	s, err := n.ep.OpenStream(ctx, addr, method)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (n endpointNet) HandleStream(method string, h StreamHandler) {
	n.ep.HandleStream(method, func(ctx context.Context, p transport.Peer, s *transport.Stream) error {
		return h(ctx, p.ID.Node, s)
	})
}
