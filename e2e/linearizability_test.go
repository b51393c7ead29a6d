package e2e

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/anishathalye/porcupine"
)

// The registry as a set of registers: key = agent id ("<node>/<name>"),
// value = the agent's "v" attribute. A write registers the agent with a new
// value; a read lists the node's agents with a consistent read.

type regInput struct {
	write bool
	key   string
	value string
}

type regOutput struct {
	value string // "" when the agent is not registered
}

var registryModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(regInput).key
			byKey[k] = append(byKey[k], op)
		}
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(regInput)
		if in.write {
			return true, in.value
		}
		return output.(regOutput).value == state.(string), state
	},
	DescribeOperation: func(input, output any) string {
		in := input.(regInput)
		if in.write {
			return fmt.Sprintf("register(%s, v=%s)", in.key, in.value)
		}
		return fmt.Sprintf("list(%s) -> %q", in.key, output.(regOutput).value)
	},
}

const kvCapability = "e2e.kv"

// kvWrite registers name on node m with attribute v=value.
func kvWrite(ctx context.Context, m *mnode, name, value string) error {
	_, err := meshnodev1.NewRegistryServiceClient(m.grpcConn()).Register(ctx, &meshnodev1.RegisterRequest{
		Name: name,
		Capabilities: []*meshnodev1.Capability{{
			Name: kvCapability, Attributes: map[string]string{"v": value},
		}},
	})
	return err
}

// kvRead returns the v attribute of agent id on node m's registry, with a
// consistent read, "" when it is not registered.
func kvRead(ctx context.Context, m *mnode, id string) (string, error) {
	resp, err := meshnodev1.NewRegistryServiceClient(m.grpcConn()).ListAgents(ctx, &meshnodev1.ListAgentsRequest{
		Consistency: meshnodev1.Consistency_CONSISTENCY_CONSISTENT, Capability: kvCapability,
	})
	if err != nil {
		return "", err
	}
	for _, a := range resp.GetAgents() {
		if a.GetId() == id {
			for _, c := range a.GetCapabilities() {
				if c.GetName() == kvCapability {
					return c.GetAttributes()["v"], nil
				}
			}
		}
	}
	return "", nil
}

// history collects operations from concurrent workers.
type history struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
}

func (h *history) now() int64 { return int64(time.Since(h.start)) }

func (h *history) add(op porcupine.Operation) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

// Scenario 2: the Raft leader is killed (and restarted) repeatedly while
// workers on every node register and read back agents. The history is
// checked for linearizability with porcupine; writes that failed or timed
// out are indeterminate (they may take effect at any later time), failed
// reads are left out. After the faults every key is read once more and no
// acknowledged write may be lost.
func TestScenario2LeaderKillLinearizable(t *testing.T) {
	fullOnly(t)
	c := newCluster(t, 5, 3)
	c.startAll()
	const (
		writers   = 3 // read/write workers on each client node
		keys      = 2 // keys per client node
		faults    = 3
		opTimeout = 5 * time.Second
	)
	// Registrations are written through the client nodes, which are never
	// killed: a restarted node deregisters the agents it had once their
	// grace period passes without a Serve stream, which a register model
	// would rightly call a lost write. Every node reads.
	var keyNames []string
	for _, m := range c.nodes[c.servers:] {
		for k := range keys {
			keyNames = append(keyNames, fmt.Sprintf("%s/kv%d", m.name, k))
		}
	}
	h := &history{start: time.Now()}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	var writes, reads, unknown, readErrs atomic.Int64
	worker := func(client int, m *mnode, write bool) {
		r := rand.New(rand.NewPCG(uint64(client), 2))
		for seq := 0; ctx.Err() == nil; seq++ {
			if !m.running() {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			opCtx, opCancel := context.WithTimeout(context.Background(), opTimeout)
			op := porcupine.Operation{ClientId: client, Call: h.now()}
			if write && r.IntN(2) == 0 {
				name := fmt.Sprintf("kv%d", r.IntN(keys))
				val := fmt.Sprintf("c%d-%d", client, seq)
				op.Input = regInput{write: true, key: m.name + "/" + name, value: val}
				err := kvWrite(opCtx, m, name, val)
				op.Return, op.Output = h.now(), regOutput{}
				if err != nil {
					op.Return = math.MaxInt64 // may take effect any time later
					unknown.Add(1)
					time.Sleep(20 * time.Millisecond)
				}
				writes.Add(1)
				h.add(op)
			} else {
				key := keyNames[r.IntN(len(keyNames))]
				if write {
					key = fmt.Sprintf("%s/kv%d", m.name, r.IntN(keys))
				}
				op.Input = regInput{key: key}
				v, err := kvRead(opCtx, m, key)
				op.Return, op.Output = h.now(), regOutput{value: v}
				reads.Add(1)
				if err != nil {
					readErrs.Add(1)
					time.Sleep(20 * time.Millisecond)
				} else {
					h.add(op)
				}
			}
			opCancel()
		}
	}
	client := 0
	for _, m := range c.nodes {
		n := 1
		if !m.server {
			n = writers
		}
		for range n {
			client++
			id := client
			wg.Go(func() { worker(id, m, !m.server) })
		}
	}

	// Faults: kill the leader, wait for a new one, bring the old one back.
	var killedAt []time.Time
	var elections []time.Duration
	waitUntil(t, 60*time.Second, "100 registry operations before the first fault", func() bool {
		return writes.Load()+reads.Load() >= 100
	})
	for f := range faults {
		l := c.waitLeader(60*time.Second, nil)
		t.Logf("fault %d: SIGKILL leader %s", f+1, l.name)
		at := time.Now()
		l.kill()
		killedAt = append(killedAt, at)
		c.waitLeader(90*time.Second, l)
		elections = append(elections, time.Since(at))
		l.start()
		l.waitReady(90 * time.Second)
		c.waitConverged(120 * time.Second)
		target := writes.Load() + reads.Load() + 100
		waitUntil(t, 60*time.Second, "100 more operations", func() bool { return writes.Load()+reads.Load() >= target })
	}
	cancel()
	wg.Wait()

	// Final reads of every key through one node: acknowledged writes must
	// all be there (the last one, or a concurrent or later one).
	finalValues := map[string]string{}
	for _, key := range keyNames {
		{
			op := porcupine.Operation{ClientId: 1000, Input: regInput{key: key}, Call: h.now()}
			var v string
			waitUntil(t, 60*time.Second, "a final read of "+key, func() bool {
				rctx, rcancel := context.WithTimeout(context.Background(), opTimeout)
				defer rcancel()
				var err error
				v, err = kvRead(rctx, c.nodes[0], key)
				return err == nil
			})
			op.Return, op.Output = h.now(), regOutput{value: v}
			finalValues[key] = v
			h.add(op)
		}
	}
	lost := lostWrites(h.ops, finalValues)

	res, info := porcupine.CheckOperationsVerbose(registryModel, h.ops, 2*time.Minute)
	if res != porcupine.Ok {
		path := filepath.Join(os.TempDir(), fmt.Sprintf("meshnode-e2e-linearizability-%d.html", os.Getpid()))
		if f, err := os.Create(path); err == nil {
			porcupine.Visualize(registryModel, info, f)
			f.Close()
		}
		t.Errorf("porcupine: history is %v (visualization: %s)", res, path)
	}
	if len(lost) > 0 {
		t.Errorf("%d acknowledged writes lost: %v", len(lost), lost)
	}
	violations := 0
	if res == porcupine.Illegal {
		violations = 1
	}
	var maxElect time.Duration
	for _, e := range elections {
		maxElect = max(maxElect, e)
	}
	summary(t, "ops=%d (%d writes, %d consistent reads); errors=%d (%d indeterminate writes, %d failed reads); faults=%d leader SIGKILLs+restarts; porcupine=%v violations=%d lost acked writes=%d; new leader within %v (max) after each kill",
		writes.Load()+reads.Load(), writes.Load(), reads.Load(), unknown.Load()+readErrs.Load(), unknown.Load(), readErrs.Load(),
		len(killedAt), res, violations, len(lost), maxElect.Round(time.Millisecond))
}

// lostWrites lists acknowledged writes that the final state contradicts: a
// key's final value came from a write that completed before the
// acknowledged write was even called, so the later write vanished.
func lostWrites(ops []porcupine.Operation, final map[string]string) []string {
	writeOf := map[string]porcupine.Operation{} // key + value → its write
	for _, op := range ops {
		if in := op.Input.(regInput); in.write {
			writeOf[in.key+"="+in.value] = op
		}
	}
	var lost []string
	for _, op := range ops {
		in := op.Input.(regInput)
		if !in.write || op.Return == math.MaxInt64 {
			continue
		}
		fv, ok := final[in.key]
		if !ok || fv == in.value {
			continue
		}
		fw, found := writeOf[in.key+"="+fv]
		if !found || fw.Return < op.Call {
			lost = append(lost, fmt.Sprintf("%s=%s (final %q)", in.key, in.value, fv))
		}
	}
	return lost
}
