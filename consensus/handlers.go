package consensus

import (
	"context"
	"fmt"

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

// stampOrigin sets who a forwarded command comes from. A client's word is
// replaced by the name its certificate authenticated; a server relaying
// writes (a follower to the leader) is trusted to pass on the origin it
// stamped, and stamps its own name on commands that carry none.
func stampOrigin(c *meshnodev1.Command, peer string, fromServer bool) {
	if !fromServer || c.GetOrigin() == "" {
		c.Origin = peer
	}
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
		if err != nil {
			results[i] = &meshnodev1.CommandResult{Status: meshnodev1.CommandStatus_COMMAND_STATUS_INVALID, Message: err.Error()}
			continue
		}
		stampOrigin(c, peer, fromServer)
		// Refuse early what the state machine would refuse; it decides.
		if refusal := s.st.authorize(c); refusal != nil {
			results[i] = refusal
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
