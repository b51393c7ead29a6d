package node_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/agent"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// streamAgent runs an SDK agent on tn serving one streaming capability.
func streamAgent(t *testing.T, tn *testNode, name, capability string, h agent.StreamHandlerFunc) {
	t.Helper()
	a := &agent.Agent{Name: name, Socket: tn.socket}
	a.HandleStream(agent.Capability{Name: capability}, h)
	runAgent(t, a)
}

// counting streams n chunks of size bytes, each starting with its own
// number, and counts the chunks its sends accepted.
func counting(n, size int, sent *atomic.Int64, ended chan<- error) agent.StreamHandlerFunc {
	return func(ctx context.Context, _ *agent.Request, send func([]byte) error) error {
		for i := 1; i <= n; i++ {
			chunk := make([]byte, size)
			binary.BigEndian.PutUint64(chunk, uint64(i))
			if err := send(chunk); err != nil {
				if ended != nil {
					ended <- err
				}
				return err
			}
			sent.Add(1)
		}
		if ended != nil {
			ended <- nil
		}
		return nil
	}
}

func dialClient(t *testing.T, tn *testNode) *agent.Client {
	t.Helper()
	c, err := agent.Dial(context.Background(), tn.socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestStreamingCalls runs the streaming acceptance scenarios on one
// 3-node cluster over real QUIC, with SDK agents on n3 and callers on n1.
func TestStreamingCalls(t *testing.T) {
	nodes := startCluster(t)
	n1, n3 := nodes[0], nodes[2]
	var bulkSent, slowSent, cancelSent atomic.Int64
	const slowChunks, slowSize = 4000, 32 << 10
	cancelEnded := make(chan error, 1)
	streamAgent(t, n3, "bulk", "stream.bulk", counting(10000, 16, &bulkSent, nil))
	streamAgent(t, n3, "slow", "stream.slow", counting(slowChunks, slowSize, &slowSent, nil))
	streamAgent(t, n3, "cancel", "stream.cancel", counting(1<<30, 16, &cancelSent, cancelEnded))
	streamAgent(t, n3, "big", "stream.big", func(ctx context.Context, _ *agent.Request, send func([]byte) error) error {
		if err := send([]byte("small")); err != nil {
			return err
		}
		return send(make([]byte, 4<<20+1))
	})
	for _, c := range []string{"stream.bulk", "stream.slow", "stream.cancel", "stream.big"} {
		waitFor(t, 20*time.Second, "n1 sees "+c, func() bool { return len(readyAgents(t, n1, c)) == 1 })
	}
	client := dialClient(t, n1)

	t.Run("ten thousand chunks arrive complete and in order", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		s, err := client.CallStream(ctx, "stream.bulk", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var n uint64
		for s.Next() {
			n++
			if s.Seq() != n || binary.BigEndian.Uint64(s.Chunk()) != n {
				t.Fatalf("chunk %d: seq %d, body %d", n, s.Seq(), binary.BigEndian.Uint64(s.Chunk()))
			}
		}
		if err := s.Err(); err != nil {
			t.Fatalf("after %d chunks: %v", n, err)
		}
		if n != 10000 || s.End().GetChunks() != 10000 || s.End().GetAgentId() != "n3/bulk" {
			t.Fatalf("got %d chunks, end %v", n, s.End())
		}
	})

	t.Run("a slow reader makes the agent's send block", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		s, err := client.CallStream(ctx, "stream.slow", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for i := 0; i < 10 && s.Next(); i++ {
		}
		// Stop reading; wait until the agent's sends stop advancing.
		last := int64(-1)
		waitFor(t, 30*time.Second, "the agent's send blocks", func() bool {
			cur := slowSent.Load()
			stable := cur == last
			last = cur
			time.Sleep(300 * time.Millisecond)
			return stable && cur == slowSent.Load()
		})
		inFlight := (slowSent.Load() - 10) * slowSize
		t.Logf("agent blocked after %d of %d chunks: %d KiB buffered between agent and caller", slowSent.Load(), slowChunks, inFlight>>10)
		// Every leg's buffer is bounded: hub pipe, QUIC stream window,
		// HTTP/2 windows. Unbounded queueing would take all 125 MiB.
		if slowSent.Load() >= slowChunks || inFlight > 48<<20 {
			t.Fatalf("agent sent %d of %d chunks (%d MiB ahead of the reader)", slowSent.Load(), slowChunks, inFlight>>20)
		}
		// Reading again lets it finish.
		n := 10
		for s.Next() {
			n++
		}
		if s.Err() != nil || n != slowChunks {
			t.Fatalf("after resuming: %d chunks, err %v", n, s.Err())
		}
	})

	t.Run("cancel mid-stream cancels the remote handler", func(t *testing.T) {
		s, err := client.CallStream(context.Background(), "stream.cancel", nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 100 && s.Next(); i++ {
		}
		s.Close()
		select {
		case err := <-cancelEnded:
			if err == nil {
				t.Fatal("the handler finished instead of being cancelled")
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the remote handler's send did not fail within 10s of the cancel (%d chunks sent)", cancelSent.Load())
		}
	})

	t.Run("a chunk over the payload limit ends only its stream", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := client.CallStream(ctx, "stream.big", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if !s.Next() || !bytes.Equal(s.Chunk(), []byte("small")) {
			t.Fatalf("first chunk: %q, err %v", s.Chunk(), s.Err())
		}
		if s.Next() {
			t.Fatal("the oversized chunk was delivered")
		}
		if status.Code(s.Err()) != codes.ResourceExhausted || !strings.Contains(s.Err().Error(), "max_payload") {
			t.Fatalf("oversized chunk: got %v, want ResourceExhausted naming max_payload", s.Err())
		}
		if seq, ok := agent.LastSeq(s.Err()); !ok || seq != 1 {
			t.Fatalf("LastSeq = %d, %v; want 1", seq, ok)
		}
		// Another stream over the same connections goes on.
		s2, err := client.CallStream(ctx, "stream.bulk", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		n := 0
		for s2.Next() {
			n++
		}
		if s2.Err() != nil || n != 10000 {
			t.Fatalf("next stream: %d chunks, %v", n, s2.Err())
		}
	})

	t.Run("the agent's node dying ends the stream with its last sequence", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		s, err := client.CallStream(ctx, "stream.cancel", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var got uint64
		for s.Next() {
			got = s.Seq()
			if got == 500 {
				go n3.stop()
			}
		}
		if s.Err() == nil {
			t.Fatal("the stream ended cleanly although its node stopped")
		}
		seq, ok := agent.LastSeq(s.Err())
		if !ok || seq != got || got < 500 {
			t.Fatalf("err %v: LastSeq = %d, %v; the caller received up to %d", s.Err(), seq, ok, got)
		}
		t.Logf("stream ended after chunk %d: %v", got, s.Err())
	})
}
