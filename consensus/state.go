package consensus

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-memdb"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// state is the replicated state: an indexed in-memory database plus the log
// of recent changes. Servers drive it from the Raft FSM, clients from a
// server's change stream. Stored objects are never mutated after insert:
// writers insert fresh copies and readers may share them read-only.
type state struct {
	// mu serialises writers with the publication of their events, so the
	// change log's order is the commit order and a snapshot taken under mu
	// is exactly at the log's last index.
	mu  sync.Mutex
	db  atomic.Pointer[memdb.MemDB]
	log *changeLog
	// dedup is written by applyBatch and read by FSM snapshots, both on
	// the FSM goroutine, under mu.
	dedup *dedupTable
	// restores counts wholesale replacements (snapshot installs, replica
	// resyncs); observability and tests.
	restores atomic.Uint64
	// applied is the last applied index, stored after each commit: the
	// call path reads it on every call to reuse what it resolved at that
	// index, and opening a read transaction to learn it costs more.
	applied atomic.Uint64
}

func newState(changeLogSize int) *state {
	s := &state{log: newChangeLog(changeLogSize), dedup: newDedupTable()}
	db, err := memdb.NewMemDB(stateSchema())
	if err != nil {
		panic(fmt.Sprintf("consensus: invalid memdb schema: %v", err)) // a programming error
	}
	s.db.Store(db)
	return s
}

// read returns a read transaction and the index its view reflects.
func (s *state) read() (*memdb.Txn, uint64) {
	txn := s.db.Load().Txn(false)
	return txn, appliedIndex(txn)
}

func appliedIndex(txn *memdb.Txn) uint64 {
	raw, err := txn.First(tableMeta, "id", metaApplied)
	if err != nil || raw == nil {
		return 0
	}
	return raw.(*metaRow).Index
}

// index is the last applied index. It may trail a commit by a moment,
// never lead one.
func (s *state) index() uint64 { return s.applied.Load() }

// snapshotTxn returns a read transaction taken atomically with the change
// log's position: events after the returned index are all in the log.
func (s *state) snapshotTxn() (*memdb.Txn, uint64, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	txn, idx := s.read()
	_, epoch, _ := s.log.position()
	return txn, idx, epoch
}

// replace installs a whole new state (snapshot restore, replica resync).
func (s *state) replace(records []*meshnodev1.RaftStateRecord, index uint64) error {
	db, err := memdb.NewMemDB(stateSchema())
	if err != nil {
		return fmt.Errorf("creating state database: %w", err)
	}
	txn := db.Txn(true)
	dedup := newDedupTable()
	for _, r := range records {
		table, obj, err := fromRecord(r)
		if err != nil {
			txn.Abort()
			return fmt.Errorf("restoring state: %w", err)
		}
		if table == tableDedup {
			dedup.add(obj.(*meshnodev1.DedupRecord))
			continue
		}
		if err := txn.Insert(table, obj); err != nil {
			txn.Abort()
			return fmt.Errorf("restoring %s record: %w", table, err)
		}
	}
	if err := txn.Insert(tableMeta, &metaRow{Key: metaApplied, Index: index}); err != nil {
		txn.Abort()
		return fmt.Errorf("restoring applied index: %w", err)
	}
	txn.Commit()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.db.Store(db)
	s.applied.Store(index)
	s.dedup = dedup
	s.log.reset(index)
	s.restores.Add(1)
	return nil
}

// view is a consistent read of the whole state at one index.
type view struct {
	txn   *memdb.Txn
	index uint64
	// dedup is nil in views that leave the secret tables out.
	dedup []*meshnodev1.DedupRecord
}

// fullView captures everything a Raft snapshot holds. Call it on the FSM
// goroutine (raft's FSM.Snapshot), where no apply runs concurrently.
func (s *state) fullView() view {
	s.mu.Lock()
	defer s.mu.Unlock()
	txn, idx := s.read()
	return view{txn: txn, index: idx, dedup: s.dedup.entries()}
}

// records lists every record of the view in snapshot order, leaving out
// the secret tables unless withSecrets.
func records(v view, withSecrets bool, fn func(*meshnodev1.RaftStateRecord) error) error {
	txn := v.txn
	for _, table := range snapshotTables {
		if secretTables[table] && !withSecrets {
			continue
		}
		if table == tableDedup {
			for _, r := range v.dedup {
				if err := fn(toRecord(r)); err != nil {
					return err
				}
			}
			continue
		}
		it, err := txn.Get(table, "id")
		if err != nil {
			return fmt.Errorf("listing %s: %w", table, err)
		}
		for obj := it.Next(); obj != nil; obj = it.Next() {
			if err := fn(toRecord(obj)); err != nil {
				return err
			}
		}
	}
	return nil
}

// applyEvent applies a change stream event on a client replica. The caller
// has checked that the event follows the replica's index.
func (s *state) applyEvent(ev *meshnodev1.RaftStateEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	txn := s.db.Load().Txn(true)
	for _, ch := range ev.GetChanges() {
		table, obj, err := fromRecord(ch.GetRecord())
		if err != nil {
			txn.Abort()
			return fmt.Errorf("applying event at index %d: %w", ev.GetIndex(), err)
		}
		if ch.GetDelete() {
			err = txn.Delete(table, obj)
			if err == memdb.ErrNotFound {
				err = nil
			}
		} else {
			err = txn.Insert(table, obj)
		}
		if err != nil {
			txn.Abort()
			return fmt.Errorf("applying event at index %d to %s: %w", ev.GetIndex(), table, err)
		}
	}
	if err := txn.Insert(tableMeta, &metaRow{Key: metaApplied, Index: ev.GetIndex()}); err != nil {
		txn.Abort()
		return fmt.Errorf("applying event at index %d: %w", ev.GetIndex(), err)
	}
	txn.Commit()
	s.applied.Store(ev.GetIndex())
	s.log.append(&meshnodev1.RaftStateEvent{Index: ev.GetIndex(), Changes: ev.GetChanges()})
	return nil
}

// eventFrom turns a transaction's tracked changes into a change event.
func eventFrom(index uint64, changes memdb.Changes) *meshnodev1.RaftStateEvent {
	ev := &meshnodev1.RaftStateEvent{Index: index}
	for _, c := range changes {
		if c.Table == tableMeta {
			continue
		}
		if c.After != nil {
			ev.Changes = append(ev.Changes, &meshnodev1.RaftStateChange{Record: toRecord(c.After)})
		} else {
			ev.Changes = append(ev.Changes, &meshnodev1.RaftStateChange{Delete: true, Record: toRecord(c.Before)})
		}
	}
	return ev
}
