package transport

import (
	"math/big"

	"github.com/agentmesh/meshnode/pki"
)

// ClosePeers closes every connection whose authenticated peer matches drop,
// with ConnCodeBadIdentity. Handshakes refuse a revoked identity from the
// moment it is revoked; this ends the connections it already had, which
// would otherwise live on until they went idle. It returns how many it closed.
func (e *Endpoint) ClosePeers(drop func(pki.ID) bool) int {
	return e.ClosePeersWhere(func(p Peer) bool { return drop(p.ID) })
}

// ClosePeersBySerial is ClosePeers for a revocation of certificate serial
// numbers: it closes every connection whose peer's leaf certificate has a
// serial for which revoked reports true.
func (e *Endpoint) ClosePeersBySerial(revoked func(serial *big.Int) bool) int {
	return e.ClosePeersWhere(func(p Peer) bool {
		return len(p.Certificates) > 0 && revoked(p.Certificates[0].SerialNumber)
	})
}

// ClosePeersWhere closes every node connection whose peer (identity and
// certificate chain) matches drop; the general form of ClosePeers, e.g.
// for a pki.Revocations that judges a serial and an identity together.
// drop runs under the connection pool's lock: it must not block or call
// back into the endpoint.
func (e *Endpoint) ClosePeersWhere(drop func(Peer) bool) int {
	p := &e.pool
	p.mu.Lock()
	var victims []*peerConn
	for pc := range p.all {
		if !pc.peer.ID.IsZero() && drop(pc.peer) {
			victims = append(victims, pc)
		}
	}
	p.mu.Unlock()
	for _, pc := range victims {
		pc.conn.CloseWithError(ConnCodeBadIdentity, "identity revoked")
	}
	return len(victims)
}
