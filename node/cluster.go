package node

import (
	"context"
	"crypto/x509"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/gossip"
	"github.com/agentmesh/meshnode/internal/api"
	"github.com/agentmesh/meshnode/internal/background"
	"github.com/agentmesh/meshnode/internal/catalog"
	"github.com/agentmesh/meshnode/internal/pkistate"
	"github.com/agentmesh/meshnode/pki"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/transport"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Peer RPC methods of the PKI.
const (
	methodJoin  = "pki.Join"
	methodRenew = "pki.Renew"
)

// isServer: the first node of a cluster is always a server.
func (n *Node) isServer() bool { return n.cfg.Server || len(n.cfg.Join) == 0 }

// startPKI loads or obtains the node's certificate and builds the rotating
// TLS source the transport uses.
func (n *Node) startPKI(ctx context.Context) error {
	creds, material, err := n.acquireCredentials(ctx)
	if err != nil {
		return err
	}
	id, err := creds.ID()
	if err != nil {
		return err
	}
	if id.Node != n.cfg.Name {
		return fmt.Errorf("the certificate in %s is for node %q, not %q; use that name or a fresh data dir", pki.Dir(n.cfg.DataDir), id.Node, n.cfg.Name)
	}
	n.id = id
	n.pendingCA = material
	n.keeper = pki.NewKeeper(n.cfg.DataDir, creds)
	gk, err := pki.LoadOrCreateGossipKey(n.cfg.DataDir)
	if err != nil {
		return err
	}
	n.gossipKey = gk
	src, err := pki.NewTLSSource(pki.TLSSourceConfig{
		TrustDomain: id.TrustDomain,
		Roots:       n.keeper.Roots,
		Certificate: n.keeper.Certificate,
		Revocations: &n.revocations,
		Clock:       n.clock,
		Logger:      n.log,
	})
	if err != nil {
		return err
	}
	n.tls = src
	return nil
}

// revocationProxy answers "no" until consensus runs, then asks its store.
type revocationProxy struct {
	store *pkistate.Store
}

func (r *revocationProxy) IsRevoked(serial *big.Int, id pki.ID) bool {
	if r.store == nil {
		return false
	}
	return r.store.IsRevoked(serial, id)
}

// advertiseAddr is the address peers dial (transport.AdvertiseAddr).
func (n *Node) advertiseAddr() string { return transport.AdvertiseAddr(n.cfg.Bind, n.cfg.Advertise) }

func (n *Node) startTransport(ctx context.Context) error {
	cfg := transport.DefaultConfig()
	cfg.BindAddr = n.cfg.Bind
	cfg.AdvertiseAddr = n.advertiseAddr()
	cfg.TLS = n.tls
	cfg.MaxFrameSize = n.cfg.MaxPayload + 1<<20
	cfg.Clock = n.clock
	cfg.Logger = n.log
	cfg.RaftPeer = n.raftPeer
	cfg.ExpectedPeer = n.expectedPeer
	if n.isServer() {
		cfg.JoinTLS = n.tls.JoinServerConfig()
	}
	ep, err := transport.Listen(ctx, cfg)
	if err != nil {
		if strings.Contains(err.Error(), "address already in use") {
			return fmt.Errorf("UDP port %s is already in use: stop what holds it or pass another --bind", n.cfg.Bind)
		}
		return fmt.Errorf("listen on UDP %s: %w", n.cfg.Bind, err)
	}
	n.ep = ep
	n.registerPeerHandlers()
	return nil
}

func (n *Node) startConsensus(ctx context.Context, bg *background.Group) error {
	cfg := consensus.DefaultConfig(n.cfg.Name)
	cfg.Server = n.isServer()
	cfg.Bootstrap = len(n.cfg.Join) == 0
	cfg.DataDir = n.cfg.DataDir
	cfg.Advertise = n.ep.Addr().String()
	cfg.Voters = n.cfg.Voters
	cfg.ServerAddrs = n.cfg.Join
	// Only a server token makes a Raft server; the --server flag alone is
	// the node's own claim.
	cfg.RequireServerAdmission = true
	cfg.Clock = n.clock
	cfg.Logger = n.log
	st, err := consensus.New(cfg, consensus.NetworkFromTransport(n.ep))
	if err != nil {
		return err
	}
	if err := st.Start(ctx); err != nil {
		return err
	}
	n.store = st
	cat, err := catalog.New(catalog.Config{LocalNode: n.cfg.Name, Registry: st, Local: n.hub})
	if err != nil {
		return err
	}
	n.catalog = cat
	n.peerTrust.Store(&peerTrust{store: st, catalog: cat})
	n.registry = api.NewRegistry(n.cfg.Name, st, n.hub, cat, n.log)
	n.decisions = api.NewDecisions(st, cat.VoteKeys, n.log.With("component", "quorum"))
	n.pki = pkistate.New(st)
	n.revocations.store = n.pki
	if n.pendingCA != nil {
		if err := n.retryWrite(ctx, "store the new CA in Raft", func(ctx context.Context) error { return n.pki.SaveCA(ctx, n.pendingCA) }); err != nil {
			return err
		}
		n.pendingCA = nil
		if err := n.bootstrapOperators(ctx); err != nil {
			return err
		}
	}
	// A joining server is only added to Raft once gossip has told the
	// leader about it, and gossip starts after this: register in the
	// background instead of blocking the start.
	bg.Go(func(ctx context.Context) {
		if err := n.retryWrite(ctx, "register node "+n.cfg.Name, n.registerNodeRecord); err != nil && ctx.Err() == nil {
			n.log.Error("registering this node in the registry failed; peers cannot verify its gossip", "err", err)
		}
	})
	return nil
}

// retryWrite retries a Raft write while the cluster has no leader yet
// (normal during the first seconds of a start), up to the start timeout.
func (n *Node) retryWrite(ctx context.Context, what string, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, startWriteTimeout)
	defer cancel()
	backoff := 100 * time.Millisecond
	for {
		err := f(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w (is a quorum of servers reachable?)", what, err)
		}
		n.log.Debug("write not accepted yet; retrying", "what", what, "err", err)
		select {
		case <-ctx.Done():
		case <-n.clock.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// startWriteTimeout bounds the writes a node makes while starting.
const startWriteTimeout = 60 * time.Second

func (n *Node) registerNodeRecord(ctx context.Context) error {
	pub, err := x509.MarshalPKIXPublicKey(n.gossipKey.Public())
	if err != nil {
		return err
	}
	role := "client"
	if n.isServer() {
		role = "server"
	}
	_, err = n.store.RegisterNode(ctx, &meshnodev1.NodeRecord{Name: n.cfg.Name, Address: n.ep.Addr().String(), Role: role, SpiffeId: n.id.String(), PublicKey: pub})
	if err != nil {
		return fmt.Errorf("register node %s: %w", n.cfg.Name, err)
	}
	return nil
}

// ca returns the cluster CA on servers, loading it from Raft state on first
// use (a server that joined learns the material by replication).
func (n *Node) ca(ctx context.Context) (*pki.CA, error) {
	if ca := n.caPtr.Load(); ca != nil {
		return ca, nil
	}
	if !n.isServer() {
		return nil, status.Error(codes.FailedPrecondition, "this node is a client; the CA runs on servers: run the command against a server's socket")
	}
	cfg := pki.DefaultCAConfig()
	cfg.TrustDomain, cfg.Store, cfg.CertLifetime, cfg.Clock, cfg.Logger = n.id.TrustDomain, n.pki, n.cfg.CertLifetime, n.clock, n.log
	ca, err := pki.NewCA(ctx, cfg)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "the CA material has not reached this server yet: %v", err)
	}
	n.caPtr.CompareAndSwap(nil, ca)
	return n.caPtr.Load(), nil
}

func (n *Node) startGossip(_ context.Context, bg *background.Group) error {
	cfg := gossip.DefaultConfig()
	cfg.Name = n.cfg.Name
	role := gossip.RoleClient
	if n.isServer() {
		role = gossip.RoleServer
	}
	cfg.Meta = gossip.NodeMeta{Role: role, QUICAddr: n.ep.Addr().String(), Version: Version, SPIFFEID: n.id.String()}
	cfg.Transport = n.ep.Memberlist()
	cfg.Signer = n.gossipKey
	cfg.Keys = n.catalog
	cfg.Owners = n.catalog
	cfg.Clock = n.clock
	cfg.Logger = n.log
	g, err := gossip.New(cfg)
	if err != nil {
		return err
	}
	n.gossip = g
	n.catalog.SetGossip(g)
	events, cancel := g.Subscribe()
	bg.Go(func(ctx context.Context) {
		defer cancel()
		n.followMembership(ctx, events)
	})
	if len(n.cfg.Join) > 0 {
		bg.Go(func(ctx context.Context) {
			if _, err := g.Join(ctx, n.cfg.Join); err != nil && ctx.Err() == nil {
				n.log.Error("gossip join failed", "seeds", n.cfg.Join, "err", err)
			}
		})
	}
	// Local agents' load goes to gossip periodically, and at once on a
	// status change (agentStatusChanged).
	bg.Every(loadPublishInterval, func(context.Context) { n.publishLoadNow() })
	bg.Every(reconnectInterval, n.reconnectDead)
	return nil
}

// reconnectInterval is how often a node tries to rejoin a member declared
// dead, so both sides of a healed partition find each other again.
const reconnectInterval = 5 * time.Second

func (n *Node) reconnectDead(ctx context.Context) {
	answered, err := n.gossip.Reconnect()
	if err != nil {
		n.log.Debug("reconnect to a dead member failed", "err", err)
	}
	if answered == 0 && err == nil { // no dead member left in the view
		if _, err := n.gossip.ReconnectTo(n.catalog.LostNodes(ctx)); err != nil {
			n.log.Debug("reconnect to a registered node failed", "err", err)
		}
	}
}

// followMembership feeds server membership from gossip to the consensus
// autopilot (and to client replicas, which pick servers from it).
func (n *Node) followMembership(ctx context.Context, events <-chan gossip.Event) {
	for _, m := range n.gossip.Members() {
		n.memberEvent(gossip.Event{Type: gossip.EventJoin, Member: m})
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			n.memberEvent(ev)
		}
	}
}

func (n *Node) memberEvent(ev gossip.Event) {
	m := ev.Member
	if ev.Type == gossip.EventFail || ev.Type == gossip.EventLeave {
		if plane := n.plane.Load(); plane != nil {
			if k := plane.NodeGone(m.Name); k > 0 {
				n.log.Warn("cancelled calls in flight to a node that is gone", "node", m.Name, "calls", k)
			}
		}
	}
	if m.Meta.Role != gossip.RoleServer || m.Name == "" {
		return
	}
	switch ev.Type {
	case gossip.EventJoin, gossip.EventUpdate:
		if m.Status == gossip.MemberAlive || ev.Type == gossip.EventJoin {
			n.store.ServerAlive(m.Name, m.Meta.QUICAddr)
		}
	case gossip.EventFail:
		n.store.ServerFailed(m.Name)
	case gossip.EventLeave:
		n.store.ServerLeft(m.Name)
	}
}

// registerPeerHandlers installs the node's peer RPC methods on the transport.
func (n *Node) registerPeerHandlers() {
	n.registerDataPlaneHandlers()
	n.registerTrafficHandler()
	transport.HandleProto(n.ep, methodRenew, func() *meshnodev1.RenewRequest { return &meshnodev1.RenewRequest{} },
		func(ctx context.Context, p transport.Peer, req *meshnodev1.RenewRequest) (*meshnodev1.RenewResponse, error) {
			ca, err := n.ca(ctx)
			if err != nil {
				return nil, err
			}
			return ca.Renew(ctx, p.ID, req)
		})
	n.ep.HandleJoin(methodJoin, func(ctx context.Context, _ transport.Peer, body []byte) ([]byte, error) {
		req := &meshnodev1.JoinRequest{}
		if err := proto.Unmarshal(body, req); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "join request: %v", err)
		}
		ca, err := n.ca(ctx)
		if err != nil {
			return nil, err
		}
		resp, err := ca.Join(ctx, req)
		if err != nil {
			return nil, err
		}
		return proto.Marshal(resp)
	})
}
