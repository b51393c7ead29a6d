package agent

import (
	"context"
	"fmt"
	"iter"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// WatchOption adjusts Watch.
type WatchOption func(*meshnodev1.WatchRequest)

// FromIndex starts the watch after the given registry index instead of with
// the current state.
func FromIndex(index uint64) WatchOption {
	return func(r *meshnodev1.WatchRequest) { r.FromIndex = index }
}

// Watch streams registry changes for agents offering capability ("" for
// all). Without FromIndex it starts with the current state: one UPSERT per
// agent, then a SNAPSHOT_DONE event, then changes as they commit.
//
// If the stream breaks (the node restarts), Watch reconnects with the
// client's backoff and resumes after the last index it delivered, so the
// caller sees every change once; a break during the initial state restarts
// that state (UPSERTs are idempotent). The sequence ends when ctx ends, when
// the loop body breaks, or after yielding an error the node will keep
// returning (such as InvalidArgument).
//
//	for ev, err := range c.Watch(ctx, "inventory.lookup") {
//		if err != nil { return err }
//		fmt.Println(ev.GetType(), ev.GetAgent().GetId())
//	}
func (c *Client) Watch(ctx context.Context, capability string, opts ...WatchOption) iter.Seq2[*meshnodev1.WatchResponse, error] {
	return func(yield func(*meshnodev1.WatchResponse, error) bool) {
		req := &meshnodev1.WatchRequest{Capability: capability}
		for _, o := range opts {
			o(req)
		}
		for failures := 0; ; {
			delivered, err := c.watchOnce(ctx, req, yield)
			if delivered {
				failures = 0
			}
			if err == nil || ctx.Err() != nil {
				return // the consumer stopped, or ctx ended
			}
			if permanent(err) {
				yield(nil, fmt.Errorf("agent: watch %q: %w", capability, err))
				return
			}
			failures++
			d := c.backoff.delay(failures, c.rand)
			c.log.Warn("meshnode watch broken; reconnecting",
				"capability", capability, "from_index", req.FromIndex, "attempt", failures, "retry_in", d, "err", err)
			if !sleepCtx(ctx, d) {
				return
			}
		}
	}
}

// watchOnce runs one Watch stream. It returns a nil error when the consumer
// stopped, and reports whether any event was delivered. It advances
// req.FromIndex so the next stream resumes where this one broke.
func (c *Client) watchOnce(ctx context.Context, req *meshnodev1.WatchRequest, yield func(*meshnodev1.WatchResponse, error) bool) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.registry.Watch(ctx, req)
	if err != nil {
		return false, err
	}
	// Before SNAPSHOT_DONE, event indexes are per-agent modify indexes, not a
	// position in the change log: resuming from one could skip changes.
	inSnapshot := req.FromIndex == 0
	delivered := false
	for {
		ev, err := stream.Recv()
		if err != nil {
			if isEOF(err) {
				err = fmt.Errorf("node ended the watch stream")
			}
			return delivered, err
		}
		delivered = true
		if ev.GetType() == meshnodev1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT_DONE {
			inSnapshot = false
		}
		if !inSnapshot && ev.GetIndex() > req.FromIndex {
			req.FromIndex = ev.GetIndex()
		}
		if !yield(ev, nil) {
			return delivered, nil
		}
	}
}

// sleepCtx waits for d or until ctx ends; it reports whether d elapsed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
