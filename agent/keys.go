package agent

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

	"github.com/agentmesh/meshnode/internal/atomicfile"
)

// maxKeyFileSize bounds what loadKey reads: a PKCS#8 ed25519 PEM is ~120
// bytes, so anything much larger is not a key file.
const maxKeyFileSize = 64 << 10

// loadOrCreateKey returns the agent's vote signing key. With an empty path
// the key lives in memory for the life of the process (the registration is
// updated with the new public key on the next start). Otherwise the key is
// read from path, or generated and written there with mode 0600 if the file
// does not exist yet.
func loadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	if path == "" {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("agent: generate vote key: %w", err)
		}
		return priv, nil
	}
	priv, err := loadKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return priv, err
	}
	_, priv, err = ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("agent: generate vote key: %w", err)
	}
	if err := writeKey(path, priv); err != nil {
		return nil, err
	}
	// Read back: another process may have won the race to create the file.
	return loadKey(path)
}

func loadKey(path string) (ed25519.PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("agent: open key file %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("agent: stat key file %s: %w", path, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		// The key signs quorum votes: another user able to read it could
		// vote as this agent. Refuse, like ssh does.
		return nil, fmt.Errorf("agent: key file %s has mode %#o: it must be readable by its owner only; run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	if fi.Size() > maxKeyFileSize {
		return nil, fmt.Errorf("agent: key file %s is %d bytes: not an ed25519 key", path, fi.Size())
	}
	data := make([]byte, fi.Size())
	if _, err := f.ReadAt(data, 0); err != nil && fi.Size() > 0 {
		return nil, fmt.Errorf("agent: read key file %s: %w", path, err)
	}
	priv, err := parseKey(data)
	if err != nil {
		return nil, fmt.Errorf("agent: key file %s: %w", path, err)
	}
	return priv, nil
}

// parseKey decodes a PEM "PRIVATE KEY" block holding a PKCS#8 ed25519 key,
// the format openssl genpkey -algorithm ed25519 writes.
func parseKey(data []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("no PEM \"PRIVATE KEY\" block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse PKCS#8: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key is %T, want ed25519", k)
	}
	return priv, nil
}

func marshalKey(priv ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// writeKey writes the key atomically: a crash leaves either no key file or a
// complete one, never a truncated key that would fail every later start.
func writeKey(path string, priv ed25519.PrivateKey) error {
	data, err := marshalKey(priv)
	if err != nil {
		return fmt.Errorf("agent: encode vote key: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("agent: create key directory %s: %w", dir, err)
	}
	// Create, not replace: if another process created the key meanwhile,
	// keep theirs so both processes end up with the same key.
	if err := atomicfile.Create(path, data, 0o600); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("agent: install key file: %w", err)
	}
	return nil
}
