package consensus

import (
	"sort"
	"sync"
	"time"

	"github.com/agentmesh/meshnode/internal/clock"
)

// MemberStatus is gossip's view of a server.
type MemberStatus int

// Member statuses, fed by the node from gossip events.
const (
	MemberUnknown MemberStatus = iota
	MemberAlive
	MemberFailed
	MemberLeft
)

func (m MemberStatus) String() string {
	switch m {
	case MemberAlive:
		return "alive"
	case MemberFailed:
		return "failed"
	case MemberLeft:
		return "left"
	}
	return "unknown"
}

type member struct {
	name   string
	addr   string
	status MemberStatus
	since  time.Time // when status last changed
}

// members is the table of servers gossip told us about. It drives the
// autopilot on the leader and the choice of server on clients.
type members struct {
	mu     sync.Mutex
	clock  clock.Clock
	byName map[string]*member
	seeds  []string
	// preferred is the server a client talks to until it fails.
	preferred string
	avoided   map[string]time.Time
}

func newMembers(c clock.Clock) *members {
	return &members{clock: c, byName: map[string]*member{}, avoided: map[string]time.Time{}}
}

func (m *members) seed(addr string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seeds = append(m.seeds, addr)
}

func (m *members) set(name, addr string, st MemberStatus) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.byName[name]
	if cur == nil {
		cur = &member{name: name}
		m.byName[name] = cur
	}
	if addr != "" {
		cur.addr = addr
	}
	if cur.status != st {
		cur.status, cur.since = st, m.clock.Now()
	}
	if st == MemberAlive {
		delete(m.avoided, cur.addr)
	}
}

func (m *members) snapshot() []member {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]member, 0, len(m.byName))
	for _, v := range m.byName {
		out = append(out, *v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func (m *members) get(name string) (member, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.byName[name]
	if !ok {
		return member{}, false
	}
	return *v, true
}

// pick returns the server a client should use: the preferred one while it
// is alive and not avoided, else another alive one, else a seed.
func (m *members) pick() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock.Now()
	usable := func(addr string) bool {
		t, bad := m.avoided[addr]
		return addr != "" && (!bad || now.Sub(t) > 5*time.Second)
	}
	alive := map[string]bool{}
	var cands []string
	for _, v := range m.byName {
		if v.status == MemberAlive && usable(v.addr) {
			alive[v.addr] = true
			cands = append(cands, v.addr)
		}
	}
	if alive[m.preferred] {
		return m.preferred
	}
	for _, a := range m.seeds {
		if usable(a) && m.statusOfAddr(a) != MemberFailed && m.statusOfAddr(a) != MemberLeft {
			cands = append(cands, a)
		}
	}
	if len(cands) == 0 {
		// Everything is avoided: try the least recently avoided again.
		for a := range m.avoided {
			cands = append(cands, a)
		}
	}
	if len(cands) == 0 {
		return ""
	}
	sort.Strings(cands)
	m.preferred = cands[int(now.UnixNano()%int64(len(cands)))]
	return m.preferred
}

func (m *members) statusOfAddr(addr string) MemberStatus {
	for _, v := range m.byName {
		if v.addr == addr {
			return v.status
		}
	}
	return MemberUnknown
}

// avoid marks addr as failing so pick moves on.
func (m *members) avoid(addr string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.avoided[addr] = m.clock.Now()
	if m.preferred == addr {
		m.preferred = ""
	}
}

// ServerAlive tells the store that gossip sees server name alive at addr
// (its Raft and transport address). Call it for every server, this node
// included; the leader's autopilot adds new servers to Raft.
func (s *Store) ServerAlive(name, addr string) { s.members.set(name, addr, MemberAlive) }

// ServerFailed tells the store gossip considers server name failed.
func (s *Store) ServerFailed(name string) { s.members.set(name, "", MemberFailed) }

// ServerLeft tells the store server name left the cluster gracefully; the
// autopilot removes it from Raft without waiting for the grace period.
func (s *Store) ServerLeft(name string) { s.members.set(name, "", MemberLeft) }
