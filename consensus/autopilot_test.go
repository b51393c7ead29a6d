package consensus

import (
	"context"
	"errors"
	"testing"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func requireAdmission(c *Config) { c.RequireServerAdmission = true }

// roleOf is name's role as the leader reports it ("" if unknown).
func roleOf(l *testNode, name string) ServerRole {
	for _, s := range l.store.localServers() {
		if s.Name == name {
			return s.Role
		}
	}
	return ""
}

// inRaft reports whether name is in the leader's Raft configuration.
func inRaft(l *testNode, name string) bool {
	switch roleOf(l, name) {
	case RoleLeader, RoleVoter, RoleNonVoter:
		return true
	}
	return false
}

// A server that gossip reports alive joins Raft only once the state
// records its admission (a server token's use); revoking the node removes
// the admission. The bootstrapping server, in the configuration from the
// start, is recorded as admitted so that it can come back after a removal.
func TestAutopilotAddsOnlyAdmittedServers(t *testing.T) {
	c := newCluster(t, 1, 0, requireAdmission)
	l := c.leader()
	waitFor(t, 10*time.Second, "the bootstrapping server recorded as admitted", func() bool {
		ok, _ := l.store.ServerAdmitted(context.Background(), ReadOptions{}, "s0")
		return ok
	})
	cfg := fastConfig(t, "s1", true)
	requireAdmission(&cfg)
	c.add(cfg)
	c.gossip()
	// Ten autopilot steps with s1 alive and not admitted.
	time.Sleep(10 * cfg.AutopilotInterval)
	if r := roleOf(l, "s1"); r != RoleNotAdmitted {
		t.Fatalf("s1, alive and not admitted, has role %q; want %q", r, RoleNotAdmitted)
	}
	if ok, err := l.store.ServerAdmitted(context.Background(), ReadOptions{}, "s1"); ok || err != nil {
		t.Fatalf("ServerAdmitted(s1) before its token = %v, %v; want false, nil", ok, err)
	}

	issueSigned(context.Background(), t, l.store, "tok-s1", "s1", meshnodev1.JoinRole_JOIN_ROLE_SERVER, false)
	use := &meshnodev1.Command{Op: &meshnodev1.Command_UseToken{UseToken: &meshnodev1.UseTokenCommand{
		Id: "tok-s1", ExpiresUnixNano: uint64(time.Now().Add(time.Hour).UnixNano()), Node: "s1", ServerNode: "s1"}}}
	if _, _, err := l.store.Apply(context.Background(), use); err != nil {
		t.Fatalf("use token: %v", err)
	}
	waitFor(t, 20*time.Second, "s1 in Raft after its admission", func() bool {
		c.gossip()
		return inRaft(l, "s1")
	})

	if _, err := revokeSigned(context.Background(), t, l.store, "s1", nil, "test"); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	// s1 is still in the configuration, but revoked: it is not re-admitted.
	time.Sleep(5 * cfg.AutopilotInterval)
	if ok, err := l.store.ServerAdmitted(context.Background(), ReadOptions{}, "s1"); ok || err != nil {
		t.Fatalf("ServerAdmitted(s1) after revocation = %v, %v; want false, nil", ok, err)
	}
}

// Without RequireServerAdmission (the default) every live server is added.
func TestAutopilotWithoutAdmissionAddsEveryServer(t *testing.T) {
	c := newCluster(t, 2, 0, nil)
	if l := c.leader(); !inRaft(l, "s0") || !inRaft(l, "s1") {
		t.Fatalf("servers %v, want s0 and s1 in Raft", l.store.localServers())
	}
}

func TestServerAdmittedIsServerOnly(t *testing.T) {
	c := newCluster(t, 1, 1, nil)
	if _, err := c.client(0).store.ServerAdmitted(context.Background(), ReadOptions{}, "s0"); err != ErrServerOnly {
		t.Fatalf("client ServerAdmitted error = %v, want ErrServerOnly", err)
	}
}

// The bootstrapping server never used a token. Once the autopilot has
// removed it for a failure longer than DeadServerGrace, it must still be
// let back in when it returns: the leader recorded its admission while it
// was in the configuration.
func TestBootstrapServerComesBackAfterRemoval(t *testing.T) {
	tweak := func(c *Config) {
		requireAdmission(c)
		c.DeadServerGrace = 1500 * time.Millisecond
	}
	c := newCluster(t, 1, 0, tweak)
	for _, name := range []string{"s1", "s2"} {
		issueSigned(context.Background(), t, c.leader().store, "tok-"+name, name, meshnodev1.JoinRole_JOIN_ROLE_SERVER, false)
		mustApply(t, c.leader().store, &meshnodev1.Command{Op: &meshnodev1.Command_UseToken{UseToken: &meshnodev1.UseTokenCommand{
			Id: "tok-" + name, ExpiresUnixNano: uint64(time.Now().Add(time.Hour).UnixNano()), Node: name, ServerNode: name}}})
		cfg := fastConfig(t, name, true)
		tweak(&cfg)
		c.add(cfg)
	}
	c.waitVoters(3, 3)
	s0 := c.byName("s0")
	c.kill(s0)
	waitFor(t, 20*time.Second, "s0 removed from Raft", func() bool {
		l := c.leaderNow()
		return l != nil && l != s0 && !inRaft(l, "s0")
	})
	c.restart(s0)
	waitFor(t, 30*time.Second, "s0 back in Raft", func() bool {
		c.gossip()
		l := c.leaderNow()
		return l != nil && inRaft(l, "s0")
	})
}

// A client node may write only its own node record and its own agents;
// another node's would let it take over that node's gossip key or reroute
// calls to its agents.
func TestClientWritesAreScopedToTheClient(t *testing.T) {
	c := newCluster(t, 1, 1, nil)
	cl := c.client(0).store
	node := func(name string) *meshnodev1.Command {
		return &meshnodev1.Command{Op: &meshnodev1.Command_RegisterNode{RegisterNode: &meshnodev1.RegisterNodeCommand{Node: &meshnodev1.NodeRecord{Name: name, Address: "127.0.0.1:1"}}}}
	}
	agent := func(id, onNode string) *meshnodev1.Command {
		return &meshnodev1.Command{Op: &meshnodev1.Command_RegisterAgent{RegisterAgent: &meshnodev1.RegisterAgentCommand{Agent: &meshnodev1.Agent{Id: id, Name: id, Node: onNode}}}}
	}
	status := func(id string) *meshnodev1.Command {
		return &meshnodev1.Command{Op: &meshnodev1.Command_SetAgentStatus{SetAgentStatus: &meshnodev1.SetAgentStatusCommand{Id: id, Status: meshnodev1.AgentStatus_AGENT_STATUS_READY}}}
	}
	deregister := func(id string) *meshnodev1.Command {
		return &meshnodev1.Command{Op: &meshnodev1.Command_DeregisterAgent{DeregisterAgent: &meshnodev1.DeregisterAgentCommand{Id: id}}}
	}
	// The server's own writes are not scoped.
	mustApply(t, c.leader().store, agent("s0/a", "s0"))
	for name, cmd := range map[string]*meshnodev1.Command{
		"another node's record":         node("s0"),
		"an agent of another node":      agent("s0/b", "s0"),
		"its agent id on another node":  agent("c0/b", "s0"),
		"another node's agent id on it": agent("s0/b", "c0"),
		"another node's agent's status": status("s0/a"),
		"deregistering another's agent": deregister("s0/a"),
	} {
		if _, _, err := cl.Apply(context.Background(), cmd); !errors.Is(err, ErrPermissionDenied) {
			t.Errorf("client writing %s: %v, want ErrPermissionDenied", name, err)
		}
	}
	for _, cmd := range []*meshnodev1.Command{node("c0"), agent("c0/a", "c0"), status("c0/a"), deregister("c0/a")} {
		if _, _, err := cl.Apply(context.Background(), cmd); err != nil {
			t.Errorf("client writing its own %T: %v", cmd.GetOp(), err)
		}
	}
	if a, _, err := c.leader().store.Agent(context.Background(), ReadOptions{}, "s0/a"); err != nil || a.GetNode() != "s0" {
		t.Fatalf("s0/a after the refused writes: %v, %v", a, err)
	}
}
