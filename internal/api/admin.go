package api

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/internal/apierror"
	"github.com/agentmesh/meshnode/operator"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// SignatureHeader carries an admin command's operator signature: a
// binary gRPC header (base64 in Connect JSON), the encoded SignedCommand
// over the request in the body. The body itself is unchanged, so reads and
// agent methods stay plain.
const SignatureHeader = "meshnode-operator-signature-bin"

// adminCommand builds the admin command for the method being served from
// the request's signature header. A request without one is refused here
// with what to do; everything else is judged by the state machine.
func adminCommand(ctx context.Context, fill func(*meshnodev1.AdminCommand)) (*meshnodev1.AdminCommand, error) {
	method, _ := grpc.Method(ctx)
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(SignatureHeader)
	if len(vals) == 0 {
		return nil, status.Errorf(codes.PermissionDenied, "%s is an admin command: it needs an operator's signature. "+
			"The meshnode CLI signs with --operator-key, MESHNODE_OPERATOR_KEY, ~/.config/meshnode/operator.key or the bootstrap key in the data dir; "+
			"create a key with `meshnode operator keygen` and have an admin add it (docs/operators.md)", method)
	}
	sc, err := operator.DecodeSignedCommand([]byte(vals[0]))
	if err != nil {
		return nil, status.Errorf(codes.PermissionDenied, "%s: the operator signature header is malformed: %v", method, err)
	}
	a := &meshnodev1.AdminCommand{Method: method, Signature: sc}
	fill(a)
	return a, nil
}

// submitAdmin builds the admin command from the request's signature header
// and commits it; the state machine verifies it. what names the write in
// errors. It returns the commit index and the operator who signed.
func submitAdmin(ctx context.Context, store *consensus.Store, what string, req func(*meshnodev1.AdminCommand)) (uint64, string, error) {
	cmd, err := adminCommand(ctx, req)
	if err != nil {
		return 0, "", err
	}
	wctx, cancel := boundWrite(ctx)
	defer cancel()
	idx, err := store.Admin(wctx, cmd)
	if err != nil {
		return 0, "", apierror.Wrap(what, err)
	}
	return idx, cmd.GetSignature().GetOperator(), nil
}
