package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/agentmesh/meshnode/node"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// clientFlags are shared by every command that talks to a running node.
type clientFlags struct {
	socket  string
	json    bool
	timeout time.Duration
	// wait bounds how long to wait for the node's socket to answer (and
	// for a Raft leader when needLeader): a command typed right after
	// `meshnode run ... &` runs while the node is still starting.
	wait time.Duration
	// needLeader is set by commands that write through Raft.
	needLeader bool
	// cmd is the command the flags belong to.
	cmd *cobra.Command
}

// defaultWait is long enough for a node that joins a cluster to come up,
// short enough that a typo in --socket is reported while the user waits.
const defaultWait = 30 * time.Second

func addClientFlags(cmd *cobra.Command) *clientFlags {
	cf := addClientFlagsNoWait(cmd)
	cmd.Flags().DurationVar(&cf.wait, "wait", defaultWait, "wait this long for a starting node to answer on its socket (0: fail at once)")
	return cf
}

// addClientFlagsNoWait is addClientFlags for a command whose --wait flag
// means something else; it waits defaultWait for the node.
func addClientFlagsNoWait(cmd *cobra.Command) *clientFlags {
	cf := &clientFlags{wait: defaultWait, cmd: cmd}
	cmd.Flags().StringVar(&cf.socket, "socket", "", "node's agent API socket (env MESHNODE_SOCKET; default "+defaultSocket()+")")
	cmd.Flags().BoolVar(&cf.json, "json", false, "print JSON instead of a table")
	cmd.Flags().DurationVar(&cf.timeout, "timeout", 10*time.Second, "give up on the request after this long")
	return cf
}

// writeClientFlags are clientFlags for a command that writes through Raft:
// it also waits for the node to know a leader.
func writeClientFlags(cmd *cobra.Command) *clientFlags {
	cf := addClientFlags(cmd)
	cf.needLeader = true
	return cf
}

func defaultSocket() string {
	if d := os.Getenv("MESHNODE_DATA_DIR"); d != "" {
		return filepath.Join(d, "meshnode.sock")
	}
	return filepath.Join(node.DefaultDataDir(), "meshnode.sock")
}

func (cf *clientFlags) socketPath() string {
	if cf.socket != "" {
		return cf.socket
	}
	if s := os.Getenv("MESHNODE_SOCKET"); s != "" {
		return s
	}
	return defaultSocket()
}

// dial connects to the node's socket once the node answers, waiting up to
// --wait for it (see waitForNode).
func (cf *clientFlags) dial() (*grpc.ClientConn, error) {
	// An explicit --wait is taken at its word; the default gives up early
	// when no node is starting.
	explicit := cf.cmd.Flags().Changed("wait")
	conn, _, err := waitForNode(cf.absSocket(), cf.wait, cf.needLeader, !explicit, os.Stderr)
	return conn, err
}

// absSocket is the socket path made absolute: grpc reads "unix://rel/path"
// as an authority, so only absolute paths work.
func (cf *clientFlags) absSocket() string {
	path := cf.socketPath()
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return path
}

func (cf *clientFlags) context() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), cf.timeout)
}

// open dials the node and returns a context bounded by --timeout; done
// closes both.
func (cf *clientFlags) open() (*grpc.ClientConn, context.Context, func(), error) {
	conn, err := cf.dial()
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := cf.context()
	return conn, ctx, func() { cancel(); conn.Close() }, nil
}

// rpcError turns a gRPC status into a one-line message for the terminal.
// The status stays in the error's chain (status.Code still reads it), so
// a caller such as the dashboard can tell an unreachable node apart.
func rpcError(what string, err error, socket string) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: %w", what, err)
	}
	switch st.Code() {
	case codes.Unavailable:
		return rpcFailure{fmt.Sprintf("%s: node at %s is unavailable: %s", what, socket, st.Message()), err}
	case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.FailedPrecondition, codes.PermissionDenied:
		return usageError{rpcFailure{fmt.Sprintf("%s: %s", what, st.Message()), err}}
	}
	return rpcFailure{fmt.Sprintf("%s: %s: %s", what, st.Code(), st.Message()), err}
}

// rpcFailure is a readable message over the gRPC error it came from.
type rpcFailure struct {
	msg string
	err error
}

func (e rpcFailure) Error() string { return e.msg }
func (e rpcFailure) Unwrap() error { return e.err }

var jsonOut = protojson.MarshalOptions{Multiline: true, Indent: "  ", EmitUnpopulated: true}

func printJSON(w io.Writer, m proto.Message) error {
	b, err := jsonOut.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

// protoText renders a message as "field:\tvalue" lines for tables.
func protoText(m proto.Message) string {
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return err.Error()
	}
	var fields map[string]any
	if err := json.Unmarshal(b, &fields); err != nil {
		return string(b)
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&sb, "%s:\t%v\n", k, fields[k])
	}
	return sb.String()
}
