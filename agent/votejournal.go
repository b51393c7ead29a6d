package agent

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/agentmesh/meshnode/internal/atomicfile"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// One vote per proposal. A voter backed by a model may answer the same
// question differently when asked again; if it signed a fresh vote each
// time, whoever asks (any node, any round, any electorate) could keep
// asking until enough approvals came in, and the last certificate would
// verify. So the SDK signs at most one vote per proposal id and answers
// every later request for that id, whatever its round or terms, with that
// same vote, which counts for nothing but the terms it was signed for.
// With a state directory the journal survives restarts: each vote is
// appended and fsync'd before it is sent.

// voteRetention is how long a journalled vote is kept. A proposal decides
// once, at most 10 minutes after it was made; this leaves a wide margin.
const voteRetention = 30 * 24 * time.Hour

// maxVoteRecord bounds one journal record (a vote is well under 4 KiB).
const maxVoteRecord = 64 << 10

// journalFile is the append-only log in the journal directory: records of
// [8-byte unix nanoseconds][4-byte length][Vote], each fsync'd before the
// vote is sent (one fsync per vote: the vote is on the decision's path).
const journalFile = "votes.log"

type voteJournal struct {
	mu    sync.Mutex
	f     *os.File // nil keeps votes in memory only
	votes map[string]*meshnodev1.Vote
}

// newVoteJournal opens the journal in dir (created 0700) and loads it,
// dropping votes older than voteRetention (the file is compacted then). A
// torn last record, from a crash mid-append, is dropped: its vote was
// never sent.
func newVoteJournal(dir string) (*voteJournal, error) {
	j := &voteJournal{votes: map[string]*meshnodev1.Vote{}}
	if dir == "" {
		return j, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("agent: vote journal %s: %w", dir, err)
	}
	path := filepath.Join(dir, journalFile)
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("agent: vote journal %s: %w", path, err)
	}
	kept, dropped := []byte(nil), false
	cutoff := time.Now().Add(-voteRetention).UnixNano()
	for len(data) >= 12 {
		at, n := int64(binary.BigEndian.Uint64(data)), int(binary.BigEndian.Uint32(data[8:]))
		if n > maxVoteRecord || len(data) < 12+n {
			break // torn tail
		}
		rec := data[:12+n]
		v := &meshnodev1.Vote{}
		if err := proto.Unmarshal(rec[12:], v); err != nil {
			return nil, fmt.Errorf("agent: vote journal %s is damaged (%v); move it aside only if you know which proposals this agent voted on", path, err)
		}
		data = data[12+n:]
		if at < cutoff {
			dropped = true
			continue
		}
		j.votes[v.GetProposalId()] = v
		kept = append(kept, rec...)
	}
	if dropped || len(data) > 0 {
		if err := atomicfile.Write(path, kept, 0o600); err != nil {
			return nil, fmt.Errorf("agent: compact vote journal %s: %w", path, err)
		}
	}
	if j.f, err = os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
		return nil, fmt.Errorf("agent: vote journal %s: %w", path, err)
	}
	return j, nil
}

// get returns the vote already signed for proposalID, or nil.
func (j *voteJournal) get(proposalID string) (*meshnodev1.Vote, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.votes[proposalID], nil
}

// record keeps v as the vote for its proposal unless one is already kept,
// and returns the one that stands: a concurrent second signing loses.
func (j *voteJournal) record(v *meshnodev1.Vote) (*meshnodev1.Vote, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if had := j.votes[v.GetProposalId()]; had != nil {
		return had, nil
	}
	if j.f != nil {
		b, err := proto.Marshal(v)
		if err != nil {
			return nil, err
		}
		rec := binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano()))
		rec = binary.BigEndian.AppendUint32(rec, uint32(len(b)))
		if _, err := j.f.Write(append(rec, b...)); err != nil {
			return nil, fmt.Errorf("agent: journal the vote on %q before sending it: %w", v.GetProposalId(), err)
		}
		if err := j.f.Sync(); err != nil {
			return nil, fmt.Errorf("agent: journal the vote on %q before sending it: %w", v.GetProposalId(), err)
		}
	}
	j.votes[v.GetProposalId()] = v
	return v, nil
}

// close releases the journal file.
func (j *voteJournal) close() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f != nil {
		j.f.Close()
		j.f = nil
	}
}

// statePaths returns the key file and the vote journal directory ("" for
// both when the agent is ephemeral).
func (a *Agent) statePaths(socket string) (keyFile, journalDir string, err error) {
	if a.Ephemeral {
		return a.KeyFile, "", nil
	}
	dir := a.StateDir
	if dir == "" {
		base := os.Getenv("XDG_STATE_HOME")
		if base == "" {
			home, herr := os.UserHomeDir()
			if herr != nil {
				return "", "", fmt.Errorf("agent: no state directory for the vote key and journal (%v): set Agent.StateDir, or Agent.Ephemeral for a throwaway voter", herr)
			}
			base = filepath.Join(home, ".local", "state")
		}
		abs, _ := filepath.Abs(socket)
		sum := sha256.Sum256([]byte(abs))
		dir = filepath.Join(base, "meshnode", "agents", a.name+"-"+hex.EncodeToString(sum[:4]))
	}
	keyFile = a.KeyFile
	if keyFile == "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", "", fmt.Errorf("agent: state directory %s: %w", dir, err)
		}
		keyFile = filepath.Join(dir, "vote.key")
	}
	return keyFile, filepath.Join(dir, "votes"), nil
}
