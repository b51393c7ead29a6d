package consensus

import (
	"strings"
	"time"

	"bytes"
	"errors"
	"fmt"
	"github.com/hashicorp/raft"
	"math/rand/v2"
	"testing"
	"testing/quick"

	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

const testNow = int64(1_800_000_000_000_000_000)

// testOrigin is the server the state-level tests write as.
const testOrigin = "srv"

// testState is an empty state in which testOrigin is a server (it is in
// the Raft configuration), so stamped commands are judged as a server's.
func testState(changeLogSize int) *state {
	st := newState(changeLogSize)
	st.applyConfiguration(0, raft.Configuration{Servers: []raft.Server{{ID: testOrigin, Address: "127.0.0.1:1"}}})
	return st
}

// stamp marks commands without an origin as testOrigin's.
func stamp(cmds []*meshnodev1.Command) []*meshnodev1.Command {
	for _, c := range cmds {
		if c.GetOrigin() == "" {
			c.Origin = testOrigin
		}
	}
	return cmds
}

func applyOne(t *testing.T, st *state, index uint64, c *meshnodev1.Command) *meshnodev1.CommandResult {
	t.Helper()
	c.Version = CommandVersion
	return st.applyBatch(index, &meshnodev1.CommandBatch{Version: CommandVersion, TimeUnixNano: testNow, Commands: stamp([]*meshnodev1.Command{c})})[0]
}

func TestApplyCommands(t *testing.T) {
	st := testState(64)
	ops := newTestOperators(t)
	ok := meshnodev1.CommandStatus_COMMAND_STATUS_OK
	steps := []struct {
		name string
		cmd  *meshnodev1.Command
		want meshnodev1.CommandStatus
	}{
		{"register", agentCmd("n1/a", "x"), ok},
		{"flag", &meshnodev1.Command{Op: &meshnodev1.Command_FlagAgent{FlagAgent: &meshnodev1.FlagAgentCommand{Id: "n1/a", Reason: "equivocated"}}}, ok},
		{"re-register keeps flag", agentCmd("n1/a", "x"), ok},
		{"status of missing agent", &meshnodev1.Command{Op: &meshnodev1.Command_SetAgentStatus{SetAgentStatus: &meshnodev1.SetAgentStatusCommand{Id: "nope", Status: 2}}}, meshnodev1.CommandStatus_COMMAND_STATUS_NOT_FOUND},
		{"bad status", &meshnodev1.Command{Op: &meshnodev1.Command_SetAgentStatus{SetAgentStatus: &meshnodev1.SetAgentStatusCommand{Id: "n1/a", Status: 99}}}, meshnodev1.CommandStatus_COMMAND_STATUS_INVALID},
		{"use an unissued token", &meshnodev1.Command{Op: &meshnodev1.Command_UseToken{UseToken: &meshnodev1.UseTokenCommand{Id: "t1", ExpiresUnixNano: uint64(testNow) + 1e9}}}, meshnodev1.CommandStatus_COMMAND_STATUS_PERMISSION_DENIED},
		{"trust bundle", &meshnodev1.Command{Op: &meshnodev1.Command_PutTrustBundle{PutTrustBundle: &meshnodev1.PutTrustBundleCommand{Bundle: ops.bundle}}}, ok},
		{"issue token", issueCommand(t, ops, "t1", time.Unix(0, testNow)), ok},
		{"use token", &meshnodev1.Command{Op: &meshnodev1.Command_UseToken{UseToken: &meshnodev1.UseTokenCommand{Id: "t1", ExpiresUnixNano: uint64(testNow) + 1e9}}}, ok},
		{"reuse token", &meshnodev1.Command{Op: &meshnodev1.Command_UseToken{UseToken: &meshnodev1.UseTokenCommand{Id: "t1", ExpiresUnixNano: uint64(testNow) + 1e9}}}, meshnodev1.CommandStatus_COMMAND_STATUS_TOKEN_USED},
		{"decide", &meshnodev1.Command{Op: &meshnodev1.Command_PutDecision{PutDecision: &meshnodev1.PutDecisionCommand{Decision: &meshnodev1.DecisionRecord{Id: "p1", Status: "approved", Decision: []byte("A")}}}}, ok},
		{"decide again", &meshnodev1.Command{Op: &meshnodev1.Command_PutDecision{PutDecision: &meshnodev1.PutDecisionCommand{Decision: &meshnodev1.DecisionRecord{Id: "p1", Status: "rejected", Decision: []byte("B")}}}}, ok},
		{"no op", &meshnodev1.Command{}, meshnodev1.CommandStatus_COMMAND_STATUS_INVALID},
	}
	for i, s := range steps {
		res := applyOne(t, st, uint64(i+1), s.cmd)
		if res.GetStatus() != s.want {
			t.Fatalf("%s: status %v (%s), want %v", s.name, res.GetStatus(), res.GetMessage(), s.want)
		}
		if s.name == "re-register keeps flag" && (!res.GetAgent().GetFlagged() || res.GetAgent().GetCreateIndex() != 1) {
			t.Fatalf("re-register: %v", res.GetAgent())
		}
		if s.name == "decide again" && (!res.GetDecisionExisted() || string(res.GetDecision().GetDecision()) != "A") {
			t.Fatalf("a decided proposal was overwritten: %v", res)
		}
	}
	if st.index() != uint64(len(steps)) {
		t.Fatalf("index %d, want %d", st.index(), len(steps))
	}
	// A used id outlives its token's expiry by the skew allowance, so a CA
	// whose clock runs behind cannot accept it again in between.
	soon := &meshnodev1.CommandBatch{Version: CommandVersion, TimeUnixNano: testNow + 2e9, Commands: stamp([]*meshnodev1.Command{
		{Version: CommandVersion, Op: &meshnodev1.Command_UseToken{UseToken: &meshnodev1.UseTokenCommand{Id: "t1", ExpiresUnixNano: uint64(testNow) + 3e9}}}})}
	if r := st.applyBatch(99, soon)[0]; r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_TOKEN_USED {
		t.Fatalf("a used token within the skew allowance: %v", r)
	}
	// After that the used id is forgotten, and the issued token's record
	// still refuses it.
	later := &meshnodev1.CommandBatch{Version: CommandVersion, TimeUnixNano: testNow + 2e9 + int64(tokenSkewNanos), Commands: stamp([]*meshnodev1.Command{
		{Version: CommandVersion, Op: &meshnodev1.Command_UseToken{UseToken: &meshnodev1.UseTokenCommand{Id: "t1", ExpiresUnixNano: uint64(testNow) + 3e9 + tokenSkewNanos}}}})}
	if r := st.applyBatch(100, later)[0]; r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_TOKEN_USED || !strings.Contains(r.GetMessage(), "already used by") {
		t.Fatalf("a used token after its used id was collected: %v", r)
	}
	txn, _ := st.read()
	if first[*meshnodev1.UsedTokenRecord](txn, tableTokens, "t1") != nil {
		t.Fatal("the used id outlived its expiry and skew")
	}
}

func TestIdempotencyKeyAppliesOnce(t *testing.T) {
	st := testState(64)
	c := agentCmd("n1/a", "x")
	c.IdempotencyKey = "k1"
	first := applyOne(t, st, 1, proto.CloneOf(c))
	second := applyOne(t, st, 2, proto.CloneOf(c))
	if !second.GetDuplicate() || second.GetIndex() != 1 || second.GetAgent().GetModifyIndex() != first.GetAgent().GetModifyIndex() {
		t.Fatalf("retry: first %v, second %v", first, second)
	}
	txn, _ := st.read()
	a, _ := txn.First(tableAgents, "id", "n1/a")
	if a.(*meshnodev1.Agent).GetModifyIndex() != 1 {
		t.Fatalf("retry re-applied: modify index %d", a.(*meshnodev1.Agent).GetModifyIndex())
	}
}

func TestValidateRefusesUnknownVersion(t *testing.T) {
	c := agentCmd("n1/a", "x")
	c.Version = 2
	if err := ValidateCommand(c); !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("version 2: %v", err)
	}
	b, _ := proto.Marshal(&meshnodev1.CommandBatch{Version: 7})
	if _, err := decodeBatch(b); !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("batch version 7: %v", err)
	}
}

// randomCommands builds a random but valid workload over a small key space,
// so that updates, deletes and conflicts happen.
func randomCommands(r *rand.Rand, n int) []*meshnodev1.Command {
	id := func(p string) string { return fmt.Sprintf("%s%d", p, r.IntN(8)) }
	var out []*meshnodev1.Command
	for range n {
		c := &meshnodev1.Command{Version: CommandVersion}
		switch r.IntN(13) {
		case 0:
			c.Op = &meshnodev1.Command_RegisterNode{RegisterNode: &meshnodev1.RegisterNodeCommand{Node: &meshnodev1.NodeRecord{Name: id("n"), Address: "127.0.0.1:1", PublicKey: []byte{byte(r.IntN(256))}}}}
		case 1:
			c.Op = &meshnodev1.Command_DeregisterNode{DeregisterNode: &meshnodev1.DeregisterNodeCommand{Name: id("n")}}
		case 2, 3:
			c.Op = &meshnodev1.Command_RegisterAgent{RegisterAgent: &meshnodev1.RegisterAgentCommand{Agent: &meshnodev1.Agent{
				Id: id("a"), Node: id("n"), Roles: []string{"voter"}, Capabilities: []*meshnodev1.Capability{
					{Name: id("cap."), Cost: float64(r.IntN(100)), Attributes: map[string]string{"region": id("r"), "gpu": id("g")}}}}}}
		case 4:
			c.Op = &meshnodev1.Command_DeregisterAgent{DeregisterAgent: &meshnodev1.DeregisterAgentCommand{Id: id("a")}}
		case 5:
			c.Op = &meshnodev1.Command_FlagAgent{FlagAgent: &meshnodev1.FlagAgentCommand{Id: id("a"), Reason: "x"}}
		case 6:
			c.Op = &meshnodev1.Command_PutPolicy{PutPolicy: &meshnodev1.PutPolicyCommand{Policy: &meshnodev1.PolicyRecord{Key: id("p"), Policy: []byte(id("v"))}}}
		case 7:
			c.Op = &meshnodev1.Command_PutCaRecord{PutCaRecord: &meshnodev1.PutCARecordCommand{Record: &meshnodev1.CARecord{Key: id("ca"), Value: []byte(id("v"))}}}
		case 8:
			use := &meshnodev1.UseTokenCommand{Id: id("t"), ExpiresUnixNano: uint64(testNow) + uint64(r.IntN(5))*1e9}
			if r.IntN(2) == 0 {
				use.ServerNode = id("n")
			}
			c.Op = &meshnodev1.Command_UseToken{UseToken: use}
		case 9:
			rv := &meshnodev1.RevokeCommand{Node: id("n")}
			if r.IntN(2) == 0 {
				rv.Serials = []string{id("s")}
			}
			c.Op = &meshnodev1.Command_Revoke{Revoke: rv}
		case 10:
			c.Op = &meshnodev1.Command_PutDecision{PutDecision: &meshnodev1.PutDecisionCommand{Decision: &meshnodev1.DecisionRecord{Id: id("d"), Status: []string{"pending", "approved"}[r.IntN(2)]}}}
		case 11:
			c.Op = &meshnodev1.Command_AdmitServer{AdmitServer: &meshnodev1.AdmitServerCommand{Node: id("n")}}
		default:
			c.Op = &meshnodev1.Command_SetAgentStatus{SetAgentStatus: &meshnodev1.SetAgentStatusCommand{Id: id("a"), Status: meshnodev1.AgentStatus(1 + r.IntN(4))}}
		}
		if r.IntN(2) == 0 {
			c.IdempotencyKey = id("k")
		}
		out = append(out, c)
	}
	return out
}

// TestSnapshotRoundTrip is the property: for any sequence of commands,
// snapshot -> restore -> snapshot gives identical bytes, identical records
// and identical future behaviour.
func TestSnapshotRoundTrip(t *testing.T) {
	prop := func(seed uint64, n uint8) bool {
		r := rand.New(rand.NewPCG(seed, 1))
		st := testState(64)
		cmds := randomCommands(r, int(n))
		for i := 0; i < len(cmds); i += 3 {
			b := &meshnodev1.CommandBatch{Version: CommandVersion, TimeUnixNano: testNow + int64(i)*1e8, Commands: stamp(cmds[i:min(i+3, len(cmds))])}
			st.applyBatch(uint64(i+1), b)
		}
		var snap1 bytes.Buffer
		v := st.fullView()
		idx := v.index
		if err := writeSnapshot(&snap1, v, true); err != nil {
			t.Log(err)
			return false
		}
		recs, idx2, err := readSnapshot(bytes.NewReader(snap1.Bytes()))
		if err != nil || idx2 != idx {
			t.Log(err, idx, idx2)
			return false
		}
		st2 := testState(64)
		if err := st2.replace(recs, idx2); err != nil {
			t.Log(err)
			return false
		}
		var snap2 bytes.Buffer
		if err := writeSnapshot(&snap2, st2.fullView(), true); err != nil || !bytes.Equal(snap1.Bytes(), snap2.Bytes()) {
			t.Log("snapshots differ", err)
			return false
		}
		// Same future: apply more commands to both and compare results.
		more := randomCommands(r, 20)
		b := &meshnodev1.CommandBatch{Version: CommandVersion, TimeUnixNano: testNow + 3e9, Commands: stamp(more)}
		r1 := st.applyBatch(idx+10, proto.CloneOf(b))
		r2 := st2.applyBatch(idx+10, proto.CloneOf(b))
		for i := range r1 {
			if !proto.Equal(r1[i], r2[i]) {
				t.Logf("result %d differs: %v vs %v", i, r1[i], r2[i])
				return false
			}
		}
		return st.dedup.len() == st2.dedup.len()
	}
	if err := quick.Check(prop, &quick.Config{MaxCount: 200}); err != nil {
		t.Fatal(err)
	}
}

func TestChangeLogResume(t *testing.T) {
	l := newChangeLog(16)
	for i := uint64(1); i <= 40; i++ {
		l.append(&meshnodev1.RaftStateEvent{Index: i * 2})
	}
	if _, _, _, ok := l.since(2, 0); ok {
		t.Fatal("resumed from an index the log no longer holds")
	}
	evs, _, _, ok := l.since(70, 0)
	if !ok || len(evs) != 5 || evs[0].GetIndex() != 72 || evs[0].GetPrevIndex() != 70 {
		t.Fatalf("since(70): ok=%v %v", ok, evs)
	}
	if _, _, _, ok := l.since(71, 0); ok {
		t.Fatal("resumed from an index that is not in the chain")
	}
}
