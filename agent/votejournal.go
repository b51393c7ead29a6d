package agent

import (
	"crypto/sha256"
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
// written (fsync'd) before it is sent.

// voteRetention is how long a journalled vote is kept. A proposal decides
// once, at most 10 minutes after it was made; this leaves a wide margin.
const voteRetention = 30 * 24 * time.Hour

// maxVoteFileBytes bounds what the journal reads back.
const maxVoteFileBytes = 64 << 10

type voteJournal struct {
	dir string // "" keeps votes in memory only

	mu    sync.Mutex
	votes map[string]*meshnodev1.Vote
}

// newVoteJournal opens the journal in dir (created 0700), dropping votes
// older than voteRetention.
func newVoteJournal(dir string) (*voteJournal, error) {
	j := &voteJournal{dir: dir, votes: map[string]*meshnodev1.Vote{}}
	if dir == "" {
		return j, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("agent: vote journal %s: %w", dir, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("agent: vote journal %s: %w", dir, err)
	}
	for _, e := range entries {
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > voteRetention {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	return j, nil
}

func voteFileName(proposalID string) string {
	sum := sha256.Sum256([]byte(proposalID))
	return hex.EncodeToString(sum[:]) + ".vote"
}

// get returns the vote already signed for proposalID, or nil.
func (j *voteJournal) get(proposalID string) (*meshnodev1.Vote, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.getLocked(proposalID)
}

func (j *voteJournal) getLocked(proposalID string) (*meshnodev1.Vote, error) {
	if v, ok := j.votes[proposalID]; ok {
		return v, nil
	}
	if j.dir == "" {
		return nil, nil
	}
	path := filepath.Join(j.dir, voteFileName(proposalID))
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("agent: read journalled vote %s: %w", path, err)
	}
	if len(data) > maxVoteFileBytes {
		return nil, fmt.Errorf("agent: journalled vote %s is %d bytes", path, len(data))
	}
	v := &meshnodev1.Vote{}
	if err := proto.Unmarshal(data, v); err != nil || v.GetProposalId() != proposalID {
		return nil, fmt.Errorf("agent: journalled vote %s is damaged (%v); move it aside only if you know this agent never voted on %q", path, err, proposalID)
	}
	j.votes[proposalID] = v
	return v, nil
}

// record keeps v as the vote for its proposal unless one is already kept,
// and returns the one that stands: a concurrent second signing loses.
func (j *voteJournal) record(v *meshnodev1.Vote) (*meshnodev1.Vote, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if had, err := j.getLocked(v.GetProposalId()); had != nil || err != nil {
		return had, err
	}
	if j.dir != "" {
		data, err := proto.Marshal(v)
		if err != nil {
			return nil, err
		}
		if err := atomicfile.Write(filepath.Join(j.dir, voteFileName(v.GetProposalId())), data, 0o600); err != nil {
			return nil, fmt.Errorf("agent: journal the vote on %q before sending it: %w", v.GetProposalId(), err)
		}
	}
	j.votes[v.GetProposalId()] = v
	return v, nil
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
