package node

import (
	"context"

	"github.com/agentmesh/meshnode/internal/socketapi"
)

// PeerCred is the kernel's account of the process on the other end of a
// socket connection; see socketapi.PeerCred.
type PeerCred = socketapi.PeerCred

// PeerCredFromContext returns the calling process's credentials, from either
// the gRPC or the HTTP/1.1 side of the socket.
func PeerCredFromContext(ctx context.Context) (PeerCred, error) {
	return socketapi.PeerCredFromContext(ctx)
}

// ErrNoPeerCred means a request arrived without kernel credentials.
var ErrNoPeerCred = socketapi.ErrNoPeerCred

// ErrSocketInUse is returned when a live process already serves the socket.
var ErrSocketInUse = socketapi.ErrSocketInUse
