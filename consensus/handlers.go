package consensus

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func (s *Store) registerServerHandlers() {
	s.net.Handle(MethodApply, s.handleApply)
	s.net.Handle(MethodReadIndex, s.handleReadIndex)
	s.net.Handle(MethodStats, s.handleStats)
	s.net.Handle(MethodServers, s.handleServers)
	s.net.HandleStream(MethodSubscribe, s.handleSubscribe)
}

// secretCommand reports whether a command touches server-only data; only
// servers may send those. Server admissions are among them: a client that
// could write its own would make itself a Raft server.
func secretCommand(c *meshnodev1.Command) bool {
	switch c.GetOp().(type) {
	case *meshnodev1.Command_PutCaRecord, *meshnodev1.Command_UseToken, *meshnodev1.Command_AdmitServer:
		return true
	}
	return false
}

// clientScope refuses a client node's write to another node's own records.
// A node writes its node record (which carries the key its gossip is
// checked with) and its agents' records; another node's, written by a
// client, would let it take over that node's gossip or reroute calls to
// its agents. Admin writes that any node forwards for an operator
// (revocations, policy, flags, node removal) are not scoped here.
func clientScope(c *meshnodev1.Command, peer string) error {
	own := func(agentID string) bool { return strings.HasPrefix(agentID, peer+"/") }
	var ok bool
	switch op := c.GetOp().(type) {
	case *meshnodev1.Command_RegisterNode:
		ok = op.RegisterNode.GetNode().GetName() == peer
	case *meshnodev1.Command_RegisterAgent:
		a := op.RegisterAgent.GetAgent()
		ok = a.GetNode() == peer && own(a.GetId())
	case *meshnodev1.Command_DeregisterAgent:
		ok = own(op.DeregisterAgent.GetId())
	case *meshnodev1.Command_SetAgentStatus:
		ok = own(op.SetAgentStatus.GetId())
	default:
		return nil
	}
	if !ok {
		return fmt.Errorf("%w: node %s may write only its own node record and agents", ErrInvalidCommand, peer)
	}
	return nil
}

// handleApply serves forwarded writes. Invalid commands are refused here,
// before they reach the log. A follower forwards a client's writes to the
// leader, but never a server's (a server forwards to the leader itself, so
// this ends forwarding loops during elections).
func (s *Store) handleApply(ctx context.Context, peer string, b []byte) ([]byte, error) {
	if s.closed.Load() || s.srv == nil {
		return nil, toStatus(ErrClosed)
	}
	req := new(meshnodev1.ForwardApplyRequest)
	if err := proto.Unmarshal(b, req); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "decoding forwarded commands from %s: %v", peer, err)
	}
	if len(req.GetCommands()) > maxBatchCommands/2 {
		return nil, status.Errorf(codes.InvalidArgument, "%d commands in one request, limit %d", len(req.GetCommands()), maxBatchCommands/2)
	}
	fromServer := s.srv.isServer(peer)
	results := make([]*meshnodev1.CommandResult, len(req.GetCommands()))
	var valid []*meshnodev1.Command
	var pos []int
	for i, c := range req.GetCommands() {
		err := ValidateCommand(c)
		if err == nil && c.GetIdempotencyKey() == "" {
			err = fmt.Errorf("%w: forwarded command without an idempotency key", ErrInvalidCommand)
		}
		if err == nil && secretCommand(c) && !fromServer {
			err = fmt.Errorf("%w: only servers may write CA records, tokens and server admissions", ErrInvalidCommand)
		}
		if err == nil && s.cfg.ScopeClientWrites && !fromServer {
			err = clientScope(c, peer)
		}
		if err != nil {
			results[i] = &meshnodev1.CommandResult{Status: meshnodev1.CommandStatus_COMMAND_STATUS_INVALID, Message: err.Error()}
			continue
		}
		valid = append(valid, c)
		pos = append(pos, i)
	}
	if len(valid) > 0 {
		var out []*meshnodev1.CommandResult
		var err error
		switch {
		case s.srv.isLeader():
			out, err = s.srv.local.submit(ctx, valid)
		case !fromServer:
			out, err = s.fwd.submit(ctx, valid)
		default:
			err = ErrNotLeader
		}
		if err != nil {
			return nil, toStatus(err)
		}
		for j, i := range pos {
			results[i] = out[j]
		}
	}
	return proto.Marshal(&meshnodev1.ForwardApplyResponse{Results: results})
}

// handleReadIndex returns the index a linearizable read must wait for.
func (s *Store) handleReadIndex(ctx context.Context, peer string, _ []byte) ([]byte, error) {
	if s.closed.Load() || s.srv == nil {
		return nil, toStatus(ErrClosed)
	}
	var idx uint64
	var err error
	switch {
	case s.srv.isLeader():
		idx, err = s.srv.verifiedIndex(ctx)
	case !s.srv.isServer(peer):
		idx, err = s.remoteReadIndex(ctx)
	default:
		err = ErrNotLeader
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return proto.Marshal(&meshnodev1.ReadIndexResponse{Index: idx})
}

func (s *Store) handleStats(_ context.Context, _ string, _ []byte) ([]byte, error) {
	if s.closed.Load() || s.srv == nil {
		return nil, toStatus(ErrClosed)
	}
	r := s.srv.raft
	return proto.Marshal(&meshnodev1.ServerStatsResponse{
		Name: s.cfg.Name, LastIndex: r.LastIndex(), AppliedIndex: r.AppliedIndex(), Term: r.CurrentTerm(),
	})
}

// remoteReadIndex asks the leader (from a follower) or a server (from a
// client) for the read index.
func (s *Store) remoteReadIndex(ctx context.Context) (uint64, error) {
	addr, err := s.forwardTarget()
	if err != nil {
		return 0, err
	}
	var resp meshnodev1.ReadIndexResponse
	if err := call(ctx, s.net, addr, MethodReadIndex, &meshnodev1.ReadIndexRequest{}, &resp); err != nil {
		if retryable(err) && s.srv == nil {
			s.members.avoid(addr)
		}
		return 0, err
	}
	return resp.GetIndex(), nil
}
