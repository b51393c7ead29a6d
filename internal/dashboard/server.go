package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Sentinel errors a Source returns for conditions the page treats apart.
var (
	// ErrUnreachable: the node did not answer; a retry may succeed (503).
	ErrUnreachable = errors.New("node unreachable")
	// ErrNotFound: the node answered that the thing asked for does not exist (404).
	ErrNotFound = errors.New("not found")
)

// Source is what the dashboard reads. Every method may block on the
// network and must honour ctx; every call asks the node afresh, so the
// page never shows an answer the node did not just give.
type Source interface {
	Traffic(ctx context.Context) (*meshnodev1.TrafficResponse, error)
	Status(ctx context.Context) (*meshnodev1.StatusResponse, error)
	Members(ctx context.Context) (*meshnodev1.MembersResponse, error)
	Agents(ctx context.Context) (*meshnodev1.ListAgentsResponse, error)
	Decisions(ctx context.Context) (*meshnodev1.ListDecisionsResponse, error)
	// Bundle is decision id with what verifying it needs (quorum.VerifyBundle's input).
	Bundle(ctx context.Context, id string) (*meshnodev1.QuorumBundle, error)
	Trust(ctx context.Context) (*meshnodev1.GetTrustBundleResponse, error)
}

//go:embed assets
var assets embed.FS

// Config configures a Server. The zero value of every field but Source works.
type Config struct {
	// Source answers the JSON endpoints. Required.
	Source Source
	// Timeout bounds one request to the node; zero means 5s, short enough
	// that the page's retry loop notices an unreachable node quickly.
	Timeout time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

// Server is the dashboard's HTTP handler.
type Server struct {
	cfg Config
	mux *http.ServeMux
}

// New returns the dashboard handler for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Source == nil {
		return nil, errors.New("dashboard: Config.Source is required")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux()}
	static, err := fs.Sub(assets, "assets")
	if err != nil {
		return nil, err
	}
	s.mux.Handle("GET /", http.FileServerFS(static))
	s.mux.HandleFunc("GET /api/traffic", s.traffic)
	s.mux.HandleFunc("GET /api/cluster", s.cluster)
	s.mux.HandleFunc("GET /api/decisions", s.decisions)
	s.mux.HandleFunc("GET /api/decisions/{id}/bundle", s.bundle)
	return s, nil
}

// ServeHTTP answers only requests addressed to a loopback host: a page on
// another site that resolves its own name to 127.0.0.1 (DNS rebinding)
// gets nothing.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		host = r.Host
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		http.Error(w, "the dashboard answers only on a loopback address", http.StatusForbidden)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// Nothing but this origin: no CDN, no beacon, no framing.
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'")
	s.mux.ServeHTTP(w, r)
}

// part is one message of a combined answer, marshalled by protojson.
type part struct {
	name string
	msg  proto.Message
}

// reply writes the parts as one JSON object. Bundles use enum numbers:
// the browser needs them to rebuild the exact signed vote bytes.
func (s *Server) reply(w http.ResponseWriter, enumNumbers bool, parts ...part) {
	out := map[string]json.RawMessage{}
	opts := protojson.MarshalOptions{EmitUnpopulated: true, UseEnumNumbers: enumNumbers}
	for _, p := range parts {
		b, err := opts.Marshal(p.msg)
		if err != nil {
			s.fail(w, fmt.Errorf("encoding %s: %w", p.name, err))
			return
		}
		out[p.name] = b
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// fail maps err to a status the page acts on: 503 means "retry".
func (s *Server) fail(w http.ResponseWriter, err error) {
	code := http.StatusBadGateway
	switch {
	case errors.Is(err, ErrUnreachable):
		code = http.StatusServiceUnavailable
	case errors.Is(err, ErrNotFound):
		code = http.StatusNotFound
	}
	s.cfg.Logger.Warn("dashboard request failed", "status", code, "err", err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

func (s *Server) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.cfg.Timeout)
}

func (s *Server) traffic(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.ctx(r)
	defer cancel()
	t, err := s.cfg.Source.Traffic(ctx)
	if err != nil {
		s.fail(w, err)
		return
	}
	a, err := s.cfg.Source.Agents(ctx)
	if err != nil {
		s.fail(w, err)
		return
	}
	s.reply(w, false, part{"traffic", t}, part{"agents", a})
}

func (s *Server) cluster(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.ctx(r)
	defer cancel()
	st, err := s.cfg.Source.Status(ctx)
	if err != nil {
		s.fail(w, err)
		return
	}
	m, err := s.cfg.Source.Members(ctx)
	if err != nil {
		s.fail(w, err)
		return
	}
	s.reply(w, false, part{"status", st}, part{"members", m})
}

func (s *Server) decisions(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.ctx(r)
	defer cancel()
	d, err := s.cfg.Source.Decisions(ctx)
	if err != nil {
		s.fail(w, err)
		return
	}
	s.reply(w, false, part{"decisions", d})
}

func (s *Server) bundle(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.ctx(r)
	defer cancel()
	b, err := s.cfg.Source.Bundle(ctx, r.PathValue("id"))
	if err != nil {
		s.fail(w, err)
		return
	}
	tr, err := s.cfg.Source.Trust(ctx)
	if err != nil {
		s.fail(w, err)
		return
	}
	s.reply(w, true, part{"bundle", b}, part{"trust", tr})
}

// Serve serves the dashboard on l until ctx ends, then shuts down.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return err
	}
	<-errc
	return nil
}
