package pki

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// gossipKeyFile holds the node's ed25519 key for signing gossip. It is kept
// apart from the TLS key because the TLS key changes at every renewal, while
// peers verify gossip against the public half recorded in the registry.
const gossipKeyFile = "node_gossip.key"

// GossipKeyPath is where LoadOrCreateGossipKey keeps the key.
func GossipKeyPath(dataDir string) string { return filepath.Join(Dir(dataDir), gossipKeyFile) }

// LoadOrCreateGossipKey returns the node's gossip signing key, creating it
// (0600, written atomically: a crash leaves no half-written key) on first
// start. A key file that group or others can read is refused, like the TLS
// key (ErrInsecureKeyFile).
func LoadOrCreateGossipKey(dataDir string) (ed25519.PrivateKey, error) {
	path := GossipKeyPath(dataDir)
	b, err := os.ReadFile(path)
	if err == nil {
		return parseGossipKey(path, b)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("pki: reading gossip key: %w", err)
	}
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generating gossip key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("pki: encoding gossip key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return nil, fmt.Errorf("pki: creating %s: %w", filepath.Dir(path), err)
	}
	if err := writeFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), keyFileMode); err != nil {
		return nil, err
	}
	return k, nil
}

func parseGossipKey(path string, b []byte) (ed25519.PrivateKey, error) {
	if err := CheckKeyFileMode(path); err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: not a PEM key; remove it to create a new one", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an ed25519 key", path)
	}
	return ek, nil
}
