package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteCreatesWholeFileWithMode(t *testing.T) {
	for _, perm := range []os.FileMode{0o600, 0o644, 0o640} {
		dir := t.TempDir()
		path := filepath.Join(dir, "key")
		data := []byte("-----BEGIN PRIVATE KEY-----\n...\n")
		if err := Write(path, data, perm); err != nil {
			t.Fatalf("Write %04o: %v", perm, err)
		}
		checkFile(t, path, string(data), perm)
		checkNoTemp(t, dir)
	}
}

func TestWriteReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := Write(path, []byte("old, and longer than the new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	checkFile(t, path, "new", 0o600)
	checkNoTemp(t, dir)
}

// failingFile writes half the data, then fails, as a full disk would.
type failingFile struct{ *os.File }

func (f failingFile) Write(b []byte) (int, error) {
	n, _ := f.File.Write(b[:len(b)/2])
	return n, errors.New("no space left on device")
}

func TestFailedWriteLeavesOldFileAndNoTemp(t *testing.T) {
	old := createTemp
	t.Cleanup(func() { createTemp = old })
	createTemp = func(dir, pattern string) (file, error) {
		f, err := os.CreateTemp(dir, pattern)
		if err != nil {
			return nil, err
		}
		return failingFile{f}, nil
	}
	for _, tc := range []struct {
		name  string
		write func(string, []byte, os.FileMode) error
	}{{"Write", Write}, {"Create", Create}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f")
			if tc.name == "Write" {
				if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := tc.write(path, []byte("new contents"), 0o600); err == nil {
				t.Fatal("write succeeded through a failing file")
			}
			if tc.name == "Write" {
				checkFile(t, path, "old", 0o600)
			} else if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("a failed Create left %s behind: %v", path, err)
			}
			checkNoTemp(t, dir)
		})
	}
}

func TestFailedRenameLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "d")
	// A non-empty directory in the way: the rename fails after the temp
	// file was written and synced.
	if err := os.MkdirAll(filepath.Join(path, "inside"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, []byte("x"), 0o600); err == nil {
		t.Fatal("Write replaced a non-empty directory")
	}
	if fi, err := os.Stat(filepath.Join(path, "inside")); err != nil || !fi.IsDir() {
		t.Fatalf("the directory in the way was changed: %v", err)
	}
	checkNoTemp(t, dir)
}

func TestCreateRefusesExistingFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	if err := Create(path, []byte("first"), 0o600); err != nil {
		t.Fatal(err)
	}
	checkFile(t, path, "first", 0o600)
	err := Create(path, []byte("second"), 0o644)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Create over an existing file: err = %v, want fs.ErrExist", err)
	}
	checkFile(t, path, "first", 0o600)
	checkNoTemp(t, dir)
}

func checkFile(t *testing.T, path, want string, perm os.FileMode) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("%s holds %q, want %q", path, got, want)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != perm {
		t.Fatalf("%s has mode %04o, want %04o", path, fi.Mode().Perm(), perm)
	}
}

func checkNoTemp(t *testing.T, dir string) {
	t.Helper()
	tmps, err := filepath.Glob(filepath.Join(dir, ".*.tmp-*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(tmps) > 0 {
		t.Fatalf("temporary files left behind: %v", tmps)
	}
}
