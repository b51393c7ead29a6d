package tasks

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Buckets: a task's record, its event log (one nested bucket per task,
// keyed by big-endian sequence number so a cursor walks it in order), and
// the keys callers chose at Submit on this node.
var (
	bucketTasks  = []byte("tasks")
	bucketEvents = []byte("events")
	bucketKeys   = []byte("keys")
)

// Store is the durable state of the tasks held by one node. Every write is
// one bbolt transaction, fsync'd before it returns: an event a watcher was
// sent is on disk, so a restart never takes it back. Safe for concurrent
// use; bbolt serialises writers, which is what makes sequence numbers gapless.
type Store struct {
	db *bolt.DB
}

// OpenStore opens (or creates) the store at path.
func OpenStore(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open task store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketTasks, bucketEvents, bucketKeys} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("prepare task store %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the store.
func (s *Store) Close() error { return s.db.Close() }

// IsFinal says whether nothing may follow state.
func IsFinal(state meshnodev1.TaskState) bool {
	switch state {
	case meshnodev1.TaskState_TASK_STATE_COMPLETED, meshnodev1.TaskState_TASK_STATE_FAILED, meshnodev1.TaskState_TASK_STATE_CANCELED:
		return true
	}
	return false
}

// Create records t (its id, capability, digest, deadline...) with its first
// event, SUBMITTED at now. If the id is taken, the same digest returns the
// existing task and true; another digest is AlreadyExists.
func (s *Store) Create(t *meshnodev1.Task, now time.Time) (*meshnodev1.Task, bool, error) {
	var out *meshnodev1.Task
	existing := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		old, err := getTask(tx, t.GetId())
		if err == nil {
			if !bytes.Equal(old.GetDigest(), t.GetDigest()) {
				return errorf(codes.AlreadyExists, "task %s exists with another capability or payload; choose another id", t.GetId())
			}
			out, existing = old, true
			return nil
		}
		t = proto.Clone(t).(*meshnodev1.Task)
		t.CreatedAt = timestamppb.New(now)
		ev := &meshnodev1.TaskEvent{Event: &meshnodev1.TaskEvent_Status{Status: &meshnodev1.TaskStatus{State: meshnodev1.TaskState_TASK_STATE_SUBMITTED, Message: "submitted"}}}
		if _, err := tx.Bucket(bucketEvents).CreateBucket([]byte(t.GetId())); err != nil {
			return err
		}
		if _, err := appendEvent(tx, t, ev, now); err != nil {
			return err
		}
		out = t
		return nil
	})
	return out, existing, err
}

// Delete forgets a task and its log (a task whose delivery failed before
// its agent got it, so the caller's router may try another).
func (s *Store) Delete(id string) error {
	return s.db.Update(func(tx *bolt.Tx) error { return deleteTask(tx, id) })
}

func deleteTask(tx *bolt.Tx, id string) error {
	if err := tx.Bucket(bucketTasks).Delete([]byte(id)); err != nil {
		return err
	}
	if err := tx.Bucket(bucketEvents).DeleteBucket([]byte(id)); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
		return err
	}
	return nil
}

// Get returns a task's record; NotFound if it is not here.
func (s *Store) Get(id string) (*meshnodev1.Task, error) {
	var t *meshnodev1.Task
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		t, err = getTask(tx, id)
		return err
	})
	return t, err
}

func getTask(tx *bolt.Tx, id string) (*meshnodev1.Task, error) {
	raw := tx.Bucket(bucketTasks).Get([]byte(id))
	if raw == nil {
		return nil, notFound(id)
	}
	t := &meshnodev1.Task{}
	if err := proto.Unmarshal(raw, t); err != nil {
		return nil, errorf(codes.DataLoss, "task %s: its stored record does not decode: %v", id, err)
	}
	return t, nil
}

// Append records ev as task id's next event at now and returns it with
// its sequence number. A status event moves the task's state; after a
// final state nothing is taken (FailedPrecondition).
func (s *Store) Append(id string, ev *meshnodev1.TaskEvent, now time.Time) (*meshnodev1.TaskEvent, *meshnodev1.Task, error) {
	var out *meshnodev1.TaskEvent
	var t *meshnodev1.Task
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		if t, err = getTask(tx, id); err != nil {
			return err
		}
		if IsFinal(t.GetState()) {
			return errorf(codes.FailedPrecondition, "task %s already ended (%s); nothing may follow", id, t.GetState())
		}
		out, err = appendEvent(tx, t, ev, now)
		return err
	})
	return out, t, err
}

// appendEvent numbers ev after t's last event, writes it and t's updated
// record.
func appendEvent(tx *bolt.Tx, t *meshnodev1.Task, ev *meshnodev1.TaskEvent, now time.Time) (*meshnodev1.TaskEvent, error) {
	ev = proto.Clone(ev).(*meshnodev1.TaskEvent)
	ev.Seq = t.GetLastSeq() + 1
	ev.Time = timestamppb.New(now)
	log := tx.Bucket(bucketEvents).Bucket([]byte(t.GetId()))
	if log == nil {
		return nil, errorf(codes.DataLoss, "task %s has no event log", t.GetId())
	}
	raw, err := proto.Marshal(ev)
	if err != nil {
		return nil, err
	}
	if err := log.Put(seqKey(ev.Seq), raw); err != nil {
		return nil, err
	}
	t.LastSeq = ev.Seq
	t.UpdatedAt = ev.Time
	if st := ev.GetStatus(); st != nil {
		t.State, t.Message = st.GetState(), st.GetMessage()
	}
	rec, err := proto.Marshal(t)
	if err != nil {
		return nil, err
	}
	return ev, tx.Bucket(bucketTasks).Put([]byte(t.GetId()), rec)
}

func seqKey(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}

// Events returns up to limit events of task id after sequence after, in
// order. NotFound for an unknown task; OutOfRange when after is beyond its
// last event.
func (s *Store) Events(id string, after uint64, limit int) ([]*meshnodev1.TaskEvent, *meshnodev1.Task, error) {
	var out []*meshnodev1.TaskEvent
	var t *meshnodev1.Task
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		if t, err = getTask(tx, id); err != nil {
			return err
		}
		if after > t.GetLastSeq() {
			return errorf(codes.OutOfRange, "after_seq %d is beyond task %s's last event, %d", after, id, t.GetLastSeq())
		}
		c := tx.Bucket(bucketEvents).Bucket([]byte(id)).Cursor()
		for k, v := c.Seek(seqKey(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			ev := &meshnodev1.TaskEvent{}
			if err := proto.Unmarshal(v, ev); err != nil {
				return errorf(codes.DataLoss, "task %s: stored event %d does not decode: %v", id, binary.BigEndian.Uint64(k), err)
			}
			out = append(out, ev)
		}
		return nil
	})
	return out, t, err
}

// Unfinished returns the tasks not in a final state.
func (s *Store) Unfinished() ([]*meshnodev1.Task, error) {
	var out []*meshnodev1.Task
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTasks).ForEach(func(k, v []byte) error {
			t := &meshnodev1.Task{}
			if err := proto.Unmarshal(v, t); err != nil {
				return errorf(codes.DataLoss, "task %s: stored record does not decode: %v", k, err)
			}
			if !IsFinal(t.GetState()) {
				out = append(out, t)
			}
			return nil
		})
	})
	return out, err
}

// Sweep forgets the tasks that ended before cutoff, and the callers' keys
// of tasks whose deadline passed before it (by then their task ended too).
// It returns how many tasks went.
func (s *Store) Sweep(cutoff time.Time) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		var gone [][]byte
		err := tx.Bucket(bucketTasks).ForEach(func(k, v []byte) error {
			t := &meshnodev1.Task{}
			if proto.Unmarshal(v, t) == nil && IsFinal(t.GetState()) && t.GetUpdatedAt().AsTime().Before(cutoff) {
				gone = append(gone, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range gone {
			if err := deleteTask(tx, string(k)); err != nil {
				return err
			}
		}
		n = len(gone)
		var keys [][]byte
		tx.Bucket(bucketKeys).ForEach(func(k, v []byte) error {
			t := &meshnodev1.Task{}
			if proto.Unmarshal(v, t) == nil && t.GetDeadline().AsTime().Before(cutoff) {
				keys = append(keys, append([]byte(nil), k...))
			}
			return nil
		})
		for _, k := range keys {
			if err := tx.Bucket(bucketKeys).Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}

// Key returns what a caller's key on this node stands for: the task id,
// its digest and deadline (in a Task record that holds only those).
func (s *Store) Key(key string) (*meshnodev1.Task, bool, error) {
	var t *meshnodev1.Task
	err := s.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketKeys).Get([]byte(key))
		if raw == nil {
			return nil
		}
		t = &meshnodev1.Task{}
		return proto.Unmarshal(raw, t)
	})
	return t, t != nil, err
}

// PutKey remembers that a caller's key stands for task t.
func (s *Store) PutKey(key string, t *meshnodev1.Task) error {
	rec, err := proto.Marshal(&meshnodev1.Task{Id: t.GetId(), Digest: t.GetDigest(), Deadline: t.GetDeadline()})
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketKeys).Put([]byte(key), rec) })
}
