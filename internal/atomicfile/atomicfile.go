package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Write replaces path with data, mode perm (umask does not apply). After a
// crash at any point path holds either its old contents or data, never part
// of data; on error the old file is left as it was and no temporary file
// remains.
func Write(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, os.Rename)
}

// Create is Write for a file that must not exist yet: if path exists it
// fails with an error wrapping fs.ErrExist and leaves the file alone. Of
// two processes creating the same path at once exactly one succeeds, so
// both can read back one and the same file afterwards.
func Create(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, os.Link)
}

// file is what write needs of an *os.File; tests replace createTemp to make
// writes fail.
type file interface {
	Name() string
	Chmod(os.FileMode) error
	Write([]byte) (int, error)
	Sync() error
	Close() error
}

var createTemp = func(dir, pattern string) (file, error) { return os.CreateTemp(dir, pattern) }

func write(path string, data []byte, perm os.FileMode, install func(oldname, newname string) error) error {
	dir := filepath.Dir(path)
	f, err := createTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	// Gone after a rename; after a link (or any failure) it is the spare name.
	defer os.Remove(tmp)
	if err := fill(f, data, perm); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := install(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("writing %s: %w", path, fs.ErrExist)
		}
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := SyncDir(dir); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// fill sets the mode, writes data, fsyncs and closes f, closing it on
// failure too.
func fill(f file, data []byte, perm os.FileMode) error {
	err := f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// SyncDir fsyncs directory dir, making the names created, renamed or
// removed in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}
