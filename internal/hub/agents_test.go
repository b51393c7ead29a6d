package hub

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func TestOwnership(t *testing.T) {
	dead := Owner{PID: 300, UID: 1000}
	tests := []struct {
		name   string
		first  Owner // claims n1/a first
		second Owner // then claims it, or acts for it
		claim  error // the second claim's error kind
		code   codes.Code
	}{
		{"the owner claims again", alice, alice, nil, codes.OK},
		{"another live process is refused", alice, bob, ErrClaimed, codes.AlreadyExists},
		{"a dead owner's name may be taken over", dead, bob, nil, codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newTestHub(t, Config{})
			if err := h.Claim("n1/a", tt.first); err != nil {
				t.Fatal(err)
			}
			wantErr(t, "second claim", h.Claim("n1/a", tt.second), tt.claim, tt.code)
			owner := tt.second
			if tt.claim != nil {
				owner = tt.first
			}
			wantErr(t, "the owner acts", h.Owned("n1/a", owner), nil, codes.OK)
			if other := (Owner{PID: 999, UID: 5}); owner != other {
				wantErr(t, "another process acts", h.Owned("n1/a", other), ErrNotOwner, codes.PermissionDenied)
			}
			if got := h.OwnedBy(owner); got != "n1/a" {
				t.Errorf("OwnedBy(owner) = %q, want n1/a", got)
			}
		})
	}
}

func TestActingForUnknownAgents(t *testing.T) {
	h := newTestHub(t, Config{})
	wantErr(t, "Owned", h.Owned("n1/ghost", alice), ErrNotRegistered, codes.NotFound)
	err := h.Serve(context.Background(), alice, &meshnodev1.ServeRequest{AgentId: "ghost"}, func(*meshnodev1.ServeResponse) error { return nil })
	wantErr(t, "Serve", err, ErrNotRegistered, codes.NotFound)
	if got := h.OwnedBy(alice); got != "" {
		t.Errorf("OwnedBy = %q for a process that owns nothing", got)
	}
	if got, want := h.AgentID("a"), "n1/a"; got != want {
		t.Errorf("AgentID(a) = %q, want %q", got, want)
	}
	if got := h.AgentID("n2/a"); got != "n2/a" {
		t.Errorf("AgentID keeps ids: got %q", got)
	}
}

func TestOneServeStreamPerAgent(t *testing.T) {
	var changes []meshnodev1.AgentStatus
	statusSeen := make(chan struct{}, 4)
	h := newTestHub(t, Config{StatusChanged: func(id string, st meshnodev1.AgentStatus) {
		changes = append(changes, st)
		statusSeen <- struct{}{}
	}})
	a := serve(t, h, alice, "a", 3)
	<-statusSeen
	if !h.Serving(a.id) {
		t.Fatal("not serving after ServeReady")
	}
	if l, ok := h.Load(a.id); !ok || !l.Ready || l.Capacity != 0 {
		t.Errorf("load %+v, want ready without a limit (no Limit callback)", l)
	}

	err := h.Serve(context.Background(), alice, &meshnodev1.ServeRequest{AgentId: "a"}, func(*meshnodev1.ServeResponse) error { return nil })
	wantErr(t, "a second stream", err, ErrAlreadyServing, codes.AlreadyExists)
	err = h.Serve(context.Background(), bob, &meshnodev1.ServeRequest{AgentId: "a"}, func(*meshnodev1.ServeResponse) error { return nil })
	wantErr(t, "another process's stream", err, ErrNotOwner, codes.PermissionDenied)

	if err := a.stop(t); err != nil {
		t.Errorf("Serve after the agent left: %v, want nil", err)
	}
	<-statusSeen
	if h.Serving(a.id) {
		t.Error("still serving after the stream ended")
	}
	want := []meshnodev1.AgentStatus{meshnodev1.AgentStatus_AGENT_STATUS_READY, meshnodev1.AgentStatus_AGENT_STATUS_DISCONNECTED}
	if len(changes) != 2 || changes[0] != want[0] || changes[1] != want[1] {
		t.Errorf("status changes %v, want %v", changes, want)
	}
	// The slot is free again.
	b := serve(t, h, alice, "a", 0)
	b.stop(t)
}

func TestLimitComesFromConfig(t *testing.T) {
	h := newTestHub(t, Config{Limit: func(id string, req *meshnodev1.ServeRequest) int32 { return int32(req.GetMaxInFlight()) + 1 }})
	a := serve(t, h, alice, "a", 4)
	if l, _ := h.Load(a.id); l.Capacity != 5 {
		t.Errorf("capacity %d, want the Limit callback's 5", l.Capacity)
	}
	if snap := h.Snapshot(); len(snap) != 1 || snap[0].ID != a.id {
		t.Errorf("snapshot %+v", snap)
	}
}

func TestStreamsEnd(t *testing.T) {
	tests := []struct {
		name string
		end  func(h *Hub, done chan struct{}, id string)
		kind error
		code codes.Code
	}{
		{"removed", func(h *Hub, _ chan struct{}, id string) { h.Remove(id) }, ErrDeregistered, codes.Aborted},
		{"hub closed", func(h *Hub, _ chan struct{}, _ string) { h.Close() }, ErrShuttingDown, codes.Unavailable},
		{"node stopping", func(_ *Hub, done chan struct{}, _ string) { close(done) }, ErrShuttingDown, codes.Unavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done := make(chan struct{})
			h := newTestHub(t, Config{Done: done})
			a := serve(t, h, alice, "a", 0)
			tt.end(h, done, a.id)
			wantErr(t, "Serve", a.wait(t), tt.kind, tt.code)
		})
	}
}
