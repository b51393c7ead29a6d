package transport

import (
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/quic-go/quic-go"

	"github.com/agentmesh/meshnode/pki"
)

// ErrNotRaftPeer means a raft dial was answered by a node that
// Config.RaftPeer does not admit.
var ErrNotRaftPeer = errors.New("peer is not an admitted raft server")

// raftAdmits reports whether p may speak Raft with us (Config.RaftPeer).
func (e *Endpoint) raftAdmits(p Peer) bool {
	return e.cfg.RaftPeer == nil || e.cfg.RaftPeer(p)
}

// refuseRaftStream resets an inbound raft stream from a node that is not an
// admitted server.
func (e *Endpoint) refuseRaftStream(pc *peerConn, s *quic.Stream) {
	e.refused.raftStreams.Add(1)
	id := pc.peer.ID.String()
	e.logRefusal(id, "node "+id+" is not an admitted server; refusing its raft stream", "remote", pc.conn.RemoteAddr().String())
	resetStream(s, CodeRefused)
}

// admitRaftDial checks the node that answered a raft dial.
func (e *Endpoint) admitRaftDial(addr string, p Peer) error {
	if e.raftAdmits(p) {
		return nil
	}
	e.refused.raftDials.Add(1)
	id := p.ID.String()
	e.logRefusal(id, "node "+id+" is not an admitted server; not dialling raft to it", "addr", addr)
	return fmt.Errorf("raft dial to %s: %w: answered by %s", addr, ErrNotRaftPeer, id)
}

// expectation is who should answer at an address (Config.ExpectedPeer);
// pinned is false when anyone of the cluster may.
type expectation struct {
	node   string
	pinned bool
}

func (e *Endpoint) expect(addr string) expectation {
	if e.cfg.ExpectedPeer == nil {
		return expectation{}
	}
	node, ok := e.cfg.ExpectedPeer(addr)
	return expectation{node: node, pinned: ok}
}

// admits reports whether a connection to id satisfies the expectation.
func (x expectation) admits(id pki.ID) bool {
	return !x.pinned || (id.Kind == pki.KindNode && id.Node == x.node)
}

func (x expectation) mismatch(id pki.ID, addr string) error {
	return fmt.Errorf("%w: %s answered at %s, expected node %q", pki.ErrUnexpectedPeer, id, addr, x.node)
}

// pinPeer makes the handshake itself refuse a server that is not the node
// expected at addr, after the provider's own verification. (pki's
// ClientConfigFor does the same, but needs the trust domain, which the
// TLSProvider does not tell us; pki has already checked it here.)
func (e *Endpoint) pinPeer(c *tls.Config, addr string, x expectation) {
	if !x.pinned {
		return
	}
	next := c.VerifyConnection
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if next != nil {
			if err := next(cs); err != nil {
				return err
			}
		}
		id, err := pki.PeerID(cs)
		if err != nil {
			return err
		}
		if !x.admits(id) {
			e.refusedUnexpected(id, addr, x)
			return x.mismatch(id, addr)
		}
		return nil
	}
}

// refusedUnexpected counts and logs a peer that was not the expected one.
func (e *Endpoint) refusedUnexpected(id pki.ID, addr string, x expectation) {
	e.refused.unexpectedPeer.Add(1)
	e.logRefusal(id.String(), "peer at the address is not the node expected there", "addr", addr, "expected", x.node)
}
