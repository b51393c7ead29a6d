package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// runRPC is the body of a command that makes one call to the node: open
// the socket, call, and print the answer as JSON with --json or as text.
// what names the call in errors.
func runRPC[T proto.Message](cmd *cobra.Command, cf *clientFlags, what string, call func(context.Context, *grpc.ClientConn) (T, error), text func(io.Writer, T) error) error {
	conn, ctx, done, err := cf.open()
	if err != nil {
		return err
	}
	defer done()
	resp, err := call(ctx, conn)
	if err != nil {
		return rpcError(what, err, cf.socketPath())
	}
	if cf.json {
		return printJSON(cmd.OutOrStdout(), resp)
	}
	return text(cmd.OutOrStdout(), resp)
}
