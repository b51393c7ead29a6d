package transport

import "github.com/agentmesh/meshnode/pki"

// ClosePeers closes every connection whose authenticated peer matches drop,
// with ConnCodeBadIdentity. Handshakes refuse a revoked identity from the
// moment it is revoked; this ends the connections it already had, which
// would otherwise live on until they went idle. It returns how many it closed.
func (e *Endpoint) ClosePeers(drop func(pki.ID) bool) int {
	p := &e.pool
	p.mu.Lock()
	var victims []*peerConn
	for pc := range p.all {
		if !pc.peer.ID.IsZero() && drop(pc.peer.ID) {
			victims = append(victims, pc)
		}
	}
	p.mu.Unlock()
	for _, pc := range victims {
		pc.conn.CloseWithError(ConnCodeBadIdentity, "identity revoked")
	}
	return len(victims)
}
