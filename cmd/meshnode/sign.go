package main

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"google.golang.org/grpc"

	"github.com/agentmesh/meshnode/internal/opsign"
	"github.com/agentmesh/meshnode/operator"
)

// Operator identity for admin commands, from the root command's flags.
var (
	operatorKeyFlag  string
	operatorNameFlag string
)

// operatorKey finds the operator's key: --operator-key, then
// MESHNODE_OPERATOR_KEY, then ~/.config/meshnode/operator.key, then the
// bootstrap key of the node whose socket is in use. It returns the key, the
// operator's name (empty unless --operator or MESHNODE_OPERATOR names it:
// the signer then finds it from the key), and where it came from; no key at all is not an error
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
		candidates = append(candidates, operator.BootstrapKeyPath(filepath.Dir(socket)))
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
		// An empty name is found from the key when signing (opsign.NameOf).
		return key, name, path, nil
	}
	return nil, "", "", nil
}

// signAdmin signs admin methods with the operator key found for socket.
func signAdmin(socket string) grpc.UnaryClientInterceptor {
	return opsign.Interceptor(func() (ed25519.PrivateKey, string, error) {
		key, name, _, err := operatorKey(socket)
		return key, name, err
	})
}
