package consensus

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// SnapshotVersion is the snapshot format this build writes and reads.
const SnapshotVersion = 1

// maxRecordSize bounds one length-delimited record when reading snapshots
// and change streams (peers are not trusted to be well-formed).
const maxRecordSize = 4 * maxBlobLen

// fsm adapts state to raft.FSM. Apply runs on raft's FSM goroutine only.
type fsm struct {
	st     *state
	logger *slog.Logger
}

var _ raft.FSM = (*fsm)(nil)

// applyResponse is what fsm.Apply returns through raft's ApplyFuture.
type applyResponse struct {
	results []*meshnodev1.CommandResult
	err     error
}

func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	b, err := decodeBatch(l.Data)
	if err != nil {
		// The leader validates before proposing, so this is an entry from a
		// newer version or a corrupt one. Every replica refuses it the same
		// way and the index still advances.
		f.logger.Error("refusing log entry", "index", l.Index, "err", err)
		f.st.applyEmpty(l.Index)
		return applyResponse{err: err}
	}
	return applyResponse{results: f.st.applyBatch(l.Index, b)}
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{v: f.st.fullView()}, nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	recs, idx, err := readSnapshot(rc)
	if err != nil {
		return fmt.Errorf("restoring snapshot: %w", err)
	}
	if err := f.st.replace(recs, idx); err != nil {
		return err
	}
	f.logger.Info("restored state from snapshot", "index", idx, "records", len(recs))
	return nil
}

type fsmSnapshot struct {
	v view
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeSnapshot(sink, s.v, true); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persisting snapshot at index %d: %w", s.v.index, err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

var deterministic = protodelim.MarshalOptions{MarshalOptions: proto.MarshalOptions{Deterministic: true}}

// writeSnapshot writes the view as a header and its records, in a
// deterministic order and encoding: equal states give equal bytes.
func writeSnapshot(w io.Writer, v view, withSecrets bool) error {
	var n uint64
	_ = records(v, withSecrets, func(*meshnodev1.RaftStateRecord) error { n++; return nil })
	bw := bufio.NewWriterSize(w, 64<<10)
	hdr := &meshnodev1.RaftSnapshotHeader{Version: SnapshotVersion, Index: v.index, Records: n}
	if _, err := deterministic.MarshalTo(bw, hdr); err != nil {
		return err
	}
	err := records(v, withSecrets, func(r *meshnodev1.RaftStateRecord) error {
		_, err := deterministic.MarshalTo(bw, r)
		return err
	})
	if err != nil {
		return err
	}
	return bw.Flush()
}

// readSnapshot parses a snapshot from untrusted bytes.
func readSnapshot(r io.Reader) ([]*meshnodev1.RaftStateRecord, uint64, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	opts := protodelim.UnmarshalOptions{MaxSize: maxRecordSize}
	hdr := new(meshnodev1.RaftSnapshotHeader)
	if err := opts.UnmarshalFrom(br, hdr); err != nil {
		return nil, 0, fmt.Errorf("reading snapshot header: %w", err)
	}
	if hdr.GetVersion() != SnapshotVersion {
		return nil, 0, fmt.Errorf("%w: snapshot version %d, this node reads %d", ErrUnknownVersion, hdr.GetVersion(), SnapshotVersion)
	}
	// Cap the preallocation: the count is untrusted.
	recs := make([]*meshnodev1.RaftStateRecord, 0, min(hdr.GetRecords(), 1<<16))
	for {
		rec := new(meshnodev1.RaftStateRecord)
		err := opts.UnmarshalFrom(br, rec)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, 0, fmt.Errorf("reading snapshot record %d: %w", len(recs), err)
		}
		if _, _, err := fromRecord(rec); err != nil {
			return nil, 0, fmt.Errorf("snapshot record %d: %w", len(recs), err)
		}
		recs = append(recs, rec)
	}
	if uint64(len(recs)) != hdr.GetRecords() {
		return nil, 0, fmt.Errorf("snapshot is truncated or padded: header says %d records, found %d", hdr.GetRecords(), len(recs))
	}
	return recs, hdr.GetIndex(), nil
}
