package consensus

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Consistency selects how fresh a read must be.
type Consistency int

const (
	// Stale reads the local state (replica on clients) and returns its
	// index. The default: fast and always available, possibly behind.
	Stale Consistency = iota
	// Consistent confirms leadership with a quorum first and waits until the
	// local state holds every write acknowledged before the read:
	// linearizable.
	Consistent
)

// ReadOptions qualifies a read.
type ReadOptions struct {
	Consistency Consistency
}

// AgentFilter narrows Agents. Empty fields match everything.
type AgentFilter struct {
	Capability string
	Node       string
}

// view returns a read transaction that satisfies opts and its index.
func (s *Store) view(ctx context.Context, opts ReadOptions) (*memdb.Txn, uint64, error) {
	if s.closed.Load() {
		return nil, 0, ErrClosed
	}
	if opts.Consistency == Consistent {
		if err := s.waitConsistent(ctx); err != nil {
			return nil, 0, fmt.Errorf("consistent read: %w", err)
		}
	}
	if s.rep != nil && !s.rep.ready.Load() {
		return nil, 0, ErrNotReady
	}
	txn, idx := s.st.read()
	return txn, idx, nil
}

// waitConsistent implements the read-index protocol: learn from the leader
// (after it confirmed its leadership) the index every acknowledged write is
// at or below, then wait until the local state reaches it.
func (s *Store) waitConsistent(ctx context.Context) error {
	for {
		var idx uint64
		var err error
		if s.srv != nil && s.srv.isLeader() {
			idx, err = s.srv.verifiedIndex(ctx)
		} else {
			idx, err = s.remoteReadIndex(ctx)
		}
		if err == nil {
			return s.waitIndex(ctx, idx)
		}
		if !retryable(err) || ctx.Err() != nil {
			if retryable(err) {
				return fmt.Errorf("%w (%v)", ErrNoLeader, err)
			}
			return fromStatus(err)
		}
		if err := s.sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// waitIndex blocks until the local state has applied idx.
func (s *Store) waitIndex(ctx context.Context, idx uint64) error {
	for {
		_, _, notify := s.st.log.position()
		if s.st.index() >= idx && (s.rep == nil || s.rep.ready.Load()) {
			return nil
		}
		select {
		case <-notify:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.ctx.Done():
			return ErrClosed
		}
	}
}

// Agents lists agents matching filter, sorted by id.
func (s *Store) Agents(ctx context.Context, opts ReadOptions, f AgentFilter) ([]*meshnodev1.Agent, uint64, error) {
	txn, idx, err := s.view(ctx, opts)
	if err != nil {
		return nil, 0, err
	}
	var it memdb.ResultIterator
	switch {
	case f.Capability != "":
		it, err = txn.Get(tableAgents, "capability", f.Capability)
	case f.Node != "":
		it, err = txn.Get(tableAgents, "node", f.Node)
	default:
		it, err = txn.Get(tableAgents, "id")
	}
	if err != nil {
		return nil, 0, fmt.Errorf("listing agents: %w", err)
	}
	var out []*meshnodev1.Agent
	for obj := it.Next(); obj != nil; obj = it.Next() {
		a := obj.(*meshnodev1.Agent)
		if f.Node != "" && a.GetNode() != f.Node {
			continue
		}
		out = append(out, proto.CloneOf(a))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetId() < out[j].GetId() })
	return out, idx, nil
}

// Agent returns one agent, or ErrNotFound.
func (s *Store) Agent(ctx context.Context, opts ReadOptions, id string) (*meshnodev1.Agent, uint64, error) {
	return getOne[*meshnodev1.Agent](s, ctx, opts, tableAgents, "agent", id)
}

// Nodes lists node records sorted by name.
func (s *Store) Nodes(ctx context.Context, opts ReadOptions) ([]*meshnodev1.NodeRecord, uint64, error) {
	return list[*meshnodev1.NodeRecord](s, ctx, opts, tableNodes, "id", nil)
}

// Node returns one node record, or ErrNotFound.
func (s *Store) Node(ctx context.Context, opts ReadOptions, name string) (*meshnodev1.NodeRecord, uint64, error) {
	return getOne[*meshnodev1.NodeRecord](s, ctx, opts, tableNodes, "node", name)
}

// Policy returns the policy for key (a capability or "*"), or ErrNotFound.
func (s *Store) Policy(ctx context.Context, opts ReadOptions, key string) (*meshnodev1.PolicyRecord, uint64, error) {
	return getOne[*meshnodev1.PolicyRecord](s, ctx, opts, tablePolicies, "policy", key)
}

// Policies lists every policy sorted by key.
func (s *Store) Policies(ctx context.Context, opts ReadOptions) ([]*meshnodev1.PolicyRecord, uint64, error) {
	return list[*meshnodev1.PolicyRecord](s, ctx, opts, tablePolicies, "id", nil)
}

// Decision returns a quorum decision, or ErrNotFound.
func (s *Store) Decision(ctx context.Context, opts ReadOptions, id string) (*meshnodev1.DecisionRecord, uint64, error) {
	return getOne[*meshnodev1.DecisionRecord](s, ctx, opts, tableDecisions, "decision", id)
}

// CARecord returns the value of a CA record. Servers only: clients get
// ErrServerOnly.
func (s *Store) CARecord(ctx context.Context, opts ReadOptions, key string) ([]byte, uint64, error) {
	if s.srv == nil {
		return nil, 0, ErrServerOnly
	}
	r, idx, err := getOne[*meshnodev1.CARecord](s, ctx, opts, tableCA, "CA record", key)
	if err != nil {
		return nil, 0, err
	}
	return r.GetValue(), idx, nil
}

// ServerAdmitted reports whether node joined with a token that admits a
// Raft server. Servers only: clients get ErrServerOnly.
func (s *Store) ServerAdmitted(ctx context.Context, opts ReadOptions, node string) (bool, error) {
	if s.srv == nil {
		return false, ErrServerOnly
	}
	_, _, err := getOne[*meshnodev1.AdmittedServerRecord](s, ctx, opts, tableServers, "admitted server", node)
	return existsResult(err)
}

// IsRevoked reports whether the certificate with this serial is revoked.
func (s *Store) IsRevoked(ctx context.Context, opts ReadOptions, serial string) (bool, error) {
	_, _, err := getOne[*meshnodev1.RevocationRecord](s, ctx, opts, tableRevocations, "revocation", serialRevocationKey(serial))
	return existsResult(err)
}

// IsNodeRevoked reports whether the whole node was revoked.
func (s *Store) IsNodeRevoked(ctx context.Context, opts ReadOptions, node string) (bool, error) {
	_, _, err := getOne[*meshnodev1.RevocationRecord](s, ctx, opts, tableRevocations, "revocation", nodeRevocationKey(node))
	return existsResult(err)
}

// Revocations lists every revocation record.
func (s *Store) Revocations(ctx context.Context, opts ReadOptions) ([]*meshnodev1.RevocationRecord, uint64, error) {
	return list[*meshnodev1.RevocationRecord](s, ctx, opts, tableRevocations, "id", nil)
}

// existsResult turns a lookup's error into "is there such a record":
// ErrNotFound is no, any other error is passed on.
func existsResult(err error) (bool, error) {
	if err == nil {
		return true, nil
	}
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return false, err
}

func getOne[T proto.Message](s *Store, ctx context.Context, opts ReadOptions, table, what, id string) (T, uint64, error) {
	var zero T
	txn, idx, err := s.view(ctx, opts)
	if err != nil {
		return zero, 0, err
	}
	raw, err := txn.First(table, "id", id)
	if err != nil {
		return zero, 0, fmt.Errorf("reading %s %q: %w", what, id, err)
	}
	if raw == nil {
		return zero, idx, fmt.Errorf("%w: %s %q", ErrNotFound, what, id)
	}
	return proto.CloneOf(raw.(T)), idx, nil
}

func list[T proto.Message](s *Store, ctx context.Context, opts ReadOptions, table, index string, args []any) ([]T, uint64, error) {
	txn, idx, err := s.view(ctx, opts)
	if err != nil {
		return nil, 0, err
	}
	it, err := txn.Get(table, index, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("listing %s: %w", table, err)
	}
	var out []T
	for obj := it.Next(); obj != nil; obj = it.Next() {
		out = append(out, proto.CloneOf(obj.(T)))
	}
	return out, idx, nil
}
