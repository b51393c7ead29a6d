package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentmesh/meshnode/internal/dashboard"
	"github.com/agentmesh/meshnode/operator"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func newDashboardCmd() *cobra.Command {
	var cf *clientFlags
	var listen string
	var noBrowser bool
	c := &cobra.Command{
		Use:   "dashboard",
		Short: "Serve the web dashboard on 127.0.0.1 and open it in a browser",
		Long: `Serve the web dashboard on this machine: the agent interaction graph, the
pair matrix, the cluster and the quorum decisions, with each decision's
bundle verified in the browser. The dashboard reads the node over its socket
(or a forwarded one); the node opens no web port. The operator key (the same
one admin commands sign with) must belong to an operator with the viewer or
admin role. Runs until interrupted.`,
		Example: `  meshnode dashboard
  meshnode dashboard --listen 127.0.0.1:8090 --no-browser`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkLoopback(listen); err != nil {
				return err
			}
			conn, err := cf.dial()
			if err != nil {
				return err
			}
			defer conn.Close()
			ctx, cancel := cf.context()
			err = checkViewer(ctx, conn, cf.socketPath())
			cancel()
			if err != nil {
				return err
			}
			srv, err := dashboard.New(dashboard.Config{Source: &socketSource{conn: conn, socket: cf.socketPath()}})
			if err != nil {
				return err
			}
			l, err := net.Listen("tcp", listen)
			if err != nil {
				return usagef("--listen %s: %v", listen, err)
			}
			url := "http://" + l.Addr().String() + "/"
			fmt.Fprintf(cmd.OutOrStdout(), "dashboard: %s (reading the node at %s; Ctrl-C stops)\n", url, cf.socketPath())
			if !noBrowser {
				openBrowser(url)
			}
			sctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return srv.Serve(sctx, l)
		},
	}
	cf = addClientFlags(c)
	c.Flags().StringVar(&listen, "listen", "127.0.0.1:0", "loopback address to serve on (port 0: any free port)")
	c.Flags().BoolVar(&noBrowser, "no-browser", false, "print the URL only; do not open a browser")
	return c
}

// checkLoopback refuses a listen address off this machine: the dashboard
// has no login of its own, so only local users may reach it.
func checkLoopback(listen string) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return usagef("--listen %q: %v", listen, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return usagef("--listen %q: the dashboard serves on a loopback address only (127.0.0.1 or ::1); forward the port with ssh -L to reach it from elsewhere", listen)
	}
	return nil
}

// checkViewer refuses unless the operator key found for socket belongs to
// an operator holding the viewer (or admin) role. Reads on the socket are
// open today, so this is the dashboard's own gate: it keeps the role the
// operator was granted meaningful before the node enforces it on reads.
func checkViewer(ctx context.Context, conn grpc.ClientConnInterface, socket string) error {
	key, name, from, err := operatorKey(socket)
	if err != nil {
		return err
	}
	need := fmt.Sprintf("the dashboard needs an operator key with the %q or %q role", operator.RoleViewer, operator.RoleAdmin)
	if key == nil {
		return usagef("%s and none was found: pass --operator-key FILE (or MESHNODE_OPERATOR_KEY); an admin grants the role with 'meshnode operator add NAME --role viewer --pubkey NAME.pub'", need)
	}
	tb, err := meshnodev1.NewOperatorServiceClient(conn).GetTrustBundle(ctx, &meshnodev1.GetTrustBundleRequest{})
	if err != nil {
		return rpcError("read the trust bundle", err, socket)
	}
	ops, err := meshnodev1.NewOperatorServiceClient(conn).ListOperators(ctx, &meshnodev1.ListOperatorsRequest{})
	if err != nil {
		return rpcError("list operators", err, socket)
	}
	who, ok := viewerAllowed(key.Public().(ed25519.PublicKey), name, tb.GetBundle(), ops.GetOperators())
	if !ok {
		return usagef("%s; the key in %s %s", need, from, who)
	}
	return nil
}

// viewerAllowed reports whether pub (named name, or any name when empty)
// may view; when not, it says why, for the refusal.
func viewerAllowed(pub ed25519.PublicKey, name string, trust *meshnodev1.TrustBundle, ops []*meshnodev1.OperatorInfo) (string, bool) {
	// The first admin's key is in the trust bundle itself.
	if pub.Equal(ed25519.PublicKey(trust.GetFirstAdminPublicKey())) && (name == "" || name == trust.GetFirstAdminName()) {
		return trust.GetFirstAdminName(), true
	}
	for _, o := range ops {
		rec := o.GetRecord()
		if !pub.Equal(ed25519.PublicKey(rec.GetPublicKey())) || (name != "" && name != rec.GetName()) {
			continue
		}
		if o.GetProblem() != "" {
			return fmt.Sprintf("belongs to operator %s, whose record does not hold: %s", rec.GetName(), o.GetProblem()), false
		}
		if operator.HasRole(rec, operator.RoleViewer) || operator.HasRole(rec, operator.RoleAdmin) {
			return rec.GetName(), true
		}
		return fmt.Sprintf("belongs to operator %s, whose roles are %v", rec.GetName(), rec.GetRoles()), false
	}
	return "belongs to no operator of this cluster", false
}

// openBrowser tries the desktop's opener; failing is fine (the URL is printed).
func openBrowser(url string) {
	if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
		return
	}
	if p, err := exec.LookPath("xdg-open"); err == nil {
		cmd := exec.Command(p, url)
		if cmd.Start() == nil {
			go cmd.Wait() //nolint:errcheck // the opener's exit says nothing about the dashboard
		}
	}
}

// socketSource reads the node over its socket for the dashboard.
type socketSource struct {
	conn   *grpc.ClientConn
	socket string
}

var _ dashboard.Source = (*socketSource)(nil)

// classify maps the node's answer to the dashboard's sentinels: a node
// that is down or restarting is "unreachable" (the page retries).
func classify(err error) error {
	if err == nil {
		return nil
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return fmt.Errorf("%w: %v", dashboard.ErrUnreachable, err)
	case codes.NotFound:
		return fmt.Errorf("%w: %v", dashboard.ErrNotFound, err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %v", dashboard.ErrUnreachable, err)
	}
	return err
}

func (s *socketSource) Traffic(ctx context.Context) (*meshnodev1.TrafficResponse, error) {
	r, err := meshnodev1.NewTrafficServiceClient(s.conn).Traffic(ctx, &meshnodev1.TrafficRequest{})
	return r, classify(err)
}

func (s *socketSource) Status(ctx context.Context) (*meshnodev1.StatusResponse, error) {
	r, err := meshnodev1.NewNodeServiceClient(s.conn).Status(ctx, &meshnodev1.StatusRequest{})
	return r, classify(err)
}

func (s *socketSource) Members(ctx context.Context) (*meshnodev1.MembersResponse, error) {
	r, err := meshnodev1.NewNodeServiceClient(s.conn).Members(ctx, &meshnodev1.MembersRequest{})
	return r, classify(err)
}

func (s *socketSource) Agents(ctx context.Context) (*meshnodev1.ListAgentsResponse, error) {
	r, err := meshnodev1.NewRegistryServiceClient(s.conn).ListAgents(ctx, &meshnodev1.ListAgentsRequest{})
	return r, classify(err)
}

func (s *socketSource) Decisions(ctx context.Context) (*meshnodev1.ListDecisionsResponse, error) {
	r, err := meshnodev1.NewQuorumServiceClient(s.conn).ListDecisions(ctx, &meshnodev1.ListDecisionsRequest{})
	return r, classify(err)
}

// Bundle is what `meshnode quorum export` writes, fetched the same way.
func (s *socketSource) Bundle(ctx context.Context, id string) (*meshnodev1.QuorumBundle, error) {
	b, err := fetchBundle(ctx, s.conn, id, s.socket)
	return b, classify(err)
}

func (s *socketSource) Trust(ctx context.Context) (*meshnodev1.GetTrustBundleResponse, error) {
	r, err := meshnodev1.NewOperatorServiceClient(s.conn).GetTrustBundle(ctx, &meshnodev1.GetTrustBundleRequest{})
	return r, classify(err)
}
