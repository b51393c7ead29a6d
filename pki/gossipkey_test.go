package pki

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGossipKeyIsCreatedOnceAndKept(t *testing.T) {
	dataDir := t.TempDir()
	k1, err := LoadOrCreateGossipKey(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(GossipKeyPath(dataDir))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("gossip key mode %04o, want 0600", fi.Mode().Perm())
	}
	k2, err := LoadOrCreateGossipKey(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Equal(k2) {
		t.Fatal("a second start made a new gossip key; peers verify against the first one")
	}
	if tmps, _ := filepath.Glob(filepath.Join(Dir(dataDir), ".*tmp*")); len(tmps) > 0 {
		t.Fatalf("temporary files left behind: %v", tmps)
	}
}

func TestGossipKeyRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		data string
		mode os.FileMode
		want string
	}{
		{"readable by others", "", 0o644, ""},
		{"not PEM", "garbage", 0o600, "not a PEM key; remove it to create a new one"},
		{"not PKCS#8", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", 0o600, "node_gossip.key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dataDir := t.TempDir()
			if _, err := LoadOrCreateGossipKey(dataDir); err != nil {
				t.Fatal(err)
			}
			path := GossipKeyPath(dataDir)
			if tc.data != "" {
				if err := os.WriteFile(path, []byte(tc.data), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			_, err := LoadOrCreateGossipKey(dataDir)
			switch {
			case err == nil:
				t.Fatal("a bad gossip key file was accepted")
			case tc.want == "" && !errors.Is(err, ErrInsecureKeyFile):
				t.Fatalf("err = %v, want ErrInsecureKeyFile", err)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}
}
