package metrics

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// DefaultBind is the metrics listener's default address: loopback only
// (metrics name agents and capabilities), on the port OpenTelemetry's
// Prometheus exporter made the convention for a process's own metrics.
const DefaultBind = "127.0.0.1:9464"

// Path is where the metrics are served, on the listener and on the socket.
const Path = "/metrics"

// ErrBind: the metrics listener could not bind an address the user chose.
var ErrBind = errors.New("metrics listener cannot bind")

// Server is the metrics HTTP listener.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Listen binds the metrics listener. An address the user chose that cannot
// be bound is an error naming the flag. The default address taken (several
// nodes on one host), when the user did not choose it, is not: Listen
// returns a nil Server and the one line to log, naming the node that holds
// the port when it is a meshnode.
func Listen(bind string, chosen bool, h http.Handler) (s *Server, notice string, err error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		if chosen || bind != DefaultBind {
			return nil, "", fmt.Errorf("%w: --metrics-bind %s: %v (choose a free host:port, or \"\" to turn the listener off)", ErrBind, bind, err)
		}
		holder := "another process"
		if n := holderOf(bind); n != "" {
			holder = "meshnode " + n
		}
		return nil, fmt.Sprintf("metrics: the default address %s is held by %s; /metrics is served on this node's socket only: set --metrics-bind HOST:PORT to listen too", bind, holder), nil
	}
	mux := http.NewServeMux()
	mux.Handle(Path, h)
	s = &Server{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}}
	go s.srv.Serve(ln)
	return s, "", nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the listener and cuts scrapes in progress: a scrape never
// delays a node's stop.
func (s *Server) Close() {
	if s != nil {
		s.srv.Close()
	}
}

// holderOf asks the process at addr for its meshnode_node_info series and
// returns its node label, or "" (not a meshnode, or no answer in time).
func holderOf(addr string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+Path, nil)
	if err != nil {
		return ""
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "meshnode_node_info{") {
			continue
		}
		_, rest, ok := strings.Cut(line, `node="`)
		if !ok {
			return ""
		}
		name, _, _ := strings.Cut(rest, `"`)
		return name
	}
	return ""
}
