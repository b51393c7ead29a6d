package quorum

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/agentmesh/meshnode/internal/clock"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// CoordinatorConfig configures a Coordinator. Zero values mean the defaults
// of DefaultCoordinatorConfig, except ClusterID, which is required.
type CoordinatorConfig struct {
	// ClusterID is signed into every vote, so votes cannot be replayed
	// across clusters. Required.
	ClusterID string
	// Clock is the coordinator's time source. The deadline timer and the
	// "late vote" check both read it, so a fake clock (or testing/synctest
	// with the system clock) drives deadlines in tests. Nil means
	// clock.System.
	Clock clock.Clock
	// Logger; nil discards.
	Logger *slog.Logger
	// DefaultDeadline applies to proposals without a deadline. 0 means 30 s:
	// long enough for a model-backed agent to judge a payload.
	DefaultDeadline time.Duration
	// MaxDeadline caps how far ahead of creation a deadline may be, so a
	// proposal cannot pin voters and memory indefinitely. 0 means 10 min.
	MaxDeadline time.Duration
	// MaxPayloadBytes caps proposal payloads; the payload is stored in Raft
	// with the decision. 0 means 1 MiB.
	MaxPayloadBytes int
	// CommitTimeout bounds the Raft commit after voting ends. 0 means 10 s.
	CommitTimeout time.Duration
	// Policy returns the quorum policy in force for a kind (the cluster's
	// record, with the operator's signature). Nil means DefaultPolicy for
	// every kind: the coordinator never runs a proposal without a policy.
	Policy func(ctx context.Context, kind string) (*meshnodev1.QuorumPolicyRecord, error)
	// Finished hears every decision this coordinator reached, before its
	// commit (metrics); Refused every proposal refused before any vote
	// request, with why. Both optional; they must not block.
	Finished func(d *meshnodev1.Decision)
	Refused  func(err error)
}

// DefaultCoordinatorConfig returns the defaults, with no ClusterID.
func DefaultCoordinatorConfig() CoordinatorConfig {
	return CoordinatorConfig{
		Clock:           clock.System{},
		Logger:          slog.New(slog.DiscardHandler),
		DefaultDeadline: 30 * time.Second,
		MaxDeadline:     10 * time.Minute,
		MaxPayloadBytes: 1 << 20,
		CommitTimeout:   10 * time.Second,
	}
}

// withDefaults fills zero fields from DefaultCoordinatorConfig.
func (c CoordinatorConfig) withDefaults() CoordinatorConfig {
	d := DefaultCoordinatorConfig()
	if c.Clock == nil {
		c.Clock = d.Clock
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	if c.DefaultDeadline == 0 {
		c.DefaultDeadline = d.DefaultDeadline
	}
	if c.MaxDeadline == 0 {
		c.MaxDeadline = d.MaxDeadline
	}
	if c.MaxPayloadBytes == 0 {
		c.MaxPayloadBytes = d.MaxPayloadBytes
	}
	if c.CommitTimeout == 0 {
		c.CommitTimeout = d.CommitTimeout
	}
	if c.Finished == nil {
		c.Finished = func(*meshnodev1.Decision) {}
	}
	if c.Refused == nil {
		c.Refused = func(error) {}
	}
	if c.Policy == nil {
		c.Policy = func(context.Context, string) (*meshnodev1.QuorumPolicyRecord, error) {
			return &meshnodev1.QuorumPolicyRecord{Policy: DefaultPolicy()}, nil
		}
	}
	return c
}

// Validate checks the configuration after defaults are applied.
func (c CoordinatorConfig) Validate() error {
	c = c.withDefaults()
	switch {
	case c.ClusterID == "":
		return errors.New("quorum: CoordinatorConfig.ClusterID is required: votes sign it")
	case c.DefaultDeadline < 0 || c.MaxDeadline < 0 || c.CommitTimeout < 0 || c.MaxPayloadBytes < 0:
		return errors.New("quorum: CoordinatorConfig durations and MaxPayloadBytes must not be negative")
	case c.DefaultDeadline > c.MaxDeadline:
		return fmt.Errorf("quorum: CoordinatorConfig.DefaultDeadline (%s) exceeds MaxDeadline (%s)", c.DefaultDeadline, c.MaxDeadline)
	}
	return nil
}
