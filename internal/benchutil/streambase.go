package benchutil

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// StreamEnv, set with BaselineEnv, makes the baseline process serve a bare
// grpc-go server stream (InvokeService.CallStream) instead of Status: the
// floor for streaming throughput between two processes.
const StreamEnv = "MESHNODE_BENCH_STREAM"

// streamBaseline answers CallStream with the chunks its payload asks for:
// 8 bytes of count, 8 of chunk size.
type streamBaseline struct {
	meshnodev1.UnimplementedInvokeServiceServer
}

func (streamBaseline) CallStream(req *meshnodev1.CallRequest, st grpc.ServerStreamingServer[meshnodev1.CallStreamResponse]) error {
	n, size := StreamParams(req.GetPayload())
	data := make([]byte, size)
	for i := 1; i <= n; i++ {
		if err := st.Send(&meshnodev1.CallStreamResponse{Event: &meshnodev1.CallStreamResponse_Chunk{Chunk: &meshnodev1.StreamChunk{Seq: uint64(i), Data: data}}}); err != nil {
			return err
		}
	}
	return st.Send(&meshnodev1.CallStreamResponse{Event: &meshnodev1.CallStreamResponse_End{End: &meshnodev1.StreamEnd{Chunks: uint64(n)}}})
}

// StreamPayload encodes a request for n chunks of size bytes, for the
// baseline and for the benchmark's agent alike.
func StreamPayload(n, size int) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(n))
	return binary.BigEndian.AppendUint64(b, uint64(size))
}

// StreamParams decodes StreamPayload (0, 0 for anything else).
func StreamParams(p []byte) (n, size int) {
	if len(p) != 16 {
		return 0, 0
	}
	return int(binary.BigEndian.Uint64(p)), int(binary.BigEndian.Uint64(p[8:]))
}

// StartStreamBaseline runs the bare streaming server in a child process
// and returns a function that reads one whole stream of n chunks of size
// bytes from it, and the child's pid.
func StartStreamBaseline(tb testing.TB, dir string) (read func(ctx context.Context, n, size int) error, pid int) {
	tb.Helper()
	sock := filepath.Join(dir, "stream.sock")
	pid = startChild(tb, sock, StreamEnv+"=1")
	conn := dialConn(tb, sock)
	client := meshnodev1.NewInvokeServiceClient(conn)
	return func(ctx context.Context, n, size int) error {
		st, err := client.CallStream(ctx, &meshnodev1.CallRequest{Payload: StreamPayload(n, size)})
		if err != nil {
			return err
		}
		got := 0
		for {
			m, err := st.Recv()
			if errors.Is(err, io.EOF) {
				return errors.New("baseline stream ended without its end")
			}
			if err != nil {
				return err
			}
			if m.GetEnd() != nil {
				if got != n {
					return errors.New("baseline stream lost chunks")
				}
				return nil
			}
			got++
		}
	}, pid
}
