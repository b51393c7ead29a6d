package gossip

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors.
var (
	// ErrNameConflict means another live node already uses this node's name
	// at a different address; the cluster refused this node.
	ErrNameConflict = errors.New("node name already used by a live node")
	// ErrClosed means the Gossip was shut down.
	ErrClosed = errors.New("gossip is shut down")
	// ErrNoSeeds means Join was called without seeds.
	ErrNoSeeds = errors.New("no seed addresses to join")
)

// Role is a node's role in the cluster.
type Role uint8

const (
	RoleUnknown Role = iota
	RoleServer       // a Raft member
	RoleClient       // not a Raft member
)

func (r Role) String() string {
	switch r {
	case RoleServer:
		return "server"
	case RoleClient:
		return "client"
	}
	return "unknown"
}

// Status is the health a node or an agent reports for itself.
type Status uint8

const (
	StatusUnknown Status = iota
	StatusReady
	StatusDraining
	StatusRestarting
)

func (s Status) String() string {
	switch s {
	case StatusReady:
		return "ready"
	case StatusDraining:
		return "draining"
	case StatusRestarting:
		return "restarting"
	}
	return "unknown"
}

// MemberStatus is what failure detection says about a node.
type MemberStatus uint8

const (
	MemberAlive   MemberStatus = iota + 1
	MemberSuspect              // missed probes; still routed to, may be declared dead soon
	MemberDead                 // declared dead by failure detection
	MemberLeft                 // left gracefully
)

func (s MemberStatus) String() string {
	switch s {
	case MemberAlive:
		return "alive"
	case MemberSuspect:
		return "suspect"
	case MemberDead:
		return "dead"
	case MemberLeft:
		return "left"
	}
	return "unknown"
}

// NodeMeta is what each node advertises about itself in membership messages
// (at most 512 bytes encoded).
type NodeMeta struct {
	Role     Role
	QUICAddr string // host:port of the node's QUIC endpoint
	Version  string // meshnode release
	SPIFFEID string // spiffe://<td>/node/<name>
	// Leaving is set by Leave just before the leave message, so that peers
	// tell a graceful leave from a failure (memberlist does not say which).
	Leaving bool
}

func (m NodeMeta) validate() error {
	if len(m.QUICAddr) > 128 || len(m.Version) > 64 || len(m.SPIFFEID) > 256 {
		return fmt.Errorf("QUICAddr (max 128 bytes), Version (max 64) or SPIFFEID (max 256) too long")
	}
	return nil
}

// NodeLoad is the load and health of a whole node.
type NodeLoad struct {
	InFlight    uint32
	Capacity    uint32 // 0: unknown
	EWMALatency time.Duration
	SuccessRate float64 // decayed, 0..1
	Status      Status
}

// AgentLoad is the load and health of one agent.
type AgentLoad struct {
	AgentID     string
	InFlight    uint32
	Capacity    uint32 // 0: unknown
	EWMALatency time.Duration
	SuccessRate float64 // decayed, 0..1
	Status      Status

	// Set on entries read from the view: the node that published the entry
	// and the sequence number of the message that carried it.
	Node string
	Seq  uint64
}

// Member is one node as the local view sees it.
type Member struct {
	Name   string
	Addr   string // gossip address (host:port)
	Meta   NodeMeta
	Status MemberStatus
	// Since is when the local node saw the status change.
	Since time.Time
	// Agents is how many agents the node's load table lists.
	Agents int
	// Load is the node's own load (zero until its first load message).
	Load    NodeLoad
	LoadSeq uint64
}

// EventType says what an Event reports.
type EventType uint8

const (
	EventJoin   EventType = iota + 1 // a node joined (or rejoined)
	EventLeave                       // a node left gracefully
	EventFail                        // a node was declared dead
	EventUpdate                      // a node's metadata changed
	EventLoad                        // a node's load table changed
)

func (t EventType) String() string {
	switch t {
	case EventJoin:
		return "join"
	case EventLeave:
		return "leave"
	case EventFail:
		return "fail"
	case EventUpdate:
		return "update"
	case EventLoad:
		return "load"
	}
	return "unknown"
}

// Event is a change in the local view. For EventLoad, Agents lists the agent
// ids whose entry appeared, changed or disappeared, and Member carries the
// node's new load.
type Event struct {
	Type   EventType
	Member Member
	Agents []string
	Seq    uint64 // EventLoad: the sequence number of the message applied
	At     time.Time
}

// Stats are counters since New.
type Stats struct {
	MessagesReceived uint64 // load messages received (gossip and push/pull)
	MessagesAccepted uint64 // ... that changed the local view
	MessagesStale    uint64 // ... already known or older than what we hold
	Undecodable      uint64 // dropped: not a valid message
	Oversized        uint64 // dropped: larger than MaxMessageBytes/MaxStateBytes
	UnknownKey       uint64 // dropped: no public key for the claimed node
	BadSignature     uint64 // dropped: signature does not verify
	DepartedNode     uint64 // dropped: the node is dead or left
	ForeignAgent     uint64 // entries ignored because the registry gives the agent to another node
	NameConflicts    uint64 // alive messages refused: same name, different address
	BadMeta          uint64 // alive messages refused: undecodable metadata or wrong SPIFFE id
	EventsDropped    uint64 // load events not delivered to a slow subscriber
	LoadBroadcasts   uint64 // load messages this node signed and queued
	PacketsSent      uint64 // transport packets sent
	PacketBytesSent  uint64 // ... their bytes
	PacketsDropped   uint64 // packets the transport could not send (peer unreachable or still dialing)
	StreamBytesSent  uint64 // bytes written to push/pull and fallback streams
	StreamBytesRecv  uint64 // bytes read from them
}
