package consensus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// eventBatch is how many events a change stream sends per wake-up.
const eventBatch = 256

// handleSubscribe serves a client's change stream: a snapshot if the client
// is too far behind (or new), then every event in order, with heartbeats
// when idle. Secret records never leave the server.
func (s *Store) handleSubscribe(ctx context.Context, peer string, st Stream) error {
	if s.closed.Load() {
		return toStatus(ErrClosed)
	}
	var req meshnodev1.SubscribeRequest
	if err := st.Recv(&req); err != nil {
		return err
	}
	from := req.GetFromIndex()
	_, epoch, _, ok := s.st.log.since(from, 1)
	if from == 0 || !ok {
		var err error
		if from, epoch, err = s.sendSnapshot(st); err != nil {
			return err
		}
	}
	s.logger.Debug("change stream opened", "peer", peer, "from", from)
	hb := time.NewTicker(s.cfg.ReplicaHeartbeat)
	defer hb.Stop()
	for {
		evs, ep, notify, ok := s.st.log.since(from, eventBatch)
		if ep != epoch || !ok {
			var err error
			if from, epoch, err = s.sendSnapshot(st); err != nil {
				return err
			}
			continue
		}
		for _, ev := range evs {
			if err := st.Send(&meshnodev1.SubscribeResponse{Kind: &meshnodev1.SubscribeResponse_Event{Event: publicEvent(ev)}}); err != nil {
				return err
			}
			from = ev.GetIndex()
		}
		if len(evs) > 0 {
			continue
		}
		select {
		case <-notify:
		case <-hb.C:
			if err := st.Send(&meshnodev1.SubscribeResponse{Kind: &meshnodev1.SubscribeResponse_Heartbeat{Heartbeat: s.st.index()}}); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		case <-s.ctx.Done():
			return toStatus(ErrClosed)
		}
	}
}

func (s *Store) sendSnapshot(st Stream) (uint64, uint64, error) {
	txn, idx, epoch := s.st.snapshotTxn()
	v := view{txn: txn, index: idx}
	var n uint64
	_ = records(v, false, func(*meshnodev1.RaftStateRecord) error { n++; return nil })
	err := st.Send(&meshnodev1.SubscribeResponse{Kind: &meshnodev1.SubscribeResponse_SnapshotBegin{
		SnapshotBegin: &meshnodev1.RaftSnapshotHeader{Version: SnapshotVersion, Index: idx, Records: n}}})
	if err != nil {
		return 0, 0, err
	}
	err = records(v, false, func(r *meshnodev1.RaftStateRecord) error {
		return st.Send(&meshnodev1.SubscribeResponse{Kind: &meshnodev1.SubscribeResponse_SnapshotRecord{SnapshotRecord: r}})
	})
	if err != nil {
		return 0, 0, err
	}
	return idx, epoch, st.Send(&meshnodev1.SubscribeResponse{Kind: &meshnodev1.SubscribeResponse_SnapshotEnd{SnapshotEnd: idx}})
}

// publicEvent drops server-only records from an event, keeping its place in
// the chain.
func publicEvent(ev *meshnodev1.RaftStateEvent) *meshnodev1.RaftStateEvent {
	out := &meshnodev1.RaftStateEvent{Index: ev.GetIndex(), PrevIndex: ev.GetPrevIndex()}
	for _, c := range ev.GetChanges() {
		if table, _, err := fromRecord(c.GetRecord()); err == nil && !secretTables[table] {
			out.Changes = append(out.Changes, c)
		}
	}
	return out
}

// ReplicaStatus describes a client's replica.
type ReplicaStatus struct {
	// Ready is true once the first snapshot is loaded.
	Ready bool
	// Server is the address of the server feeding the replica ("" if none).
	Server string
	// Index is the replica's applied index; ServerIndex the newest index the
	// server reported. Lag is their difference.
	Index, ServerIndex, Lag uint64
	// LastContact is when the server last sent anything.
	LastContact time.Time
}

type replica struct {
	s           *Store
	ready       atomic.Bool
	mu          sync.Mutex
	server      string
	serverIndex uint64
	lastContact time.Time
}

func (s *Store) startReplica() *replica {
	r := &replica{s: s}
	s.wg.Add(1)
	go r.run()
	return r
}

// ReplicaStatus reports a client replica's progress. On a server it reports
// the local state as fully caught up.
func (s *Store) ReplicaStatus() ReplicaStatus {
	if s.rep == nil {
		idx := s.st.index()
		return ReplicaStatus{Ready: true, Index: idx, ServerIndex: idx, LastContact: s.cfg.Clock.Now()}
	}
	r := s.rep
	r.mu.Lock()
	defer r.mu.Unlock()
	st := ReplicaStatus{Ready: r.ready.Load(), Server: r.server, Index: s.st.index(), ServerIndex: r.serverIndex, LastContact: r.lastContact}
	if st.ServerIndex > st.Index {
		st.Lag = st.ServerIndex - st.Index
	}
	return st
}

func (r *replica) run() {
	defer r.s.wg.Done()
	backoff := 50 * time.Millisecond
	for r.s.ctx.Err() == nil {
		addr := r.s.members.pick()
		if addr != "" {
			err := r.follow(addr)
			if r.s.ctx.Err() != nil {
				return
			}
			r.s.logger.Info("change stream ended; re-subscribing", "server", addr, "index", r.s.st.index(), "err", err)
			r.s.members.avoid(addr)
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-r.s.ctx.Done():
			t.Stop()
			return
		}
		backoff = min(2*backoff, 2*time.Second)
		if addr != "" && r.ready.Load() {
			backoff = 50 * time.Millisecond
		}
	}
}

// errStreamIdle ends a change stream whose server went quiet.
var errStreamIdle = errors.New("change stream idle for 3 heartbeats")

// follow consumes one server's change stream until it fails.
func (r *replica) follow(addr string) error {
	ctx, cancel := context.WithCancelCause(r.s.ctx)
	defer cancel(nil)
	idle := 3 * r.s.cfg.ReplicaHeartbeat
	watchdog := time.AfterFunc(idle, func() { cancel(errStreamIdle) })
	defer watchdog.Stop()
	st, err := r.s.net.OpenStream(ctx, addr, MethodSubscribe)
	if err != nil {
		return err
	}
	defer st.Close()
	from := uint64(0)
	if r.ready.Load() {
		from = r.s.st.index()
	}
	if err := st.Send(&meshnodev1.SubscribeRequest{FromIndex: from}); err != nil {
		return err
	}
	r.mu.Lock()
	r.server = addr
	r.mu.Unlock()
	var snap *meshnodev1.RaftSnapshotHeader
	var recs []*meshnodev1.RaftStateRecord
	for {
		var msg meshnodev1.SubscribeResponse
		if err := st.Recv(&msg); err != nil {
			if c := context.Cause(ctx); c != nil {
				return c
			}
			return err
		}
		watchdog.Reset(idle)
		seen, err := r.handle(&msg, &snap, &recs)
		if err != nil {
			return fmt.Errorf("change stream from %s: %w", addr, err)
		}
		r.mu.Lock()
		r.lastContact = r.s.cfg.Clock.Now()
		r.serverIndex = max(r.serverIndex, seen)
		r.mu.Unlock()
	}
}

// handle applies one change stream message and returns the server index it
// reveals. Any inconsistency is an error: the replica re-subscribes rather
// than apply out of order.
func (r *replica) handle(msg *meshnodev1.SubscribeResponse, snap **meshnodev1.RaftSnapshotHeader, recs *[]*meshnodev1.RaftStateRecord) (uint64, error) {
	switch k := msg.GetKind().(type) {
	case *meshnodev1.SubscribeResponse_SnapshotBegin:
		if k.SnapshotBegin.GetVersion() != SnapshotVersion {
			return 0, fmt.Errorf("%w: snapshot version %d", ErrUnknownVersion, k.SnapshotBegin.GetVersion())
		}
		*snap, *recs = k.SnapshotBegin, make([]*meshnodev1.RaftStateRecord, 0, min(k.SnapshotBegin.GetRecords(), 1<<16))
		return k.SnapshotBegin.GetIndex(), nil
	case *meshnodev1.SubscribeResponse_SnapshotRecord:
		if *snap == nil {
			return 0, errors.New("snapshot record outside a snapshot")
		}
		table, _, err := fromRecord(k.SnapshotRecord)
		if err != nil {
			return 0, err
		}
		if secretTables[table] {
			return 0, fmt.Errorf("server sent a %s record, which clients must not hold", table)
		}
		*recs = append(*recs, k.SnapshotRecord)
		return 0, nil
	case *meshnodev1.SubscribeResponse_SnapshotEnd:
		if *snap == nil || k.SnapshotEnd != (*snap).GetIndex() || uint64(len(*recs)) != (*snap).GetRecords() {
			return 0, errors.New("snapshot end does not match its beginning")
		}
		// A server that lags this replica (a follower just after a leader
		// change) must not move the replica's state backwards: a consistent
		// read that already waited for a newer index would see older data.
		if cur := r.s.st.index(); r.ready.Load() && k.SnapshotEnd < cur {
			*snap, *recs = nil, nil
			return 0, fmt.Errorf("server is behind this replica (its snapshot is at index %d, the replica at %d); subscribing elsewhere", k.SnapshotEnd, cur)
		}
		if err := r.s.st.replace(*recs, k.SnapshotEnd); err != nil {
			return 0, err
		}
		*snap, *recs = nil, nil
		r.ready.Store(true)
		return k.SnapshotEnd, nil
	case *meshnodev1.SubscribeResponse_Event:
		return k.Event.GetIndex(), r.applyEvent(*snap != nil, k.Event)
	case *meshnodev1.SubscribeResponse_Heartbeat:
		return k.Heartbeat, nil
	}
	return 0, errors.New("empty change stream message")
}

func (r *replica) applyEvent(inSnapshot bool, ev *meshnodev1.RaftStateEvent) error {
	if inSnapshot || !r.ready.Load() {
		return errors.New("event before the snapshot completed")
	}
	cur := r.s.st.index()
	if ev.GetIndex() <= cur {
		return nil // already applied (a resumed stream may repeat)
	}
	if ev.GetPrevIndex() != cur {
		return fmt.Errorf("gap: event %d follows %d, replica is at %d", ev.GetIndex(), ev.GetPrevIndex(), cur)
	}
	for _, c := range ev.GetChanges() {
		table, _, err := fromRecord(c.GetRecord())
		if err != nil {
			return err
		}
		if secretTables[table] {
			return fmt.Errorf("server sent a %s change, which clients must not hold", table)
		}
	}
	return r.s.st.applyEvent(ev)
}
