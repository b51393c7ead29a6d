package socketapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"time"

	"connectrpc.com/vanguard"
	"connectrpc.com/vanguard/vanguardgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/agentmesh/meshnode/internal/connectjson"
)

func init() {
	// A gRPC "json" codec lets vanguard pass Connect JSON straight to the
	// gRPC handlers instead of transcoding JSON to binary and back.
	encoding.RegisterCodec(vanguardgrpc.NewCodec(&vanguard.JSONCodec{
		MarshalOptions:   protojson.MarshalOptions{EmitUnpopulated: true},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true},
	}))
}

// DefaultMaxMessage is the request and response limit when Config.MaxMessage
// is zero: grpc-go's own default receive limit.
const DefaultMaxMessage = 4 << 20

// DefaultSniffWindow is how long a new connection may take to send its first
// bytes when Config.SniffWindow is zero: a client that connects and says
// nothing holds one goroutine for at most this long.
const DefaultSniffWindow = 10 * time.Second

// streamWorkers is the least number of goroutines kept to run agent API
// calls: idle ones cost a few KiB each.
const streamWorkers = 128

// Config configures a Server. The zero value of every field but Path means
// its default.
type Config struct {
	// Path is the socket file. Required.
	Path string
	// MaxMessage bounds every request and response, in bytes, on both
	// protocols. Zero means DefaultMaxMessage.
	MaxMessage int
	// SniffWindow bounds the wait for a connection's first bytes. Zero means
	// DefaultSniffWindow.
	SniffWindow time.Duration
	// Logger receives the server's own diagnostics. Nil discards them.
	Logger *slog.Logger
	// MapError is the error boundary: every error a handler returns, unary
	// or stream, passes through it before it reaches the caller, on both
	// protocols (vanguard transcodes the gRPC status it returns). Nil leaves
	// errors as the handlers returned them.
	MapError func(error) error
	// HTTP maps exact paths to plain HTTP handlers served on the HTTP/1.1
	// side ahead of the Connect transcoder (the node's /metrics), so
	// `curl --unix-socket` reaches them without a listener of their own.
	HTTP map[string]http.Handler
	// Unary and Stream interceptors run inside MapError, in order.
	Unary  []grpc.UnaryServerInterceptor
	Stream []grpc.StreamServerInterceptor
}

// Validate reports a configuration the server cannot run with.
func (c Config) Validate() error {
	if c.Path == "" {
		return errors.New("socketapi: Path is required")
	}
	if len(c.Path) > MaxPath {
		return fmt.Errorf("socket path %q is %d bytes, over the kernel's limit of %d; pass a shorter --socket", c.Path, len(c.Path), MaxPath)
	}
	if c.MaxMessage < 0 || c.SniffWindow < 0 {
		return errors.New("socketapi: MaxMessage and SniffWindow must not be negative")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.MaxMessage == 0 {
		c.MaxMessage = DefaultMaxMessage
	}
	if c.SniffWindow == 0 {
		c.SniffWindow = DefaultSniffWindow
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Server serves the agent API: gRPC (HTTP/2) via grpc-go and Connect JSON
// (HTTP/1.1) via vanguard, on one Unix socket, split by first bytes. One
// service implementation answers both. Register services on Registrar, then
// Start; Stop or Close ends it. A Server is started once.
type Server struct {
	cfg      Config
	grpc     *grpc.Server
	http     *http.Server
	listener *net.UnixListener
	fileInfo os.FileInfo // of the socket we created, to remove only ours
	done     chan struct{}
	stopOnce sync.Once
}

// New builds a server; nothing listens until Start.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	unary := append([]grpc.UnaryServerInterceptor{mapUnary(cfg.MapError)}, cfg.Unary...)
	stream := append([]grpc.StreamServerInterceptor{mapStream(cfg.MapError)}, cfg.Stream...)
	gs := grpc.NewServer(
		grpc.Creds(peerCredTransport{}),
		grpc.MaxRecvMsgSize(cfg.MaxMessage),
		grpc.MaxSendMsgSize(cfg.MaxMessage),
		grpc.ConnectionTimeout(10*time.Second),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		// Reused handler goroutines keep the stack a call has grown to;
		// a fresh goroutine per call grows (copies) its stack again each
		// time, which was 8% of a busy node's CPU. A call waits on the
		// network, not the CPU, so the pool is sized for concurrent calls,
		// not cores. grpc-go still starts a goroutine when every worker is
		// busy, so this never queues.
		grpc.NumStreamWorkers(uint32(max(streamWorkers, 8*runtime.GOMAXPROCS(0)))),
	)
	return &Server{cfg: cfg, grpc: gs, done: make(chan struct{})}, nil
}

// Registrar is where components register their gRPC services before Start.
func (s *Server) Registrar() grpc.ServiceRegistrar { return s.grpc }

// Path is the socket file the server listens on.
func (s *Server) Path() string { return s.cfg.Path }

// Start listens on the socket and serves until Stop or Close. Services must
// be registered first: the Connect transcoder is built from the gRPC
// server's service list.
func (s *Server) Start(context.Context) error {
	reflection.Register(s.grpc)
	transcoder, err := vanguardgrpc.NewTranscoder(s.grpc,
		vanguard.WithDefaultServiceOptions(vanguard.WithMaxMessageBufferBytes(uint32(s.cfg.MaxMessage))))
	if err != nil {
		return fmt.Errorf("build Connect transcoder: %w", err)
	}
	l, err := Listen(s.cfg.Path)
	if err != nil {
		return err
	}
	s.listener = l
	s.fileInfo, _ = os.Stat(s.cfg.Path)
	s.http = &http.Server{
		Handler:           withPaths(s.cfg.HTTP, jsonGuard(s.cfg.MaxMessage, serverSentEvents(s.cfg.MaxMessage, connectjson.Defaults(transcoder)))),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		// HTTP/2 reaches this server only when its first request is not
		// gRPC: Connect clients on h2c prior knowledge.
		Protocols: httpProtocols(),
		ErrorLog:  slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if cred, err := readPeerCred(c); err == nil {
				return withPeerCred(ctx, cred)
			}
			return ctx
		},
	}
	split := newConnSplitter(l, s.cfg.SniffWindow)
	go func() {
		defer close(s.done)
		go split.run(context.Background()) // lives until the listener closes, not the start ctx
		go s.http.Serve(split.h1)
		s.grpc.Serve(split.h2)
	}()
	return nil
}

// withPaths serves the exact paths of extra with their handlers and
// everything else with rest. An exact match, not a ServeMux: a mux would
// clean and redirect the Connect paths it does not own.
func withPaths(extra map[string]http.Handler, rest http.Handler) http.Handler {
	if len(extra) == 0 {
		return rest
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, ok := extra[r.URL.Path]; ok {
			h.ServeHTTP(w, r)
			return
		}
		rest.ServeHTTP(w, r)
	})
}

func httpProtocols() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &p
}

// Stop drains in-flight requests until ctx ends, then cuts the rest, and
// removes the socket file if it is still ours.
func (s *Server) Stop(ctx context.Context) {
	s.shutdown(ctx, false)
}

// Close cuts every connection and stream at once, like a crashing process,
// and removes the socket file if it is still ours.
func (s *Server) Close() {
	s.shutdown(context.Background(), true)
}

func (s *Server) shutdown(ctx context.Context, abrupt bool) {
	if s.listener == nil {
		return
	}
	s.stopOnce.Do(func() {
		s.listener.Close()
		if abrupt {
			s.grpc.Stop()
			s.http.Close()
		} else {
			s.drain(ctx)
		}
		<-s.done
		// Another node may have replaced a socket we thought was stale; only
		// remove the file we created.
		if s.fileInfo != nil {
			if now, err := os.Stat(s.cfg.Path); err == nil && os.SameFile(s.fileInfo, now) {
				os.Remove(s.cfg.Path)
			}
		}
	})
}

func (s *Server) drain(ctx context.Context) {
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	if err := s.http.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		s.cfg.Logger.Debug("HTTP/1.1 shutdown", "err", err)
	}
	select {
	case <-stopped:
	case <-ctx.Done():
		s.grpc.Stop()
		s.http.Close()
	}
}

// mapUnary and mapStream install the error boundary outermost, so it sees
// the error the caller would otherwise get.
func mapUnary(mapErr func(error) error) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		if err != nil && mapErr != nil {
			return resp, mapErr(err)
		}
		return resp, err
	}
}

func mapStream(mapErr func(error) error) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		err := h(srv, ss)
		if err != nil && mapErr != nil {
			return mapErr(err)
		}
		return err
	}
}
