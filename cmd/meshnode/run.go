package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/agentmesh/meshnode/node"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func newRunCmd() *cobra.Command {
	def := node.DefaultConfig()
	var configFile string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the meshnode daemon",
		Long: `Run the meshnode daemon in the foreground.

With no flags it starts a single-node cluster that bootstraps itself, creates a
development CA in its data dir and serves the agent API on its socket.

Settings come from flags, then MESHNODE_* environment variables (for example
MESHNODE_DATA_DIR), then the YAML file named by --config, then defaults.
Keys in the file are the flag names with '_' for '-' (data_dir, log_level, ...).

SIGINT or SIGTERM stops the node gracefully within --shutdown-timeout, also
while it is still starting or joining a cluster; a second signal forces it to
exit at once.

Pass a join token with --token-file or MESHNODE_TOKEN: a --token on the
command line is visible to every user in the process list.

The Go garbage collector runs at GOGC=400 unless GOGC is set: the node's live
heap is small, and at the default 100 collection was a third of its CPU per
call. Set GOGC (and GOMEMLIMIT to bound the heap) as for any Go program.`,
		Example: `  meshnode run
  meshnode token create --name n2 > n2.token     # on a server of the cluster
  meshnode run --name n2 --data-dir /tmp/n2 --bind 127.0.0.1:7947 --join 127.0.0.1:7946 --token-file n2.token
  MESHNODE_TOKEN=$(cat n2.token) meshnode run --name n2 --join 10.0.0.1:7946`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadRunConfig(cmd.Flags(), configFile)
			if err != nil {
				return err
			}
			var warnings []string
			if cmd.Flags().Changed("token") {
				warnings = append(warnings, "--token puts the join token in the process list and shell history; pass it with --token-file FILE or MESHNODE_TOKEN instead")
			}
			return runNode(cfg, warnings...)
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "YAML config file (env MESHNODE_CONFIG)")
	f.String("name", def.Name, "node name, unique in the cluster")
	f.String("data-dir", def.DataDir, "directory for Raft state, keys and the socket")
	f.String("bind", def.Bind, "UDP host:port for QUIC peer traffic")
	f.String("advertise", "", "host:port peers use to reach this node (default: the bind address)")
	f.String("socket", "", "agent API Unix socket (default <data-dir>/meshnode.sock)")
	f.StringSlice("join", nil, "seed addresses host:port,... of existing nodes; empty bootstraps a new cluster")
	f.String("token", "", "one-time join token from 'meshnode token create' (prefer --token-file or MESHNODE_TOKEN: argv is visible to every user)")
	f.String("token-file", "", "file holding the one-time join token")
	f.Bool("server", false, "be a Raft server (the first node of a cluster always is)")
	f.Int("voters", def.Voters, "Raft voters the cluster keeps: 3 or 5")
	f.String("trust-domain", def.TrustDomain, "SPIFFE trust domain of a cluster this node bootstraps")
	f.String("log-level", def.LogLevel, "debug, info, warn or error")
	f.String("log-format", def.LogFormat, "text or json")
	f.Int("max-payload", def.MaxPayload, "largest call payload in bytes")
	f.Duration("call-timeout", def.CallTimeout, "deadline of a call that names none")
	f.Duration("task-timeout", def.TaskTimeout, "deadline of a task that names none")
	f.Duration("task-retention", def.TaskRetention, "how long a task is kept after it ends")
	f.Duration("shutdown-timeout", def.ShutdownTimeout, "longest a graceful stop may take")
	f.Duration("cert-lifetime", def.CertLifetime, "lifetime of node certificates (renewed at 2/3)")
	f.String("ca-dir", "", "bootstrap with the CA from 'meshnode pki init' files instead of creating one")
	f.String("trace-exporter", "", "send OpenTelemetry spans: stdout or otlp-http (default off)")
	f.String("trace-endpoint", "", "OTLP/HTTP collector host:port or URL for --trace-exporter otlp-http")
	f.String("metrics-bind", def.MetricsBind, "TCP host:port of the Prometheus /metrics listener; empty turns it off (/metrics stays on the socket)")
	f.Int("metrics-max-agents", def.MetricsMaxAgents, "agents (and capabilities) with label values of their own in the metrics; the rest fold under \"other\"")
	f.Bool("call-metrics", def.CallMetrics, "record every call in the call metrics and the traffic matrix")
	f.Bool("exit-on-revoke", def.ExitOnRevoke, "stop, exit 3, when the cluster revokes this node (false: stay up, refused by every peer)")
	return cmd
}

// loadRunConfig applies defaults < file < environment < flags.
func loadRunConfig(flags *pflag.FlagSet, configFile string) (node.Config, error) {
	cfg := node.DefaultConfig()
	// A marker no address can be tells "left at the default" from "set to
	// the default address": only the first tolerates a port in use.
	const unset = "\x00default"
	cfg.MetricsBind = unset
	if configFile == "" {
		configFile = os.Getenv("MESHNODE_CONFIG")
	}
	if configFile != "" {
		if err := node.LoadFile(configFile, &cfg); err != nil {
			return cfg, err
		}
	}
	if err := node.ApplyEnv(os.Environ(), &cfg); err != nil {
		return cfg, err
	}
	var ferr error
	flags.Visit(func(fl *pflag.Flag) {
		if ferr != nil || fl.Name == "config" {
			return
		}
		value := fl.Value.String()
		if sv, ok := fl.Value.(pflag.SliceValue); ok {
			value = strings.Join(sv.GetSlice(), ",")
		}
		if err := node.SetKey(&cfg, strings.ReplaceAll(fl.Name, "-", "_"), value); err != nil {
			ferr = err
		}
	})
	if ferr != nil {
		return cfg, ferr
	}
	if cfg.MetricsBind == unset {
		cfg.MetricsBind = node.DefaultConfig().MetricsBind
	} else {
		cfg.MetricsBindChosen = true
	}
	if err := readTokenFile(&cfg); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// readTokenFile loads cfg.TokenFile into cfg.Token.
func readTokenFile(cfg *node.Config) error {
	if cfg.TokenFile == "" {
		return nil
	}
	if cfg.Token != "" {
		return fmt.Errorf("%w: token_file: the token is given twice, by --token-file and by --token or MESHNODE_TOKEN; keep one", node.ErrInvalidConfig)
	}
	b, err := os.ReadFile(cfg.TokenFile)
	if err != nil {
		return fmt.Errorf("%w: token_file: %v", node.ErrInvalidConfig, err)
	}
	cfg.Token = strings.TrimSpace(string(b))
	if cfg.Token == "" {
		return fmt.Errorf("%w: token_file: %s is empty; write the output of 'meshnode token create' into it", node.ErrInvalidConfig, cfg.TokenFile)
	}
	return nil
}

// defaultGCPercent is the node's GOGC unless the environment sets one.
// Measured on the call path (docs/performance.md): 400 instead of Go's 100
// cut each node's CPU per call by about 30% for about 15 MiB more RSS.
const defaultGCPercent = 400

func runNode(cfg node.Config, warnings ...string) error {
	log, err := node.NewLogger(os.Stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return usageError{err}
	}
	for _, w := range warnings {
		log.Warn(w)
	}
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
	}
	n, err := node.New(cfg, log)
	if err != nil {
		return err
	}
	// The first SIGINT or SIGTERM cancels ctx, whatever phase the node is
	// in: a join that retries an unreachable seed ends as promptly as a
	// running node. A second one exits at once.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		sig := <-sigs
		log.Info("stopping", "signal", sig.String(), "timeout", cfg.ShutdownTimeout)
		cancel()
		sig = <-sigs
		log.Error("second signal: exiting now without a graceful stop", "signal", sig.String())
		os.Exit(exitRuntime)
	}()

	if err := n.Start(ctx); err != nil {
		if ctx.Err() != nil {
			// Start undid what it had begun before returning.
			log.Info("stopped during start-up")
			return nil
		}
		return err
	}
	var revoked error
	select {
	case <-ctx.Done():
	case <-n.Revoked():
		revoked = n.RevokedErr()
	}
	stopCtx, stopCancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer stopCancel()
	start := time.Now()
	if err := n.Stop(stopCtx); err != nil {
		return fmt.Errorf("graceful stop did not finish in %v: %w", cfg.ShutdownTimeout, err)
	}
	log.Debug("stopped", "took", time.Since(start))
	if revoked != nil {
		return fmt.Errorf("%w. It cannot come back under this identity: join again under another name with a new token (and a fresh --data-dir), or run with --exit-on-revoke=false to keep it up for inspection", revoked)
	}
	return nil
}
