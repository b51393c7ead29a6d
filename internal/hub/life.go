package hub

import (
	"context"
	"time"
)

// deregisterTimeout bounds one Deregister callback of the reaper.
const deregisterTimeout = 10 * time.Second

// run is the hub's background loop: adopt the agents registered here before
// a restart, then reap every ReapInterval until ctx ends.
func (h *Hub) run(ctx context.Context) {
	if !h.adopt(ctx) {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-h.clock.After(h.cfg.ReapInterval):
			h.reap(ctx, now)
		}
	}
}

// adopt gives agents registered here before a restart, which have no stream
// now, the grace period to reconnect; the reaper deregisters those that do
// not. A client's replica may need a moment to synchronise, so listing is
// retried. It reports false if ctx ended first.
func (h *Hub) adopt(ctx context.Context) bool {
	if h.cfg.Registered == nil {
		return true
	}
	for {
		ids, err := h.cfg.Registered(ctx)
		if err == nil {
			for _, id := range ids {
				h.Adopt(id)
			}
			return true
		}
		h.log.Debug("listing this node's agents for adoption failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-h.clock.After(h.cfg.AdoptRetry):
		}
	}
}

// reap deregisters agents whose stream has been gone for longer than the
// grace period, and forgets vote requests kept past their time.
func (h *Hub) reap(ctx context.Context, now time.Time) {
	h.votes.sweep(now)
	h.calls.sweep(now)
	if h.cfg.Deregister == nil {
		return
	}
	for _, id := range h.expired(now) {
		h.log.Info("deregistering agent: its Serve stream did not come back", "agent", id, "grace", h.cfg.DisconnectGrace)
		dctx, cancel := context.WithTimeout(ctx, deregisterTimeout)
		err := h.cfg.Deregister(dctx, id)
		cancel()
		if err != nil {
			h.log.Warn("deregister after grace period failed; will retry", "agent", id, "err", err)
			continue
		}
		h.forgetLost(id)
	}
}

// forgetLost forgets a reaped agent unless it came back meanwhile.
func (h *Hub) forgetLost(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if a, ok := h.agents[id]; ok && a.serve == nil {
		delete(h.agents, id)
	}
}
