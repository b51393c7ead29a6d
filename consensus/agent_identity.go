package consensus

import (
	"context"
	"encoding/hex"
	"fmt"

	"github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Agent identity in the state: who owns a name, and every vote key an
// agent ever held. Both are judged at apply, so a node cannot hand a name
// to another uid or a key to another agent whatever it sends.
//
// A name belongs to the uid that first registered it, across agent and node
// restarts and the reaper: another uid registering it is refused until an
// operator removes the agent (RemoveAgent frees the name). A vote key
// belongs to one agent for good: registering another agent's key, current
// or past, is refused, so an honest voter cannot be dropped from an
// electorate by a copy of its key. Key records are never deleted.

func keyRecordID(agentID string, key []byte, from uint64) string {
	return fmt.Sprintf("%s/%x/%d", agentID, key, from)
}

// keyIndexer indexes key records by the hex of their public key.
type keyIndexer struct{}

func (keyIndexer) FromObject(raw any) (bool, []byte, error) {
	r, ok := raw.(*meshnodev1.AgentKey)
	if !ok {
		return false, nil, fmt.Errorf("key index: object is %T", raw)
	}
	return true, []byte(hex.EncodeToString(r.GetPublicKey()) + "\x00"), nil
}

func (keyIndexer) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("key index: want 1 argument, got %d", len(args))
	}
	b, ok := args[0].([]byte)
	if !ok {
		return nil, fmt.Errorf("key index: argument is %T, not []byte", args[0])
	}
	return []byte(hex.EncodeToString(b) + "\x00"), nil
}

// keyRecordIndexer is the unique id of a key record.
type keyRecordIndexer struct{}

func (keyRecordIndexer) FromObject(raw any) (bool, []byte, error) {
	r, ok := raw.(*meshnodev1.AgentKey)
	if !ok {
		return false, nil, fmt.Errorf("key record index: object is %T", raw)
	}
	return true, []byte(keyRecordID(r.GetAgentId(), r.GetPublicKey(), r.GetFromIndex()) + "\x00"), nil
}

func (keyRecordIndexer) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("key record index: want 1 argument, got %d", len(args))
	}
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("key record index: argument is %T, not string", args[0])
	}
	return []byte(s + "\x00"), nil
}

// claimIdentity checks and records a's name and vote key at index: the name
// is the owner uid's (claimed now if new), and the key is no other agent's.
// It returns the refusal, or nil once the records are written.
func claimIdentity(txn *memdb.Txn, index uint64, a *meshnodev1.Agent) (*meshnodev1.CommandResult, error) {
	name := first[*meshnodev1.AgentNameRecord](txn, tableAgentNames, a.GetId())
	if name != nil && name.GetOwnerUid() != a.GetOwnerUid() {
		return denied(fmt.Sprintf("agent name %s belongs to uid %d, which registered it first (index %d); run the agent as that uid, choose another name, or have an operator free it (meshnode agents remove %s)",
			a.GetId(), name.GetOwnerUid(), name.GetCreateIndex(), a.GetId())), nil
	}
	key := a.GetVotePublicKey()
	if len(key) > 0 {
		it, err := txn.Get(tableAgentKeys, "key", key)
		if err != nil {
			return nil, err
		}
		for obj := it.Next(); obj != nil; obj = it.Next() {
			if holder := obj.(*meshnodev1.AgentKey).GetAgentId(); holder != a.GetId() {
				return denied(fmt.Sprintf("vote key %x… is agent %s's; every agent signs with its own key (the SDK makes one)", key[:min(len(key), 8)], holder)), nil
			}
		}
	}
	if name == nil {
		if err := txn.Insert(tableAgentNames, &meshnodev1.AgentNameRecord{Id: a.GetId(), OwnerUid: a.GetOwnerUid(), CreateIndex: index}); err != nil {
			return nil, err
		}
	}
	cur := currentKey(txn, a.GetId())
	if cur != nil && proto.Equal(&meshnodev1.AgentKey{PublicKey: cur.GetPublicKey()}, &meshnodev1.AgentKey{PublicKey: key}) {
		return nil, nil
	}
	if err := retireKey(txn, index, a.GetId()); err != nil {
		return nil, err
	}
	if len(key) == 0 {
		return nil, nil
	}
	return nil, txn.Insert(tableAgentKeys, &meshnodev1.AgentKey{AgentId: a.GetId(), PublicKey: key, FromIndex: index})
}

// currentKey is the agent's key record still in force, or nil.
func currentKey(txn *memdb.Txn, agentID string) *meshnodev1.AgentKey {
	it, err := txn.Get(tableAgentKeys, "agent", agentID)
	if err != nil {
		return nil
	}
	for obj := it.Next(); obj != nil; obj = it.Next() {
		if r := obj.(*meshnodev1.AgentKey); r.GetUntilIndex() == 0 {
			return r
		}
	}
	return nil
}

// retireKey ends the agent's current key at index (it stays in history).
func retireKey(txn *memdb.Txn, index uint64, agentID string) error {
	cur := currentKey(txn, agentID)
	if cur == nil {
		return nil
	}
	done := proto.CloneOf(cur)
	done.UntilIndex = index
	return txn.Insert(tableAgentKeys, done)
}

// freeName forgets who owns an agent name: only an operator's RemoveAgent.
func freeName(txn *memdb.Txn, agentID string) error {
	if n := first[*meshnodev1.AgentNameRecord](txn, tableAgentNames, agentID); n != nil {
		return txn.Delete(tableAgentNames, n)
	}
	return nil
}

// AgentKeys returns every vote key agentID held, oldest first.
func (s *Store) AgentKeys(ctx context.Context, opts ReadOptions, agentID string) ([]*meshnodev1.AgentKey, uint64, error) {
	return list[*meshnodev1.AgentKey](s, ctx, opts, tableAgentKeys, "agent", []any{agentID})
}
