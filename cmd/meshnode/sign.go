package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/agentmesh/meshnode/internal/api"
	"github.com/agentmesh/meshnode/node"
	"github.com/agentmesh/meshnode/operator"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Operator identity for admin commands, from the root command's flags.
var (
	operatorKeyFlag  string
	operatorNameFlag string
)

// adminMethods are the API methods the CLI signs with the operator's key.
var adminMethods = map[string]bool{
	"/meshnode.v1.PolicyService/SetPolicy":     true,
	"/meshnode.v1.PolicyService/DeletePolicy":  true,
	"/meshnode.v1.OperatorService/PutOperator": true,
}

// commandTTL is how long a signed command stays valid: long enough for a
// write to reach a leader, short enough that a captured one goes stale.
const commandTTL = 2 * time.Minute

// operatorKey finds the operator's key: --operator-key, then
// MESHNODE_OPERATOR_KEY, then ~/.config/meshnode/operator.key, then the
// bootstrap key of the node whose socket is in use. It returns the key, the
// operator's name, and where it came from; no key at all is not an error
// (the node refuses the command and says what to do).
func operatorKey(socket string) (ed25519.PrivateKey, string, string, error) {
	name := operatorNameFlag
	if name == "" {
		name = os.Getenv("MESHNODE_OPERATOR")
	}
	var candidates []string
	if operatorKeyFlag != "" {
		candidates = append(candidates, operatorKeyFlag)
	} else if p := os.Getenv("MESHNODE_OPERATOR_KEY"); p != "" {
		candidates = append(candidates, p)
	} else {
		if home, err := os.UserHomeDir(); err == nil {
			candidates = append(candidates, filepath.Join(home, ".config", "meshnode", "operator.key"))
		}
		candidates = append(candidates, node.BootstrapKeyPath(filepath.Dir(socket)))
	}
	// A key named explicitly must exist; the default places may not.
	explicit := operatorKeyFlag != "" || os.Getenv("MESHNODE_OPERATOR_KEY") != ""
	for _, path := range candidates {
		key, err := operator.ReadKeyFile(path)
		if errors.Is(err, fs.ErrNotExist) && !explicit {
			continue
		}
		if err != nil {
			return nil, "", "", fmt.Errorf("operator key: %w", err)
		}
		if name == "" {
			name = node.FirstAdmin
		}
		return key, name, path, nil
	}
	return nil, "", "", nil
}

// signAdmin is a client interceptor that signs admin methods' requests.
func signAdmin(socket string) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if !adminMethods[method] {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		key, name, _, err := operatorKey(socket)
		if err != nil {
			return err
		}
		if key != nil {
			tb := &meshnodev1.GetTrustBundleResponse{}
			if err := cc.Invoke(ctx, "/meshnode.v1.OperatorService/GetTrustBundle", &meshnodev1.GetTrustBundleRequest{}, tb); err != nil {
				return fmt.Errorf("reading the cluster id to sign %s for: %w", method, err)
			}
			sc, err := operator.SignCommand(name, key, tb.GetClusterId(), method, req.(proto.Message), time.Now(), commandTTL, nil)
			if err != nil {
				return err
			}
			b, err := proto.Marshal(sc)
			if err != nil {
				return err
			}
			ctx = metadata.AppendToOutgoingContext(ctx, api.SignatureHeader, string(b))
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}
