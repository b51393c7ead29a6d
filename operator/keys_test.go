package operator

import (
	"crypto/ed25519"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeyFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "operator.key")
	if err := WriteKeyFile(path, key); err != nil {
		t.Fatalf("WriteKeyFile: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	got, err := ReadKeyFile(path)
	if err != nil || !got.Equal(key) {
		t.Fatalf("ReadKeyFile = %v, want the written key", err)
	}

	other, _ := GenerateKey()
	if err := WriteKeyFile(path, other); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("WriteKeyFile over an existing key = %v, want fs.ErrExist", err)
	}
	if got, _ := ReadKeyFile(path); !got.Equal(key) {
		t.Fatal("the existing key was replaced")
	}

	pub := key.Public().(ed25519.PublicKey)
	pubPath := filepath.Join(dir, "operator.pub")
	if err := WritePublicKeyFile(pubPath, pub); err != nil {
		t.Fatalf("WritePublicKeyFile: %v", err)
	}
	if err := WritePublicKeyFile(pubPath, pub); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("WritePublicKeyFile over an existing file = %v, want fs.ErrExist", err)
	}
	// A public key may be world-readable.
	if err := os.Chmod(pubPath, 0o644); err != nil {
		t.Fatal(err)
	}
	gotPub, err := ReadPublicKeyFile(pubPath)
	if err != nil || !gotPub.Equal(pub) {
		t.Fatalf("ReadPublicKeyFile = %v, want the written key", err)
	}
}

func TestReadKeyFileRefusesOpenMode(t *testing.T) {
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644, 0o660} {
		path := filepath.Join(t.TempDir(), "operator.key")
		if err := WriteKeyFile(path, testKey("bob")); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := ReadKeyFile(path)
		if !errors.Is(err, ErrInsecureKeyFile) || !strings.Contains(err.Error(), "chmod 600 "+path) {
			t.Errorf("mode %04o: ReadKeyFile = %v, want ErrInsecureKeyFile saying chmod 600", mode, err)
		}
	}
}

func TestReadKeyFileRefusesGarbage(t *testing.T) {
	dir := t.TempDir()
	pubPEM, _ := MarshalPublicKey(testPub("bob"))
	files := map[string][]byte{
		"empty":      nil,
		"not pem":    []byte("hello"),
		"public key": pubPEM,
		"huge":       make([]byte, maxKeyFileBytes+1),
	}
	for name, data := range files {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadKeyFile(path); err == nil {
			t.Errorf("%s: ReadKeyFile succeeded", name)
		}
		if name != "public key" {
			if _, err := ReadPublicKeyFile(path); err == nil {
				t.Errorf("%s: ReadPublicKeyFile succeeded", name)
			}
		}
	}
	if _, err := ReadKeyFile(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
	if err := WriteKeyFile(filepath.Join(dir, "short"), testKey("bob")[:10]); err == nil {
		t.Error("WriteKeyFile accepted a truncated key")
	}
}
