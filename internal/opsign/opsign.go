package opsign

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/internal/api"
	"github.com/agentmesh/meshnode/operator"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// AdminMethods are the API methods that need an operator's signature: the
// ones the state machine verifies (consensus.AdminMethods).
var AdminMethods = func() map[string]bool {
	m := map[string]bool{}
	for _, method := range consensus.AdminMethods {
		m[method] = true
	}
	return m
}()

// TTL is how long a signed command stays valid: long enough for a write to
// reach a leader, short enough that a captured one goes stale.
const TTL = 2 * time.Minute

// Key finds the operator's key when an admin method is called; nil key
// means send the request unsigned (the node refuses it and says what to
// do).
type Key func() (key ed25519.PrivateKey, name string, err error)

// Interceptor signs admin methods' requests with the key, for the cluster
// id the node reports (GetTrustBundle). Other methods pass unchanged.
func Interceptor(find Key) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if !AdminMethods[method] {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		key, name, err := find()
		if err != nil {
			return err
		}
		if key != nil {
			if ctx, err = Sign(ctx, cc, key, name, method, req.(proto.Message)); err != nil {
				return err
			}
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// Sign returns ctx carrying the operator's signature of req for method. An
// empty name is found from the key: the operator whose record holds it,
// else the first admin (whose record the bundle implies).
func Sign(ctx context.Context, cc grpc.ClientConnInterface, key ed25519.PrivateKey, name, method string, req proto.Message) (context.Context, error) {
	tb := &meshnodev1.GetTrustBundleResponse{}
	if err := cc.Invoke(ctx, "/meshnode.v1.OperatorService/GetTrustBundle", &meshnodev1.GetTrustBundleRequest{}, tb); err != nil {
		return nil, fmt.Errorf("reading the cluster id to sign %s for: %w", method, err)
	}
	if name == "" {
		var err error
		if name, err = NameOf(ctx, cc, key.Public().(ed25519.PublicKey), tb.GetBundle()); err != nil {
			return nil, err
		}
	}
	sc, err := operator.SignCommand(name, key, tb.GetClusterId(), method, req, time.Now(), TTL, nil)
	if err != nil {
		return nil, err
	}
	b, err := proto.Marshal(sc)
	if err != nil {
		return nil, err
	}
	return metadata.AppendToOutgoingContext(ctx, api.SignatureHeader, string(b)), nil
}

// NameOf returns the name of the operator whose stored record holds pub,
// or the bundle's first admin when none does (the servers then say whether
// the key is the first admin's).
func NameOf(ctx context.Context, cc grpc.ClientConnInterface, pub ed25519.PublicKey, bundle *meshnodev1.TrustBundle) (string, error) {
	if pub.Equal(ed25519.PublicKey(bundle.GetFirstAdminPublicKey())) {
		return bundle.GetFirstAdminName(), nil
	}
	ops := &meshnodev1.ListOperatorsResponse{}
	if err := cc.Invoke(ctx, "/meshnode.v1.OperatorService/ListOperators", &meshnodev1.ListOperatorsRequest{}, ops); err != nil {
		return "", fmt.Errorf("finding which operator the key belongs to: %w", err)
	}
	for _, o := range ops.GetOperators() {
		if pub.Equal(ed25519.PublicKey(o.GetRecord().GetPublicKey())) {
			return o.GetRecord().GetName(), nil
		}
	}
	if bundle.GetFirstAdminName() == "" {
		return operator.FirstAdmin, nil
	}
	return bundle.GetFirstAdminName(), nil
}
