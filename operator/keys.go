package operator

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/agentmesh/meshnode/internal/atomicfile"
)

// Key file modes and limits.
const (
	keyFileMode    = 0o600
	pubKeyFileMode = 0o644
	// maxKeyFileBytes bounds what the readers read: an ed25519 PEM is ~120
	// bytes, so anything much larger is not a key file.
	maxKeyFileBytes = 16 << 10
)

// GenerateKey returns a new operator private key.
func GenerateKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating operator key: %w", err)
	}
	return priv, nil
}

// MarshalPrivateKey encodes key as a PEM "PRIVATE KEY" block (PKCS#8), the
// format `openssl genpkey -algorithm ed25519` writes.
func MarshalPrivateKey(key ed25519.PrivateKey) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("operator key is %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding operator key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePrivateKey decodes a PEM "PRIVATE KEY" block holding a PKCS#8
// ed25519 key.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New(`no PEM "PRIVATE KEY" block`)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing PKCS#8: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key is %T, want ed25519", k)
	}
	return priv, nil
}

// MarshalPublicKey encodes pub as a PEM "PUBLIC KEY" block (PKIX).
func MarshalPublicKey(pub ed25519.PublicKey) ([]byte, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("operator public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encoding operator public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKey decodes a PEM "PUBLIC KEY" block holding a PKIX ed25519
// key.
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, errors.New(`no PEM "PUBLIC KEY" block`)
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing PKIX: %w", err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("key is %T, want ed25519", k)
	}
	return pub, nil
}

// WriteKeyFile writes key to a new file at path, mode 0600, atomically. It
// refuses to replace an existing file (the error wraps fs.ErrExist): an
// operator key overwritten by mistake is an identity lost.
func WriteKeyFile(path string, key ed25519.PrivateKey) error {
	data, err := MarshalPrivateKey(key)
	if err != nil {
		return fmt.Errorf("writing operator key %s: %w", path, err)
	}
	if err := atomicfile.Create(path, data, keyFileMode); err != nil {
		return fmt.Errorf("writing operator key: %w", err)
	}
	return nil
}

// ReadKeyFile reads a private key written by WriteKeyFile (or openssl). It
// refuses a file that group or others may access (ErrInsecureKeyFile), as
// ssh does: another user able to read it could act as the operator.
func ReadKeyFile(path string) (ed25519.PrivateKey, error) {
	data, err := readKeyFile(path, true)
	if err != nil {
		return nil, err
	}
	key, err := ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("operator key %s: %w", path, err)
	}
	return key, nil
}

// WritePublicKeyFile writes pub to a new file at path, mode 0644,
// atomically; like WriteKeyFile it refuses to replace a file.
func WritePublicKeyFile(path string, pub ed25519.PublicKey) error {
	data, err := MarshalPublicKey(pub)
	if err != nil {
		return fmt.Errorf("writing operator public key %s: %w", path, err)
	}
	if err := atomicfile.Create(path, data, pubKeyFileMode); err != nil {
		return fmt.Errorf("writing operator public key: %w", err)
	}
	return nil
}

// ReadPublicKeyFile reads a public key written by WritePublicKeyFile.
func ReadPublicKeyFile(path string) (ed25519.PublicKey, error) {
	data, err := readKeyFile(path, false)
	if err != nil {
		return nil, err
	}
	pub, err := ParsePublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("operator public key %s: %w", path, err)
	}
	return pub, nil
}

// readKeyFile reads at most maxKeyFileBytes of path, checking the mode of
// the file it opened (not of the path, which could change in between) when
// private is set.
func readKeyFile(path string, private bool) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading operator key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading operator key: %w", err)
	}
	if private && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o; it must be readable by its owner only: run `chmod 600 %s`",
			ErrInsecureKeyFile, path, fi.Mode().Perm(), path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading operator key %s: %w", path, err)
	}
	if len(data) > maxKeyFileBytes {
		return nil, fmt.Errorf("operator key %s is larger than %d bytes: not a key file", path, maxKeyFileBytes)
	}
	return data, nil
}
