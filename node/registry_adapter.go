package node

import (
	"context"
	"time"

	"github.com/agentmesh/meshnode/consensus"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// consensusRegistry adapts consensus.Store to the agent API's registryStore.
type consensusRegistry struct{ s *consensus.Store }

var _ registryStore = consensusRegistry{}

func readOpts(c meshnodev1.Consistency) consensus.ReadOptions {
	if c == meshnodev1.Consistency_CONSISTENCY_CONSISTENT {
		return consensus.ReadOptions{Consistency: consensus.Consistent}
	}
	return consensus.ReadOptions{Consistency: consensus.Stale}
}

func (r consensusRegistry) Apply(ctx context.Context, cmd *meshnodev1.Command) (uint64, *meshnodev1.CommandResult, error) {
	ctx, cancel := boundWrite(ctx)
	defer cancel()
	return r.s.Apply(ctx, cmd)
}

// writeTimeout bounds a write made for an API caller: on the minority side
// of a partition there is no leader, and the caller should hear so in
// seconds, not at its own (possibly long) deadline.
const writeTimeout = 5 * time.Second

func boundWrite(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, writeTimeout)
}

func (r consensusRegistry) ListAgents(ctx context.Context, c meshnodev1.Consistency, capability, node string) ([]*meshnodev1.Agent, uint64, error) {
	return r.s.Agents(ctx, readOpts(c), consensus.AgentFilter{Capability: capability, Node: node})
}

func (r consensusRegistry) GetAgent(id string) (*meshnodev1.Agent, bool) {
	a, _, err := r.s.Agent(context.Background(), consensus.ReadOptions{}, id)
	return a, err == nil
}

func (r consensusRegistry) WatchAgents(ctx context.Context, from uint64, capability string) (<-chan *meshnodev1.WatchResponse, error) {
	in := r.s.Watch(ctx, from, consensus.WatchFilter{Capability: capability})
	out := make(chan *meshnodev1.WatchResponse, 16)
	go func() {
		defer close(out)
		send := func(w *meshnodev1.WatchResponse) bool {
			select {
			case out <- w:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for ev := range in {
			switch ev.Kind {
			case consensus.EventSnapshot:
				for _, a := range ev.Agents {
					if !send(&meshnodev1.WatchResponse{Type: meshnodev1.WatchEventType_WATCH_EVENT_TYPE_UPSERT, Agent: a, Index: ev.Index}) {
						return
					}
				}
				if !send(&meshnodev1.WatchResponse{Type: meshnodev1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT_DONE, Index: ev.Index}) {
					return
				}
			case consensus.EventPut:
				if !send(&meshnodev1.WatchResponse{Type: meshnodev1.WatchEventType_WATCH_EVENT_TYPE_UPSERT, Agent: ev.Agent, Index: ev.Index}) {
					return
				}
			case consensus.EventDelete:
				if !send(&meshnodev1.WatchResponse{Type: meshnodev1.WatchEventType_WATCH_EVENT_TYPE_DELETE, Agent: ev.Agent, Index: ev.Index}) {
					return
				}
			}
		}
	}()
	return out, nil
}
