package transport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/agentmesh/meshnode/internal/clock"
)

// ALPN protocol names. A connection negotiates exactly one of them.
const (
	// ALPN is the protocol of node-to-node connections (mutual TLS).
	ALPN = "meshnode/1"
	// JoinALPN is the protocol a node without a certificate uses to join:
	// the server authenticates, the client does not.
	JoinALPN = "meshnode-join/1"
)

// TLSProvider supplies TLS configurations for the endpoint. Implemented by
// pki.TLSSource. Certificates rotate inside the returned configs
// (GetCertificate/GetClientCertificate) and peers are verified inside them
// (VerifyPeerCertificate/VerifyConnection), so the endpoint never restarts
// for a rotation. The endpoint clones the configs and forces NextProtos and
// TLS 1.3.
type TLSProvider interface {
	// ServerConfig must require and verify client certificates.
	ServerConfig() *tls.Config
	// ClientConfig must present a client certificate and verify the server.
	ClientConfig() *tls.Config
}

// Config configures an Endpoint. Zero values mean the defaults documented on
// each field.
type Config struct {
	// BindAddr is the UDP host:port to listen on. Default "0.0.0.0:7946".
	BindAddr string
	// AdvertiseAddr is the host:port peers reach this node at. Default: the
	// bound address (which is wrong for 0.0.0.0: set it in production).
	AdvertiseAddr string
	// TLS supplies the node's mutual-TLS configuration. Required.
	TLS TLSProvider
	// PacketConn, if set, is used instead of opening BindAddr (fault
	// injection: see transport/faultconn). The endpoint closes it on Close.
	PacketConn net.PacketConn
	// MaxFrameSize caps one RPC request/response or stream message. Default
	// 4 MiB. A peer that announces a larger frame has its stream reset.
	MaxFrameSize int
	// FrameReadTimeout bounds how long one frame may take to arrive once
	// its first byte has: a peer that announces a frame and trickles it
	// has its stream reset (CodeSlowFrame). Default 10 s, so the largest
	// frame needs at least MaxFrameSize/10 s of throughput (400 KiB/s).
	FrameReadTimeout time.Duration
	// HandshakeTimeout bounds a QUIC+TLS handshake. Default 5 s, max 5 s.
	HandshakeTimeout time.Duration
	// IdleTimeout closes a connection without traffic. Default 30 s.
	IdleTimeout time.Duration
	// KeepAlivePeriod sends keep-alives on idle connections so that NAT
	// bindings and the idle timer stay alive while peers are quiet.
	// Default 10 s; must be below IdleTimeout.
	KeepAlivePeriod time.Duration
	// MaxIncomingStreams caps concurrent bidirectional streams a peer may
	// have open on one connection. Default 256.
	MaxIncomingStreams int64
	// MaxStreamReceiveWindow and MaxConnReceiveWindow cap flow-control
	// windows, hence the memory one peer can make us buffer.
	// Defaults 6 MiB and 16 MiB.
	MaxStreamReceiveWindow uint64
	MaxConnReceiveWindow   uint64
	// MaxIdleRPCStreams is how many idle RPC streams the client side keeps
	// per connection for reuse. Default 64.
	MaxIdleRPCStreams int
	// DialBackoffMin/Max space out reconnect attempts to an address whose
	// last dial failed. Defaults 50 ms and 5 s.
	DialBackoffMin, DialBackoffMax time.Duration
	// JoinTLS, if set, is the server config for JoinALPN connections (no
	// client certificate). Only HandleJoin handlers are served on them.
	JoinTLS *tls.Config
	// MaxJoinFrameSize caps a request frame on a join connection. Default
	// 16 KiB: the largest join request pki accepts (a 4 KiB token and an
	// 8 KiB CSR) with headroom; a real one is about 1 KiB. Our responses
	// (a certificate chain) are not bound by it.
	MaxJoinFrameSize int
	// MaxJoinConnsPerIP caps open join connections from one source IP (for
	// IPv6, one /64). Default 8: a joiner uses one at a time.
	MaxJoinConnsPerIP int
	// MaxJoinConns caps open join connections in total. Default 64.
	MaxJoinConns int
	// MaxJoinStreams caps open streams on one join connection; more are
	// reset (CodeRefused). Default 4: a joiner makes one call at a time.
	MaxJoinStreams int
	// JoinIdleTimeout closes a join connection that has had no open stream
	// for this long, and bounds how long a join request frame may take to
	// arrive. Default 5 s.
	JoinIdleTimeout time.Duration
	// RaftPeer, if set, says whether a node may speak Raft with us: an
	// inbound raft stream from a node it refuses is reset (CodeRefused), and
	// a raft dial answered by such a node fails with ErrNotRaftPeer; both
	// are counted in Refusals and logged once a minute per node. The node
	// wires it to "is an admitted server" from consensus. Nil admits every
	// node (tests). Called on every raft stream and dial, concurrently: it
	// must answer from memory and never block.
	RaftPeer func(Peer) bool
	// ExpectedPeer, if set, says which node should answer at a peer address
	// (host:port exactly as passed to Call, OpenStream, raft and memberlist).
	// When ok, a dial to addr fails unless the server's certificate names
	// that node, and a connection that node opened to us is reused for
	// calls to addr only if its identity matches. When !ok (a seed address,
	// a node not yet known), any node of the cluster is accepted. Nil
	// accepts any node everywhere. Called on every call and gossip packet:
	// it must answer from memory and never block.
	ExpectedPeer func(addr string) (node string, ok bool)
	// Logger receives the endpoint's logs. Default slog.Default().
	Logger *slog.Logger
	// Clock stamps memberlist packets and times dial backoff. Default
	// clock.System.
	Clock clock.Clock
}

// DefaultConfig returns the defaults; TLS must still be set.
func DefaultConfig() Config {
	return Config{
		BindAddr:               "0.0.0.0:7946",
		MaxFrameSize:           4 << 20,
		FrameReadTimeout:       10 * time.Second,
		HandshakeTimeout:       5 * time.Second,
		IdleTimeout:            30 * time.Second,
		KeepAlivePeriod:        10 * time.Second,
		MaxIncomingStreams:     256,
		MaxStreamReceiveWindow: 6 << 20,
		MaxConnReceiveWindow:   16 << 20,
		MaxIdleRPCStreams:      64,
		DialBackoffMin:         50 * time.Millisecond,
		DialBackoffMax:         5 * time.Second,
		MaxJoinFrameSize:       16 << 10,
		MaxJoinConnsPerIP:      8,
		MaxJoinConns:           64,
		MaxJoinStreams:         4,
		JoinIdleTimeout:        5 * time.Second,
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.BindAddr == "" && c.PacketConn == nil {
		c.BindAddr = d.BindAddr
	}
	setDefault(&c.MaxFrameSize, d.MaxFrameSize)
	setDefault(&c.FrameReadTimeout, d.FrameReadTimeout)
	setDefault(&c.HandshakeTimeout, d.HandshakeTimeout)
	setDefault(&c.IdleTimeout, d.IdleTimeout)
	setDefault(&c.KeepAlivePeriod, d.KeepAlivePeriod)
	setDefault(&c.MaxIncomingStreams, d.MaxIncomingStreams)
	setDefault(&c.MaxStreamReceiveWindow, d.MaxStreamReceiveWindow)
	setDefault(&c.MaxConnReceiveWindow, d.MaxConnReceiveWindow)
	setDefault(&c.MaxIdleRPCStreams, d.MaxIdleRPCStreams)
	setDefault(&c.DialBackoffMin, d.DialBackoffMin)
	setDefault(&c.DialBackoffMax, d.DialBackoffMax)
	setDefault(&c.MaxJoinFrameSize, d.MaxJoinFrameSize)
	setDefault(&c.MaxJoinConnsPerIP, d.MaxJoinConnsPerIP)
	setDefault(&c.MaxJoinConns, d.MaxJoinConns)
	setDefault(&c.MaxJoinStreams, d.MaxJoinStreams)
	setDefault(&c.JoinIdleTimeout, d.JoinIdleTimeout)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Clock = clock.OrSystem(c.Clock)
	return c
}

func setDefault[T comparable](p *T, d T) {
	var zero T
	if *p == zero {
		*p = d
	}
}

// Validate checks the configuration after defaults are applied.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.TLS == nil {
		errs = append(errs, errors.New("transport config: TLS is required (a pki.TLSSource)"))
	}
	if c.PacketConn == nil {
		if _, _, err := net.SplitHostPort(c.BindAddr); err != nil {
			errs = append(errs, fmt.Errorf("transport config: BindAddr %q: want host:port: %w", c.BindAddr, err))
		}
	}
	if c.AdvertiseAddr != "" {
		if _, _, err := net.SplitHostPort(c.AdvertiseAddr); err != nil {
			errs = append(errs, fmt.Errorf("transport config: AdvertiseAddr %q: want host:port: %w", c.AdvertiseAddr, err))
		}
	}
	if c.MaxFrameSize < 1024 || c.MaxFrameSize > 1<<30 {
		errs = append(errs, fmt.Errorf("transport config: MaxFrameSize %d: must be between 1 KiB and 1 GiB", c.MaxFrameSize))
	}
	if c.FrameReadTimeout < 0 {
		errs = append(errs, fmt.Errorf("transport config: FrameReadTimeout %v: must not be negative", c.FrameReadTimeout))
	}
	if c.HandshakeTimeout < 0 || c.HandshakeTimeout > 5*time.Second {
		errs = append(errs, fmt.Errorf("transport config: HandshakeTimeout %v: must be at most 5s", c.HandshakeTimeout))
	}
	if c.KeepAlivePeriod < 0 || c.KeepAlivePeriod >= c.IdleTimeout {
		errs = append(errs, fmt.Errorf("transport config: KeepAlivePeriod %v must be below IdleTimeout %v", c.KeepAlivePeriod, c.IdleTimeout))
	}
	if c.MaxIncomingStreams < 0 {
		errs = append(errs, fmt.Errorf("transport config: MaxIncomingStreams %d: must be positive", c.MaxIncomingStreams))
	}
	if c.MaxStreamReceiveWindow > c.MaxConnReceiveWindow {
		errs = append(errs, fmt.Errorf("transport config: MaxStreamReceiveWindow %d exceeds MaxConnReceiveWindow %d", c.MaxStreamReceiveWindow, c.MaxConnReceiveWindow))
	}
	if c.MaxIdleRPCStreams < 0 || int64(c.MaxIdleRPCStreams) > c.MaxIncomingStreams {
		errs = append(errs, fmt.Errorf("transport config: MaxIdleRPCStreams %d: must be between 0 and MaxIncomingStreams %d", c.MaxIdleRPCStreams, c.MaxIncomingStreams))
	}
	if c.DialBackoffMin > c.DialBackoffMax {
		errs = append(errs, fmt.Errorf("transport config: DialBackoffMin %v exceeds DialBackoffMax %v", c.DialBackoffMin, c.DialBackoffMax))
	}
	if c.MaxJoinFrameSize < 1024 || c.MaxJoinFrameSize > c.MaxFrameSize {
		errs = append(errs, fmt.Errorf("transport config: MaxJoinFrameSize %d: must be between 1 KiB and MaxFrameSize %d", c.MaxJoinFrameSize, c.MaxFrameSize))
	}
	if c.MaxJoinConns < 1 || c.MaxJoinConnsPerIP < 1 || c.MaxJoinConnsPerIP > c.MaxJoinConns {
		errs = append(errs, fmt.Errorf("transport config: MaxJoinConnsPerIP %d and MaxJoinConns %d: want 1 <= MaxJoinConnsPerIP <= MaxJoinConns", c.MaxJoinConnsPerIP, c.MaxJoinConns))
	}
	if c.MaxJoinStreams < 1 || int64(c.MaxJoinStreams) > c.MaxIncomingStreams {
		errs = append(errs, fmt.Errorf("transport config: MaxJoinStreams %d: must be between 1 and MaxIncomingStreams %d", c.MaxJoinStreams, c.MaxIncomingStreams))
	}
	if c.JoinIdleTimeout < 0 || c.JoinIdleTimeout > c.IdleTimeout {
		errs = append(errs, fmt.Errorf("transport config: JoinIdleTimeout %v: must be between 0 and IdleTimeout %v", c.JoinIdleTimeout, c.IdleTimeout))
	}
	return errors.Join(errs...)
}
