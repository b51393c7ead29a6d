package node

import (
	"context"
	"time"

	"github.com/agentmesh/meshnode/internal/api"
	"github.com/agentmesh/meshnode/internal/background"
	"github.com/agentmesh/meshnode/pki"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/transport"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// pkiService is the PKI service the socket's PKIService calls. The CA is
// looked up per call: a server that joined gets the CA material by
// replication, after start.
func (n *Node) pkiService(ctx context.Context, needCA bool) (*pki.Service, error) {
	var ca *pki.CA
	if needCA {
		var err error
		if ca, err = n.ca(ctx); err != nil {
			return nil, err
		}
	}
	return pki.NewService(ca, n.keeper.Current, n.renewAt), nil
}

func (n *Node) renewAt() time.Time {
	if n.renewer == nil {
		return time.Time{}
	}
	return n.renewer.RenewAt()
}

// startRenewal renews the node certificate at 2/3 of its life from any
// server that answers.
func (n *Node) startRenewal(_ context.Context, bg *background.Group) error {
	r, err := pki.NewRenewer(pki.RenewerConfig{
		Current:  n.keeper.Current,
		Renew:    n.renewFromServers,
		OnRotate: n.keeper.Rotate,
		Clock:    n.clock,
		Logger:   n.log.With("component", "pki.renewal"),
	})
	if err != nil {
		return err
	}
	n.renewer = r
	bg.Go(func(ctx context.Context) {
		if err := r.Run(ctx); err != nil && ctx.Err() == nil {
			n.log.Error("certificate renewal stopped", "err", err)
		}
	})
	return nil
}

func (n *Node) renewFromServers(ctx context.Context, req *meshnodev1.RenewRequest) (*meshnodev1.RenewResponse, error) {
	var addrs []string
	for _, s := range api.Servers(ctx, n.store, n.log) {
		if s.Address != "" {
			addrs = append(addrs, s.Address)
		}
	}
	addrs = append(addrs, n.cfg.Join...)
	if n.isServer() {
		addrs = append([]string{n.ep.Addr().String()}, addrs...)
	}
	var last error = status.Error(codes.Unavailable, "no server address known")
	for _, a := range addrs {
		var resp meshnodev1.RenewResponse
		if err := transport.Invoke(ctx, n.ep, a, methodRenew, req, &resp); err != nil {
			last = err
			continue
		}
		return &resp, nil
	}
	return nil, last
}
