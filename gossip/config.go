package gossip

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/agentmesh/meshnode/internal/clock"
)

// KeyResolver returns the public half of a node's key, the one that node
// signs its load entries with. The node backs it with node certificates or
// the registry. It must be safe for concurrent use and must not block: it is
// called from memberlist's packet handler.
type KeyResolver interface {
	NodePublicKey(node string) (crypto.PublicKey, bool)
}

// AgentOwners says which node serves an agent, from the registry. Optional:
// when set, Load(agentID) only answers with the entry published by the owning
// node, so a node cannot advertise load for another node's agent even under
// its own valid signature. It must not block.
type AgentOwners interface {
	AgentNode(agentID string) (node string, ok bool)
}

// Config configures a Gossip. Zero values mean the DefaultConfig (LAN) value,
// except Name, Signer and Keys, which are required.
type Config struct {
	// Name is the node's unique name in the cluster. Required.
	Name string
	// Meta is advertised to every peer (memberlist node metadata).
	Meta NodeMeta

	// Transport carries packets and streams; the node passes the QUIC
	// endpoint's Memberlist(). Nil means memberlist's own UDP/TCP
	// NetTransport on BindAddr:BindPort, for tools and baselines only: it is
	// neither encrypted nor authenticated.
	Transport memberlist.NodeAwareTransport
	// BindAddr and BindPort are used only when Transport is nil.
	// Zero: 127.0.0.1 and an ephemeral port.
	BindAddr string
	BindPort int

	// Signer is the node's private key (ed25519 or ECDSA P-256): it signs
	// this node's load entries. Required.
	Signer crypto.Signer
	// Keys resolves other nodes' public keys to verify their entries. Required.
	Keys KeyResolver
	// Owners, if set, maps agents to their node (see AgentOwners).
	Owners AgentOwners

	// Logger receives gossip's and memberlist's logs. Zero: slog.Default().
	Logger *slog.Logger
	// Clock is the time source (load entry timestamps, publish ticks).
	// Zero: clock.System.
	Clock clock.Clock

	// Failure detection (SWIM + Lifeguard). See DefaultConfig for the reasons.
	ProbeInterval           time.Duration
	ProbeTimeout            time.Duration
	IndirectChecks          int
	SuspicionMult           int
	SuspicionMaxTimeoutMult int

	// Dissemination.
	GossipInterval time.Duration
	GossipNodes    int
	RetransmitMult int
	// LoadRetransmitMult is RetransmitMult for load changes (refreshes are
	// relayed less): a node misses a change with a chance of about
	// e^-(LoadRetransmitMult*ceil(log10(N+1))).
	LoadRetransmitMult int
	PushPullInterval   time.Duration
	// StreamTimeout bounds a push/pull or fallback-probe stream.
	StreamTimeout time.Duration
	// PacketSize is memberlist's UDPBufferSize: the largest packet it builds.
	PacketSize int
	// DeadNodeReclaimTime: after a node has been dead this long, its name may
	// come back at a different address (a restart on a new port).
	DeadNodeReclaimTime time.Duration

	// MaxMessageBytes bounds one signed load message; a node's table is split
	// over as many messages as needed. Larger incoming messages are dropped.
	MaxMessageBytes int
	// MaxStateBytes bounds the push/pull payload accepted from a peer.
	MaxStateBytes int
	// LoadMinInterval is the least time between two load broadcasts of this
	// node: significant changes inside it are coalesced. A status change (an
	// agent ready, draining or gone) waits at most 10 ms instead.
	LoadMinInterval time.Duration
	// LoadRefreshInterval: every part of this node's table is re-sent (with a
	// new sequence number) at least this often, even without changes.
	LoadRefreshInterval time.Duration
	// Significance thresholds: a change smaller than all of these is not
	// broadcast until the next refresh. Status and capacity changes always are.
	InFlightDelta    float64 // fraction of capacity (at least one call)
	LatencyDelta     float64 // relative change of the EWMA latency
	SuccessRateDelta float64 // absolute change of the success rate

	// JoinBackoffMin and JoinBackoffMax bound the wait between join attempts.
	JoinBackoffMin time.Duration
	JoinBackoffMax time.Duration
	// LeaveTimeout bounds the graceful leave in Close.
	LeaveTimeout time.Duration
	// DepartedRetention is how long dead and left members stay in Members().
	DepartedRetention time.Duration
	// EventBuffer is how many undelivered load events a subscriber may have
	// before further load events to it are dropped (membership events never are).
	EventBuffer int
}

// DefaultConfig is the LAN preset. Targets on a LAN of up to ~100 nodes: a
// load update reaches 99% of nodes within 1 s; a crash is known everywhere
// within 5 s; no healthy node is declared dead. memberlist's own
// DefaultLANConfig needs 8-9 s to declare a crash dead at 100 nodes (its
// suspicion timeout alone is 4*log10(100)*1 s = 8 s).
func DefaultConfig() Config {
	return Config{
		// Probe one node per interval; a LAN round trip is well under a
		// millisecond, so a 200 ms timeout still leaves room for a GC pause
		// or a loaded core, and 200 ms for indirect probes. The probe rate
		// per node stays constant whatever the cluster size.
		ProbeInterval:  400 * time.Millisecond,
		ProbeTimeout:   200 * time.Millisecond,
		IndirectChecks: 3,
		// Suspicion lasts SuspicionMult*log10(N)*ProbeInterval = 3.2 s at
		// N=100 once two other nodes independently confirm (Lifeguard's
		// k = SuspicionMult-2). A lone suspicion (one node with a bad
		// network or a starved core) waits SuspicionMaxTimeoutMult times
		// longer (19 s), which gives a falsely suspected node ample time to
		// refute. Detection at N=100: ~0.4 s until someone probes it + 0.4 s
		// probe + 3.2 s suspicion + ~0.3 s to spread the death = ~4.3 s.
		// SuspicionMult 3 (2.4 s) met the target too but produced false
		// deaths on a loaded 2-core machine.
		SuspicionMult:           4,
		SuspicionMaxTimeoutMult: 6,
		// Gossip every 100 ms to 4 peers: an epidemic with fan-out 4 covers
		// 100 nodes in ~log4(100) = 3.3 rounds plus a tail, i.e. well under
		// a second. An idle tick sends nothing, so the cost is proportional
		// to what there is to say. memberlist's LAN default (200 ms, 3
		// peers) takes ~1-1.2 s to reach 99% of 100 nodes.
		GossipInterval: 100 * time.Millisecond,
		GossipNodes:    4,
		// Each node relays a message 4*ceil(log10(N+1)) times (12 at N=100):
		// the chance that a given node never hears it is ~e^-12 (but e^-8
		// at N=11..99). memberlist's Local preset (2) leaves a long tail
		// that only push/pull repairs.
		RetransmitMult: 4,
		// A load change misses a node with a chance of ~e^-12 from N=11 to
		// 99 (e^-18 at N=100). With 4, one node in a few hundred missed a
		// change at N=50 in the benchmark (e^-8 per node and change) and
		// held the old load until the next refresh.
		LoadRetransmitMult: 6,
		// Full state exchange (membership and the signed load table) with a
		// random peer; memberlist scales it up beyond 32 nodes.
		PushPullInterval: 30 * time.Second,
		StreamTimeout:    5 * time.Second,
		// Under QUIC's datagram payload (about 1,200 bytes at the initial
		// 1,280-byte packet size): a larger packet falls back to a stream
		// per packet, which is slower and is dropped when the peer's stream
		// limit is reached. At 1,400 bytes without compression, a node's
		// status updates were lost for a whole refresh interval.
		PacketSize: 1100,
		// Names are bound to node certificates by the transport, so a dead
		// node's name coming back at a new address is that node restarting.
		DeadNodeReclaimTime: time.Second,

		MaxMessageBytes:     1024,
		MaxStateBytes:       8 << 20,
		LoadMinInterval:     200 * time.Millisecond,
		LoadRefreshInterval: 15 * time.Second,
		InFlightDelta:       0.1,
		LatencyDelta:        0.2,
		SuccessRateDelta:    0.05,

		JoinBackoffMin:    250 * time.Millisecond,
		JoinBackoffMax:    15 * time.Second,
		LeaveTimeout:      3 * time.Second,
		DepartedRetention: 5 * time.Minute,
		EventBuffer:       1024,
	}
}

// LocalConfig is the preset for tests on one machine (loopback, many nodes in
// one process): the LAN preset with faster anti-entropy and joins so tests
// converge and heal quickly. Failure detection keeps the LAN timings: many
// nodes sharing two cores need the same slack against false deaths.
func LocalConfig() Config {
	c := DefaultConfig()
	c.PushPullInterval = 5 * time.Second
	c.JoinBackoffMin = 50 * time.Millisecond
	c.JoinBackoffMax = time.Second
	c.LeaveTimeout = time.Second
	c.LoadMinInterval = 50 * time.Millisecond
	c.LoadRefreshInterval = 5 * time.Second
	return c
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setF := func(v *float64, def float64) {
		if *v == 0 {
			*v = def
		}
	}
	setDur(&c.ProbeInterval, d.ProbeInterval)
	setDur(&c.ProbeTimeout, d.ProbeTimeout)
	setInt(&c.IndirectChecks, d.IndirectChecks)
	setInt(&c.SuspicionMult, d.SuspicionMult)
	setInt(&c.SuspicionMaxTimeoutMult, d.SuspicionMaxTimeoutMult)
	setDur(&c.GossipInterval, d.GossipInterval)
	setInt(&c.GossipNodes, d.GossipNodes)
	setInt(&c.RetransmitMult, d.RetransmitMult)
	setInt(&c.LoadRetransmitMult, d.LoadRetransmitMult)
	setDur(&c.PushPullInterval, d.PushPullInterval)
	setDur(&c.StreamTimeout, d.StreamTimeout)
	setInt(&c.PacketSize, d.PacketSize)
	setDur(&c.DeadNodeReclaimTime, d.DeadNodeReclaimTime)
	setInt(&c.MaxMessageBytes, d.MaxMessageBytes)
	setInt(&c.MaxStateBytes, d.MaxStateBytes)
	setDur(&c.LoadMinInterval, d.LoadMinInterval)
	setDur(&c.LoadRefreshInterval, d.LoadRefreshInterval)
	setF(&c.InFlightDelta, d.InFlightDelta)
	setF(&c.LatencyDelta, d.LatencyDelta)
	setF(&c.SuccessRateDelta, d.SuccessRateDelta)
	setDur(&c.JoinBackoffMin, d.JoinBackoffMin)
	setDur(&c.JoinBackoffMax, d.JoinBackoffMax)
	setDur(&c.LeaveTimeout, d.LeaveTimeout)
	setDur(&c.DepartedRetention, d.DepartedRetention)
	setInt(&c.EventBuffer, d.EventBuffer)
	if c.BindAddr == "" {
		c.BindAddr = "127.0.0.1"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Clock = clock.OrSystem(c.Clock)
	return c
}

// minMessageBytes leaves room for the header, the node's own load, a
// signature and at least one agent with a maximal id.
const minMessageBytes = 512

// Validate checks the configuration after defaults are applied; errors name
// the field.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if err := validNodeName(c.Name); err != nil {
		bad("gossip: Name: %w", err)
	}
	if c.Signer == nil {
		bad("gossip: Signer is required (the node's ed25519 or ECDSA P-256 key)")
	} else if _, err := sigAlgorithm(c.Signer.Public()); err != nil {
		bad("gossip: Signer: %w", err)
	}
	if c.Keys == nil {
		bad("gossip: Keys is required (resolves peers' public keys)")
	}
	if c.ProbeTimeout >= c.ProbeInterval {
		bad("gossip: ProbeTimeout (%v) must be less than ProbeInterval (%v)", c.ProbeTimeout, c.ProbeInterval)
	}
	if c.SuspicionMult < 1 || c.SuspicionMaxTimeoutMult < 1 {
		bad("gossip: SuspicionMult and SuspicionMaxTimeoutMult must be at least 1")
	}
	if c.GossipNodes < 1 || c.RetransmitMult < 1 || c.LoadRetransmitMult < 1 || c.IndirectChecks < 0 {
		bad("gossip: GossipNodes, RetransmitMult and LoadRetransmitMult must be at least 1, IndirectChecks not negative")
	}
	if c.MaxMessageBytes < minMessageBytes {
		bad("gossip: MaxMessageBytes (%d) must be at least %d", c.MaxMessageBytes, minMessageBytes)
	}
	if c.MaxMessageBytes > c.PacketSize-64 {
		bad("gossip: MaxMessageBytes (%d) must leave 64 bytes of PacketSize (%d) for memberlist's framing", c.MaxMessageBytes, c.PacketSize)
	}
	if c.MaxStateBytes < c.MaxMessageBytes {
		bad("gossip: MaxStateBytes (%d) must be at least MaxMessageBytes (%d)", c.MaxStateBytes, c.MaxMessageBytes)
	}
	if c.JoinBackoffMin > c.JoinBackoffMax {
		bad("gossip: JoinBackoffMin (%v) must not exceed JoinBackoffMax (%v)", c.JoinBackoffMin, c.JoinBackoffMax)
	}
	if c.LoadMinInterval >= c.LoadRefreshInterval {
		bad("gossip: LoadMinInterval (%v) must be less than LoadRefreshInterval (%v)", c.LoadMinInterval, c.LoadRefreshInterval)
	}
	if c.InFlightDelta < 0 || c.LatencyDelta < 0 || c.SuccessRateDelta < 0 {
		bad("gossip: InFlightDelta, LatencyDelta and SuccessRateDelta must not be negative")
	}
	if c.EventBuffer < 1 {
		bad("gossip: EventBuffer must be at least 1")
	}
	if err := c.Meta.validate(); err != nil {
		bad("gossip: Meta: %w", err)
	}
	return errors.Join(errs...)
}

// memberlistConfig translates c into memberlist's configuration.
func (c Config) memberlistConfig() *memberlist.Config {
	mc := memberlist.DefaultLANConfig()
	mc.Name = c.Name
	mc.ProbeInterval = c.ProbeInterval
	mc.ProbeTimeout = c.ProbeTimeout
	mc.IndirectChecks = c.IndirectChecks
	mc.SuspicionMult = c.SuspicionMult
	mc.SuspicionMaxTimeoutMult = c.SuspicionMaxTimeoutMult
	mc.GossipInterval = c.GossipInterval
	mc.GossipNodes = c.GossipNodes
	mc.RetransmitMult = c.RetransmitMult
	mc.PushPullInterval = c.PushPullInterval
	mc.TCPTimeout = c.StreamTimeout
	mc.UDPBufferSize = c.PacketSize
	mc.DeadNodeReclaimTime = c.DeadNodeReclaimTime
	// A restarted node may only reuse its name once the old incarnation is
	// dead: one gossip-to-the-dead window is enough to tell others.
	mc.GossipToTheDeadTime = 15 * time.Second
	// The transport (QUIC + mTLS) authenticates and encrypts; memberlist's own
	// symmetric encryption would only add a shared secret to manage.
	mc.GossipVerifyIncoming = false
	mc.GossipVerifyOutgoing = false
	// LZW on every packet costs CPU on both ends for little gain: load
	// entries are protobuf varints and signatures, which hardly compress.
	// Profiles showed it among the top allocators of a busy node.
	// PacketSize keeps uncompressed packets inside one QUIC datagram.
	mc.EnableCompression = false
	return mc
}

// sigAlgorithm says how keys of pub's type sign load entries.
func sigAlgorithm(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return "ed25519", nil
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return "ecdsa-p256", nil
		}
		return "", fmt.Errorf("ECDSA curve %s is not supported, use P-256", k.Curve.Params().Name)
	}
	return "", fmt.Errorf("key type %T is not supported, use ed25519 or ECDSA P-256", pub)
}
