package api

import (
	"github.com/agentmesh/meshnode/consensus"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// watchResponses is what one store event becomes on the Watch stream: a
// snapshot is an upsert per agent and then SNAPSHOT_DONE.
func watchResponses(ev consensus.Event) []*meshnodev1.WatchResponse {
	one := func(t meshnodev1.WatchEventType, a *meshnodev1.Agent) *meshnodev1.WatchResponse {
		return &meshnodev1.WatchResponse{Type: t, Agent: a, Index: ev.Index}
	}
	switch ev.Kind {
	case consensus.EventSnapshot:
		out := make([]*meshnodev1.WatchResponse, 0, len(ev.Agents)+1)
		for _, a := range ev.Agents {
			out = append(out, one(meshnodev1.WatchEventType_WATCH_EVENT_TYPE_UPSERT, a))
		}
		return append(out, one(meshnodev1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT_DONE, nil))
	case consensus.EventPut:
		return []*meshnodev1.WatchResponse{one(meshnodev1.WatchEventType_WATCH_EVENT_TYPE_UPSERT, ev.Agent)}
	case consensus.EventDelete:
		return []*meshnodev1.WatchResponse{one(meshnodev1.WatchEventType_WATCH_EVENT_TYPE_DELETE, ev.Agent)}
	}
	return nil
}
