package node

import (
	"github.com/agentmesh/meshnode/internal/tasks"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/agentmesh/meshnode/internal/api"
	"github.com/agentmesh/meshnode/internal/metrics"
	"github.com/agentmesh/meshnode/internal/settings"
	"github.com/agentmesh/meshnode/internal/socketapi"
)

// Version is the meshnode release, set at build time with -ldflags.
var Version = "dev"

// MaxSocketPath is the longest Unix socket path the kernel accepts
// (sizeof(sun_path) - 1 on Linux).
const MaxSocketPath = socketapi.MaxPath

// DefaultPort is the UDP port all peer traffic uses.
const DefaultPort = 7946

// Config configures a node. The zero value is not usable; start from
// DefaultConfig, which is what `meshnode run` with no flags uses.
type Config struct {
	// Name is the node's cluster-unique name. Default: the host name.
	Name string `yaml:"name"`
	// DataDir holds Raft state, keys and the socket. Default: $XDG_STATE_HOME/meshnode,
	// /var/lib/meshnode as root.
	DataDir string `yaml:"data_dir"`
	// Bind is the UDP host:port for QUIC peer traffic. Default 0.0.0.0:7946.
	Bind string `yaml:"bind"`
	// Advertise is the address peers use to reach this node. Default: Bind,
	// with an unspecified host replaced by the first non-loopback address.
	Advertise string `yaml:"advertise"`
	// Socket is the agent API's Unix socket. Default: <data-dir>/meshnode.sock.
	Socket string `yaml:"socket"`
	// Join lists seed addresses (host:port) of existing nodes. Empty: bootstrap a new cluster.
	Join []string `yaml:"join"`
	// Token is the one-time join token from `meshnode token create`.
	Token string `yaml:"token"`
	// TokenFile names a file holding the join token, so the token stays out
	// of argv and shell history; `meshnode run` reads it into Token.
	TokenFile string `yaml:"token_file"`
	// Server makes the node a Raft member. The first node of a cluster is always one.
	Server bool `yaml:"server"`
	// Voters is how many Raft voters the cluster keeps: 3 or 5 (1 allowed for tests).
	Voters int `yaml:"voters"`
	// TrustDomain is the SPIFFE trust domain of a cluster this node bootstraps.
	TrustDomain string `yaml:"trust_domain"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
	// LogFormat is text or json.
	LogFormat string `yaml:"log_format"`
	// MaxPayload is the largest call payload in bytes.
	MaxPayload int `yaml:"max_payload"`
	// CallTimeout is the deadline of a call that names none.
	CallTimeout time.Duration `yaml:"call_timeout"`
	// TaskTimeout is the deadline of a task that names none.
	TaskTimeout time.Duration `yaml:"task_timeout"`
	// TaskRetention is how long a task is kept after it ends.
	TaskRetention time.Duration `yaml:"task_retention"`
	// ShutdownTimeout bounds a graceful stop; after it the node exits anyway.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// CertLifetime is how long node certificates live; renewed at 2/3.
	CertLifetime time.Duration `yaml:"cert_lifetime"`
	// CADir imports the CA a new cluster signs with from files written by
	// `meshnode pki init`, instead of creating one. Used at bootstrap only.
	CADir string `yaml:"ca_dir"`
	// TraceExporter sends OpenTelemetry spans: "" (off), "stdout" or "otlp-http".
	TraceExporter string `yaml:"trace_exporter"`
	// TraceEndpoint is the OTLP/HTTP collector (host:port or URL) for otlp-http.
	TraceEndpoint string `yaml:"trace_endpoint"`
	// MetricsBind is the TCP host:port of the Prometheus /metrics listener;
	// empty turns the listener off (/metrics stays on the socket). Default
	// 127.0.0.1:9464: when that default is taken (several nodes on one
	// host) the node starts anyway and says so; an address set by hand that
	// cannot be bound stops the node from starting.
	MetricsBind string `yaml:"metrics_bind"`
	// MetricsBindChosen says the user set MetricsBind (flag, environment or
	// file), even to the default address: then a port in use is an error.
	MetricsBindChosen bool `yaml:"-"`
	// MetricsMaxAgents is how many agents, and separately capabilities, get
	// label values of their own in the call metrics; the rest are folded
	// under "other". Default 200.
	MetricsMaxAgents int `yaml:"metrics_max_agents"`
	// CallMetrics records every call in the call metrics and the traffic
	// matrix. Default true; false leaves both empty (the benchmarks
	// measure its cost against it).
	CallMetrics bool `yaml:"call_metrics"`
	// ExitOnRevoke makes a node that learns the cluster revoked it log so
	// once and stop (Node.Revoked); false keeps it up, refused by every
	// peer, for inspection. Default true: a revoked node can do nothing.
	ExitOnRevoke bool `yaml:"exit_on_revoke"`
}

// DefaultConfig returns the configuration of `meshnode run` with no flags:
// a single-node cluster that bootstraps itself.
func DefaultConfig() Config {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "meshnode"
	}
	return Config{
		Name:             host,
		DataDir:          DefaultDataDir(),
		Bind:             net.JoinHostPort("0.0.0.0", strconv.Itoa(DefaultPort)),
		Voters:           3,
		TrustDomain:      "meshnode.local",
		LogLevel:         "info",
		LogFormat:        "text",
		MaxPayload:       4 << 20,
		CallTimeout:      30 * time.Second,
		TaskTimeout:      24 * time.Hour,
		TaskRetention:    tasks.DefaultRetention,
		ShutdownTimeout:  15 * time.Second,
		CertLifetime:     24 * time.Hour,
		ExitOnRevoke:     true,
		MetricsBind:      metrics.DefaultBind,
		MetricsMaxAgents: metrics.DefaultMaxAgents,
		CallMetrics:      true,
	}
}

// DefaultDataDir is $XDG_STATE_HOME/meshnode, /var/lib/meshnode as root, or
// ~/.local/state/meshnode.
func DefaultDataDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "meshnode")
	}
	if os.Geteuid() == 0 {
		return "/var/lib/meshnode"
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "meshnode")
	}
	return "meshnode-data"
}

// SocketPath is the agent API socket: Socket, or <data-dir>/meshnode.sock.
func (c Config) SocketPath() string {
	if c.Socket != "" {
		return c.Socket
	}
	return filepath.Join(c.DataDir, "meshnode.sock")
}

// ErrInvalidConfig wraps every configuration error; callers exit with the
// usage status when they see it.
var ErrInvalidConfig = settings.ErrInvalid

var invalid = settings.Invalid

// Validate checks every field and the rules between them. Each error names
// the key and says what to do.
func (c Config) Validate() error {
	if err := api.ValidateName(c.Name); err != nil {
		return invalid("name", "%v", err)
	}
	if c.DataDir == "" {
		return invalid("data_dir", "must not be empty")
	}
	if err := settings.HostPort(c.Bind, true); err != nil {
		return invalid("bind", "%v (want host:port, for example 0.0.0.0:7946)", err)
	}
	if c.Advertise != "" {
		if err := settings.HostPort(c.Advertise, false); err != nil {
			return invalid("advertise", "%v (want a reachable host:port)", err)
		}
	}
	if p := c.SocketPath(); len(p) > MaxSocketPath {
		return invalid("socket", "path %q is %d bytes, over the kernel's limit of %d; pass a shorter --socket", p, len(p), MaxSocketPath)
	}
	for _, s := range c.Join {
		if err := settings.HostPort(s, false); err != nil {
			return invalid("join", "seed %q: %v (want host:port)", s, err)
		}
	}
	if c.Token != "" && len(c.Join) == 0 {
		return invalid("token", "a join token needs --join with at least one seed")
	}
	if c.TokenFile != "" && len(c.Join) == 0 {
		return invalid("token_file", "a join token needs --join with at least one seed")
	}
	if c.Voters != 1 && c.Voters != 3 && c.Voters != 5 {
		return invalid("voters", "%d: must be 3 or 5 (1 for tests)", c.Voters)
	}
	if c.TrustDomain == "" {
		return invalid("trust_domain", "must not be empty")
	}
	if _, err := ParseLevel(c.LogLevel); err != nil {
		return invalid("log_level", "%v", err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return invalid("log_format", "%q: must be text or json", c.LogFormat)
	}
	if c.MaxPayload < 1024 || c.MaxPayload > 64<<20 {
		return invalid("max_payload", "%d: must be between 1024 and 67108864 bytes", c.MaxPayload)
	}
	if c.CallTimeout <= 0 {
		return invalid("call_timeout", "%v: must be positive", c.CallTimeout)
	}
	if c.TaskTimeout <= 0 {
		return invalid("task_timeout", "%v: must be positive", c.TaskTimeout)
	}
	if c.TaskRetention <= 0 {
		return invalid("task_retention", "%v: must be positive", c.TaskRetention)
	}
	if c.ShutdownTimeout <= 0 {
		return invalid("shutdown_timeout", "%v: must be positive", c.ShutdownTimeout)
	}
	switch c.TraceExporter {
	case "", "stdout", "otlp-http":
	default:
		return invalid("trace_exporter", "%q: must be empty (off), stdout or otlp-http", c.TraceExporter)
	}
	if c.MetricsBind != "" {
		if err := settings.HostPort(c.MetricsBind, true); err != nil {
			return invalid("metrics_bind", "%v (want host:port, for example 127.0.0.1:9464, or empty to turn the listener off)", err)
		}
	}
	if c.MetricsMaxAgents < 1 || c.MetricsMaxAgents > 100000 {
		return invalid("metrics_max_agents", "%d: must be between 1 and 100000", c.MetricsMaxAgents)
	}
	if c.CertLifetime < 5*time.Minute {
		return invalid("cert_lifetime", "%v: must be at least 5m", c.CertLifetime)
	}
	return nil
}

// maxMessage is the largest message the agent API reads or writes: a
// payload at the limit plus room for the rest of the message.
func (c Config) maxMessage() int { return c.MaxPayload + 64<<10 }
