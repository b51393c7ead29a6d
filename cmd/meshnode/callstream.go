package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// streamCall runs `meshnode call --stream`: chunks go to standard output
// as they arrive (flushed by the write itself: stdout is not buffered), so
// a pipe or a terminal sees tokens as the agent sends them.
func streamCall(cmd *cobra.Command, ctx context.Context, inv meshnodev1.InvokeServiceClient, req *meshnodev1.CallRequest, cf *clientFlags) error {
	start := time.Now()
	what := "call " + req.GetCapability()
	cs, err := inv.CallStream(ctx, req)
	if err != nil {
		return rpcError(what, err, cf.socketPath())
	}
	out := cmd.OutOrStdout()
	var last uint64
	var firstAt time.Duration
	for {
		m, err := cs.Recv()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: the node ended the stream after chunk %d without its end", what, last)
		}
		if err != nil {
			if last > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "stream broke after chunk %d\n", lastSeqOf(err, last))
			}
			return rpcError(what, err, cf.socketPath())
		}
		if cf.json {
			b, err := protojson.Marshal(m)
			if err != nil {
				return err
			}
			fmt.Fprintln(out, string(b))
		}
		if c := m.GetChunk(); c != nil {
			if last == 0 {
				firstAt = time.Since(start)
			}
			last = c.GetSeq()
			if !cf.json {
				out.Write(c.GetData())
			}
			continue
		}
		end := m.GetEnd()
		if !cf.json {
			fmt.Fprintln(out)
			fmt.Fprintf(cmd.ErrOrStderr(), "%d chunks from %s on %s, first after %s, all in %s, %d attempt(s), trace %s\n", end.GetChunks(),
				end.GetAgentId(), end.GetNode(), firstAt.Round(time.Microsecond), time.Since(start).Round(time.Microsecond), end.GetAttempts(), orDash(end.GetTraceId()))
		}
		return nil
	}
}

// lastSeqOf reads a broken stream's StreamBroken detail; the last chunk
// printed when there is none.
func lastSeqOf(err error, printed uint64) uint64 {
	for _, d := range status.Convert(err).Details() {
		if b, ok := d.(*meshnodev1.StreamBroken); ok {
			return b.GetLastSeq()
		}
	}
	return printed
}
