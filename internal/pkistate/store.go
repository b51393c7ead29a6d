package pkistate

import (
	"context"
	"errors"
	"fmt"
	"math/big"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/pki"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/protobuf/proto"
)

// caRecordKey is the CA record holding the cluster's CA material.
const caRecordKey = "ca/material"

// Store backs the CA's durable records with Raft, so one-time tokens and
// revocations are cluster-wide and whichever server leads can sign.
type Store struct {
	store *consensus.Store
}

var _ pki.Store = (*Store)(nil)

// New returns the pki.Store over st.
func New(st *consensus.Store) *Store { return &Store{store: st} }

func (s *Store) LoadCA(ctx context.Context) (*pki.CAMaterial, error) {
	b, _, err := s.store.CARecord(ctx, consensus.ReadOptions{}, caRecordKey)
	if errors.Is(err, consensus.ErrNotFound) || errors.Is(err, consensus.ErrServerOnly) {
		return nil, fmt.Errorf("%w: %v", pki.ErrNotFound, err)
	}
	if err != nil {
		return nil, err
	}
	m := &meshnodev1.CAMaterial{}
	if err := proto.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("decode CA material from the registry: %w", err)
	}
	return m, nil
}

func (s *Store) SaveCA(ctx context.Context, m *pki.CAMaterial) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	if _, err := s.store.PutCARecord(ctx, caRecordKey, b); err != nil {
		return fmt.Errorf("store CA material: %w", err)
	}
	return nil
}

func (s *Store) UseToken(ctx context.Context, u pki.TokenUse) error {
	// The FSM refuses a used token with TOKEN_USED, and within the dedup
	// window a reuse gets the first result marked duplicate; UseToken
	// reports both as consensus.ErrTokenUsed. pki must see its own
	// sentinels, or the CA answers Internal and the joiner retries forever.
	_, err := s.store.UseToken(ctx, consensus.TokenUse{ID: u.ID, Expires: u.Expires, Node: u.Node, Server: u.Server, Rejoin: u.Rejoin})
	switch {
	case errors.Is(err, consensus.ErrTokenUsed):
		return fmt.Errorf("%w: token %s", pki.ErrTokenUsed, u.ID)
	case errors.Is(err, consensus.ErrNameTaken):
		return fmt.Errorf("%w: %v", pki.ErrNameTaken, err)
	case errors.Is(err, consensus.ErrTokenExpired):
		return fmt.Errorf("%w: %v", pki.ErrTokenExpired, err)
	case errors.Is(err, consensus.ErrPermissionDenied):
		return fmt.Errorf("%w: %v", pki.ErrTokenRefused, err)
	case err != nil:
		return fmt.Errorf("use token %s: %w", u.ID, err)
	}
	return nil
}

// IsServer answers from the local replica: it must not block the CA.
func (s *Store) IsServer(node string) bool {
	ok, err := s.store.ServerAdmitted(context.Background(), consensus.ReadOptions{}, node)
	return ok && err == nil
}

// Revoke writes a raw revocation, which the state machine refuses from
// every origin: revocations are operator-signed admin commands
// (PKIService/RevokeNode). It is here for the pki.Store interface (the CA
// in tests and tools without consensus).
func (s *Store) Revoke(ctx context.Context, r *pki.Revocation) error {
	data, err := proto.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := s.store.Revoke(ctx, r.GetNodeName(), r.GetSerials(), r.GetReason(), data); err != nil {
		return fmt.Errorf("revoke %s: %w", r.GetNodeName(), err)
	}
	return nil
}

// IsRevoked answers from the local replica; it runs on every handshake and
// must not block on the network.
func (s *Store) IsRevoked(serial *big.Int, id pki.ID) bool {
	ctx := context.Background()
	if id.Node != "" {
		if ok, _ := s.store.IsNodeRevoked(ctx, consensus.ReadOptions{}, id.Node); ok {
			return true
		}
	}
	if serial != nil {
		if ok, _ := s.store.IsRevoked(ctx, consensus.ReadOptions{}, serial.String()); ok {
			return true
		}
	}
	return false
}
