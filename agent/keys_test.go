package agent

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeyFileIsCreatedOnceAndReused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "agent.key")
	k1, err := loadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %#o, want 0600", fi.Mode().Perm())
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Errorf("key directory mode %#o, want 0700", di.Mode().Perm())
	}
	k2, err := loadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Equal(k2) {
		t.Error("second load returned a different key")
	}
	data, _ := os.ReadFile(path)
	if !bytes.HasPrefix(data, []byte("-----BEGIN PRIVATE KEY-----")) {
		t.Errorf("key file is not a PKCS#8 PEM:\n%s", data)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("key directory holds %d entries, want only the key (no temp files)", len(entries))
	}
}

func TestAgentKeyFilePersistsTheVoteKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.key")
	pub := func() ed25519.PublicKey {
		a := &Agent{Name: "voter", Socket: "/nonexistent/sock", KeyFile: path}
		defer a.Close()
		k, err := a.VotePublicKey()
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	if a, b := pub(), pub(); !a.Equal(b) {
		t.Error("a restarted agent got a new vote key despite KeyFile")
	}
	mem := func() ed25519.PublicKey {
		a := &Agent{Name: "voter", Socket: "/nonexistent/sock", Ephemeral: true}
		defer a.Close()
		k, _ := a.VotePublicKey()
		return k
	}
	if a, b := mem(), mem(); a.Equal(b) || len(a) != ed25519.PublicKeySize {
		t.Error("ephemeral agents' keys should be fresh per agent")
	}
	// By default the key lives in the agent's state directory.
	state := func() ed25519.PublicKey {
		a := &Agent{Name: "voter", Socket: "/nonexistent/sock"}
		defer a.Close()
		k, err := a.VotePublicKey()
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	if a, b := state(), state(); !a.Equal(b) {
		t.Error("a restarted agent got a new vote key: the default state directory did not keep it")
	}
}

func TestKeyFileWithLoosePermissionsIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.key")
	if _, err := loadOrCreateKey(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := loadOrCreateKey(path)
	if err == nil || !strings.Contains(err.Error(), "chmod 600 "+path) {
		t.Errorf("load = %v, want a refusal saying to chmod 600", err)
	}
}

func TestKeyFileGarbageIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.key")
	if err := os.WriteFile(path, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadOrCreateKey(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("load = %v, want an error naming the file", err)
	}
	// The garbage must not be silently replaced: that would change the
	// agent's vote identity.
	if data, _ := os.ReadFile(path); string(data) != "not a key" {
		t.Error("the unreadable key file was overwritten")
	}
}

func FuzzParseKey(f *testing.F) {
	_, priv, _ := ed25519.GenerateKey(nil)
	good, _ := marshalKey(priv)
	f.Add(good)
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := parseKey(data)
		if err != nil {
			return
		}
		if len(k) != ed25519.PrivateKeySize {
			t.Fatalf("parsed a %d-byte key", len(k))
		}
		again, err := marshalKey(k)
		if err != nil {
			t.Fatal(err)
		}
		if k2, err := parseKey(again); err != nil || !k.Equal(k2) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
