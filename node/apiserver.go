package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"time"

	"github.com/agentmesh/meshnode/internal/connectjson"

	"connectrpc.com/vanguard"
	"connectrpc.com/vanguard/vanguardgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/encoding/protojson"
)

func init() {
	// A gRPC "json" codec lets vanguard pass Connect JSON straight to the
	// gRPC handlers instead of transcoding JSON to binary and back.
	encoding.RegisterCodec(vanguardgrpc.NewCodec(&vanguard.JSONCodec{
		MarshalOptions:   protojson.MarshalOptions{EmitUnpopulated: true},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true},
	}))
}

// apiServerConfig configures the agent API server on the Unix socket.
type apiServerConfig struct {
	Path       string
	MaxMessage int // bytes, for requests and responses on both protocols
	Logger     *slog.Logger
}

// apiServer serves the agent API: gRPC (HTTP/2) via grpc-go and Connect JSON
// (HTTP/1.1) via vanguard, on one Unix socket, split by first bytes. One
// service implementation answers both.
type apiServer struct {
	cfg      apiServerConfig
	grpc     *grpc.Server
	http     *http.Server
	listener *net.UnixListener
	split    *connSplitter
	done     chan struct{}
}

// streamWorkers is the least number of goroutines kept to run agent API
// calls: idle ones cost a few KiB each.
const streamWorkers = 128

func newAPIServer(cfg apiServerConfig) *apiServer {
	gs := grpc.NewServer(
		grpc.Creds(peerCredTransport{}),
		grpc.MaxRecvMsgSize(cfg.MaxMessage),
		grpc.MaxSendMsgSize(cfg.MaxMessage),
		grpc.ConnectionTimeout(10*time.Second),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		// Reused handler goroutines keep the stack a call has grown to;
		// a fresh goroutine per call grows (copies) its stack again each
		// time, which was 8% of a busy node's CPU. A call waits on the
		// network, not the CPU, so the pool is sized for concurrent calls,
		// not cores. grpc-go still starts a goroutine when every worker is
		// busy, so this never queues.
		grpc.NumStreamWorkers(uint32(max(streamWorkers, 8*runtime.GOMAXPROCS(0)))),
	)
	return &apiServer{cfg: cfg, grpc: gs, done: make(chan struct{})}
}

// Registrar is where components register their gRPC services before start.
func (s *apiServer) Registrar() grpc.ServiceRegistrar { return s.grpc }

// start listens on the socket and serves. Services must be registered first:
// the Connect transcoder is built from the gRPC server's service list.
func (s *apiServer) start(ctx context.Context) error {
	reflection.Register(s.grpc)
	transcoder, err := vanguardgrpc.NewTranscoder(s.grpc,
		vanguard.WithDefaultServiceOptions(vanguard.WithMaxMessageBufferBytes(uint32(s.cfg.MaxMessage))))
	if err != nil {
		return fmt.Errorf("build Connect transcoder: %w", err)
	}
	l, err := listenSocket(s.cfg.Path)
	if err != nil {
		return err
	}
	s.listener = l
	s.http = &http.Server{
		Handler:           connectjson.Defaults(transcoder),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if cred, err := readPeerCred(c); err == nil {
				return withPeerCred(ctx, cred)
			}
			return ctx
		},
	}
	s.split = newConnSplitter(l, 10*time.Second)
	go func() {
		defer close(s.done)
		go s.split.run(context.Background()) // lives until the listener closes, not the start ctx
		go s.http.Serve(s.split.h1)
		s.grpc.Serve(s.split.h2)
	}()
	return nil
}

// stop drains in-flight requests until ctx ends, then cuts the rest, and
// removes the socket file if it is still ours.
func (s *apiServer) stop(ctx context.Context) {
	if s.listener == nil {
		return
	}
	fi, statErr := os.Stat(s.cfg.Path)
	s.listener.Close()
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
	<-s.done
	// Another node may have replaced a socket we thought was stale; only
	// remove the file we created.
	if statErr == nil {
		if now, err := os.Stat(s.cfg.Path); err == nil && os.SameFile(fi, now) {
			os.Remove(s.cfg.Path)
		}
	}
}
