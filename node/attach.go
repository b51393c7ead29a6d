package node

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentmesh/meshnode/internal/hub"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Attach is Serve with the answers (responses and votes) coming back on the
// same stream; the hub runs it for the connection's process.
func (s *invokeService) Attach(stream grpc.BidiStreamingServer[meshnodev1.AttachRequest, meshnodev1.ServeResponse]) error {
	cred, err := PeerCredFromContext(stream.Context())
	if err != nil {
		return status.Error(codes.Unauthenticated, err.Error())
	}
	return s.n.hub.Attach(hub.Owner(cred), stream)
}

// attachOpenTimeout bounds the wait for an Attach stream's serve message.
var attachOpenTimeout = 10 * time.Second
