package consensus

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// ServerRole is a server's place in the Raft configuration.
type ServerRole string

// Server roles as `meshnode members` shows them.
const (
	RoleLeader   ServerRole = "leader"
	RoleVoter    ServerRole = "voter"
	RoleNonVoter ServerRole = "non-voter"
	RoleNone     ServerRole = "none" // known from gossip, not (yet) in Raft
	// RoleNotAdmitted: gossip reports a server that no server token
	// admitted, so the autopilot will not add it (RequireServerAdmission).
	RoleNotAdmitted ServerRole = "not-admitted"
)

// ServerInfo describes one server.
type ServerInfo struct {
	Name    string
	Address string
	Role    ServerRole
	// Status is gossip's view; Healthy is the autopilot's (alive, answering
	// and caught up), as last judged by the leader.
	Status  MemberStatus
	Healthy bool
	// LastIndex is the server's last log index as the leader last saw it.
	LastIndex uint64
}

type health struct {
	healthy   bool
	since     time.Time
	lastIndex uint64
}

// autopilotState is owned by the autopilot goroutine; mu guards it for
// Servers().
type autopilotState struct {
	mu     sync.Mutex
	health map[string]*health
	// refused remembers servers refused for lack of admission, so the
	// refusal is logged once, not every step.
	refused map[string]bool
}

func (srv *server) autopilotLoop() {
	defer srv.wg.Done()
	t := time.NewTicker(srv.s.cfg.AutopilotInterval)
	defer t.Stop()
	for {
		select {
		case <-srv.s.ctx.Done():
			return
		case <-t.C:
			if srv.isLeader() {
				srv.autopilotStep(srv.s.ctx)
			}
		}
	}
}

// admitted reports whether a server not yet in the configuration may be
// added. Without a recorded admission a node that joined as a client and
// restarted with --server would become a Raft member, and could lead.
func (srv *server) admitted(ctx context.Context, name string) bool {
	s := srv.s
	if !s.cfg.RequireServerAdmission {
		return true
	}
	ok, err := s.ServerAdmitted(ctx, ReadOptions{}, name)
	if ok {
		return true
	}
	if srv.ap.refused == nil {
		srv.ap.refused = map[string]bool{}
	}
	if !srv.ap.refused[name] {
		srv.ap.refused[name] = true
		s.logger.Warn("autopilot: not adding a server that was not admitted as one: it joined with a client token; create a server token (meshnode token create --server), remove the node's data directory and join it again",
			"server", name, "err", err)
	}
	return false
}

// admitConfigured records servers in the configuration that have no
// admission (the bootstrapping server; servers that joined before
// admissions were recorded) as admitted, so that one the autopilot removes
// after a long failure is added again when it comes back. Revoked nodes
// are left out.
func (srv *server) admitConfigured(ctx context.Context, conf raft.Configuration) {
	s := srv.s
	if !s.cfg.RequireServerAdmission {
		return
	}
	for _, sv := range conf.Servers {
		name := string(sv.ID)
		if ok, err := s.ServerAdmitted(ctx, ReadOptions{}, name); ok || err != nil {
			continue
		}
		if revoked, err := s.IsNodeRevoked(ctx, ReadOptions{}, name); revoked || err != nil {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, s.cfg.ApplyTimeout)
		_, err := s.AdmitServer(actx, name)
		cancel()
		s.logger.Info("autopilot: recorded the admission of a server already in the Raft configuration", "server", name, "err", err)
	}
}

// quorum is the majority of n voters.
func quorum(n int) int { return n/2 + 1 }

// autopilotStep makes at most one membership change. Rules, in order:
// add alive servers as non-voters; remove servers that left or stayed
// failed past the grace period (if quorum stays safe); promote a stable
// standby while voters are below target or a voter has failed; demote
// failed, then surplus, voters. No step leaves fewer healthy voters than a
// quorum of the resulting configuration.
func (srv *server) autopilotStep(ctx context.Context) {
	s := srv.s
	f := srv.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	conf, cidx := f.Configuration(), f.Index()
	now := s.cfg.Clock.Now()
	hs := srv.judge(ctx, conf, now)
	inConf := map[string]raft.Server{}
	for _, sv := range conf.Servers {
		inConf[string(sv.ID)] = sv
	}
	timeout := s.cfg.ApplyTimeout
	srv.admitConfigured(ctx, conf)
	// 1. New servers, or known ones at a new address.
	for _, m := range s.members.snapshot() {
		sv, ok := inConf[m.name]
		if m.status != MemberAlive || m.addr == "" || (ok && string(sv.Address) == m.addr) {
			continue
		}
		if !ok && !srv.admitted(ctx, m.name) {
			continue
		}
		var err error
		if ok && sv.Suffrage == raft.Voter {
			err = srv.raft.AddVoter(raft.ServerID(m.name), raft.ServerAddress(m.addr), cidx, timeout).Error()
		} else {
			err = srv.raft.AddNonvoter(raft.ServerID(m.name), raft.ServerAddress(m.addr), cidx, timeout).Error()
		}
		s.logger.Info("autopilot: adding server", "server", m.name, "address", m.addr, "err", err)
		return
	}
	voters, healthyVoters := 0, 0
	for _, sv := range conf.Servers {
		if sv.Suffrage == raft.Voter {
			voters++
			if hs[string(sv.ID)].healthy {
				healthyVoters++
			}
		}
	}
	// 2. Dead servers.
	for _, sv := range conf.Servers {
		name := string(sv.ID)
		m, _ := s.members.get(name)
		gone := m.status == MemberLeft || (m.status == MemberFailed && now.Sub(m.since) >= s.cfg.DeadServerGrace)
		if !gone || name == s.cfg.Name {
			continue
		}
		if sv.Suffrage == raft.Voter && healthyVoters < quorum(voters-1) {
			s.logger.Warn("autopilot: not removing dead voter: it would leave no quorum", "server", name)
			continue
		}
		err := srv.raft.RemoveServer(sv.ID, cidx, timeout).Error()
		s.logger.Info("autopilot: removing dead server", "server", name, "status", m.status, "err", err)
		return
	}
	// 3. Promote a stable standby.
	var standby, failedVoter, healthyExtra string
	var names []string
	for name := range inConf {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		sv, h := inConf[name], hs[name]
		stable := now.Sub(h.since) >= s.cfg.ServerStabilization
		switch {
		case sv.Suffrage != raft.Voter && h.healthy && stable && standby == "":
			standby = name
		case sv.Suffrage == raft.Voter && !h.healthy && stable && failedVoter == "":
			failedVoter = name
		case sv.Suffrage == raft.Voter && h.healthy && name != s.cfg.Name:
			healthyExtra = name
		}
	}
	if standby != "" && (voters < s.cfg.Voters || failedVoter != "") {
		err := srv.raft.AddVoter(raft.ServerID(standby), inConf[standby].Address, cidx, timeout).Error()
		s.logger.Info("autopilot: promoting server to voter", "server", standby, "replacing", failedVoter, "err", err)
		return
	}
	// 4. Too many voters: demote a failed one first, else a healthy one.
	if voters > s.cfg.Voters {
		victim, after := failedVoter, healthyVoters
		if victim == "" {
			victim, after = healthyExtra, healthyVoters-1
		}
		if victim != "" && after >= quorum(voters-1) {
			err := srv.raft.DemoteVoter(raft.ServerID(victim), cidx, timeout).Error()
			s.logger.Info("autopilot: demoting voter", "server", victim, "healthy", hs[victim].healthy, "err", err)
		}
	}
}

// judge computes each configured server's health: alive in gossip (or not
// known to gossip), answering, and within MaxTrailingLogs of the leader.
func (srv *server) judge(ctx context.Context, conf raft.Configuration, now time.Time) map[string]health {
	s := srv.s
	leaderLast := srv.raft.LastIndex()
	type res struct {
		name string
		h    health
	}
	out := make(chan res, len(conf.Servers))
	for _, sv := range conf.Servers {
		go func(sv raft.Server) {
			name := string(sv.ID)
			if name == s.cfg.Name {
				out <- res{name, health{healthy: true, lastIndex: leaderLast}}
				return
			}
			if m, ok := s.members.get(name); ok && m.status != MemberAlive {
				out <- res{name, health{}}
				return
			}
			cctx, cancel := context.WithTimeout(ctx, s.cfg.AutopilotInterval)
			defer cancel()
			var st meshnodev1.ServerStatsResponse
			err := call(cctx, s.net, string(sv.Address), MethodStats, &meshnodev1.ServerStatsRequest{}, &st)
			ok := err == nil && st.GetName() == name && leaderLast-min(leaderLast, st.GetLastIndex()) <= s.cfg.MaxTrailingLogs
			out <- res{name, health{healthy: ok, lastIndex: st.GetLastIndex()}}
		}(sv)
	}
	srv.ap.mu.Lock()
	defer srv.ap.mu.Unlock()
	prev := srv.ap.health
	srv.ap.health = map[string]*health{}
	result := map[string]health{}
	for range conf.Servers {
		r := <-out
		h := r.h
		h.since = now
		if p, ok := prev[r.name]; ok && p.healthy == h.healthy {
			h.since = p.since
		}
		srv.ap.health[r.name] = &h
		result[r.name] = h
	}
	return result
}

// Servers lists the servers with their Raft roles and health (for
// `meshnode members`). A server answers from its own view (health is
// judged by the leader's autopilot); a client asks a server, and falls back
// to what gossip told it (roles RoleNone) if no server answers.
func (s *Store) Servers(ctx context.Context) ([]ServerInfo, error) {
	if s.srv != nil {
		return s.localServers(), nil
	}
	addr := s.members.pick()
	if addr == "" {
		return s.localServers(), fmt.Errorf("listing servers: %w", ErrNoLeader)
	}
	var resp meshnodev1.RaftServersResponse
	if err := call(ctx, s.net, addr, MethodServers, &meshnodev1.RaftServersRequest{}, &resp); err != nil {
		return s.localServers(), fmt.Errorf("listing servers via %s: %w", addr, err)
	}
	out := make([]ServerInfo, 0, len(resp.GetServers()))
	for _, e := range resp.GetServers() {
		out = append(out, ServerInfo{Name: e.GetName(), Address: e.GetAddress(), Role: ServerRole(e.GetRole()),
			Status: parseMemberStatus(e.GetStatus()), Healthy: e.GetHealthy(), LastIndex: e.GetLastIndex()})
	}
	return out, nil
}

func (s *Store) handleServers(context.Context, string, []byte) ([]byte, error) {
	if s.closed.Load() || s.srv == nil {
		return nil, toStatus(ErrClosed)
	}
	var resp meshnodev1.RaftServersResponse
	for _, v := range s.localServers() {
		resp.Servers = append(resp.Servers, &meshnodev1.RaftServerEntry{Name: v.Name, Address: v.Address, Role: string(v.Role),
			Status: v.Status.String(), Healthy: v.Healthy, LastIndex: v.LastIndex})
	}
	return proto.Marshal(&resp)
}

func parseMemberStatus(s string) MemberStatus {
	for _, m := range []MemberStatus{MemberAlive, MemberFailed, MemberLeft} {
		if m.String() == s {
			return m
		}
	}
	return MemberUnknown
}

func (s *Store) localServers() []ServerInfo {
	byName := map[string]*ServerInfo{}
	for _, m := range s.members.snapshot() {
		byName[m.name] = &ServerInfo{Name: m.name, Address: m.addr, Role: RoleNone, Status: m.status, Healthy: m.status == MemberAlive}
	}
	if s.srv != nil {
		if f := s.srv.raft.GetConfiguration(); f.Error() == nil {
			_, leaderID := s.srv.raft.LeaderWithID()
			s.srv.ap.mu.Lock()
			for _, sv := range f.Configuration().Servers {
				name := string(sv.ID)
				info := byName[name]
				if info == nil {
					info = &ServerInfo{Name: name, Address: string(sv.Address)}
					byName[name] = info
				}
				info.Role = RoleNonVoter
				if sv.Suffrage == raft.Voter {
					info.Role = RoleVoter
				}
				if sv.ID == leaderID {
					info.Role = RoleLeader
				}
				if h, ok := s.srv.ap.health[name]; ok {
					info.Healthy, info.LastIndex = h.healthy, h.lastIndex
				}
			}
			s.srv.ap.mu.Unlock()
		}
		if s.cfg.RequireServerAdmission {
			for _, info := range byName {
				if info.Role != RoleNone {
					continue
				}
				if ok, err := s.ServerAdmitted(context.Background(), ReadOptions{}, info.Name); !ok && err == nil {
					info.Role = RoleNotAdmitted
				}
			}
		}
	}
	out := make([]ServerInfo, 0, len(byName))
	for _, v := range byName {
		out = append(out, *v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Term is this server's current Raft term; zero on a client.
func (s *Store) Term() uint64 {
	if s.srv == nil {
		return 0
	}
	return s.srv.raft.CurrentTerm()
}
