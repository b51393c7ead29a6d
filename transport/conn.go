package transport

import (
	"net"
	"sync"

	"github.com/quic-go/quic-go"
)

// streamConn adapts a QUIC stream to net.Conn for hashicorp/raft and
// memberlist, which speak their own framing over a byte stream. Deadlines
// map onto the stream's; Close finishes our side (FIN, so written data is
// still delivered) and stops reading theirs.
type streamConn struct {
	*quic.Stream
	local     net.Addr
	peer      Peer
	closeOnce sync.Once
}

var _ net.Conn = (*streamConn)(nil)

func newStreamConn(s *quic.Stream, local net.Addr, peer Peer) *streamConn {
	return &streamConn{Stream: s, local: local, peer: peer}
}

// ConnPeer returns the authenticated peer of a net.Conn handed out by
// RaftLayer or Memberlist (accepted or dialed).
func ConnPeer(c net.Conn) (Peer, bool) {
	sc, ok := c.(*streamConn)
	if !ok {
		return Peer{}, false
	}
	return sc.peer, true
}

func (c *streamConn) LocalAddr() net.Addr  { return c.local }
func (c *streamConn) RemoteAddr() net.Addr { return c.peer.Addr }

func (c *streamConn) Close() error {
	c.closeOnce.Do(func() {
		c.Stream.Close()
		c.Stream.CancelRead(CodeNoError)
	})
	return nil
}
