package transport

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"

	"github.com/quic-go/quic-go"
)

// CallJoin makes a one-off JoinALPN connection to addr with tlsConf (the
// caller verifies the server, e.g. against a join token's root fingerprint;
// no client certificate is needed), calls method once and closes. Errors
// carry gRPC status codes like Endpoint.Call.
func CallJoin(ctx context.Context, addr string, tlsConf *tls.Config, method string, req []byte) ([]byte, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, wireError(ctx, "resolving join address "+addr, fmt.Errorf("%w: %w", ErrPeerUnavailable, err))
	}
	c := tlsConf.Clone()
	c.NextProtos = []string{JoinALPN}
	c.MinVersion = tls.VersionTLS13
	d := DefaultConfig()
	qconf := &quic.Config{
		HandshakeIdleTimeout:  d.HandshakeTimeout,
		MaxIdleTimeout:        d.IdleTimeout,
		MaxIncomingStreams:    -1, // the server never opens streams to us
		MaxIncomingUniStreams: -1,
	}
	udp, err := net.ListenUDP("udp", nil)
	if err != nil {
		return nil, wireError(ctx, "opening UDP socket for join", err)
	}
	tr := &quic.Transport{Conn: udp}
	defer udp.Close()
	defer tr.Close()
	dctx, cancel := context.WithTimeout(ctx, d.HandshakeTimeout)
	defer cancel()
	conn, err := tr.Dial(dctx, ua, c, qconf)
	if err != nil {
		return nil, wireError(ctx, "join handshake with "+addr, fmt.Errorf("%w: %w", ErrPeerUnavailable, err))
	}
	defer conn.CloseWithError(ConnCodeNoError, "join call done")
	pc := newPeerConn(conn, Peer{Addr: conn.RemoteAddr()}, true)
	return callOn(ctx, pc, callLimits{maxFrame: d.MaxFrameSize, frameTimeout: d.FrameReadTimeout}, method, req)
}
