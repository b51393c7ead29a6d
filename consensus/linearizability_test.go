package consensus

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

type kvInput struct {
	write bool
	key   string
	value string
}

type kvOutput struct {
	value string
}

// registerModel is a register per key: writes set it, reads observe it.
// Keys are independent, so the history is checked per key.
var registerModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(kvInput).key
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, ops := range byKey {
			out = append(out, ops)
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(kvInput)
		if in.write {
			return true, in.value
		}
		return output.(kvOutput).value == state.(string), state
	},
	DescribeOperation: func(input, output any) string {
		in := input.(kvInput)
		if in.write {
			return fmt.Sprintf("put(%s, %s)", in.key, in.value)
		}
		return fmt.Sprintf("get(%s) -> %q", in.key, output.(kvOutput).value)
	},
}

// TestLinearizableUnderLeaderKills writes and reads (consistent) registry
// entries from several goroutines through every node, while the leader is
// killed and restarted repeatedly. Writes that fail or time out may or may
// not have happened: they are kept in the history with an open end
// (indeterminate), never dropped. Failed reads observed nothing and are
// left out.
func TestLinearizableUnderLeaderKills(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster fault test")
	}
	c := newCluster(t, 3, 1, nil)
	nodes := c.nodes
	stores := make([]atomic.Pointer[Store], len(nodes))
	for i, n := range nodes {
		stores[i].Store(n.store)
	}
	const (
		workers  = 6
		duration = 12 * time.Second
		// Keys are checked one partition each: with 3, a partition held
		// ~2,800 operations, a quarter of them indeterminate, and the
		// checker could time out (no verdict) on a loaded machine. 12 keep
		// writers contending on each key while each check stays small.
		keys = 12
	)
	start := time.Now()
	now := func() int64 { return int64(time.Since(start)) }
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()

	var mu sync.Mutex
	var history []porcupine.Operation
	var wg sync.WaitGroup
	var writes, reads, unknown atomic.Int64
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for seq := 0; ctx.Err() == nil; seq++ {
				s := stores[r.IntN(len(stores))].Load()
				if s.closed.Load() {
					continue
				}
				key := fmt.Sprintf("n1/k%d", r.IntN(keys))
				opCtx, opCancel := context.WithTimeout(context.Background(), 2*time.Second)
				op := porcupine.Operation{ClientId: w, Call: now()}
				if r.IntN(2) == 0 {
					val := fmt.Sprintf("w%d-%d", w, seq)
					op.Input = kvInput{write: true, key: key, value: val}
					cmd := agentCmd(key, "lin")
					cmd.GetRegisterAgent().GetAgent().Name = val
					_, _, err := s.Apply(opCtx, cmd)
					op.Return, op.Output = now(), kvOutput{}
					if err != nil {
						op.Return = math.MaxInt64 // indeterminate: may take effect any time after the call
						unknown.Add(1)
					}
					writes.Add(1)
				} else {
					op.Input = kvInput{key: key}
					a, _, err := s.Agent(opCtx, consistent, key)
					op.Return = now()
					switch {
					case err == nil:
						op.Output = kvOutput{value: a.GetName()}
					case isNotFound(err):
						op.Output = kvOutput{}
					default:
						opCancel()
						continue
					}
					reads.Add(1)
				}
				opCancel()
				mu.Lock()
				history = append(history, op)
				mu.Unlock()
			}
		}()
	}
	// Fault loop: kill the leader, let the others elect, bring it back.
	kills := 0
	for ctx.Err() == nil {
		if !sleepOrDone(ctx, 1500*time.Millisecond) {
			break
		}
		l := c.leaderNow()
		if l == nil {
			continue
		}
		c.kill(l)
		kills++
		if !sleepOrDone(ctx, time.Second) {
			c.restart(l)
			break
		}
		c.restart(l)
		for i, n := range nodes {
			stores[i].Store(n.store)
		}
	}
	wg.Wait()
	for i, n := range nodes {
		stores[i].Store(n.store)
	}
	t.Logf("%d leader kills, %d writes (%d indeterminate), %d reads", kills, writes.Load(), unknown.Load(), reads.Load())
	if kills < 3 || writes.Load()-unknown.Load() < 20 || reads.Load() < 20 {
		t.Fatalf("too little happened to check: %d kills, %d writes, %d reads", kills, writes.Load(), reads.Load())
	}
	res := porcupine.CheckOperationsTimeout(registerModel, history, 20*time.Second)
	if res != porcupine.Ok {
		t.Fatalf("history of %d operations is not linearizable: %v", len(history), res)
	}
}

func isNotFound(err error) bool { return err != nil && errorsIs(err, ErrNotFound) }

func sleepOrDone(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// TestRegisterModelCatchesStaleRead makes sure the checker can fail: a read
// that returns an overwritten value after the overwrite completed.
func TestRegisterModelCatchesStaleRead(t *testing.T) {
	h := []porcupine.Operation{
		{ClientId: 0, Input: kvInput{write: true, key: "k", value: "a"}, Output: kvOutput{}, Call: 0, Return: 10},
		{ClientId: 0, Input: kvInput{write: true, key: "k", value: "b"}, Output: kvOutput{}, Call: 20, Return: 30},
		{ClientId: 1, Input: kvInput{key: "k"}, Output: kvOutput{value: "a"}, Call: 40, Return: 50},
	}
	if porcupine.CheckOperations(registerModel, h) {
		t.Fatal("a stale read passed the checker")
	}
	// An indeterminate write may land late: reading it after is fine.
	h[1].Return = math.MaxInt64
	h[2].Output = kvOutput{value: "b"}
	if !porcupine.CheckOperations(registerModel, h) {
		t.Fatal("an indeterminate write that took effect was refused")
	}
}
