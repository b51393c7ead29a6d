package transport

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentmesh/meshnode/internal/clock"
)

// Refusals counts what the endpoint refused to protect itself and the
// cluster: join connections over their limits, streams that announced too
// much or sent too slowly, raft streams from peers that are not admitted
// servers, and dials answered by the wrong node. Each refusal is also
// logged, at most once per peer and kind per minute.
type Refusals struct {
	JoinConnsPerIP uint64 // join connections refused: MaxJoinConnsPerIP already open from that source
	JoinConns      uint64 // join connections refused: MaxJoinConns already open in total
	JoinStreams    uint64 // join streams reset: MaxJoinStreams already open on the connection
	JoinIdle       uint64 // join connections closed after JoinIdleTimeout without an open stream
	LargeFrames    uint64 // streams reset: a frame announced above its cap
	SlowFrames     uint64 // streams reset: a frame did not arrive before its deadline
	RaftStreams    uint64 // inbound raft streams refused by Config.RaftPeer
	RaftDials      uint64 // raft dials refused: the answering node failed Config.RaftPeer
	UnexpectedPeer uint64 // dials refused or connections not reused: not Config.ExpectedPeer's node
}

type refusalCounters struct {
	joinConnsPerIP, joinConns, joinStreams, joinIdle atomic.Uint64
	largeFrames, slowFrames                          atomic.Uint64
	raftStreams, raftDials, unexpectedPeer           atomic.Uint64
}

// Refusals returns the endpoint's refusal counters.
func (e *Endpoint) Refusals() Refusals {
	r := &e.refused
	return Refusals{
		JoinConnsPerIP: r.joinConnsPerIP.Load(),
		JoinConns:      r.joinConns.Load(),
		JoinStreams:    r.joinStreams.Load(),
		JoinIdle:       r.joinIdle.Load(),
		LargeFrames:    r.largeFrames.Load(),
		SlowFrames:     r.slowFrames.Load(),
		RaftStreams:    r.raftStreams.Load(),
		RaftDials:      r.raftDials.Load(),
		UnexpectedPeer: r.unexpectedPeer.Load(),
	}
}

// logEvery is how often one peer may put one kind of refusal in the log:
// a peer that is refused a thousand times a second must not flood it.
const logEvery = time.Minute

// maxLogKeys bounds the limiter's memory when many sources are refused;
// beyond it, refusals from new sources are counted but not logged until
// old entries expire.
const maxLogKeys = 4096

// logLimiter lets one line per key through per logEvery.
type logLimiter struct {
	clock clock.Clock
	mu    sync.Mutex
	last  map[string]time.Time
}

func (l *logLimiter) allow(key string) bool {
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.last[key]; ok && now.Sub(t) < logEvery {
		return false
	}
	if l.last == nil {
		l.last = map[string]time.Time{}
	}
	if len(l.last) >= maxLogKeys {
		for k, t := range l.last {
			if now.Sub(t) >= logEvery {
				delete(l.last, k)
			}
		}
		if len(l.last) >= maxLogKeys {
			return false
		}
	}
	l.last[key] = now
	return true
}

// logRefusal logs msg at Warn unless this peer had a line of this kind
// logged in the last minute.
func (e *Endpoint) logRefusal(peer, msg string, attrs ...any) {
	if e.logLimit.allow(msg + "\x00" + peer) {
		e.log.Warn(msg, append([]any{"peer", peer}, attrs...)...)
	}
}

// sourceKey is what per-source join limits count by: the IP address, or
// for IPv6 its /64, since one host commonly holds a whole /64.
func sourceKey(a net.Addr) netip.Prefix {
	var ip netip.Addr
	if ua, ok := a.(*net.UDPAddr); ok {
		ip, _ = netip.AddrFromSlice(ua.IP)
	} else if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		ip = ap.Addr()
	}
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// joinSlots counts open join connections per source and in total.
type joinSlots struct {
	mu       sync.Mutex
	bySource map[netip.Prefix]int
	total    int
}

// check says which limit a new connection from src would exceed, if any.
func (j *joinSlots) check(src netip.Prefix, perSource, total int) (perSourceFull, totalFull bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.full(src, perSource, total)
}

// acquire takes a slot for a connection from src unless a limit is reached.
func (j *joinSlots) acquire(src netip.Prefix, perSource, total int) (perSourceFull, totalFull bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if perSourceFull, totalFull = j.full(src, perSource, total); perSourceFull || totalFull {
		return perSourceFull, totalFull
	}
	if j.bySource == nil {
		j.bySource = map[netip.Prefix]int{}
	}
	j.bySource[src]++
	j.total++
	return false, false
}

// full is check with j.mu held. The per-source limit is reported first:
// it names the source to blame.
func (j *joinSlots) full(src netip.Prefix, perSource, total int) (perSourceFull, totalFull bool) {
	if j.bySource[src] >= perSource {
		return true, false
	}
	return false, j.total >= total
}

func (j *joinSlots) release(src netip.Prefix) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.total--
	if j.bySource[src]--; j.bySource[src] <= 0 {
		delete(j.bySource, src)
	}
}

// countJoinRefusal counts and logs a join connection refused by a limit.
func (e *Endpoint) countJoinRefusal(src netip.Prefix, perSourceFull bool) {
	if perSourceFull {
		e.refused.joinConnsPerIP.Add(1)
		e.logRefusal(src.String(), "refusing join connection: too many open from this source", "limit", e.cfg.MaxJoinConnsPerIP)
		return
	}
	e.refused.joinConns.Add(1)
	e.logRefusal(src.String(), "refusing join connection: too many open in total", "limit", e.cfg.MaxJoinConns)
}

// joinState is what a join connection tracks: its source slot, its open
// streams, and the timer that closes it once it has none for too long.
type joinState struct {
	src     netip.Prefix
	mu      sync.Mutex
	streams int
	idle    *time.Timer
}

// admitJoinConn takes a slot for an accepted join connection and starts its
// idle timer, or refuses the connection.
func (e *Endpoint) admitJoinConn(pc *peerConn) bool {
	src := sourceKey(pc.conn.RemoteAddr())
	if perSource, total := e.joins.acquire(src, e.cfg.MaxJoinConnsPerIP, e.cfg.MaxJoinConns); perSource || total {
		e.countJoinRefusal(src, perSource)
		pc.conn.CloseWithError(ConnCodeRefused, "too many join connections")
		return false
	}
	js := &joinState{src: src}
	js.idle = time.AfterFunc(e.cfg.JoinIdleTimeout, func() {
		e.refused.joinIdle.Add(1)
		e.logRefusal(src.String(), "closing idle join connection", "idle", e.cfg.JoinIdleTimeout)
		pc.conn.CloseWithError(ConnCodeRefused, "idle join connection")
	})
	pc.joinState = js
	return true
}

// releaseJoinConn gives back the slot of a join connection that ended.
func (e *Endpoint) releaseJoinConn(pc *peerConn) {
	if js := pc.joinState; js != nil {
		js.idle.Stop()
		e.joins.release(js.src)
	}
}

// joinStreamStarted counts a new stream on a join connection; false means
// MaxJoinStreams are already open and the stream must be refused.
func (e *Endpoint) joinStreamStarted(pc *peerConn) bool {
	js := pc.joinState
	js.mu.Lock()
	defer js.mu.Unlock()
	if js.streams >= e.cfg.MaxJoinStreams {
		return false
	}
	js.streams++
	js.idle.Stop()
	return true
}

// joinStreamEnded re-arms the idle timer when the last stream ends.
func (e *Endpoint) joinStreamEnded(pc *peerConn) {
	js := pc.joinState
	js.mu.Lock()
	defer js.mu.Unlock()
	if js.streams--; js.streams == 0 {
		js.idle.Reset(e.cfg.JoinIdleTimeout)
	}
}
