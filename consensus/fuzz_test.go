package consensus

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// FuzzDecodeCommand: forwarded commands come from peers. Decoding never
// panics, and whatever decodes applies without panicking.
func FuzzDecodeCommand(f *testing.F) {
	seed, _ := proto.Marshal(agentCmd("n1/a", "x"))
	f.Add(seed)
	f.Add([]byte{0x08, 0x02})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err != nil {
			return
		}
		st := testState(16)
		st.applyBatch(1, &meshnodev1.CommandBatch{Version: CommandVersion, TimeUnixNano: testNow, Commands: stamp([]*meshnodev1.Command{c})})
	})
}

// FuzzApplyEntry: a log entry is applied whatever its bytes, identically
// twice (determinism), and never panics.
func FuzzApplyEntry(f *testing.F) {
	b, _ := proto.Marshal(&meshnodev1.CommandBatch{Version: CommandVersion, TimeUnixNano: testNow, Commands: stamp([]*meshnodev1.Command{agentCmd("n1/a", "x")})})
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		var out [2][]byte
		for i := range out {
			st := testState(16)
			batch, err := decodeBatch(data)
			if err != nil {
				st.applyEmpty(1)
			} else {
				st.applyBatch(1, batch)
			}
			var buf bytes.Buffer
			if err := writeSnapshot(&buf, st.fullView(), true); err != nil {
				t.Fatal(err)
			}
			out[i] = buf.Bytes()
		}
		if !bytes.Equal(out[0], out[1]) {
			t.Fatal("applying the same entry twice gave different states")
		}
	})
}

// FuzzReadSnapshot: snapshots arrive from the leader (InstallSnapshot) and
// change streams from servers.
func FuzzReadSnapshot(f *testing.F) {
	st := testState(16)
	st.applyBatch(1, &meshnodev1.CommandBatch{Version: CommandVersion, TimeUnixNano: testNow, Commands: stamp([]*meshnodev1.Command{agentCmd("n1/a", "x")})})
	var buf bytes.Buffer
	_ = writeSnapshot(&buf, st.fullView(), true)
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, idx, err := readSnapshot(bytes.NewReader(b))
		if err != nil {
			return
		}
		if err := testState(16).replace(recs, idx); err != nil {
			t.Fatalf("a snapshot that parsed does not restore: %v", err)
		}
	})
}
