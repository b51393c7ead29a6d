package pki

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/protobuf/proto"
)

// CAMaterial is the CA's signing material as kept in Raft (servers only).
type CAMaterial = meshnodev1.CAMaterial

// Revocation is one revocation record as kept in Raft.
type Revocation = meshnodev1.Revocation

var (
	// ErrNotFound: the store holds no CA material (this node is a client, or
	// the cluster has not bootstrapped).
	ErrNotFound = errors.New("pki: no CA material in store")
	// ErrTokenUsed: the join token's id was already recorded as used.
	ErrTokenUsed = errors.New("pki: join token already used")
	// ErrNameTaken: a join claimed a node name that is registered, a
	// server or revoked, with a token not made for a re-join of it.
	ErrNameTaken = errors.New("pki: node name already claimed")
	// ErrTokenRefused: the cluster's record of issued tokens refuses the
	// use: no operator issued it, it was revoked, or its recorded terms
	// (bound name, role) differ from the join.
	ErrTokenRefused = errors.New("pki: join token refused by the cluster's record of issued tokens")
)

// TokenUse is one use of a join token: what UseToken records.
type TokenUse struct {
	// ID is the token's id.
	ID string
	// Expires is the token's expiry.
	Expires time.Time
	// Node is the name the joiner claims.
	Node string
	// Server admits Node as a Raft server.
	Server bool
	// Rejoin: the token was made for a re-join of exactly Node.
	Rejoin bool
}

// Store holds the CA's durable records. node backs it with consensus so that
// CA material, used tokens and revocations are cluster-wide; MemStore backs
// it in tests. Every method must be safe for concurrent use.
type Store interface {
	// LoadCA returns the CA material, or an error wrapping ErrNotFound.
	LoadCA(ctx context.Context) (*CAMaterial, error)
	// SaveCA replaces the CA material.
	SaveCA(ctx context.Context, m *CAMaterial) error
	// UseToken atomically records the token as used until it expires (after
	// which it may be forgotten: an expired token is refused anyway) and
	// claims its node name. It returns an error wrapping ErrTokenUsed if
	// the id was already recorded, ErrNameTaken if the name is registered,
	// a server or revoked and the use is not a re-join of it, and
	// ErrTokenExpired if the store's clock says the token has expired. A
	// server's admission is recorded with the use, and outlives it.
	UseToken(ctx context.Context, use TokenUse) error
	// Revoke records r (node name and/or serials) as revoked.
	Revoke(ctx context.Context, r *Revocation) error
	// IsServer reports, from local state and without blocking, whether node
	// is an admitted server: its renewed certificates keep the server role.
	IsServer(node string) bool
	// Revocations answers from local state, without blocking.
	Revocations
}

// MemStore is an in-memory Store for tests and for a process that wants the
// CA without consensus. The zero value is not usable; call NewMemStore.
type MemStore struct {
	mu      sync.RWMutex
	ca      []byte // marshalled CAMaterial: copies in and out, like Raft would
	used    map[string]time.Time
	servers map[string]bool
	claimed map[string]bool
	revs    *RevocationSet
}

var _ Store = (*MemStore)(nil)

// NewMemStore returns an empty store.
func NewMemStore() *MemStore {
	return &MemStore{used: map[string]time.Time{}, servers: map[string]bool{}, claimed: map[string]bool{}, revs: NewRevocationSet()}
}

// LoadCA implements Store.
func (s *MemStore) LoadCA(ctx context.Context) (*CAMaterial, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.ca == nil {
		return nil, ErrNotFound
	}
	m := &CAMaterial{}
	if err := proto.Unmarshal(s.ca, m); err != nil {
		return nil, fmt.Errorf("pki: decoding stored CA material: %w", err)
	}
	return m, nil
}

// SaveCA implements Store.
func (s *MemStore) SaveCA(ctx context.Context, m *CAMaterial) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("pki: encoding CA material: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ca = b
	return nil
}

// UseToken implements Store.
func (s *MemStore) UseToken(ctx context.Context, u TokenUse) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.used[u.ID]; ok {
		return fmt.Errorf("%w: id %s", ErrTokenUsed, u.ID)
	}
	if u.Node != "" {
		if s.revs.IsRevoked(nil, ID{Kind: KindNode, Node: u.Node}) {
			return fmt.Errorf("%w: %q is revoked", ErrNameTaken, u.Node)
		}
		if (s.claimed[u.Node] || s.servers[u.Node]) && !u.Rejoin {
			return fmt.Errorf("%w: %q already joined", ErrNameTaken, u.Node)
		}
		s.claimed[u.Node] = true
	}
	s.used[u.ID] = u.Expires
	if u.Server {
		s.servers[u.Node] = true
	}
	return nil
}

// IsServer implements Store.
func (s *MemStore) IsServer(node string) bool { return s.ServerAdmitted(node) }

// AdmitServer records node as an admitted server (the bootstrapping one).
func (s *MemStore) AdmitServer(node string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.servers[node] = true
	s.claimed[node] = true
}

// ServerAdmitted reports whether a token admitted node as a Raft server.
func (s *MemStore) ServerAdmitted(node string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.servers[node]
}

// Revoke implements Store.
func (s *MemStore) Revoke(ctx context.Context, r *Revocation) error {
	s.revs.Apply(r)
	return nil
}

// IsRevoked implements Revocations.
func (s *MemStore) IsRevoked(serial *big.Int, id ID) bool { return s.revs.IsRevoked(serial, id) }

// RevocationSet is a ready-made Revocations index that node can fill from
// Raft state (Apply each committed Revocation). It is safe for concurrent
// use and answers in O(1).
type RevocationSet struct {
	mu      sync.RWMutex
	nodes   map[string]bool
	serials map[string]bool
}

// NewRevocationSet returns an empty set.
func NewRevocationSet() *RevocationSet {
	return &RevocationSet{nodes: map[string]bool{}, serials: map[string]bool{}}
}

// Apply adds r to the set.
func (s *RevocationSet) Apply(r *Revocation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.GetNodeName() != "" {
		s.nodes[r.GetNodeName()] = true
	}
	for _, sn := range r.GetSerials() {
		s.serials[sn] = true
	}
}

// IsRevoked implements Revocations. A revoked node name also refuses the
// node's agent certificates, since they name the node.
func (s *RevocationSet) IsRevoked(serial *big.Int, id ID) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if id.Node != "" && s.nodes[id.Node] {
		return true
	}
	return serial != nil && s.serials[serial.String()]
}
