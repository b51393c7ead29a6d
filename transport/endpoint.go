package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/quic-go/quic-go"

	"github.com/agentmesh/meshnode/pki"
)

// ErrClosed is returned by operations on a closed Endpoint.
var ErrClosed = errors.New("transport endpoint closed")

// Peer is the authenticated remote side of a connection. ID is zero on
// JoinALPN connections (the joining node has no certificate yet).
type Peer struct {
	ID           pki.ID
	Addr         net.Addr
	Certificates []*x509.Certificate
}

// Endpoint is the node's one QUIC endpoint: one UDP socket, one quic-go
// Transport, at most one live connection per peer address, and the
// channels multiplexed on it (RPC, streams, Raft, memberlist).
type Endpoint struct {
	cfg       Config
	log       *slog.Logger
	pc        net.PacketConn
	tr        *quic.Transport
	ln        *quic.Listener
	qconf     *quic.Config
	advertise net.Addr

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	pool connPool
	// pendingPackets bounds gossip packets waiting for a dial.
	pendingPackets chan struct{}

	hmu            sync.RWMutex
	handlers       map[string]Handler
	streamHandlers map[string]StreamHandler
	joinHandlers   map[string]Handler

	dials, dialFailures, accepts, refusedIdentity atomic.Uint64
	refused                                       refusalCounters
	logLimit                                      logLimiter
	joins                                         joinSlots

	raftMu sync.Mutex
	raft   *raftLayer
	gossip atomic.Pointer[gossipTransport]
}

// Listen binds the UDP socket (or uses cfg.PacketConn) and starts accepting
// connections. Close the endpoint to release everything.
func Listen(ctx context.Context, cfg Config) (*Endpoint, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	e := &Endpoint{
		cfg:            cfg,
		log:            cfg.Logger.With("component", "transport"),
		handlers:       map[string]Handler{},
		streamHandlers: map[string]StreamHandler{},
		joinHandlers:   map[string]Handler{},
		pendingPackets: make(chan struct{}, 1024),
	}
	e.pool.init(e)
	e.logLimit.clock = cfg.Clock
	pc := cfg.PacketConn
	if pc == nil {
		ua, err := net.ResolveUDPAddr("udp", cfg.BindAddr)
		if err != nil {
			return nil, fmt.Errorf("transport: resolving bind address %q: %w", cfg.BindAddr, err)
		}
		udp, err := net.ListenUDP("udp", ua)
		if err != nil {
			return nil, fmt.Errorf("transport: binding UDP %s (%s): %w", cfg.BindAddr, bindHint(err), err)
		}
		raiseUDPBuffers(udp, e.log)
		pc = udp
	}
	e.pc = pc
	e.advertise = pc.LocalAddr()
	if cfg.AdvertiseAddr != "" {
		ua, err := net.ResolveUDPAddr("udp", cfg.AdvertiseAddr)
		if err != nil {
			pc.Close()
			return nil, fmt.Errorf("transport: resolving advertise address %q: %w", cfg.AdvertiseAddr, err)
		}
		e.advertise = ua
	}
	e.qconf = &quic.Config{
		HandshakeIdleTimeout:           cfg.HandshakeTimeout,
		MaxIdleTimeout:                 cfg.IdleTimeout,
		KeepAlivePeriod:                cfg.KeepAlivePeriod,
		MaxIncomingStreams:             cfg.MaxIncomingStreams,
		MaxIncomingUniStreams:          -1, // we never use unidirectional streams
		InitialStreamReceiveWindow:     min(512<<10, cfg.MaxStreamReceiveWindow),
		MaxStreamReceiveWindow:         cfg.MaxStreamReceiveWindow,
		InitialConnectionReceiveWindow: min(1<<20, cfg.MaxConnReceiveWindow),
		MaxConnectionReceiveWindow:     cfg.MaxConnReceiveWindow,
		Allow0RTT:                      false, // 0-RTT data is replayable
		EnableDatagrams:                true,  // memberlist packets
	}
	e.tr = &quic.Transport{Conn: pc}
	serverTLS := &tls.Config{MinVersion: tls.VersionTLS13, GetConfigForClient: e.serverConfigFor}
	ln, err := e.tr.Listen(serverTLS, e.qconf)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("transport: listening on %s: %w", pc.LocalAddr(), err)
	}
	e.ln = ln
	// The endpoint outlives the ctx that started it: only Close stops it.
	e.ctx, e.cancel = context.WithCancel(context.WithoutCancel(ctx))
	e.wg.Go(e.acceptLoop)
	e.log.Info("transport listening", "addr", pc.LocalAddr().String(), "advertise", e.advertise.String())
	return e, nil
}

// Addr returns the address peers reach this endpoint at (AdvertiseAddr if
// set, else the bound UDP address).
func (e *Endpoint) Addr() net.Addr { return e.advertise }

// LocalAddr returns the bound UDP address.
func (e *Endpoint) LocalAddr() net.Addr { return e.pc.LocalAddr() }

// Stats are counters for status pages and tests.
type Stats struct {
	Conns           int    // live node connections in the pool
	Dials           uint64 // handshakes we started
	DialFailures    uint64
	Accepts         uint64 // handshakes peers completed with us (node and join)
	RefusedIdentity uint64 // completed handshakes refused for a non-node identity
}

// Stats returns the endpoint's counters.
func (e *Endpoint) Stats() Stats {
	return Stats{
		Conns:           e.pool.len(),
		Dials:           e.dials.Load(),
		DialFailures:    e.dialFailures.Load(),
		Accepts:         e.accepts.Load(),
		RefusedIdentity: e.refusedIdentity.Load(),
	}
}

// Peers returns the authenticated peers of the live pooled connections.
func (e *Endpoint) Peers() []Peer { return e.pool.peers() }

// Close closes every connection (peers see a shutdown code), the listener,
// the socket, and waits for the endpoint's goroutines.
func (e *Endpoint) Close() error {
	if e.ctx.Err() != nil {
		return nil
	}
	e.cancel()
	e.pool.closeAll()
	e.ln.Close()
	err := e.tr.Close()
	if cerr := e.pc.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) && err == nil {
		err = cerr
	}
	e.wg.Wait()
	return err
}

func (e *Endpoint) acceptLoop() {
	for {
		conn, err := e.ln.Accept(e.ctx)
		if err != nil {
			return
		}
		e.wg.Go(func() { e.setupAccepted(conn) })
	}
}

func (e *Endpoint) setupAccepted(conn *quic.Conn) {
	e.accepts.Add(1)
	state := conn.ConnectionState().TLS
	switch state.NegotiatedProtocol {
	case ALPN:
		peer, err := peerFromState(conn, state)
		if err != nil {
			e.refusedIdentity.Add(1)
			e.log.Warn("refusing peer connection: certificate has no usable node identity", "remote", conn.RemoteAddr().String(), "err", err)
			conn.CloseWithError(ConnCodeBadIdentity, "no usable identity")
			return
		}
		pc := newPeerConn(conn, peer, false)
		e.pool.adopt(pc)
		e.serveConn(pc)
	case JoinALPN:
		if e.cfg.JoinTLS == nil {
			conn.CloseWithError(ConnCodeBadIdentity, "join not served")
			return
		}
		pc := newPeerConn(conn, Peer{Addr: conn.RemoteAddr()}, true)
		if !e.admitJoinConn(pc) {
			return
		}
		e.serveConn(pc)
	default:
		conn.CloseWithError(ConnCodeBadIdentity, "no application protocol")
	}
}

// peerFromState extracts the authenticated identity. The TLS provider has
// already verified the chain; this refuses certificates whose single URI
// SAN is not a node identity.
func peerFromState(conn *quic.Conn, state tls.ConnectionState) (Peer, error) {
	if len(state.PeerCertificates) == 0 {
		return Peer{}, errors.New("no peer certificate")
	}
	id, err := pki.IDFromCert(state.PeerCertificates[0])
	if err != nil {
		return Peer{}, err
	}
	if id.Kind != pki.KindNode {
		return Peer{}, fmt.Errorf("identity %s is not a node", id)
	}
	return Peer{ID: id, Addr: conn.RemoteAddr(), Certificates: state.PeerCertificates}, nil
}

// serveConn runs the connection's stream acceptor and datagram receiver
// until the connection dies, then forgets it.
func (e *Endpoint) serveConn(pc *peerConn) {
	if !e.pool.track(pc) {
		e.releaseJoinConn(pc)
		return
	}
	if !pc.join {
		e.wg.Go(func() { e.receiveDatagrams(pc) })
	}
	e.wg.Go(func() {
		defer e.releaseJoinConn(pc)
		defer e.pool.forget(pc)
		for {
			s, err := pc.conn.AcceptStream(e.ctx)
			if err != nil {
				e.log.Debug("connection closed", "peer", pc.peer.ID.String(), "remote", pc.conn.RemoteAddr().String(), "err", err)
				return
			}
			if pc.join && !e.joinStreamStarted(pc) {
				// Refused here, before a goroutine exists for it.
				e.refused.joinStreams.Add(1)
				e.logRefusal(peerName(pc), "resetting join stream: too many open on the connection", "limit", e.cfg.MaxJoinStreams)
				resetStream(s, CodeRefused)
				continue
			}
			e.wg.Go(func() {
				if pc.join {
					defer e.joinStreamEnded(pc)
				}
				e.serveStream(pc, s)
			})
		}
	})
}

// peerName names the remote side in logs: its identity, or for a join
// connection (no certificate) its source.
func peerName(pc *peerConn) string {
	if pc.joinState != nil {
		return pc.joinState.src.String()
	}
	if pc.join {
		return pc.conn.RemoteAddr().String()
	}
	return pc.peer.ID.String()
}

// serverConfigFor picks the TLS config by the ClientHello's ALPN list, so
// node connections and join connections share one UDP port.
func (e *Endpoint) serverConfigFor(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	switch {
	case slices.Contains(hello.SupportedProtos, ALPN):
		c := e.cfg.TLS.ServerConfig().Clone()
		if c.ClientAuth < tls.RequireAnyClientCert {
			e.log.Error("TLS provider's server config does not require client certificates; refusing all peers until it does")
			return nil, errors.New("server misconfigured: client certificates not required")
		}
		c.NextProtos = []string{ALPN}
		c.MinVersion = tls.VersionTLS13
		e.logVerifyFailures(c, "server")
		requireCertWithReason(c, e.log)
		return c, nil
	case e.cfg.JoinTLS != nil && slices.Contains(hello.SupportedProtos, JoinALPN):
		// Refuse before signing anything when the source is already at its
		// limit; admitJoinConn takes the slot once the handshake is done.
		if hello.Conn != nil {
			src := sourceKey(hello.Conn.RemoteAddr())
			if perSource, total := e.joins.check(src, e.cfg.MaxJoinConnsPerIP, e.cfg.MaxJoinConns); perSource || total {
				e.countJoinRefusal(src, perSource)
				return nil, errors.New("too many join connections")
			}
		}
		c := e.cfg.JoinTLS.Clone()
		c.NextProtos = []string{JoinALPN}
		c.MinVersion = tls.VersionTLS13
		return c, nil
	}
	e.log.Warn("refusing connection: no supported ALPN", "offered", hello.SupportedProtos)
	return nil, fmt.Errorf("no supported application protocol in %q", hello.SupportedProtos)
}

// requireCertWithReason moves the "client sent no certificate" check from
// crypto/tls (which refuses silently) into VerifyConnection, so the refusal
// is logged with its reason like every other.
func requireCertWithReason(c *tls.Config, log *slog.Logger) {
	if c.ClientAuth != tls.RequireAnyClientCert {
		return
	}
	c.ClientAuth = tls.RequestClientCert
	next := c.VerifyConnection
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			log.Warn("refused peer connection: peer presented no certificate", "side", "server")
			return errors.New("peer presented no certificate")
		}
		if next != nil {
			return next(cs)
		}
		return nil
	}
}

func (e *Endpoint) clientConfig() *tls.Config {
	c := e.cfg.TLS.ClientConfig().Clone()
	c.NextProtos = []string{ALPN}
	c.MinVersion = tls.VersionTLS13
	e.logVerifyFailures(c, "client")
	return c
}

// logVerifyFailures wraps the provider's verification callbacks so every
// refused handshake is logged with our side (pki logs the reason at Warn).
func (e *Endpoint) logVerifyFailures(c *tls.Config, side string) {
	if v := c.VerifyPeerCertificate; v != nil {
		c.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
			err := v(raw, chains)
			if err != nil {
				e.log.Debug("refused peer certificate", "side", side, "err", err)
			}
			return err
		}
	}
	if v := c.VerifyConnection; v != nil {
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			err := v(cs)
			if err != nil {
				e.log.Debug("refused peer connection", "side", side, "err", err)
			}
			return err
		}
	}
}

// bindHint names the likely fix for a failed bind.
func bindHint(err error) string {
	switch {
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no interface of this host has that address: bind one of its own addresses, or 0.0.0.0 with --advertise for the address peers use"
	case errors.Is(err, syscall.EACCES):
		return "ports below 1024 need root or CAP_NET_BIND_SERVICE: pick another --bind port"
	}
	return "is another meshnode running? pick another --bind port"
}
