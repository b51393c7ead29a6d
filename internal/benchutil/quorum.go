package benchutil

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// benchSeq makes the ids of benchmark proposals and registrations unique.
var benchSeq atomic.Int64

// RaftVoters counts the Raft voters, the leader included, that a node
// reports. Servers join as non-voters and are promoted once stable: a
// benchmark that measures before they are would time a one-voter log.
func RaftVoters(ctx context.Context, c meshnodev1.NodeServiceClient) (int, error) {
	resp, err := c.Members(ctx, &meshnodev1.MembersRequest{})
	if err != nil {
		return 0, err
	}
	voters := 0
	for _, m := range resp.GetMembers() {
		if r := m.GetRaftRole(); r == "voter" || r == "leader" {
			voters++
		}
	}
	return voters, nil
}

// Decide proposes a new decision to the given voters under rule and waits
// for it. Anything but a decided outcome is an error.
func Decide(ctx context.Context, q meshnodev1.QuorumServiceClient, voters []string, rule *meshnodev1.QuorumRule) error {
	resp, err := q.Propose(ctx, &meshnodev1.ProposeRequest{Wait: true, Proposal: &meshnodev1.Proposal{
		Id: fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), benchSeq.Add(1)), Kind: "bench", Payload: []byte("payload"),
		Selection: &meshnodev1.VoterSelection{AgentIds: voters},
		Rule:      rule,
		Deadline:  timestamppb.New(time.Now().Add(10 * time.Second)),
	}})
	if err == nil && resp.GetDecision().GetStatus() != meshnodev1.DecisionStatus_DECISION_STATUS_DECIDED {
		err = fmt.Errorf("decision %s: %s", resp.GetDecision().GetStatus(), resp.GetDecision().GetDetail())
	}
	return err
}

// RegistryWrite makes one plain registry write through Raft (registering
// an agent with a new capability): the commit every decision also pays for.
func RegistryWrite(ctx context.Context, reg meshnodev1.RegistryServiceClient) error {
	_, err := reg.Register(ctx, &meshnodev1.RegisterRequest{Name: "writer", Capabilities: []*meshnodev1.Capability{{Name: fmt.Sprintf("w%d", benchSeq.Add(1))}}})
	return err
}
