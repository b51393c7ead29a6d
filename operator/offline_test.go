package operator

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
)

// The first admin created offline: its key and the trust bundle are
// written once, a server adopts the bundle only for the CA it names, and
// the server's data dir then holds no operator key.
func TestInitOfflineAndAdopt(t *testing.T) {
	caDir, dataDir := t.TempDir(), t.TempDir()
	root := testRootDER(t)
	keyPath := filepath.Join(caDir, "operator", "admin.key")
	bundle, err := InitOffline(keyPath, filepath.Join(caDir, OfflineBundleFile), "admin", [][]byte{root})
	if err != nil {
		t.Fatal(err)
	}
	key, err := ReadKeyFile(keyPath)
	if err != nil || !key.Public().(ed25519.PublicKey).Equal(ed25519.PublicKey(bundle.GetFirstAdminPublicKey())) {
		t.Fatalf("the key is not the bundle's first admin: %v", err)
	}
	if _, err := InitOffline(keyPath, filepath.Join(caDir, OfflineBundleFile), "admin", [][]byte{root}); err == nil || !strings.Contains(err.Error(), "never overwrites") {
		t.Fatalf("a second init over the first: %v", err)
	}
	if _, err := AdoptOffline(caDir, dataDir, [][]byte{testRootDER(t)[:len(root)-1]}); err == nil || !strings.Contains(err.Error(), "other roots") {
		t.Fatalf("adopting a bundle for another CA: %v", err)
	}
	got, err := AdoptOffline(caDir, dataDir, [][]byte{root})
	if err != nil || !proto.Equal(got, bundle) {
		t.Fatalf("adopt: %v, %v", got, err)
	}
	if _, err := os.Stat(TrustBundlePath(dataDir)); err != nil {
		t.Fatalf("the adopted bundle is not in the data dir: %v", err)
	}
	if _, err := os.Stat(BootstrapKeyPath(dataDir)); !os.IsNotExist(err) {
		t.Fatalf("an operator key is in the server's data dir: %v", err)
	}
	if b, err := AdoptOffline(t.TempDir(), dataDir, [][]byte{root}); b != nil || err != nil {
		t.Fatalf("a CA dir without a bundle: %v, %v", b, err)
	}
}
