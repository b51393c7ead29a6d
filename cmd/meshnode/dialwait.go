package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// Why a node cannot be used yet. Each is something waiting can change.
var (
	errNoSocket  = errors.New("no node socket")
	errRefused   = errors.New("nothing answers on the socket")
	errNoAnswer  = errors.New("the node does not answer")
	errNoLeader  = errors.New("the node knows no Raft leader")
	pollInterval = 100 * time.Millisecond
	// noteAfter is how long a wait goes on before the user is told about
	// it: a node that is starting takes about two seconds.
	noteAfter = 3 * time.Second
	// settleAfter is how long a process that was just started gets to
	// create its data dir and lock before "no node is starting" is believed.
	settleAfter = time.Second
)

// notYet is a probe failure that waiting may cure.
type notYet struct {
	reason error
	detail error
}

func (e *notYet) Error() string { return fmt.Sprintf("%v: %v", e.reason, e.detail) }

// waitForNode returns a connection to the node at socket (an absolute path)
// once the node answers Status, and, when needLeader, knows a Raft leader.
// It tries for up to wait, telling progress once if that takes a while. A
// refusal that waiting cannot change (a permission error) ends it at once.
// With early, it also gives up once it is clear no node is starting there
// (see noNodeStarting), so a plain 'meshnode status' with no node running
// fails in a second rather than after the whole wait.
func waitForNode(socket string, wait time.Duration, needLeader, early bool, progress io.Writer) (*grpc.ClientConn, *meshnodev1.StatusResponse, error) {
	start := time.Now()
	noted := false
	for {
		conn, st, err := probeNode(socket, needLeader)
		if err == nil {
			return conn, st, nil
		}
		var ny *notYet
		if !errors.As(err, &ny) {
			return nil, nil, err
		}
		waited := time.Since(start)
		if waited >= wait {
			return nil, nil, waitError(socket, wait, ny)
		}
		if early && waited >= settleAfter && (ny.reason == errNoSocket || ny.reason == errRefused) && noNodeStarting(filepath.Dir(socket)) {
			return nil, nil, waitError(socket, 0, ny)
		}
		if !noted && waited >= noteAfter && progress != nil {
			fmt.Fprintf(progress, "meshnode: waiting up to %v for the node at %s (%v; --wait 0 to fail at once)\n", wait, socket, ny.reason)
			noted = true
		}
		time.Sleep(min(pollInterval, wait-waited))
	}
}

// probeNode makes one attempt. The error is a *notYet when waiting may help.
func probeNode(socket string, needLeader bool) (*grpc.ClientConn, *meshnodev1.StatusResponse, error) {
	if _, err := os.Stat(socket); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, &notYet{errNoSocket, err}
		}
		return nil, nil, socketError(socket, err)
	}
	raw, err := net.DialTimeout("unix", socket, time.Second)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, fs.ErrNotExist) {
			return nil, nil, &notYet{errRefused, err}
		}
		return nil, nil, socketError(socket, err)
	}
	raw.Close()
	conn, err := grpc.NewClient("unix://"+socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(signAdmin(socket)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := meshnodev1.NewNodeServiceClient(conn).Status(ctx, &meshnodev1.StatusRequest{})
	switch status.Code(err) {
	case codes.OK:
	case codes.Unavailable, codes.DeadlineExceeded:
		conn.Close()
		return nil, nil, &notYet{errNoAnswer, err}
	default:
		// The node answers; the command's own request reports the rest.
		return conn, nil, nil
	}
	if needLeader && st.GetLeader() == "" {
		conn.Close()
		return nil, nil, &notYet{errNoLeader, fmt.Errorf("node %s has no leader", st.GetName())}
	}
	return conn, st, nil
}

// noNodeStarting reports whether dir, the directory of a node's socket,
// shows that no node runs there: it does not exist, or its LOCK file (the
// data dir lock a node takes first thing, holding its pid) names no live
// process. A socket outside a data dir has no LOCK beside it: then nothing
// can be told, and the wait goes on.
func noNodeStarting(dir string) bool {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return true
	}
	b, err := os.ReadFile(filepath.Join(dir, "LOCK"))
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return true // released: empty
	}
	return syscall.Kill(pid, 0) == syscall.ESRCH
}

// socketError explains an error opening the socket that waiting cannot fix.
func socketError(socket string, err error) error {
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("permission denied on the node socket %s: only the node's user and group may use it (mode 0660); run as that user, add yourself to its group, or use sudo", socket)
	}
	return fmt.Errorf("node socket %s: %w", socket, err)
}

// waitError says what was still missing when the wait ran out, and what to do.
func waitError(socket string, wait time.Duration, ny *notYet) error {
	waited := ""
	if wait > 0 {
		waited = fmt.Sprintf(" after waiting %v", wait)
	}
	switch ny.reason {
	case errNoSocket:
		return fmt.Errorf("no node socket at %s%s: start one with 'meshnode run', or point --socket / MESHNODE_SOCKET at it", socket, waited)
	case errRefused:
		return fmt.Errorf("nothing answers on the node socket %s%s: the node that made it has stopped; start it again with 'meshnode run'", socket, waited)
	case errNoLeader:
		return fmt.Errorf("the node at %s knows no Raft leader%s: a cluster needs a majority of its voters up; see 'meshnode members --socket %s'", socket, waited, socket)
	}
	return fmt.Errorf("the node at %s does not answer%s: %v", socket, waited, ny.detail)
}
